"""The quantize kind for NVFP4 (spec/CF.md CF-1.2, CF-2.5, CF-3.7; spec/MX.md section 9):

    fn(x float32 (rows, K), g float32) -> (scales uint8 E4M3 (rows, K/16), codes uint8 (rows, K))

g is the decode tensor scale of the vector (MX-9.2; the amax rule's g, MX-9.5), under the
``nvfp4-reciprocal`` profile the encode scale fp32(1 / g) (MX-9.4), and under the
``+no-tensor-scale`` option 1.0, the expectation then being MX-9.5's rule "none" (CF-2.5). A
failing block is first compared with the other tensor-scale recipes (named models), then with its
own E4M3 scale's codes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex

from .causes import element_causes, join
from .common import group_tests
from .judge import Case, Outputs, call_kernel, finish
from .quantize_block import Judging, call_quantize, judge_block, judge_bulk


@dataclass(frozen=True)
class Nvfp4Context:
    """What one tensor scale g needs: the argument the kernel gets, the expected outputs, the
    exact quotients of a block under a scale byte, and the named recipe models."""
    arg: np.float32                     # g, or fp32(1 / g) under the reciprocal convention
    expect: Callable                    # x (rows, K) -> (scales, codes)
    quotients: Callable                 # (x, scale (1, 1)) -> (q float64, denominator float32)
    models: dict                        # cause -> x -> (scales, codes)

    def codes(self, x, s):
        q, _ = self.quotients(x, s)
        return mx.encode(q, "e2m1").reshape(1, -1)

    def call(self) -> str:
        return f"scales, codes = fn(x, np.float32({float(self.arg)!r}))"


def nvfp4_context(g, profile) -> Nvfp4Context:
    """The context of one g under the profile's tensor-scale convention (CF-2.5)."""
    g = np.float32(g)
    e4m3 = mx.VALUE_TABLES["e4m3"]
    if profile.nvfp4_global == "reciprocal":
        with np.errstate(over="ignore", divide="ignore"):
            arg = np.float32(np.float32(1) / g)

        def expect(x):
            t = mx.nvfp4.quantize_nvfp4_reciprocal(x, arg)
            return t.scales, t.codes

        def quot(x, s):
            with np.errstate(under="ignore"):
                den = np.float32(np.float32(e4m3[s.ravel()[0]]) / arg)
            return _safe_div(x, den), den

        models = {"Nvfp4DecodeScaleConvention":
                  lambda x: _pair(mx.quantize_nvfp4(x, global_scale=np.float32(1) / arg))}
    elif profile.nvfp4_global == "none":
        arg = np.float32(1.0)

        def expect(x):
            t = mx.quantize_nvfp4(x, global_scale_rule="none")
            return t.scales, t.codes

        def quot(x, s):
            return _safe_div(x, np.float32(e4m3[s.ravel()[0]])), np.float32(e4m3[s.ravel()[0]])

        models = {"Nvfp4AmaxTensorScale": lambda x: _pair(mx.quantize_nvfp4(x, global_scale=g))}
    else:
        arg = g

        def expect(x):
            t = mx.quantize_nvfp4(x, global_scale=g)
            return t.scales, t.codes

        def quot(x, s):
            with np.errstate(under="ignore"):
                den = np.float32(np.float32(e4m3[s.ravel()[0]]) * g)
            return _safe_div(x, den), den

        models = {"Nvfp4ReciprocalScaleConvention":
                  lambda x: _pair(mx.nvfp4.quantize_nvfp4_reciprocal(x, np.float32(1) / g)),
                  "Nvfp4DivideByTensorScaleFirst": lambda x: nvfp4_divide_first(x, g),
                  "Nvfp4NoTensorScale": lambda x: _pair(mx.quantize_nvfp4(x, global_scale_rule="none"))}
    return Nvfp4Context(arg, expect, quot, models)


def _safe_div(x, den):
    """fp32(x / den) as float64; +-0 (sign of x) when den is 0 (MX-9.2)."""
    x = x.astype(np.float32)
    if den == 0:
        return np.copysign(0.0, x).astype(np.float64)
    with np.errstate(over="ignore"):
        return (x / den).astype(np.float64)


def _pair(t):
    return t.scales, t.codes


def nvfp4_divide_first(x, g):
    """x / g first, then an E4M3 block scale of amax / 6 and a division by it (JAX's order)."""
    y = (x.astype(np.float32) / np.float32(g)).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        t = mx.quantize_nvfp4(np.where(np.isfinite(y), y, 0), global_scale=1.0)
    return t.scales, t.codes


