"""The cross-model report: one table of every method on every model, and a KLD figure
(spec/EV.md section 4).

Input: each model's results.json (written by ``run``), by default ``out/<model>/results.json``.
Output: ``report.md`` (one markdown table: a line per (method, setting), for every model the
columns PPL, KLD +- se and top-1, KLD cells of rows that tie with hadamard32 marked "tie") and
``kld.png`` (KLD per method per model, one panel per setting, 95 % error bars).
"""
from __future__ import annotations

import json
from pathlib import Path

from torq_ref.errors import UserError

from .intervals import IntervalError
from .summary import summarize

SETTING_ORDER = ("FP32", "W16A4", "W4A4")


class ReportError(UserError, ValueError):
    """A results file that is missing or does not hold a run's rows."""


def read_json(path: Path):
    """The parsed JSON of an existing results file; ReportError naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not JSON ({err})") from None


def load_results(models, paths=None, root: str | Path = "out") -> dict[str, list[dict]]:
    """{model: summarized rows} from ``paths`` (one per model) or ``root/<model>/results.json``
    (EV-4.1). Rows without the summary keys (an older run) are summarized here."""
    models = list(models)
    if not models:
        raise ReportError("no models given")
    if paths is not None and len(paths) != len(models):
        raise ReportError(f"{len(paths)} results paths for {len(models)} models: give one per model")
    out = {}
    for k, name in enumerate(models):
        path = Path(paths[k]) if paths is not None else Path(root) / name / "results.json"
        if not path.is_file():
            raise ReportError(f"model {name!r}: no results file {path} (run it first, or pass its path)")
        data = read_json(path)
        rows = data.get("results") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            raise ReportError(f"{path}: no 'results' list of rows")
        if any("kld" not in r and "window_kld" in r for r in rows):
            try:
                rows = summarize(rows, seed=int(data.get("seed", 0)))
            except IntervalError as err:
                raise ReportError(f"{path}: {err}") from None
        out[name] = rows
    return out


def load_per_site(models, paths=None, root: str | Path = "out") -> dict[str, dict]:
    """{model: per_site dict of its results.json} (EV-4.6), {} for a file without one; the
    files are those of :func:`load_results` (call it first: it reports bad files)."""
    out = {}
    for k, name in enumerate(models):
        path = Path(paths[k]) if paths is not None else Path(root) / name / "results.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        out[name] = data.get("per_site") or {}
    return out


def site_imbalance(per_site: dict, method: str = "rtn") -> dict[str, dict]:
    """{site kind: {"median", "max", "layer"}} of the block-energy imbalance (max / mean of the
    32-block energies, TQ-3.3) of ``method``'s site inputs over the layers (EV-4.6); for ``rtn``
    (no transform) the imbalance of the model's own activations."""
    import numpy as np

    by_kind: dict[str, list[tuple[float, int]]] = {}
    for key, m in (per_site.get(method) or {}).items():
        layer, kind = key.split(":", 1)
        if "imbalance" in m:
            by_kind.setdefault(kind, []).append((float(m["imbalance"]), int(layer)))
    out = {}
    for kind, vals in by_kind.items():
        v = np.array([x for x, _ in vals])
        top = max(vals)
        out[kind] = {"median": float(np.median(v)), "max": top[0], "layer": top[1]}
    return out


def imbalance_table(per_site_by_model: dict[str, dict], method: str = "rtn") -> str:
    """Markdown: per model and site kind, the median and the largest imbalance over layers and
    the layer of the largest (EV-4.6); "" when no model has per-site metrics of ``method``."""
    lines = []
    for model, per_site in per_site_by_model.items():
        for kind, v in site_imbalance(per_site, method).items():
            lines.append(f"| {model} | {kind} | {v['median']:.2f} | {v['max']:.2f} | {v['layer']} |")
    if not lines:
        return ""
    return "\n".join(["| model | site | median imbalance | max imbalance | layer of max |",
                      "|---|---|---|---|---|", *lines])


def _kld_cell(r: dict | None) -> str:
    if r is None or "kld" not in r:
        return "-"
    se = r.get("kld_se")
    cell = f"{r['kld']:.4f}" + ("" if se is None or se != se else f" +- {se:.4f}")   # None / NaN: 1 window
    cmp = r.get("vs_hadamard32")
    return cell + (" tie" if cmp and cmp.get("dkld_tie") else "")


