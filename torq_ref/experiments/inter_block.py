"""The inter-block (macro) strategy comparison on real or synthetic layer inputs (spec/SH.md SH-5.4).

``python -m torq_ref experiment inter-block``: the report of results/inter_block.md.
"""
from __future__ import annotations

import numpy as np

from torq_ref.rotations.inter_block import (STRATEGIES, SYNTHETIC_WIDTHS, choose_strategy,
                                            compare_strategies, synthetic_split)

from .capture import capture_inputs


def run_comparison(*, source: str = "auto", model_dir=None, layers=(0, 10, 20, 29),
                   sites=("qkv", "o", "gate_up", "down"), calib_windows: int = 4,
                   heldout_windows: int = 2, block_size: int = 32, seed: int = 0,
                   strategies=STRATEGIES, progress: bool | None = None) -> str:
    """Run ``compare_strategies`` per (layer, site) and return the markdown report (SH-5.4)."""
    import sys

    if progress is None:
        progress = sys.stderr.isatty()
    data, note = None, ""
    if source in ("auto", "model"):
        try:
            data, note = capture_inputs(model_dir, list(layers), list(sites), calib_windows,
                                        heldout_windows, progress)
        except Exception as err:  # the model is optional in "auto"
            if source == "model":
                raise
            note = f"model unavailable ({type(err).__name__}: {err}); "
    if data is None:
        rows_c, rows_h = 512 * calib_windows, 512 * heldout_windows
        data = {(layer, site): synthetic_split(SYNTHETIC_WIDTHS.get(site, 576), rows_c, rows_h,
                                               seed=1000 * layer + 17 * k + seed)
                for layer in layers for k, site in enumerate(sites)}
        note += (f"SYNTHETIC heavy-tailed activations (Student-t df=3, log-normal channel scales, "
                 f"6 outlier channels x20, mixed by I + 0.3 G/sqrt(n)); {rows_c} calibration and "
                 f"{rows_h} held-out rows per site; widths {SYNTHETIC_WIDTHS}")
    from tqdm import tqdm

    results = {}
    for key in tqdm(sorted(data), desc="compare", disable=not progress):
        calib, held = data[key]
        # held-out rows: the first half validates the per-site choice, the second half is the test
        half = held.shape[0] // 2
        results[key] = compare_strategies(calib, held[half:], strategies, block_size=block_size,
                                          seed=seed, validation=held[:half])
    note += (f"; held-out rows split in two halves: the first ({half} rows) only validates the "
             f"per-site choice, every NMSE shown is on the second ({held.shape[0] - half} rows)")
    return render_markdown(results, strategies, note, block_size)


def render_markdown(results: dict, strategies, note: str, block_size: int) -> str:
    """Markdown tables: held-out NMSE per (layer, site) and a per-strategy summary."""
    strategies = list(strategies)
    lines = [f"Source: {note}.", "",
             f"MXFP4 = E2M1 elements, E8M0 FLOOR scales, blocks of {block_size} along the channel "
             "axis (torq_ref.mx). Each transform M is built from the calibration second moment "
             "only and measured on held-out rows: NMSE = ||Q(XM) - XM||^2 / ||XM||^2.", "",
             "### Held-out (test rows) MXFP4 NMSE per site (best in bold)", "",
             "| layer | site | n | " + " | ".join(strategies) + " | chosen |",
             "|---|---|---|" + "---|" * len(strategies) + "---|"]
    logs = {s: [] for s in strategies}
    wins = {s: 0 for s in strategies}
    extra = {s: {"imb": [], "spread": [], "calib": [], "build": []} for s in strategies}
    valid_logs = []
    for (layer, site), rows in sorted(results.items()):
        by = {r["strategy"]: r for r in rows}
        best = choose_strategy(rows)
        wins[best] += 1
        base = by["identity"]["nmse_heldout"] if "identity" in by else None
        if base and all("nmse_validation" in r for r in rows):
            pick = choose_strategy(rows, key="nmse_validation")
            valid_logs.append(np.log(by[pick]["nmse_heldout"] / base))
        cells = []
        for s in strategies:
            v = by[s]["nmse_heldout"]
            cells.append(f"**{v:.5f}**" if s == best else f"{v:.5f}")
            if base:
                logs[s].append(np.log(v / base))
            extra[s]["imb"].append(by[s]["imbalance_heldout"])
            extra[s]["spread"].append(by[s]["exp_spread_heldout"])
            extra[s]["calib"].append(by[s]["nmse_calib"])
            extra[s]["build"].append(by[s]["build_s"])
        n = rows[0]["n"]
        lines.append(f"| {layer} | {site} | {n} | " + " | ".join(cells) + f" | {best} |")
    lines += ["", "### Summary over sites", "",
              "| strategy | held-out NMSE / identity (geo. mean) | sites won | block-energy "
              "imbalance (mean) | scale-exponent spread per token (mean) | build time (s, mean) |",
              "|---|---|---|---|---|---|"]
    ranked = sorted(strategies, key=lambda s: np.mean(logs[s]) if logs[s] else 0.0)
    for s in ranked:
        g = float(np.exp(np.mean(logs[s]))) if logs[s] else float("nan")
        lines.append(f"| {s} | {g:.3f} | {wins[s]} | {np.mean(extra[s]['imb']):.3f} | "
                     f"{np.mean(extra[s]['spread']):.2f} | {np.mean(extra[s]['build']):.3f} |")
    if all(logs[s] for s in strategies):
        per_site = np.minimum.reduce([np.array(logs[s]) for s in strategies])
        lines.append(f"| oracle: best strategy of each site on the test rows themselves | "
                     f"{float(np.exp(np.mean(per_site))):.3f} | - | - | - | - |")
    if valid_logs:
        lines.append(f"| per-site choice made on the validation rows, scored on the test rows | "
                     f"{float(np.exp(np.mean(valid_logs))):.3f} | - | - | - | - |")
    lines += ["", f"Chosen by held-out error (geometric mean over sites): **{ranked[0]}**.", ""]
    return "\n".join(lines)
