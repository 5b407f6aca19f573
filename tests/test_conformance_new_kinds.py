"""The fake-quant and gguf-block kinds and the NVFP4 tensor-scale profiles (spec/CF.md CF-3.8,
CF-3.9, CF-2.5; spec/MX.md MX-8.3, MX-9.4)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.conformance import check
from torq_ref.mx.layout import pack_gguf_mxfp4, unpack_gguf_mxfp4


def _fake(x, rule="floor"):
    return mx.quantize_dequantize(x, "e2m1", scale_rule=rule, backend="numpy").astype(np.float32)


@pytest.mark.clause("CF-3.8")
def test_fake_quant_correct_passes_and_defects_are_named():
    assert check("fake-quant", _fake).passed

    def amax_over_6(x):        # brevitas / INC style float scale amax / 6: not a power of two
        b = x.astype(np.float64).reshape(x.shape[0], -1, 32)
        with np.errstate(invalid="ignore"):
            amax = np.abs(b).max(-1, keepdims=True)
        k = np.where(amax > 0, amax / 6, 1.0)
        with np.errstate(invalid="ignore"):
            q = mx.decode(mx.encode(b / k, "e2m1"), "e2m1") * k
        return q.reshape(x.shape).astype(np.float32)
    rep = check("fake-quant", amax_over_6)
    assert not rep.passed and "NonPowerOfTwoScale" in rep.failing_causes()
    assert rep.per_cause["NonPowerOfTwoScale"]["clause"] == "MX-4.1"

    def unsigned(x):
        y = _fake(x)
        return np.where(y == 0, np.float32(0), y)
    rep = check("fake-quant", unsigned)
    assert rep.failing_causes() == {"SignedZero"}
    assert check("fake-quant", unsigned, profile="ocp+unsigned-zero").passed

    def rceil(x):
        return _fake(x, "rceil")
    rep = check("fake-quant", rceil)
    assert "OtherScaleRule" in rep.failing_causes()
    assert check("fake-quant", rceil, profile="any-rule").passed


@pytest.mark.clause("MX-8.3")
def test_gguf_layout_round_trip_and_errors():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    t = mx.quantize(x, "e2m1")
    b = pack_gguf_mxfp4(t.scales, t.codes)
    assert b.shape == (2, 2, 17) and (b[..., 0] == t.scales).all()
    # element j in the low nibble of byte 1 + j, element j + 16 in its high nibble
    assert (b[0, 0, 1:] == (t.codes[0, :16] | (t.codes[0, 16:32] << 4))).all()
    s, c = unpack_gguf_mxfp4(b)
    assert (s == t.scales).all() and (c == t.codes).all()
    with pytest.raises(ValueError, match="17 bytes"):
        unpack_gguf_mxfp4(np.zeros((2, 16), np.uint8))
    with pytest.raises(ValueError, match="last axis x 32"):
        pack_gguf_mxfp4(t.scales, t.codes[:, :32])
    with pytest.raises(TypeError, match="scales must be uint8"):
        pack_gguf_mxfp4(t.scales.astype(np.int32), t.codes)


def _gguf_ok(x):
    t = mx.quantize(x, "e2m1", backend="numpy")
    return pack_gguf_mxfp4(t.scales, t.codes).reshape(x.shape[0], -1)


@pytest.mark.clause("CF-3.9", "MX-8.3")
def test_gguf_block_kind():
    assert check("gguf-block", _gguf_ok).passed

    def pair_order(x):
        t = mx.quantize(x, "e2m1", backend="numpy")
        rows, nb = t.scales.shape
        p = mx.pack_fp4(t.codes).reshape(rows, nb, 16)
        return np.concatenate([t.scales[..., None], p], -1).reshape(rows, -1)
    rep = check("gguf-block", pair_order)
    assert rep.failing_causes() == {"GgufNibbleOrder"}
    assert "KnownDefectGgufPairNibbles" in rep.known_defects

    def ties_to_zero(x):        # ggml-style argmin over |d * kvalue - x|: first index wins ties
        b = _gguf_ok(x).reshape(x.shape[0], -1, 17)
        s, _ = unpack_gguf_mxfp4(b)
        xb = x.astype(np.float64).reshape(x.shape[0], -1, 32)
        q = xb / np.ldexp(1.0, s.astype(np.int64) - 127)[..., None]
        vals = mx.VALUE_TABLES["e2m1"]
        with np.errstate(invalid="ignore"):
            c = np.argmin(np.abs(vals[None, None, None, :] - np.minimum(np.maximum(q, -6), 6)[..., None]),
                          -1)
        c = np.where(np.isnan(q), 0, c).astype(np.uint8)
        return pack_gguf_mxfp4(s, c.reshape(x.shape)).reshape(x.shape[0], -1)
    rep = check("gguf-block", ties_to_zero)
    assert not rep.passed and "TieDirection" in {c for r in rep.failures for c in r.cause.split("+")}
    with pytest.raises(ValueError, match="floor rule only"):
        check("gguf-block", _gguf_ok, profile="nvidia")


def _nvfp4_reciprocal_kernel(x, g_enc):
    """Independent NVFP4 under the reciprocal convention, float32 NumPy and ml_dtypes casts."""
    import ml_dtypes        # crosscheck extra: its test skips without it

    ge = np.float32(g_enc)
    b = x.astype(np.float32).reshape(x.shape[0], -1, 16)
    amax = np.abs(b).max(-1)
    sb = ((amax / np.float32(6)).astype(np.float32) * ge).astype(np.float32)
    S = np.minimum(sb, np.float32(448)).astype(ml_dtypes.float8_e4m3fn)
    den = (S.astype(np.float32) / ge).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(den[..., None] == 0, np.copysign(np.float32(0), b), b / den[..., None])
    codes = q.astype(np.float32).astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF
    return S.view(np.uint8), codes.reshape(x.shape)


@pytest.mark.clause("CF-2.5", "MX-9.4")
def test_nvfp4_reciprocal_profile():
    pytest.importorskip("ml_dtypes")
    rep = check("quantize", _nvfp4_reciprocal_kernel, fmt="nvfp4", profile="nvfp4-reciprocal")
    assert rep.passed, str(rep)

    def decode_side_given_reciprocal(x, g):   # the same kernel fed the decode scale: 1 / g inside
        return _nvfp4_reciprocal_kernel(x, np.float32(1) / np.float32(g))
    rep = check("quantize", decode_side_given_reciprocal, fmt="nvfp4")
    assert not rep.passed and "Nvfp4ReciprocalScaleConvention" in rep.failing_causes()

    def codec(x, g):
        t = mx.quantize_nvfp4(x, global_scale=g)
        return t.scales, t.codes
    assert check("quantize", codec, fmt="nvfp4").passed
    rep = check("quantize", lambda x, ge: codec(x, np.float32(1) / np.float32(ge)), fmt="nvfp4",
                profile="nvfp4-reciprocal")
    assert not rep.passed and rep.failing_causes() <= {"Nvfp4DecodeScaleConvention",
                                                       "ElementRounding", "TieDirection"}


def _nvfp4_no_tensor_scale_kernel(x, g):
    """Independent NVFP4 without a tensor scale (it ignores g): S = e4m3(amax_b / 6) alone, the
    reciprocal-convention kernel above with g_enc = 1."""
    return _nvfp4_reciprocal_kernel(x, 1)


@pytest.mark.clause("CF-2.5", "MX-9.5")
def test_nvfp4_without_tensor_scale_option():
    pytest.importorskip("ml_dtypes")
    rep = check("quantize", _nvfp4_no_tensor_scale_kernel, fmt="nvfp4", profile="ocp+no-tensor-scale")
    assert rep.passed, str(rep)
    rep = check("quantize", _nvfp4_no_tensor_scale_kernel, fmt="nvfp4")      # judged with g
    assert not rep.passed and "Nvfp4NoTensorScale" in rep.failing_causes()
    assert {r.clause for r in rep.failures if r.cause == "Nvfp4NoTensorScale"} == {"MX-9.5"}

    def amax_kernel(x, g):      # computes the amax rule's g itself, whatever it is given
        t = mx.quantize_nvfp4(x, global_scale_rule="amax")
        return t.scales, t.codes
    assert check("quantize", amax_kernel, fmt="nvfp4").passed
    rep = check("quantize", amax_kernel, fmt="nvfp4", profile="ocp+no-tensor-scale")
    assert not rep.passed and "Nvfp4AmaxTensorScale" in rep.failing_causes()


@pytest.mark.clause("CF-2.5", "GV-2.9")
def test_nvfp4_rule_none_group_is_judged_under_no_tensor_scale_only():
    pytest.importorskip("ml_dtypes")
    none_ids = {f"nvfp4_quantize.json#{t}" for t in range(309, 327)}
    rep = check("quantize", _nvfp4_no_tensor_scale_kernel, fmt="nvfp4", profile="ocp+no-tensor-scale",
                level="quick")
    assert rep.passed and rep.counts["pass"] == 326, str(rep)          # 308 + the 18 of GV-2.9
    assert {r.source for r in rep.results} >= none_ids
    assert rep.per_clause["MX-9.5"]["pass"] == 18
    rep = check("quantize", _nvfp4_no_tensor_scale_kernel, fmt="nvfp4", profile="ocp", level="quick")
    assert not {r.source for r in rep.results} & none_ids               # not run without the option

    def amax_kernel(x, g):      # the amax rule's g of the tensor it is given, whatever g says
        t = mx.quantize_nvfp4(x, global_scale_rule="amax")
        return t.scales, t.codes
    rep = check("quantize", amax_kernel, fmt="nvfp4", profile="ocp+no-tensor-scale", level="quick")
    group = [r for r in rep.results if r.source in none_ids]
    # every case of the group where the rules part is named after the amax rule; where they
    # agree (amax 2688, x = 3000, the 464 midpoint, the zero block) it passes
    assert {r.cause for r in group if r.status == "fail"} == {"Nvfp4AmaxTensorScale"}
    assert sorted(r.source for r in group if r.status == "pass") == [
        f"nvfp4_quantize.json#{i}" for i in (309, 310, 312, 317)]

    def no_saturation(x, g):    # no tensor scale, but the block scale not saturated at 448
        s, c = _nvfp4_no_tensor_scale_kernel(x, g)
        big = np.abs(x.reshape(x.shape[0], -1, 16)).max(axis=2) / 6 > 464
        return np.where(big, np.uint8(0x7F), s), c
    rep = check("quantize", no_saturation, fmt="nvfp4", profile="ocp+no-tensor-scale", level="quick")
    bad = {r.source: r.cause for r in rep.failures if r.source in none_ids}
    assert set(bad) == {f"nvfp4_quantize.json#{i}" for i in (310, 311, 326)}, bad
    assert set(bad.values()) == {"ScaleByteOnly"} and not rep.passed


@pytest.mark.clause("CF-3.6", "CF-1.3")
def test_accumulate_u_is_an_option(capsys, monkeypatch):
    from torq_ref.conformance import ProfileError, with_accumulate_u
    from torq_ref.golden.build import dot_reference

    def sloppy(a_s, a_c, b_s, b_c):      # a bfloat16-accumulator-sized error: 2^-10 of |A| @ |B|^T
        c, bound = dot_reference(a_s, a_c, b_s, b_c)
        return (c + bound * 2.0 ** -10).astype(np.float64)
    assert not check("dot_scaled", sloppy).passed
    assert check("dot_scaled", sloppy, profile=with_accumulate_u("ocp", 2.0 ** -8)).passed
    with pytest.raises(ProfileError, match="accumulate_u"):
        with_accumulate_u("ocp", 2.0)
    import sys
    import types

    from torq_ref.cli import main
    mod = types.ModuleType("_sloppy_dot")
    mod.dot = sloppy
    monkeypatch.setitem(sys.modules, "_sloppy_dot", mod)
    assert main(["conformance", "--kernel", "_sloppy_dot:dot", "--kind", "dot_scaled"]) == 1
    assert main(["conformance", "--kernel", "_sloppy_dot:dot", "--kind", "dot_scaled",
                 "--accumulate-u", str(2.0 ** -8)]) == 0
    capsys.readouterr()


@pytest.mark.clause("CF-2.4")
def test_profile_options_parse():
    from torq_ref.conformance import ProfileError, get_profile
    p = get_profile("nvidia+unsigned-zero")
    assert p.scale_rule == "rceil" and p.signed_zero == "acceptable" and p.name == "nvidia+unsigned-zero"
    assert get_profile("nvidia").signed_zero == "exact"
    with pytest.raises(ProfileError, match="unknown profile option 'zero'"):
        get_profile("ocp+zero")