def cross_model_table(results: dict[str, list[dict]]) -> str:
    """Markdown: a line per (method, setting) in run order, per model PPL / KLD +- se / top-1 %
    (EV-4.2). A method missing on a model gets "-" cells."""
    models = list(results)
    by = {m: {(r["method"], r["setting"]): r for r in rows} for m, rows in results.items()}
    keys = []
    for rows in results.values():
        for r in rows:
            if (r["method"], r["setting"]) not in keys:
                keys.append((r["method"], r["setting"]))
    keys.sort(key=lambda k: SETTING_ORDER.index(k[1]) if k[1] in SETTING_ORDER else len(SETTING_ORDER))
    head = ["method", "setting"] + [f"{m} {c}" for m in models for c in ("PPL", "KLD +- se", "top-1 %")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, setting in keys:
        cells = [method, setting]
        for m in models:
            r = by[m].get((method, setting))
            cells += ["-" if r is None else f"{r['ppl']:.2f}", _kld_cell(r),
                      "-" if r is None or "top1" not in r else f"{100 * r['top1']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the peer rows a method is held against in the head-to-head table (EV-4.5)
PEERS = ("hadamard32", "random-orthogonal", "smoothrot", "duquant", "mr-gptq")


def head_to_head(results: dict[str, list[dict]], method: str = "torq", peers=PEERS, *,
                 seed: int = 0, level: float = 0.95) -> list[dict]:
    """Per (model, quantized setting) where ``method`` has a row: its PPL over FP32's, its KLD,
    the peer row with the lowest KLD, the ratio of the KLDs and the paired difference of the
    window KLDs (method - best peer) with its ``level`` interval (EV-4.5)."""
    from .intervals import paired_ci

    out = []
    for model, rows in results.items():
        by = {(r["method"], r["setting"]): r for r in rows}
        fp32 = next((r for r in rows if r["method"] == "fp32"), None)
        for setting in SETTING_ORDER[1:]:
            r = by.get((method, setting))
            cands = [by[(p, setting)] for p in peers if (p, setting) in by and p != method
                     and "kld" in by[(p, setting)]]
            if r is None or "kld" not in r or not cands:
                continue
            best = min(cands, key=lambda c: c["kld"])
            d, lo, hi = paired_ci(r["window_kld"], best["window_kld"], r.get("window_n"),
                                  level=level, seed=seed)
            out.append({"model": model, "setting": setting, "method": method, "ppl": r["ppl"],
                        "ppl_ratio": None if fp32 is None else r["ppl"] / fp32["ppl"],
                        "kld": r["kld"], "best_peer": best["method"], "peer_kld": best["kld"],
                        "kld_ratio": r["kld"] / best["kld"] if best["kld"] > 0 else float("nan"),
                        "dkld": d, "dkld_ci": [lo, hi], "tie": bool(lo <= 0 <= hi) if lo == lo else True})
    return out


def head_to_head_table(rows: list[dict]) -> str:
    """Markdown of :func:`head_to_head` (EV-4.5)."""
    head = ["model", "setting", "method", "PPL", "PPL / FP32", "KLD", "best peer (KLD)",
            "KLD / peer", "dKLD vs peer [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for h in rows:
        lo, hi = h["dkld_ci"]
        ci = "" if lo != lo else f" [{lo:+.4f}, {hi:+.4f}]"
        lines.append("| " + " | ".join([
            h["model"], h["setting"], h["method"], f"{h['ppl']:.2f}",
            "-" if h["ppl_ratio"] is None else f"{h['ppl_ratio']:.3f}", f"{h['kld']:.4f}",
            f"{h['best_peer']} ({h['peer_kld']:.4f})", f"{h['kld_ratio']:.3f}",
            f"{h['dkld']:+.4f}{ci}" + (" tie" if h["tie"] else "")]) + " |")
    return "\n".join(lines)


def write_kld_figure(results: dict[str, list[dict]], path: Path) -> Path | None:
    """KLD per method (x) and model (markers side by side), one panel per quantized setting,
    error bars 1.96 se, log scale (EV-4.3). None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no figure; pip install 'torq-ref[plot]')")
        return None
    import numpy as np

    models = list(results)
    settings = [s for s in SETTING_ORDER[1:] if any(r["setting"] == s for rows in results.values() for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(settings)), figsize=(7 * max(1, len(settings)), 4.5), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        methods = list(dict.fromkeys(r["method"] for rows in results.values() for r in rows
                                     if r["setting"] == setting))
        width = 0.8 / max(1, len(models))
        for j, m in enumerate(models):
            by = {r["method"]: r for r in results[m] if r["setting"] == setting}
            y = np.array([by[k]["kld"] if k in by and "kld" in by[k] else np.nan for k in methods])
            se = np.array([by[k].get("kld_se") if k in by and by[k].get("kld_se") is not None else np.nan
                           for k in methods])
            err = np.where(np.isfinite(se), 1.96 * se, 0.0)
            ax.errorbar(np.arange(len(methods)) + (j - (len(models) - 1) / 2) * width, y, yerr=err,
                        fmt="o", capsize=3, label=m)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=30, ha="right")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.set_yscale("log")
        ax.set_ylabel("mean KLD from FP32 (nats / token)")
        ax.set_title(f"{setting}: KLD, error bars 95 % (1.96 se over windows)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _head_to_head_section(results) -> str:
    rows = head_to_head(results)
    if not rows:
        return ""
    return ("\n## torq against the best peer\n\nPer model and setting, the peer row (of "
            + ", ".join(PEERS) + ") with the lowest KLD, and the paired 95 % interval of the "
            "difference of window KLDs (torq - peer); \"tie\": it contains 0.\n\n"
            + head_to_head_table(rows) + "\n")


def _imbalance_section(per_site) -> str:
    table = imbalance_table(per_site) if per_site else ""
    if not table:
        return ""
    return ("\n## Block-energy imbalance of the models' own inputs\n\nmax / mean of the 32-block "
            "energies of each linear-layer input (rtn rows: no transform), over the layers.\n\n"
            + table + "\n")


def write_report(results: dict[str, list[dict]], out_dir: str | Path, *, figure: bool = True,
                 per_site: dict[str, dict] | None = None) -> list[Path]:
    """report.md (the table, EV-4.2, the head-to-head table, EV-4.5, and with ``per_site`` the
    input imbalance table, EV-4.6) and kld.png (EV-4.3) in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text("# Cross-model table\n\nKLD: mean KL divergence from the FP32 model, nats per "
                  "token, +- its standard error over windows; \"tie\": the paired 95 % interval "
                  "of dKLD against hadamard32 contains 0. top-1: share of positions whose argmax "
                  "equals FP32's.\n\n" + cross_model_table(results) + "\n" + _head_to_head_section(results)
                  + _imbalance_section(per_site),
                  encoding="utf-8")
    paths = [md]
    if figure:
        p = write_kld_figure(results, out / "kld.png")
        if p is not None:
            paths.append(p)
    return paths
