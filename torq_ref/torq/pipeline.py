"""The end-to-end TORQ pipeline (spec/TQ.md sections 3 and 6):

calibration windows -> second moments and input samples of every linear-layer input (site)
-> per method: macro (Schur-Horn based) and / or micro (max-entropy) rotations per site
-> folded transforms + MXFP4 fake quantization (activations; weights too for W4A4)
-> perplexity, KL divergence and top-1 agreement with FP32 on the evaluation windows, plus
   block-energy imbalance and code entropy per site.

The work is streamed one decoder layer at a time by :mod:`torq_ref.torq.engine` (the site metrics
are its :mod:`torq_ref.torq.site_metrics`); this module holds the run settings and the results dict.
The whole-model test oracle the engine is held against is :mod:`torq_ref.torq.oracle`.
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


def run(spec: RunSpec, cfg: TorqConfig, dispatch=None, on_layer=None, *, executor=None,
        ref_cache=None) -> dict:
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
    out = evaluate_methods(model, eval_w, calib_w, spec, cfg, dispatch, on_layer=on_layer,
                           executor=executor, ref_cache=ref_cache)
    out["settings"].update({"model_dir": str(model_dir), "n_tokens": int(len(ids)), "bos_id": bos,
                            "text": "pydoc_data.topics (sorted keys, joined by blank lines)"})
    out["timings"]["total_s"] = time.perf_counter() - t_start
    return out


def evaluate_methods(model, eval_w: np.ndarray, calib_w: np.ndarray, spec: RunSpec, cfg: TorqConfig,
                     dispatch=None, on_layer=None, *, executor=None, ref_cache=None) -> dict:
    """Every (method, setting) of ``spec`` on ``model``, streamed layer by layer (TQ-3, TQ-6),
    the work units on ``executor`` (TQ-6.6), the FP32 reference from ``ref_cache`` (TQ-6.8);
    ``calib_w`` follows ``eval_w`` in the text and never overlaps it (TQ-1.1). Folded transforms
    leave the FP32 logits unchanged (TQ-3.2: they are orthogonal, checked when prepared).
    ``dispatch`` (an :class:`engine.Dispatch`, default the core one) is how an experiment runs its
    variants (TQ-2.16); its ``settings`` join the results' settings. ``on_layer``: see ``engine.stream_evaluate`` (the
    exported plan, TQ-8.1)."""
    from .engine import CORE, stream_evaluate

    dispatch = dispatch or CORE
    rows, per_site, timings = stream_evaluate(model, eval_w, calib_w, spec.methods, spec.settings,
                                              cfg, progress=spec.progress, dispatch=dispatch,
                                              on_layer=on_layer, executor=executor, ref_cache=ref_cache)
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
        "settings": {**asdict(spec), **asdict(cfg), **dispatch.settings},
        "seed": cfg.seed,
        "versions": versions(),
        "timings": timings,
    }