def nvfp4_cause(case: Case, exp: Outputs, got: Outputs, ctx: Nvfp4Context) -> str:
    """NVFP4 causes: another tensor-scale recipe (named), an all-zero block's scale, a zero
    denominator, or the element causes against the codes of the kernel's own E4M3 scale."""
    x = case.x
    for name, model in ctx.models.items():
        try:
            with np.errstate(over="ignore", divide="ignore"):
                ms, mc = model(x)
        except ValueError:      # the model cannot express this tensor scale (1 / g overflows)
            continue
        if np.array_equal(ms, got.scale) and np.array_equal(mc, got.codes):
            return name

    def elements(s, ref_c):
        q, den = ctx.quotients(x, s)
        if den == 0 and not np.array_equal(ref_c, got.codes) and \
                (np.abs(mx.decode(got.codes[ref_c != got.codes], "e2m1")) == 6).all():
            return "Nvfp4ZeroDenominator"
        return join(element_causes(x, q, ref_c, got.codes, "e2m1"))
    if np.array_equal(got.scale, exp.scale):
        return elements(exp.scale, exp.codes)
    own = ctx.codes(x, got.scale)
    tail = "" if np.array_equal(own, got.codes) else "+" + elements(got.scale, own)
    if not np.abs(x).max() > 0:
        return "ZeroBlockScale" + tail
    if np.array_equal(got.codes, exp.codes):
        return "ScaleByteOnly"
    return "WrongScale" + tail


def nvfp4_judging(profile, ctx: Nvfp4Context) -> Judging:
    return Judging(profile, "floor", ctx.call(),
                   lambda case, exp, got: [(nvfp4_cause(case, exp, got, ctx), "floor")], nvfp4=True)


def run_nvfp4_none_group(fn, vs, profile):
    """CF-2.5, GV-2.9: under +no-tensor-scale the rule-none group, g = 1, judged on its stored
    bytes, one call per case (each case is a tensor of its own, so a kernel that computes the
    amax rule's g itself computes the case's, the g of its Nvfp4AmaxTensorScale model)."""
    tests = group_tests(vs.docs["nvfp4_quantize.json"], "Nvfp4Quantize", globalScaleRule="none")
    out = []
    for t in tests or []:
        x = from_hex(t["x"], "float32").reshape(1, -1)                                  # (1, 16)
        src = f"nvfp4_quantize.json#{t['tcId']}"
        got, failed = call_kernel(lambda: call_quantize(fn, x, 1, np.float32(1.0)), src, t["flags"], 1)
        if failed:
            out.append(failed)
            continue
        ctx = nvfp4_context(mx.global_scale_for(x, "amax"), profile)
        exp = Outputs(from_hex(t["scale"], "uint8").reshape(1, 1),
                      from_hex(t["codes"], "uint8").reshape(1, -1))
        out += finish([judge_block(Case(src, t["flags"], x), exp, Outputs(*got),
                                   nvfp4_judging(profile, ctx))])
    return out


def run_nvfp4(fn, vs, profile, use_bulk):
    tests = group_tests(vs.docs["nvfp4_quantize.json"], "Nvfp4Quantize", globalScaleRule="amax")
    recompute = profile.nvfp4_global != "decode"      # reciprocal or none: expect from x (CF-2.5)
    out = run_nvfp4_none_group(fn, vs, profile) if profile.nvfp4_global == "none" else []
    by_g: dict = {}
    for t in tests:
        by_g.setdefault(t["globalScale"], []).append(t)
    for gh, ts in by_g.items():
        ctx = nvfp4_context(from_hex(gh, "float32")[0], profile)
        if not np.isfinite(ctx.arg):
            continue        # 1 / g overflows float32: the reciprocal convention cannot say it (CF-2.5)
        x = np.stack([from_hex(t["x"], "float32") for t in ts])                 # (n, 16)
        got, failed = call_kernel(lambda: call_quantize(fn, x, 1, ctx.arg), "nvfp4_quantize.json",
                                  ["Convention"], len(ts))
        if failed:
            out.append(failed)
            continue
        gs, gc = got
        how = nvfp4_judging(profile, ctx)
        res = []
        for i, t in enumerate(ts):
            if recompute:
                exp = Outputs(*ctx.expect(x[i:i + 1]))
            else:
                exp = Outputs(from_hex(t["scale"], "uint8").reshape(1, 1),
                              from_hex(t["codes"], "uint8").reshape(1, -1))
            res.append(judge_block(Case(f"nvfp4_quantize.json#{t['tcId']}", t["flags"], x[i:i + 1]),
                                   exp, Outputs(gs[i:i + 1], gc[i:i + 1]), how))
        out += finish(res)
    if use_bulk and "nvfp4_quantize" in vs.bulk:
        a = vs.bulk["nvfp4_quantize"][0]
        ctx = nvfp4_context(a["globalScale"][0], profile)
        src = "bulk/nvfp4_quantize"
        got, failed = call_kernel(lambda: call_quantize(fn, a["x"], a["x"].shape[1] // 16, ctx.arg),
                                  src, ["Random", "NVFP4"], a["scales"].size)
        if failed:
            return out + [failed]
        exp = ctx.expect(a["x"]) if recompute else (a["scales"], a["codes"])
        out += judge_bulk(src, ["Random", "NVFP4"], a["x"], exp, got, 16, nvfp4_judging(profile, ctx))
    return out
