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
    swizzle     fn(scales uint8 (rows, cols))                -> uint8 (padded_rows * padded_cols,)
    dot_scaled  fn(a_scales (m, K/32), a_codes (m, K), b_scales (n, K/32), b_codes (n, K))
                                                             -> float (m, n) = A @ B^T
"""
from __future__ import annotations

import numpy as np

from torq_ref.golden.flags import FLAGS
from torq_ref.golden.hexio import from_hex

from .report import CaseResult, hexwords, repro_snippet

KINDS = ("encode", "quantize", "dequantize", "pack", "swizzle", "dot_scaled")
RULE_CLAUSE = {"floor": "MX-4.2", "rceil": "MX-4.3", "ceil": "MX-4.4", "even": "MX-4.5"}
#: failures are kept individually up to this many per call; beyond it they are counted
MAX_KEPT = 200


class ConventionError(TypeError):
    """The kernel's output does not follow the kind's calling convention (CF-1.2)."""


def _tests(doc: dict, gtype: str, **params):
    for g in doc["testGroups"]:
        if g["type"] == gtype and all(g.get(k) == v for k, v in params.items()):
            return g["tests"]
    return None


def _split(tests):
    """valid tests and, for each tcId, its acceptable / invalid variants."""
    valid = [t for t in tests if t["result"] == "valid"]
    variants: dict = {}
    for t in tests:
        if "variantOf" in t:
            variants.setdefault(t["variantOf"], []).append(t)
    return valid, variants


def _as_u8(name, a, shape):
    a = np.asarray(a)
    if a.dtype != np.uint8:
        if a.dtype.kind in "iu" and (a.size == 0 or (a.min() >= 0 and a.max() <= 255)):
            a = a.astype(np.uint8)
        else:
            raise ConventionError(f"{name} must be uint8, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ConventionError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def _as_float(name, a, shape):
    a = np.asarray(a)
    if a.dtype.kind != "f" and a.dtype.name != "bfloat16":
        raise ConventionError(f"{name} must be a float array, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ConventionError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def _convention_failure(source, flags, err, count) -> CaseResult:
    return CaseResult(source, list(flags), "fail", "CF-1.2", "call",
                      f"{type(err).__name__}: {err}", "", count=count)


def _first_clause(flags, order, default):
    for f in order:
        if f in flags:
            return FLAGS[f].clause
    return default


_SCALE_ORDER = ("PowerOfTwo", "NaNBlock", "InfBlock", "ZeroBlock", "ExtremeMagnitude",
                "RcdSubnormalQuotient", "Bf16Trap")
_CODE_ORDER = ("Tie", "TieNeighbour", "ScaleCodeZero", "Saturation", "SignedZero",
               "MixedMagnitude", "Subnormal", "NonFinite", "ExactValue", "PackOrder",
               "SwizzleLayout", "ScaleNaN", "Overflow", "NVFP4")


def _diff_detail(exp, got, limit=4):
    idx = np.flatnonzero(exp.ravel() != got.ravel())[:limit]
    return ("elements " + ", ".join(f"[{i}] expected {int(exp.ravel()[i]):02x} got "
                                    f"{int(got.ravel()[i]):02x}" for i in idx))


# ------------------------------------------------------------------------------------- encode
def run_encode(fn, vs, profile, fmt, use_bulk):
    doc = vs.docs["mx_encode.json"]
    tests = _tests(doc, "MxElementEncode", format=fmt)
    if tests is None:
        raise ValueError(f"no encode vectors for format {fmt!r}")
    valid, variants = _split(tests)
    x = np.concatenate([from_hex(t["x"], "float32") for t in valid])          # (n,)
    out = []
    try:
        got = _as_u8("codes", fn(x.copy()), x.shape)
    except Exception as err:   # noqa: BLE001 - any kernel error is a reported failure
        return [_convention_failure("mx_encode.json", ["Convention"], err, len(valid))]
    for i, t in enumerate(valid):
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
        clause = _first_clause(t["flags"], _CODE_ORDER, "MX-3.1")
        xi = x[i:i + 1]
        out.append(CaseResult(src, t["flags"], "fail", clause, "code",
                              f"x={hexwords(xi)} ({float(xi[0]):.9g}) expected {t['code']} got "
                              f"{hexwords(g)}", repro_snippet("fn(x)", {"x": xi}, {"code": exp},
                                                              {"code": g}, clause), matched))
    if use_bulk and fmt == "e2m1" and "e2m1_encode_bf16_all" in vs.bulk:
        arrays, _ = vs.bulk["e2m1_encode_bf16_all"]
        xb, cb = arrays["x"], arrays["code"]
        try:
            gb = _as_u8("codes", fn(xb.copy()), xb.shape)
        except Exception as err:  # noqa: BLE001
            return out + [_convention_failure("bulk/e2m1_encode_bf16_all", ["Exhaustive"], err, xb.size)]
        bad = gb != cb
        nan = np.isnan(xb)
        acc = bad & nan & ("NanElementCode" in profile.acceptable_flags)
        bad &= ~acc
        out.append(CaseResult("bulk/e2m1_encode_bf16_all", ["Exhaustive"], "pass",
                              count=int((~bad & ~acc).sum())))
        if acc.any():
            out.append(CaseResult("bulk/e2m1_encode_bf16_all", ["Exhaustive", "NanElementCode"],
                                  "acceptable", count=int(acc.sum()), matched=["NanElementCode"]))
        for j, i in enumerate(np.flatnonzero(bad)):
            if j >= MAX_KEPT:
                out.append(CaseResult("bulk/e2m1_encode_bf16_all", ["Exhaustive"], "fail", "MX-3.1",
                                      "code", "further failures", count=int(bad.sum()) - MAX_KEPT))
                break
            xi = xb[i:i + 1]
            out.append(CaseResult(f"bulk/e2m1_encode_bf16_all[{i}]", ["Exhaustive"], "fail", "MX-3.1",
                                  "code", f"x={hexwords(xi)} ({float(xi[0]):.9g}) expected "
                                  f"{int(cb[i]):02x} got {int(gb[i]):02x}",
                                  repro_snippet("fn(x)", {"x": xi}, {"code": cb[i:i + 1]},
                                                {"code": gb[i:i + 1]}, "MX-3.1")))
    return out


# ------------------------------------------------------------------------------------- quantize
def _judge_block(src, flags, x, exp_s, exp_c, got_s, got_c, variants, other_rules, profile,
                 rule, call, nvfp4=False, fmt=None):
    """One block: pass / acceptable / fail with reproduction."""
    s_ok = bool((got_s == exp_s).all())
    c_ok = exp_c is None or bool((got_c == exp_c).all())
    if s_ok and c_ok:
        return CaseResult(src, flags, "pass")
    if s_ok and "NanElementCode" in flags and "NanElementCode" in profile.acceptable_flags:
        return CaseResult(src, flags, "acceptable", matched=["NanElementCode"])
    matched = []
    for v in variants:
        vs_ = from_hex(v["scale"], "uint8").reshape(got_s.shape)
        vc = None if v["codes"] is None else from_hex(v["codes"], "uint8").reshape(got_c.shape)
        if (got_s == vs_).all() and (vc is None or (got_c == vc).all()):
            if v["result"] == "acceptable" and all(
                    f in profile.acceptable_flags or f in flags for f in v["flags"]):
                return CaseResult(src, flags, "acceptable", matched=[f for f in v["flags"]
                                                                     if f not in flags])
            matched += v["flags"]
    for r, (os_, oc) in other_rules.items():
        if (got_s == os_).all() and (got_c == oc).all():
            return CaseResult(src, flags, "acceptable", matched=["ScaleRuleVariant", r])
    if not s_ok:
        fld = "scale"
        base = "MX-9.2" if nvfp4 else RULE_CLAUSE[rule]
        clause = _first_clause(flags, _SCALE_ORDER, base)
        detail = f"scale expected {hexwords(exp_s)} got {hexwords(got_s)}"
    else:
        fld = "codes"
        clause = _first_clause(flags, _CODE_ORDER, "MX-9.2" if nvfp4 else "MX-5.3")
        diag = None if nvfp4 else _code0_diagnosis(x, exp_s, got_c, fmt)
        if diag:
            clause = "MX-4.1"
            matched = matched + [diag]
        detail = "codes differ: " + _diff_detail(exp_c, got_c)
    repro = repro_snippet(call, {"x": x}, {"scales": exp_s, "codes": exp_c},
                          {"scales": got_s, "codes": got_c}, clause)
    return CaseResult(src, flags, "fail", clause, fld, detail, repro, matched)


def _code0_diagnosis(x, exp_s, got_c, fmt):
    """Name the two known scale-code-0 defects when a code-0 block's codes show one (CF-3.3)."""
    if fmt is None or int(exp_s.ravel()[0]) != 0:
        return None
    from torq_ref import mx
    x64 = x.astype(np.float64)
    if (got_c == mx.encode(np.ldexp(x64, 126), fmt)).all():
        return "DivisorClampedAt2^-126"
    if (mx.decode(got_c, fmt) == 0).all() and (mx.decode(mx.encode(np.ldexp(x64, 127), fmt), fmt) != 0).any():
        return "FlushedScaleCodeZero"
    return None


