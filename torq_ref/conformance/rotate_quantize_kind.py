"""The ``rotate-quantize`` kind: a fused rotation + MXFP4 quantization, bit-exact except within
the float32 summation bound of a rounding boundary (spec/CF.md CF-5.6 .. CF-5.9).

    rotate-quantize  fn(x float32 (rows, n), R float32 (b, b))
                     -> (codes uint8 (rows, n), scales uint8 (rows, n/32))

Every b-block of x times R, then MXFP4 quantization with the profile's scale rule (FLOOR under
``ocp``), codes unpacked as ``quantize`` returns them. The oracle computes x R in float64 and
bounds, per element, how far any float32 summation order can be from it (CF-5.7). The expected
output is MX quantization of the float64 product rounded to float32 (CF-5.6). A block that
differs from it is ``acceptable`` when some float32 values within the bound give the kernel's
scale and codes (a rounding boundary, an E2M1 midpoint or the binade edge of the scale, lies
inside the bound: causes NearElementBoundary, NearScaleBoundary); every other difference fails
with the cause of CF-5.9.
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex
from torq_ref.rotations import kernel_bounds as kb

from .common import ConventionError, as_u8, convention_failure, diff_detail
from .report import CaseResult, hexwords, repro_snippet

MX_BLOCK = 32

#: cause -> (clause, description) (CF-5.8, CF-5.9)
CAUSES = {
    "NearElementBoundary": ("CF-5.8", "acceptable: an E2M1 midpoint lies within the float32 "
                                      "summation bound of the rotated value"),
    "NearScaleBoundary": ("CF-5.8", "acceptable: the block's amax lies within the float32 "
                                    "summation bound of the edge that changes the E8M0 scale"),
    "RotationSignConvention": ("CF-5.9", "the rotated values with the signs of some columns of R "
                                         "flipped (named in the detail; all of them: -x R)"),
    "TransposedRotation": ("CF-5.9", "x R^T instead of x R"),
    "ScaleFromUnrotated": ("CF-5.9", "the scale from the amax of the unrotated block, the codes "
                                     "of the rotated values under it"),
    "NotRotated": ("CF-5.9", "MXFP4 of x itself: no rotation"),
    "RotatedScale": ("CF-5.9", "a scale no float32 rotation within the bound gives; codes follow it"),
    "RotatedCodes": ("CF-5.9", "codes no float32 rotation within the bound gives, under a "
                               "reachable scale"),
    "RotatedScaleAndCodes": ("CF-5.9", "an unreachable scale and codes that do not follow it"),
}


def expected(x, R, rule: str = "floor"):
    """(scales, codes) of MX quantization of fp32(x R), the product in float64 (CF-5.6)."""
    y = kb.rotate_blocks(x, R).astype(np.float32)
    t = mx.quantize(y, "e2m1", scale_rule=rule, backend="numpy")
    return t.scales, t.codes


def _scale_of(amax, rule):
    with np.errstate(over="ignore"):
        return mx.scale_codes(np.asarray(amax, np.float64).astype(np.float32), "e2m1", rule).astype(np.int64)


def reachable(y, e, got_s, got_c, rule):
    """(scale_ok, codes_ok (.., 32)) for blocks y (.., 32) with element bounds e: the kernel's
    scale is one that float32 values in [y - e, y + e] give (the rule is monotone in amax), and
    each code one that a value in its interval gives under the kernel's scale (CF-5.8)."""
    with np.errstate(invalid="ignore"):
        lo_a = np.maximum(np.abs(y) - e, 0.0).max(-1)
        hi_a = (np.abs(y) + e).max(-1)
    s = got_s.astype(np.int64)
    scale_ok = (s >= _scale_of(lo_a, rule)) & (s <= _scale_of(hi_a, rule)) & (s < 255)
    p = np.ldexp(1.0, np.clip(s, 0, 254) - 127)[..., None]
    with np.errstate(invalid="ignore", over="ignore"):
        q_lo, q_hi = (y - e) / p, (y + e) / p
        v_lo = mx.decode(mx.encode(q_lo, "e2m1"), "e2m1")
        v_hi = mx.decode(mx.encode(q_hi, "e2m1"), "e2m1")
    v = mx.decode(got_c, "e2m1")
    neg = (got_c & 0x8) != 0
    codes_ok = (v >= v_lo) & (v <= v_hi) & ~(neg & (q_lo > 0)) & ~(~neg & (v == 0) & (q_hi < 0))
    return scale_ok, codes_ok


def _blocks(a):
    return a.reshape(a.shape[0], -1, MX_BLOCK)


def _sign_pattern(y, e, got_c, b):
    """Per column of R, -1 where the kernel's signs are opposite to the oracle's on most elements
    whose sign is certain (|y| > e) and whose code is not zero (CF-5.9)."""
    v = mx.decode(got_c, "e2m1")
    sure = (np.abs(y) > e) & (v != 0)
    flip = sure & (np.sign(v) != np.sign(y))
    col = np.arange(y.shape[1]) % b
    s = np.ones(b)
    for c in range(b):
        m = sure[:, col == c]
        if m.sum() and flip[:, col == c].sum() * 2 > m.sum():
            s[c] = -1.0
    return s


