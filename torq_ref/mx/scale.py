"""E8M0 shared-scale computation: the four scale rules (spec/MX.md section 4).

A scale code s in 0..254 means 2^(s - 127); 0xFF is NaN. From the block's largest magnitude
amax = m * 2^E (m in [1, 2), exact from ``np.frexp``):

    FLOOR  s = 127 + E - emax                          (OCP MX v1.0 section 6.3)
    CEIL   s = 127 + E - emax + [m > 1]
    EVEN   s = 127 + E - emax + [m >= 2 - 2^-(mbits+1)]
    RCEIL  s = 127 + ceil(log2(d)),  d = amax / max_elem rounded once to the working float
           (float32 for float16/float32 input, float64 for float64 input), as hardware does

then clamped below at 0; above 254 (and for Inf amax) the code is 0xFF, or 0xFE when
``saturate_scale`` (satfinite). NaN amax always gives 0xFF; amax = 0 gives 0.
"""
from __future__ import annotations

import numpy as np

from .formats import E8M0_BIAS, E8M0_MAX_FINITE, E8M0_NAN, ElementFormat, check_scale_rule, get_format


def scale_codes(amax, fmt: str | ElementFormat, rule: str = "floor", *, saturate_scale: bool = False,
                working_dtype=np.float32) -> np.ndarray:
    """E8M0 code for each block maximum ``amax`` (non-negative, or NaN / Inf), as uint8.

    ``working_dtype`` is the float type the RCEIL quotient is rounded to (MX-4.3).
    """
    f = get_format(fmt)
    rule = check_scale_rule(rule)
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
        else:  # even: round the significand to mbits+1 fractional bits' worth, carry into E
            delta = (mant >= 2.0 - np.ldexp(1.0, -(f.mbits + 1))).astype(np.int64)
        unbiased = E - f.emax + delta
    code = np.where(finite > 0, unbiased + E8M0_BIAS, 0)
    code = np.maximum(code, 0)
    overflow = (code > E8M0_MAX_FINITE) | inf
    code = np.where(overflow, E8M0_MAX_FINITE if saturate_scale else E8M0_NAN, code)
    code = np.where(nan, E8M0_NAN, code)
    return code.astype(np.uint8)


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
