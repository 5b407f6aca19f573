"""Hadamard conventions and the float32 error bounds of rotation kernels (spec/CF.md section 5).

Used by the conformance kinds ``hadamard`` and ``rotate-quantize`` and by the golden vectors that
feed them; the proofs of the bounds are in spec/CF.md (CF-5.3, CF-5.7).

* ``hadamard_pm1(block, order)``: the +-1 Sylvester matrix of order ``block`` (a power of two) in
  natural (Sylvester) order or in sequency (Walsh) order (CF-5.2);
* ``apply_hadamard(x, block, convention)``: every ``block`` of the last axis of x times the
  convention's matrix, in float64 (the oracle, CF-5.2);
* ``butterfly_bound(x, block, normalized)``: per element, the largest |kernel - oracle| that a
  float32 butterfly of log2(block) stages can show (CF-5.3);
* ``rotation_bound(x, R)``: per element, the largest |fp32 x R - float64 x R| over every order of
  float32 summation (CF-5.7);
* ``butterfly_float32(x, block)``: a float32 butterfly (one rounding per stage), the model the bound
  is proven for; tests and the adversarial inputs of the golden vectors use it.
"""
from __future__ import annotations

import math

import numpy as np

from .baselines import sylvester_hadamard

U32 = 2.0 ** -24
U64 = 2.0 ** -53
#: the power-of-two blocks the hadamard kind checks (CF-5.1)
MIN_BLOCK, MAX_BLOCK = 2, 2 ** 14
#: convention options, in the order the verdict names them (CF-5.2)
OPTIONS = ("unnormalized", "sequency", "left")


class ConventionNameError(ValueError):
    """An unknown Hadamard convention option."""


def gamma(k: int, u: float) -> float:
    """gamma_k = k u / (1 - k u) (Higham, Accuracy and Stability, Lemma 3.1)."""
    if k * u >= 1:
        raise ValueError(f"gamma_{k} undefined for u = {u}")
    return k * u / (1.0 - k * u)


def check_block(block) -> int:
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)):
        raise TypeError(f"block must be an int, got {type(block).__name__}")
    b = int(block)
    if b < MIN_BLOCK or b > MAX_BLOCK or b & (b - 1):
        raise ValueError(f"block must be a power of two in [{MIN_BLOCK}, {MAX_BLOCK}], got {b}")
    return b


def convention_name(norm: str = "orthonormal", order: str = "natural", side: str = "right") -> str:
    """'sylvester' for the default, else the options joined with '+' (e.g. 'unnormalized+left')."""
    opts = [o for o, on in zip(OPTIONS, (norm == "unnormalized", order == "sequency", side == "left")) if on]
    return "+".join(opts) if opts else "sylvester"


def parse_convention(name: str) -> tuple[str, str, str]:
    """(norm, order, side) of a convention name from :func:`convention_name`."""
    parts = [] if name == "sylvester" else name.split("+")
    bad = [p for p in parts if p not in OPTIONS]
    if bad:
        raise ConventionNameError(f"unknown Hadamard convention option(s) {bad}; known: {', '.join(OPTIONS)}")
    return ("unnormalized" if "unnormalized" in parts else "orthonormal",
            "sequency" if "sequency" in parts else "natural", "left" if "left" in parts else "right")


ALL_CONVENTIONS = tuple(convention_name(n, o, s) for n in ("orthonormal", "unnormalized")
                        for o in ("natural", "sequency") for s in ("right", "left"))


def sequency_order(block: int) -> np.ndarray:
    """Row k of the sequency-ordered Walsh matrix is row p[k] of the Sylvester matrix: p[k] is
    the bit reversal of the Gray code of k (row p[k] then has k sign changes)."""
    bits = block.bit_length() - 1
    k = np.arange(block)
    g = k ^ (k >> 1)
    rev = np.zeros_like(g)
    for i in range(bits):
        rev |= ((g >> i) & 1) << (bits - 1 - i)
    return rev


def hadamard_pm1(block: int, order: str = "natural") -> np.ndarray:
    """The +-1 Sylvester Hadamard matrix (float64), rows in natural or sequency order."""
    b = check_block(block)
    h = sylvester_hadamard(b, normalized=False)
    if order == "sequency":
        return h[sequency_order(b)]
    if order != "natural":
        raise ConventionNameError(f"order must be 'natural' or 'sequency', got {order!r}")
    return h


def convention_matrix(block: int, convention: str = "sylvester") -> tuple[np.ndarray, float]:
    """(M, c): the +-1 matrix M with y = c * (x @ M) for row vectors x, c = 1 / sqrt(block) or 1.
    'left' (y = H x for a column vector x) is M = H^T."""
    norm, order, side = parse_convention(convention)
    h = hadamard_pm1(block, order)
    m = h.T.copy() if side == "left" else h
    return m, (1.0 / math.sqrt(block) if norm == "orthonormal" else 1.0)


def _blocks(x, block):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] % block:
        raise ValueError(f"x must be (rows, n) with n a multiple of {block}, got shape {x.shape}")
    return x.astype(np.float64).reshape(x.shape[0], -1, block)


