"""Means over evaluation windows, their standard errors and paired confidence intervals
(spec/EV.md section 2).

Tokens inside a window are correlated (one text passage, one attention context), so a token-level
standard error ``sd / sqrt(tokens)`` is too small. The windows are the independent units: disjoint
stretches of the text, each scored by its own forward pass. A statistic over tokens is a ratio of
window sums, m = sum_w n_w m_w / sum_w n_w (m_w the window mean, n_w its positions), and its
standard error is the cluster (ratio-estimator) one (EV-2.2):

    se(m)^2 = W / (W - 1) * sum_w n_w^2 (m_w - m)^2 / (sum_w n_w)^2

which for equal n_w is ``std(m_w, ddof=1) / sqrt(W)``. Paired differences between two rows on the
same windows use d_w = a_w - b_w and the same formula, with a Student t interval on W - 1 degrees
of freedom by default and a seeded percentile bootstrap over windows as an option (EV-2.3).
"""
from __future__ import annotations

import numpy as np

from torq_ref.errors import UserError

METHODS = ("t", "bootstrap")


class IntervalError(UserError, ValueError):
    """Inputs that do not describe windows of one evaluation (lengths, weights, pairing)."""


def _vectors(values, weights, name: str = "values"):
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 1:
        raise IntervalError(f"{name} must be a non-empty list of per-window values; got shape {v.shape}")
    if not np.isfinite(v).all():
        raise IntervalError(f"{name} contains non-finite values")
    if weights is None:
        w = np.ones_like(v)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != v.shape:
            raise IntervalError(f"weights have shape {w.shape}, {name} {v.shape}: one weight per window")
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise IntervalError("weights (positions per window) must be finite and > 0")
    return v, w


def weighted_mean(values, weights=None) -> float:
    """sum_w n_w m_w / sum_w n_w: the mean over all scored tokens from the window means (EV-2.1)."""
    v, w = _vectors(values, weights)
    return float(np.dot(w, v) / w.sum())


def window_se(values, weights=None) -> float:
    """Cluster standard error of :func:`weighted_mean`, windows as units (EV-2.2); nan for 1 window."""
    v, w = _vectors(values, weights)
    W = v.size
    if W < 2:
        return float("nan")
    m = np.dot(w, v) / w.sum()
    return float(np.sqrt(W / (W - 1) * np.sum((w * (v - m)) ** 2)) / w.sum())


def paired_ci(a, b, weights=None, *, level: float = 0.95, method: str = "t", n_boot: int = 10000,
              seed: int = 0) -> tuple[float, float, float]:
    """(mean difference, lo, hi) of a - b over the SAME windows, paired window by window (EV-2.3).

    ``a``, ``b``: per-window means of two rows; ``weights``: positions per window (equal when
    None). ``method`` "t": d +- t_{W-1} se(d); "bootstrap": percentile interval of ``n_boot``
    resamples of windows with replacement (``seed``). One window gives (d, nan, nan)."""
    if method not in METHODS:
        raise IntervalError(f"method {method!r} unknown; choose from {METHODS}")
    if not 0 < level < 1:
        raise IntervalError(f"level must be in (0, 1); got {level!r}")
    va, w = _vectors(a, weights, "a")
    vb, _ = _vectors(b, weights, "b")
    if va.shape != vb.shape:
        raise IntervalError(f"paired rows need the same windows: {va.size} vs {vb.size} values")
    d = va - vb                                                      # (W,) paired differences
    mean = float(np.dot(w, d) / w.sum())
    W = d.size
    if W < 2:
        return mean, float("nan"), float("nan")
    if method == "t":
        from scipy.stats import t as student_t

        half = float(student_t.ppf(0.5 + level / 2, W - 1)) * window_se(d, w)
        return mean, mean - half, mean + half
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, W, size=(n_boot, W))                       # (B, W) resampled windows
    ws = w[idx]
    boot = np.sum(ws * d[idx], axis=1) / ws.sum(axis=1)              # (B,)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return mean, float(lo), float(hi)


def windows_to_separate(d, weights=None, *, level: float = 0.95, max_windows: int = 100000) -> int | None:
    """Planning figure (EV-2.5): the smallest window count W' >= 2 at which a paired t interval with
    the observed mean difference and per-window spread of ``d`` (W >= 2 values) would exclude 0,
    t_{W'-1} sd / sqrt(W') < |mean|; None when the spread is unknown (one window) or the mean is 0.
    ``sd`` is the cluster spread of EV-2.2 scaled to one window: se(d) sqrt(W)."""
    from scipy.stats import t as student_t

    v, w = _vectors(d, weights, "d")
    if v.size < 2:
        return None
    mean = abs(float(np.dot(w, v) / w.sum()))
    sd = window_se(v, w) * np.sqrt(v.size)
    if mean == 0:
        return None
    if sd == 0:
        return 2
    q = 0.5 + level / 2
    for n in range(2, max_windows + 1):
        if student_t.ppf(q, n - 1) * sd / np.sqrt(n) < mean:
            return n
    return None
