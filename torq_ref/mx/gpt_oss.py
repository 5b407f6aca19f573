"""gpt-oss MXFP4 expert weights: the ``*_blocks`` / ``*_scales`` tensors of the checkpoint and
their dequantization to bfloat16 as the Hugging Face loader lays it out (spec/MX.md MX-8.8).

A projection of E experts with ``rows`` output features and K inputs is stored as
``blocks`` uint8 (E, rows, K/32, 16), two E2M1 codes per byte, element 2i in the low nibble (the
packing of MX-8.1 within each 32-element block), and ``scales`` uint8 (E, rows, K/32), E8M0.
The loader returns W of shape (E, K, rows) (transposed, for x @ W) in bfloat16.
"""
from __future__ import annotations

import numpy as np

from .formats import VALUE_TABLES
from .layout import pack_fp4, unpack_fp4

#: bfloat16's largest finite value, (2 - 2^-7) * 2^127
BF16_MAX = float.fromhex("0x1.fep+127")


def pack_gpt_oss(scales, codes):
    """(scales (E, rows, nb), codes (E, rows, 32 nb)) -> (blocks (E, rows, nb, 16), scales)."""
    s = np.asarray(scales)
    c = np.asarray(codes)
    if s.dtype != np.uint8 or c.dtype != np.uint8:
        raise TypeError(f"scales and codes must be uint8, got {s.dtype} and {c.dtype}")
    if s.ndim != 3 or c.shape != s.shape[:2] + (32 * s.shape[2],):
        raise ValueError(f"codes {c.shape} must be scales {s.shape} with the last axis x 32")
    blocks = pack_fp4(c).reshape(s.shape + (16,))
    return blocks, s.copy()


def dequantize_gpt_oss(blocks, scales) -> np.ndarray:
    """W (E, K, rows) as float64 holding bfloat16 values: value(code) * 2^(s - 127), which is exact
    in bfloat16 except above BF16_MAX (+-Inf; 2 x 2^127 and up, scale 0xFE with |value| >= 2);
    a scale 0xFF gives NaN (MX-5.6)."""
    b = np.asarray(blocks)
    s = np.asarray(scales)
    if b.dtype != np.uint8 or s.dtype != np.uint8:
        raise TypeError(f"blocks and scales must be uint8, got {b.dtype} and {s.dtype}")
    if b.ndim != 4 or b.shape[-1] != 16 or b.shape[:3] != s.shape:
        raise ValueError(f"blocks {b.shape} must be (E, rows, nb, 16) with scales (E, rows, nb), "
                         f"got scales {s.shape}")
    e, rows, nb = s.shape
    codes = unpack_fp4(b.reshape(e, rows, nb * 16))                        # (E, rows, K)
    vals = VALUE_TABLES["e2m1"][codes].astype(np.float64)
    scale = np.ldexp(1.0, s.astype(np.int64) - 127).repeat(32, axis=-1)
    w = vals * scale
    big = np.abs(w) > BF16_MAX
    w[big] = np.copysign(np.inf, w[big])
    w[(s == 0xFF).repeat(32, axis=-1)] = np.nan
    return np.ascontiguousarray(np.swapaxes(w, 1, 2))