def _fwht64(xb: np.ndarray) -> np.ndarray:
    """xb (..., b) @ H (natural-order Sylvester, +-1) by a float64 butterfly."""
    y = xb.copy()
    b = y.shape[-1]
    h = 1
    while h < b:
        v = y.reshape(y.shape[:-1] + (b // (2 * h), 2, h))
        lo, hi = v[..., 0, :].copy(), v[..., 1, :].copy()
        v[..., 0, :] = lo + hi
        v[..., 1, :] = lo - hi
        h *= 2
    return y


def apply_hadamard(x, block: int, convention: str = "sylvester") -> np.ndarray:
    """float64 (rows, n): each block of x times the convention's matrix (the oracle, CF-5.2),
    by a float64 butterfly: x @ H[p] scatters x to the rows p of the sequency order first,
    x @ H[p]^T = (x @ H)[:, p] gathers after."""
    b = check_block(block)
    norm, order, side = parse_convention(convention)
    xb = _blocks(x, b)
    if order == "sequency":
        p = sequency_order(b)
        if side == "right":
            xs = np.empty_like(xb)
            xs[..., p] = xb
            y = _fwht64(xs)
        else:
            y = _fwht64(xb)[..., p]
    else:
        y = _fwht64(xb)
    c = 1.0 / math.sqrt(b) if norm == "orthonormal" else 1.0
    return (y * c).reshape(np.shape(x))


def stages(block: int) -> int:
    return check_block(block).bit_length() - 1


def butterfly_roundings(block: int, normalized: bool) -> int:
    """L = log2(block) additions, plus 2 for the normalization (the rounded constant and the
    product) when normalized (CF-5.3)."""
    return stages(block) + (2 if normalized else 0)


def butterfly_bound(x, block: int, normalized: bool = True) -> np.ndarray:
    """CF-5.3: |y_kernel - y_oracle| <= (gamma32_k + gamma64_{b+2}) * c * ||x_block||_1, times
    (1 + gamma64_{b+4}) for the float64 evaluation of the bound itself; k = L (+2 normalized)."""
    b = check_block(block)
    k = butterfly_roundings(b, normalized)
    c = 1.0 / math.sqrt(b) if normalized else 1.0
    l1 = np.abs(_blocks(x, b)).sum(-1, keepdims=True)                         # (rows, nb, 1)
    coef = (gamma(k, U32) + gamma(b + 2, U64)) * c * (1 + gamma(b + 4, U64))
    bound = np.broadcast_to(l1 * coef, _blocks(x, b).shape)
    # a normalized output may underflow in the final product: half the smallest subnormal
    return (bound + (2.0 ** -150 if normalized else 0.0)).reshape(np.shape(x))


def rotation_bound(x, R) -> np.ndarray:
    """CF-5.7: per element of x R (each b-block of x times R), (gamma32_b + gamma64_b) *
    (|x| @ |R|), times (1 + gamma64_{b+2}) for the float64 evaluation of the bound."""
    R = np.asarray(R, np.float64)
    b = R.shape[0]
    s = np.abs(_blocks(x, b)) @ np.abs(R)                                     # (rows, nb, b)
    return (s * (gamma(b, U32) + gamma(b, U64)) * (1 + gamma(b + 2, U64))).reshape(np.shape(x))


def rotate_blocks(x, R) -> np.ndarray:
    """float64 x R per b-block (the rotate-quantize oracle's product, CF-5.6)."""
    R = np.asarray(R, np.float64)
    return (_blocks(x, R.shape[0]) @ R).reshape(np.shape(x))


def butterfly_float32(x, block: int, normalized: bool = True) -> np.ndarray:
    """A float32 Sylvester butterfly: log2(block) stages of (a + b, a - b), each one float32
    rounding, then the product with fp32(1 / sqrt(block)) (the model of CF-5.3)."""
    b = check_block(block)
    y = np.asarray(x, np.float32).reshape(np.shape(x)[0], -1, b).copy()
    h = 1
    while h < b:
        v = y.reshape(y.shape[0], y.shape[1], b // (2 * h), 2, h)
        lo, hi = v[..., 0, :].copy(), v[..., 1, :].copy()
        v[..., 0, :] = lo + hi
        v[..., 1, :] = lo - hi
        h *= 2
    if normalized:
        y = y * np.float32(1.0 / math.sqrt(b))
    return y.reshape(np.shape(x)).astype(np.float32)


def adversarial_rows(block: int, rows: int, seed: int, iters: int = 200) -> np.ndarray:
    """float32 (rows, block) positive inputs whose first butterfly output (the pairwise sum) has
    a large rounding error against the bound: a seeded hill climb over the inputs' last bits.
    Deterministic in (block, rows, seed, iters)."""
    b = check_block(block)
    rng = np.random.default_rng(seed)
    L = stages(b)
    out = []
    for _ in range(rows):
        x = ((1 + rng.integers(0, 2 ** 23, b) * 2.0 ** -23) * 2.0 ** rng.integers(0, 3, b)).astype(np.float32)

        def ratio(c):
            s = c.astype(np.float32)
            while s.shape[-1] > 1:
                s = s[..., 0::2] + s[..., 1::2]
            exact = c.astype(np.float64).sum(-1)      # exact: positive, < 2^41 ulps of the smallest
            return (exact - s[..., 0].astype(np.float64)) / (L * U32 * exact)
        best = float(ratio(x[None])[0])
        for _ in range(iters):
            cand = np.repeat(x[None], 64, 0)
            j = rng.integers(0, b, 64)
            k = rng.integers(-64, 65, 64).astype(np.int32)
            cand[np.arange(64), j] = (cand[np.arange(64), j].view(np.int32) + k).view(np.float32)
            r = ratio(cand)
            i = int(np.argmax(r))
            if r[i] > best:
                best, x = float(r[i]), cand[i]
        out.append(x)
    return np.stack(out)
