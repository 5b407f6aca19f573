"""Streaming capture of linear-layer inputs for calibration (spec/FW.md section 4).

An :class:`ActivationCapture` passed to ``Model.forward(..., capture=cap)`` sees the input of every
selected site *before* that site's transform and quantizer (the rows x_t that feed the linear
layer; with a quant plan active, upstream sites are already quantized). It can

* accumulate the uncentred second moment ``C = (1/N) sum_t x_t x_t^T`` in float64 per site,
  streaming (only the (n, n) sum and the row count are kept), and/or
* keep the rows themselves (float32 copies), optionally capped at ``max_rows`` per site, and/or
* call ``callback(layer, site, x2d)`` for anything else.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .errors import ModelError
from .hooks import SITES


class ActivationCapture:
    """Record site inputs for chosen layers (FW-4.1 .. FW-4.3)."""

    def __init__(self, layers: Iterable[int] | None = None, sites: Iterable[str] = SITES, *,
                 moments: bool = True, inputs: bool = False, max_rows: int | None = None,
                 callback: Callable[[int, str, np.ndarray], None] | None = None):
        self.layers = None if layers is None else frozenset(int(i) for i in layers)
        self.sites = tuple(sites)
        bad = [s for s in self.sites if s not in SITES]
        if bad:
            raise ModelError(f"unknown site(s) {bad}; sites are {SITES}")
        self.keep_moments = moments
        self.keep_inputs = inputs
        self.max_rows = max_rows
        self.callback = callback
        self._sums: dict[tuple[int, str], np.ndarray] = {}
        self._counts: dict[tuple[int, str], int] = {}
        self._rows: dict[tuple[int, str], list[np.ndarray]] = {}

    def wants(self, layer: int, site: str) -> bool:
        return site in self.sites and (self.layers is None or layer in self.layers)

    def record(self, layer: int, site: str, x: np.ndarray) -> None:
        """Take the site input x (..., n); rows are the flattened leading axes."""
        if not self.wants(layer, site):
            return
        key = (layer, site)
        x2 = x.reshape(-1, x.shape[-1])                         # (T, n)
        if self.keep_moments:
            x64 = x2.astype(np.float64)
            gram = x64.T @ x64                                   # (n, n)
            if key in self._sums:
                self._sums[key] += gram
            else:
                self._sums[key] = gram
        self._counts[key] = self._counts.get(key, 0) + x2.shape[0]
        if self.keep_inputs:
            held = sum(r.shape[0] for r in self._rows.get(key, []))
            room = x2.shape[0] if self.max_rows is None else max(0, self.max_rows - held)
            if room:
                self._rows.setdefault(key, []).append(np.array(x2[:room], dtype=np.float32))
        if self.callback is not None:
            self.callback(layer, site, x2)

    def keys(self) -> list[tuple[int, str]]:
        return sorted(self._counts)

    def count(self, layer: int, site: str) -> int:
        """Rows seen so far at a site."""
        return self._counts.get((layer, site), 0)

    def moment(self, layer: int, site: str) -> np.ndarray:
        """C = (1/N) sum x x^T, float64 (n, n)."""
        key = (layer, site)
        if key not in self._sums:
            raise ModelError(f"no moments recorded for {key} (moments={self.keep_moments})")
        return self._sums[key] / self._counts[key]

    def moments(self) -> dict[tuple[int, str], np.ndarray]:
        return {k: self.moment(*k) for k in sorted(self._sums)}

    def inputs(self, layer: int | None = None, site: str | None = None):
        """Captured rows: one (N, n) float32 array for (layer, site), or a dict of all."""
        if layer is not None:
            rows = self._rows.get((layer, site))
            if not rows:
                raise ModelError(f"no inputs recorded for {(layer, site)} (inputs={self.keep_inputs})")
            return np.concatenate(rows, axis=0)
        return {k: np.concatenate(v, axis=0) for k, v in sorted(self._rows.items())}
