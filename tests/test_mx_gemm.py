"""MX GEMM accumulation models (spec/MX.md section 12): bit-exact emulation per model, the
tolerance each implies, NaN from a 0xFF scale, and the model a kernel's output follows."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from torq_ref.mx.formats import VALUE_TABLES
from torq_ref.mx.gemm import MODELS, matching_models, model_tolerance, mx_gemm, round_to


def _ones_at_block_starts(a_scales, b_scales, k=None):
    """Operands whose block b has one product 1.0 * 2^(a_s[b] + b_s[b] - 254) (code 0x2 = 1.0)."""
    a_s = np.array([a_scales], np.uint8)
    b_s = np.array([b_scales], np.uint8)
    k = 32 * a_s.shape[1]
    a_c = np.zeros((1, k), np.uint8)
    a_c[0, ::32] = 0x2
    return a_s, a_c, b_s, a_c.copy()


def _random(seed, m=3, n=4, k=128, lo=100, hi=150):
    rng = np.random.default_rng(seed)
    return (rng.integers(lo, hi, (m, k // 32), dtype=np.uint8), rng.integers(0, 16, (m, k), dtype=np.uint8),
            rng.integers(lo, hi, (n, k // 32), dtype=np.uint8), rng.integers(0, 16, (n, k), dtype=np.uint8))


def _fraction_product(a_s, a_c, b_s, b_c):
    v = VALUE_TABLES["e2m1"]
    out = np.empty((a_c.shape[0], b_c.shape[0]), object)
    for i in range(a_c.shape[0]):
        for j in range(b_c.shape[0]):
            out[i, j] = sum(Fraction(float(v[a_c[i, t]])) * Fraction(float(v[b_c[j, t]]))
                            * Fraction(2) ** (int(a_s[i, t // 32]) + int(b_s[j, t // 32]) - 254)
                            for t in range(a_c.shape[1]))
    return out


@pytest.mark.clause("MX-12.1")
def test_round_to_pins():
    assert round_to(3, -1) == 1.5
    assert round_to((1 << 24) + 1, 0) == 2.0 ** 24            # tie to even
    assert round_to((1 << 24) + 3, 0) == 2.0 ** 24 + 4
    assert round_to(1, -150) == 0.0                            # half the smallest subnormal: even
    assert round_to(3, -151) == 2.0 ** -149
    assert round_to(1, 128) == np.inf and round_to(-1, 128) == -np.inf
    assert round_to(257, 0, "bfloat16") == 256.0 and round_to(259, 0, "bfloat16") == 260.0


@pytest.mark.clause("MX-12.1")
def test_exact_model_is_the_real_sum_rounded_once():
    ops = _random(1, lo=60, hi=190)
    ref = _fraction_product(*ops)
    got = mx_gemm(*ops, "exact", "float64")
    assert all(got[i, j] == float(ref[i, j]) for i in range(ref.shape[0]) for j in range(ref.shape[1]))
    # 1 + 2^-24 + 2^-60: float32 once gives 1 + 2^-23; via float64 (or block by block) 1.0
    ops = _ones_at_block_starts([127, 103, 67], [127, 127, 127])
    assert mx_gemm(*ops, "exact")[0, 0] == 1 + 2.0 ** -23
    assert float(np.float32(np.float64(1 + 2.0 ** -24 + 2.0 ** -60))) == 1.0
    assert mx_gemm(*ops, "fp32-kblock")[0, 0] == 1.0
    assert "exact" not in matching_models(np.array([[1.0]]), *ops)
    assert matching_models(np.array([[1 + 2.0 ** -23]]), *ops) == ["exact"]


@pytest.mark.clause("MX-12.1")
def test_fp32_kblock_order_and_bf16_upcast_rounding():
    # blocks 2^25, 1, -2^25 in that order: 2^25 + 1 rounds to 2^25 in float32, so the block
    # accumulator ends at 0 where the exact sum is 1
    ops = _ones_at_block_starts([127 + 25, 127, 127 + 25], [127, 127, 127])
    ops[3][0, 2 * 32] = 0xA                                     # -1.0: the third block is -2^25
    assert mx_gemm(*ops, "exact")[0, 0] == 1.0
    assert mx_gemm(*ops, "fp32-kblock")[0, 0] == 0.0
    # 1 + 2^-9 needs 10 bits: bfloat16 output rounds it to 1
    ops = _ones_at_block_starts([127, 118], [127, 127])
    assert mx_gemm(*ops, "fp32-kblock")[0, 0] == 1 + 2.0 ** -9
    assert mx_gemm(*ops, "bf16-upcast")[0, 0] == 1.0


@pytest.mark.clause("MX-12.2")
@pytest.mark.parametrize("model", MODELS)
def test_each_model_within_its_tolerance(model):
    for seed in range(4):
        ops = _random(seed, lo=40 + seed * 20, hi=170)         # down to subnormal, no overflow
        ex = mx_gemm(*ops, "exact", "float64")
        got = mx_gemm(*ops, model)
        assert (np.abs(got - ex) <= model_tolerance(*ops, model)).all()


@pytest.mark.clause("MX-12.2")
def test_tolerances_separate_the_models():
    ops = _ones_at_block_starts([127, 118], [127, 127])            # exact value 1 + 2^-9
    ex = mx_gemm(*ops, "exact", "float64")
    bf = mx_gemm(*ops, "bf16-upcast")
    assert abs(bf - ex)[0, 0] > model_tolerance(*ops, "fp32-kblock")[0, 0]
    assert abs(bf - ex)[0, 0] <= model_tolerance(*ops, "bf16-upcast")[0, 0]


@pytest.mark.clause("MX-12.3")
@pytest.mark.parametrize("model", MODELS)
def test_nan_scale_poisons_what_it_touches(model):
    a_s, a_c, b_s, b_c = _random(7, m=3, n=2)
    a_s[1, 2] = 0xFF
    a_c[1, 64:96] = 0                                             # even with zero codes
    b_s[0, 0] = 0xFF
    c = mx_gemm(a_s, a_c, b_s, b_c, model)
    assert np.isnan(c[1]).all() and np.isnan(c[:, 0]).all()
    assert np.isfinite(c[[0, 2], 1]).all()


def _kernel_bf16_emulation(a_s, a_c, b_s, b_c):
    """A planted kernel that claims fp32 accumulation: it dequantizes to float32, sums in float32
    element by element and returns bfloat16 values (truncated mantissa rounding by RNE)."""
    v = VALUE_TABLES["e2m1"]
    da = (v[a_c] * np.ldexp(1.0, a_s.astype(int) - 127).repeat(32, 1)).astype(np.float32)
    db = (v[b_c] * np.ldexp(1.0, b_s.astype(int) - 127).repeat(32, 1)).astype(np.float32)
    acc = np.zeros((a_c.shape[0], b_c.shape[0]), np.float32)
    for k in range(a_c.shape[1]):
        acc = (acc + np.outer(da[:, k], db[:, k]).astype(np.float32)).astype(np.float32)
    bits = acc.view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16         # RNE to bfloat16
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.mark.clause("MX-12.4")
def test_a_kernel_that_upcasts_is_named():
    ops = _ones_at_block_starts([127, 118], [127, 127])
    got = _kernel_bf16_emulation(*ops)
    assert matching_models(got, *ops) == ["bf16-upcast"]
    ops = _random(3, lo=110, hi=140)
    got = _kernel_bf16_emulation(*ops)
    assert "bf16-upcast" in matching_models(got, *ops)
    assert not (np.abs(got - mx_gemm(*ops, "exact", "float64")) <= model_tolerance(*ops, "fp32-kblock")).all()


@pytest.mark.clause("MX-7.1")
def test_bad_operands():
    a_s, a_c, b_s, b_c = _random(0)
    with pytest.raises(ValueError, match="model"):
        mx_gemm(a_s, a_c, b_s, b_c, "fp16-acc")
    with pytest.raises(ValueError, match="shapes"):
        mx_gemm(a_s, a_c[:, :64], b_s, b_c)
    with pytest.raises(TypeError, match="uint8"):
        mx_gemm(a_s.astype(np.int32), a_c, b_s, b_c)
    with pytest.raises(ValueError, match="output type"):
        mx_gemm(a_s, a_c, b_s, b_c, "exact", "float8")
