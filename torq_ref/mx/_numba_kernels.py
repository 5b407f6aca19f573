"""Optional numba fast path for E2M1 (MXFP4) on float32 and float64 input (spec/MX.md MX-6.1).

Same algorithm as the NumPy reference in ``block.py`` / ``scale.py`` / ``element.py``, fused into
one pass per block: exact exponent arithmetic (``math.frexp`` / ``math.ldexp``), the RCEIL quotient
rounded in float32 (in float64 for float64 input, ``wide``), and E2M1 round-to-nearest-even as the
seven decision thresholds of ``formats.E2M1_THRESHOLDS`` / ``E2M1_TIE_UP`` (0.25 < 0.75 <= 1.25 <
1.75 <= 2.5 < 3.5 <= 5: ``<`` where the tie goes down to the even code, ``<=`` where it goes up).
MSE (MX-4.8) refines the FLOOR code with the reference's float64 arithmetic in the same order
(``_mse_code``). tests/test_mx_backends_errors.py and tests/test_mx_mse.py prove the bits equal
the reference.
Every block is independent, so the result does not depend on the number of threads.
"""
from __future__ import annotations

import math

import numpy as np

from .formats import E2M1_THRESHOLDS, E2M1_TIE_UP, E2M1_VALUES

try:  # the `fast` extra
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised when numba is absent
    numba = None

#: the numba path is E2M1 only, where CUTLASS (m >= 1.75, MX-4.9) is EVEN (2m >= 1.75)
_RULES = {"floor": 0, "rceil": 1, "ceil": 2, "even": 3, "cutlass": 3, "mse": 4}
_E2M1 = np.array(E2M1_VALUES[:8], dtype=np.float64)
# The E2M1 decision table of formats.py (MX-3.1) as compile-time constants of the kernels (as
# run-time arguments they made fake quantization 1.5x slower). numba's on-disk cache does not
# notice an edit of formats.py, so _check_compiled_table() compares the compiled kernels with
# the table once per process and refuses to run stale ones.
_THR = tuple(float(v) for v in E2M1_THRESHOLDS)
_E2M1_T = tuple(float(v) for v in E2M1_VALUES[:8])   # magnitude code -> value, for MSE errors
_UP = tuple(bool(v) for v in E2M1_TIE_UP)
_TABLE_CHECKED = False


def available() -> bool:
    return numba is not None


if numba is not None:

    @njit(cache=True, inline="always")
    def _scale_code(amax, has_nan, rule, saturate_scale, wide):
        if has_nan:
            return 255
        if math.isinf(amax):
            return 254 if saturate_scale else 255
        if amax == 0.0:
            return 0
        if rule == 1:  # rceil: d = amax / 6 in the working precision, code = 127 + ceil(log2 d)
            if wide:
                d = amax / 6.0
            else:
                d = np.float64(np.float32(amax) / np.float32(6.0))
            if d == 0.0:
                return 0
            if math.isinf(d):
                return 254 if saturate_scale else 255
            m, e = math.frexp(np.float64(d))
            unbiased = e - 1 if m == 0.5 else e
        else:
            m, e = math.frexp(amax)
            unbiased = e - 1 - 2
            if rule == 2 and m > 0.5:
                unbiased += 1
            elif rule == 3 and m >= 0.875:   # 2m >= 1.75
                unbiased += 1
        code = unbiased + 127
        if code < 0:
            return 0
        if code > 254:
            return 254 if saturate_scale else 255
        return code

    @njit(cache=True, inline="always")
    def _e2m1_magnitude_code(a):
        c = 0
        for k in range(7):          # a tie goes up (>=) where _UP[k], down (>) elsewhere
            c += (a >= _THR[k]) if _UP[k] else (a > _THR[k])
        return c

    @njit(cache=True, inline="always")
    def _block_scale(x, b, bs, rule, saturate_scale, wide):
        amax = 0.0
        has_nan = False
        for k in range(bs):
            v = np.float64(x[b, k])
            if v != v:
                has_nan = True
            else:
                av = abs(v)
                if av > amax:
                    amax = av
        return _scale_code(amax, has_nan, rule, saturate_scale, wide)

    @njit(cache=True, inline="always")
    def _mse_code(x, b, bs, floor):
        """MX-4.8: floor or floor + 1, whichever block squared error is strictly smaller (in units
        of the FLOOR scale, summed left to right in float64, as scale._mse_refine)."""
        if floor >= 254:
            return floor
        m0 = math.ldexp(1.0, 127 - floor)
        m1 = math.ldexp(1.0, 126 - floor)
        e0 = 0.0
        e1 = 0.0
        for k in range(bs):
            v = np.float64(x[b, k])
            xs = v * m0
            q0 = math.copysign(_E2M1_T[_e2m1_magnitude_code(abs(xs))], xs)
            h = v * m1
            q1 = 2.0 * math.copysign(_E2M1_T[_e2m1_magnitude_code(abs(h))], h)
            d0 = xs - q0
            d1 = xs - q1
            e0 = e0 + d0 * d0
            e1 = e1 + d1 * d1
        return floor + 1 if e1 < e0 else floor

    @njit(cache=True, inline="always")
    def _block_code(x, b, bs, rule, saturate_scale, wide):
        code = _block_scale(x, b, bs, rule, saturate_scale, wide)
        if rule == 4 and code < 255 and _block_is_finite_nonzero(x, b, bs):
            return _mse_code(x, b, bs, code)
        return code

    @njit(cache=True, inline="always")
    def _block_is_finite_nonzero(x, b, bs):
        nonzero = False
        for k in range(bs):
            v = np.float64(x[b, k])
            if not math.isfinite(v):
                return False
            if v != 0.0:
                nonzero = True
        return nonzero

    @njit(cache=True, parallel=True)
    def _quantize_kernel(x, rule, saturate_scale, wide, scales, codes):
        nb, bs = x.shape
        for b in prange(nb):
            code = _block_code(x, b, bs, rule, saturate_scale, wide)
            scales[b] = code
            if code == 255:
                for k in range(bs):
                    codes[b, k] = 7
                continue
            mult = math.ldexp(1.0, 127 - code)
            for k in range(bs):
                v = np.float64(x[b, k]) * mult
                c = _e2m1_magnitude_code(abs(v))
                if math.copysign(1.0, v) < 0:
                    c += 8
                codes[b, k] = c

    @njit(cache=True, parallel=True)
    def _fake_quant_kernel(x, rule, saturate_scale, wide, table, out):
        nb, bs = x.shape
        for b in prange(nb):
            code = _block_code(x, b, bs, rule, saturate_scale, wide)
            if code == 255:
                for k in range(bs):
                    out[b, k] = np.nan
                continue
            mult = math.ldexp(1.0, 127 - code)
            back = math.ldexp(1.0, code - 127)
            for k in range(bs):
                v = np.float64(x[b, k]) * mult
                q = table[_e2m1_magnitude_code(abs(v))] * back
                out[b, k] = math.copysign(q, v)      # exact in out's dtype (float32 or float64)

    @njit(cache=True, parallel=True)
    def _encode_kernel(x, out):
        for i in prange(x.shape[0]):
            v = np.float64(x[i])
            if v != v:
                out[i] = 7
                continue
            c = _e2m1_magnitude_code(abs(v))
            if math.copysign(1.0, v) < 0:
                c += 8
            out[i] = c


