"""Outputs of a TORQ run: the printed table, results.json and the PNG figures (spec/TQ.md section 4)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from torq_ref.model.hooks import SITES


def table(results: dict) -> str:
    """One markdown table: rows = methods, columns = PPL per setting, imbalance, entropy."""
    rows = results["results"]
    settings = [s for s in ("FP32", "W16A4", "W4A4") if any(r["setting"] == s for r in rows)]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["setting"]): r for r in rows}
    head = ["method"] + [f"PPL {s}" for s in settings if s != "FP32"] + ["imbalance", "entropy (bits)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = [m]
        for s in settings:
            if s == "FP32":
                continue
            r = by.get((m, s)) or by.get((m, "FP32"))
            cells.append(f"{r['ppl']:.2f}" if r else "-")
        any_row = next(r for r in rows if r["method"] == m)
        cells += [f"{any_row['imbalance']:.2f}", f"{any_row['entropy']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(results: dict, out_dir: Path) -> Path:
    """out_dir/results.json (TQ-4.3), stamped with its provenance record (spec/EV.md EV-6.1)."""
    from torq_ref.evaluate.provenance import stamp

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(_jsonable(stamp(results)), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _per_layer(results: dict, method: str, key: str) -> np.ndarray:
    sites = results["per_site"][method]
    layers = sorted({int(k.split(":")[0]) for k in sites})
    return np.array([[sites[f"{layer}:{s}"][key] for s in SITES] for layer in layers])   # (L, 4)


def write_figures(results: dict, out_dir: Path, *, hist_site: str | None = None) -> list[Path]:
    """Per-layer imbalance and entropy per method and site, and one code histogram (TQ-4.4)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no figures; pip install 'torq-ref[plot]')")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = [m for m in results["per_site"] if m != "fp32"]
    paths = []
    for key, ylabel, fname, logy in (("imbalance", "block-energy imbalance (max / mean)", "imbalance.png", True),
                                     ("entropy", "E2M1 code entropy (bits)", "entropy.png", False)):
        fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharey=True)
        for j, site in enumerate(SITES):
            ax = axes[j]
            for m in methods:
                ax.plot(_per_layer(results, m, key)[:, j], marker=".", label=m)
            ax.set_title(f"site {site}")
            ax.set_xlabel("layer")
            if logy:
                ax.set_yscale("log")
        axes[0].set_ylabel(ylabel)
        if key == "entropy":
            axes[0].axhline(np.log2(15), color="grey", ls=":", lw=1)
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        p = out_dir / fname
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    site = hist_site or _default_hist_site(results)
    fig, ax = plt.subplots(figsize=(9, 4))
    from torq_ref.mx import E2M1_VALUES

    labels = [f"{v:g}" for v in E2M1_VALUES]
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        counts = np.array(results["per_site"][m][site]["codes"], dtype=float)
        ax.bar(np.arange(16) + i * width, counts / counts.sum(), width=width, label=m)
    ax.set_xticks(np.arange(16) + 0.4, labels)
    ax.set_xlabel("E2M1 code value")
    ax.set_ylabel("fraction of elements")
    ax.set_title(f"code histogram, layer:site {site}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "code_histogram.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def _default_hist_site(results: dict) -> str:
    sites = results["per_site"]["rtn"] if "rtn" in results["per_site"] else next(iter(results["per_site"].values()))
    layers = sorted({int(k.split(":")[0]) for k in sites})
    return f"{layers[len(layers) // 2]}:down"
