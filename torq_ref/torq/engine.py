"""The layer-streaming evaluation engine of ``run`` (spec/TQ.md section 6).

Memory is bounded by one decoder layer, not by the model: the table is computed layer-major.

    embed calibration windows -> x_cal (Nc, W, D); embed evaluation windows -> one copy per row
    for each decoder layer i:
        run FP32 layer i on x_cal, capturing the inputs of its four sites  (TQ-6.1)
        per method: the transforms (and site metrics) of layer i's sites     (TQ-6.2)
        release the capture
        per row (method, setting): prepare layer i's quantized sites, run layer i on the row's
            hidden states x_r (Ne, W, D)                                      (TQ-6.3)
    per evaluation window: FP32 log-probabilities once, then every row's NLL, KLD, top-1  (TQ-6.4)

A "row" is one line of the results table: ``fp32`` (setting FP32) or (method, W16A4 | W4A4).
What the engine holds at any time: the model's weights, the hidden states of every row
(rows x Ne x W x D float values), and one layer's calibration statistics and prepared weights.
The numbers equal those of a whole-model pass per row (tested on a tiny model, TQ-6.5).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from torq_ref.model.capture import ActivationCapture
from torq_ref.model.hooks import SITES, SiteQuant, prepare_site
from torq_ref.model.model import WINDOW_BATCH  # windows per batched layer call

from .methods import (SCALED_METHODS, SettingsError, TorqConfig, held_out_rows, site_transform,
                      weight_quant_of)
from .site_metrics import site_metrics as measure_site

#: positions per chunk at the output head (bounds the (positions, vocabulary) temporaries)
HEAD_CHUNK = 128


@dataclass(frozen=True)
class Dispatch:
    """How the engine builds a layer's transforms: ``site_transform(method, layer, site, C, X, cfg,
    cache, weight=)`` (the method dispatch, TQ-2; None: :func:`methods.site_transform`) and
    ``layer_scales(model, i, site, cap, cfg)`` (the scale step, TQ-2.7; None: :func:`layer_scales`). The core run uses :data:`CORE`; the
    experiments wrap it to run their variants (TQ-2.16), with ``scale_step`` True to scale the
    scaled methods whatever ``cfg.scale_alpha`` says and ``settings`` recorded in results.json."""

    site_transform: Callable | None = None
    layer_scales: Callable | None = None
    scale_step: bool = False
    settings: dict = field(default_factory=dict)


#: the core dispatch of ``run``
CORE = Dispatch()


def _progress(iterable, desc: str, progress: bool, total=None):
    import sys

    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False,
                disable=not (progress and sys.stderr.isatty()))


def check_rows(n_calib_rows: int, cfg: TorqConfig) -> None:
    """TQ-6.2: the site metrics are measured on calibration rows the micro optimizer never saw,
    rows ``micro_rows .. 2 * micro_rows``; a run whose calibration has no such rows is refused
    before any model work (no silent fallback to the fitted rows)."""
    if n_calib_rows <= cfg.micro_rows:
        raise SettingsError(
            f"the calibration windows hold {n_calib_rows} rows per site, not more than micro_rows="
            f"{cfg.micro_rows}: the site metrics need held-out rows; add --calib-windows or lower "
            f"--micro-rows")


def _run_layer(model, i: int, x: np.ndarray, rope, prepared, capture=None) -> np.ndarray:
    """Layer i on hidden states x (N, W, D), WINDOW_BATCH windows per call; returns (N, W, D)."""
    out = np.empty_like(x)
    for a in range(0, x.shape[0], WINDOW_BATCH):
        out[a:a + WINDOW_BATCH] = model.block(i, x[a:a + WINDOW_BATCH], rope, capture=capture,
                                              prepared=prepared)
    return out


def plan_site(method: str, setting: str, transform, cfg: TorqConfig, site: str | None = None) -> SiteQuant | None:
    """The SiteQuant of one site of a row (TQ-2.1, TQ-2.6): activations in ``cfg.fmt`` with
    ``cfg.scale_rule``; weights too, with the same format and rule, for W4A4. None (the site runs
    in float) for fp32 and for a ``site`` kind outside ``cfg.quant_sites`` (TQ-2.15)."""
    if method == "fp32" or (site is not None and site not in cfg.quant_sites):
        return None
    weight_fmt = cfg.fmt if setting == "W4A4" else None
    weight_rule = cfg.weight_scale_rule or cfg.scale_rule                       # TQ-7.7
    return SiteQuant(transform, cfg.fmt, cfg.scale_rule, weight_fmt, weight_rule, cfg.block_size,
                     weight_quant=weight_quant_of(method, cfg), gptq_damp=cfg.gptq_damp,
                     gptq_act_order=cfg.gptq_act_order)


class Row:
    """One line of the table while the engine runs: its hidden states and its timings."""

    def __init__(self, method: str, setting: str, hidden: np.ndarray):
        self.method, self.setting, self.hidden = method, setting, hidden
        self.seconds = 0.0


def stream_evaluate(model, eval_w: np.ndarray, calib_w: np.ndarray, methods, settings,
                    cfg: TorqConfig, *, progress: bool = True, site_metrics=measure_site,
                    dispatch: Dispatch = CORE, on_layer=None, executor=None, ref_cache=None):
    """(rows, per_site, timings) of every (method, setting) on ``model`` (TQ-6).

    ``rows``: list of dicts with method, setting, ppl and the per-window lists window_nll,
    window_kld, window_top1, window_n, plus eval_s. ``per_site[method]["layer:site"]``: the site
    metrics and fit info. ``site_metrics(C, X_held, transform, cfg) -> dict`` measures a site
    (default :func:`torq_ref.torq.site_metrics.site_metrics`; None: no metrics). ``dispatch``: how
    the transforms are built (the core one, or an experiment's variants, TQ-2.16).
    ``on_layer(model, i, transforms, scales)``, when given, sees layer i's transforms
    {method: {site: Transform | None}} and scale vectors {(i, site): s} of the scaled methods
    as soon as they are built (the exported plan, TQ-8.1); it must not keep them.
    ``executor`` (torq_ref.torq.parallel; default inline) runs the work units of TQ-6.6: the
    same numbers for every executor. ``ref_cache`` (a torq_ref.evaluate.ref_cache.RefCache or
    None) keeps the FP32 final hidden states of the evaluation windows on disk (TQ-6.8)."""
    from .parallel import Inline

    ex = executor if executor is not None else Inline()
    eval_w, calib_w = np.asarray(eval_w), np.asarray(calib_w)
    check_rows(calib_w.size, cfg)
    width = eval_w.shape[1]
    if calib_w.shape[1] != width:
        raise SettingsError(f"calibration windows of {calib_w.shape[1]} tokens, evaluation windows of {width}")
    timings: dict[str, float] = {"calibration_s": 0.0}
    t_start = time.perf_counter()
    rope = model.rope_tables(width)
    x_cal = model.embed_tokens(calib_w)                                          # (Nc, W, D)
    x_eval = model.embed_tokens(eval_w)                                          # (Ne, W, D)
    rows = [Row(m, s, x_eval.copy()) for m in methods
            for s in (("FP32",) if m == "fp32" else tuple(settings))]
    del x_eval
    ref_hidden = None if ref_cache is None else ref_cache.load(model, eval_w)      # TQ-6.8
    # with the FP32 final hidden states at hand, the fp32 row is not run again: its layers are
    # the float layers the cache was made of (the same code, TQ-6.8)
    running = [r for r in rows if not (ref_hidden is not None and r.method == "fp32")]
    scaled = tuple(m for m in methods if m in SCALED_METHODS and (cfg.scale_alpha > 0 or dispatch.scale_step))
    per_site: dict[str, dict] = {m: {} for m in methods}
    for i in _progress(range(model.config.num_layers), "layers", progress):
        t0 = time.perf_counter()
        cap = ActivationCapture(layers=[i], moments=True, inputs=True, max_rows=2 * cfg.micro_rows)
        x_cal = _run_layer(model, i, x_cal, rope, {}, capture=cap)              # TQ-6.1
        timings["calibration_s"] += time.perf_counter() - t0
        transforms, weights, views = _layer_transforms(model, i, cap, methods, scaled, cfg, ex,
                                                       per_site, site_metrics, timings, dispatch)
        if on_layer is not None:                                                 # TQ-8.1
            on_layer(model, i, transforms, views[True].scales if True in views else {})
        # GPTQ rows need the second moment of their sites' inputs, as their model saw it (TQ-7.4),
        # GPFQ rows the input rows (TQ-7.6)
        moments = {flag: {site: {"moment": v.moment(i, site), "rows": v.inputs(i, site)} for site in SITES}
                   for flag, v in views.items()
                   if any(r.setting == "W4A4" and (r.method in scaled) == flag
                          and weight_quant_of(r.method, cfg) in ("gptq", "gpfq") for r in rows)}
        del cap, views                               # the layer's statistics end here (TQ-6.1)
        shared = (i, rope, transforms, weights, moments, scaled, cfg)              # TQ-6.3
        outs = ex.map(_row_unit, model, shared, [(r.method, r.setting, r.hidden) for r in running])
        for row, (hidden, seconds) in zip(running, outs):
            row.hidden = hidden
            row.seconds += seconds
        # layer i's transforms, weights and moments end here too: released before layer i + 1
        # builds its own, so that two layers' dense (n, n) matrices are never held at once
        del transforms, weights, moments, shared, outs
        _note_layer(i, model.config.num_layers, t_start, progress)
    if ref_hidden is not None:
        for r in rows:
            if r.method == "fp32":
                r.hidden = ref_hidden
    return _score_rows(model, rows, eval_w, progress, ex, ref_hidden, ref_cache), per_site, timings


def _row_unit(model, shared, item):
    """One row at one layer (TQ-6.3, a work unit of TQ-6.6): its four sites prepared with its
    transforms and setting, then its hidden states (Ne, W, D) through layer i; returns
    (hidden, seconds)."""
    i, rope, transforms, weights, moments, scaled, cfg = shared
    method, setting, hidden = item
    t0 = time.perf_counter()
    lw = weights[method in scaled]
    prepared = {}
    for site in SITES:
        q = plan_site(method, setting, transforms[method][site], cfg, site)
        if q is not None:
            kind = {"gptq": "moment", "gpfq": "rows"}.get(q.weight_quant) if q.weight_fmt else None
            kw = {kind: moments[method in scaled][site][kind]} if kind else {}
            prepared[site] = prepare_site(lw.site_weight(site), q, "folded", **kw)
    runner = _scaled_view(model, i, lw) if method in scaled else model
    out = _run_layer(runner, i, hidden, rope, prepared)
    return out, time.perf_counter() - t0


def _note_layer(i: int, n: int, t_start: float, progress: bool) -> None:
    """One stderr line per finished layer when stderr is not a terminal (logs of long runs);
    a terminal has the tqdm bar instead."""
    import sys

    if progress and not sys.stderr.isatty():
        print(f"[torq] layer {i + 1}/{n} done, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)


#: methods whose fits share one memo (``_raw_micro``: torq reuses torq-micro's fit): one work
#: unit per site for the group, so no unit depends on another's cache (TQ-6.6)
FIT_GROUPS = (("torq-micro", "torq"),)


def fit_units(methods, sites=SITES) -> list[tuple[str, tuple[str, ...]]]:
    """The fit work units of a layer (TQ-6.6): (site, methods) with every method alone except
    those of a FIT_GROUPS group, which share a unit; in canonical order (sites, then methods)."""
    groups, seen = [], set()
    for m in methods:
        if m in seen:
            continue
        group = next((tuple(x for x in g if x in methods) for g in FIT_GROUPS if m in g), (m,))
        seen.update(group)
        groups.append(group)
    return [(site, g) for site in sites for g in groups]


#: methods whose fit runs an optimizer over many trials (the max-entropy sweeps and the rotations
#: fitted after them): measured the costliest units of a layer (benchmarks/run.md, bench fits)
OPTIMIZED_METHODS = ("torq-micro", "torq", "torq-maxent", "torq-learned")


def unit_cost_rank(unit: tuple[str, tuple[str, ...]], width: int) -> tuple[int, int]:
    """Sort key of a fit unit (site, methods) for the parallel executor, longest first: units
    with an optimized fit before the rest, each class by decreasing site width (longest
    processing time first, so no long unit starts last and leaves the other workers idle)."""
    return (0 if any(m in OPTIMIZED_METHODS for m in unit[1]) else 1, -width)


def _fit_unit(model, shared, item):
    """The transforms of one site for a group of methods (TQ-6.2, a work unit of TQ-6.6), with a
    cache of its own: {method: (transform, metrics or None, seconds)}."""
    i, views, weights, scaled, cfg, site_metrics, alphas, dispatch = shared
    site, group = item
    cache: dict = {}
    out = {}
    for method in group:
        t0 = time.perf_counter()
        data = views[method in scaled]
        C, X = data.moment(i, site), data.inputs(i, site)
        t, info = (dispatch.site_transform or site_transform)(
            method, i, site, C, X, cfg, cache, weight=weights[method in scaled].site_weight(site))
        m = None
        if site_metrics is not None:
            m = site_metrics(C, held_out_rows(X, cfg), t, cfg)
            m.update(info)
            if method in scaled and site in alphas:
                m["scale_alpha"] = alphas[site]
        out[method] = (t, m, time.perf_counter() - t0)
    return out


def _layer_transforms(model, i: int, cap, methods, scaled, cfg: TorqConfig, executor,
                      per_site: dict, site_metrics, timings: dict, dispatch: Dispatch = CORE):
    """TQ-6.2: the transforms {method: {site: Transform | None}} of layer i from its capture,
    the site metrics (into ``per_site``), the layer's weights {False: plain, True: scaled} and the
    calibration views {False: cap, True: scaled view}. Scaled methods (the scale step, TQ-2.7)
    read the capture as the scaled model saw it. The (site, method group) units run on
    ``executor`` (TQ-6.6); their results are stored in the canonical order (method, site)."""
    from .parallel import Inline
    from .scale_step import ScaledCalibration, scaled_layer

    executor = executor if executor is not None else Inline()
    weights = {False: model.layers[i]}
    scaled_cal = None
    alphas: dict[str, dict] = {}
    if scaled:
        scales = {}
        for site in cfg.scale_sites:                                  # TQ-2.7, TQ-2.17
            scales[site], alphas[site] = (dispatch.layer_scales or layer_scales)(model, i, site, cap, cfg)
        weights[True] = scaled_layer(model.layers[i], scales, model.config)
        scaled_cal = ScaledCalibration(cap, {(i, site): s for site, s in scales.items()})
    views = {False: cap} if scaled_cal is None else {False: cap, True: scaled_cal}
    units = fit_units(methods)
    # in parallel, the longest units first (TQ-6.6; the order changes no number); inline, the
    # canonical order
    order = list(range(len(units)))
    if executor.jobs > 1:
        order.sort(key=lambda k: unit_cost_rank(units[k], model.site_width(units[k][0])))
    shared = (i, views, weights, scaled, cfg, site_metrics, alphas, dispatch)
    done = executor.map(_fit_unit, model, shared, [units[k] for k in order])
    by_site = {}
    for k, res in zip(order, done):
        by_site.setdefault(units[k][0], {}).update(res)
    transforms: dict[str, dict] = {}
    for method in methods:
        transforms[method] = {}
        for site in SITES:
            t, m, seconds = by_site[site][method]
            transforms[method][site] = t
            if m is not None:
                per_site[method][f"{i}:{site}"] = m
            key = f"build_{method}_s"
            timings[key] = timings.get(key, 0.0) + seconds
    return transforms, weights, views


def layer_scales(model, i: int, site: str, cap, cfg: TorqConfig):
    """(s, info) of the scale step at one site of layer i: the fixed alpha of TQ-2.7 (o: one
    vector per KV head, TQ-2.17)."""
    from .scale_step import site_channel_scales

    return (site_channel_scales(cap.moment(i, site), cfg.scale_alpha, site, model.config),
            {"alpha": float(cfg.scale_alpha)})


def _scaled_view(model, i: int, lw):
    """The model with layer i's weights replaced by ``lw`` (shares every other array)."""
    layers = list(model.layers)
    layers[i] = lw
    return model.with_layers(layers)


def _score_rows(model, rows: list[Row], eval_w: np.ndarray, progress: bool, executor=None,
                ref_hidden=None, ref_cache=None) -> list[dict]:
    """TQ-6.4: per evaluation window, the FP32 log-probabilities once (a ``fp32`` row when the
    table has one, the cached FP32 final hidden states ``ref_hidden`` (TQ-6.8), else the float
    model run here), then each row's NLL, KLD and top-1; one work unit per window (TQ-6.6)."""
    from torq_ref.evaluate.kld_summary import kld_percentiles

    from .parallel import Inline

    executor = executor if executor is not None else Inline()
    if ref_hidden is None:
        ref = next((r for r in rows if r.method == "fp32"), None)
        if ref is None:                               # no fp32 row: the float model, layer by layer
            ref_hidden = model.embed_tokens(eval_w)
            rope = model.rope_tables(eval_w.shape[1])
            for i in range(model.config.num_layers):
                ref_hidden = _run_layer(model, i, ref_hidden, rope, {})
        else:
            ref_hidden = ref.hidden
        if ref_cache is not None:
            ref_cache.store(model, eval_w, ref_hidden)
    items = [(eval_w[j], ref_hidden[j], [r.hidden[j] for r in rows]) for j in range(eval_w.shape[0])]
    per_window = executor.map(_score_unit, model, None, items)
    out = {id(r): {"window_nll": [], "window_kld": [], "window_top1": [], "window_n": []} for r in rows}
    kld_tokens = {id(r): [] for r in rows}                       # per-token KLDs (spec/EV.md EV-7.1)
    for metrics, seconds, kld_pos in per_window:
        for r, m, sec, kp in zip(rows, metrics, seconds, kld_pos):
            for k in ("nll", "kld", "top1", "n"):
                out[id(r)][f"window_{k}"].append(m[k])
            kld_tokens[id(r)].append(kp)
            r.seconds += sec
    results = []
    for r in rows:
        d = out[id(r)]
        nll = np.asarray(d["window_nll"])
        results.append({"method": r.method, "setting": r.setting, "ppl": float(np.exp(nll.mean())),
                        **{k: [float(v) for v in vals] for k, vals in d.items()}, "eval_s": r.seconds,
                        "kld_percentiles": kld_percentiles(np.concatenate(kld_tokens[id(r)]))})
    return results


def _score_unit(model, shared, item):
    """One evaluation window's scores for every row (TQ-6.4, a work unit of TQ-6.6): the FP32
    log-probabilities of each HEAD_CHUNK positions once, then each row's logits of the same
    positions; returns ([window metrics per row], [seconds per row], [per-token KLDs per row])."""
    from torq_ref.evaluate.token_metrics import RefTerms, ref_logprobs, window_metrics

    ids, ref_h, hiddens = item
    S = ids.shape[0]
    targets = ids[1:]                                                             # (S-1,)
    parts = [[] for _ in hiddens]
    seconds = [0.0] * len(hiddens)
    for a in range(0, S - 1, HEAD_CHUNK):
        b = min(a + HEAD_CHUNK, S - 1)
        ref = RefTerms(ref_logprobs(model.head(ref_h[None, a:b])[0]), b - a)      # (b-a, V) float64
        for k, h in enumerate(hiddens):
            t0 = time.perf_counter()
            logits = model.head(h[None, a:b])[0]                                  # (b-a, V)
            parts[k].append(window_metrics(None, logits, targets[a:b], ref_terms=ref,
                                           per_position=True))
            seconds[k] += time.perf_counter() - t0
    kld_pos = [np.concatenate([c.pop("kld_pos") for c in p]) for p in parts]   # (S-1,) per row
    return [_combine(p) for p in parts], seconds, kld_pos


def _combine(parts: list[dict]) -> dict:
    """Window means from chunk means, weighted by the chunks' position counts."""
    n = np.array([p["n"] for p in parts], dtype=np.float64)
    return {"n": int(n.sum()), **{k: float(np.dot(n, [p[k] for p in parts]) / n.sum())
                                 for k in ("nll", "kld", "top1")}}
