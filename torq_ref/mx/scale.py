"""E8M0 shared-scale computation: the five scale rules (spec/MX.md section 4).

A scale code s in 0..254 means 2^(s - 127); 0xFF is NaN. From the block's largest magnitude
amax = m * 2^E (m in [1, 2), exact from ``np.frexp``):

    FLOOR  s = 127 + E - emax                          (OCP MX v1.0 section 6.3)
    CEIL   s = 127 + E - emax + [m > 1]
    EVEN   s = 127 + E - emax + [m >= 2 - 2^-(mbits+1)]
    CUTLASS s = 127 + E - emax + [m >= 1.75]          (the float32 bit pattern of amax plus 2^21,
                                                      its biased exponent: vLLM's CUTLASS MoE)
    RCEIL  s = 127 + ceil(log2(d)),  d = amax / max_elem rounded once to the working float
           (float32 for float16/float32 input, float64 for float64 input), as hardware does

then clamped below at 0; above 254 (and for Inf amax) the code is 0xFF, or 0xFE when
``saturate_scale`` (satfinite). NaN amax always gives 0xFF; amax = 0 gives 0.

MSE (MX-4.8) needs the block's values, not only amax, so it lives in :func:`block_scale_codes`:
of the FLOOR code s and s + 1 it keeps the one whose quantized block has the smaller squared
error, the error summed in float64 in element order, a tie going to s.
"""
from __future__ import annotations

import numpy as np

from .element import encode
from .formats import (E8M0_BIAS, E8M0_MAX_FINITE, E8M0_NAN, VALUE_TABLES, ElementFormat, check_scale_rule,
                      get_format)


def scale_codes(amax, fmt: str | ElementFormat, rule: str = "floor", *, saturate_scale: bool = False,
                working_dtype=np.float32) -> np.ndarray:
    """E8M0 code for each block maximum ``amax`` (non-negative, or NaN / Inf), as uint8.

    ``working_dtype`` is the float type the RCEIL quotient is rounded to (MX-4.3).
    """
    f = get_format(fmt)
    rule = check_scale_rule(rule)
    if rule == "mse":
        raise ValueError("scale_rule 'mse' (MX-4.8) chooses the scale from the block's values, not from "
                         "amax alone: use block_scale_codes(blocks, fmt, 'mse') or quantize(..., "
                         "scale_rule='mse')")
    raw = np.asarray(amax)
    if raw.dtype.kind not in "fiu" or raw.dtype == np.bool_:
        raise TypeError(f"amax must be a real array of block maxima, got dtype {raw.dtype}")
    a = raw.astype(np.float64)
    if np.any(a < 0):
        # A block maximum is a magnitude: a negative one is a caller's bug, not a scale (MX-7.1).
        raise ValueError(f"amax must be non-negative (or NaN / +Inf); found {a[a < 0].flat[0]!r}")
    nan = np.isnan(a)
    inf = np.isinf(a)
    finite = np.where(nan | inf, 0.0, a)
    if rule == "rceil":
        d = _rounded_quotient(finite, f.max_value, working_dtype)
        # A quotient that underflows to zero needs the smallest scale (code 0).
        unbiased = np.where(d > 0, _ceil_log2(d), -(1 << 20))
    else:
        m, e = np.frexp(finite)          # finite = m * 2^e, m in [0.5, 1)
        E = e - 1
        mant = 2.0 * m                   # in [1, 2) for finite > 0
        if rule == "floor":
            delta = 0
        elif rule == "ceil":
            delta = (mant > 1.0).astype(np.int64)
        elif rule == "cutlass":  # MX-4.9: a carry out of the top two mantissa bits, whatever mbits
            delta = (mant >= 1.75).astype(np.int64)
        else:  # even: round the significand to mbits+1 fractional bits' worth, carry into E
            delta = (mant >= 2.0 - np.ldexp(1.0, -(f.mbits + 1))).astype(np.int64)
        unbiased = E - f.emax + delta
    code = np.where(finite > 0, unbiased + E8M0_BIAS, 0)
    code = np.maximum(code, 0)
    overflow = (code > E8M0_MAX_FINITE) | inf
    code = np.where(overflow, E8M0_MAX_FINITE if saturate_scale else E8M0_NAN, code)
    code = np.where(nan, E8M0_NAN, code)
    return code.astype(np.uint8)


def block_scale_codes(blocks, fmt: str | ElementFormat, rule: str = "floor", *, saturate_scale: bool = False,
                      working_dtype=np.float32) -> np.ndarray:
    """E8M0 code of each block of ``blocks`` (..., nb, bs) for any rule, as uint8 (..., nb).

    The amax rules go through :func:`scale_codes`; MSE (MX-4.8) refines FLOOR's code.
    """
    f = get_format(fmt)
    rule = check_scale_rule(rule)
    wide = np.asarray(blocks)
    if wide.dtype.kind != "f" or wide.ndim < 1:
        raise TypeError(f"blocks must be a float array (..., nb, bs), got dtype {wide.dtype}, ndim {wide.ndim}")
    wide = wide.astype(np.float64)
    with np.errstate(invalid="ignore"):
        amax = np.max(np.abs(wide), axis=-1)               # NaN propagates
    if rule != "mse":
        return scale_codes(amax, f, rule, saturate_scale=saturate_scale, working_dtype=working_dtype)
    floor = scale_codes(amax, f, "floor", saturate_scale=saturate_scale)
    return _mse_refine(wide, f, floor, amax)


