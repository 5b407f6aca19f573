"""Shared fixtures of the engine and peers tests: a seeded tiny Llama, five 40-token windows
(3 evaluation, 2 calibration) and a small micro-step config (48 rows: 32 held out)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.model.tiny import tiny_model
from torq_ref.torq import TorqConfig

CFG = TorqConfig(micro_rows=48, max_sweeps=1)
W = 40


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=3)


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 96, size=5 * W)
    return ids[: 3 * W].reshape(3, W), ids[3 * W:].reshape(2, W)


def spiky_site(seed=0, T=256, n=64, out=48, spike=60.0):
    """Calibration rows with one dominant channel (a massive activation) and a weight:
    (X (T, n), C = X^T X / T (n, n), W (out, n))."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, n))
    X[:, 5] *= spike
    W = rng.standard_normal((out, n)) / np.sqrt(n)
    return X, X.T @ X / T, W
