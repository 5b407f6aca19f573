"""Verdicts that must name the right cause (spec/CF.md CF-2.3, CF-2.4, CF-3.4, CF-3.7, CF-3.8):
each a planted kernel, the oracle (torq_ref.mx) with one step changed, and the cause it must get.
"""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.conformance import check
from torq_ref.conformance.causes import rules_followed
from torq_ref.golden.defects import quantize_defects


def _mx(x, rule="floor"):
    t = mx.quantize(x, "e2m1", scale_rule=rule, backend="numpy")
    return t.scales, t.codes


@pytest.mark.clause("CF-3.7")
def test_wrong_scale_byte_beside_right_codes_is_a_scale_cause():
    # the byte from one path (FLOOR's), the codes from the profile's rule: on the block where
    # the codes under FLOOR's byte would saturate, the codes are still the right ones
    for profile, rule, fmt in [("nvidia", "rceil", "e2m1"), ("even", "even", "e2m1"),
                               ("nvidia", "rceil", "e4m3")]:
        def floor_byte(x, rule=rule, fmt=fmt):
            return (mx.quantize(x, fmt, backend="numpy").scales,
                    mx.quantize(x, fmt, scale_rule=rule, backend="numpy").codes)
        rep = check("quantize", floor_byte, profile=profile, level="quick", fmt=fmt)
        assert rep.failing_causes() == {"ScaleByteOnly"}, rep.per_cause
        assert {r.output for r in rep.failures} == {"scale"} and not {r.rule for r in rep.failures} - {""}


@pytest.mark.clause("CF-2.4", "CF-3.7")
def test_unsigned_zero_accepts_plus_zero_for_minus_zero_only():
    def minus_for_plus(x):              # every zero code written with its sign bit set
        s, c = _mx(x)
        return s, np.where(c == 0, 8, c).astype(np.uint8)
    for profile in ("ocp", "ocp+unsigned-zero"):
        rep = check("quantize", minus_for_plus, profile=profile, level="quick")
        assert not rep.passed and rep.failing_causes() == {"NegativeZero"}, rep.per_cause
        assert {r.clause for r in rep.failures} == {"MX-3.3"}
    enc = lambda x: np.where(mx.encode(x, "e2m1") == 0, 8, mx.encode(x, "e2m1")).astype(np.uint8)
    rep = check("encode", enc, profile="ocp+unsigned-zero", level="quick")
    assert not rep.passed and rep.failing_causes() == {"NegativeZero"}

    def deq(s, c):
        y = (mx.decode(c, "e2m1") * np.repeat(mx.scale_values(s), 32, axis=1)).astype(np.float32)
        return np.where(y == 0, np.float32(-0.0), y)
    rep = check("dequantize", deq, profile="ocp+unsigned-zero")
    assert not rep.passed and rep.failing_causes() == {"NegativeZero"}


@pytest.mark.clause("CF-2.3", "CF-3.7")
def test_any_rule_names_the_rule_the_kernel_follows_as_a_whole():
    even = lambda x: _mx(x, "even")
    rep = check("quantize", even, profile="any-rule", level="quick")
    assert rep.passed
    named = {r.rule for r in rep.results if r.status == "acceptable" and r.cause == "OtherScaleRule"}
    assert named == {"even"}, named          # not RCEIL on the blocks where RCEIL agrees


@pytest.mark.clause("CF-2.3", "CF-3.8", "CF-3.9")
def test_fake_quant_and_gguf_name_the_rule_followed_as_a_whole():
    # an EVEN kernel was named RCEIL by fake-quant and gguf-block (the first rule in a fixed
    # order whose scale the block has): they now read the call's scales and follow CF-2.3
    def fake_even(x):
        return mx.quantize_dequantize(x, "e2m1", scale_rule="even", backend="numpy").astype(np.float32)

    def gguf_even(x):
        t = mx.quantize(x, "e2m1", scale_rule="even", backend="numpy")
        return mx.layout.pack_gguf_mxfp4(t.scales, t.codes)
    rep = check("fake-quant", fake_even, profile="any-rule", level="quick")
    assert rep.passed
    assert {r.rule for r in rep.results if r.status == "acceptable"} == {"even"}
    for kind, fn, level in (("fake-quant", fake_even, "default"), ("gguf-block", gguf_even, "quick"),
                            ("gguf-block", gguf_even, "default")):
        rep = check(kind, fn, profile="ocp", level=level)
        assert {(r.cause, r.rule) for r in rep.failures} == {("OtherScaleRule", "even")}, (kind, rep.per_cause)
        assert rep.failing_clauses() == {"MX-4.2"}


