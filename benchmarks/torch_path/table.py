"""Markdown rows of results/torch_path.md from eval-plan JSON files (spec/TQ.md TQ-9.4).

    python benchmarks/torch_path/table.py LABEL=results/torch_path/eval-smollm2-135m-cpu.json ...
"""
from __future__ import annotations

import json
import sys

from torq_ref.torch.evaluate import bound_for, within


def rows(label: str, path: str) -> list[str]:
    d = json.loads(open(path, encoding="utf-8").read())
    out = []
    for c in d["comparison"]:
        t, n, dd = c["torch"], c["numpy"], c["diff"]
        rel = dd["kld"] / n["kld"] if n["kld"] else 0.0
        out.append(f"| {label} | {c['method']} {c['setting']} | {c['windows']} | {n['ppl']:.4f} | {t['ppl']:.4f} | "
                   f"{n['kld']:.5f} | {t['kld']:.5f} | {dd['kld']:+.2e} ({rel:+.2%}) | {n['top1']:.4f} | "
                   f"{t['top1']:.4f} | {dd['top1']:+.4f} | {'yes' if within(dd, n, bound_for(c['windows'])) else 'NO'} |")
    return out


if __name__ == "__main__":
    print("| model | row | windows | PPL numpy | PPL torch | KLD numpy | KLD torch | dKLD (rel) | top-1 numpy "
          "| top-1 torch | d top-1 | within bound |")
    print("|---" * 12 + "|")
    for arg in sys.argv[1:]:
        label, path = arg.split("=", 1)
        print("\n".join(rows(label, path)))
