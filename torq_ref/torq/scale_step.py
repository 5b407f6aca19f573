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
By default the o and down sites are left alone (smoothing down lost in an earlier measurement).
``scale_sites`` (TQ-2.17) also scales them, folded into the map that produces the input:

* down (input act(gate) * up): up_proj's output row j is divided by s_j, so act(gate) * (up / s)
  = (act(gate) * up) / s exactly, and down_proj's column j is multiplied by s_j;
* o (input: attention's output, per query head the probability-weighted sum of its KV head's v
  rows): v_proj's output row (k, c) (and its bias) is divided by s_(k, c), which divides channel c
  of every query head that reads KV head k; o_proj's columns are multiplied by the same s. With
  grouped-query attention one scale vector per KV head is shared by the query heads of its
  group: ``o_channel_scales`` pools the calibration RMS over them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

#: the sites whose input is an RMSNorm output, and the norm weight that feeds them
NORM_OF_SITE = {"qkv": "attn_norm", "gate_up": "mlp_norm"}
#: every site the scale step can scale (TQ-2.17): the RMSNorm-fed ones and the two whose inputs'
#: producers absorb 1 / s (o: v_proj's output rows, per KV head; down: up_proj's output rows)
SCALE_SITES = ("qkv", "gate_up", "o", "down")
#: the sites scaled by default (TQ-2.7)
DEFAULT_SCALE_SITES = ("qkv", "gate_up")


def channel_scales(C: np.ndarray, alpha: float) -> np.ndarray:
    """s (n,) = (r / geomean(r))^alpha with r = sqrt(diag C); channels with r = 0 get s = 1."""
    r = np.sqrt(np.clip(np.diag(np.asarray(C, dtype=np.float64)), 0.0, None))   # (n,)
    return _rms_scales(r, alpha)


def o_channel_scales(C: np.ndarray, alpha: float, num_heads: int, num_kv_heads: int,
                     head_dim: int) -> np.ndarray:
    """s (H d,) of the o site (TQ-2.17): one vector per KV head, shared by the G = H / K query
    heads that read it. r_(k, c)^2 = the mean over the query heads j of group k of the calibration
    second moment of channel (j, c); s_(k, c) = (r_(k, c) / geomean(r))^alpha; query head j gets
    s_(j // G)."""
    if num_heads % num_kv_heads or C.shape[0] != num_heads * head_dim:
        raise ValueError(f"o site of width {C.shape[0]} does not match {num_heads} heads of {head_dim} "
                         f"channels in {num_kv_heads} KV groups")
    g = num_heads // num_kv_heads
    d = np.clip(np.diag(np.asarray(C, dtype=np.float64)), 0.0, None)                 # (H d,)
    r = np.sqrt(d.reshape(num_kv_heads, g, head_dim).mean(axis=1))                     # (K, d)
    s_kv = _rms_scales(r.ravel(), alpha).reshape(num_kv_heads, head_dim)               # (K, d)
    return np.repeat(s_kv, g, axis=0).ravel()                                          # (H d,)


def site_channel_scales(C: np.ndarray, alpha: float, site: str, config) -> np.ndarray:
    """The scale vector of one site (TQ-2.7, TQ-2.17): per channel for qkv, gate_up and down, per
    KV head for o (``config``: the model's ModelConfig)."""
    if site not in SCALE_SITES:
        raise ValueError(f"site {site!r} cannot be scaled; scalable sites: {SCALE_SITES}")
    if site == "o":
        return o_channel_scales(C, alpha, config.num_heads, config.num_kv_heads, config.head_dim)
    return channel_scales(C, alpha)


def _rms_scales(r: np.ndarray, alpha: float) -> np.ndarray:
    """(r / geomean(r over r > 0))^alpha, 1 where r = 0 or everywhere when alpha = 0."""
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    live = r > 0
    if alpha == 0 or not live.any():
        return np.ones_like(r)
    g = np.exp(np.mean(np.log(r[live])))
    s = np.ones_like(r)
    s[live] = (r[live] / g) ** alpha
    return s


