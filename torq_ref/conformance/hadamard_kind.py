"""The ``hadamard`` kind: a block Hadamard transform judged within the float32 butterfly bound
(spec/CF.md CF-5.1 .. CF-5.5).

    hadamard    fn(x float32 (rows, n), block int) -> float (rows, n)

Every ``block`` of the last axis of x times the Hadamard matrix of the profile's convention
(default: the orthonormal Sylvester matrix, x @ H / sqrt(block)). An output is correct when every
element lies within the butterfly bound of the float64 oracle (CF-5.3); a failing case is
compared with the other conventions, so that the verdict names the convention the kernel
actually follows (cause HadamardConvention, its ``rule`` the convention), or says that it is the
profile's transform computed less accurately than a float32 butterfly (ExceedsButterflyBound),
or no Hadamard transform of any convention (NotHadamard).
"""
from __future__ import annotations

import numpy as np

from torq_ref.golden.hexio import from_hex
from torq_ref.rotations import kernel_bounds as kb

from .common import as_float, convention_failure
from .report import CaseResult, repro_snippet

#: a kernel this many times the bound away from a convention is "not that transform at all"
NEAR_FACTOR = 2.0 ** 12
#: the sizes the harness adds at the default and thorough levels from a fixed seed (CF-5.4)
LARGE_BLOCKS = (512, 1024, 2048, 4096, 8192, 16384)
LARGE_SEED = 20260304

#: cause -> (clause, description); the hadamard kind's own causes (CF-5.5)
CAUSES = {
    "HadamardConvention": ("CF-5.2", "the output is another convention's transform (named in "
                                     "rule): unnormalized, sequency order or left multiplication"),
    "ExceedsButterflyBound": ("CF-5.3", "the convention's transform, but an element is farther "
                                        "from the oracle than a float32 butterfly can be"),
    "NotHadamard": ("CF-5.2", "the output is no Hadamard transform of any convention"),
    "NonFiniteOutput": ("CF-5.3", "NaN or Inf for a finite input"),
}


def profile_convention(profile) -> str:
    return kb.convention_name(profile.hadamard_norm, profile.hadamard_order, profile.hadamard_side)


def _ratio(x, got, block, conv):
    """max |got - oracle| / bound over the case under ``conv`` (inf for a non-finite output)."""
    norm = kb.parse_convention(conv)[0]
    y = kb.apply_hadamard(x, block, conv)
    e = kb.butterfly_bound(x, block, norm == "orthonormal")
    r = _ratios(got, y, e)
    return float(np.max(r)), y, e


def _ratios(got, y, e):
    """|got - y| / e per element: 0 where equal (also for e = 0), inf for NaN / Inf outputs."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.abs(got - y)
        r = np.where(err == 0, 0.0, err / e)
    return np.where(np.isfinite(r), r, np.inf)


def judge_case(src, flags, x, got, block, profile, repro=True) -> CaseResult:
    """One case (CF-5.3, CF-5.5): pass within the bound of the profile's convention, else the
    cause, naming the convention that fits."""
    g = np.asarray(got, np.float64)
    conv = profile_convention(profile)
    r, y, e = _ratio(x, g, block, conv)
    if r <= 1.0:
        return CaseResult(src, flags, "pass")
    ratios = {c: _ratio(x, g, block, c)[0] for c in kb.ALL_CONVENTIONS if c != conv}
    fits = [c for c, rc in ratios.items() if rc <= 1.0]
    i, j = np.unravel_index(int(np.argmax(_ratios(g, y, e))), g.shape)
    detail = (f"block {block}, element [{i}, {j}]: expected {y[i, j]!r} +- {e[i, j]:.3g} got "
              f"{g[i, j]!r}")
    rule = ""
    if not np.isfinite(g).all():
        cause = "NonFiniteOutput"
    elif fits:
        cause, rule = "HadamardConvention", fits[0]
        detail = (f"the output is the {fits[0]!r} convention (within its bound), not the profile's "
                  f"{conv!r}; " + detail)
    else:
        best = min([conv] + list(ratios), key=lambda c: ratios.get(c, r))
        rb = ratios.get(best, r)
        if rb <= NEAR_FACTOR:
            cause = "ExceedsButterflyBound"
            rule = "" if best == conv else best
            detail = f"error {rb:.3g} x the butterfly bound under {best!r}; " + detail
        else:
            cause = "NotHadamard"
            detail = f"nearest convention {best!r} at {rb:.3g} x its bound; " + detail
    clause = CAUSES[cause][0]
    text = repro_snippet(f"y = fn(x, {block})", {"x": x}, {"y": y}, {"y": g}, clause) if repro else ""
    return CaseResult(src, flags, "fail", clause, "y", detail, text, cause=cause, rule=rule)


def _call(fn, x, block):
    return as_float("y", fn(x.copy(), block), x.shape)


def large_cases(level: str):
    """(block, x) for the large blocks the harness adds itself (CF-5.4): one Gaussian row and one
    row of positive values near 1 (their pairwise sums round the most), fixed seed."""
    rng = np.random.default_rng(LARGE_SEED)
    out = []
    for b in LARGE_BLOCKS if level != "quick" else ():
        g = rng.standard_normal(b).astype(np.float32)
        p = (1 + rng.integers(0, 2 ** 23, b) * 2.0 ** -23).astype(np.float32)
        out.append((b, np.stack([g, p])))
    return out


def run_hadamard(fn, vs, profile, fmt, use_bulk):
    """Every group of hadamard.json (one call per group), then the large blocks (CF-5.4)."""
    doc = vs.docs["hadamard.json"]
    out = []
    for grp in doc["testGroups"]:
        if grp["type"] != "HadamardTransform":
            continue
        b, n = grp["blockSize"], grp["n"]
        tests = [t for t in grp["tests"] if t["result"] == "valid"]
        xs = [from_hex(t["x"], "float32", (t["rows"], n)) for t in tests]
        x = np.concatenate(xs)
        try:
            got = _call(fn, x, b)
        except Exception as err:  # noqa: BLE001 - any kernel error is a reported failure (CF-3.10)
            out.append(convention_failure(f"hadamard.json (block {b})", ["Convention"], err, len(tests)))
            continue
        r0 = 0
        for t, xi in zip(tests, xs):
            sl = slice(r0, r0 + xi.shape[0])
            r0 += xi.shape[0]
            out.append(judge_case(f"hadamard.json#{t['tcId']}", t["flags"], xi, got[sl], b, profile))
    if use_bulk:
        for b, x in large_cases("default"):
            src = f"generated/hadamard_{b}"
            try:
                got = _call(fn, x, b)
            except Exception as err:  # noqa: BLE001
                out.append(convention_failure(src, ["HadamardLarge"], err, 1))
                continue
            out.append(judge_case(src, ["HadamardLarge"], x, got, b, profile, repro=False))
    return out

