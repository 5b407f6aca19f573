"""More planted kernels, one per remaining cause (spec/CF.md CF-3.7 .. CF-3.9): each is the
oracle with one step changed and is named by exactly that cause."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.conformance import check
from torq_ref.golden.defects import codes_for_scale


def _amax(x, bs=32):
    with np.errstate(invalid="ignore"):
        return np.abs(x.astype(np.float64).reshape(x.shape[0], -1, bs)).max(-1)


def _requantize(x, s, fmt="e2m1"):
    """codes of x (rows, 32 nb) under the scales s (rows, nb), each block by the oracle."""
    c = np.empty(x.shape, np.uint8)
    for r in range(x.shape[0]):
        for b in range(s.shape[1]):
            sl = slice(32 * b, 32 * b + 32)
            c[r, sl] = codes_for_scale(x[r, sl], int(s[r, b]), fmt) if s[r, b] < 255 else \
                mx.quantize(x[r:r + 1, sl], fmt, backend="numpy").codes
    return c


def _only(rep, cause):
    assert not rep.passed
    assert rep.failing_causes() == {cause}, rep.per_cause


@pytest.mark.clause("CF-3.7")
def test_non_finite_code():
    def no_saturation_e4m3(x):          # the element cast without satfinite: overflow -> NaN code
        t = mx.quantize(x, "e4m3", backend="numpy")
        s = t.scales
        q = np.ldexp(x.astype(np.float64), 127 - np.repeat(s.astype(np.int64), 32, axis=1))
        with np.errstate(invalid="ignore"):
            c = mx.encode(q, "e4m3", saturate=False)
        return s, np.where(np.repeat(s == 255, 32, axis=1), t.codes, c)
    _only(check("quantize", no_saturation_e4m3, fmt="e4m3"), "NonFiniteCode")


@pytest.mark.clause("CF-3.7")
def test_zero_block_scale():
    def one_for_zero_blocks(x):
        t = mx.quantize(x, "e2m1", backend="numpy")
        return np.where(_amax(x) == 0, 0x7F, t.scales).astype(np.uint8), t.codes
    _only(check("quantize", one_for_zero_blocks), "ZeroBlockScale")


@pytest.mark.clause("CF-3.7")
def test_rceil_quotient_flushed():
    def ftz_quotient(x):
        t = mx.quantize(x, "e2m1", scale_rule="rceil", backend="numpy")
        with np.errstate(under="ignore", invalid="ignore"):
            d = (_amax(x).astype(np.float32) / np.float32(6))
        s = np.where((d > 0) & (d < np.float32(2.0 ** -126)), 0, t.scales).astype(np.uint8)
        return s, _requantize(x, s)
    _only(check("quantize", ftz_quotient, profile="nvidia"), "RceilQuotientFlushed")


@pytest.mark.clause("CF-3.7")
def test_wrong_scale_and_codes():
    def nan_scale_for_huge(x):
        t = mx.quantize(x, "e2m1", backend="numpy")
        huge = (_amax(x) >= 2.0 ** 120) & np.isfinite(_amax(x))
        c = np.where(np.repeat(huge, 32, axis=1), 0x3, t.codes).astype(np.uint8)
        return np.where(huge, 0xFF, t.scales).astype(np.uint8), c
    _only(check("quantize", nan_scale_for_huge), "WrongScaleAndCodes")


@pytest.mark.clause("CF-3.8")
def test_fake_quant_value_mismatch_and_non_pow2():
    def nan_for_huge(x):
        y = mx.quantize_dequantize(x, "e2m1", backend="numpy").astype(np.float32)
        huge = np.repeat((_amax(x) >= 2.0 ** 120) & np.isfinite(_amax(x)), 32, axis=1)
        return np.where(huge, np.float32(np.nan), y)
    _only(check("fake-quant", nan_for_huge), "ValueMismatch")

    def three_quarter_scale(x):        # blocks of amax in [1, 8): the scale times 0.75
        y = mx.quantize_dequantize(x, "e2m1", backend="numpy")
        a = np.repeat(_amax(x), 32, axis=1)
        sel = (a >= 1) & (a < 8) & np.isfinite(a) & (y != 0)
        return np.where(sel, y * 0.75, y).astype(np.float32)
    _only(check("fake-quant", three_quarter_scale, level="quick"), "NonPowerOfTwoScale")


def _nvfp4(x, g):
    t = mx.quantize_nvfp4(x, global_scale=g)
    return t.scales, t.codes


@pytest.mark.clause("CF-3.7", "MX-9.2")
def test_nvfp4_zero_denominator_and_divide_first():
    def saturate_on_zero_scale(x, g):
        s, c = _nvfp4(x, g)
        zero = np.repeat(s == 0, 16, axis=1)
        sat = np.where(np.signbit(x), 0xF, 0x7) & np.where(x == 0, 0, 0xF)
        hit = zero & (x != 0)
        return s, np.where(hit, sat, c).astype(np.uint8)
    _only(check("quantize", saturate_on_zero_scale, fmt="nvfp4"), "Nvfp4ZeroDenominator")

    from torq_ref.conformance.quantize_nvfp4 import nvfp4_divide_first as _nvfp4_divide_first

    def divide_first(x, g):
        rows = [_nvfp4_divide_first(x[i:i + 1], g) for i in range(x.shape[0])]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    rep = check("quantize", divide_first, fmt="nvfp4", level="quick")
    assert "Nvfp4DivideByTensorScaleFirst" in rep.failing_causes()


@pytest.mark.clause("CF-3.7")
def test_divisor_flushed_to_zero():
    def ftz_divisor(x):                 # FTZ: 2^-127 is 0, x / 0 = +-Inf, clipped to +-max
        t = mx.quantize(x, "e4m3", backend="numpy")
        z = np.repeat(t.scales == 0, 32, axis=1)
        sat = np.where(np.signbit(x), 0xFE, 0x7E)
        hit = z & (x != 0)
        return t.scales, np.where(hit, sat, t.codes).astype(np.uint8)
    _only(check("quantize", ftz_divisor, fmt="e4m3"), "DivisorFlushedToZero")
