"""How the cost of a run grows with model size: wall time and peak RSS against parameter count.

Reads the timings of the runs recorded under results/ (results.json: ``timings`` and each row's
``eval_s``), puts every model on the same footing (the five methods fp32, rtn, hadamard32,
smoothrot, torq at W16A4 on 8 evaluation windows and 4 calibration windows), fits a power law
``wall = a * P**k`` and a line ``rss = c + d * P`` by least squares, and prints the table that
results/scaling.md shows, with the projections for 7B and 32B models. With matplotlib it also
writes results/figures/scaling.png.

    python benchmarks/scaling.py            # prints the markdown; writes the figure

Parameter count P is the number of weights the forward pass multiplies per token: every linear
layer plus the output projection (the tied embedding counted once), which is the figure the
model cards give (135M, 268M, 494M, 1.54B).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("fp32", "rtn", "hadamard32", "smoothrot", "torq")
EVAL_WINDOWS = 8

#: name -> (P, results.json, peak RSS in kB of a /usr/bin/time -v run of that model, where the RSS
#: is from): the runs of one generation, all on the shared 2-core box with one job and BLAS on one
#: thread (2026-12-02/03; the three smaller models' default runs, archived since, and the 1.5B's
#: 2-window run). The five methods have no dense transform, so FW-3.6 (2026-12-04) does not change
#: their cost; the quiet-box figures of the current engine are in benchmarks/run.md.
RUNS = {
    "smollm2-135m": (134_515_008, "results/archive/default-2026-12-02/smollm2-135m/results.json", 1_430_000,
                     "RESULTS.md (README's first command, 19 rows)"),
    "gemma3-270m": (268_098_176, "results/archive/default-2026-12-02/gemma3-270m/results.json", 3_020_000,
                    "RESULTS.md (19 rows)"),
    "qwen2.5-coder-0.5b": (494_032_768, "results/archive/default-2026-12-02/qwen2.5-coder-0.5b/results.json",
                           5_325_420, "results/rerun/qwen2.5-coder-0.5b/time-v.txt (19 rows)"),
    "qwen2.5-coder-1.5b": (1_543_714_304, "results/qwen2.5-coder-1.5b/run/results.json", 9_440_000,
                           "RESULTS.md (its 2-window run, 5 rows, 43.1 min)"),
}
#: projections: name -> (P, stored parameters) from the Qwen2.5 model cards: 7B = 6.53B
#: non-embedding + a 152,064 x 3,584 output projection, 7.61B stored (untied embedding);
#: 32B = 31.0B non-embedding + 152,064 x 5,120, 32.5B stored
TARGETS = {"7B (Qwen2.5-7B)": (7.07e9, 7.61e9), "32B (Qwen2.5-32B)": (31.8e9, 32.5e9)}


def five_method_cost(results: dict) -> dict:
    """Seconds of the five-method W16A4 run inside a recorded run: calibration, the builds of the
    five methods (torq's micro fit is built under ``torq-micro`` when both are listed, it is
    shared), and the evaluation of the five rows, the latter scaled to 8 windows."""
    t = results["timings"]
    build = sum(t.get(f"build_{m}_s", 0.0) for m in METHODS)
    if "torq-micro" in results["settings"]["methods"]:
        build += t["build_torq-micro_s"]
    windows = results["settings"]["eval_windows"]
    rows = [r for r in results["results"]
            if r["method"] in METHODS and r["setting"] in ("FP32", "W16A4")]
    assert sorted(r["method"] for r in rows) == sorted(METHODS), [r["method"] for r in rows]
    ev = sum(r["eval_s"] for r in rows) * EVAL_WINDOWS / windows
    return {"calib": t["calibration_s"], "build": build, "eval": ev,
            "fp32_window": next(r["eval_s"] for r in rows if r["method"] == "fp32") / windows,
            "total": t["calibration_s"] + build + ev, "recorded_total": t["total_s"],
            "windows": windows}


def main() -> None:
    rows = []
    for name, (p, rel, rss, rss_src) in RUNS.items():
        path = ROOT / rel
        if not path.is_file():
            print(f"(skipped {name}: {rel} not found)")
            continue
        res = json.loads(path.read_text())
        c = five_method_cost(res)
        rows.append((name, p, c, rss, rss_src))
    P = np.array([r[1] for r in rows], float)
    T = np.array([r[2]["total"] for r in rows])
    R = np.array([r[3] for r in rows], float) * 1e3          # bytes (kB as /usr/bin/time -v reports)
    # one power law per part: calibration and evaluation are forward passes (FLOPs ~ P), the
    # builds are per-site fits whose cost follows the widths and the layer count, not P
    fits = {part: np.polyfit(np.log(P), np.log([r[2][part] for r in rows]), 1)
            for part in ("calib", "build", "eval", "fp32_window")}

    def predict(p, parts=("calib", "build", "eval")):
        return sum(math.exp(fits[q][1]) * p ** fits[q][0] for q in parts)

    d, c0 = np.polyfit(P, R, 1)

    print("| model | P (M) | calibration s | builds s | eval s (8 windows) | five-method total s | "
          "FP32 s / window | peak RSS GB | RSS from |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, p, c, rss, src in rows:
        note = "" if c["windows"] == EVAL_WINDOWS else f" (measured on {c['windows']}, x{EVAL_WINDOWS // c['windows']})"
        print(f"| {name} | {p / 1e6:.0f} | {c['calib']:.0f} | {c['build']:.0f} | {c['eval']:.0f}{note} | "
              f"**{c['total']:.0f}** ({c['total'] / 60:.1f} min) | {c['fp32_window']:.1f} | "
              f"{rss / 1e6:.2f} | {src} |")
    print()
    print("fit (least squares in log-log, one power law per part): "
          + "; ".join(f"{q} = {math.exp(b):.3g} s * P^{a:.2f}" for q, (a, b) in fits.items())
          + f"; peak RSS = {c0 / 1e9:.2f} GB + {d:.2f} bytes * P")
    print()
    print("| target | P (B) | one core, by the fit | 16 cores, ideal / at 50 % efficiency | "
          "64 cores, ideal / at 50 % | peak RSS, one process, by the fit | float32 weights alone |")
    print("|---|---|---|---|---|---|---|")
    for name, (p, stored) in TARGETS.items():
        t1 = predict(p)
        rss = c0 + d * p
        print(f"| {name} | {p / 1e9:.1f} | {t1 / 3600:.1f} h | {t1 / 16 / 60:.0f} / {t1 / 8 / 60:.0f} min | "
              f"{t1 / 64 / 60:.0f} / {t1 / 32 / 60:.0f} min | {rss / 1e9:.0f} GB | {4 * stored / 1e9:.0f} GB |")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    grid = np.geomspace(P.min() / 1.5, 40e9, 100)
    a1.loglog(P, T / 60, "o", label="measured (five methods, W16A4, 8 windows)")
    a1.loglog(grid, predict(grid) / 60, "-", lw=1, label="fit: sum of one power law per part")
    a1.loglog(grid, predict(grid, ("eval",)) / 60, "--", lw=0.8,
              label=f"  of which evaluation ~ P^{fits['eval'][0]:.2f}")
    a1.loglog(grid, predict(grid, ("build",)) / 60, ":", lw=0.8,
              label=f"  of which builds ~ P^{fits['build'][0]:.2f}")
    for name, (p_, t_) in zip([r[0] for r in rows], zip(P, T)):
        a1.annotate(name, (p_, t_ / 60), fontsize=7, xytext=(4, -10), textcoords="offset points")
    a1.set_xlabel("parameters"); a1.set_ylabel("wall time, one core (min)"); a1.legend(fontsize=7)
    a1.set_title("wall time (shared 2-core box)", fontsize=9)
    a2.loglog(P, R / 1e9, "s", label="measured peak RSS")
    a2.loglog(grid, (c0 + d * grid) / 1e9, "-", lw=1, label=f"fit {c0 / 1e9:.2f} GB + {d:.1f} B x P")
    a2.set_xlabel("parameters"); a2.set_ylabel("peak RSS (GB)"); a2.legend(fontsize=7)
    a2.set_title("memory", fontsize=9)
    for a in (a1, a2):
        for p, _ in TARGETS.values():
            a.axvline(p, color="grey", lw=0.5, ls=":")
    fig.tight_layout()
    out = ROOT / "results/figures/scaling.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"\nfigure: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
