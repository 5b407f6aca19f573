"""Element encode / decode for every MX element format (spec/MX.md sections 2-3).

The reference path works in float64, where every float16/float32/float64 input and every element
value is exact, with exponent arithmetic from ``np.frexp`` / ``np.ldexp`` (never a float log2).
Rounding is round-to-nearest, ties-to-even (``np.rint`` on an exactly scaled value).
Clauses: MX-3.1..3.5 in ``encode``, MX-2.2 ``decode``; MX-11.1: the E2M1 encoder is checked on all
2^32 float32 bit patterns by the slow tests/test_mx_sweep.py.
"""
from __future__ import annotations

import numpy as np

from . import _numba_kernels
from .formats import VALUE_TABLES, ElementFormat, get_format
from .validate import as_code_array, as_float_array


def encode(x, fmt: str, *, saturate: bool = True, nan_code: int | None = None,
           backend: str = "auto") -> np.ndarray:
    """Encode each value of ``x`` to its nearest ``fmt`` code (ties to even), as uint8.

    MX-3.1 rounding, MX-3.2 saturation / overflow, MX-3.3 signed zero, MX-3.4 NaN and Inf.
    ``saturate=False`` is only defined for formats that have an overflow code (e4m3 -> NaN,
    e5m2 -> Inf); for the others it raises ValueError. ``nan_code`` replaces the format's
    default NaN code (MX-2.6). ``backend`` as in :func:`torq_ref.mx.quantize` (MX-6.1).
    """
    f = get_format(fmt)
    raw = as_float_array(x)
    if backend not in ("auto", "numpy", "numba"):
        raise ValueError(f"unknown backend {backend!r}; known: auto, numpy, numba")
    # Every argument is checked before any path runs (MX-7.1), the numba one included.
    if not saturate and not (f.has_inf or f.has_nan):
        raise ValueError(
            f"{f.name} has no Inf or NaN code, so saturate=False has no defined result; "
            "MX element conversion saturates (OCP MX v1.0 section 6.3)"
        )
    nan_out = f.default_nan_code if nan_code is None else _check_nan_code(f, nan_code)
    fast = f.name == "e2m1" and raw.dtype == np.float32 and nan_code is None
    if backend == "numba":
        if not _numba_kernels.available():
            raise RuntimeError("backend='numba' requested but numba is not installed (pip install torq-ref[fast])")
        if not fast:
            raise ValueError(f"backend='numba' encodes e2m1 float32 input without nan_code only (MX-6.1); "
                             f"got fmt {f.name!r}, dtype {raw.dtype}; use backend='auto' or 'numpy'")
    if fast and backend != "numpy" and _numba_kernels.available():
        return _numba_kernels.encode_e2m1(raw)
    with np.errstate(invalid="ignore"):  # signalling-NaN bit patterns
        a = raw.astype(np.float64)
    if f.is_int:
        codes = _encode_int8(a)
    else:
        codes = _encode_float(a, f, saturate)
    nan = np.isnan(a)
    if nan_code is None and f.has_nan:
        # MX-2.6: formats with a NaN code keep the sign bit of the NaN (IEEE / ml_dtypes behaviour).
        codes[nan] = nan_out | np.where(np.signbit(a[nan]), f.sign_bit, 0).astype(np.uint8)
    else:
        codes[nan] = nan_out
    return codes


def decode(codes, fmt: str) -> np.ndarray:
    """float64 value of each ``fmt`` code (MX-2.2); NaN codes decode to NaN, e5m2 Inf to Inf."""
    f = get_format(fmt)
    c = as_code_array(codes, f.bits)
    return VALUE_TABLES[f.name][c]


def _check_nan_code(f: ElementFormat, nan_code) -> int:
    if not isinstance(nan_code, (int, np.integer)) or not 0 <= int(nan_code) < (1 << f.bits):
        raise ValueError(f"nan_code must be an int code of {f.name} (0..{(1 << f.bits) - 1}), got {nan_code!r}")
    return int(nan_code)


def _encode_int8(a: np.ndarray) -> np.ndarray:
    # MX-3.5: INT8 is k * 2^-6 with k rounded to nearest even and clamped symmetrically to +-127.
    k = np.rint(np.ldexp(np.clip(np.nan_to_num(a, nan=0.0), -4.0, 4.0), 6))
    k = np.clip(k, -127, 127).astype(np.int64)
    return (k & 0xFF).astype(np.uint8)


def _encode_float(a: np.ndarray, f: ElementFormat, saturate: bool) -> np.ndarray:
    sign = np.signbit(a)
    mag = np.abs(np.nan_to_num(a, nan=0.0, posinf=np.inf, neginf=np.inf))
    # Anything at or above 2^(emax+2) overflows whatever the rounding; clipping there keeps the
    # ldexp below finite without changing any decision.
    big = np.ldexp(1.0, f.emax + 2)
    clipped = np.minimum(mag, big)
    _, e = np.frexp(clipped)
    exponent = np.maximum(e - 1, f.emin)           # floor(log2|x|), subnormal range uses emin
    quantum = exponent - f.mbits                    # exponent of one unit in the last place
    rounded = np.ldexp(np.rint(np.ldexp(clipped, -quantum)), quantum)   # exact RNE
    overflow = rounded > f.max_value
    rounded = np.where(overflow, f.max_value, rounded)
    codes = _positive_codes(rounded, f)
    if not saturate:
        overflow_code = 0x7F if f.name == "e4m3" else 0x7C   # e4m3: NaN, e5m2: Inf
        codes = np.where(overflow, overflow_code, codes)
    codes = codes | np.where(sign, f.sign_bit, 0)
    return codes.astype(np.uint8)


def _positive_codes(v: np.ndarray, f: ElementFormat) -> np.ndarray:
    """Code of each representable magnitude ``v`` (exact, float64)."""
    _, e = np.frexp(v)
    e = e - 1
    subnormal = v < f.min_normal
    mant_sub = np.ldexp(v, f.mbits - f.emin)
    mant_norm = np.ldexp(v, f.mbits - e) - (1 << f.mbits)
    exp_field = np.where(subnormal, 0, e + f.bias)
    mant = np.where(subnormal, mant_sub, mant_norm)
    return (exp_field.astype(np.int64) << f.mbits) | mant.astype(np.int64)
