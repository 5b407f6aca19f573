"""The block kinds: quantize (MX and NVFP4), fake-quant and gguf-block (spec/CF.md CF-1.2,
CF-3.1, CF-3.5, CF-3.7 .. CF-3.9).

    quantize    fn(x float32 (rows, K)) -> (scales uint8 (rows, K/32), codes uint8 (rows, K))
    quantize    fmt="nvfp4": fn(x, g float32) -> (scales E4M3 (rows, K/16), codes (rows, K));
                under a reciprocal profile g is the encode scale fp32(1 / g_decode)
    fake-quant  fn(x float32 (rows, K)) -> float (rows, K): dequantize(quantize(x))
    gguf-block  fn(x float32 (rows, K)) -> uint8 (rows, K/32 * 17): ggml block_mxfp4 bytes

Every failing block is classified (:mod:`.causes`); the first ``MAX_KEPT`` of a source keep
their reproduction, the rest are counted per cause.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex

from torq_ref.golden.defects import codes_for_scale

from .causes import block_candidates, clause_of, element_causes, join, resolve, rules_followed
from .common import MAX_KEPT, ConventionError, as_float, as_u8, convention_failure, diff_detail, split_variants, group_tests
from .report import CaseResult, hexwords, repro_snippet

ALL_RULES = ("floor", "rceil", "ceil", "even")


# ------------------------------------------------------------------------------------- judging
def _variant_match(variants, got_s, got_c, flags, profile):
    """('acceptable', flags) if an acceptable variant matches (CF-2.2), else (None, the flags of
    the invalid variants matched: CF-3.4 reports the failure with them)."""
    matched = []
    for v in variants:
        vs_ = from_hex(v["scale"], "uint8").reshape(got_s.shape)
        vc = None if v["codes"] is None else from_hex(v["codes"], "uint8").reshape(got_c.shape)
        if (got_s == vs_).all() and (vc is None or (got_c == vc).all()):
            if v["result"] == "acceptable" and all(
                    f in profile.acceptable_flags or f in flags for f in v["flags"]):
                return "acceptable", [f for f in v["flags"] if f not in flags]
            matched += v["flags"]
    return None, matched


@dataclass
class Pending:
    """A failing block whose cause waits for the run-level resolution (causes.resolve)."""
    src: str
    flags: list
    x: np.ndarray
    exp_s: np.ndarray
    exp_c: np.ndarray
    got_s: np.ndarray
    got_c: np.ndarray
    matched: list
    candidates: list
    profile: object
    rule: str
    call: str
    nvfp4: bool
    repro: bool
    output_name: str
    status: str = "pending"
    repro_fn: object = None     # clause -> reproduction text, replacing the default one

    def finalize(self, cause: str, crule: str) -> CaseResult:
        p, rule = self.profile, self.rule
        if crule != rule and crule in p.acceptable_rules and cause == "OtherScaleRule":
            return CaseResult(self.src, self.flags, "acceptable", matched=["ScaleRuleVariant", crule],
                              cause=cause, rule=crule)
        if "SignedZero" in cause.split("+") and p.signed_zero == "acceptable":
            if cause == "SignedZero":
                return CaseResult(self.src, self.flags, "acceptable", matched=["UnsignedZero"],
                                  cause=cause)
            cause = "+".join(c for c in cause.split("+") if c != "SignedZero")
        clause = clause_of(cause, rule, self.nvfp4)
        under = "" if crule in ("", rule) else crule
        exp_s, exp_c, got_s, got_c = self.exp_s, self.exp_c, self.got_s, self.got_c
        c_ok = exp_c is None or bool((got_c == exp_c).all())
        if not (got_s == exp_s).all():
            fld = "scale"
            detail = f"scale expected {hexwords(exp_s)} got {hexwords(got_s)}"
            if not c_ok:
                detail += "; codes differ: " + diff_detail(exp_c, got_c)
        else:
            fld = self.output_name
            detail = "codes differ: " + diff_detail(exp_c, got_c)
        if under:
            detail = f"scale follows {under.upper()}; " + detail
        matched = list(self.matched)
        if cause.startswith(("DivisorClamped", "FlushedScale")):
            matched.append(cause)
        if not self.repro:
            text = ""
        elif self.repro_fn is not None:
            text = self.repro_fn(clause)
        else:
            text = repro_snippet(self.call, {"x": self.x}, {"scales": exp_s, "codes": exp_c},
                                 {"scales": got_s, "codes": got_c}, clause)
        return CaseResult(self.src, self.flags, "fail", clause, fld, detail, text, matched,
                          cause=cause, rule=under)


def judge_block(src, flags, x, exp_s, exp_c, got_s, got_c, variants, other_rules, profile, rule,
                call, fmt, nvfp4=None, repro=True, output_name="codes", follows=()):
    """One block (CF-3.1, CF-3.3): a CaseResult (pass / acceptable), or a Pending failure with
    its candidate causes. ``nvfp4`` is None for MX blocks, else a dict with the tensor scale
    and the models to try."""
    s_ok = bool((got_s == exp_s).all())
    c_ok = exp_c is None or bool((got_c == exp_c).all())
    if s_ok and c_ok:
        return CaseResult(src, flags, "pass")
    if s_ok and "NanElementCode" in flags and "NanElementCode" in profile.acceptable_flags:
        return CaseResult(src, flags, "acceptable", matched=["NanElementCode"])
    status, matched = _variant_match(variants, got_s, got_c, flags, profile)
    if status:
        return CaseResult(src, flags, "acceptable", matched=matched)
    for r, (os_, oc) in other_rules.items():
        if (got_s == os_).all() and (got_c == oc).all():
            return CaseResult(src, flags, "acceptable", matched=["ScaleRuleVariant", r],
                              cause="OtherScaleRule", rule=r)
    if nvfp4 is not None:
        cands = [(_classify_nvfp4(x, exp_s, exp_c, got_s, got_c, nvfp4), rule)]
    else:
        cands = block_candidates(x, exp_s.ravel()[0], exp_c, got_s.ravel()[0], got_c, fmt, rule,
                                 follows, ALL_RULES)
    return Pending(src, flags, x, exp_s, exp_c, got_s, got_c, matched, cands, profile, rule, call,
                   nvfp4 is not None, repro, output_name)


@dataclass
class Deferred:
    """Any failure whose cause waits for the resolution: candidates and a finalizer."""
    candidates: list
    make: object                # (cause, rule) -> CaseResult
    status: str = "pending"

    def finalize(self, cause, crule):
        return self.make(cause, crule)


def finish(results) -> list:
    """Resolve the causes of the pending failures of one run (causes.resolve) in place."""
    idx = [i for i, r in enumerate(results) if isinstance(r, (Pending, Deferred))]
    for i, (cause, crule) in zip(idx, resolve([results[i].candidates for i in idx])):
        results[i] = results[i].finalize(cause, crule)
    return results


def _classify_nvfp4(x, exp_s, exp_c, got_s, got_c, ctx):
    """NVFP4 causes: another tensor-scale recipe (named), an all-zero block's scale, a zero
    denominator, or the element causes against the codes of the kernel's own E4M3 scale."""
    for name, model in ctx["models"].items():
        try:
            with np.errstate(over="ignore", divide="ignore"):
                ms, mc = model(x)
        except ValueError:      # the model cannot express this tensor scale (1 / g overflows)
            continue
        if np.array_equal(ms, got_s) and np.array_equal(mc, got_c):
            return name

    def elements(s, ref_c):
        q, den = ctx["quotients"](x, s)
        if den == 0 and not np.array_equal(ref_c, got_c) and \
                (np.abs(mx.decode(got_c[ref_c != got_c], "e2m1")) == 6).all():
            return "Nvfp4ZeroDenominator"
        return join(element_causes(x, q, ref_c, got_c, "e2m1"))
    if np.array_equal(got_s, exp_s):
        return elements(exp_s, exp_c)
    own = ctx["codes"](x, got_s)
    tail = "" if np.array_equal(own, got_c) else "+" + elements(got_s, own)
    if not np.abs(x).max() > 0:
        return "ZeroBlockScale" + tail
    if np.array_equal(got_c, exp_c):
        return "ScaleByteOnly"
    return "WrongScale" + tail


