"""MX GEMM accumulation models: C = A @ B^T of MXFP4 operands, bit-exact per model, with the
error bound each model implies and the model a kernel's output follows (spec/MX.md section 12).

Operands as in the dot_scaled kind (spec/CF.md CF-1.2): a_scales (m, K/32), a_codes (m, K),
b_scales (n, K/32), b_codes (n, K), E8M0 scales and unpacked E2M1 codes. Models (MX-12.1):

* ``exact``       the exact real sum, rounded once to the output type (RNE).
* ``fp32-kblock`` each 32-block's dot product exact and scaled by 2^(sa + sb - 254), rounded to
                  float32, then added to a float32 accumulator block by block, k-block 0 first,
                  starting from +0 (native MX MMA: the block product in the tensor core, fp32
                  accumulation across blocks); the output is the accumulator, rounded to the output
                  type.
* ``bf16-upcast`` each operand dequantized to bfloat16 first (exact for E2M1 with an E8M0 scale:
                  two significant bits, bfloat16's exponent range), then a float32 accumulation of
                  the element products, k = 0 first, and the output rounded to bfloat16 (the
                  emulated path of a bf16 GEMM on upcast weights).

A scale 0xFF makes every output it touches NaN in every model (MX-12.3).
"""
from __future__ import annotations

import math

import numpy as np

from .formats import VALUE_TABLES

MODELS = ("exact", "fp32-kblock", "bf16-upcast")

#: output type -> (significand bits p, smallest normal exponent emin, largest exponent emax)
_TYPES = {"float32": (24, -126, 127), "bfloat16": (8, -126, 127), "float16": (11, -14, 15),
          "float64": (53, -1022, 1023)}

_U32 = 2.0 ** -24


