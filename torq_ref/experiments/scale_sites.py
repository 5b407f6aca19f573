"""The scale step at the o and down inputs, measured on calibration rows (spec/TQ.md TQ-2.21).

``python -m torq_ref experiment scale-sites``: whether ``--scale-sites`` (TQ-2.17) should include
o and down by default is a measurement. For every layer and each of the two sites, the
calibration loss of TQ-2.11 (:func:`torq_ref.experiments.variants.smoothed_output_error`: the
relative layer-output error that the smoothed, 32-block-Hadamard-rotated, MXFP4-quantized input
causes through the folded weight W s) for each alpha of the grid, with s from
:func:`torq_ref.torq.scale_step.site_channel_scales` (o: one vector per KV head). s comes from the
second moment of all calibration tokens, as the run builds it; the loss is reported on the rows
the micro step fits (the rows TQ-2.11 chooses on) and on the held-out calibration rows after them.
"""
from __future__ import annotations

import numpy as np

#: the alphas measured (TQ-2.21); 0 is no scale step
ALPHAS = (0.0, 0.25, 0.5)
SITES = ("o", "down")


def site_alpha_errors(X: np.ndarray, C: np.ndarray, W: np.ndarray, site: str, config,
                      alphas=ALPHAS, **quant) -> dict[float, float]:
    """{alpha: smoothed_output_error(X, s_alpha, W)} of one site (TQ-2.21), s_alpha =
    ``site_channel_scales(C, alpha, site, config)``; ``X`` (T, n) rows, ``W`` (out, n) the weight
    the site feeds, ``quant`` the quantizer's block_size / fmt / scale_rule."""
    from torq_ref.torq.scale_step import site_channel_scales

    from .variants import smoothed_output_error

    alphas = tuple(float(a) for a in alphas)
    if not alphas:
        raise ValueError("no alpha to measure")
    return {a: smoothed_output_error(X, site_channel_scales(C, a, site, config), W, **quant) for a in alphas}


def run_scale_sites(*, model: str = "smollm2-135m", calib_windows: int = 4, micro_rows: int = 1024,
                    alphas=ALPHAS, layers=None, progress: bool | None = None) -> str:
    """The measurement of TQ-2.21 on ``model``; the markdown report."""
    import sys

    from .capture import run_calibration

    if progress is None:
        progress = sys.stderr.isatty()
    mdl, cap, note = run_calibration(model, calib_windows, micro_rows, progress)
    layers = list(range(mdl.config.num_layers)) if layers is None else list(layers)
    table = {}
    for i in layers:
        for site in SITES:
            X = cap.inputs(i, site).astype(np.float64)
            if len(X) <= micro_rows:
                raise ValueError(f"{len(X)} calibration rows at layer {i} {site}, none held out after "
                                 f"micro_rows={micro_rows}")
            C = cap.moment(i, site)
            W = mdl.site_weight(i, site).astype(np.float64)                     # (out, n)
            table[(i, site)] = {part: site_alpha_errors(rows, C, W, site, mdl.config, alphas)
                                for part, rows in (("fit", X[:micro_rows]), ("held", X[micro_rows:]))}
    from .limit import _version

    note += (f". Made by `python -m torq_ref experiment scale-sites --model {model} --calib-windows "
             f"{calib_windows} --micro-rows {micro_rows} --alphas {' '.join(f'{a:g}' for a in alphas)} "
             f"--layers {' '.join(map(str, layers))}` (torq-ref {_version()})")
    return render_scale_sites(model, note, micro_rows, layers, tuple(float(a) for a in alphas), table)


def render_scale_sites(model, note, micro_rows, layers, alphas, table) -> str:
    """The markdown report of TQ-2.21: means over layers, the per-layer figures, the best alpha."""
    lines = [f"# The scale step at the o and down inputs ({model})", "", f"Source: {note}.", "",
             "Relative layer-output error of TQ-2.11 (`variants.smoothed_output_error`: input / s, "
             "32-block Hadamard, MXFP4 E2M1 FLOOR, through the folded weight W s), s = "
             "`site_channel_scales(C, alpha)` (o: per KV head, TQ-2.17). 'fit': rows "
             f"0..{micro_rows - 1} (the rows the micro step fits and TQ-2.11 chooses on); 'held': rows "
             f"{micro_rows}..{2 * micro_rows - 1}.", "",
             "| site | rows | " + " | ".join(f"alpha {a:g}" for a in alphas) + " | layers where alpha > 0 wins |",
             "|---|---|" + "---|" * len(alphas) + "---|"]
    for site in SITES:
        for part in ("fit", "held"):
            means = [float(np.mean([table[(i, site)][part][a] for i in layers])) for a in alphas]
            wins = sum(min(alphas, key=lambda a: (table[(i, site)][part][a], a)) > 0 for i in layers)
            lines.append(f"| {site} | {part} | " + " | ".join(f"{m:.5f}" for m in means)
                         + f" | {wins} / {len(layers)} |")
    lines += ["", "Per layer (fit rows / held-out rows):", "",
              "| layer | site | " + " | ".join(f"alpha {a:g}" for a in alphas) + " |",
              "|---|---|" + "---|" * len(alphas)]
    for i in layers:
        for site in SITES:
            t = table[(i, site)]
            lines.append(f"| {i} | {site} | " + " | ".join(f"{t['fit'][a]:.5f} / {t['held'][a]:.5f}"
                                                            for a in alphas) + " |")
    return "\n".join(lines) + "\n"
