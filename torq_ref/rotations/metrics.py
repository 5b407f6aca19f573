"""Metrics of inter-block balance and MXFP4 error under a transform (spec/SH.md, section SH-4).

Definitions (docs/torq-method.md section 2): activations are rows X (T, n); the uncentred second moment
is C = X^T X / T; block energies are the traces of the consecutive block_size x block_size
diagonal blocks of C; the imbalance is max_b t_b / mean_b t_b (1 for perfectly even blocks).
The MXFP4 metrics use the project's codec (torq_ref.mx, E2M1 elements, E8M0 scales).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "second_moment", "block_energies", "block_energy_imbalance", "scale_exponent_spread",
    "mxfp4_nmse", "transform_rows",
]


def _rows(x, what="X") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{what} must be a real float or integer array, got dtype {arr.dtype}")
    if arr.ndim < 1:
        raise ValueError(f"{what} must have at least one dimension")
    arr = arr.reshape(-1, arr.shape[-1]).astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinity")
    return arr


def _blocks(n: int, block_size: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1 or n % block_size:
        raise ValueError(f"n = {n} is not a multiple of block_size = {block_size!r}")
    return n // block_size


def second_moment(x) -> np.ndarray:
    """C = X^T X / T (n, n) of the rows of X (any leading shape), symmetric to the last bit."""
    xr = _rows(x)
    c = xr.T @ xr / xr.shape[0]
    return 0.5 * (c + c.T)


def transform_rows(x, transform) -> np.ndarray:
    """X @ M for a transform object with ``apply`` (GivensSequence, DenseOrthogonal, ...),
    a dense matrix M, or None (identity)."""
    if transform is None:
        return np.asarray(x, dtype=np.float64)
    if hasattr(transform, "apply"):
        return np.asarray(transform.apply(x, axis=-1), dtype=np.float64)
    m = np.asarray(transform, dtype=np.float64)
    return np.asarray(x, dtype=np.float64) @ m


def block_energies(c, block_size: int = 32) -> np.ndarray:
    """Traces of the diagonal blocks of a second-moment matrix C (n, n) -> (n / block_size,).
    A 1-D input is taken as diag(C)."""
    c = np.asarray(c, dtype=np.float64)
    d = c if c.ndim == 1 else np.diag(c)
    nb = _blocks(d.shape[0], block_size)
    return d.reshape(nb, block_size).sum(axis=1)


def block_energy_imbalance(c, block_size: int = 32) -> float:
    """max_b t_b / mean_b t_b of the block energies (SH-4.1); nan when all energies are zero."""
    e = block_energies(c, block_size)
    mean = float(e.mean())
    return float(e.max() / mean) if mean > 0 else float("nan")


def scale_exponent_spread(x, block_size: int = 32, *, scale_rule: str = "floor") -> dict:
    """Spread of the per-block E8M0 scale exponents of MXFP4(X) along the last axis (SH-4.2).

    For each row, the spread is max - min of the scale exponents of its non-zero blocks (0 when
    fewer than two). Returns {"mean": mean over rows, "max": max over rows,
    "global": max - min over all non-zero blocks}.
    """
    from torq_ref import mx

    xr = _rows(x)
    nb = _blocks(xr.shape[1], block_size)
    t = mx.quantize(xr, "e2m1", block_size=block_size, axis=-1, scale_rule=scale_rule)
    e = t.scales.astype(np.int64).reshape(xr.shape[0], nb) - 127          # (T, nb) exponents
    nz = np.abs(xr).reshape(xr.shape[0], nb, block_size).max(axis=2) > 0  # (T, nb)
    hi = np.where(nz, e, np.iinfo(np.int64).min).max(axis=1)
    lo = np.where(nz, e, np.iinfo(np.int64).max).min(axis=1)
    per_row = np.where(nz.sum(axis=1) >= 2, hi - lo, 0)
    glob = int(e[nz].max() - e[nz].min()) if nz.any() else 0
    return {"mean": float(per_row.mean()), "max": int(per_row.max()), "global": glob}


def mxfp4_nmse(x, transform=None, block_size: int = 32, *, scale_rule: str = "floor") -> float:
    """||Q(Y) - Y||^2 / ||Y||^2 with Y = X @ M and Q the MXFP4 fake quantiser along the last axis
    (SH-4.3). For orthogonal M this equals the error measured back in the original basis."""
    from torq_ref import mx

    y = _rows(transform_rows(_rows(x), transform), "X @ M")
    _blocks(y.shape[1], block_size)
    q = mx.quantize_dequantize(y, "e2m1", block_size=block_size, axis=-1, scale_rule=scale_rule)
    den = float(np.sum(y * y))
    if den == 0.0:
        return 0.0
    return float(np.sum((q - y) ** 2) / den)