def _call_quantize(fn, x, nb, g=None):
    out = fn(x.copy()) if g is None else fn(x.copy(), np.float32(g))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ConventionError("quantize must return a pair (scales, codes)")
    s = _as_u8("scales", out[0], (x.shape[0], nb))
    c = _as_u8("codes", out[1], x.shape)
    return s, c


def run_quantize(fn, vs, profile, fmt, use_bulk):
    if fmt == "nvfp4":
        return _run_nvfp4(fn, vs, use_bulk)
    rule = profile.scale_rule
    doc = vs.docs["mx_quantize.json"]
    tests = _tests(doc, "MxQuantize", format=fmt, scaleRule=rule)
    bulk_name = f"quantize_{fmt}_{rule}"
    if tests is None and bulk_name not in vs.bulk:
        raise ValueError(f"no quantize vectors for format {fmt!r} under rule {rule!r}")
    out = []
    if tests is not None:
        valid, variants = _split(tests)
        others = {}
        for r in profile.acceptable_rules:
            ot = _tests(doc, "MxQuantize", format=fmt, scaleRule=r)
            if ot:
                others[r] = {t["x"]: t for t in ot if t["result"] == "valid"}
        x = np.stack([from_hex(t["x"], "float32") for t in valid])             # (n, 32)
        try:
            gs, gc = _call_quantize(fn, x, 1)
        except Exception as err:  # noqa: BLE001
            return [_convention_failure("mx_quantize.json", ["Convention"], err, len(valid))]
        for i, t in enumerate(valid):
            other = {r: (from_hex(m[t["x"]]["scale"], "uint8").reshape(1, 1),
                         from_hex(m[t["x"]]["codes"], "uint8").reshape(1, -1))
                     for r, m in others.items() if t["x"] in m and m[t["x"]]["codes"]}
            exp_c = None if t["codes"] is None else from_hex(t["codes"], "uint8").reshape(1, -1)
            out.append(_judge_block(f"mx_quantize.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                    from_hex(t["scale"], "uint8").reshape(1, 1), exp_c,
                                    gs[i:i + 1], gc[i:i + 1], variants.get(t["tcId"], []), other,
                                    profile, rule, "scales, codes = fn(x)", fmt=fmt))
    if use_bulk and bulk_name in vs.bulk:
        arrays, _ = vs.bulk[bulk_name]
        others = [vs.bulk[f"quantize_{fmt}_{r}"][0] for r in profile.acceptable_rules
                  if f"quantize_{fmt}_{r}" in vs.bulk]
        out += _bulk_blocks(fn, f"bulk/{bulk_name}", arrays, 32, profile, rule, others=others, fmt=fmt)
    return out


