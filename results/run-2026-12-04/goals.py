"""Issue 25's W16A4 goals over three seeds, per model and seed: torq's perplexity against FP32
(goal <= 1.10x), torq's mean KLD against the best peer's of the same seed (goal <= 2/3, and the
paired 95 % interval of torq - best peer over the evaluation windows below 0, spec/EV.md EV-2.3).
torq is the `torq-micro` row of the seed runs (the same fit and transform, TQ-2.5). Seeds 0 and 1
(SmolLM2: 0, 1, 2) are results/seeds/<model>/s<S>/results.json; seed 2 of Gemma3 and Qwen2.5 is
results/run-2026-12-04/seeds/<model>/s2/results.json. hadamard32 and smoothrot do not depend on
the seed (TQ-4.8) and are read from the seed-0 run.

    python results/run-2026-12-04/goals.py > results/run-2026-12-04/goals.md
"""
from __future__ import annotations

import json
from pathlib import Path

from torq_ref.evaluate.intervals import paired_ci, weighted_mean

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b")
PEERS = ("hadamard32", "random-orthogonal", "smoothrot", "duquant")
METHOD = "torq-micro"


def runs(model):
    out = {}
    for s in (0, 1, 2):
        for p in (ROOT / "results/seeds" / model / f"s{s}" / "results.json",
                  ROOT / "results/run-2026-12-04/seeds" / model / f"s{s}" / "results.json"):
            if p.is_file() and s not in out:
                out[s] = json.loads(p.read_text())
    return out


def kld(r):
    return weighted_mean(r["window_kld"], r["window_n"])


def main():
    print("# Issue 25's W16A4 goals over seeds\n")
    print(" ".join(__doc__.split("\n\n")[0].split()) + "\n")
    print("Made by `python results/run-2026-12-04/goals.py`.\n")
    print("| model | seed | torq PPL / FP32 | best peer | torq KLD | best peer KLD | ratio | torq - peer [95% CI] | goals met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        seeds = runs(model)
        base = {(r["method"], r["setting"]): r for r in seeds[0]["results"]}
        for seed, data in sorted(seeds.items()):
            rows = dict(base)
            rows.update({(r["method"], r["setting"]): r for r in data["results"]})
            fp, tq = rows[("fp32", "FP32")], rows[(METHOD, "W16A4")]
            peers = {p: rows[(p, "W16A4")] for p in PEERS if (p, "W16A4") in rows}
            best = min(peers, key=lambda p: kld(peers[p]))
            d, lo, hi = paired_ci(tq["window_kld"], peers[best]["window_kld"], tq["window_n"])
            ratio = kld(tq) / kld(peers[best])
            ppl = tq["ppl"] / fp["ppl"]
            met = [n for n, ok in (("PPL <= 1.10x", ppl <= 1.10), ("KLD <= 2/3", ratio <= 2 / 3 and hi < 0)) if ok]
            print(f"| {model} | {seed} | {ppl:.3f}x | {best} | {kld(tq):.4f} | {kld(peers[best]):.4f} | "
                  f"{ratio:.3f} | {d:+.4f} [{lo:+.4f}, {hi:+.4f}] | {', '.join(met) or 'none'} |")


if __name__ == "__main__":
    main()
