"""Perplexity and calibration statistics over token windows (spec/FW.md section 6).

Each window is scored on its own: logits of positions 0..W-2 predict tokens 1..W-1; the window's
mean negative log-likelihood is averaged over its W-1 predictions (log-softmax in float64), and
PPL = exp(mean over windows of the window means). With equal-length windows that equals
exp(mean NLL over all predictions).
"""
from __future__ import annotations

import sys

import numpy as np

from .capture import ActivationCapture
from .errors import ModelError
from .hooks import SITES


def window_bar(iterable, desc: str, progress: bool, total=None):
    """A tqdm bar over windows, shown only when ``progress`` and stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="win", leave=False,
                disable=not (progress and sys.stderr.isatty()))


def window_nll(logits: np.ndarray, ids: np.ndarray) -> float:
    """Mean NLL of ids[1:] under logits[:-1]; logits (S, V), ids (S,) (FW-6.3)."""
    z = logits[:-1].astype(np.float64)                          # (S-1, V)
    target = z[np.arange(z.shape[0]), ids[1:]]                   # (S-1,)
    m = z.max(axis=-1, keepdims=True)                            # (S-1, 1)
    z -= m
    np.exp(z, out=z)
    lse = m[:, 0] + np.log(z.sum(axis=-1))                       # (S-1,)
    return float(np.mean(lse - target))


def perplexity(model, windows: np.ndarray, quant=None, *, progress: bool = True,
               return_nll: bool = False):
    """exp(mean window NLL) of ``model`` on ``windows`` (n, W), one window per forward (FW-6.3).

    ``quant``: an optional QuantPlan passed to ``model.forward``. With ``return_nll`` also returns
    the per-window mean NLLs (float64 array)."""
    windows = np.asarray(windows)
    if windows.ndim != 2:
        raise ValueError(f"windows must be (n, window); got shape {windows.shape}")
    if windows.shape[0] == 0:
        raise ModelError("no evaluation windows: the perplexity of nothing is undefined (FW-6.3)")
    nll = np.empty(windows.shape[0])
    for j in window_bar(range(windows.shape[0]), "ppl", progress):
        logits = model.forward(windows[j:j + 1], quant=quant)[0]  # (W, V)
        nll[j] = window_nll(logits, windows[j])
    ppl = float(np.exp(nll.mean()))
    return (ppl, nll) if return_nll else ppl


def collect_moments(model, windows: np.ndarray, *, layers=None, sites=SITES, quant=None,
                    inputs: bool = False, max_rows: int | None = None,
                    progress: bool = True) -> ActivationCapture:
    """Run ``windows`` through the model and return the filled :class:`ActivationCapture`:
    ``cap.moment(layer, site)`` is C = (1/N) sum x x^T (float64), N = all tokens (FW-4.2)."""
    cap = ActivationCapture(layers, sites, moments=True, inputs=inputs, max_rows=max_rows)
    windows = np.asarray(windows)
    for j in window_bar(range(windows.shape[0]), "calibrate", progress):
        model.forward(windows[j:j + 1], quant=quant, capture=cap)
    return cap