def _bulk_blocks(fn, src, arrays, bs, profile, rule, nvfp4=False, others=(), fmt=None):
    x, es, ec = arrays["x"], arrays["scales"], arrays["codes"]
    g = arrays.get("globalScale")
    try:
        gs, gc = _call_quantize(fn, x, x.shape[1] // bs, None if g is None else g[0])
    except Exception as err:  # noqa: BLE001
        return [_convention_failure(src, ["Random"], err, es.size)]
    rows, nb = es.shape
    blk_ok = (gs == es) & (gc.reshape(rows, nb, bs) == ec.reshape(rows, nb, bs)).all(-1)
    flags = ["Random"] + (["NVFP4"] if nvfp4 else [])
    out = [CaseResult(src, flags, "pass", count=int(blk_ok.sum()))]
    acc = np.zeros_like(blk_ok)
    for o in others:       # the same inputs under a scale rule the profile accepts (CF-2.3)
        if np.array_equal(o["x"], x):
            acc |= (gs == o["scales"]) & (gc.reshape(rows, nb, bs) ==
                                          o["codes"].reshape(rows, nb, bs)).all(-1)
    acc &= ~blk_ok
    if acc.any():
        out.append(CaseResult(src, flags, "acceptable", count=int(acc.sum()),
                              matched=["ScaleRuleVariant"]))
    blk_ok = blk_ok | acc
    call = "scales, codes = fn(x)" if g is None else f"scales, codes = fn(x, np.float32({float(g[0])!r}))"
    bad = np.argwhere(~blk_ok)
    for j, (r, b) in enumerate(bad):
        if j >= MAX_KEPT:
            out.append(CaseResult(src, flags, "fail", "MX-9.2" if nvfp4 else RULE_CLAUSE[rule], "block",
                                  "further failing blocks", count=len(bad) - MAX_KEPT))
            break
        sl = slice(b * bs, (b + 1) * bs)
        out.append(_judge_block(f"{src}[row {r}, block {b}]", flags, x[r:r + 1, sl],
                                es[r:r + 1, b:b + 1], ec[r:r + 1, sl], gs[r:r + 1, b:b + 1],
                                gc[r:r + 1, sl], [], {}, profile, rule, call, nvfp4, fmt))
    return out


def _run_nvfp4(fn, vs, use_bulk):
    from .profiles import Profile

    prof = Profile("nvfp4", "floor", "NVFP4 (spec/MX.md section 9)")
    tests = _tests(vs.docs["nvfp4_quantize.json"], "Nvfp4Quantize")
    out = []
    by_g: dict = {}
    for t in tests:
        by_g.setdefault(t["globalScale"], []).append(t)
    for gh, ts in by_g.items():
        g = from_hex(gh, "float32")[0]
        x = np.stack([from_hex(t["x"], "float32") for t in ts])                 # (n, 16)
        try:
            gs, gc = _call_quantize(fn, x, 1, g)
        except Exception as err:  # noqa: BLE001
            out.append(_convention_failure("nvfp4_quantize.json", ["Convention"], err, len(ts)))
            continue
        call = f"scales, codes = fn(x, np.float32({float(g)!r}))"
        for i, t in enumerate(ts):
            out.append(_judge_block(f"nvfp4_quantize.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                    from_hex(t["scale"], "uint8").reshape(1, 1),
                                    from_hex(t["codes"], "uint8").reshape(1, -1), gs[i:i + 1],
                                    gc[i:i + 1], [], {}, prof, "floor", call, nvfp4=True))
    if use_bulk and "nvfp4_quantize" in vs.bulk:
        out += _bulk_blocks(fn, "bulk/nvfp4_quantize", vs.bulk["nvfp4_quantize"][0], 16, prof,
                            "floor", nvfp4=True)
    return out


# ------------------------------------------------------------------------------------- dequantize
def _round_to(exp: np.ndarray, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return exp.astype(dtype).astype(np.float64)


def run_dequantize(fn, vs, profile, fmt, use_bulk):
    tests = _tests(vs.docs["mx_dequantize.json"], "MxDequantize", format=fmt)
    if tests is None:
        raise ValueError(f"no dequantize vectors for format {fmt!r}")
    valid, variants = _split(tests)
    s = np.stack([from_hex(t["scale"], "uint8") for t in valid])               # (n, 1)
    c = np.stack([from_hex(t["codes"], "uint8") for t in valid])               # (n, 32)
    try:
        got = _as_float("values", fn(s.copy(), c.copy()), c.shape)
    except Exception as err:  # noqa: BLE001
        return [_convention_failure("mx_dequantize.json", ["Convention"], err, len(valid))]
    g64 = got.astype(np.float64)
    out = []
    for i, t in enumerate(valid):
        exp = _round_to(from_hex(t["y"], "float64"), got.dtype)
        gi = g64[i]
        ok = bool(np.all((gi == exp) | (np.isnan(gi) & np.isnan(exp))))
        src = f"mx_dequantize.json#{t['tcId']}"
        if ok:
            out.append(CaseResult(src, t["flags"], "pass"))
            continue
        matched = [f for v in variants.get(t["tcId"], [])
                   if np.array_equal(_round_to(from_hex(v["y"], "float64"), got.dtype), gi)
                   for f in v["flags"]]
        clause = _first_clause(t["flags"], _CODE_ORDER, "MX-5.6")
        j = int(np.flatnonzero(~((gi == exp) | (np.isnan(gi) & np.isnan(exp))))[0])
        detail = (f"scale {t['scale']}, element {j} code {int(c[i, j]):02x}: expected "
                  f"{exp[j]!r} got {gi[j]!r} (output dtype {got.dtype})")
        out.append(CaseResult(src, t["flags"], "fail", clause, "values", detail,
                              repro_snippet("fn(scales, codes)", {"scales": s[i:i + 1],
                                                                  "codes": c[i:i + 1]},
                                            {"y": from_hex(t["y"], "float64")},
                                            {"y": gi}, clause), matched))
    return out


# ------------------------------------------------------------------------------------- pack
def run_pack(fn, vs, profile, fmt, use_bulk):
    valid, variants = _split(_tests(vs.docs["fp4_pack.json"], "Fp4Pack"))
    out = []
    for t in valid:
        c = from_hex(t["codes"], "uint8").reshape(1, -1)
        exp = from_hex(t["packed"], "uint8").reshape(1, -1)
        src = f"fp4_pack.json#{t['tcId']}"
        try:
            got = _as_u8("packed", fn(c.copy()), exp.shape)
        except Exception as err:  # noqa: BLE001
            out.append(_convention_failure(src, t["flags"], err, 1))
            continue
        if (got == exp).all():
            out.append(CaseResult(src, t["flags"], "pass"))
            continue
        matched = [f for v in variants.get(t["tcId"], [])
                   if (from_hex(v["packed"], "uint8").reshape(1, -1) == got).all()
                   for f in v["flags"]]
        out.append(CaseResult(src, t["flags"], "fail", "MX-8.1", "packed",
                              "bytes differ: " + _diff_detail(exp, got),
                              repro_snippet("fn(codes)", {"codes": c}, {"packed": exp},
                                            {"packed": got}, "MX-8.1"), matched))
    return out


# ------------------------------------------------------------------------------------- swizzle
def run_swizzle(fn, vs, profile, fmt, use_bulk):
    valid, _ = _split(_tests(vs.docs["scale_swizzle.json"], "ScaleSwizzle"))
    cases = [(f"scale_swizzle.json#{t['tcId']}", t["flags"],
              from_hex(t["scales"], "uint8").reshape(t["rows"], t["cols"]),
              from_hex(t["swizzled"], "uint8")) for t in valid]
    if use_bulk and "swizzle" in vs.bulk:
        a, _ = vs.bulk["swizzle"]
        cases.append(("bulk/swizzle", ["SwizzleLayout", "SwizzlePadding"], a["scales"], a["swizzled"]))
    out = []
    for src, flags, s, exp in cases:
        try:
            got = _as_u8("swizzled", np.asarray(fn(s.copy())).reshape(-1), exp.shape)
        except Exception as err:  # noqa: BLE001
            out.append(_convention_failure(src, flags, err, 1))
            continue
        if (got == exp).all():
            out.append(CaseResult(src, flags, "pass"))
        else:
            out.append(CaseResult(src, flags, "fail", "MX-8.2", "swizzled",
                                  f"{s.shape[0]} x {s.shape[1]}: " + _diff_detail(exp, got),
                                  repro_snippet("fn(scales)", {"scales": s}, {"swizzled": exp},
                                                {"swizzled": got}, "MX-8.2")))
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
    valid, _ = _split(_tests(vs.docs["mx_dot_scaled.json"], "MxDotScaled", format=fmt))
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
            got = _as_float("c", fn(a_s.copy(), a_c.copy(), b_s.copy(), b_c.copy()), c.shape)
        except Exception as err:  # noqa: BLE001
            out.append(_convention_failure(src, flags, err, 1))
            continue
        g = got.astype(np.float64)
        tol = dot_tolerance(c, bound, a_c.shape[1], got.dtype, profile.accumulate_u)
        with np.errstate(invalid="ignore"):
            err = np.abs(g - c)
            ok = err <= tol
        if ok.all():
            out.append(CaseResult(src, flags, "pass"))
            continue
        i, j = np.argwhere(~ok)[0]
        clause = _first_clause(flags, ("ScaleCodeZero",), "CF-3.6")
        detail = (f"{int((~ok).sum())} of {ok.size} outputs outside tolerance; C[{i},{j}] expected "
                  f"{c[i, j]!r} got {g[i, j]!r} (tolerance {tol[i, j]:.3g})")
        out.append(CaseResult(src, flags, "fail", clause, "c", detail,
                              repro_snippet("fn(a_scales, a_codes, b_scales, b_codes)",
                                            {"a_scales": a_s, "a_codes": a_c, "b_scales": b_s,
                                             "b_codes": b_c}, {"c": c}, {"c": g}, clause)))
    return out


RUNNERS = {"encode": run_encode, "quantize": run_quantize, "dequantize": run_dequantize,
           "pack": run_pack, "swizzle": run_swizzle, "dot_scaled": run_dot_scaled}
