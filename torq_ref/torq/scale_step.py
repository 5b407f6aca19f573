"""The scale step of the TORQ micro level: per-channel smoothing of the RMSNorm-fed sites
(spec/TQ.md TQ-2.7).

Third-party notes on TORQ (docs/torq-method.md sections 1 and 2.4) say the intra-block step "alternates a scale
step and a rotation step"; the paper is silent on what is scaled. torq-ref's reconstruction: before
the rotation, every channel j of a site fed by an RMSNorm (qkv after input_layernorm, gate_up
after post_attention_layernorm) is divided by

    s_j = (r_j / g)^alpha,  r_j = sqrt(C_jj) (its calibration RMS),  g = geometric mean of r,

and the weight that consumes the channel is multiplied by s_j. Both are folded into the model:
the norm weight becomes gamma_j / s_j and the columns of W become W[:, j] s_j, so
(x / s) (W s)^T = x W^T and the FP32 logits do not change (to float rounding), at no run-time
cost. The rotations that follow are fitted on the smoothed rows X / s (second moment
C / (s s^T)). alpha = 0 is the identity; alpha is chosen by measurement (docs/history/results-log.md).
The o and down sites are left alone: their inputs are not produced by a per-channel map that
could absorb s exactly for every head (o, grouped-query attention) and smoothing down lost in
measurement.
"""
from __future__ import annotations

import dataclasses

import numpy as np

#: the sites whose input is an RMSNorm output, and the norm weight that feeds them
NORM_OF_SITE = {"qkv": "attn_norm", "gate_up": "mlp_norm"}


def channel_scales(C: np.ndarray, alpha: float) -> np.ndarray:
    """s (n,) = (r / geomean(r))^alpha with r = sqrt(diag C); channels with r = 0 get s = 1."""
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    r = np.sqrt(np.clip(np.diag(np.asarray(C, dtype=np.float64)), 0.0, None))   # (n,)
    live = r > 0
    if alpha == 0 or not live.any():
        return np.ones_like(r)
    g = np.exp(np.mean(np.log(r[live])))
    s = np.ones_like(r)
    s[live] = (r[live] / g) ** alpha
    return s


def site_scales(moments, n_layers: int, alpha: float) -> dict[tuple[int, str], np.ndarray]:
    """{(layer, site): s} for every RMSNorm-fed site; ``moments(layer, site)`` gives C."""
    return {(layer, site): channel_scales(moments(layer, site), alpha)
            for layer in range(n_layers) for site in NORM_OF_SITE}


def scaled_layer(lw, scales: dict[str, np.ndarray]):
    """One layer's weights with the scales {site: s} folded in: norm multiplier / s, consuming
    W columns * s (TQ-2.7). Arrays of the other sites are shared with ``lw``."""
    changes = {}
    for site, s in scales.items():
        if site not in NORM_OF_SITE:
            raise ValueError(f"site {site!r} is not fed by an RMSNorm; scalable sites: {tuple(NORM_OF_SITE)}")
        norm = getattr(lw, NORM_OF_SITE[site])
        w = lw.site_weight(site)
        if s.shape != norm.shape:
            raise ValueError(f"scales of site {site!r} have shape {s.shape}, the site has {norm.shape}")
        s64 = np.asarray(s, dtype=np.float64)
        changes[NORM_OF_SITE[site]] = (norm / s64).astype(norm.dtype)
        changes[site] = (w * s64[None, :]).astype(w.dtype)
    return dataclasses.replace(lw, **changes)


def scaled_model(model, scales: dict[tuple[int, str], np.ndarray]):
    """A copy of ``model`` with the scales folded in (:func:`scaled_layer` per layer).

    The copy shares the unchanged arrays with ``model`` (``Model.with_layers``)."""
    layers = list(model.layers)
    by_layer: dict[int, dict[str, np.ndarray]] = {}
    for (layer, site), s in scales.items():
        by_layer.setdefault(layer, {})[site] = s
    for layer, site_scales_ in by_layer.items():
        layers[layer] = scaled_layer(layers[layer], site_scales_)
    return model.with_layers(layers)


class ScaledCalibration:
    """A view of a calibration capture as the scaled model would have recorded it: rows X / s and
    second moment C / (s s^T) at the scaled sites, the rest unchanged."""

    def __init__(self, cap, scales: dict[tuple[int, str], np.ndarray]):
        self.cap, self.scales = cap, scales

    def moment(self, layer: int, site: str) -> np.ndarray:
        C = self.cap.moment(layer, site)
        s = self.scales.get((layer, site))
        return C if s is None else C / np.outer(s, s)

    def inputs(self, layer: int, site: str) -> np.ndarray:
        X = self.cap.inputs(layer, site)
        s = self.scales.get((layer, site))
        return X if s is None else (X / s).astype(X.dtype)
