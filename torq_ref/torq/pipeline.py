"""The end-to-end TORQ pipeline (spec/TQ.md sections 3 and 6):

calibration windows -> second moments and input samples of every linear-layer input (site)
-> per method: macro (Schur-Horn based) and / or micro (max-entropy) rotations per site
-> folded transforms + MXFP4 fake quantization (activations; weights too for W4A4)
-> perplexity, KL divergence and top-1 agreement with FP32 on the evaluation windows, plus
   block-energy imbalance and code entropy per site.

The work is streamed one decoder layer at a time by :mod:`torq_ref.torq.engine`; this module
holds the run settings, the site metrics and the results dict.
"""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from .methods import DEFAULT_METHODS, SETTINGS, SettingsError, TorqConfig


@dataclass
class RunSpec:
    methods: tuple[str, ...] = DEFAULT_METHODS
    settings: tuple[str, ...] = SETTINGS
    eval_windows: int = 8
    calib_windows: int = 4
    window: int = 512
    model: str | None = None             # registry name or path (None: the default model)
    dtype: str = "float32"               # compute dtype of the forward pass (TQ-4.6)
    progress: bool = True


def _log(msg: str) -> None:
    print(f"[torq] {msg}", file=sys.stderr, flush=True)


def check_windows(n_tokens: int | None, spec: RunSpec, bos_id: int | None = None) -> None:
    """TQ-4.2: window counts must be positive and fit in the text, checked before any long work. ``n_tokens`` None: the counts only."""
    if spec.eval_windows < 1 or spec.calib_windows < 1:
        raise SettingsError("--eval-windows and --calib-windows must be at least 1")
    if n_tokens is None:
        return
    text = spec.window - (bos_id is not None)            # text tokens per window
    available = n_tokens // text
    if spec.eval_windows + spec.calib_windows > available:
        raise SettingsError(
            f"{spec.eval_windows} evaluation + {spec.calib_windows} calibration windows of {spec.window} "
            f"tokens need {(spec.eval_windows + spec.calib_windows) * text} text tokens; the text has "
            f"{n_tokens} ({available} windows)")


def calibrate(model, calib: np.ndarray, max_rows: int, progress: bool):
    """Second moments (all tokens) and up to ``max_rows`` input rows of every site (TQ-3.1)."""
    from torq_ref.model import collect_moments

    return collect_moments(model, calib, inputs=True, max_rows=max_rows, progress=progress)


def site_metrics(C: np.ndarray, X: np.ndarray, transform, cfg: TorqConfig) -> dict:
    """Block-energy imbalance of the transformed second moment and code entropy of the
    transformed sample (TQ-3.3)."""
    from torq_ref.rotations.entropy import code_entropy
    from torq_ref.rotations.metrics import block_energy_imbalance

    n = C.shape[0]
    if transform is None:
        diag, Xt = np.diag(C), X
    else:
        dense = transform.materialize(n)
        Xt = dense.apply(X.astype(np.float64))
        # Rotations inside the 32-blocks keep every block trace, so the block energies are those
        # of x @ M alone: diag(M^T C M), one (n, n) matmul (no need to materialize M (I (x) R)).
        M = dense.matrix
        diag = np.diag(C) if M is None else np.einsum("ik,ik->k", M, C @ M)
    return {
        "imbalance": float(block_energy_imbalance(diag, cfg.block_size)),
        "entropy": float(code_entropy(Xt.astype(np.float32), block_size=cfg.block_size,
                                      scale_rule=cfg.scale_rule)),
        "codes": np.bincount(_codes(Xt, cfg), minlength=16).tolist(),
    }


def _codes(X: np.ndarray, cfg: TorqConfig) -> np.ndarray:
    from torq_ref import mx

    t = mx.quantize(np.ascontiguousarray(X, dtype=np.float32), cfg.fmt, block_size=cfg.block_size,
                    scale_rule=cfg.scale_rule)
    return t.codes.ravel()


