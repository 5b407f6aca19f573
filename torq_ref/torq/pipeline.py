"""The end-to-end TORQ pipeline (spec/TQ.md section 3):

calibration windows -> second moments and input samples of every linear-layer input (site)
-> per method: macro (Schur-Horn based) and / or micro (max-entropy) rotations per site
-> folded transforms + MXFP4 fake quantization (activations; weights too for W4A4)
-> perplexity on the evaluation windows, plus block-energy imbalance and code entropy per site.
"""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from torq_ref.model.hooks import SITES

from .methods import METHODS, SCALED_METHODS, SETTINGS, SettingsError, TorqConfig, site_transform


@dataclass
class RunSpec:
    methods: tuple[str, ...] = METHODS
    settings: tuple[str, ...] = SETTINGS
    eval_windows: int = 8
    calib_windows: int = 4
    window: int = 512
    model_dir: str | None = None
    progress: bool = True


def _bar(iterable, desc: str, progress: bool, total=None):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not sys.stderr.isatty(), leave=False)


def _log(msg: str) -> None:
    print(f"[torq] {msg}", file=sys.stderr, flush=True)


def check_windows(n_tokens: int, spec: RunSpec) -> None:
    """TQ-4.2: window counts must fit in the text, checked before any long work."""
    if spec.eval_windows < 1 or spec.calib_windows < 1:
        raise SettingsError("--eval-windows and --calib-windows must be at least 1")
    available = n_tokens // spec.window
    if spec.eval_windows + spec.calib_windows > available:
        raise SettingsError(
            f"{spec.eval_windows} evaluation + {spec.calib_windows} calibration windows of {spec.window} "
            f"tokens need {(spec.eval_windows + spec.calib_windows) * spec.window} tokens; the text has "
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
        if dense.matrix is None:
            # rotations inside the 32-blocks keep every block trace: the energies are C's
            diag = np.diag(C)
        else:
            D = dense.apply(np.eye(n))                 # (n, n): x -> x @ D
            diag = np.einsum("ik,ik->k", D, C @ D)     # diag(D^T C D), one matmul
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


def build_method(method: str, cap, n_layers: int, cfg: TorqConfig, progress: bool,
                 cache: dict | None = None):
    """Per-site transforms and metrics of one method (TQ-2, TQ-3.3)."""
    transforms, metrics = {}, {}
    keys = [(layer, site) for layer in range(n_layers) for site in SITES]
    for layer, site in _bar(keys, method, progress):
        C = cap.moment(layer, site)
        X = cap.inputs(layer, site)
        t, info = site_transform(method, layer, site, C, X, cfg, cache)
        if t is not None:
            transforms[(layer, site)] = t
        held = X[cfg.micro_rows:] if len(X) > cfg.micro_rows else X   # rows the micro step never saw
        m = site_metrics(C, held, t, cfg)
        m.update(info)
        metrics[(layer, site)] = m
    return transforms, metrics


def plan_for(method: str, setting: str, transforms: dict, cfg: TorqConfig):
    """The QuantPlan of (method, setting) (TQ-2.1, TQ-2.6)."""
    from torq_ref.model import QuantPlan

    if method == "fp32":
        return None
    weight_fmt = cfg.fmt if setting == "W4A4" else None
    return QuantPlan.uniform(cfg.fmt, cfg.scale_rule, weight_fmt=weight_fmt,
                             weight_scale_rule=cfg.scale_rule, transforms=transforms,
                             mode="folded", block_size=cfg.block_size)


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


def run(spec: RunSpec, cfg: TorqConfig) -> dict:
    """Run the whole table; returns the results dict that ``results.json`` holds (TQ-4.3)."""
    from tokenizers import Tokenizer

    from torq_ref import model as M

    t_start = time.perf_counter()
    model_dir = M.ensure_model(spec.model_dir, progress=spec.progress)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = M.tokenize_text(tok)
    check_windows(len(ids), spec)
    eval_w = M.eval_windows(ids, spec.eval_windows, spec.window)
    calib_w = M.calibration_windows(ids, spec.calib_windows, start=spec.eval_windows, window=spec.window)
    model = M.load(model_dir)
    _log(f"model {model_dir}, {model.config.num_layers} layers; {spec.eval_windows} eval + "
         f"{spec.calib_windows} calibration windows of {spec.window} tokens")
    out = evaluate_methods(model, eval_w, calib_w, spec, cfg)
    out["settings"].update({"model_dir": str(model_dir), "n_tokens": int(len(ids)),
                            "text": "pydoc_data.topics (sorted keys, joined by blank lines)"})
    out["timings"]["total_s"] = time.perf_counter() - t_start
    return out


def evaluate_methods(model, eval_w: np.ndarray, calib_w: np.ndarray, spec: RunSpec, cfg: TorqConfig) -> dict:
    """Calibrate once, then build and evaluate every (method, setting) on ``model`` (TQ-3)."""
    from torq_ref import model as M

    n_layers = model.config.num_layers
    t0 = time.perf_counter()
    # keep twice the micro rows so that the metrics are measured on rows the optimizer never saw
    cap = calibrate(model, calib_w, 2 * cfg.micro_rows, spec.progress)
    timings = {"calibration_s": time.perf_counter() - t0}

    results, per_site, cache = [], {}, {}
    scaled = None
    for method in spec.methods:
        t0 = time.perf_counter()
        data, eval_model = cap, model
        if method in SCALED_METHODS and cfg.scale_alpha > 0:      # the micro level's scale step
            if scaled is None:
                from .scale_step import ScaledCalibration, scaled_model, site_scales

                scales = site_scales(cap.moment, n_layers, cfg.scale_alpha)
                scaled = (ScaledCalibration(cap, scales), scaled_model(model, scales))
            data, eval_model = scaled
        transforms, metrics = build_method(method, data, n_layers, cfg, spec.progress, cache)
        timings[f"build_{method}_s"] = time.perf_counter() - t0
        per_site[method] = {f"{layer}:{site}": m for (layer, site), m in metrics.items()}
        summary = {
            "imbalance": float(np.mean([m["imbalance"] for m in metrics.values()])),
            "entropy": float(np.mean([m["entropy"] for m in metrics.values()])),
        }
        settings = spec.settings if method != "fp32" else ("FP32",)
        for setting in settings:
            t0 = time.perf_counter()
            plan = plan_for(method, setting, transforms, cfg)
            ppl, nll = M.perplexity(eval_model, eval_w, quant=plan, progress=spec.progress, return_nll=True)
            dt = time.perf_counter() - t0
            timings[f"eval_{method}_{setting}_s"] = dt
            row = {"method": method, "setting": setting, "ppl": float(ppl),
                   "window_nll": [float(v) for v in nll], **summary, "eval_s": dt}
            results.append(row)
            _log(f"{method:<18} {setting:<6} ppl {ppl:8.3f}  imbalance {summary['imbalance']:7.2f}  "
                 f"entropy {summary['entropy']:.3f} bits  ({dt:.0f} s)")
    return {
        "results": results,
        "per_site": per_site,
        "settings": {**asdict(spec), **asdict(cfg)},
        "seed": cfg.seed,
        "versions": versions(),
        "timings": timings,
    }
