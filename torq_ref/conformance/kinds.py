"""The kinds of kernel the harness checks, their calling conventions, and how each is judged
(spec/CF.md sections 1 and 3).

Conventions (all arrays are NumPy; the harness batches cases into one call per shape):

    encode      fn(x: float32 (n,))                          -> codes uint8 (n,)
    quantize    fn(x: float32 (rows, K))                     -> (scales uint8 (rows, K/32),
                                                                 codes uint8 (rows, K))   unpacked
    quantize    fmt="nvfp4": fn(x: float32 (rows, K), g: float32 scalar)
                                                             -> (scales uint8 E4M3 (rows, K/16),
                                                                 codes uint8 (rows, K))
    dequantize  fn(scales uint8 (rows, K/32), codes uint8 (rows, K)) -> float (rows, K)
    pack        fn(codes uint8 (rows, K))                    -> packed uint8 (rows, K/2)
    swizzle     fn(scales uint8 (rows, cols) [, num_warps= | experts=, gate_up=])
                                                             -> uint8 1-D, the profile's layout (swizzle_kind)
    dot_scaled  fn(a_scales (m, K/32), a_codes (m, K), b_scales (n, K/32), b_codes (n, K))
                                                             -> float (m, n) = A @ B^T
"""
from __future__ import annotations

import numpy as np

from torq_ref.golden.hexio import from_hex

from .report import CaseResult, hexwords, repro_snippet

from .common import (KINDS, MAX_KEPT, ConventionError, as_float, as_u8,  # noqa: F401
                     _CODE_ORDER, convention_failure, diff_detail, _first_clause, split_variants, group_tests)
from .e8m0_cast import run_e8m0_cast
from .fake_quant import run_fake_quant
from .gguf_block import run_gguf_block
from .judge import aggregate_bulk
from .quantize_mx import run_quantize
from .causes import RULE_CLAUSE, clause_of, element_causes  # noqa: F401
from .scale_offset import power_of_two_offset
from .swizzle_kind import run_swizzle
from .rotation_kinds import ROTATION_RUNNERS

# ------------------------------------------------------------------------------------- encode
def _encode_result(src, flags, xi, exp, g, fmt, profile, matched=(), repro=True):
    """One failing element: its cause (CF-3.7), acceptable if only the sign of zero differs and
    the profile accepts that (CF-2.4)."""
    cause = element_causes(xi, xi.astype(np.float64), exp, g, fmt)[0]
    if cause == "SignedZero" and profile.signed_zero == "acceptable":
        return CaseResult(src, flags, "acceptable", matched=["UnsignedZero"], cause=cause)
    clause = clause_of(cause)
    text = repro_snippet("fn(x)", {"x": xi}, {"code": exp}, {"code": g}, clause) if repro else ""
    return CaseResult(src, flags, "fail", clause, "code",
                      f"x={hexwords(xi)} ({float(xi[0]):.9g}) expected {hexwords(exp)} got "
                      f"{hexwords(g)}", text, list(matched), cause=cause)