def plan_for(method: str, setting: str, transforms: dict, cfg: TorqConfig, num_layers: int | None = None):
    """The whole-model QuantPlan of (method, setting) (TQ-2.1, TQ-2.6): the engine's
    per-site rule (``engine.plan_site``) at every site, for a plain ``Model.forward``.
    With ``cfg.quant_sites`` short of all four kinds (TQ-2.15) every site is listed explicitly,
    which needs ``num_layers``."""
    from torq_ref.model import QuantPlan
    from torq_ref.model.hooks import SITES

    from .engine import plan_site
    from .methods import SettingsError

    base = plan_site(method, setting, None, cfg)
    if base is None:
        return None
    if set(cfg.quant_sites) != set(SITES):
        if num_layers is None:
            raise SettingsError(f"plan_for with quant_sites {cfg.quant_sites} needs num_layers")
        sites = {(i, s): plan_site(method, setting, transforms.get((i, s)), cfg, s)
                 for i in range(num_layers) for s in SITES}
        return QuantPlan(default=None, sites=sites, mode="folded")
    sites = {key: plan_site(method, setting, t, cfg, key[1]) for key, t in transforms.items()}
    return QuantPlan(default=base, sites=sites, mode="folded")


def versions() -> dict:
    import numpy
    import scipy

    import torq_ref

    out = {"torq_ref": torq_ref.__version__, "python": platform.python_version(),
           "numpy": numpy.__version__, "scipy": scipy.__version__, "platform": platform.platform()}
    try:
        import numba

        out["numba"] = numba.__version__
    except ImportError:
        pass
    return out


def run(spec: RunSpec, cfg: TorqConfig, *, executor=None, ref_cache=None) -> dict:
    """Run the whole table on ``spec.model``; returns the results dict of ``results.json`` (TQ-4.3).

    The windows follow the model's BOS rule (spec/FW.md FW-6.5): BOS + ``window - 1`` text tokens
    when its GGUF says add_bos_token, ``window`` text tokens otherwise."""
    from torq_ref import model as M
    from torq_ref.model.data import bos_token_id
    from torq_ref.model.registry import ensure_model

    t_start = time.perf_counter()
    check_windows(None, spec)
    model_dir = ensure_model(spec.model, progress=spec.progress)
    ids = M.tokenize_text(model_dir)
    bos = bos_token_id(model_dir)
    check_windows(len(ids), spec, bos)
    eval_w, calib_w = M.split_windows(ids, spec.eval_windows, spec.calib_windows, spec.window, bos)
    model = M.load(model_dir, dtype=np.dtype(spec.dtype))
    _log(f"model {model_dir} ({spec.dtype}), {model.config.num_layers} layers; {spec.eval_windows} eval + "
         f"{spec.calib_windows} calibration windows of {spec.window} tokens"
         + ("" if bos is None else f" (BOS {bos} + {spec.window - 1} text tokens each)"))
    out = evaluate_methods(model, eval_w, calib_w, spec, cfg, executor=executor, ref_cache=ref_cache)
    out["settings"].update({"model_dir": str(model_dir), "n_tokens": int(len(ids)), "bos_id": bos,
                            "text": "pydoc_data.topics (sorted keys, joined by blank lines)"})
    out["timings"]["total_s"] = time.perf_counter() - t_start
    return out


def evaluate_methods(model, eval_w: np.ndarray, calib_w: np.ndarray, spec: RunSpec, cfg: TorqConfig, *,
                     executor=None, ref_cache=None) -> dict:
    """Every (method, setting) of ``spec`` on ``model``, streamed layer by layer (TQ-3, TQ-6),
    the work units on ``executor`` (TQ-6.6), the FP32 reference from ``ref_cache`` (TQ-6.8);
    ``calib_w`` follows ``eval_w`` in the text and never overlaps it (TQ-1.1). Folded transforms
    leave the FP32 logits unchanged (TQ-3.2: they are orthogonal, checked when prepared)."""
    from .engine import stream_evaluate

    rows, per_site, timings = stream_evaluate(model, eval_w, calib_w, spec.methods, spec.settings,
                                              cfg, progress=spec.progress, site_metrics=site_metrics,
                                              executor=executor, ref_cache=ref_cache)
    for row in rows:
        metrics = per_site[row["method"]].values()
        row["imbalance"] = float(np.mean([m["imbalance"] for m in metrics]))
        row["entropy"] = float(np.mean([m["entropy"] for m in metrics]))
        _log(f"{row['method']:<18} {row['setting']:<6} ppl {row['ppl']:8.3f}  "
             f"kld {np.mean(row['window_kld']):.4f}  top1 {np.mean(row['window_top1']):.3f}  "
             f"imbalance {row['imbalance']:7.2f}  entropy {row['entropy']:.3f} bits")
    from torq_ref.evaluate.summary import summarize

    return {
        "results": summarize(rows, baseline="hadamard32", seed=cfg.seed),
        "per_site": per_site,
        "settings": {**asdict(spec), **asdict(cfg)},
        "seed": cfg.seed,
        "versions": versions(),
        "timings": timings,
    }