def _mse_refine(wide: np.ndarray, f: ElementFormat, floor: np.ndarray, amax: np.ndarray) -> np.ndarray:
    """MX-4.8: FLOOR's code s, or s + 1 where that block's squared error is strictly smaller.

    Errors are in units of the FLOOR scale 2^(s-127) (a power-of-two rescaling of both sides, exact
    for float16 / bfloat16 / float32 input): e_j = sum_i (x_i 2^-(s-127) - q_ij)^2 with q_ij the
    dequantized element under candidate j in the same units, summed left to right in float64.
    """
    # Candidates: finite blocks with amax > 0 whose FLOOR code has a finite successor (<= 254).
    cand = np.isfinite(amax) & (amax > 0) & (floor < E8M0_MAX_FINITE)
    exp = np.where(cand, floor.astype(np.int64) - E8M0_BIAS, 0)          # (..., nb)
    xs = np.ldexp(np.where(cand[..., None], wide, 0.0), -exp[..., None])  # x in units of 2^exp
    table = VALUE_TABLES[f.name]
    q0 = table[encode(xs, f.name, saturate=True)]                        # candidate s, same units
    q1 = 2.0 * table[encode(np.ldexp(np.where(cand[..., None], wide, 0.0), -exp[..., None] - 1),
                            f.name, saturate=True)]                      # candidate s + 1
    e0 = np.zeros(amax.shape)
    e1 = np.zeros(amax.shape)
    for i in range(wide.shape[-1]):        # sequential sum, element order (the clause's arithmetic)
        d0 = xs[..., i] - q0[..., i]
        d1 = xs[..., i] - q1[..., i]
        e0 = e0 + d0 * d0
        e1 = e1 + d1 * d1
    up = cand & (e1 < e0)                  # a tie keeps FLOOR's code
    return np.where(up, floor.astype(np.int64) + 1, floor).astype(np.uint8)


def _rounded_quotient(amax: np.ndarray, max_elem: float, working_dtype) -> np.ndarray:
    """amax / max_elem, rounded once to ``working_dtype`` (IEEE division), returned as float64."""
    wd = np.dtype(working_dtype)
    with np.errstate(over="ignore"):
        if wd == np.float64:
            return amax / max_elem
        if wd == np.float32:
            return (amax.astype(np.float32) / np.float32(max_elem)).astype(np.float64)
    raise ValueError(f"working_dtype must be float32 or float64, got {wd}")


def _ceil_log2(d: np.ndarray) -> np.ndarray:
    """Exact ceil(log2(d)) for d > 0 (any value where d == 0; callers mask it); Inf -> large."""
    big = np.isinf(d)
    m, e = np.frexp(np.where(big, 1.0, d))   # d = m * 2^e, m in [0.5, 1)
    out = np.where(m == 0.5, e - 1, e)
    return np.where(big, 1 << 20, out)


def scale_values(codes) -> np.ndarray:
    """float64 value 2^(s-127) of each E8M0 code; 0xFF -> NaN (MX-4.1)."""
    c = np.asarray(codes)
    if c.dtype != np.uint8:
        raise TypeError(f"scale codes must be uint8, got dtype {c.dtype}")
    v = np.ldexp(1.0, c.astype(np.int64) - E8M0_BIAS)
    return np.where(c == E8M0_NAN, np.nan, v)


#: rounding modes of the scalar fp32 -> E8M0 cast (MX-4.10)
E8M0_CAST_MODES = ("nearest", "floor", "ceil-satfinite")


def e8m0_cast(x, mode: str = "nearest") -> np.ndarray:
    """E8M0 code of each positive float (or NaN / +Inf), as uint8, under a named rounding mode
    (MX-4.10). With x = m * 2^E (m in [1, 2), exact from frexp):

        nearest         E + [m >= 1.5]: the nearest power of two, ties (1.5 x 2^k) up; a
                        result above 2^127 (or +Inf) is 0xFF (torch float8_e8m0fnu, ml_dtypes)
        floor           E (the float32 exponent field); +Inf is 0xFF
        ceil-satfinite  E + [m > 1], above 2^127 (and +Inf) 0xFE (CUDA __nv_cvt_float_to_e8m0
                        with cudaRoundPosInf and saturation; PTX cvt.rp.satfinite.ue8m0x2)

    then 127 + that, below 0 clamped to 0x00 (2^-127, the smallest code: E8M0 has no zero).
    NaN gives 0xFF. Zero and negative inputs have no E8M0 value and are a ValueError.
    """
    if mode not in E8M0_CAST_MODES:
        raise ValueError(f"unknown E8M0 cast mode {mode!r}; known: {', '.join(E8M0_CAST_MODES)}")
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"x must be a float array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    nan, inf = np.isnan(a), np.isinf(a)
    if np.any((a <= 0) & ~nan):
        raise ValueError("the E8M0 cast is defined for positive inputs, NaN and +Inf; found "
                         f"{a[(a <= 0) & ~nan].flat[0]!r}")
    fin = np.where(nan | inf, 1.0, a)
    m, e = np.frexp(fin)
    E, mant = e - 1, 2.0 * m
    up = {"nearest": mant >= 1.5, "floor": np.zeros(a.shape, bool), "ceil-satfinite": mant > 1.0}[mode]
    code = np.maximum(E + up.astype(np.int64) + E8M0_BIAS, 0)
    over = (code > E8M0_MAX_FINITE) | inf
    code = np.where(over, E8M0_MAX_FINITE if mode == "ceil-satfinite" else E8M0_NAN, code)
    return np.where(nan, E8M0_NAN, code).astype(np.uint8)