def run_encode(fn, vs, profile, fmt, use_bulk):
    doc = vs.docs["mx_encode.json"]
    tests = group_tests(doc, "MxElementEncode", format=fmt)
    if tests is None:
        raise ValueError(f"no encode vectors for format {fmt!r}")
    valid, variants = split_variants(tests)
    x = np.concatenate([from_hex(t["x"], "float32") for t in valid])          # (n,)
    out = []
    try:
        got = as_u8("codes", fn(x.copy()), x.shape)
    except Exception as err:   # noqa: BLE001 - any kernel error is a reported failure (CF-3.10)
        out.append(convention_failure("mx_encode.json", ["Convention"], err, len(valid)))
        got = None
    for i, t in enumerate(valid if got is not None else []):
        exp = from_hex(t["code"], "uint8")
        g = got[i:i + 1]
        src = f"mx_encode.json#{t['tcId']}"
        if (g == exp).all():
            out.append(CaseResult(src, t["flags"], "pass"))
            continue
        if "NanElementCode" in t["flags"] and "NanElementCode" in profile.acceptable_flags:
            out.append(CaseResult(src, t["flags"], "acceptable", matched=["NanElementCode"]))
            continue
        matched = [f for v in variants.get(t["tcId"], []) if (from_hex(v["code"], "uint8") == g).all()
                   for f in v["flags"]]
        out.append(_encode_result(src, t["flags"], x[i:i + 1], exp, g, fmt, profile, matched))
    if use_bulk and fmt == "e2m1" and "e2m1_encode_bf16_all" in vs.bulk:
        src = "bulk/e2m1_encode_bf16_all"
        arrays, _ = vs.bulk["e2m1_encode_bf16_all"]
        xb, cb = arrays["x"], arrays["code"]
        try:
            gb = as_u8("codes", fn(xb.copy()), xb.shape)
        except Exception as err:  # noqa: BLE001
            return out + [convention_failure(src, ["Exhaustive"], err, xb.size)]
        bad = gb != cb
        nan = np.isnan(xb)
        acc = bad & nan & ("NanElementCode" in profile.acceptable_flags)
        bad &= ~acc
        out.append(CaseResult(src, ["Exhaustive"], "pass", count=int((~bad & ~acc).sum())))
        if acc.any():
            out.append(CaseResult(src, ["Exhaustive", "NanElementCode"], "acceptable",
                                  count=int(acc.sum()), matched=["NanElementCode"]))
        res = [_encode_result(f"{src}[{i}]", ["Exhaustive"], xb[i:i + 1], cb[i:i + 1], gb[i:i + 1],
                              fmt, profile, repro=j < MAX_KEPT)
               for j, i in enumerate(np.flatnonzero(bad))]
        aggregate_bulk(out, src, ["Exhaustive"], res)
    return out


