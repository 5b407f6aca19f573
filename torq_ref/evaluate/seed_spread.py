"""Seed spread: the same run repeated with other seeds, and which comparisons survive it
(spec/EV.md section 5).

A run's paired intervals (EV-2.3) are over evaluation windows with the transforms held fixed. The
fitted transforms themselves (the max-entropy sweeps, DuQuant's greedy rotations, Haar draws) are
random through the seed, and their spread is not in those intervals (RESULTS.md,
"Reproducibility"). This module reads results.json files of one model and one protocol that differ
only in ``--seed`` and reports, per row, the KLD of every seed, and per comparison (a method
against its peers) the paired interval of every seed: a difference counts only when it is
outside the interval on every seed, with the same sign.

Input: results.json files written by ``run`` (TQ-4.3). Output: two markdown tables.
"""
from __future__ import annotations

from pathlib import Path

from .cross_model import PEERS, ReportError, read_json
from .intervals import IntervalError, paired_ci, weighted_mean

#: methods of the TORQ table (spec/TQ.md TQ-4.8) whose transforms never depend on --seed: no Haar
#: draw, no seeded fit; a seed study may borrow their rows across seeds (EV-5.3)
SEED_FREE_METHODS = ("fp32", "rtn", "hadamard32", "smoothrot", "mr-gptq")

#: settings keys that may differ between the runs of one seed study (EV-5.1): the seed itself,
#: which rows were asked for, the progress switch and the machine's path to the model
FREE_SETTINGS = ("seed", "methods", "settings", "progress", "model_dir")
#: settings keys that runs made before the exploration knobs left the core (spec/TQ.md TQ-2.16)
#: still carry, with the value that is the core's behaviour now: a run without the key equals one
#: with that value (EV-5.1)
RETIRED_SETTINGS = {"order": "macro-micro", "full_macro_strategy": "block_hadamard", "per_block": False,
                    "alpha_grid": None}
#: settings keys added to the run record later, each with the value that runs made before it had
#: (the knob's default, which reproduces the earlier behaviour): a run without the key equals one
#: with that value (EV-5.1)
ADDED_SETTINGS = {"fit_guard": "off", "quant_sites": ["qkv", "o", "gate_up", "down"],
                  "scale_sites": ["qkv", "gate_up"]}
#: the value a run without the key is read as (EV-5.1)
IMPLIED_SETTINGS = {**RETIRED_SETTINGS, **ADDED_SETTINGS}