def aggregate_bulk(out, src, flags, results):
    """Keep the first MAX_KEPT failing results, count the rest per (status, cause, clause)."""
    agg: dict = {}
    for j, res in enumerate(results):
        if j < MAX_KEPT or res.status != "fail":
            out.append(res)
            continue
        key = (res.cause, res.rule, res.clause, res.output)
        if key not in agg:
            agg[key] = [0, res]
        agg[key][0] += 1
    for (cause, rule, clause, fld), (n, first) in agg.items():
        out.append(CaseResult(src, flags, "fail", clause, fld,
                              f"{n} further blocks with cause {cause}; first {first.source}: "
                              f"{first.detail}", count=n, cause=cause, rule=rule))
    return out


# ------------------------------------------------------------------------------------- quantize
def _call_quantize(fn, x, nb, g=None):
    out = fn(x.copy()) if g is None else fn(x.copy(), np.float32(g))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ConventionError("quantize must return a pair (scales, codes)")
    s = as_u8("scales", out[0], (x.shape[0], nb))
    c = as_u8("codes", out[1], x.shape)
    return s, c


def _json_quantize_cases(vs, profile, fmt):
    """(valid tests, variants, other-rule outputs per tcId, x (n, 32)) of the profile's group."""
    doc = vs.docs["mx_quantize.json"]
    tests = group_tests(doc, "MxQuantize", format=fmt, scaleRule=profile.scale_rule)
    if tests is None:
        return None
    valid, variants = split_variants(tests)
    others = {}
    for r in profile.acceptable_rules:
        ot = group_tests(doc, "MxQuantize", format=fmt, scaleRule=r)
        if ot:
            others[r] = {t["x"]: t for t in ot if t["result"] == "valid"}
    other = {}
    for t in valid:
        other[t["tcId"]] = {r: (from_hex(m[t["x"]]["scale"], "uint8").reshape(1, 1),
                                from_hex(m[t["x"]]["codes"], "uint8").reshape(1, -1))
                            for r, m in others.items() if t["x"] in m and m[t["x"]]["codes"]}
    x = np.stack([from_hex(t["x"], "float32") for t in valid])                 # (n, 32)
    return valid, variants, other, x