@pytest.mark.clause("CF-3.7")
def test_followed_rule_needs_evidence_that_separates_the_rules():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((64, 32)) * 3).astype(np.float32)
    s_even = _mx(x, "even")[0]
    assert rules_followed(x, s_even, "e2m1", "floor") == ("even",)
    # a FLOOR kernel that gives CEIL's scale on two blocks: coincidences, not a rule
    s = _mx(x)[0].copy()
    ceil = _mx(x, "ceil")[0]
    d = np.argwhere(ceil != s)[:2]
    for r, b in d:
        s[r, b] = ceil[r, b]
    x1 = x[[r for r, _ in d]]
    assert rules_followed(x1, s[[r for r, _ in d]], "e2m1", "floor") == ()
    # two rules no block separates are named together
    y = np.zeros((8, 32), np.float32)
    y[:, 0] = np.float32(7.5) * 2.0 ** np.arange(8)          # m = 1.875: CEIL = EVEN = RCEIL
    s_up = _mx(y, "ceil")[0]
    assert rules_followed(y, s_up, "e2m1", "floor") == ("rceil/ceil/even",)


@pytest.mark.clause("CF-3.4", "GV-4.3")
def test_no_flushed_scale_code_zero_variant_for_a_block_of_zeros():
    z = -np.zeros(32, np.float32)
    s, c = _mx(z.reshape(1, -1))
    assert not [f for f, _, _ in quantize_defects(z, "e2m1", "floor", int(s[0, 0]), c)
                if f == "KnownDefectFlushedScaleCodeZero"]

    def unsigned(x):                    # the sign of zero lost, nothing else
        s, c = _mx(x)
        return s, np.where(c == 8, 0, c).astype(np.uint8)
    rep = check("quantize", unsigned, level="quick")
    assert rep.failing_causes() == {"SignedZero"}
    assert "KnownDefectFlushedScaleCodeZero" not in rep.known_defects


@pytest.mark.clause("CF-3.7")
def test_inf_encoded_as_four_is_saturation_not_tie_neighbour():
    def inf_to_4(x):
        c = mx.encode(x, "e2m1")
        return np.where(np.isinf(x), np.where(x < 0, 0xE, 0x6), c).astype(np.uint8)
    rep = check("encode", inf_to_4, level="quick")
    assert rep.failing_causes() == {"Saturation"}, rep.per_cause


@pytest.mark.clause("CF-3.8")
def test_fake_quant_clamped_scale_is_a_scale_cause():
    def clamped_at_2_15(x):             # the scale stored where 2^15 is the largest power of two
        t = mx.quantize(x, "e2m1", backend="numpy")
        s = np.where(t.scales == 255, 255, np.minimum(t.scales, 127 + 15)).astype(np.uint8)
        with np.errstate(over="ignore", invalid="ignore"):
            q = np.ldexp(x.astype(np.float64).reshape(x.shape[0], -1, 32),
                         (127 - s.astype(np.int64))[..., None])
            y = mx.decode(mx.encode(q, "e2m1"), "e2m1") * mx.scale_values(s)[..., None]
        return y.reshape(x.shape).astype(np.float32)
    rep = check("fake-quant", clamped_at_2_15, level="quick")
    assert not rep.passed
    assert rep.failing_causes() <= {"WrongScale", "ScaleNotClamped"}, rep.per_cause
    assert "WrongScale" in rep.failing_causes()


