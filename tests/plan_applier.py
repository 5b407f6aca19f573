"""A minimal applier of an exported TORQ plan, written from spec/TQ.md TQ-8.2 alone.

It reads plan.json and the layer safetensors files directly and does the four steps of TQ-8.2
with NumPy. From torq_ref it uses only the MX codec (``torq_ref.mx.quantize_dequantize``, the
oracle codec) and the NumPy decoder's forward by parts (``embed_tokens``, ``block`` with a
per-site object that has ``weight`` and ``input(x)``, ``head``), never torq_ref's transform, hook,
scale-step or plan code: if the spec leaves something out, this file cannot reproduce the engine.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from torq_ref.mx import quantize_dequantize

NORM_FIELD = {"qkv": "attn_norm", "gate_up": "mlp_norm"}       # the decoder's names of the two norms


def read(plan_dir):
    d = Path(plan_dir)
    manifest = json.loads((d / "plan.json").read_text())
    layers = [load_file(str(d / f["name"])) for f in manifest["files"]]
    return manifest, layers


def _blocks(a: np.ndarray, R: np.ndarray, b: int) -> np.ndarray:
    """Block k of the last axis of a (rows, n) times R (b, b) or R[k] ((n / b, b, b))."""
    rows, n = a.shape
    ab = a.reshape(rows, n // b, b)
    if R.ndim == 2:
        return (ab @ R).reshape(rows, n)
    return np.einsum("rkb,kbc->rkc", ab, R).reshape(rows, n)


def _mx(a: np.ndarray, mx: dict) -> np.ndarray:
    return quantize_dequantize(a, mx["element"], block_size=mx["block_size"], axis=-1,
                               scale_rule=mx["scale_rule"])


class _Site:
    """What the decoder's ``block`` calls at one site: the weight and the input map (step 4)."""

    def __init__(self, weight, M, R, act_quant, mx):
        self.weight, self.mx, self.act = weight, mx, act_quant
        self.M = None if M is None else M.astype(np.float32)
        self.R = None if R is None else R.astype(np.float32)

    def input(self, x):
        if self.M is not None:
            x = x @ self.M
        if self.R is not None:
            x = _blocks(x, self.R, self.mx["block_size"])
        if self.act:
            x = np.asarray(_mx(x, self.mx), dtype=np.float32)
        return x


def apply_row(model, manifest, layers, method, setting):
    """(model with the scale step folded into its norms, [{site: _Site}] per layer) of one row."""
    row = next(r for r in manifest["rows"] if (r["method"], r["setting"]) == (method, setting))
    mx, b = manifest["mx"], manifest["mx"]["block_size"]
    new_layers, sites = list(model.layers), [dict() for _ in model.layers]
    for e in row["sites"]:
        i, site = e["layer"], e["site"]
        t = layers[i]
        lw = new_layers[i]
        W = getattr(lw, site).astype(np.float32)
        if e["scale"] is not None:                                         # step 1
            s = t[e["scale"]]
            g = getattr(lw, NORM_FIELD[site])
            lw = dataclasses.replace(lw, **{NORM_FIELD[site]: (g.astype(np.float64) / s).astype(np.float32)})
            new_layers[i] = lw
            W = (W.astype(np.float64) * s[None, :]).astype(np.float32)
        M = None if e["matrix"] is None else t[e["matrix"]]
        R = None if e["block"] is None else t[e["block"]]
        V = W.astype(np.float64)                                           # step 2
        if M is not None:
            V = V @ M
        if R is not None:
            V = _blocks(V, R, b)
        if e["weight_quant"] == "rtn":                                     # step 3
            V = _mx(V, mx)
        if M is None and R is None and not e["act_quant"] and e["weight_quant"] is None:
            continue                                                        # the site stays exact
        sites[i][site] = _Site(V.astype(np.float32), M, R, e["act_quant"], mx)
    return model.with_layers(new_layers), sites


def logits(model, sites, ids):
    x = model.embed_tokens(ids)
    rope = model.rope_tables(ids.shape[1])
    for i in range(model.config.num_layers):
        x = model.block(i, x, rope, prepared=sites[i])
    return model.head(x)


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def window_scores(model, manifest, layers, method, setting, windows):
    """Per window: (mean KLD from the unmodified model, top-1 agreement), positions 0..S-2."""
    qm, sites = apply_row(model, manifest, layers, method, setting)
    ref = _log_softmax(logits(model, [dict() for _ in model.layers], windows)[:, :-1])
    got = _log_softmax(logits(qm, sites, windows)[:, :-1])
    kld = (np.exp(ref) * (ref - got)).sum(-1).mean(-1)
    top1 = (ref.argmax(-1) == got.argmax(-1)).mean(-1)
    return kld, top1
