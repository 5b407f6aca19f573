"""Issue 25's W16A4 goals on the runs of this directory, per model and seed: torq's perplexity
against FP32 (goal <= 1.10x), torq's mean KLD against the best peer's of the same seed (goal
<= 2/3), and the paired 95 % interval of torq - best peer over the evaluation windows (spec/EV.md
EV-2.3). Seed 0 is the three-model default run (default/<model>/results.json), seeds 1 and 2 the
W16A4 runs of the seeded methods (seeds/<model>/s<S>/<model>/results.json); hadamard32 and
smoothrot do not depend on the seed (their rows are the same in every run).

    python results/run-2026-12-04/goals.py > results/run-2026-12-04/goals.md
"""
from __future__ import annotations

import json
from pathlib import Path

from torq_ref.evaluate.intervals import paired_ci, weighted_mean

HERE = Path(__file__).resolve().parent
MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b")
PEERS = ("hadamard32", "random-orthogonal", "smoothrot", "duquant")


def runs(model):
    out = {0: HERE / "default" / model / "results.json"}
    for s in (1, 2):
        out[s] = HERE / "seeds" / model / f"s{s}" / model / "results.json"
    return {s: json.loads(p.read_text()) for s, p in out.items() if p.is_file()}


def main():
    print(__doc__.split("\n\n")[0].replace("\n", " ") + "\n")
    print("| model | seed | torq PPL / FP32 | best peer | torq KLD | best peer KLD | ratio | torq - peer [95% CI] | goals met |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        for seed, data in sorted(runs(model).items()):
            rows = {(r["method"], r["setting"]): r for r in data["results"]}
            fp = rows[("fp32", "FP32")]
            tq = rows[("torq", "W16A4")]
            kld = lambda r: weighted_mean(r["window_kld"], r["window_n"])  # noqa: E731
            peers = {p: rows[(p, "W16A4")] for p in PEERS if (p, "W16A4") in rows}
            best = min(peers, key=lambda p: kld(peers[p]))
            d, lo, hi = paired_ci(tq["window_kld"], peers[best]["window_kld"], tq["window_n"])
            ratio = kld(tq) / kld(peers[best])
            ppl = tq["ppl"] / fp["ppl"]
            met = [name for name, ok in (("PPL", ppl <= 1.10), ("2/3", ratio <= 2 / 3 and hi < 0)) if ok]
            print(f"| {model} | {seed} | {ppl:.3f}x | {best} | {kld(tq):.4f} | {kld(peers[best]):.4f} | "
                  f"{ratio:.3f} | {d:+.4f} [{lo:+.4f}, {hi:+.4f}] | {', '.join(met) or 'none'} |")


if __name__ == "__main__":
    main()