@pytest.mark.clause("CF-3.8")
def test_fake_quant_inference_puts_the_expected_scale_last():
    from torq_ref.conformance.fake_quant import _non_pow2_grid, infer_scale_codes
    # one nonzero magnitude 12 = 6 * 2 = 1.5 * 8: a power-of-two grid holds it, so no evidence
    one = np.zeros(32)
    one[3] = 12.0
    assert not _non_pow2_grid(one, "e2m1")
    two = np.zeros(32)
    two[:2] = [6.0 * 1.1, 1.1]                     # value(c) * 1.1 and no power of two
    assert _non_pow2_grid(two, "e2m1")
    # an output that both the expected scale (with other codes) and a larger one reproduce:
    # the larger one is read first, the expected one last
    x = np.zeros(32, np.float32)
    x[:2] = [5.0, 1.75]                            # FLOOR scale 0x7F
    got = np.zeros(32)
    got[:2] = [4.0, 1.0]                           # no scale's RNE codes give it
    fits = infer_scale_codes(got, x, 0x7F, "e2m1", [0x7F, 0x80])
    assert [s for s, _ in fits] == [0x80, 0x7F]    # 0x80 (codes 2, 0.5) first


@pytest.mark.clause("CF-3.14", "MX-12.4")
def test_dot_scaled_names_the_accumulation_model_a_kernel_follows():
    from torq_ref.mx.gemm import mx_gemm

    def bf16_upcast(a_s, a_c, b_s, b_c):      # claims a float32 result, upcasts to bfloat16
        return mx_gemm(a_s, a_c, b_s, b_c, "bf16-upcast").astype(np.float32)
    rep = check("dot_scaled", bf16_upcast)
    assert rep.failing_causes() == {"AccumulationModel"}, rep.per_cause
    assert all(r.rule.split("/")[0] == "bf16-upcast" for r in rep.failures)
    assert "bulk/dot_scaled_e2m1" in {r.source for r in rep.failures if r.rule == "bf16-upcast"}

    # the exact sum rounded once to bfloat16, returned as float32: named at bfloat16
    rep = check("dot_scaled", lambda *a: mx_gemm(*a, "exact", "bfloat16").astype(np.float32))
    assert {r.source: r.rule for r in rep.failures}["bulk/dot_scaled_e2m1"] == "exact"

    def scaled_off(a_s, a_c, b_s, b_c):       # no model: every output 1 + 2^-12 too large
        return (mx_gemm(a_s, a_c, b_s, b_c, "exact") * (1 + 2.0 ** -12)).astype(np.float32)
    rep = check("dot_scaled", scaled_off)
    assert rep.failing_causes() == {"OutsideTolerance"} and rep.counts["fail"] == 4

    def inf_out(a_s, a_c, b_s, b_c):
        c = mx_gemm(a_s, a_c, b_s, b_c, "exact").astype(np.float32)
        c[0, 0] = np.inf
        return c
    rep = check("dot_scaled", inf_out)
    assert rep.failing_causes() == {"NonFiniteOutput"}
    rep = check("dot_scaled", lambda *a: mx_gemm(*a, "fp32-kblock").astype(np.float32))
    assert rep.passed                          # native MX MMA lies within CF-3.6


@pytest.mark.clause("CF-3.15", "MX-12.2")
def test_dot_scaled_judged_with_the_claimed_models_bound():
    from torq_ref.conformance import get_profile
    from torq_ref.mx.gemm import _dequant_f32, mx_gemm

    def model(name):
        return lambda *a: mx_gemm(*a, name).astype(np.float32)

    def elementwise_f32(a_s, a_c, b_s, b_c):  # float32 operands, float32 element accumulation
        return _dequant_f32(a_s, a_c) @ _dequant_f32(b_s, b_c).T
    assert get_profile("ocp+model-bf16-upcast").accumulation_model == "bf16-upcast"
    assert get_profile("ocp").accumulation_model == ""
    assert check("dot_scaled", model("bf16-upcast"), profile="ocp+model-bf16-upcast").passed
    rep = check("dot_scaled", model("bf16-upcast"), profile="ocp+model-fp32-kblock")
    assert not rep.passed and rep.failing_causes() == {"AccumulationModel"}
    assert check("dot_scaled", model("fp32-kblock"), profile="ocp+model-fp32-kblock").passed
    rep = check("dot_scaled", model("fp32-kblock"), profile="ocp+model-exact")
    assert {(r.cause, r.rule) for r in rep.failures} == {("AccumulationModel", "fp32-kblock")}
    # element-by-element float32 sums: within CF-3.6, not within native MX MMA's bound
    assert check("dot_scaled", elementwise_f32).passed
    rep = check("dot_scaled", elementwise_f32, profile="ocp+model-fp32-kblock")
    assert rep.failing_causes() == {"OutsideTolerance"} and rep.counts["fail"] == 2


