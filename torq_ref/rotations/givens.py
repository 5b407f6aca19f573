"""Orthogonal matrices stored as sequences of plane (Givens) rotations (spec/SH.md, section SH-1).

A ``GivensSequence`` of size n holds K rotations (i_r, j_r, c_r, s_r), i_r != j_r, c^2 + s^2 = 1.
Rotation r is the n x n matrix G_r equal to the identity except

    G[i, i] = c,  G[i, j] = s,  G[j, i] = -s,  G[j, j] = c,

and the sequence represents Q = G_1 G_2 ... G_K. Applied to row vectors X (..., n) along the last
axis, ``apply`` returns X @ Q (the coordinates in the rotated basis, = Q^T x for a column vector
x): rotations are applied in order, each replacing columns (i, j) of X by
(c x_i - s x_j, s x_i + c x_j). ``apply_transpose`` returns X @ Q^T (the inverse).

Two interchangeable back ends give identical bits: a numba kernel (optional ``fast`` extra) and a
NumPy loop that is vectorised over everything except the rotation index.

Clauses: SH-1.1 the sequence and ``matrix()``, SH-1.2 ``apply`` / ``apply_transpose``, SH-1.3
validation on construction, SH-1.4 ``len`` / ``inverse`` / ``then``, SH-1.5 ``save`` / ``load``,
SH-1.6 the two back ends.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from torq_ref.errors import UserError

from . import _numba_givens

__all__ = ["GivensSequence", "GivensFileError", "apply_rotations"]

_FORMAT = "torq_ref.GivensSequence"
_VERSION = "1"
#: tolerance on c^2 + s^2 - 1 accepted when loading or constructing
_UNIT_TOL = 1e-12


class GivensFileError(UserError, ValueError):
    """A safetensors file does not hold a valid GivensSequence (SH-1.5)."""


def _as_float_array(x, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{what} must be a real float or integer array, got dtype {arr.dtype}")
    return arr


def apply_rotations(y: np.ndarray, i, j, c, s, *, reverse: bool = False,
                    transpose: bool = False, backend: str = "auto") -> None:
    """Rotate the rows of ``y`` (n, m) in place by the rotations (i, j, c, s).

    Row update for rotation r (s negated when ``transpose``):
    y[i] <- c*y[i] - s*y[j];  y[j] <- s*y[i] + c*y[j]. ``reverse`` runs the list backwards.
    ``backend``: "auto" (numba when installed), "numba" or "numpy"; both give identical bits.
    """
    if backend not in ("auto", "numba", "numpy"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
    kern = None if backend == "numpy" else _numba_givens.load()
    if backend == "numba" and kern is None:
        raise RuntimeError("backend='numba' requested but numba is not installed")
    if kern is not None:
        kern.apply_rows(y, i, j, c, s, reverse, transpose)
        return
    k = len(i)
    order = range(k - 1, -1, -1) if reverse else range(k)
    for r in order:
        p = int(i[r])
        q = int(j[r])
        cr = float(c[r])
        sr = -float(s[r]) if transpose else float(s[r])
        u = y[p].copy()
        v = y[q]
        y[p] = cr * u - sr * v
        y[q] = sr * u + cr * v


class GivensSequence:
    """Orthogonal Q = G_1 ... G_K of size n stored as plane rotations (SH-1.1).

    Parameters: ``n`` (matrix size >= 1) and the equal-length 1-D arrays ``i``, ``j`` (int64
    indices in [0, n), i != j), ``c``, ``s`` (finite float64, c^2 + s^2 = 1 within 1e-12).
    """

    __slots__ = ("n", "i", "j", "c", "s")

    def __init__(self, n: int, i=(), j=(), c=(), s=()):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.n = int(n)
        self.i = np.ascontiguousarray(np.asarray(i, dtype=np.int64).reshape(-1))
        self.j = np.ascontiguousarray(np.asarray(j, dtype=np.int64).reshape(-1))
        self.c = np.ascontiguousarray(np.asarray(c, dtype=np.float64).reshape(-1))
        self.s = np.ascontiguousarray(np.asarray(s, dtype=np.float64).reshape(-1))
        self._validate(ValueError)

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def identity(cls, n: int) -> "GivensSequence":
        return cls(n)

    def _validate(self, exc) -> None:
        k = len(self.i)
        if not (len(self.j) == len(self.c) == len(self.s) == k):
            raise exc(f"rotation arrays differ in length: i {len(self.i)}, j {len(self.j)}, "
                      f"c {len(self.c)}, s {len(self.s)}")
        if k == 0:
            return
        bad = (self.i < 0) | (self.i >= self.n) | (self.j < 0) | (self.j >= self.n)
        if bad.any():
            r = int(np.argmax(bad))
            raise exc(f"rotation {r}: plane ({self.i[r]}, {self.j[r]}) outside [0, {self.n})")
        same = self.i == self.j
        if same.any():
            r = int(np.argmax(same))
            raise exc(f"rotation {r}: i == j == {self.i[r]}")
        if not (np.isfinite(self.c).all() and np.isfinite(self.s).all()):
            raise exc("rotation coefficients c, s must be finite")
        unit = np.abs(self.c * self.c + self.s * self.s - 1.0)
        if (unit > _UNIT_TOL).any():
            r = int(np.argmax(unit))
            raise exc(f"rotation {r}: c^2 + s^2 - 1 = {unit[r]:.3e} (not a rotation)")

    def __len__(self) -> int:
        return len(self.i)

    def __repr__(self) -> str:
        return f"GivensSequence(n={self.n}, rotations={len(self)})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, GivensSequence):
            return NotImplemented
        return (self.n == other.n and np.array_equal(self.i, other.i)
                and np.array_equal(self.j, other.j) and np.array_equal(self.c, other.c)
                and np.array_equal(self.s, other.s))

    __hash__ = None

    def then(self, other: "GivensSequence") -> "GivensSequence":
        """The sequence for Q_self @ Q_other (self's rotations first, then other's)."""
        if not isinstance(other, GivensSequence) or other.n != self.n:
            raise ValueError("can only concatenate GivensSequences of the same size")
        return GivensSequence(self.n, np.concatenate([self.i, other.i]),
                              np.concatenate([self.j, other.j]),
                              np.concatenate([self.c, other.c]),
                              np.concatenate([self.s, other.s]))

    def inverse(self) -> "GivensSequence":
        """The sequence for Q^T: reversed order, s negated."""
        return GivensSequence(self.n, self.i[::-1], self.j[::-1], self.c[::-1], -self.s[::-1])

    # -- application ----------------------------------------------------------------------
    def _run(self, x, axis: int, transpose: bool, backend: str) -> np.ndarray:
        arr = _as_float_array(x, "x")
        if arr.ndim == 0:
            raise ValueError("x must have at least one dimension")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        ax = int(axis) + arr.ndim if axis < 0 else int(axis)
        if not 0 <= ax < arr.ndim:
            raise ValueError(f"axis {axis} out of range for x with {arr.ndim} dimensions")
        if arr.shape[ax] != self.n:
            raise ValueError(f"x has length {arr.shape[ax]} along axis {axis}, expected n = {self.n}")
        moved = np.moveaxis(arr, ax, 0)
        lead = moved.shape
        y = np.array(moved.reshape(self.n, -1), dtype=np.float64, order="C", copy=True)  # (n, m)
        apply_rotations(y, self.i, self.j, self.c, self.s, reverse=transpose,
                        transpose=transpose, backend=backend)
        return np.moveaxis(y.reshape(lead), 0, ax)

    def apply(self, x, axis: int = -1, *, backend: str = "auto") -> np.ndarray:
        """X @ Q along ``axis`` (float64 result, input untouched)."""
        return self._run(x, axis, False, backend)

    def apply_transpose(self, x, axis: int = -1, *, backend: str = "auto") -> np.ndarray:
        """X @ Q^T along ``axis`` (the inverse of ``apply``)."""
        return self._run(x, axis, True, backend)

    def matrix(self, *, backend: str = "auto") -> np.ndarray:
        """Dense Q (n, n), float64."""
        return self.apply(np.eye(self.n), axis=-1, backend=backend)

    # -- safetensors IO ---------------------------------------------------------------------
    def save(self, path) -> None:
        """Write arrays i, j (int64), c, s (float64) and metadata n, format, version."""
        from safetensors.numpy import save_file

        save_file({"i": self.i, "j": self.j, "c": self.c, "s": self.s}, str(path),
                  metadata={"format": _FORMAT, "version": _VERSION, "n": str(self.n)})

    @classmethod
    def load(cls, path) -> "GivensSequence":
        """Read a file written by ``save``; any defect raises GivensFileError naming it."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                keys = set(f.keys())
                missing = {"i", "j", "c", "s"} - keys
                if missing:
                    raise GivensFileError(f"{path}: missing arrays {sorted(missing)}")
                arrays = {k: f.get_tensor(k) for k in ("i", "j", "c", "s")}
        except GivensFileError:
            raise
        except Exception as err:  # safetensors raises its own error types on corrupt headers
            raise GivensFileError(f"{path}: not a readable safetensors file ({err})") from err
        if meta.get("format") != _FORMAT:
            raise GivensFileError(f"{path}: metadata format is {meta.get('format')!r}, "
                                  f"expected {_FORMAT!r}")
        if meta.get("version") != _VERSION:
            raise GivensFileError(f"{path}: unsupported version {meta.get('version')!r}")
        try:
            n = int(meta.get("n", ""))
        except ValueError:
            raise GivensFileError(f"{path}: metadata n = {meta.get('n')!r} is not an integer")
        if n < 1:
            raise GivensFileError(f"{path}: metadata n = {n} must be >= 1")
        for k, kind in (("i", "i"), ("j", "i"), ("c", "f"), ("s", "f")):
            a = arrays[k]
            if a.ndim != 1 or a.dtype.kind != kind or a.dtype.itemsize != 8:
                raise GivensFileError(f"{path}: array {k} has shape {a.shape} dtype {a.dtype}, "
                                      f"expected 1-D {'int64' if kind == 'i' else 'float64'}")
        obj = cls.__new__(cls)
        obj.n = n
        obj.i, obj.j, obj.c, obj.s = (np.ascontiguousarray(arrays[k]) for k in ("i", "j", "c", "s"))
        try:
            obj._validate(GivensFileError)
        except GivensFileError as err:
            raise GivensFileError(f"{path}: {err}") from None
        return obj