def load_seed_runs(paths) -> list[dict]:
    """[{"seed", "path", "settings", "rows"}] of results.json files that differ only in seed
    (EV-5.1), in the order given. Raises ReportError for a missing or bad file, fewer than two
    files, a repeated seed, or a setting (other than FREE_SETTINGS) that differs between files."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ReportError(f"a seed spread needs at least two results files, got {len(paths)}")
    runs = []
    for path in paths:
        if not path.is_file():
            raise ReportError(f"no results file {path}")
        data = read_json(path)
        rows = data.get("results") if isinstance(data, dict) else None
        settings = data.get("settings") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows or not isinstance(settings, dict):
            raise ReportError(f"{path}: not a run's results.json (needs 'results' rows and 'settings')")
        if any("window_kld" not in r for r in rows):
            raise ReportError(f"{path}: rows without window_kld (a run older than spec/EV.md)")
        runs.append({"seed": int(data.get("seed", settings.get("seed", 0))), "path": str(path),
                     "settings": settings, "rows": rows})
    seen = {}
    for run in runs:
        if run["seed"] in seen:
            raise ReportError(f"seed {run['seed']} appears twice: {seen[run['seed']]} and {run['path']}")
        seen[run["seed"]] = run["path"]
    ref = runs[0]
    for run in runs[1:]:
        keys = sorted((set(ref["settings"]) | set(run["settings"])) - set(FREE_SETTINGS))
        for key in keys:
            if ref["settings"].get(key, IMPLIED_SETTINGS.get(key)) != run["settings"].get(key, IMPLIED_SETTINGS.get(key)):
                raise ReportError(
                    f"{run['path']} and {ref['path']} differ in setting {key!r} "
                    f"({run['settings'].get(key)!r} vs {ref['settings'].get(key)!r}): "
                    f"a seed spread compares runs that differ only in seed")
    return runs


def _by_key(run: dict) -> dict:
    return {(r["method"], r["setting"]): r for r in run["rows"]}


def _mean_kld(row: dict) -> float:
    return weighted_mean(row["window_kld"], row.get("window_n"))


def seed_table(runs) -> str:
    """Markdown: a line per (method, setting) of any run, in first-seen order; the mean KLD of each
    seed ("-" where that run lacks the row), their mean and their range max - min over the seeds
    that have the row (EV-5.2)."""
    keys = []
    for run in runs:
        for r in run["rows"]:
            if (r["method"], r["setting"]) not in keys:
                keys.append((r["method"], r["setting"]))
    head = ["method", "setting"] + [f"seed {run['seed']} KLD" for run in runs] + ["mean", "range"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tables = [_by_key(run) for run in runs]
    for key in keys:
        vals = [None if key not in t else _mean_kld(t[key]) for t in tables]
        have = [v for v in vals if v is not None]
        cells = list(key) + ["-" if v is None else f"{v:.4f}" for v in vals]
        cells += [f"{sum(have) / len(have):.4f}", f"{max(have) - min(have):.4f}" if len(have) > 1 else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _peer_row(tables, k: int, key, seed_free):
    """The peer row to pair with run k: run k's own, else (for a method whose transforms do not
    depend on the seed, TQ-4.8) the one of the first run that has it; None otherwise."""
    if key in tables[k]:
        return tables[k][key], False
    if key[0] in seed_free:
        for t in tables:
            if key in t:
                return t[key], True
    return None, False


def seed_head_to_head(runs, method: str = "torq", peers=PEERS, *, level: float = 0.95,
                      seed_free=None) -> list[dict]:
    """Per quantized setting and peer: the paired difference of window KLDs (method - peer) on every
    seed where both rows exist, and the verdict over seeds (EV-5.3): "better" / "worse" when the
    interval of every seed excludes 0 on the same side, "tie" when none does, "mixed" otherwise.
    A seed-free peer (``seed_free``, default SEED_FREE_METHODS) missing from a run
    is taken from another run; any other missing peer leaves that seed out."""
    if seed_free is None:
        seed_free = SEED_FREE_METHODS
    tables = [_by_key(run) for run in runs]
    settings = []
    for t in tables:
        for (m, s) in t:
            if m == method and s not in settings and s != "FP32":
                settings.append(s)
    out = []
    for setting in settings:
        for peer in peers:
            if peer == method:
                continue
            per_seed = []
            for k, run in enumerate(runs):
                mine = tables[k].get((method, setting))
                other, borrowed = _peer_row(tables, k, (peer, setting), seed_free)
                if mine is None or other is None:
                    continue
                try:
                    d, lo, hi = paired_ci(mine["window_kld"], other["window_kld"], mine.get("window_n"),
                                          level=level)
                except IntervalError as err:
                    raise ReportError(f"{run['path']}: {method} vs {peer} ({setting}): {err}") from None
                per_seed.append({"seed": run["seed"], "dkld": d, "ci": [lo, hi], "borrowed": borrowed})
            if not per_seed:
                continue
            below = [p["ci"][1] < 0 for p in per_seed]
            above = [p["ci"][0] > 0 for p in per_seed]
            verdict = ("better" if all(below) else "worse" if all(above)
                       else "tie" if not any(below) and not any(above) else "mixed")
            out.append({"setting": setting, "method": method, "peer": peer, "per_seed": per_seed,
                        "verdict": verdict})
    return out


def seed_head_to_head_table(rows: list[dict]) -> str:
    """Markdown of :func:`seed_head_to_head`: one line per (setting, peer), the seeds' dKLD with
    their intervals ("*" marks a seed-free peer row taken from another seed's run)."""
    lines = ["| setting | method - peer | dKLD per seed [95% CI] | verdict |", "|---|---|---|---|"]
    for h in rows:
        cells = "; ".join(f"s{p['seed']}{'*' if p['borrowed'] else ''} {p['dkld']:+.4f} "
                          f"[{p['ci'][0]:+.4f}, {p['ci'][1]:+.4f}]" for p in h["per_seed"])
        lines.append(f"| {h['setting']} | {h['method']} - {h['peer']} | {cells} | {h['verdict']} |")
    return "\n".join(lines)
