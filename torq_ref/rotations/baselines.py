"""Baseline orthogonal transforms: Hadamard family and random orthogonal (spec/SH.md, section SH-3).

Every baseline is returned as a dense orthogonal matrix M (n, n), float64, used as X @ M on row
vectors (the same convention as ``GivensSequence.apply``), and ``DenseOrthogonal`` wraps one with
the ``apply`` / ``apply_transpose`` / ``matrix`` interface.

Sizes that are not powers of two (SH-3.2): a Hadamard matrix of order n is built as the Kronecker
product of a Paley matrix of order m (Paley I, m = q + 1 for a prime q = 3 mod 4; Paley II,
m = 2(q + 1) for a prime q = 1 mod 4) and a Sylvester matrix of order n / m; the smallest such m
dividing n with n / m a power of two is used. 576 = 36 x 16 (Paley II, q = 17), 1536 = 12 x 128
(Paley I, q = 11), 2304 = 36 x 64, 1152 = 36 x 32. Orders with no such factorisation
(e.g. odd n > 1, n = 2 mod 4, or a needed q that is not prime) raise HadamardOrderError; callers
may then use ``block_hadamard`` with a block size dividing n.

Clauses: SH-3.1 ``sylvester_hadamard``, SH-3.2 ``hadamard`` (Paley x Sylvester), SH-3.3
``block_hadamard``, SH-3.4 ``random_sign_hadamard`` / ``random_orthogonal`` (seeded only),
SH-3.5 ``DenseOrthogonal``.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "HadamardOrderError", "DenseOrthogonal", "hadamard", "hadamard_construction",
    "sylvester_hadamard", "paley_hadamard", "block_hadamard", "random_sign_hadamard",
    "random_orthogonal",
]


class HadamardOrderError(ValueError):
    """No Hadamard construction is implemented for this order (SH-3.2)."""


def _is_pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def _is_prime(q: int) -> bool:
    if q < 2:
        return False
    f = 2
    while f * f <= q:
        if q % f == 0:
            return False
        f += 1
    return True


def _check_n(n, what="n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return int(n)


def sylvester_hadamard(n: int, *, normalized: bool = True) -> np.ndarray:
    """Sylvester Hadamard matrix of order n = 2^k (H_{2m} = [[H, H], [H, -H]]), / sqrt(n) if normalized."""
    n = _check_n(n)
    if not _is_pow2(n):
        raise HadamardOrderError(f"Sylvester construction needs a power of two, got n = {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n) if normalized else h


def _quadratic_character(q: int) -> np.ndarray:
    """chi(x) for x in Z_q: 0 at 0, +1 on nonzero squares, -1 otherwise."""
    chi = -np.ones(q)
    chi[0] = 0
    chi[(np.arange(1, q) ** 2) % q] = 1
    return chi


def paley_hadamard(m: int) -> np.ndarray:
    """Unnormalised (+-1) Hadamard matrix of order m from Paley I or II with a prime q."""
    m = _check_n(m, "m")
    if m >= 4 and _is_prime(m - 1) and (m - 1) % 4 == 3:
        q = m - 1
        chi = _quadratic_character(q)
        jac = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]   # Jacobsthal, skew
        s = np.zeros((m, m))
        s[0, 1:] = 1
        s[1:, 0] = -1
        s[1:, 1:] = jac
        return s + np.eye(m)                                             # Paley I
    if m % 2 == 0 and m >= 4 and _is_prime(m // 2 - 1) and (m // 2 - 1) % 4 == 1:
        q = m // 2 - 1
        chi = _quadratic_character(q)
        jac = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]   # symmetric
        s = np.zeros((q + 1, q + 1))
        s[0, 1:] = 1
        s[1:, 0] = 1
        s[1:, 1:] = jac                                                  # conference matrix
        return (np.kron(s, np.array([[1.0, 1.0], [1.0, -1.0]]))
                + np.kron(np.eye(q + 1), np.array([[1.0, -1.0], [-1.0, -1.0]])))   # Paley II
    raise HadamardOrderError(f"no Paley construction with a prime q for order {m}")


@functools.lru_cache(maxsize=None)
def hadamard_construction(n: int) -> tuple[str, int]:
    """(kind, m): "sylvester", 1 or "paley", m with n = m * 2^k (smallest m). Raises if none."""
    n = _check_n(n)
    if _is_pow2(n):
        return ("sylvester", 1)
    if n % 4:
        raise HadamardOrderError(f"no Hadamard matrix of order {n} exists (n > 2 must be a multiple of 4)")
    m = n
    while m % 2 == 0:
        m //= 2
    while m <= n:
        try:
            paley_hadamard(m)
            return ("paley", m)
        except HadamardOrderError:
            m *= 2
    raise HadamardOrderError(f"no Sylvester x Paley construction for order {n}; use block_hadamard")


@functools.lru_cache(maxsize=32)
def _hadamard_cached(n: int) -> np.ndarray:
    kind, m = hadamard_construction(n)
    if kind == "sylvester":
        h = sylvester_hadamard(n, normalized=False)
    else:
        h = np.kron(paley_hadamard(m), sylvester_hadamard(n // m, normalized=False))
    h = h / np.sqrt(n)
    h.setflags(write=False)
    return h


def hadamard(n: int) -> np.ndarray:
    """Normalised Hadamard matrix (n, n) (entries +-1/sqrt(n), H^T H = I); see module docstring."""
    return _hadamard_cached(_check_n(n)).copy()


def block_hadamard(n: int, block_size: int = 32) -> np.ndarray:
    """Block-diagonal kron(I_{n/b}, H_b): a normalised Hadamard of order b on every b-block."""
    n = _check_n(n)
    b = _check_n(block_size, "block_size")
    if n % b:
        raise ValueError(f"n = {n} is not a multiple of block_size = {b}")
    return np.kron(np.eye(n // b), hadamard(b))


def _check_seed(seed) -> int:
    """A seed must be a non-negative int: ``None`` would draw fresh OS entropy, so the "same seed,
    same matrix" promise of SH-3.4 could not hold."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (randomness is always seeded), got {seed!r}")
    return int(seed)