# ------------------------------------------------------------------------------------- dequantize
def _round_to(exp: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return exp.astype(dtype).astype(np.float64)


def _dequant_ok(got, exp, signed_zero="exact"):
    """CF-3.2: equal with the same sign of zero (under +unsigned-zero also +0 for -0, never -0
    for +0: CF-2.4), and NaN exactly where NaN is expected: a NaN output for a number fails."""
    with np.errstate(invalid="ignore"):
        plus_for_minus = (signed_zero != "exact") & np.signbit(exp) & ~np.signbit(got)
        same = (got == exp) & ((np.signbit(got) == np.signbit(exp)) | plus_for_minus)
        return np.where(np.isnan(exp), np.isnan(got), same & ~np.isnan(got))


def _dequant_cause(got, exp, scale):
    bad = ~_dequant_ok(got, exp)
    with np.errstate(invalid="ignore"):
        if (np.isnan(exp[bad]) | np.isnan(got[bad])).any():
            return "NaNHandling"
        if ((got[bad] == 0) & (exp[bad] == 0)).all():
            return "SignedZero" if np.signbit(exp[bad]).all() else "NegativeZero"
        if scale == 0 and (got == 0).all():
            return "FlushedScaleCodeZero"
    if power_of_two_offset(got, exp) is not None:
        return "ScaleOffsetPowerOfTwo"
    return "ValueMismatch"


def run_dequantize(fn, vs, profile, fmt, use_bulk):
    tests = group_tests(vs.docs["mx_dequantize.json"], "MxDequantize", format=fmt)
    if tests is None:
        raise ValueError(f"no dequantize vectors for format {fmt!r}")
    valid, variants = split_variants(tests)
    s = np.stack([from_hex(t["scale"], "uint8") for t in valid])               # (n, 1)
    c = np.stack([from_hex(t["codes"], "uint8") for t in valid])               # (n, 32)
    try:
        got = as_float("values", fn(s.copy(), c.copy()), c.shape)
    except Exception as err:  # noqa: BLE001
        return [convention_failure("mx_dequantize.json", ["Convention"], err, len(valid))]
    g64 = got.astype(np.float64)
    out = []
    for i, t in enumerate(valid):
        exp = _round_to(from_hex(t["y"], "float64"), got.dtype)
        gi = g64[i]
        ok = bool(np.all(_dequant_ok(gi, exp, profile.signed_zero)))
        src = f"mx_dequantize.json#{t['tcId']}"
        if ok:
            out.append(CaseResult(src, t["flags"], "pass"))
            continue
        matched = [f for v in variants.get(t["tcId"], [])
                   if np.array_equal(_round_to(from_hex(v["y"], "float64"), got.dtype), gi)
                   for f in v["flags"]]
        clause = _first_clause(t["flags"], _CODE_ORDER, "MX-5.6")
        j = int(np.flatnonzero(~_dequant_ok(gi, exp, profile.signed_zero))[0])
        cause = _dequant_cause(gi, exp, int(s[i, 0]))
        if cause == "ScaleOffsetPowerOfTwo":
            clause = "MX-5.6"
            j = int(np.flatnonzero(np.isfinite(exp) & (exp != 0))[0])
        if cause in ("SignedZero", "NegativeZero"):
            clause = "MX-3.3"
        detail = (f"scale {t['scale']}, element {j} code {int(c[i, j]):02x}: expected "
                  f"{exp[j]!r} got {gi[j]!r} (output dtype {got.dtype})")
        if cause == "ScaleOffsetPowerOfTwo":
            detail += f"; every value x 2^{power_of_two_offset(gi, exp)}"
        out.append(CaseResult(src, t["flags"], "fail", clause, "values", detail,
                              repro_snippet("fn(scales, codes)", {"scales": s[i:i + 1],
                                                                  "codes": c[i:i + 1]},
                                            {"y": from_hex(t["y"], "float64")},
                                            {"y": gi}, clause), matched, cause=cause))
    return out


# ------------------------------------------------------------------------------------- pack
def run_pack(fn, vs, profile, fmt, use_bulk):
    valid, variants = split_variants(group_tests(vs.docs["fp4_pack.json"], "Fp4Pack"))
    out = []
    for t in valid:
        c = from_hex(t["codes"], "uint8").reshape(1, -1)
        exp = from_hex(t["packed"], "uint8").reshape(1, -1)
        src = f"fp4_pack.json#{t['tcId']}"
        try:
            got = as_u8("packed", fn(c.copy()), exp.shape)
        except Exception as err:  # noqa: BLE001
            out.append(convention_failure(src, t["flags"], err, 1))
            continue
        if (got == exp).all():
            out.append(CaseResult(src, t["flags"], "pass"))
            continue
        matched = [f for v in variants.get(t["tcId"], [])
                   if (from_hex(v["packed"], "uint8").reshape(1, -1) == got).all()
                   for f in v["flags"]]
        out.append(CaseResult(src, t["flags"], "fail", "MX-8.1", "packed",
                              "bytes differ: " + diff_detail(exp, got),
                              repro_snippet("fn(codes)", {"codes": c}, {"packed": exp},
                                            {"packed": got}, "MX-8.1"), matched))
    return out


# ------------------------------------------------------------------------------------- dot
def output_unit_roundoff(dtype) -> float:
    name = np.dtype(dtype).name
    return {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11,
            "bfloat16": 2.0 ** -8}.get(name, 2.0 ** -8)


def dot_tolerance(c, bound, k, out_dtype, accumulate_u) -> np.ndarray:
    """CF-3.6: |got - c| <= (k + 1) * u_acc * (|A| @ |B|^T) + u_out * |c|."""
    return (k + 1) * accumulate_u * bound + output_unit_roundoff(out_dtype) * np.abs(c)


def run_dot_scaled(fn, vs, profile, fmt, use_bulk):
    valid, _ = split_variants(group_tests(vs.docs["mx_dot_scaled.json"], "MxDotScaled", format=fmt))
    cases = []
    for t in valid:
        m, n, k = t["m"], t["n"], t["k"]
        cases.append((f"mx_dot_scaled.json#{t['tcId']}", t["flags"],
                      from_hex(t["aScales"], "uint8", (m, k // 32)),
                      from_hex(t["aCodes"], "uint8", (m, k)),
                      from_hex(t["bScales"], "uint8", (n, k // 32)),
                      from_hex(t["bCodes"], "uint8", (n, k)),
                      from_hex(t["c"], "float64", (m, n)), from_hex(t["absBound"], "float64", (m, n))))
    if use_bulk and f"dot_scaled_{fmt}" in vs.bulk:
        a, _ = vs.bulk[f"dot_scaled_{fmt}"]
        cases.append((f"bulk/dot_scaled_{fmt}", ["Accumulation", "Random"], a["aScales"], a["aCodes"],
                      a["bScales"], a["bCodes"], a["c"], a["absBound"]))
    out = []
    for src, flags, a_s, a_c, b_s, b_c, c, bound in cases:
        try:
            got = as_float("c", fn(a_s.copy(), a_c.copy(), b_s.copy(), b_c.copy()), c.shape)
        except Exception as err:  # noqa: BLE001
            out.append(convention_failure(src, flags, err, 1))
            continue
        g = got.astype(np.float64)
        tol = (dot_tolerance(c, bound, a_c.shape[1], got.dtype, profile.accumulate_u)
               if not profile.accumulation_model else
               claimed_model_tolerance(a_s, a_c, b_s, b_c, profile.accumulation_model, got.dtype))
        with np.errstate(invalid="ignore"):
            err = np.abs(g - c)
            ok = err <= tol
        if ok.all():
            out.append(CaseResult(src, flags, "pass"))
            continue
        i, j = np.argwhere(~ok)[0]
        clause = _first_clause(flags, ("ScaleCodeZero",), "CF-3.6")
        cause, models = dot_cause(g, a_s, a_c, b_s, b_c, got.dtype)
        detail = (f"{int((~ok).sum())} of {ok.size} outputs outside tolerance; C[{i},{j}] expected "
                  f"{c[i, j]!r} got {g[i, j]!r} (tolerance {tol[i, j]:.3g})"
                  + (f"; bit for bit the {models} accumulation model (MX-12.1)" if models else ""))
        out.append(CaseResult(src, flags, "fail", clause, "c", detail,
                              repro_snippet("fn(a_scales, a_codes, b_scales, b_codes)",
                                            {"a_scales": a_s, "a_codes": a_c, "b_scales": b_s,
                                             "b_codes": b_c}, {"c": c}, {"c": g}, clause),
                              cause=cause, rule=models))
    return out


def claimed_model_tolerance(a_s, a_c, b_s, b_c, model: str, dtype) -> np.ndarray:
    """CF-3.15: the MX-12.2 bound of the claimed accumulation model for an output of ``dtype``
    (float32, float16, bfloat16, float64; any other dtype is judged as bfloat16)."""
    from torq_ref.mx.gemm import model_tolerance

    name = np.dtype(dtype).name
    out = name if name in ("float32", "float16", "bfloat16", "float64") else "bfloat16"
    return model_tolerance(a_s, a_c, b_s, b_c, model, out)


def dot_cause(g, a_s, a_c, b_s, b_c, dtype) -> tuple[str, str]:
    """CF-3.14: (cause, models) of a dot_scaled output outside the CF-3.6 tolerance: the MX-12.1
    accumulation models it equals bit for bit (rounded to its own dtype, and to bfloat16:
    a float32 output can hold an upcast path's bfloat16 result) -> AccumulationModel; else
    NonFiniteOutput (Inf or NaN where a number is expected) or OutsideTolerance."""
    from torq_ref.mx.gemm import matching_models

    outs = [np.dtype(dtype).name] if np.dtype(dtype).name in ("float32", "float16") else []
    models = []
    for o in outs + ["bfloat16"]:
        models += [m for m in matching_models(g, a_s, a_c, b_s, b_c, o) if m not in models]
    if models:
        return "AccumulationModel", "/".join(models)
    if not np.isfinite(g).all():
        return "NonFiniteOutput", ""
    return "OutsideTolerance", ""


RUNNERS = {"encode": run_encode, "quantize": run_quantize, "dequantize": run_dequantize,
           "pack": run_pack, "swizzle": run_swizzle, "dot_scaled": run_dot_scaled,
           "fake-quant": run_fake_quant, "gguf-block": run_gguf_block, "e8m0-cast": run_e8m0_cast}
RUNNERS.update(ROTATION_RUNNERS)      # hadamard, rotate-quantize, schur-horn, maxent (CF-5)
