"""Models of known MX defects: the output a defective kernel gives (spec/GV.md GV-2.2, GV-4.3).

Each model changes one step of the oracle (:mod:`torq_ref.mx`) and is used twice: by the
generator, which writes its output as an ``invalid`` variant wherever it differs from the valid
one, and by the conformance harness's cause classifier (torq_ref/conformance/causes.py).
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx


def codes_for_scale(x, s: int, fmt: str) -> np.ndarray:
    """The element codes of block ``x`` quantized with scale code ``s`` (0..254)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return mx.encode(np.ldexp(np.asarray(x, np.float64), 127 - int(s)), fmt)


def float_log2_scale(amax: float, fmt: str, rule: str):
    """Scale code of a kernel that takes the exponent through a float32 log2 (floor / rceil).
    The log2 is NumPy's array loop (the SIMD one array kernels use), not the scalar one."""
    f = mx.get_format(fmt)

    def log2(v):
        return np.log2(np.full(16, v, np.float32))[0]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if rule == "floor":
            e = np.floor(log2(amax))
            code = 127 + int(e) - f.emax if np.isfinite(e) else None
        elif rule == "rceil":
            d = np.float32(amax) / np.float32(f.max_value)
            e = np.ceil(log2(d))
            code = 127 + int(e) if np.isfinite(e) and d > 0 else None
        else:
            return None
    return None if code is None else min(max(code, 0), 254)


def unclamped_scale(amax: float, fmt: str):
    """FLOOR code of a kernel that wraps a code below 0 modulo 256 (no clamp at 0x00)."""
    if not (amax > 0 and np.isfinite(amax)):
        return None
    e = int(np.frexp(amax)[1]) - 1
    return (127 + e - mx.get_format(fmt).emax) % 256


def ties_away_codes(x, s: int, fmt: str) -> np.ndarray:
    """Codes with ties rounded away from zero (microxcaling's default "nearest")."""
    q = np.ldexp(np.asarray(x, np.float64), 127 - int(s))
    with np.errstate(invalid="ignore", over="ignore"):
        return mx.encode(np.nextafter(q, np.copysign(np.inf, q)), fmt)


def quantize_defects(x, fmt: str, rule: str, scale: int, codes) -> list:
    """[(flag, scale, codes)] for each defect whose output differs from the valid (scale, codes)
    of the 32-element block ``x``."""
    x = np.asarray(x, np.float32).ravel()
    codes = np.asarray(codes).ravel()
    out = []
    with np.errstate(invalid="ignore"):
        amax = float(np.max(np.abs(x.astype(np.float64))))
    finite = np.isfinite(x).all()
    if finite and scale != 255:
        out.append(("KnownDefectTiesAway", scale, ties_away_codes(x, scale, fmt)))
        s = float_log2_scale(amax, fmt, rule)
        if s is not None:
            out.append(("KnownDefectFloatLog2", s, codes_for_scale(x, s, fmt)))
        if scale == 0:
            s = unclamped_scale(amax, fmt) if rule == "floor" else None
            if s is not None and s <= 254:
                out.append(("KnownDefectScaleNotClamped", s, codes_for_scale(x, s, fmt)))
            out.append(("KnownDefectDivisorClampedAt2^-126", 0, codes_for_scale(x, 1, fmt)))
            if (mx.decode(codes, fmt) != 0).any():
                # a block of zeros flushed is +0 codes: the sign-of-zero loss, not this defect
                out.append(("KnownDefectFlushedScaleCodeZero", 0, np.zeros_like(codes)))
    if np.isnan(x).any() and np.isfinite(x).sum():
        fin = np.where(np.isfinite(x), x, 0)
        s = int(mx.scale_codes(np.array([np.max(np.abs(fin.astype(np.float64)))]), fmt, rule)[0])
        if s != 255:
            out.append(("KnownDefectNanBlockFiniteScale", s, codes_for_scale(x, s, fmt)))
    seen, res = set(), []
    for flag, s, c in out:
        key = (s, bytes(np.asarray(c, np.uint8)))
        if (s == scale and np.array_equal(c, codes)) or key in seen:
            continue
        seen.add(key)
        res.append((flag, int(s), np.asarray(c, np.uint8)))
    return res
