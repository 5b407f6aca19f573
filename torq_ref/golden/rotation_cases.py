"""Golden vectors of the rotation kinds: hadamard.json, rotate_quantize.json,
rotation_builders.json and bulk/maxent_heldout (spec/GV.md GV-7.1 .. GV-7.4).

Expected outputs come from the oracles of :mod:`torq_ref.rotations.kernel_bounds` (float64
Hadamard and rotation products), :mod:`torq_ref.mx` (MXFP4 of the rotated values) and
:mod:`torq_ref.rotations.maxent` (the reference optimizer's held-out objective). Deterministic in
(level, seed).
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx
from torq_ref.rotations import baselines
from torq_ref.rotations import kernel_bounds as kb

from .flags import notes_for
from .hexio import to_hex

ROTATION_SCHEMA = "rotation_vectors.schema.json"
HADAMARD_BLOCKS = (16, 32, 64, 128, 256)
MX_BLOCK = 32


def _doc(algorithm, header, groups, version):
    flags = sorted({f for g in groups for t in g["tests"] for f in t["flags"]})
    return {"algorithm": algorithm, "schema": ROTATION_SCHEMA, "generatorVersion": version,
            "numberOfTests": sum(len(g["tests"]) for g in groups), "header": header,
            "notes": notes_for(flags), "testGroups": groups}


class _Ids:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n


# ----------------------------------------------------------------------------------- hadamard
def _hadamard_inputs(b: int, rng, seed: int):
    """(comment, flags, x (rows, 2b)) of one block size (GV-7.1)."""
    n = 2 * b
    delta = np.zeros((4, n), np.float32)
    for r, j in enumerate((0, 1, b - 1, b + 3)):
        delta[r, j] = 1.0
    gauss = rng.standard_normal((2, n)).astype(np.float32)
    adv = kb.adversarial_rows(b, 4, seed + b).reshape(2, n)
    mant = 1 + rng.integers(0, 2 ** 23, (2, n)) * 2.0 ** -23
    wide = (rng.choice([-1.0, 1.0], (2, n)) * mant * 2.0 ** rng.integers(-60, 61, (2, n))).astype(np.float32)
    zero = np.zeros((1, n), np.float32)
    zero[0, 1::2] = -0.0
    return [("unit rows: the output is a row of H (names the convention)", ["HadamardDelta"], delta),
            ("Gaussian rows", ["HadamardRandom"], gauss),
            ("positive rows whose pairwise sum rounds by a large fraction of the bound",
             ["HadamardAdversarial"], adv),
            ("magnitudes 2^-60 .. 2^60, random signs", ["HadamardRange"], wide),
            ("+0 and -0", ["HadamardZero"], zero)]


def hadamard_doc(level: str, seed: int, version: str) -> dict:
    ids = _Ids()
    rng = np.random.default_rng(seed + 500)
    groups = []
    for b in HADAMARD_BLOCKS:
        tests = []
        for comment, flags, x in _hadamard_inputs(b, rng, seed):
            y = kb.apply_hadamard(x, b)
            e = kb.butterfly_bound(x, b, True)
            tests.append({"tcId": ids(), "comment": comment, "flags": flags, "rows": x.shape[0],
                          "x": to_hex(x), "y": to_hex(y), "bound": to_hex(e), "result": "valid"})
        groups.append({"type": "HadamardTransform", "blockSize": b, "n": 2 * b,
                       "convention": "sylvester", "tests": tests})
    header = ["Block Hadamard transform: x float32 (rows, n) -> every block of the last axis times",
              "H / sqrt(block), H the Sylvester matrix (natural order), x @ H. y is the float64",
              "oracle, bound the per-element float32 butterfly bound of spec/CF.md CF-5.3."]
    return _doc("Block Hadamard transform", header, groups, version)


# ----------------------------------------------------------------------------------- rotate-quantize
def _rotations(seed: int):
    """(name, R float32 (b, b)) of the rotate-quantize groups (GV-7.2)."""
    return [("orthonormal Sylvester Hadamard, b = 32", baselines.sylvester_hadamard(32)),
            ("random orthogonal, b = 32", baselines.random_orthogonal(32, seed + 601)),
            ("random-sign Hadamard D H, b = 64", baselines.random_sign_hadamard(64, seed + 602)),
            ("random orthogonal, b = 16", baselines.random_orthogonal(16, seed + 603))]


def _boundary_ratio(x, R):
    """min over the row's blocks and elements of distance-to-boundary / bound (CF-5.8): the
    E2M1 midpoints under the FLOOR scale of the float64 rotated block, and the scale's binade
    edge 2^k nearest the block amax."""
    y, e = kb.rotate_blocks(x, R), kb.rotation_bound(x, R)
    yb, eb = y.reshape(-1, MX_BLOCK), e.reshape(-1, MX_BLOCK)
    best = np.inf
    mids = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    for yr, er in zip(yb, eb):
        amax = np.abs(yr).max()
        if amax == 0:
            continue
        s = int(mx.scale_codes(np.array([amax], np.float32), "e2m1", "floor")[0])
        p = np.ldexp(1.0, s - 127)
        d = np.abs(np.abs(yr)[:, None] - mids[None, :] * p).min(-1)
        best = min(best, float((d / er).min()))
        j = int(np.argmax(np.abs(yr)))
        m, ex = np.frexp(amax)
        edge = min(np.ldexp(1.0, ex - 1), np.ldexp(1.0, ex), key=lambda v: abs(v - amax))
        best = min(best, abs(amax - edge) / er[j])
    return best


def _solve(yt, R):
    """float32 x with x R close to the target rows yt (per b-block), refined twice."""
    b = R.shape[0]
    R64 = R.astype(np.float64)
    Ri = np.linalg.inv(R64)
    x = (yt.reshape(yt.shape[0], -1, b) @ Ri).reshape(yt.shape).astype(np.float32)
    for _ in range(2):
        r = yt - kb.rotate_blocks(x, R64)
        x = (x.astype(np.float64) + (r.reshape(r.shape[0], -1, b) @ Ri).reshape(r.shape)).astype(np.float32)
    return x


def _near_case(rng, R, n, what, ratio):
    """One row whose block 0 has one rotated value about ``ratio`` bounds from a boundary: an
    E2M1 midpoint (what = "mid") or the binade edge of the amax (what = "edge"); the other values
    sit between grid points, away from boundaries. The float32 x is then nudged by a few ulps
    (a seeded search) to bring the measured ratio within 25 % of the aim."""
    grid = np.array([0.125, 0.375, 0.625, 0.875, 1.125, 1.4, 1.6, 2.2, 2.8, 3.2, 3.8, 4.4, 5.6])
    b = R.shape[0]
    for _ in range(200):
        ex = int(rng.integers(-8, 9))
        yt = rng.choice(grid, n) * rng.choice([-1.0, 1.0], n) * 2.0 ** ex
        yt[MX_BLOCK:] *= 2.0 ** int(rng.integers(-3, 4))
        yt[0] = 5.5 * 2.0 ** ex * rng.choice([-1.0, 1.0])          # the amax of block 0: scale 2^ex
        i = int(rng.integers(1, MX_BLOCK))
        if what == "edge":
            i = 0
            yt[0] = np.sign(yt[0]) * 2.0 ** (ex + 3)                  # amax at the binade edge
        else:
            yt[i] = np.sign(yt[i]) * rng.choice([0.75, 1.25, 1.75, 2.5, 3.5, 5.0]) * 2.0 ** ex
        x = _solve(yt[None], R)
        e = kb.rotation_bound(x, R)[0, i]
        yt[i] += rng.choice([-1.0, 1.0]) * ratio * e
        x = _solve(yt[None], R)
        r = _boundary_ratio(x, R)
        lo = (i // b) * b
        for _ in range(300):
            if abs(r / ratio - 1) < 0.25:
                break
            c = x.copy()
            j = lo + int(rng.integers(0, b))
            c[0, j] = (c[0, j:j + 1].view(np.int32) + np.int32(rng.integers(-2, 3))).view(np.float32)[0]
            rc = _boundary_ratio(c, R)
            if abs(rc / ratio - 1) < abs(r / ratio - 1):
                x, r = c, rc
        if abs(r / ratio - 1) < 0.25 and (r < 1) == (ratio < 1):
            return x[0], r
    raise RuntimeError(f"no {what} case at ratio {ratio} found")


#: the distances (in bounds) of the constructed rows: inside (acceptable) and outside (exact)
INSIDE_RATIOS = (0.5, 0.05, 0.005)
OUTSIDE_RATIOS = (1.6, 1.2, 2.5)


def rotate_quantize_doc(level: str, seed: int, version: str) -> dict:
    ids = _Ids()
    rng = np.random.default_rng(seed + 600)
    n = 64
    reps = 1 if level == "default" else 4
    groups = []
    for name, R64 in _rotations(seed):
        R = R64.astype(np.float32)
        b = R.shape[0]
        rows = []
        g = rng.standard_normal((8, n)) * np.exp(rng.standard_normal((8, 1)) * 3)
        for xr in g.astype(np.float32):
            rows.append(("heavy-tailed random row", ["RotateRandom"], xr))
        rows.append(("zero row", ["RotateZero"], np.zeros(n, np.float32)))
        for what, flag_in, flag_out in (("mid", "NearElementBoundary", "OutsideElementBound"),
                                        ("edge", "NearScaleBoundary", "OutsideScaleBound")):
            for ratio, flag in [(r, flag_in) for r in INSIDE_RATIOS] + [(r, flag_out) for r in OUTSIDE_RATIOS]:
                for _ in range(reps):
                    xr, r = _near_case(rng, R, n, what, ratio)
                    rows.append((f"{'midpoint' if what == 'mid' else 'scale edge'} at {r:.3f} x the "
                                 "summation bound", [flag], xr))
        x = np.stack([r[2] for r in rows])
        y32 = kb.rotate_blocks(x, R).astype(np.float32)
        t = mx.quantize(y32, "e2m1", scale_rule="floor", backend="numpy")
        tests = []
        for i, (comment, flags, xr) in enumerate(rows):
            tests.append({"tcId": ids(), "comment": comment, "flags": flags, "x": to_hex(xr),
                          "scales": to_hex(t.scales[i]), "codes": to_hex(t.codes[i]),
                          "boundaryRatio": round(float(min(_boundary_ratio(xr[None], R), 1e6)), 6),
                          "result": "valid"})
        groups.append({"type": "RotateQuantize", "format": "e2m1", "blockSize": MX_BLOCK,
                       "scaleRule": "floor", "rotationSize": b, "rotation": name, "n": n,
                       "R": to_hex(R), "tests": tests})
    header = ["Fused rotate-then-quantize: x float32 (rows, n), R float32 (b, b) -> every b-block",
              "times R, then MXFP4 (FLOOR): codes uint8 (rows, n) unpacked, scales uint8 (rows, n/32).",
              "Expected: MXFP4 of fp32(x R), the product in float64. boundaryRatio: distance of the",
              "nearest rounding boundary over the float32 summation bound (spec/CF.md CF-5.7);",
              "below 1 a kernel may differ there (acceptable), above 1 it must be bit-exact."]
    return _doc("Rotate then MXFP4 quantize", header, groups, version)


# ----------------------------------------------------------------------------------- builders
def _doubly_stochastic(rng, n, k=3):
    w = rng.dirichlet(np.ones(k))
    return sum(wi * np.eye(n)[rng.permutation(n)] for wi in w)


def _schur_horn_tests(rng, ids):
    tests = []
    for n in (4, 8, 16, 32):
        lam = rng.standard_normal(n) * 3
        sc = float(np.abs(lam).max())
        cases = [("constant target trace / n", ["ShConstant"], np.full(n, lam.mean()), "orthogonal"),
                 ("target P lam, P doubly stochastic", ["ShMajorized"], _doubly_stochastic(rng, n) @ lam,
                  "orthogonal"),
                 ("target a permutation of lam (a vertex of the permutohedron)", ["ShPermutation"],
                  lam[rng.permutation(n)], "orthogonal")]
        s = np.sort(lam)[::-1]
        bad = s.copy()
        bad[0] += 1e-3 * sc
        bad[-1] -= 1e-3 * sc
        cases.append(("largest entry above the largest eigenvalue: not majorized", ["ShNotMajorized"],
                      bad[rng.permutation(n)], "refuse"))
        cases.append(("total differs from the trace by 1e-3 max|lam|", ["ShTraceMismatch"],
                      np.full(n, lam.mean() + 1e-3 * sc), "refuse"))
        for comment, flags, t, expect in cases:
            tests.append({"tcId": ids(), "comment": f"n = {n}: {comment}", "flags": flags,
                          "eigvals": to_hex(lam), "target": to_hex(np.asarray(t, np.float64)),
                          "expect": expect, "result": "valid"})
    lam = np.array([2.0, 2.0, 2.0, -1.0, -1.0, 0.0, 0.0, 0.0])
    tests.append({"tcId": ids(), "comment": "n = 8: repeated eigenvalues, constant target",
                  "flags": ["ShDegenerate"], "eigvals": to_hex(lam),
                  "target": to_hex(np.full(8, lam.mean())), "expect": "orthogonal", "result": "valid"})
    return tests


#: the maxent golden input: heavy-tailed synthetic activations (spec/ME.md ME-5.1)
MAXENT_SHAPE = (1024, 512, 64)          # calibration tokens, held-out tokens, channels
MAXENT_SEEDS = (0, 1, 2, 3)
MAXENT_DATA_SEED = 5


def maxent_inputs():
    from torq_ref.rotations.synthetic import heavy_tailed_activations

    tc, th, n = MAXENT_SHAPE
    X = heavy_tailed_activations(tc + th, n, seed=MAXENT_DATA_SEED).astype(np.float32)
    return X[:tc], X[tc:]


def builders_doc(level: str, seed: int, version: str):
    """(rotation_builders.json, the maxent_heldout bulk arrays) (GV-7.3, GV-7.4)."""
    from torq_ref.rotations.maxent_eval import heldout_objective
    from torq_ref.rotations.maxent import DEFAULT_BETA, maxent_rotation

    ids = _Ids()
    rng = np.random.default_rng(seed + 700)
    sh = {"type": "SchurHorn", "convention": "diag(Q^T diag(eigvals) Q) = target",
          "tests": _schur_horn_tests(rng, ids)}
    xc, xh = maxent_inputs()
    j_ref = np.array([heldout_objective(xh, maxent_rotation(xc, seed=s)[0], DEFAULT_BETA)
                      for s in MAXENT_SEEDS])
    me = {"type": "Maxent", "blockSize": 32, "beta": float(DEFAULT_BETA), "calibration": "xCal",
          "heldout": "xHeld", "jReference": to_hex(j_ref),
          "tests": [{"tcId": ids(), "comment": f"seed {s}", "flags": ["MaxentHeldout"], "seed": s,
                     "result": "valid"} for s in MAXENT_SEEDS]}
    header = ["Rotation builders, property conformance. SchurHorn: eigvals, target -> Q with",
              "diag(Q^T diag(eigvals) Q) = target and Q orthogonal (expect orthogonal), or a refusal",
              "(expect refuse). Maxent: fn(xCal, seed) -> R (32, 32); the held-out objective of R on",
              "xHeld (bulk/maxent_heldout.safetensors) against jReference, the reference's own per seed."]
    doc = _doc("Rotation builders", header, [sh, me], version)
    bulk = ({"xCal": xc, "xHeld": xh}, {"kind": "maxent", "blockSize": "32",
                                        "flags": "MaxentHeldout"})
    return doc, bulk


def rotation_docs(level: str, seed: int, version: str):
    """(file name -> doc, bulk name -> (arrays, metadata)) of the rotation kinds."""
    b_doc, b_bulk = builders_doc(level, seed, version)
    return ({"hadamard.json": hadamard_doc(level, seed, version),
             "rotate_quantize.json": rotate_quantize_doc(level, seed, version),
             "rotation_builders.json": b_doc},
            {"maxent_heldout": b_bulk})
