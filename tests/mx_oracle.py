"""Second, independent formulations of the codec, used only by the tests.

They share no code with torq_ref.mx: element encoding by exhaustive nearest-value search over the
decoded table written here from the bit layout, and an integer-only E2M1 encoder that works on
float32 bit patterns (used by the 2^32 sweep).
"""
from __future__ import annotations

import numpy as np

# (ebits, mbits, bias, specials) written from the OCP tables, independently of torq_ref.mx.formats
LAYOUT = {
    "e2m1": (2, 1, 1, None),
    "e2m3": (2, 3, 1, None),
    "e3m2": (3, 2, 3, None),
    "e4m3": (4, 3, 7, "fn"),      # only S.1111.111 is NaN
    "e5m2": (5, 2, 15, "ieee"),   # exponent all ones: Inf / NaN
}


def value_of(code: int, fmt: str) -> float:
    if fmt == "int8":
        return (code - 256 if code >= 128 else code) / 64.0
    eb, mb, bias, special = LAYOUT[fmt]
    sign = -1.0 if code >> (eb + mb) else 1.0
    e = (code >> mb) & ((1 << eb) - 1)
    m = code & ((1 << mb) - 1)
    if special == "fn" and e == (1 << eb) - 1 and m == (1 << mb) - 1:
        return float("nan")
    if special == "ieee" and e == (1 << eb) - 1:
        return sign * float("inf") if m == 0 else float("nan")
    if e == 0:
        return sign * (m / (1 << mb)) * 2.0 ** (1 - bias)
    return sign * (1 + m / (1 << mb)) * 2.0 ** (e - bias)


def finite_table(fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) of every finite code of fmt."""
    nbits = 8 if fmt == "int8" else 1 + LAYOUT[fmt][0] + LAYOUT[fmt][1]
    codes = np.arange(1 << nbits)
    vals = np.array([value_of(int(c), fmt) for c in codes])
    keep = np.isfinite(vals)
    if fmt == "int8":
        keep &= codes != 0x80          # symmetric: -2.0 is never produced
    return codes[keep], vals[keep]


def nearest_even_encode(x: np.ndarray, fmt: str) -> np.ndarray:
    """Saturating RNE by brute force: nearest finite value, ties to the code with an even LSB,
    magnitudes beyond max clamp to max; float formats work on the magnitude and put the input's
    sign bit back (so -0 and negative underflow keep the sign). NaN -> -1 marker."""
    codes, vals = finite_table(fmt)
    x = np.asarray(x, dtype=np.float64).ravel()
    out = np.empty(x.shape, dtype=np.int64)
    if fmt != "int8":
        signbit = 1 << (LAYOUT[fmt][0] + LAYOUT[fmt][1])
        pos = (codes & signbit) == 0
        codes, vals = codes[pos], vals[pos]
    vmax = np.max(vals)
    for i, v in enumerate(x):
        if np.isnan(v):
            out[i] = -1
            continue
        target = min(abs(v), vmax) if fmt != "int8" else float(np.clip(v, -vmax, vmax))
        d = np.abs(vals - target)
        cand = codes[d == d.min()]
        if len(cand) > 1:
            cand = cand[cand % 2 == 0]
        code = int(cand[0])
        if fmt != "int8" and np.signbit(v):
            code |= signbit
        out[i] = code
    return out


def e2m1_from_float32_bits(bits: np.ndarray) -> np.ndarray:
    """Integer-only E2M1 encoder (saturating RNE, NaN -> 0x7) on float32 bit patterns (uint32)."""
    bits = bits.astype(np.uint32)
    sign = (bits >> 31).astype(np.int64)
    exp = ((bits >> 23) & 0xFF).astype(np.int64)
    man = (bits & 0x7FFFFF).astype(np.int64)
    sig = np.where(exp == 0, man, man | (1 << 23))        # significand, value = sig * 2^(E-23)
    E = np.where(exp == 0, -126, exp - 127)
    # quantum exponent: -1 below 2 (subnormal 0.5 step and [1,2)), else E - 1
    qe = np.maximum(E, 0) - 1
    shift = np.minimum(qe - E + 23, 40)                    # >= 22; huge shifts give 0
    q = sig >> shift
    rem = sig & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    q = q + ((rem > half) | ((rem == half) & (q & 1 == 1))).astype(np.int64)
    code = np.minimum(q + 2 * np.maximum(E, 0), 7)
    code = np.where(E >= 3, 7, code)                       # >= 8 saturates (Inf included)
    code = code | (sign << 3)
    nan = (exp == 0xFF) & (man != 0)
    return np.where(nan, 7, code).astype(np.uint8)
