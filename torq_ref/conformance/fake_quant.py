"""The fake-quant kind (spec/CF.md CF-1.2, CF-3.8):

    fn(x float32 (rows, K)) -> float (rows, K) = dequantize(quantize(x))

judged per block on value(code) * 2^(s-127) rounded to the output dtype, bit for bit. A
failing block is classified as a quantize block (CF-3.7) with a scale code and codes read off
its output (:func:`infer_scale_codes`).
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex

from .causes import block_candidates, rules_followed
from .common import MAX_KEPT, as_float
from .judge import Case, Pending, aggregate_bulk, call_kernel, failing_blocks, finish
from .quantize_mx import json_quantize_cases
from .report import CaseResult, repro_snippet

#: causes that only say "something differs": a fit with a named cause is preferred
_GENERIC = ("ElementRounding", "WrongScale", "WrongScaleAndCodes", "ScaleByteOnly")


def _values(s, c, fmt, dtype):
    """float64 values of (scales (rows, nb), codes (rows, 32 nb)) rounded to ``dtype``."""
    sv = np.repeat(mx.scale_values(s), 32, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        return (mx.decode(c, fmt) * sv).astype(dtype).astype(np.float64)


def _same_bits(a, b):
    """Elementwise: equal with the same sign of zero, or both NaN."""
    with np.errstate(invalid="ignore"):
        return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


#: at most this many (scale, codes) readings of one block's output are classified
MAX_FITS = 8


def infer_scale_codes(got, x, exp_s, fmt, rules_scales, dtype=np.float32):
    """(s, c) pairs: a scale code and element codes with value(c) * 2^(s-127), rounded to the
    output dtype, equal to got bit for bit. If the oracle's own quantization of x under some
    scale reproduces the output, only those scales count (the two nearest the expected one: a
    clamped amax or scale lands far from it). Otherwise every scale 0..254 whose codes read
    back from the output reproduce it, at most MAX_FITS: the rules' scales first, then by
    distance from the expected scale, the expected scale itself last (always kept), so that a wrong scale
    (an overflowed or clamped one) is not read as element errors under the right one."""
    with np.errstate(over="ignore", invalid="ignore"):
        ss = np.arange(255)
        q = np.ldexp(np.asarray(x, np.float64)[None, :], (127 - ss)[:, None])       # (255, n)
        nat = mx.encode(q, fmt)
        vals = np.ldexp(mx.decode(nat, fmt), (ss - 127)[:, None]).astype(dtype).astype(np.float64)
    ok = np.flatnonzero(_same_bits(vals, got[None, :]).all(-1))
    if ok.size:
        near = sorted(ok, key=lambda v: (abs(int(v) - exp_s), int(v)))[:2]
        return [(int(v), nat[v]) for v in near]
    with np.errstate(invalid="ignore", over="ignore"):
        codes = mx.encode(np.ldexp(got[None, :], (127 - ss)[:, None]), fmt)          # (255, n)
        back = np.ldexp(mx.decode(codes, fmt), (ss - 127)[:, None]).astype(dtype).astype(np.float64)
    fit = set(np.flatnonzero(_same_bits(back, got[None, :]).all(-1)).tolist())
    order = [s for s in dict.fromkeys(int(r) for r in rules_scales) if s != exp_s] + \
        sorted((s for s in range(255) if s != exp_s), key=lambda s: (abs(s - exp_s), s))
    chosen = [s for s in dict.fromkeys(order) if s in fit][:MAX_FITS - 1]
    chosen += [exp_s] if exp_s in fit else []
    return [(s, codes[s]) for s in chosen]


def _non_pow2_grid(got, fmt):
    """True if got = value(c) * k for one k that is not a power of two, and for no k that is
    (a block with one nonzero magnitude m fits m / v for every element value v: only a
    magnitude that no power of two times an element value gives is evidence)."""
    a = np.abs(got[np.isfinite(got)])
    if a.size == 0 or a.max() == 0:
        return False
    other = False
    for v in np.unique(np.abs(mx.VALUE_TABLES[fmt][np.isfinite(mx.VALUE_TABLES[fmt])])):
        if v == 0:
            continue
        k = a.max() / v
        r = a / k
        with np.errstate(invalid="ignore", over="ignore"):
            back = mx.decode(mx.encode(r, fmt), fmt)
        if np.allclose(back, r, rtol=2.0 ** -20, atol=0):
            if np.frexp(k)[0] == 0.5:
                return False
            other = True
    return other


def _fake_candidates(case: Case, s0: int, ec, g, fmt, rule, dt, follows=()):
    """Candidate causes of a failing fake-quant block from the (scale, codes) pairs that
    reproduce its output; ``follows`` the other rules the call's blocks follow (CF-3.8)."""
    x = case.x
    if s0 == 255:
        return [("NaNHandling" if np.isnan(x).any() else "InfHandling", rule)]
    with np.errstate(invalid="ignore"):
        amax = np.array([np.max(np.abs(x.astype(np.float64)))])
    rule_scales = [int(mx.scale_codes(amax, fmt, r)[0]) for r in mx.AMAX_RULES]
    fits = infer_scale_codes(g, x.ravel(), s0, fmt, rule_scales, dt)
    if not fits:
        return [("NonPowerOfTwoScale" if _non_pow2_grid(g, fmt) else "ValueMismatch", rule)]
    cands = []
    for gs, gc in fits:
        cands += [c for c in block_candidates(x, s0, ec, gs, gc, fmt, rule, follows, mx.AMAX_RULES)
                  if c not in cands]
    cands.sort(key=lambda c: c[0] in _GENERIC)
    return cands