def site_scales(moments, n_layers: int, alpha: float, sites=tuple(NORM_OF_SITE),
                config=None) -> dict[tuple[int, str], np.ndarray]:
    """{(layer, site): s} for every site of ``sites`` (default the RMSNorm-fed ones; o needs the
    model ``config``); ``moments(layer, site)`` gives C."""
    return {(layer, site): site_channel_scales(moments(layer, site), alpha, site, config)
            for layer in range(n_layers) for site in sites}


def scaled_layer(lw, scales: dict[str, np.ndarray], config=None):
    """One layer's weights with the scales {site: s} folded in (TQ-2.7, TQ-2.17): the consuming W
    columns * s, and 1 / s into what produces the input: the norm multiplier (qkv, gate_up),
    v_proj's output rows and bias per KV head (o; needs ``config``), up_proj's output rows (down).
    Every changed array is computed once in float64 from the original; the arrays of the other
    sites are shared with ``lw``."""
    s64 = {}
    for site, s in scales.items():
        if site not in SCALE_SITES:
            raise ValueError(f"site {site!r} is not fed by an RMSNorm, attention or the MLP gate; "
                             f"scalable sites: {SCALE_SITES}")
        n = lw.site_weight(site).shape[1]
        if np.shape(s) != (n,):
            raise ValueError(f"scales of site {site!r} have shape {np.shape(s)}, the site has ({n},)")
        s64[site] = np.asarray(s, dtype=np.float64)
    col = {site: s for site, s in s64.items()}                       # W[:, j] * s_j of each site
    row = {}                                                          # W[i, :] / t_i of a producer
    changes = {}
    for site in NORM_OF_SITE:
        if site in s64:
            norm = getattr(lw, NORM_OF_SITE[site])
            changes[NORM_OF_SITE[site]] = (norm / s64[site]).astype(norm.dtype)
    if "o" in s64:
        if config is None:
            raise ValueError("scaling the o site needs the model config (its KV heads)")
        q_dim, kv_dim = config.q_dim, config.kv_dim
        g = config.num_heads // config.num_kv_heads
        s_heads = s64["o"].reshape(config.num_heads, config.head_dim)                 # (H, d)
        s_kv = s_heads[::g]                                                            # (K, d)
        if not np.array_equal(np.repeat(s_kv, g, axis=0), s_heads):
            raise ValueError("o scales must be shared by the query heads of a KV group (TQ-2.17)")
        t = np.ones(lw.qkv.shape[0])
        t[q_dim + kv_dim:] = s_kv.ravel()                                 # v_proj rows (K d,)
        row["qkv"] = t
        if lw.qkv_bias is not None:
            changes["qkv_bias"] = (lw.qkv_bias / t).astype(lw.qkv_bias.dtype)
    if "down" in s64:
        f = lw.down.shape[1]
        t = np.ones(lw.gate_up.shape[0])
        t[f:] = s64["down"]                                               # up_proj rows (F,)
        row["gate_up"] = t
    for site in set(col) | set(row):
        w = lw.site_weight(site)
        v = np.asarray(w, dtype=np.float64)
        if site in col:
            v = v * col[site][None, :]
        if site in row:
            v = v / row[site][:, None]
        changes[site] = v.astype(w.dtype)
    return dataclasses.replace(lw, **changes)


def scaled_model(model, scales: dict[tuple[int, str], np.ndarray]):
    """A copy of ``model`` with the scales folded in (:func:`scaled_layer` per layer).

    The copy shares the unchanged arrays with ``model`` (``Model.with_layers``)."""
    layers = list(model.layers)
    by_layer: dict[int, dict[str, np.ndarray]] = {}
    for (layer, site), s in scales.items():
        by_layer.setdefault(layer, {})[site] = s
    for layer, site_scales_ in by_layer.items():
        layers[layer] = scaled_layer(layers[layer], site_scales_, model.config)
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