def classify(x, R, gs, gc, rule):
    """cause per failing block: the first model whose reach contains the kernel's output, else
    the generic cause (CF-5.9). Returns (causes (rows, nb) object array, detail of the signs)."""
    b = R.shape[0]
    y, e = kb.rotate_blocks(x, R), kb.rotation_bound(x, R)
    yb, eb, gcb = _blocks(y), _blocks(e), _blocks(gc)
    s_ok, c_ok = reachable(yb, eb, gs, gcb, rule)
    sign = _sign_pattern(y, e, gc, b)
    models = []
    if (sign < 0).any():
        ys = y * np.tile(sign, y.shape[1] // b)
        models.append(("RotationSignConvention", reachable(_blocks(ys), eb, gs, gcb, rule)))
    yt, et = kb.rotate_blocks(x, R.T), kb.rotation_bound(x, R.T)
    models.append(("TransposedRotation", reachable(_blocks(yt), _blocks(et), gs, gcb, rule)))
    su = _scale_of(np.abs(_blocks(x.astype(np.float64))).max(-1), rule)
    models.append(("ScaleFromUnrotated", (gs.astype(np.int64) == su, c_ok)))
    xb = _blocks(x.astype(np.float64))
    models.append(("NotRotated", reachable(xb, np.zeros_like(xb), gs, gcb, rule)))
    causes = np.empty(gs.shape, object)
    for idx in np.ndindex(gs.shape):
        if s_ok[idx] and c_ok[idx].all():
            causes[idx] = ""
            continue
        for name, (ms, mc) in models:
            if ms[idx] and mc[idx].all():
                causes[idx] = name
                break
        else:
            own = c_ok[idx].all()
            causes[idx] = ("RotatedCodes" if s_ok[idx] else "RotatedScale" if own else
                           "RotatedScaleAndCodes")
    flipped = [int(c) for c in np.flatnonzero(sign < 0)]
    return causes, (s_ok, c_ok), flipped


def call_kernel(fn, x, R):
    out = fn(x.copy(), R.copy())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ConventionError("rotate-quantize must return a pair (codes, scales)")
    c = as_u8("codes", out[0], x.shape)
    s = as_u8("scales", out[1], (x.shape[0], x.shape[1] // MX_BLOCK))
    return c, s


def judge(src_of, flags_of, x, R, es, ec, gs, gc, rule):
    """CaseResults for every block of one call (CF-5.6, CF-5.8, CF-5.9)."""
    ecb, gcb = _blocks(ec), _blocks(gc)
    same = (es == gs) & (ecb == gcb).all(-1)
    out = []
    if same.all():
        return [CaseResult(src_of(r, k), flags_of(r), "pass") for r, k in np.ndindex(es.shape)]
    causes, _, flipped = classify(x, R, gs, gc, rule)
    for r, k in np.ndindex(es.shape):
        src, flags = src_of(r, k), flags_of(r)
        if same[r, k]:
            out.append(CaseResult(src, flags, "pass"))
            continue
        cause = causes[r, k]
        if cause == "":
            cause = "NearScaleBoundary" if gs[r, k] != es[r, k] else "NearElementBoundary"
            out.append(CaseResult(src, flags, "acceptable", matched=[cause], cause=cause))
            continue
        sl = slice(k * MX_BLOCK, (k + 1) * MX_BLOCK)
        if gs[r, k] != es[r, k]:
            detail = f"block {k}: scale expected {hexwords(es[r, k:k + 1])} got {hexwords(gs[r, k:k + 1])}"
        else:
            detail = f"block {k}: codes differ: " + diff_detail(ec[r, sl], gc[r, sl])
        if cause == "RotationSignConvention":
            detail += f"; columns of R with flipped sign: {flipped[:8]}{'...' if len(flipped) > 8 else ''}"
        clause = CAUSES[cause][0]
        text = repro_snippet("codes, scales = fn(x, R)", {"x": x[r:r + 1], "R": R},
                             {"codes": ec[r, sl], "scales": es[r, k:k + 1]},
                             {"codes": gc[r, sl], "scales": gs[r, k:k + 1]}, clause)
        out.append(CaseResult(src, flags, "fail", clause, "scales" if gs[r, k] != es[r, k] else "codes",
                              detail, text, cause=cause))
    return out


def run_rotate_quantize(fn, vs, profile, fmt, use_bulk):
    """Every group of rotate_quantize.json, one call per group (CF-5.6). Under a profile whose
    scale rule is not FLOOR the expected outputs are computed by the oracle from x and R."""
    if fmt != "e2m1":
        raise ValueError(f"rotate-quantize vectors are MXFP4 (fmt e2m1), got fmt {fmt!r}")
    rule = profile.scale_rule
    if rule == "mse":
        raise ValueError("rotate-quantize is defined for the amax scale rules, not mse")
    out = []
    for grp in vs.docs["rotate_quantize.json"]["testGroups"]:
        b, n = grp["rotationSize"], grp["n"]
        R = from_hex(grp["R"], "float32", (b, b))
        tests = [t for t in grp["tests"] if t["result"] == "valid"]
        x = np.stack([from_hex(t["x"], "float32", (n,)) for t in tests])
        if rule == grp["scaleRule"]:
            es = np.stack([from_hex(t["scales"], "uint8", (n // MX_BLOCK,)) for t in tests])
            ec = np.stack([from_hex(t["codes"], "uint8", (n,)) for t in tests])
        else:
            es, ec = expected(x, R, rule)
        try:
            gc, gs = call_kernel(fn, x, R)
        except Exception as err:  # noqa: BLE001 - any kernel error is a reported failure (CF-3.10)
            out.append(convention_failure(f"rotate_quantize.json ({grp['rotation']})", ["Convention"],
                                          err, len(tests)))
            continue
        out += judge(lambda r, k: f"rotate_quantize.json#{tests[r]['tcId']}[block {k}]",
                     lambda r: tests[r]["flags"], x, R, es, ec, gs, gc, rule)
    return out