def _probe_values() -> np.ndarray:
    """The seven thresholds, their float32 neighbours and 0 / 6 / 7: every decision of the table."""
    t = np.array(E2M1_THRESHOLDS, dtype=np.float32)
    return np.concatenate([t, np.nextafter(t, np.float32(0)), np.nextafter(t, np.float32(8)),
                           np.array([0.0, 6.0, 7.0], np.float32)])


def _check_compiled_table() -> None:
    """Raise when a cached kernel was compiled with another E2M1 table than formats.py's."""
    global _TABLE_CHECKED
    if _TABLE_CHECKED:
        return
    from .formats import e2m1_magnitude_code

    v = _probe_values()                                            # (24,), all < 8
    want = e2m1_magnitude_code(v.astype(np.float64)).astype(np.uint8)
    enc = np.empty(v.size, np.uint8)
    _encode_kernel(v, enc)
    rows = np.zeros((v.size, 32), np.float32)                      # amax 6: FLOOR scale 2^0
    rows[:, 0] = 6.0
    rows[:, 1] = v
    sc = np.empty(v.size, np.uint8)
    codes = np.empty(rows.shape, np.uint8)
    _quantize_kernel(rows, 0, False, False, sc, codes)
    fq = np.empty(rows.shape, np.float32)
    _fake_quant_kernel(rows, 0, False, False, _E2M1, fq)
    if not (np.array_equal(enc, want) and np.array_equal(codes[:, 1], want)
            and np.array_equal(fq[:, 1], _E2M1[want].astype(np.float32))):
        import os
        raise RuntimeError(
            "the numba kernels on disk were compiled with another E2M1 decision table than "
            f"torq_ref/mx/formats.py; delete {os.path.join(os.path.dirname(__file__), '__pycache__')}"
            "/_numba_kernels.*.nbi and .nbc (numba's cache) and rerun")
    _TABLE_CHECKED = True


def quantize_e2m1(blocks: np.ndarray, rule: str, saturate_scale: bool):
    """(..., nb, bs) float32 / float64 blocks -> (scales (..., nb), codes (..., nb, bs)), both uint8."""
    _check_compiled_table()
    lead = blocks.shape[:-1]
    flat = np.ascontiguousarray(blocks).reshape(-1, blocks.shape[-1])       # (NB, bs)
    scales = np.empty(flat.shape[0], dtype=np.uint8)
    codes = np.empty(flat.shape, dtype=np.uint8)
    _quantize_kernel(flat, _RULES[rule], bool(saturate_scale), flat.dtype == np.float64, scales, codes)
    return scales.reshape(lead), codes.reshape(blocks.shape)


def fake_quant_e2m1(blocks: np.ndarray, rule: str, saturate_scale: bool) -> np.ndarray:
    """(..., nb, bs) float32 / float64 -> dequantized values of the same shape and dtype."""
    _check_compiled_table()
    flat = np.ascontiguousarray(blocks).reshape(-1, blocks.shape[-1])
    out = np.empty(flat.shape, dtype=flat.dtype)
    _fake_quant_kernel(flat, _RULES[rule], bool(saturate_scale), flat.dtype == np.float64, _E2M1, out)
    return out.reshape(blocks.shape)


def encode_e2m1(x: np.ndarray) -> np.ndarray:
    """Element encode of float32 values to E2M1 codes (saturating, NaN -> 0x7)."""
    _check_compiled_table()
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    _encode_kernel(flat, out)
    return out.reshape(x.shape)
