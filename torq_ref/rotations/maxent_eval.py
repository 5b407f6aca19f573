"""Evaluation kernels of the max-entropy micro rotation (spec/ME.md sections 2 and 4).

The objective's pieces on block rows Y (M, B): the shared FLOOR exponent of each row, the E2M1
codes and squared errors, the 15-bin code histogram and the error total summed in a fixed order
(ME-2.2). Besides the full evaluation there are the incremental kernels of ME-4.1 (``plane_prep``,
``plane_trials``, ``apply_rotation``) that re-evaluate only the two columns a plane rotation
touches. Every kernel exists twice, in NumPy here (``_np_*``) and in numba
(:mod:`._numba_maxent`), with identical bits (ME-4.3); :func:`get_kernels` picks one.
:func:`evaluate_fast` (ME-2.3) and :func:`rotation_metrics` (the reference through torq_ref.mx)
measure a rotation; :func:`apply_rotation` applies one (ME-3.1).
"""
from __future__ import annotations

import math

import numpy as np

from ..mx import numba_available
from ..mx.formats import E2M1_THRESHOLDS, E2M1_VALUES, e2m1_magnitude_code
from .entropy import N_BINS, entropy_from_counts

#: Rows per deterministic reduction chunk (ME-2.2).
CHUNK = 2048
_MAG = np.array(E2M1_VALUES[:8])
#: POW2[k] = 2^(k - 127), k = 0..254 (every E8M0 scale), exact.
POW2 = np.array([math.ldexp(1.0, k - 127) for k in range(255)])
#: Largest 2-norm of one input block: keeps every rotated value below 2^127 (finite FLOOR scale).
MAX_BLOCK_NORM = math.ldexp(1.0, 127)


class MaxentInputError(ValueError):
    """Bad input to maxent_rotation (shape, values, holdout, options)."""


# --------------------------------------------------------------------------------------------
# NumPy kernels (the reference path; _numba_maxent mirrors them operation for operation)
# --------------------------------------------------------------------------------------------

def _np_scale_exp(amax: np.ndarray) -> np.ndarray:
    """FLOOR shared exponent floor(log2 amax) - 2 clamped to [-127, 127]; amax == 0 -> -127.

    ME-4.2: from the exponent bits (frexp), never a floating log2, so it equals the FLOOR rule of
    torq_ref.mx for every amax, subnormal and zero included."""
    _, ex = np.frexp(amax)                       # amax = f 2^ex, f in [0.5, 1)
    e = np.clip(ex.astype(np.int64) - 3, -127, 127)
    return np.where(amax == 0.0, -127, e)


def _np_quant(y: np.ndarray, e: np.ndarray):
    """Squared error and histogram bin of elements y quantized with shared exponents e."""
    ay = np.abs(y)
    t = ay * POW2[127 - e]
    m = e2m1_magnitude_code(t)                   # the one E2M1 decision table (mx/formats.py)
    d = _MAG[m] * POW2[127 + e] - ay
    b = np.where(m == 0, 0, m + 8 * (y < 0.0))
    return d * d, b.astype(np.uint8)