def random_sign_hadamard(n: int, seed: int = 0) -> np.ndarray:
    """diag(signs) @ H (QuaRot style): X @ M flips signs of the channels, then mixes them."""
    rng = np.random.default_rng(_check_seed(seed))
    signs = rng.choice(np.array([-1.0, 1.0]), size=_check_n(n))
    return signs[:, None] * hadamard(n)


def random_orthogonal(n: int, seed: int = 0) -> np.ndarray:
    """Haar-distributed orthogonal matrix: QR of a seeded Gaussian with the R-diagonal signs fixed."""
    n = _check_n(n)
    rng = np.random.default_rng(_check_seed(seed))
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]


class DenseOrthogonal:
    """An orthogonal matrix M (n, n) used as X @ M; same interface as GivensSequence."""

    __slots__ = ("m", "name")

    def __init__(self, m, name: str = "dense", *, atol: float = 1e-10):
        m = np.array(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"matrix must be square, got shape {m.shape}")
        err = float(np.max(np.abs(m.T @ m - np.eye(m.shape[0])))) if m.size else 0.0
        if not err <= atol:
            raise ValueError(f"matrix is not orthogonal: max|M^T M - I| = {err:.3e} > {atol:g}")
        m.setflags(write=False)
        self.m = m
        self.name = name

    @property
    def n(self) -> int:
        return self.m.shape[0]

    def __repr__(self) -> str:
        return f"DenseOrthogonal({self.name!r}, n={self.n})"

    def _mul(self, x, mat, axis):
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"x must be a real float or integer array, got dtype {x.dtype}")
        xm = np.moveaxis(x.astype(np.float64, copy=False), axis, -1)
        if xm.shape[-1] != self.n:
            raise ValueError(f"x has length {xm.shape[-1]} along axis {axis}, expected n = {self.n}")
        return np.moveaxis(xm @ mat, -1, axis)

    def apply(self, x, axis: int = -1) -> np.ndarray:
        return self._mul(x, self.m, axis)

    def apply_transpose(self, x, axis: int = -1) -> np.ndarray:
        return self._mul(x, self.m.T, axis)

    def matrix(self) -> np.ndarray:
        return self.m.copy()
