"""Vendor block-scale layouts beside cuBLAS' 128 x 4 (spec/MX.md MX-8.4 .. MX-8.7).

All three take the scale matrix in the convention of MX-8.2: ``(rows, cols)`` uint8 codes, rows the
non-K dimension (the output features of a weight, the tokens of an activation), cols = K / 32 the
scale columns along K. Each pads with the byte 0x00 and returns the 1-D buffer as the kernels
read it; the offset of scale (r, c) is plain index arithmetic (integers only):

* ``triton-hopper`` (MX-8.4): triton_kernels' HopperMXScaleLayout (num_warps w, default 8): rows
  padded to a multiple of 32 w, cols to a multiple of 2; the buffer is (rows_p / 32, cols_p * 32).
* ``triton-blackwell`` (MX-8.5): triton_kernels' BlackwellMXScaleLayout: the 128 x 4 tiles of
  MX-8.2, but cols padded to a multiple of 8 (the kernel's ALIGN_K), so up to 4 more zero columns.
* ``triton-cdna4`` (MX-8.6): triton_kernels' CDNA4MXScaleLayout (AMD gfx950 preshuffle): rows
  padded to 32, cols to 8; the buffer is (rows_p / 32, cols_p * 32).
* ``aiter-e8m0-shuffle`` (MX-8.9): ROCm aiter's ``shuffle_scale`` / ``e8m0_shuffle`` (the gfx950
  preshuffle the aiter ASM / CK MXFP4 GEMMs read): the index map of MX-8.6, but rows padded to 256.

and, with an expert axis and no padding, aiter's MoE a16w4 scale shuffle (MX-8.10,
:func:`shuffle_scale_a16w4`): per expert the MX-8.6 map, optionally with the gate / up halves of
the rows paired in the innermost factor; a shape that is not a multiple of its tile is refused.
"""
from __future__ import annotations

import numpy as np

#: the layout names (MX-8.4 .. MX-8.6)
LAYOUTS = ("triton-hopper", "triton-blackwell", "triton-cdna4", "aiter-e8m0-shuffle")

#: the byte every layout pads with (MX-8.7): E8M0 0x00 = 2^-127, a finite scale
PAD_BYTE = 0x00


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def _check_warps(num_warps):
    if isinstance(num_warps, bool) or not isinstance(num_warps, (int, np.integer)) or num_warps < 1 \
            or num_warps & (num_warps - 1):
        raise ValueError(f"num_warps must be a positive power of two, got {num_warps!r}")
    return int(num_warps)


def padded_shape(layout: str, rows: int, cols: int, num_warps: int = 8) -> tuple[int, int]:
    """(padded rows, padded cols) of ``layout`` for a (rows, cols) scale matrix (MX-8.7)."""
    if layout == "triton-hopper":
        return _ceil_to(rows, 32 * _check_warps(num_warps)), _ceil_to(cols, 2)
    if layout == "triton-blackwell":
        return _ceil_to(rows, 128), _ceil_to(cols, 8)
    if layout == "triton-cdna4":
        return _ceil_to(rows, 32), _ceil_to(cols, 8)
    if layout == "aiter-e8m0-shuffle":                # MX-8.9: M padded to 256, not 32
        return _ceil_to(rows, 256), _ceil_to(cols, 8)
    raise ValueError(f"unknown scale layout {layout!r}; known: {', '.join(LAYOUTS)}")