def _check(a_s, a_c, b_s, b_c):
    arrs = [np.asarray(v) for v in (a_s, a_c, b_s, b_c)]
    for name, v in zip(("a_scales", "a_codes", "b_scales", "b_codes"), arrs):
        if v.dtype != np.uint8 or v.ndim != 2:
            raise TypeError(f"{name} must be a 2-D uint8 array, got {v.dtype} with shape {v.shape}")
    a_s, a_c, b_s, b_c = arrs
    m, k = a_c.shape
    if k % 32 or b_c.shape[1] != k or a_s.shape != (m, k // 32) or b_s.shape != (b_c.shape[0], k // 32):
        raise ValueError(f"operand shapes do not fit: a_scales {a_s.shape}, a_codes {a_c.shape}, "
                         f"b_scales {b_s.shape}, b_codes {b_c.shape} (K must be a multiple of 32)")
    if a_c.max(initial=0) > 15 or b_c.max(initial=0) > 15:
        raise ValueError("codes must be E2M1 codes 0..15")
    return a_s, a_c, b_s, b_c


def _half_units(codes):
    """E2M1 values in units of 1/2 (integers -12 .. 12): value(code) = units / 2."""
    return (VALUE_TABLES["e2m1"][codes] * 2).astype(np.int64)


def round_to(num: int, exp: int, out: str = "float32") -> float:
    """The real number num * 2^exp rounded once to ``out`` (RNE, subnormals kept, overflow to
    +-Inf), as a Python float; integer arithmetic only (MX-12.1)."""
    p, emin, emax = _TYPES[out]
    if num == 0:
        return 0.0
    sign = -1.0 if num < 0 else 1.0
    mag = abs(num)
    msb = exp + mag.bit_length() - 1
    q_exp = max(msb - (p - 1), emin - (p - 1))
    shift = q_exp - exp
    if shift > 0:
        q, r = divmod(mag, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
    else:
        q = mag << -shift
    if q and q.bit_length() - 1 + q_exp > emax:
        return sign * math.inf
    return sign * math.ldexp(float(q), q_exp)


def _nan_mask(a_s, b_s):
    return ((a_s == 0xFF)[:, None, :] | (b_s == 0xFF)[None, :, :]).any(-1)


def _block_products(a_s, a_c, b_s, b_c):
    """Exact block dot products as (integer numerator in units of 1/4, exponent sa + sb - 254)."""
    ua = _half_units(a_c).reshape(a_c.shape[0], -1, 32)
    ub = _half_units(b_c).reshape(b_c.shape[0], -1, 32)
    num = np.einsum("ibk,jbk->ijb", ua, ub)                                  # |num| <= 32 * 144
    e = a_s.astype(np.int64)[:, None, :] + b_s.astype(np.int64)[None, :, :] - 254 - 2
    return num, e


def mx_gemm(a_s, a_c, b_s, b_c, model: str = "exact", out: str = "float32") -> np.ndarray:
    """C = A @ B^T under ``model`` (MX-12.1), as float64 holding values of type ``out``
    (``bf16-upcast`` always rounds to bfloat16). NaN wherever a 0xFF scale touches (MX-12.3)."""
    if model not in MODELS:
        raise ValueError(f"unknown accumulation model {model!r}; known: {', '.join(MODELS)}")
    if out not in _TYPES:
        raise ValueError(f"unknown output type {out!r}; known: {', '.join(_TYPES)}")
    a_s, a_c, b_s, b_c = _check(a_s, a_c, b_s, b_c)
    m, n, nb = a_c.shape[0], b_c.shape[0], a_s.shape[1]
    num, e = _block_products(a_s, a_c, b_s, b_c)
    c = np.empty((m, n), np.float64)
    if model == "exact":
        for i in range(m):
            for j in range(n):
                lo = int(e[i, j].min()) if nb else 0
                tot = sum(int(num[i, j, b]) << int(e[i, j, b] - lo) for b in range(nb))
                c[i, j] = round_to(tot, lo, out)
    elif model == "fp32-kblock":
        acc = np.zeros((m, n), np.float32)
        for b in range(nb):
            pb = np.array([[round_to(int(num[i, j, b]), int(e[i, j, b])) for j in range(n)]
                           for i in range(m)], np.float32)
            acc = (acc + pb).astype(np.float32)
        c = np.array([[round_to(*_f32_as_ratio(v), out) for v in row] for row in acc], np.float64)
    else:                                                        # bf16-upcast
        da = _dequant_f32(a_s, a_c)
        db = _dequant_f32(b_s, b_c)
        acc = np.zeros((m, n), np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(a_c.shape[1]):
                acc = (acc + np.outer(da[:, k], db[:, k]).astype(np.float32)).astype(np.float32)
        c = np.array([[round_to(*_f32_as_ratio(v), "bfloat16") for v in row] for row in acc], np.float64)
    c[_nan_mask(a_s, b_s)] = np.nan
    return c


def _f32_as_ratio(v) -> tuple[int, int]:
    """A finite float32 as (integer, exponent); +-Inf as a number past every type's range."""
    v = float(v)
    if math.isinf(v):
        return (1 if v > 0 else -1), 4096
    if math.isnan(v):
        return 0, 0
    mnt, ex = math.frexp(v)
    return int(mnt * (1 << 53)), ex - 53


def _dequant_f32(s, c):
    """value(code) * 2^(s - 127) in float32 (exact or +-Inf; bfloat16 holds the same values)."""
    v = VALUE_TABLES["e2m1"][c].astype(np.float64)
    sc = np.ldexp(1.0, s.astype(np.int64) - 127).repeat(32, axis=1)
    with np.errstate(over="ignore"):
        return (v * sc).astype(np.float32)


def _gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u) if n * u < 1 else math.inf


def model_tolerance(a_s, a_c, b_s, b_c, model: str, out: str = "float32") -> np.ndarray:
    """The bound |C_model - C_exact| <= tol of MX-12.2, C_exact the real product (float64), for
    outputs that do not overflow (an Inf output is outside every bound)."""
    a_s, a_c, b_s, b_c = _check(a_s, a_c, b_s, b_c)
    num, e = _block_products(a_s, a_c, b_s, b_c)
    with np.errstate(over="ignore"):
        pb = np.abs(num) * np.ldexp(1.0, e)                              # |block products|
        ref = np.abs(mx_gemm(a_s, a_c, b_s, b_c, "exact", "float64"))
        p, emin, _ = _TYPES["bfloat16" if model == "bf16-upcast" else out]
        u_out = 2.0 ** -p
        sub = 2.0 ** (emin - p)                          # half the output's smallest subnormal
        nb, k = a_s.shape[1], a_c.shape[1]
        if model == "exact":
            return u_out * ref + sub
        if model == "fp32-kblock":
            # block products rounded to float32 (relative 2^-24, absolute 2^-150 below the normal
            # range), nb - 1 float32 additions, then the output rounding if out is not float32
            acc = _gamma(nb, _U32) * pb.sum(-1) + nb * 2.0 ** -150
            return acc + (0.0 if out == "float32" else u_out * (ref + acc) + sub)
        ea = np.abs(_dequant_f32(a_s, a_c).astype(np.float64))
        eb = np.abs(_dequant_f32(b_s, b_c).astype(np.float64))
        acc = _gamma(k - 1, _U32) * (ea @ eb.T) + k * 2.0 ** -150
        return acc + u_out * (ref + acc) + sub


def matching_models(got, a_s, a_c, b_s, b_c, out: str = "float32") -> list[str]:
    """The models whose output ``got`` equals bit for bit (NaN where NaN), in MODELS order
    (MX-12.4): the model a kernel follows, whatever it claims."""
    g = np.asarray(got, np.float64)
    names = []
    for model in MODELS:
        ref = mx_gemm(a_s, a_c, b_s, b_c, model, out)
        same = np.where(np.isnan(ref), np.isnan(g), (g == ref) & (np.signbit(g) == np.signbit(ref)))
        if g.shape == ref.shape and same.all():
            names.append(model)
    return names