def run_quantize(fn, vs, profile, fmt, use_bulk):
    if fmt == "nvfp4":
        return _run_nvfp4(fn, vs, profile, use_bulk)
    rule = profile.scale_rule
    bulk_name = f"quantize_{fmt}_{rule}"
    cases = _json_quantize_cases(vs, profile, fmt)
    if cases is None and bulk_name not in vs.bulk:
        raise ValueError(f"no quantize vectors for format {fmt!r} under rule {rule!r}")
    out = []
    if cases is not None:
        valid, variants, other, x = cases
        try:
            gs, gc = _call_quantize(fn, x, 1)
        except Exception as err:  # noqa: BLE001 - any kernel error is a reported failure (CF-3.10)
            out.append(convention_failure("mx_quantize.json", ["Convention"], err, len(valid)))
        else:
            follows = rules_followed(x, gs, fmt, rule)
            res = []
            for i, t in enumerate(valid):
                exp_c = None if t["codes"] is None else from_hex(t["codes"], "uint8").reshape(1, -1)
                res.append(judge_block(f"mx_quantize.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                       from_hex(t["scale"], "uint8").reshape(1, 1), exp_c,
                                       gs[i:i + 1], gc[i:i + 1], variants.get(t["tcId"], []),
                                       other[t["tcId"]], profile, rule, "scales, codes = fn(x)", fmt,
                                       follows=follows))
            out += finish(res)
    if use_bulk and bulk_name in vs.bulk:
        out += _bulk_quantize(fn, vs, bulk_name, profile, fmt)
    return out


