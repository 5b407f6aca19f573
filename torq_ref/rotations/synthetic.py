"""Synthetic heavy-tailed layer inputs for the max-entropy experiments and tests (spec/ME.md ME-5.1)."""
from __future__ import annotations

import numpy as np


def heavy_tailed_activations(T: int, n: int, *, df: float = 3.0, n_outliers: int | None = None,
                             outlier_scale: float = 30.0, seed: int = 0) -> np.ndarray:
    """Synthetic layer inputs (T, n): Student-t(df) entries with log-normal channel scales, plus
    ``n_outliers`` channels (default n // 64) multiplied by ``outlier_scale``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(df, size=(T, n)) * np.exp(0.5 * rng.standard_normal(n))
    k = n // 64 if n_outliers is None else n_outliers
    if k:
        x[:, rng.choice(n, size=k, replace=False)] *= outlier_scale
    return x