def layout_offset(layout: str, r, c, rows: int, cols: int, num_warps: int = 8):
    """Byte offset of scale (r, c) in the ``layout`` buffer of a (rows, cols) matrix."""
    pr, pc = padded_shape(layout, rows, cols, num_warps)
    r = np.asarray(r, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    if layout == "triton-hopper":                     # MX-8.4
        w = int(num_warps)
        a, rem = r // (32 * w), r % (32 * w)
        p1, rem = rem // (16 * w), rem % (16 * w)
        b, rem = rem // 16, rem % 16
        p2, p3 = rem // 8, rem % 8
        k2, kk = c // 2, c % 2
        out_row = a * w + b
        out_col = (((k2 * 2 + p1) * 8 + p3) * 2 + kk) * 2 + p2
        return out_row * (pc * 32) + out_col
    if layout == "triton-blackwell":                  # MX-8.5
        return ((r // 128) * (pc // 4) + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4
    # triton-cdna4 (MX-8.6) and aiter-e8m0-shuffle (MX-8.9): the same map, only the padding differs
    return _cdna4_offset(r // 32, r % 32, c, pc)


def _cdna4_offset(n32, rr, c, pc: int):
    """The gfx950 preshuffle of one 32-row band (MX-8.6, MX-8.9, MX-8.10): band ``n32``, row
    ``rr`` < 32 of the band = 16 a + b, column c = 8 k8 + 4 cc + d, in a buffer whose bands are
    ``pc * 32`` bytes: the source's view (n32, a, b, k8, cc, d) permuted to (n32, k8, d, b, cc, a)."""
    a, b = rr // 16, rr % 16
    k8, cc, d = c // 8, (c % 8) // 4, c % 4
    return n32 * (pc * 32) + (((k8 * 4 + d) * 16 + b) * 2 + cc) * 2 + a


def _as_scales(scales) -> np.ndarray:
    s = np.asarray(scales)
    if s.dtype != np.uint8:
        raise TypeError(f"scales must be uint8 E8M0 codes, got dtype {s.dtype}")
    if s.ndim != 2:
        raise ValueError(f"scales must be 2-D (rows, cols), got shape {s.shape}")
    return s


def swizzle_scales_for(layout: str, scales, num_warps: int = 8) -> np.ndarray:
    """(rows, cols) uint8 scales -> the 1-D ``layout`` buffer, padded with 0x00 (MX-8.4 .. 8.7)."""
    s = _as_scales(scales)
    rows, cols = s.shape
    pr, pc = padded_shape(layout, rows, cols, num_warps)
    buf = np.full(pr * pc, PAD_BYTE, dtype=np.uint8)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    buf[layout_offset(layout, rr, cc, rows, cols, num_warps)] = s
    return buf


def _scale_buffer(buf, rows, cols) -> np.ndarray:
    """``buf`` as a 1-D uint8 array, rows and cols checked (MX-8.7): the common checks of the
    unswizzles."""
    b = np.asarray(buf)
    if b.dtype != np.uint8 or b.ndim != 1:
        raise TypeError(f"buf must be a 1-D uint8 array, got {b.dtype} with shape {b.shape}")
    for name, v in (("rows", rows), ("cols", cols)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    return b


def unswizzle_scales_for(layout: str, buf, rows: int, cols: int, num_warps: int = 8) -> np.ndarray:
    """Inverse of :func:`swizzle_scales_for`: the (rows, cols) scales out of ``buf``; the buffer
    size is checked against the padded shape."""
    b = _scale_buffer(buf, rows, cols)
    pr, pc = padded_shape(layout, rows, cols, num_warps)
    if b.size != pr * pc:
        raise ValueError(f"a {layout} buffer for {rows} x {cols} scales has {pr * pc} bytes "
                         f"({pr} x {pc} padded), got {b.size}")
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return b[layout_offset(layout, rr, cc, rows, cols, num_warps)]


def padding_mask(layout: str, rows: int, cols: int, num_warps: int = 8) -> np.ndarray:
    """Boolean mask over the buffer: True at the padding bytes (MX-8.7)."""
    pr, pc = padded_shape(layout, rows, cols, num_warps)
    mask = np.ones(pr * pc, dtype=bool)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    mask[layout_offset(layout, rr, cc, rows, cols, num_warps)] = False
    return mask


# ------------------------------------------------------------------ aiter MoE a16w4 (MX-8.10)
def _a16w4_shape(rows, cols, experts: int) -> int:
    """Rows per expert; the tile checks of MX-8.10 (the source's ``view`` needs them exactly)."""
    if isinstance(experts, bool) or not isinstance(experts, (int, np.integer)) or experts < 1:
        raise ValueError(f"experts must be a positive int, got {experts!r}")
    if rows % experts:
        raise ValueError(f"a16w4 scale shuffle: {rows} rows do not split into {experts} experts")
    n = rows // experts
    if n % 32:
        raise ValueError(f"a16w4 scale shuffle: {n} rows per expert is not a multiple of 32 "
                         f"(the 2 x 16 row tile); this layout has no padding")
    if cols % 8:
        raise ValueError(f"a16w4 scale shuffle: {cols} scale columns is not a multiple of 8 "
                         f"(the 2 x 4 K tile); this layout has no padding")
    return n


def a16w4_offset(r, c, rows: int, cols: int, experts: int, gate_up: bool = False):
    """Byte offset of scale (r, c) of a (rows = experts * n, cols) matrix in aiter's MoE a16w4
    scale shuffle (MX-8.10). Row r is row rn = r % n of expert e = r // n. Without ``gate_up``
    rn = 32 n1 + 16 a + b; with it the rows are two halves of n / 2 (gate, then up) and
    rn = a (n / 2) + 16 n1 + b. Either way the offset is e n cols + the MX-8.6 map of
    (n1, 16 a + b, c) with bands of 32 cols bytes."""
    n = _a16w4_shape(rows, cols, experts)
    r = np.asarray(r, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    e, rn = r // n, r % n
    if gate_up:
        half = n // 2
        a, n1, b = rn // half, (rn % half) // 16, rn % 16
    else:
        n1, a, b = rn // 32, (rn % 32) // 16, rn % 16
    return e * (n * cols) + _cdna4_offset(n1, a * 16 + b, c, cols)


def shuffle_scale_a16w4(scales, experts: int, gate_up: bool = False) -> np.ndarray:
    """(experts * n, cols) uint8 scales -> the 1-D a16w4 buffer of the same size (MX-8.10)."""
    s = _as_scales(scales)
    rows, cols = s.shape
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    buf = np.empty(rows * cols, dtype=np.uint8)
    buf[a16w4_offset(rr, cc, rows, cols, experts, gate_up)] = s
    return buf


def unshuffle_scale_a16w4(buf, rows: int, cols: int, experts: int, gate_up: bool = False) -> np.ndarray:
    """Inverse of :func:`shuffle_scale_a16w4`; the buffer must hold exactly rows * cols bytes."""
    b = _scale_buffer(buf, rows, cols)
    if b.size != rows * cols:
        raise ValueError(f"an a16w4 scale buffer for {rows} x {cols} scales has {rows * cols} bytes, "
                         f"got {b.size}")
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return b[a16w4_offset(rr, cc, rows, cols, experts, gate_up)]
