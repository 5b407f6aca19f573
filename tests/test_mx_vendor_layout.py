"""Vendor block-scale layouts (spec/MX.md MX-8.4 .. MX-8.7): the offset arithmetic of
torq_ref.mx.vendor_layout against a second formulation (the reshape / permute steps the
triton_kernels layouts describe, written here in NumPy), hand-pinned offsets, round trips and the
padding bytes."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.mx import swizzle_scales
from torq_ref.mx.vendor_layout import (LAYOUTS, PAD_BYTE, padded_shape, padding_mask,
                                       swizzle_scales_for, unswizzle_scales_for)

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


@pytest.mark.clause("MX-8.4", "MX-8.5", "MX-8.6")
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