def read_scales(x, got, es, ec, fmt) -> np.ndarray:
    """The scale code of each block of a fake-quant call as its output shows it (CF-3.8):
    the expected one where the block is right, else the first scale of
    :func:`infer_scale_codes` (-1 where none fits). x, got (rows, K); es (rows, K / 32)."""
    rows, nb = es.shape
    g = got.astype(np.float64)
    ok = _same_bits(g, _values(es, ec, fmt, got.dtype)).reshape(rows, nb, 32).all(-1)
    out = es.astype(np.int64)
    for r, b in np.argwhere(~ok):
        sl = slice(b * 32, (b + 1) * 32)
        with np.errstate(invalid="ignore"):
            amax = np.array([np.max(np.abs(x[r, sl].astype(np.float64)))])
        fits = infer_scale_codes(g[r, sl], x[r, sl], int(es[r, b]), fmt,
                                 [int(mx.scale_codes(amax, fmt, q)[0]) for q in mx.AMAX_RULES], got.dtype)
        out[r, b] = fits[0][0] if fits else -1
    return out


def judge_fake(case: Case, es, ec, got, profile, fmt, follows=()):
    """One fake-quant block: got (32,) against value(codes) * 2^(s-127) (CF-3.8)."""
    src, flags, x = case.src, case.flags, case.x
    dt = got.dtype
    g = got.astype(np.float64).ravel()
    s0 = int(es.ravel()[0])
    exp = _values(es, ec, fmt, dt).ravel() if ec is not None else np.full(g.shape, np.nan)
    if _same_bits(g, exp).all():
        return CaseResult(src, flags, "pass")
    if s0 == 255 and np.isnan(x).any():
        if np.isnan(g[np.isnan(x.ravel())]).all():
            return CaseResult(src, flags, "acceptable", matched=["NanElementCode"])
    for v in case.variants:
        if v["result"] == "acceptable" and v["codes"] is not None:
            vv = _values(from_hex(v["scale"], "uint8").reshape(1, 1),
                         from_hex(v["codes"], "uint8").reshape(1, -1), fmt, dt).ravel()
            if _same_bits(g, vv).all() and all(f in profile.acceptable_flags or f in flags
                                               for f in v["flags"]):
                return CaseResult(src, flags, "acceptable", matched=[f for f in v["flags"] if f not in flags])

    def render(cause, clause, under):
        j = int(np.flatnonzero(~_same_bits(g, exp))[0])
        detail = (f"element {j}: expected {exp[j]!r} got {g[j]!r} (output dtype {dt})"
                  + (f"; scale follows {under.upper()}" if under else ""))
        text = repro_snippet("y = fn(x)", {"x": x}, {"y": exp.astype(dt)}, {"y": got.ravel()},
                             clause) if case.repro else ""
        return CaseResult(src, flags, "fail", clause, "values", detail, text, cause=cause, rule=under)
    rule = profile.scale_rule
    return Pending(case, _fake_candidates(case, s0, ec, g, fmt, rule, dt, follows), profile, rule, render)


def _follows(x, got, scales, codes, profile, fmt) -> tuple:
    """The other rules the blocks of a JSON call follow as a whole (causes.rules_followed on
    the scales read off the output, CF-3.8), () where a block's vector has no codes."""
    if any(c is None for c in codes):
        return ()
    es = np.concatenate(scales)                                                   # (n, 1)
    return rules_followed(x, read_scales(x, got, es, np.concatenate(codes), fmt), fmt,
                          profile.scale_rule)


def run_fake_quant(fn, vs, profile, fmt, use_bulk):
    """fake-quant: the quantize vectors, judged on the dequantized values (CF-3.8)."""
    rule = profile.scale_rule
    cases = json_quantize_cases(vs, profile, fmt)
    bulk_name = f"quantize_{fmt}_{rule}"
    if cases is None and bulk_name not in vs.bulk:
        raise ValueError(f"no quantize vectors for format {fmt!r} under rule {rule!r}")
    out = []
    if cases is not None:
        cs, expected, x = cases
        got, failed = call_kernel(lambda: as_float("values", fn(x.copy()), x.shape),
                                  "mx_quantize.json", ["Convention"], len(cs))
        if failed:
            out.append(failed)
        else:
            follows = _follows(x, got, [e.scale for e in expected], [e.codes for e in expected],
                               profile, fmt)
            out += finish([judge_fake(c, e.scale, e.codes, got[i], profile, fmt, follows)
                           for i, (c, e) in enumerate(zip(cs, expected))])
    if use_bulk and bulk_name in vs.bulk:
        a = vs.bulk[bulk_name][0]
        src = f"bulk/{bulk_name}"
        x, es, ec = a["x"], a["scales"], a["codes"]
        got, failed = call_kernel(lambda: as_float("values", fn(x.copy()), x.shape), src,
                                  ["Random"], es.size)
        if failed:
            return out + [failed]
        rows, nb = es.shape
        follows = rules_followed(x, read_scales(x, got, es, ec, fmt), fmt, rule)
        ok = _same_bits(got.astype(np.float64), _values(es, ec, fmt, got.dtype)).reshape(rows, nb, 32).all(-1)
        out.append(CaseResult(src, ["Random"], "pass", count=int(ok.sum())))
        res = []
        for j, r, b in failing_blocks(ok):
            sl = slice(b * 32, (b + 1) * 32)
            case = Case(f"{src}[row {r}, block {b}]", ["Random"], x[r:r + 1, sl], repro=j < MAX_KEPT)
            res.append(judge_fake(case, es[r:r + 1, b:b + 1], ec[r:r + 1, sl], got[r, sl], profile, fmt,
                                  follows))
        aggregate_bulk(out, src, ["Random"], finish(res))
    return out