def _std_scale_kernel(x, ties_away=False):
    """A scale rule not based on amax: the FLOOR code of 3 x the block's standard deviation
    (amax where that is 0; the oracle's scale for non-finite or all-zero blocks), elements
    RNE under it (or ties away from zero, a planted element defect: everywhere, or only in
    the blocks whose byte is FLOOR's)."""
    rows, k = x.shape
    b = x.astype(np.float64).reshape(rows, k // 32, 32)
    with np.errstate(invalid="ignore"):
        sig, amax = 3 * b.std(-1), np.abs(b).max(-1)
    live = np.isfinite(amax) & (amax > 0)
    s = mx.scale_codes(np.where(live & (sig > 0), sig, amax), "e2m1", "floor")
    s = np.where(live, s, mx.quantize(x, "e2m1", backend="numpy").scales).astype(np.uint8)
    q = np.ldexp(b, (127 - s.astype(np.int64))[..., None])
    if ties_away:
        grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
        mid = (grid[1:] + grid[:-1]) / 2
        a = np.abs(q)
        tie = np.isin(a, mid)
        if ties_away == "where-rule-scale":   # only in blocks whose byte is FLOOR's
            tie &= (s == mx.quantize(x, "e2m1", backend="numpy").scales)[..., None]
        q = np.where(tie, np.sign(q) * grid[np.searchsorted(mid, a, side="right")], q)
    ref = mx.quantize(x, "e2m1", backend="numpy").codes.reshape(rows, k // 32, 32)
    return s, np.where(live[..., None], mx.encode(q, "e2m1"), ref).reshape(rows, k)


@pytest.mark.clause("CF-3.16", "CF-2.4")
def test_own_scale_judges_the_codes_under_the_kernels_scale():
    from torq_ref.conformance import get_profile

    assert get_profile("ocp+own-scale").scale_judging == "own" and get_profile("ocp").scale_judging == "rule"
    rep = check("quantize", _std_scale_kernel, profile="ocp")
    assert not rep.passed                     # the std rule is no amax rule
    rep = check("quantize", _std_scale_kernel, profile="ocp+own-scale")
    assert rep.passed, str(rep)
    assert rep.per_cause["KernelScale"]["acceptable"] > 100
    # an element defect under the kernel's own scale is still found, and named
    rep = check("quantize", lambda x: _std_scale_kernel(x, ties_away=True), profile="ocp+own-scale")
    assert not rep.passed and "TieDirection" in rep.failing_causes(), rep.per_cause
    # ... also in the blocks whose byte is the kernel's own (not only where it is FLOOR's)
    part = check("quantize", lambda x: _std_scale_kernel(x, ties_away="where-rule-scale"),
                 profile="ocp+own-scale")
    assert rep.counts["fail"] > part.counts["fail"] > 0
    assert {r.output for r in rep.failures} <= {"scale", "codes"}
    gguf = lambda x: mx.layout.pack_gguf_mxfp4(*_std_scale_kernel(x))     # noqa: E731
    assert not check("gguf-block", gguf, profile="ocp", level="quick").passed
    assert check("gguf-block", gguf, profile="ocp+own-scale", level="quick").passed
    # a NaN block still needs 0xFF (MX-5.2): the option does not reach non-finite blocks
    def nan_scale_wrong(x):
        s, c = _std_scale_kernel(x)
        return np.where(np.isnan(x).reshape(s.shape + (32,)).any(-1), np.uint8(0x7F), s), c
    rep = check("quantize", nan_scale_wrong, profile="ocp+own-scale", level="quick")
    assert rep.failing_causes() == {"NaNHandling"}
