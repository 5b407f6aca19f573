"""FP4 packing, the 128x4 scale swizzle (spec/MX.md section 8) and NVFP4 (section 9)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torq_ref import mx


@pytest.mark.clause("MX-8.1")
def test_pack_written_out():
    codes = mx.encode(np.array([1.0, -6.0, -0.5, 3.0], np.float32), "e2m1")
    assert list(mx.pack_fp4(codes)) == [0xF2, 0x59]
    assert list(mx.unpack_fp4(np.array([0xF2, 0x59], np.uint8))) == [0x2, 0xF, 0x9, 0x5]
    with pytest.raises(ValueError, match="odd length"):
        mx.pack_fp4(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="4-bit codes"):
        mx.pack_fp4(np.array([16, 0], np.uint8))


@pytest.mark.clause("MX-8.1")
@given(codes=hnp.arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 6).map(lambda k: 2 * k)),
                        elements=st.integers(0, 15)), axis=st.sampled_from([0, 1, -1]))
def test_pack_round_trip(codes, axis):
    if codes.shape[axis] % 2:
        return
    packed = mx.pack_fp4(codes, axis=axis)
    assert packed.shape[axis] == codes.shape[axis] // 2
    assert np.array_equal(mx.unpack_fp4(packed, axis=axis), codes)


@pytest.mark.clause("MX-8.2")
def test_swizzle_written_out():
    assert int(mx.swizzled_offset(5, 2, cols=8)) == 82
    assert int(mx.swizzled_offset(5, 5, cols=8)) == 593
    s = np.arange(130 * 6, dtype=np.int64).reshape(130, 6).astype(np.uint8)
    buf = mx.swizzle_scales(s)
    assert buf.shape == (256 * 8,)
    assert buf[82] == s[5, 2] and buf[593] == s[5, 5]
    # padding is zero: 256*8 slots, 130*6 used
    assert np.count_nonzero(buf) == np.count_nonzero(s)
    with pytest.raises(ValueError, match="2048 bytes"):
        mx.unswizzle_scales(buf[:-1], 130, 6)


@pytest.mark.clause("MX-8.2")
@given(rows=st.integers(1, 300), cols=st.integers(1, 11), seed=st.integers(0, 2**16))
def test_swizzle_round_trip(rows, cols, seed):
    s = np.random.default_rng(seed).integers(0, 256, size=(rows, cols), dtype=np.uint8)
    buf = mx.swizzle_scales(s)
    assert buf.size == (-(-rows // 128) * 128) * (-(-cols // 4) * 4)
    assert np.array_equal(mx.unswizzle_scales(buf, rows, cols), s)


@pytest.mark.clause("MX-9.1", "MX-9.2")
def test_nvfp4_written_out():
    x = np.zeros(16, np.float32)
    x[:4] = [6.0, 3.0, -1.5, 0.5]
    t = mx.quantize_nvfp4(x, global_scale=1.0)
    assert t.scales[0] == 0x38 and list(t.codes[:4]) == [0x7, 0x5, 0xB, 0x1]   # e4m3 0x38 = 1.0
    t = mx.quantize_nvfp4(x)
    assert t.global_scale == np.float32(np.float32(6.0) / np.float32(2688.0))
    assert t.scales[0] == 0x7E                   # 448
    assert list(t.codes[:4]) == [0x7, 0x5, 0xB, 0x1]
    assert mx.default_global_scale(np.zeros(16, np.float32)) == 1.0
    tiny = np.zeros(16, np.float32)
    tiny[:2] = [7 * 2.0**-149, -2.0**-149]
    assert mx.default_global_scale(tiny) == np.float32(2.0**-149)
    tt = mx.quantize_nvfp4(tiny)
    assert list(mx.dequantize(tt)[:2]) == [6 * 2.0**-149, -2.0**-149]
    z = mx.quantize_nvfp4(np.full(16, -0.0, np.float32))
    assert np.all(z.codes == 0x8) and z.scales[0] == 0


@pytest.mark.clause("MX-9.2", "MX-9.3")
def test_nvfp4_matches_float32_steps():
    rng = np.random.default_rng(0)
    x = (rng.standard_t(3, size=(8, 64)) * 10).astype(np.float32)
    t = mx.quantize_nvfp4(x)
    g = np.float32(t.global_scale)
    blocks = x.reshape(8, 4, 16)
    amax = np.abs(blocks).max(-1)
    sb = (amax / np.float32(6)).astype(np.float32) / g
    s_codes = mx.encode(sb.astype(np.float32), "e4m3")
    assert np.array_equal(t.scales, s_codes)
    denom = (mx.decode(s_codes, "e4m3").astype(np.float32) * g).astype(np.float32)
    q = (blocks / denom[..., None]).astype(np.float32)
    assert np.array_equal(t.codes, mx.encode(q, "e2m1").reshape(8, 64))
    v = mx.dequantize(t)
    assert np.array_equal(v, (mx.E2M1_VALUES[t.codes].reshape(8, 4, 16)
                              * mx.decode(t.scales, "e4m3")[..., None] * np.float64(g)).reshape(8, 64))
    assert np.max(np.abs(v - x) / (np.abs(x).max())) < 0.2


@pytest.mark.clause("MX-9.3")
def test_nvfp4_bad_input():
    with pytest.raises(ValueError, match="finite"):
        mx.quantize_nvfp4(np.array([np.inf] + [0.0] * 15, np.float32))
    with pytest.raises(ValueError, match="multiple of the NVFP4 block size 16"):
        mx.quantize_nvfp4(np.zeros(20, np.float32))
    with pytest.raises(ValueError, match="global_scale"):
        mx.quantize_nvfp4(np.zeros(16, np.float32), global_scale=0.0)


@pytest.mark.clause("MX-9.2")
def test_nvfp4_block_scale_saturates_at_448():
    """Hand-derived (MX-9.2) with g = 1: block amax 6000 gives sb = 6000 / 6 = 1000 > 448, so the
    E4M3 scale saturates to 448 (code 0x7E, not the NaN code 0x7F); denom = 448, and
    6000 / 448 = 13.4 saturates to E2M1 6 (0x7), 1344 / 448 = 3 (0x5), -224 / 448 = -0.5 (0x9),
    100 / 448 = 0.223 rounds to 0 (0x0)."""
    x = np.zeros(16, np.float32)
    x[:4] = [6000.0, 1344.0, -224.0, 100.0]
    t = mx.quantize_nvfp4(x, global_scale=1.0)
    assert t.scales[0] == 0x7E
    assert list(t.codes[:4]) == [0x7, 0x5, 0x9, 0x0]
    assert list(mx.dequantize(t)[:4]) == [2688.0, 1344.0, -224.0, 0.0]
    # g = 0.5: sb = 1 / 6 / 0.5 = 1/3 -> e4m3 RNE 0.333... -> 0x2B (0.34375 = 1.375 * 2^-2)
    y = np.zeros(16, np.float32)
    y[0] = 1.0
    assert mx.quantize_nvfp4(y, global_scale=0.5).scales[0] == 0x2B


@pytest.mark.clause("MX-9.3", "MX-7.1")
@pytest.mark.parametrize("bad", ["x", None.__class__, [1.0], True, np.array([1.0, 2.0])])
def test_nvfp4_global_scale_type_is_checked(bad):
    if bad is None.__class__:
        bad = object()
    with pytest.raises(TypeError, match="global_scale must be a positive finite float"):
        mx.quantize_nvfp4(np.ones(16, np.float32), global_scale=bad)


@pytest.mark.clause("MX-8.2", "MX-7.1")
@pytest.mark.parametrize("rows, cols", [(1.5, 4), (2, 4.0), (True, 4), (-1, 4)])
def test_unswizzle_rows_cols_must_be_ints(rows, cols):
    buf = np.zeros(512, np.uint8)
    with pytest.raises(ValueError, match="must be a non-negative int"):
        mx.unswizzle_scales(buf, rows, cols)


@pytest.mark.clause("MX-9.5")
def test_nvfp4_named_tensor_scale_rules():
    rng = np.random.default_rng(95)
    x = (rng.standard_normal((3, 64)) * 40).astype(np.float32)
    g = mx.default_global_scale(x)
    amax = mx.quantize_nvfp4(x, global_scale_rule="amax")
    for other in (mx.quantize_nvfp4(x), mx.quantize_nvfp4(x, global_scale=g)):
        assert np.array_equal(amax.scales, other.scales) and np.array_equal(amax.codes, other.codes)
    assert amax.global_scale == g == mx.global_scale_for(x, "amax") != 1
    none = mx.quantize_nvfp4(x, global_scale_rule="none")
    one = mx.quantize_nvfp4(x, global_scale=1.0)
    assert none.global_scale == 1 == mx.global_scale_for(x, "none")
    assert np.array_equal(none.scales, one.scales) and np.array_equal(none.codes, one.codes)
    assert not np.array_equal(none.scales, amax.scales)
    assert mx.GLOBAL_SCALE_RULES == ("amax", "none")


@pytest.mark.clause("MX-9.5")
def test_nvfp4_without_tensor_scale_pinned():
    big = mx.quantize_nvfp4(np.array([3000.0, -3000.0] + [0.0] * 14, np.float32), global_scale_rule="none")
    assert big.scales.tolist() == [0x7E] and big.codes[:2].tolist() == [0x7, 0xF]
    edge = np.float32(6 * 2.0 ** -10)
    tiny = mx.quantize_nvfp4(np.array([edge, -edge] + [0.0] * 14, np.float32), global_scale_rule="none")
    assert tiny.scales.tolist() == [0] and tiny.codes[:2].tolist() == [0x0, 0x8]
    above = mx.quantize_nvfp4(np.full(16, edge * np.float32(1.01), np.float32), global_scale_rule="none")
    assert above.scales.tolist() == [0x01] and (above.codes == 0x5).all()
    kept = mx.quantize_nvfp4(np.array([edge, -edge] + [0.0] * 14, np.float32), global_scale_rule="amax")
    assert kept.codes[:2].tolist() == [0x7, 0xF]                 # amax keeps the tiny tensor
    x = np.array([2688.0] + [1.0] * 15, np.float32)              # amax 2688: g = 1 under both
    assert mx.global_scale_for(x, "amax") == 1.0


@pytest.mark.clause("MX-9.5", "MX-7.1")
def test_nvfp4_tensor_scale_rule_errors():
    x = np.ones(16, np.float32)
    with pytest.raises(ValueError, match="not both"):
        mx.quantize_nvfp4(x, global_scale=1.0, global_scale_rule="none")
    with pytest.raises(ValueError, match="unknown NVFP4 global_scale_rule 'unit'; known: amax, none"):
        mx.quantize_nvfp4(x, global_scale_rule="unit")
    with pytest.raises(ValueError, match="unknown NVFP4 global_scale_rule"):
        mx.global_scale_for(x, None)