def _bulk_quantize(fn, vs, bulk_name, profile, fmt):
    arrays, _ = vs.bulk[bulk_name]
    src = f"bulk/{bulk_name}"
    x, es, ec = arrays["x"], arrays["scales"], arrays["codes"]
    try:
        gs, gc = _call_quantize(fn, x, x.shape[1] // 32)
    except Exception as err:  # noqa: BLE001
        return [convention_failure(src, ["Random"], err, es.size)]
    others = [vs.bulk[f"quantize_{fmt}_{r}"][0] for r in profile.acceptable_rules
              if f"quantize_{fmt}_{r}" in vs.bulk]
    return _judge_bulk(src, ["Random"], x, es, ec, gs, gc, 32, profile, profile.scale_rule,
                       "scales, codes = fn(x)", fmt, others)


def _judge_bulk(src, flags, x, es, ec, gs, gc, bs, profile, rule, call, fmt, others=(), nvfp4=None):
    rows, nb = es.shape
    blk = (rows, nb, bs)
    blk_ok = (gs == es) & (gc.reshape(blk) == ec.reshape(blk)).all(-1)
    out = [CaseResult(src, flags, "pass", count=int(blk_ok.sum()))]
    acc = np.zeros_like(blk_ok)
    for o in others:       # the same inputs under a scale rule the profile accepts (CF-2.3)
        if np.array_equal(o["x"], x):
            acc |= (gs == o["scales"]) & (gc.reshape(blk) == o["codes"].reshape(blk)).all(-1)
    acc &= ~blk_ok
    if acc.any():
        out.append(CaseResult(src, flags, "acceptable", count=int(acc.sum()),
                              matched=["ScaleRuleVariant"], cause="OtherScaleRule"))
    bad = np.argwhere(~(blk_ok | acc))
    follows = () if nvfp4 is not None else rules_followed(x, gs, fmt, rule, bs)
    res = []
    for j, (r, b) in enumerate(bad):
        sl = slice(b * bs, (b + 1) * bs)
        res.append(judge_block(f"{src}[row {r}, block {b}]", flags, x[r:r + 1, sl],
                               es[r:r + 1, b:b + 1], ec[r:r + 1, sl], gs[r:r + 1, b:b + 1],
                               gc[r:r + 1, sl], [], {}, profile, rule, call, fmt, nvfp4,
                               repro=j < MAX_KEPT, follows=follows))
    return aggregate_bulk(out, src, flags, finish(res))


# ------------------------------------------------------------------------------------- NVFP4
def _nvfp4_context(g, profile):
    """Expected-output function, quotient function and named recipe models for one g (CF-3.9)."""
    g = np.float32(g)
    if profile.nvfp4_global == "reciprocal":
        with np.errstate(over="ignore", divide="ignore"):
            arg = np.float32(np.float32(1) / g)

        def expect(x):
            t = mx.nvfp4.quantize_nvfp4_reciprocal(x, arg)
            return t.scales, t.codes

        def quot(x, s):
            with np.errstate(under="ignore"):
                den = np.float32(np.float32(mx.VALUE_TABLES["e4m3"][s.ravel()[0]]) / arg)
            return _safe_div(x, den), den

        models = {"Nvfp4DecodeScaleConvention": lambda x: _q(mx.quantize_nvfp4(x, global_scale=np.float32(1) / arg))}
    else:
        arg = g

        def expect(x):
            t = mx.quantize_nvfp4(x, global_scale=g)
            return t.scales, t.codes

        def quot(x, s):
            with np.errstate(under="ignore"):
                den = np.float32(np.float32(mx.VALUE_TABLES["e4m3"][s.ravel()[0]]) * g)
            return _safe_div(x, den), den

        models = {"Nvfp4ReciprocalScaleConvention":
                  lambda x: _q(mx.nvfp4.quantize_nvfp4_reciprocal(x, np.float32(1) / g)),
                  "Nvfp4DivideByTensorScaleFirst": lambda x: _nvfp4_divide_first(x, g)}
    def codes(x, s):
        q, _ = quot(x, s)
        return mx.encode(q, "e2m1").reshape(1, -1)
    return arg, expect, {"quotients": quot, "models": models, "codes": codes}


def _safe_div(x, den):
    """fp32(x / den) as float64; +-0 (sign of x) when den is 0 (MX-9.2)."""
    x = x.astype(np.float32)
    if den == 0:
        return np.copysign(0.0, x).astype(np.float64)
    with np.errstate(over="ignore"):
        return (x / den).astype(np.float64)


def _q(t):
    return t.scales, t.codes


def _nvfp4_divide_first(x, g):
    """x / g first, then an E4M3 block scale of amax / 6 and a division by it (JAX's order)."""
    y = (x.astype(np.float32) / np.float32(g)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        t = mx.quantize_nvfp4(np.where(np.isfinite(y), y, 0), global_scale=1.0)
    return t.scales, t.codes


def _run_nvfp4(fn, vs, profile, use_bulk):
    tests = group_tests(vs.docs["nvfp4_quantize.json"], "Nvfp4Quantize")
    out = []
    by_g: dict = {}
    for t in tests:
        by_g.setdefault(t["globalScale"], []).append(t)
    for gh, ts in by_g.items():
        arg, expect, ctx = _nvfp4_context(from_hex(gh, "float32")[0], profile)
        if not np.isfinite(arg):
            continue        # 1 / g overflows float32: the reciprocal convention cannot say it (CF-2.5)
        x = np.stack([from_hex(t["x"], "float32") for t in ts])                 # (n, 16)
        try:
            gs, gc = _call_quantize(fn, x, 1, arg)
        except Exception as err:  # noqa: BLE001
            out.append(convention_failure("nvfp4_quantize.json", ["Convention"], err, len(ts)))
            continue
        call = f"scales, codes = fn(x, np.float32({float(arg)!r}))"
        res = []
        for i, t in enumerate(ts):
            if profile.nvfp4_global == "reciprocal":
                es, ec = expect(x[i:i + 1])
            else:
                es = from_hex(t["scale"], "uint8").reshape(1, 1)
                ec = from_hex(t["codes"], "uint8").reshape(1, -1)
            res.append(judge_block(f"nvfp4_quantize.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                   es, ec, gs[i:i + 1], gc[i:i + 1], [], {}, profile, "floor",
                                   call, "e2m1", ctx))
        out += finish(res)
    if use_bulk and "nvfp4_quantize" in vs.bulk:
        a = vs.bulk["nvfp4_quantize"][0]
        arg, expect, ctx = _nvfp4_context(a["globalScale"][0], profile)
        src = "bulk/nvfp4_quantize"
        try:
            gs, gc = _call_quantize(fn, a["x"], a["x"].shape[1] // 16, arg)
        except Exception as err:  # noqa: BLE001
            return out + [convention_failure(src, ["Random", "NVFP4"], err, a["scales"].size)]
        es, ec = expect(a["x"]) if profile.nvfp4_global == "reciprocal" else (a["scales"], a["codes"])
        out += _judge_bulk(src, ["Random", "NVFP4"], a["x"], es, ec, gs, gc, 16, profile, "floor",
                           f"scales, codes = fn(x, np.float32({float(arg)!r}))", "e2m1", nvfp4=ctx)
    return out


# ------------------------------------------------------------------------------------- fake-quant
def _values(s, c, fmt, dtype):
    """float64 values of (scales (rows, nb), codes (rows, 32 nb)) rounded to ``dtype``."""
    sv = np.repeat(mx.scale_values(s), 32, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        return (mx.decode(c, fmt) * sv).astype(dtype).astype(np.float64)


def _same_bits(a, b):
    """Elementwise: equal with the same sign of zero, or both NaN."""
    with np.errstate(invalid="ignore"):
        return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


def _infer_scale_codes(got, x, exp_s, fmt, rules_scales, dtype=np.float32):
    """(s, c) pairs: a scale code and element codes with value(c) * 2^(s-127), rounded to the
    output dtype, equal to got bit for bit. If the oracle's own quantization of x under some
    scale reproduces the output, only those scales count (the two nearest the expected one: a
    clamped amax or scale lands far from it); otherwise the expected scale +-3 and every rule's,
    with the codes read back from the output (a block of small values fits several scales)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ss = np.arange(255)
        q = np.ldexp(np.asarray(x, np.float64)[None, :], (127 - ss)[:, None])       # (255, n)
        nat = mx.encode(q, fmt)
        vals = np.ldexp(mx.decode(nat, fmt), (ss - 127)[:, None]).astype(dtype).astype(np.float64)
    ok = np.flatnonzero(_same_bits(vals, got[None, :]).all(-1))
    if ok.size:
        near = sorted(ok, key=lambda v: (abs(int(v) - exp_s), int(v)))[:2]
        return [(int(v), nat[v]) for v in near]
    fits = []
    for s in dict.fromkeys(c for c in [exp_s + d for d in (0, 1, -1, 2, -2, 3, -3)] + list(rules_scales)
                           if 0 <= c <= 254):
        with np.errstate(invalid="ignore", over="ignore"):
            c = mx.encode(np.ldexp(got, 127 - s), fmt)
            back = np.ldexp(mx.decode(c, fmt), s - 127).astype(dtype).astype(np.float64)
        if _same_bits(back, got).all():
            fits.append((s, c))
    return fits


#: causes that only say "something differs": a fit with a named cause is preferred
_GENERIC = ("ElementRounding", "WrongScale", "WrongScaleAndCodes", "ScaleByteOnly")


def _non_pow2_grid(got, fmt):
    """True if got = value(c) * k for one k that is not a power of two."""
    a = np.abs(got[np.isfinite(got)])
    if a.size == 0 or a.max() == 0:
        return False
    for v in np.unique(np.abs(mx.VALUE_TABLES[fmt][np.isfinite(mx.VALUE_TABLES[fmt])])):
        if v == 0:
            continue
        k = a.max() / v
        if np.frexp(k)[0] == 0.5:
            continue
        r = a / k
        with np.errstate(invalid="ignore", over="ignore"):
            back = mx.decode(mx.encode(r, fmt), fmt)
        if np.allclose(back, r, rtol=2.0 ** -20, atol=0):
            return True
    return False


def _judge_fake(src, flags, x, es, ec, got, variants, profile, fmt, repro=True):
    """One fake-quant block: got float64 (32,) against value(codes) * 2^(s-127) (CF-3.8)."""
    dt = got.dtype
    g = got.astype(np.float64).ravel()
    s0 = int(es.ravel()[0])
    exp = _values(es, ec, fmt, dt).ravel() if ec is not None else np.full(g.shape, np.nan)
    if _same_bits(g, exp).all():
        return CaseResult(src, flags, "pass")
    if s0 == 255 and np.isnan(x).any():
        nan_in = np.isnan(x.ravel())
        if np.isnan(g[nan_in]).all():
            return CaseResult(src, flags, "acceptable", matched=["NanElementCode"])
    for v in variants:
        if v["result"] == "acceptable" and v["codes"] is not None:
            vv = _values(from_hex(v["scale"], "uint8").reshape(1, 1),
                         from_hex(v["codes"], "uint8").reshape(1, -1), fmt, dt).ravel()
            if _same_bits(g, vv).all() and all(f in profile.acceptable_flags or f in flags
                                               for f in v["flags"]):
                return CaseResult(src, flags, "acceptable", matched=[f for f in v["flags"] if f not in flags])
    rule = profile.scale_rule
    with np.errstate(invalid="ignore"):
        amax = np.array([np.max(np.abs(x.astype(np.float64)))])
    if s0 == 255:
        cands = [("NaNHandling" if np.isnan(x).any() else "InfHandling", rule)]
    else:
        fits = _infer_scale_codes(g, x.ravel(), s0, fmt, [int(mx.scale_codes(amax, fmt, r)[0]) for r in ALL_RULES],
                                  dt)
        if fits:
            cands = []
            for gs, gc in fits:
                cands += [c for c in block_candidates(x, s0, ec, gs, gc, fmt, rule, (), ALL_RULES)
                          if c not in cands]
            cands.sort(key=lambda c: c[0] in _GENERIC)
        else:
            cands = [("NonPowerOfTwoScale" if _non_pow2_grid(g, fmt) else "ValueMismatch", rule)]

    def make(cause, crule):
        if crule in profile.acceptable_rules and cause == "OtherScaleRule":
            return CaseResult(src, flags, "acceptable", matched=["ScaleRuleVariant", crule],
                              cause=cause, rule=crule)
        if "SignedZero" in cause.split("+") and profile.signed_zero == "acceptable":
            if cause == "SignedZero":
                return CaseResult(src, flags, "acceptable", matched=["UnsignedZero"], cause=cause)
            cause = "+".join(c for c in cause.split("+") if c != "SignedZero")
        clause = clause_of(cause, rule)
        j = int(np.flatnonzero(~_same_bits(g, exp))[0])
        under = "" if crule in ("", rule) else crule
        detail = (f"element {j}: expected {exp[j]!r} got {g[j]!r} (output dtype {dt})"
                  + (f"; scale follows {under.upper()}" if under else ""))
        text = repro_snippet("y = fn(x)", {"x": x}, {"y": exp.astype(dt)}, {"y": got.ravel()},
                             clause) if repro else ""
        return CaseResult(src, flags, "fail", clause, "values", detail, text, cause=cause, rule=under)
    return Deferred(cands, make)


def run_fake_quant(fn, vs, profile, fmt, use_bulk):
    """fake-quant: the quantize vectors, judged on the dequantized values (CF-3.8)."""
    rule = profile.scale_rule
    cases = _json_quantize_cases(vs, profile, fmt)
    bulk_name = f"quantize_{fmt}_{rule}"
    if cases is None and bulk_name not in vs.bulk:
        raise ValueError(f"no quantize vectors for format {fmt!r} under rule {rule!r}")
    out = []
    if cases is not None:
        valid, variants, _, x = cases
        try:
            got = as_float("values", fn(x.copy()), x.shape)
        except Exception as err:  # noqa: BLE001
            out.append(convention_failure("mx_quantize.json", ["Convention"], err, len(valid)))
        else:
            res = []
            for i, t in enumerate(valid):
                ec = None if t["codes"] is None else from_hex(t["codes"], "uint8").reshape(1, -1)
                res.append(_judge_fake(f"mx_quantize.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                       from_hex(t["scale"], "uint8").reshape(1, 1), ec, got[i],
                                       variants.get(t["tcId"], []), profile, fmt))
            out += finish(res)
    if use_bulk and bulk_name in vs.bulk:
        a = vs.bulk[bulk_name][0]
        src = f"bulk/{bulk_name}"
        x, es, ec = a["x"], a["scales"], a["codes"]
        try:
            got = as_float("values", fn(x.copy()), x.shape)
        except Exception as err:  # noqa: BLE001
            return out + [convention_failure(src, ["Random"], err, es.size)]
        rows, nb = es.shape
        exp = _values(es, ec, fmt, got.dtype)
        g64 = got.astype(np.float64)
        ok = _same_bits(g64, exp).reshape(rows, nb, 32).all(-1)
        out.append(CaseResult(src, ["Random"], "pass", count=int(ok.sum())))
        res = []
        for j, (r, b) in enumerate(np.argwhere(~ok)):
            sl = slice(b * 32, (b + 1) * 32)
            res.append(_judge_fake(f"{src}[row {r}, block {b}]", ["Random"], x[r:r + 1, sl],
                                   es[r:r + 1, b:b + 1], ec[r:r + 1, sl], got[r, sl], [], profile,
                                   fmt, repro=j < MAX_KEPT))
        aggregate_bulk(out, src, ["Random"], finish(res))
    return out


# ------------------------------------------------------------------------------------- gguf-block
def _call_gguf(fn, x):
    rows, k = x.shape
    got = np.asarray(fn(x.copy()))
    if got.size == rows * (k // 32) * 17 and got.ndim in (2, 3) and got.shape[0] == rows:
        got = got.reshape(rows, -1)
    return as_u8("blocks", got, (rows, k // 32 * 17))


def _judge_gguf(src, flags, x, exp_b, got_b, profile, call, variants=(), repro=True):
    """One ggml block (17 bytes): bytes equal, else the nibble-order defect, else the block's
    scale / code cause after unpacking (CF-3.9)."""
    if np.array_equal(exp_b, got_b):
        return CaseResult(src, flags, "pass")
    es, ec = mx.layout.unpack_gguf_mxfp4(exp_b.reshape(1, 1, 17))
    gs, gc = mx.layout.unpack_gguf_mxfp4(got_b.reshape(1, 1, 17))
    matched = [f for v in variants for f in v["flags"]
               if np.array_equal(from_hex(v["block"], "uint8"), got_b.ravel())]
    pair = np.concatenate([es.ravel(), mx.pack_fp4(ec.ravel())])
    if np.array_equal(pair, got_b.ravel()):
        clause = clause_of("GgufNibbleOrder")
        text = repro_snippet(call, {"x": x}, {"block": exp_b.ravel()}, {"block": got_b.ravel()},
                             clause) if repro else ""
        return CaseResult(src, flags, "fail", clause, "block", "bytes in OCP pair order: "
                          + diff_detail(exp_b, got_b), text, matched, cause="GgufNibbleOrder")
    res = judge_block(src, flags, x, es.reshape(1, 1), ec.reshape(1, -1), gs.reshape(1, 1),
                      gc.reshape(1, -1), [], {}, profile, "floor", call, "e2m1", repro=repro,
                      output_name="block")
    if isinstance(res, Pending):
        res.matched += matched
        res.repro_fn = lambda clause: repro_snippet(call, {"x": x}, {"block": exp_b.ravel()},
                                                    {"block": got_b.ravel()}, clause)
    return res


def run_gguf_block(fn, vs, profile, fmt, use_bulk):
    """gguf-block: x -> ggml block_mxfp4 bytes, FLOOR (CF-3.9)."""
    if fmt != "e2m1" or profile.scale_rule != "floor":
        raise ValueError("gguf-block vectors are MXFP4 (fmt e2m1) under the floor rule only "
                         f"(got fmt {fmt!r}, profile rule {profile.scale_rule!r})")
    valid, variants = split_variants(group_tests(vs.docs["gguf_mxfp4.json"], "GgufMxfp4Block"))
    x = np.stack([from_hex(t["x"], "float32") for t in valid])                 # (n, 32)
    out = []
    call = "blocks = fn(x)"
    try:
        got = _call_gguf(fn, x)
    except Exception as err:  # noqa: BLE001
        out.append(convention_failure("gguf_mxfp4.json", ["Convention"], err, len(valid)))
    else:
        out += finish([_judge_gguf(f"gguf_mxfp4.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                   from_hex(t["block"], "uint8"), got[i], profile, call,
                                   variants.get(t["tcId"], [])) for i, t in enumerate(valid)])
    if use_bulk and "quantize_e2m1_floor" in vs.bulk:
        a = vs.bulk["quantize_e2m1_floor"][0]
        src = "bulk/quantize_e2m1_floor (gguf)"
        xb = a["x"]
        exp = mx.layout.pack_gguf_mxfp4(a["scales"], a["codes"])             # (rows, nb, 17)
        try:
            got = _call_gguf(fn, xb).reshape(exp.shape)
        except Exception as err:  # noqa: BLE001
            return out + [convention_failure(src, ["Random"], err, a["scales"].size)]
        ok = (got == exp).all(-1)
        out.append(CaseResult(src, ["Random"], "pass", count=int(ok.sum())))
        res = [_judge_gguf(f"{src}[row {r}, block {b}]", ["Random"], xb[r:r + 1, b * 32:(b + 1) * 32],
                           exp[r, b], got[r, b], profile, call, repro=j < MAX_KEPT)
               for j, (r, b) in enumerate(np.argwhere(~ok))]
        aggregate_bulk(out, src, ["Random"], finish(res))
    return out