def _np_chunked_sum(v: np.ndarray, chunk: int) -> np.ndarray:
    """Sum the last axis of v >= 0: sequentially inside chunks of `chunk`, then over the chunks."""
    m = v.shape[-1]
    nch = -(-m // chunk)
    pad = np.zeros(v.shape[:-1] + (nch * chunk - m,))
    w = np.concatenate([v, pad], axis=-1).reshape(v.shape[:-1] + (nch, chunk))
    part = np.cumsum(w, axis=-1)[..., -1]        # (..., nch) sequential inside each chunk
    return np.cumsum(part, axis=-1)[..., -1]      # sequential over chunks


def _np_row_sum(err: np.ndarray, cols) -> np.ndarray:
    """Sequential sum over the given columns of err (M, B), starting from 0.0."""
    acc = np.zeros(err.shape[0])
    for k in cols:
        acc = acc + err[:, k]
    return acc


def _np_full_eval(Y: np.ndarray, pow2=POW2, chunk: int = CHUNK):
    E = _np_scale_exp(np.max(np.abs(Y), axis=1))                  # (M,)
    Err, C = _np_quant(Y, E[:, None])                             # (M, B) each
    hist = np.bincount(C.ravel(), minlength=N_BINS).astype(np.int64)
    total = float(_np_chunked_sum(_np_row_sum(Err, range(Y.shape[1])), chunk))
    return E, C, Err, hist, total


def _np_plane_prep(Y, Err, i, j, chunk=CHUNK):
    others = [k for k in range(Y.shape[1]) if k != i and k != j]
    om = np.max(np.abs(Y[:, others]), axis=1) if others else np.zeros(Y.shape[0])
    return om, _np_row_sum(Err, others)


def _np_plane_trials(Y, E, C, om, oe, i, j, cs, sn, pow2=POW2, chunk=CHUNK):
    M, B = Y.shape
    K = cs.shape[0]
    yi, yj = Y[:, i][None, :], Y[:, j][None, :]                  # (1, M)
    a = cs[:, None] * yi - sn[:, None] * yj                       # (K, M)
    b = sn[:, None] * yi + cs[:, None] * yj
    amax = np.maximum(np.maximum(om[None, :], np.abs(a)), np.abs(b))
    e = _np_scale_exp(amax)                                       # (K, M)
    other = np.broadcast_to(oe, (K, M)).copy()
    hist = np.zeros(K * N_BINS, np.int64)
    kk, rr = np.nonzero(e != E[None, :])                          # rows whose scale moves
    if kk.size:
        se = e[kk, rr]
        acc = np.zeros(kk.size)
        for col in range(B):
            if col == i or col == j:
                continue
            q, bb = _np_quant(Y[rr, col], se)
            acc = acc + q
            hist += np.bincount(kk * N_BINS + bb, minlength=K * N_BINS)
            hist -= np.bincount(kk * N_BINS + C[rr, col], minlength=K * N_BINS)
        other[kk, rr] = acc
    qa, ba = _np_quant(a, e)
    qb, bb2 = _np_quant(b, e)
    row = other + qa + qb
    kidx = np.arange(K)[:, None] * N_BINS
    hist += np.bincount((kidx + ba).ravel(), minlength=K * N_BINS)
    hist += np.bincount((kidx + bb2).ravel(), minlength=K * N_BINS)
    return hist.reshape(K, N_BINS), _np_chunked_sum(row, chunk)


def _np_apply_rotation(Y, E, C, Err, i, j, c, s, pow2=POW2, chunk=CHUNK):
    yi, yj = Y[:, i].copy(), Y[:, j].copy()
    a = c * yi - s * yj
    b = s * yi + c * yj
    Y[:, i], Y[:, j] = a, b
    e = _np_scale_exp(np.max(np.abs(Y), axis=1))
    same = e == E
    Err[same, i], C[same, i] = _np_quant(a[same], e[same])
    Err[same, j], C[same, j] = _np_quant(b[same], e[same])
    moved = ~same
    if moved.any():
        E[moved] = e[moved]
        Err[moved], C[moved] = _np_quant(Y[moved], e[moved][:, None])


def _np_rotate_blocks(X, R, chunk=CHUNK):
    """Y = X @ R with each dot product summed sequentially over k (same order as numba)."""
    acc = X[:, 0:1] * R[0]
    for k in range(1, X.shape[1]):
        acc = acc + X[:, k:k + 1] * R[k]
    return acc


class Kernels:
    """The five kernels of one backend, with the chunk size bound."""

    def __init__(self, name: str, chunk: int = CHUNK):
        self.name = name
        self.chunk = chunk
        if name == "numba":
            from . import _numba_maxent as m
            self._full, self._prep, self._trials = m.full_eval, m.plane_prep, m.plane_trials
            self._apply, self._rot = m.apply_rotation, m.rotate_blocks
        elif name == "numpy":
            self._full, self._prep, self._trials = _np_full_eval, _np_plane_prep, _np_plane_trials
            self._apply, self._rot = _np_apply_rotation, _np_rotate_blocks
        else:
            raise MaxentInputError(f"unknown backend {name!r} (use 'auto', 'numba' or 'numpy')")

    def full_eval(self, Y):
        E, C, Err, hist, total = self._full(Y, POW2, self.chunk)
        return E, C, Err, np.asarray(hist, np.int64), float(total)

    def plane_prep(self, Y, Err, i, j):
        return self._prep(Y, Err, i, j, self.chunk)

    def plane_trials(self, Y, E, C, om, oe, i, j, cs, sn):
        hist, err = self._trials(Y, E, C, om, oe, i, j, cs, sn, POW2, self.chunk)
        return np.asarray(hist, np.int64), np.asarray(err, np.float64)

    def apply_rotation(self, Y, E, C, Err, i, j, c, s):
        self._apply(Y, E, C, Err, i, j, float(c), float(s), POW2, self.chunk)

    def rotate(self, X, R):
        return self._rot(np.ascontiguousarray(X), np.ascontiguousarray(R), self.chunk)


def get_kernels(backend: str = "auto", chunk: int = CHUNK) -> Kernels:
    """Kernels of ``backend``: "numba", "numpy", or "auto" (numba when installed)."""
    if backend == "auto":
        backend = "numba" if numba_available() else "numpy"
    kern = Kernels(backend, chunk)
    if backend == "numba":
        _check_numba_table(kern)
    return kern


_NUMBA_CHECKED = False


def _check_numba_table(kern: Kernels) -> None:
    """The numba kernels bake the E2M1 decision table in when compiled and numba's on-disk cache
    does not notice an edit of mx/formats.py: once per process, compare them with the NumPy twins
    on rows holding every decision point (thresholds and their neighbours, row max 6 = scale 1)."""
    global _NUMBA_CHECKED
    if _NUMBA_CHECKED:
        return
    t = np.asarray(E2M1_THRESHOLDS, dtype=np.float64)
    v = np.concatenate([t, np.nextafter(t, 0.0), np.nextafter(t, 8.0), [0.0, 5.9]])   # (23,)
    Y = np.zeros((v.size, 8))
    Y[:, 0], Y[:, 1], Y[:, 2] = 6.0, v, -v                                             # (23, 8)
    got, want = kern.full_eval(Y), Kernels("numpy", kern.chunk).full_eval(Y)
    if not (np.array_equal(got[1], want[1]) and np.array_equal(got[3], want[3])):
        import os

        from . import _numba_maxent
        raise RuntimeError(
            "the numba max-entropy kernels on disk were compiled with another E2M1 decision table "
            "than torq_ref/mx/formats.py; delete "
            f"{os.path.join(os.path.dirname(_numba_maxent.__file__), '__pycache__')}"
            "/_numba_maxent.*.nbi and .nbc (numba's cache) and rerun")
    _NUMBA_CHECKED = True


def fixed_order_energy(X: np.ndarray, chunk: int = CHUNK) -> float:
    """Sum of squares of block rows X (M, B), in the fixed order used for every error sum (ME-2.2)."""
    return float(_np_chunked_sum(_np_row_sum(X * X, range(X.shape[1])), chunk))


def apply_rotation(X, R, *, block_size: int = 32) -> np.ndarray:
    """X (..., n) with every block of the last axis multiplied by R (shared (B, B) or (n/B, B, B))."""
    X = np.asarray(X)
    R = np.asarray(R)
    if X.ndim < 1 or X.shape[-1] == 0:
        raise MaxentInputError(f"X must have a non-empty last (channel) axis, got shape {X.shape}")
    n = X.shape[-1]
    if n % block_size:
        raise MaxentInputError(f"last axis ({n}) is not divisible by block_size ({block_size})")
    nb = n // block_size
    if R.shape not in ((block_size, block_size), (nb, block_size, block_size)):
        raise MaxentInputError(
            f"R must have shape ({block_size}, {block_size}) (shared) or ({nb}, {block_size}, "
            f"{block_size}) (per block) for X with {n} channels and block_size {block_size}; "
            f"got {R.shape}")
    Xb = X.reshape(X.shape[:-1] + (nb, block_size))                # (..., nb, B)
    if R.ndim == 2:
        Y = Xb @ R
    else:
        Y = np.einsum("...bk,bkl->...bl", Xb, R)
    return Y.reshape(X.shape)


def evaluate_fast(X, R, *, block_size: int = 32, kern: Kernels | None = None):
    """(code entropy, NMSE) of MXFP4(X rotated by R) with the optimizer's own kernels.

    NMSE = sum of squared quantization errors / sum of X^2 (R is orthogonal, so the error is the
    same in the rotated and the original basis). Equal to :func:`rotation_metrics` (ME-2.3).
    """
    kern = kern or get_kernels("auto")
    X = np.asarray(X, dtype=np.float64)
    T, n = X.reshape(-1, X.shape[-1]).shape
    nb = n // block_size
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        Y = kern.rotate(X.reshape(-1, block_size), R)                            # (T nb, B)
    else:
        Xb = X.reshape(T, nb, block_size)
        Y = np.stack([kern.rotate(Xb[:, b], R[b]) for b in range(nb)], axis=1).reshape(-1, block_size)
    _, _, _, hist, total = kern.full_eval(np.ascontiguousarray(Y))
    energy = fixed_order_energy(X.reshape(-1, block_size), kern.chunk)
    return entropy_from_counts(hist), (total / energy if energy > 0 else 0.0)


def rotation_metrics(X, R=None, *, block_size: int = 32) -> dict:
    """Reference metrics through torq_ref.mx: code entropy and NMSE of MXFP4(X rotated by R)."""
    from torq_ref import mx

    from .entropy import code_entropy

    X = np.asarray(X, dtype=np.float64)
    Y = X if R is None else apply_rotation(X, R, block_size=block_size)
    q = np.asarray(mx.quantize_dequantize(Y, "e2m1", block_size=block_size, scale_rule="floor"),
                   dtype=np.float64)
    return {"entropy": code_entropy(Y, block_size=block_size),
            "nmse": float(np.sum((q - Y) ** 2) / np.sum(X * X))}


def heldout_objective(X_held, R, beta: float, block_size: int = 32) -> float:
    """J = H - beta NMSE of the held-out tokens X_held (N, n) rotated blockwise by R (b, b),
    through torq_ref.mx (ME-2.1): the objective the ``maxent`` conformance kind judges by."""
    m = rotation_metrics(np.asarray(X_held, np.float64), np.asarray(R, np.float64),
                         block_size=block_size)
    return m["entropy"] - beta * m["nmse"]
