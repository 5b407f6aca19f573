"""Byte layouts: FP4 nibble packing and the cuBLAS / CUTLASS block-scale swizzle (spec/MX.md section 8).

Packing (MX-8.1): element 2i goes to the LOW nibble of byte i, element 2i+1 to the HIGH nibble
(PyTorch float4_e2m1fn_x2, Triton dot_scaled, CUDA __nv_cvt_float2_to_fp4x2).

Swizzle (MX-8.2): the (rows, cols) scale matrix is zero padded to multiples of 128 x 4 and stored
as 512-byte tiles of 128 rows x 4 columns; inside a tile, row r and column c go to
(r % 32) * 16 + (r % 128 // 32) * 4 + c % 4, and tiles run along the columns first.
"""
from __future__ import annotations

import numpy as np

from .validate import normalize_axis


def _as_nibbles(codes, name="codes") -> np.ndarray:
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui":
        raise TypeError(f"{name} must be an unsigned integer array, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 0xF):
        raise ValueError(f"{name} must hold 4-bit codes 0..15; found values up to {arr.max()}")
    return arr.astype(np.uint8, copy=False)


def pack_fp4(codes, axis: int = -1) -> np.ndarray:
    """Pack 4-bit codes two per byte along ``axis``: (..., 2k, ...) -> (..., k, ...)."""
    c = _as_nibbles(codes)
    if c.ndim == 0:
        raise ValueError("codes must have at least one dimension")
    ax = normalize_axis(axis, c.ndim)
    if c.shape[ax] % 2:
        raise ValueError(f"axis {ax} has odd length {c.shape[ax]}; FP4 packing needs pairs")
    m = np.moveaxis(c, ax, -1)
    packed = m[..., 0::2] | (m[..., 1::2] << 4)
    return np.ascontiguousarray(np.moveaxis(packed.astype(np.uint8), -1, ax))


def unpack_fp4(packed, axis: int = -1) -> np.ndarray:
    """Inverse of :func:`pack_fp4`: (..., k, ...) bytes -> (..., 2k, ...) codes."""
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be uint8, got dtype {p.dtype}")
    if p.ndim == 0:
        raise ValueError("packed must have at least one dimension")
    ax = normalize_axis(axis, p.ndim)
    m = np.moveaxis(p, ax, -1)
    out = np.empty(m.shape[:-1] + (2 * m.shape[-1],), dtype=np.uint8)
    out[..., 0::2] = m & 0xF
    out[..., 1::2] = m >> 4
    return np.ascontiguousarray(np.moveaxis(out, -1, ax))


def swizzled_offset(r, c, cols: int):
    """Byte offset of scale (r, c) in the swizzled buffer of a matrix with ``cols`` columns."""
    r = np.asarray(r, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    col_tiles = -(-cols // 4)
    return ((r // 128) * col_tiles + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + (c % 4)


def swizzle_scales(scales_2d) -> np.ndarray:
    """(rows, cols) uint8 scales -> 1-D uint8 buffer of padded_rows * padded_cols bytes."""
    s = np.asarray(scales_2d)
    if s.dtype != np.uint8:
        raise TypeError(f"scales must be uint8 E8M0/E4M3 codes, got dtype {s.dtype}")
    if s.ndim != 2:
        raise ValueError(f"scales must be 2-D (rows, cols), got shape {s.shape}")
    rows, cols = s.shape
    pr, pc = -(-rows // 128) * 128, -(-cols // 4) * 4
    buf = np.zeros(pr * pc, dtype=np.uint8)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    buf[swizzled_offset(rr, cc, cols)] = s
    return buf


def unswizzle_scales(buf, rows: int, cols: int) -> np.ndarray:
    """Inverse of :func:`swizzle_scales`: read the (rows, cols) scales back out of ``buf``."""
    b = np.asarray(buf)
    if b.dtype != np.uint8 or b.ndim != 1:
        raise TypeError(f"buf must be a 1-D uint8 array, got {b.dtype} with shape {b.shape}")
    for name, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    need = -(-rows // 128) * 128 * (-(-cols // 4) * 4)
    if b.size != need:
        raise ValueError(f"a swizzled buffer for {rows} x {cols} scales has {need} bytes, got {b.size}")
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return b[swizzled_offset(rr, cc, cols)]


# ggml's MXFP4 block (MX-8.3): struct block_mxfp4 { uint8_t e; uint8_t qs[16]; } per 32 values.
GGUF_MXFP4_BLOCK_BYTES = 17


def pack_gguf_mxfp4(scales, codes) -> np.ndarray:
    """OCP MXFP4 (E8M0 scales (..., nb), E2M1 codes (..., 32 nb)) -> ggml blocks (..., nb, 17).

    Byte 0 is the E8M0 code unchanged; byte 1 + j holds element j in the low nibble and element
    j + 16 in the high nibble. ggml reads the nibbles as doubled E2M1 values (kvalues_mxfp4 =
    0, 1, 2, 3, 4, 6, 8, 12, ...) times the halved scale 2^(e - 128): the same number."""
    s = np.asarray(scales)
    c = _as_nibbles(codes)
    if s.dtype != np.uint8:
        raise TypeError(f"scales must be uint8 E8M0 codes, got dtype {s.dtype}")
    if c.ndim == 0 or c.shape[:-1] != s.shape[:-1] or c.shape[-1] != 32 * s.shape[-1]:
        raise ValueError(f"codes {c.shape} must be scales {s.shape} with the last axis x 32")
    blk = c.reshape(c.shape[:-1] + (s.shape[-1], 32))                        # (..., nb, 32)
    out = np.empty(blk.shape[:-1] + (GGUF_MXFP4_BLOCK_BYTES,), np.uint8)     # (..., nb, 17)
    out[..., 0] = s
    out[..., 1:] = blk[..., :16] | (blk[..., 16:] << 4)
    return out


def unpack_gguf_mxfp4(blocks):
    """Inverse of :func:`pack_gguf_mxfp4`: ggml blocks (..., nb, 17) -> (scales (..., nb),
    codes (..., 32 nb))."""
    b = np.asarray(blocks)
    if b.dtype != np.uint8:
        raise TypeError(f"blocks must be uint8, got dtype {b.dtype}")
    if b.ndim < 1 or b.shape[-1] != GGUF_MXFP4_BLOCK_BYTES:
        raise ValueError(f"blocks must have a last axis of {GGUF_MXFP4_BLOCK_BYTES} bytes, got shape {b.shape}")
    qs = b[..., 1:]
    codes = np.concatenate([qs & 0xF, qs >> 4], axis=-1)                     # (..., nb, 32)
    return np.ascontiguousarray(b[..., 0]), codes.reshape(b.shape[:-2] + (-1,))
