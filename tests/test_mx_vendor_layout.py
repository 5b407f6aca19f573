"""Vendor block-scale layouts (spec/MX.md MX-8.4 .. MX-8.7): the offset arithmetic of
torq_ref.mx.vendor_layout against a second formulation (the reshape / permute steps the
triton_kernels layouts describe, written here in NumPy), hand-pinned offsets, round trips and the
padding bytes."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.mx import swizzle_scales
from torq_ref.mx.vendor_layout import (LAYOUTS, PAD_BYTE, padded_shape, padding_mask,
                                       shuffle_scale_a16w4, swizzle_scales_for,
                                       unshuffle_scale_a16w4, unswizzle_scales_for)

SHAPES = ((1, 1), (5, 3), (33, 5), (130, 9), (256, 8), (300, 2))


def _pattern(rows, cols):
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return ((r * 7 + c * 13) % 254 + 1).astype(np.uint8)


def _pad(s, pr, pc):
    out = np.zeros((pr, pc), np.uint8)
    out[: s.shape[0], : s.shape[1]] = s
    return out


def _hopper_steps(s, w):
    """HopperMXScaleLayout.swizzle_data: pad, reshape (M/32w, 2, w, 2, 8, K/2, 2), permute
    (0, 2, 5, 1, 4, 6, 3), flatten to (M/32, K*32)."""
    pr, pc = padded_shape("triton-hopper", *s.shape, num_warps=w)
    d = _pad(s, pr, pc).reshape(pr // (32 * w), 2, w, 2, 8, pc // 2, 2)
    return d.transpose(0, 2, 5, 1, 4, 6, 3).reshape(pr // 32, pc * 32).reshape(-1)


def _blackwell_steps(s):
    """BlackwellMXScaleLayout.swizzle_data on the (K, N) transpose: pad N to 128, K to 8, view
    (N/128, 4, 32, K/4, 4), swap axes 1 and 3."""
    pr, pc = padded_shape("triton-blackwell", *s.shape)
    d = _pad(s, pr, pc).reshape(pr // 128, 4, 32, pc // 4, 4)
    return d.transpose(0, 3, 2, 1, 4).reshape(-1)


def _cdna4_steps(s):
    """CDNA4MXScaleLayoutTransformation.swizzle_data: pad N to 32, K to 8, view (N/32, 2, 16, K/8,
    2, 4), permute (0, 3, 5, 2, 4, 1), rows of K*32 bytes."""
    pr, pc = padded_shape("triton-cdna4", *s.shape)
    d = _pad(s, pr, pc).reshape(pr // 32, 2, 16, pc // 8, 2, 4)
    return d.transpose(0, 3, 5, 2, 4, 1).reshape(-1)


def _aiter_steps(s):
    """aiter shuffle_scale (is_guinterleave False): pad M to 256, K to 8, view (M/32, 2, 16, K/8,
    2, 4), permute (0, 3, 5, 2, 4, 1), view (M, K)."""
    pr, pc = -(-s.shape[0] // 256) * 256, -(-s.shape[1] // 8) * 8
    d = _pad(s, pr, pc).reshape(pr // 32, 2, 16, pc // 8, 2, 4)
    return d.transpose(0, 3, 5, 2, 4, 1).reshape(-1)


def _a16w4_steps(s, experts, gate_up):
    """aiter shuffle_scale (is_guinterleave True): view (E, N1, 2, 16, K1, 2, 4) permuted by
    (0, 1, 4, 6, 3, 5, 2), or with gate_up view (E, 2, N1, 16, K1, 2, 4) permuted by
    (0, 2, 4, 6, 3, 5, 1); N1 = n / 32, K1 = K / 8."""
    n, k = s.shape[0] // experts, s.shape[1]
    if gate_up:
        d = s.reshape(experts, 2, n // 32, 16, k // 8, 2, 4).transpose(0, 2, 4, 6, 3, 5, 1)
    else:
        d = s.reshape(experts, n // 32, 2, 16, k // 8, 2, 4).transpose(0, 1, 4, 6, 3, 5, 2)
    return d.reshape(-1)


@pytest.mark.clause("MX-8.4")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("w", (1, 4, 8))
def test_hopper_equals_the_kernel_steps(shape, w):
    s = _pattern(*shape)
    assert np.array_equal(swizzle_scales_for("triton-hopper", s, num_warps=w), _hopper_steps(s, w))


@pytest.mark.clause("MX-8.4")
def test_hopper_pinned_offsets():
    # num_warps 1: rows pad to 32, cols to 2; buffer (1, cols_p * 32) per 32 rows
    s = np.zeros((32, 4), np.uint8)
    for v, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (8, 0), (16, 0), (0, 2)], start=1):
        s[r, c] = v
    buf = swizzle_scales_for("triton-hopper", s, num_warps=1)
    assert buf.size == 32 * 4
    assert [int(np.flatnonzero(buf == v)[0]) for v in range(1, 7)] == [0, 2, 4, 1, 32, 64]
    assert padded_shape("triton-hopper", 1, 1) == (256, 2)          # default 8 warps


@pytest.mark.clause("MX-8.5")
@pytest.mark.parametrize("shape", SHAPES)
def test_blackwell_equals_the_kernel_steps(shape):
    s = _pattern(*shape)
    assert np.array_equal(swizzle_scales_for("triton-blackwell", s), _blackwell_steps(s))


@pytest.mark.clause("MX-8.5", "MX-8.7")
def test_blackwell_is_cublas_with_k_padded_to_8():
    for rows, cols in SHAPES:
        s = _pattern(rows, cols)
        bw = swizzle_scales_for("triton-blackwell", s)
        cb = swizzle_scales(np.pad(s, ((0, 0), (0, -(-cols // 8) * 8 - cols))))
        assert np.array_equal(bw, cb)
    # 1 x 3 scales: cuBLAS 128 x 4 (512 bytes), the Blackwell layout 128 x 8 (1024 bytes)
    assert swizzle_scales(np.ones((1, 3), np.uint8)).size == 512
    assert swizzle_scales_for("triton-blackwell", np.ones((1, 3), np.uint8)).size == 1024


@pytest.mark.clause("MX-8.6")
@pytest.mark.parametrize("shape", SHAPES)
def test_cdna4_equals_the_kernel_steps(shape):
    s = _pattern(*shape)
    assert np.array_equal(swizzle_scales_for("triton-cdna4", s), _cdna4_steps(s))


@pytest.mark.clause("MX-8.6")
def test_cdna4_pinned_offsets():
    s = np.zeros((33, 9), np.uint8)                       # pads to 64 x 16: rows of 16 * 32 bytes
    marks = [(0, 0), (16, 0), (1, 0), (0, 4), (0, 1), (0, 8), (32, 0)]
    for v, (r, c) in enumerate(marks, start=1):
        s[r, c] = v
    buf = swizzle_scales_for("triton-cdna4", s)
    assert buf.size == 64 * 16
    assert [int(np.flatnonzero(buf == v)[0]) for v in range(1, 8)] == [0, 1, 4, 2, 64, 256, 512]


@pytest.mark.clause("MX-8.9")
@pytest.mark.parametrize("shape", SHAPES + ((257, 17),))
def test_aiter_shuffle_equals_the_source_steps(shape):
    s = _pattern(*shape)
    assert np.array_equal(swizzle_scales_for("aiter-e8m0-shuffle", s), _aiter_steps(s))


@pytest.mark.clause("MX-8.9")
def test_aiter_shuffle_pinned_offsets():
    # hand-derived from the view (8, 2, 16, 1, 2, 4) -> permute (0, 3, 5, 2, 4, 1) of a 256 x 8
    # matrix: strides (256, 256, 64, 4, 2, 1) over (n32, k8, d, b, cc, a)
    s = np.zeros((256, 8), np.uint8)
    marks = [(0, 0), (16, 0), (0, 4), (1, 0), (0, 1), (32, 0), (255, 7), (1, 1)]
    for v, (r, c) in enumerate(marks, start=1):
        s[r, c] = v
    buf = swizzle_scales_for("aiter-e8m0-shuffle", s)
    assert buf.size == 256 * 8
    assert [int(np.flatnonzero(buf == v)[0]) for v in range(1, 9)] == [0, 1, 2, 4, 64, 256, 2047, 68]
    assert swizzle_scales_for("aiter-e8m0-shuffle", np.ones((1, 1), np.uint8)).size == 2048
    assert padded_shape("aiter-e8m0-shuffle", 257, 9) == (512, 16)


@pytest.mark.clause("MX-8.9", "MX-8.6")
@pytest.mark.parametrize("shape", SHAPES)
def test_aiter_shuffle_is_triton_cdna4_with_rows_padded_to_256(shape):
    s = _pattern(*shape)
    tri = swizzle_scales_for("triton-cdna4", s)
    ait = swizzle_scales_for("aiter-e8m0-shuffle", s)
    assert np.array_equal(ait[: tri.size], tri) and (ait[tri.size:] == PAD_BYTE).all()


@pytest.mark.clause("MX-8.10")
@pytest.mark.parametrize("experts, n, k", ((1, 32, 8), (2, 64, 16), (3, 96, 24)))
@pytest.mark.parametrize("gate_up", (False, True))
def test_a16w4_equals_the_source_steps_and_round_trips(experts, n, k, gate_up):
    s = _pattern(experts * n, k)
    buf = shuffle_scale_a16w4(s, experts, gate_up)
    assert buf.size == s.size
    assert np.array_equal(buf, _a16w4_steps(s, experts, gate_up))
    assert np.array_equal(unshuffle_scale_a16w4(buf, experts * n, k, experts, gate_up), s)


@pytest.mark.clause("MX-8.10")
def test_a16w4_pinned_offsets():
    s = np.zeros((64, 8), np.uint8)
    for v, (r, c) in enumerate([(0, 0), (32, 0), (16, 0), (1, 0), (63, 7)], start=1):
        s[r, c] = v
    gu = shuffle_scale_a16w4(s, 1, gate_up=True)          # gate row i and up row 32 + i paired
    assert [int(np.flatnonzero(gu == v)[0]) for v in range(1, 6)] == [0, 1, 256, 4, 511]
    plain = shuffle_scale_a16w4(s, 1)                      # the MX-8.6 map of the 64 x 8 matrix
    assert [int(np.flatnonzero(plain == v)[0]) for v in range(1, 6)] == [0, 256, 1, 4, 511]
    # two experts of 32 rows: expert 1 starts at byte 32 * 8
    s2 = np.zeros((64, 8), np.uint8)
    s2[32, 0] = 9
    assert int(np.flatnonzero(shuffle_scale_a16w4(s2, 2) == 9)[0]) == 256
    # without gate_up and no padding needed, the map is aiter's e8m0_shuffle (MX-8.9)
    s3 = _pattern(512, 16)
    assert np.array_equal(shuffle_scale_a16w4(s3, 2), swizzle_scales_for("aiter-e8m0-shuffle", s3))


@pytest.mark.clause("MX-8.10")
def test_a16w4_shapes_off_the_tile_are_refused():
    with pytest.raises(ValueError, match="do not split into 3 experts"):
        shuffle_scale_a16w4(np.zeros((64, 8), np.uint8), 3)
    with pytest.raises(ValueError, match="rows per expert is not a multiple of 32"):
        shuffle_scale_a16w4(np.zeros((48, 8), np.uint8), 1)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        shuffle_scale_a16w4(np.zeros((32, 12), np.uint8), 1, gate_up=True)
    with pytest.raises(ValueError, match="experts must be a positive int"):
        shuffle_scale_a16w4(np.zeros((32, 8), np.uint8), 0)
    with pytest.raises(ValueError, match="256 bytes, got 255"):
        unshuffle_scale_a16w4(np.zeros(255, np.uint8), 32, 8, 1)
    with pytest.raises(TypeError, match="uint8"):
        shuffle_scale_a16w4(np.zeros((32, 8), np.int16), 1)


@pytest.mark.clause("MX-8.4", "MX-8.5", "MX-8.6", "MX-8.9")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_and_size_check(layout):
    for rows, cols in SHAPES:
        s = _pattern(rows, cols)
        buf = swizzle_scales_for(layout, s)
        assert buf.size == np.prod(padded_shape(layout, rows, cols))
        assert np.array_equal(unswizzle_scales_for(layout, buf, rows, cols), s)
    with pytest.raises(ValueError, match="bytes"):
        unswizzle_scales_for(layout, buf[:-1], rows, cols)


@pytest.mark.clause("MX-8.7")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_padding_bytes_are_zero_and_counted(layout):
    for rows, cols in SHAPES:
        s = np.full((rows, cols), 0xFF, np.uint8)        # every real scale NaN: padding shows
        buf = swizzle_scales_for(layout, s)
        pad = padding_mask(layout, rows, cols)
        pr, pc = padded_shape(layout, rows, cols)
        assert pad.sum() == pr * pc - rows * cols
        assert (buf[pad] == PAD_BYTE).all() and (buf[~pad] == 0xFF).all()


@pytest.mark.clause("MX-8.7")
def test_a_pad_read_as_nan_poisons_the_row():
    """A padded K block (codes 0) adds exactly 0 under the pad byte 0x00; under 0xFF (what a read
    past the buffer can find) it makes the whole dot product NaN."""
    from torq_ref.mx import MXTensor, dequantize
    codes = np.zeros((1, 64), np.uint8)
    codes[0, :32] = 0x2                                    # 1.0 in the real block
    for pad_byte, want in ((PAD_BYTE, 32.0), (0xFF, None)):
        t = MXTensor(codes=codes, scales=np.array([[127, pad_byte]], np.uint8), fmt="e2m1",
                     block_size=32, axis=1, scale_rule="floor")
        dot = dequantize(t).sum()
        assert (np.isnan(dot) if want is None else dot == want)


@pytest.mark.clause("MX-7.1")
def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown scale layout"):
        swizzle_scales_for("cutlass-sm200", np.zeros((1, 1), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        swizzle_scales_for("triton-cdna4", np.zeros((1, 1), np.int32))
    with pytest.raises(ValueError, match="power of two"):
        swizzle_scales_for("triton-hopper", np.zeros((1, 1), np.uint8), num_warps=6)
    with pytest.raises(ValueError, match="rows"):
        unswizzle_scales_for("triton-cdna4", np.zeros(256, np.uint8), -1, 1)
