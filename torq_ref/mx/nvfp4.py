"""NVFP4: E2M1 elements, blocks of 16, E4M3 block scales and a float32 tensor scale (spec/MX.md section 9).

Not an OCP MX format; included because kernels that handle MXFP4 usually handle NVFP4 too.
All arithmetic is float32 with IEEE round-to-nearest-even, one operation at a time (MX-9.2):

    g      = global_scale, default fp32(amax_tensor / fp32(448 * 6)) (1.0 when amax_tensor = 0)
    sb     = fp32(fp32(amax_block / 6) / g)
    S      = e4m3(sb)                      round to nearest even, saturating at 448
    denom  = fp32(value(S) * g)
    q_i    = fp32(x_i / denom)             (q_i = +-0 when denom = 0, sign kept)
    code_i = e2m1(q_i)                     round to nearest even, saturating at 6

and dequantize gives value(code_i) * value(S) * g in float64. Input is rounded to float32 first
(exact for float16 / bfloat16); non-finite input is rejected.

The tensor scale is named by ``global_scale_rule`` (MX-9.5) when no number is given: ``"amax"``
(the default, MX-9.1) or ``"none"`` (no tensor scale: g = 1.0, the E4M3 block scale alone).

Clauses: MX-9.1 the default global scale, MX-9.2 the float32 rounding steps, MX-9.3 dequantize
and bad input (non-finite input, length, global scale type and value), MX-9.5 the named
tensor-scale rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .element import encode
from .formats import VALUE_TABLES
from .validate import as_float_array, normalize_axis

NVFP4_BLOCK = 16
_E4M3_MAX = np.float32(448.0)
_E2M1_MAX = np.float32(6.0)


@dataclass(frozen=True)
class NVFP4Tensor:
    codes: np.ndarray        # uint8 E2M1 codes, same shape as the input
    scales: np.ndarray       # uint8 E4M3 codes, axis shortened to n / 16
    global_scale: np.float32
    axis: int
    block_size: int = NVFP4_BLOCK


def default_global_scale(x) -> np.float32:
    """fp32(amax / (448 * 6)); 1.0 for an all-zero tensor; 2^-149 (the smallest float32) when
    the quotient underflows to zero, so tiny tensors keep their values (MX-9.1)."""
    a = np.asarray(x, dtype=np.float32)
    amax = np.float32(np.max(np.abs(a))) if a.size else np.float32(0)
    if amax == 0:
        return np.float32(1.0)
    with np.errstate(under="ignore"):
        g = np.float32(amax / np.float32(_E4M3_MAX * _E2M1_MAX))
    return g if g > 0 else np.float32(2.0**-149)


#: the named tensor-scale rules of MX-9.5: "amax" (MX-9.1's fp32(amax / 2688)) and "none" (1.0)
GLOBAL_SCALE_RULES = ("amax", "none")


def global_scale_for(x, rule: str = "amax") -> np.float32:
    """The tensor scale g the named rule gives for ``x`` (MX-9.5): ``"amax"`` is
    :func:`default_global_scale` (MX-9.1), ``"none"`` is 1.0 (no tensor scale)."""
    if not isinstance(rule, str) or rule not in GLOBAL_SCALE_RULES:
        raise ValueError(f"unknown NVFP4 global_scale_rule {rule!r}; known: {', '.join(GLOBAL_SCALE_RULES)}")
    return default_global_scale(x) if rule == "amax" else np.float32(1.0)


def quantize_nvfp4(x, *, global_scale=None, axis: int = -1, global_scale_rule=None) -> NVFP4Tensor:
    """NVFP4 quantize (MX-9.2) under the tensor scale ``global_scale`` (a positive float32) or,
    when that is None, the named ``global_scale_rule`` (MX-9.5, default ``"amax"``); giving both
    is a ValueError."""
    if global_scale is not None and global_scale_rule is not None:
        raise ValueError("give global_scale (a number) or global_scale_rule (a name), not both; "
                         f"got global_scale={global_scale!r}, global_scale_rule={global_scale_rule!r}")
    a = as_float_array(x).astype(np.float32)
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not np.all(np.isfinite(a)):
        raise ValueError("NVFP4 quantization needs finite input (NaN / Inf found)")
    ax = normalize_axis(axis, a.ndim)
    m = np.moveaxis(a, ax, -1)
    n = m.shape[-1]
    if n % NVFP4_BLOCK:
        raise ValueError(f"axis {ax} has length {n}, not a multiple of the NVFP4 block size 16")
    if global_scale is not None and (isinstance(global_scale, (bool, np.bool_))
                                     or not isinstance(global_scale, (int, float, np.integer, np.floating))):
        raise TypeError(f"global_scale must be a positive finite float (or None for the default), "
                        f"got {type(global_scale).__name__} {global_scale!r}")
    g = global_scale_for(a, "amax" if global_scale_rule is None else global_scale_rule) if global_scale is None else np.float32(global_scale)
    if not (np.isfinite(g) and g > 0):
        raise ValueError(f"global_scale must be a positive finite float32, got {global_scale!r}")
    blocks = m.reshape(m.shape[:-1] + (n // NVFP4_BLOCK, NVFP4_BLOCK))       # (..., nb, 16)
    amax = np.max(np.abs(blocks), axis=-1)                                   # float32
    with np.errstate(over="ignore"):
        sb = (amax / _E2M1_MAX).astype(np.float32) / g
    scale_codes = encode(sb.astype(np.float32), "e4m3", saturate=True)       # (..., nb)
    denom = (VALUE_TABLES["e4m3"][scale_codes].astype(np.float32) * g).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = blocks / denom[..., None]
    q = np.where(denom[..., None] == 0, np.copysign(np.float32(0), blocks), q).astype(np.float32)
    codes = encode(q, "e2m1").reshape(m.shape)
    return NVFP4Tensor(
        codes=np.ascontiguousarray(np.moveaxis(codes, -1, ax)),
        scales=np.ascontiguousarray(np.moveaxis(scale_codes, -1, ax)),
        global_scale=np.float32(g), axis=ax,
    )


def dequantize_nvfp4(t: NVFP4Tensor) -> np.ndarray:
    """float64 value(code) * value(E4M3 scale) * global_scale."""
    if not isinstance(t, NVFP4Tensor):
        raise TypeError(f"dequantize_nvfp4 expects an NVFP4Tensor, got {type(t).__name__}")
    vals = np.moveaxis(VALUE_TABLES["e2m1"][t.codes], t.axis, -1)
    sc = np.moveaxis(VALUE_TABLES["e4m3"][t.scales], t.axis, -1)
    per = np.repeat(sc, t.block_size, axis=-1)
    return np.moveaxis(vals * per * np.float64(t.global_scale), -1, t.axis)


def quantize_nvfp4_reciprocal(x, encode_scale, *, axis: int = -1) -> NVFP4Tensor:
    """NVFP4 under the reciprocal global-scale convention (MX-9.4): the caller passes the
    *encode* scale g_enc (e.g. 448 * 6 / amax_tensor, compressed-tensors' ``global_scale``),
    and each step is one float32 RNE operation:

        sb = fp32(fp32(amax_block / 6) * g_enc);  S = e4m3(sb);  denom = fp32(value(S) / g_enc)
        q_i = fp32(x_i / denom);  code_i = e2m1(q_i)

    The returned tensor's ``global_scale`` is the decode scale fp32(1 / g_enc)."""
    a = as_float_array(x).astype(np.float32)
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not np.all(np.isfinite(a)):
        raise ValueError("NVFP4 quantization needs finite input (NaN / Inf found)")
    ge = np.float32(encode_scale)
    if not (np.isfinite(ge) and ge > 0):
        raise ValueError(f"encode_scale must be a positive finite float32, got {encode_scale!r}")
    ax = normalize_axis(axis, a.ndim)
    m = np.moveaxis(a, ax, -1)
    n = m.shape[-1]
    if n % NVFP4_BLOCK:
        raise ValueError(f"axis {ax} has length {n}, not a multiple of the NVFP4 block size 16")
    blocks = m.reshape(m.shape[:-1] + (n // NVFP4_BLOCK, NVFP4_BLOCK))       # (..., nb, 16)
    amax = np.max(np.abs(blocks), axis=-1)
    with np.errstate(over="ignore"):
        sb = ((amax / _E2M1_MAX).astype(np.float32) * ge).astype(np.float32)
    scale_codes = encode(sb, "e4m3", saturate=True)                          # (..., nb)
    with np.errstate(under="ignore"):
        denom = (VALUE_TABLES["e4m3"][scale_codes].astype(np.float32) / ge).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = blocks / denom[..., None]
    q = np.where(denom[..., None] == 0, np.copysign(np.float32(0), blocks), q).astype(np.float32)
    codes = encode(q, "e2m1").reshape(m.shape)
    with np.errstate(over="ignore"):
        g = np.float32(np.float32(1) / ge)
    return NVFP4Tensor(codes=np.ascontiguousarray(np.moveaxis(codes, -1, ax)),
                       scales=np.ascontiguousarray(np.moveaxis(scale_codes, -1, ax)),
                       global_scale=g, axis=ax)
