"""Golden logits of the tiny seeded models (spec/FW.md FW-8.2).

Regenerate (deterministic; the weights come from the seed, only logits are stored):

    python -m torq_ref.model.golden --out golden/model

The file golden/model/tiny_logits.json lists, per tiny model: config name, seed, the token ids
(batch 2 x seq 8, from ``default_rng(seed + 1)``) and the float32 logits printed with 9
significant digits (enough to round-trip float32). The crosscheck suite confirms the same logits
against transformers, so the default suite checks the forward pass without torch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .tiny import TINY_CONFIGS, tiny_model

SEED = 1234
BATCH, SEQ = 2, 8
FILE = "tiny_logits.json"


def golden_ids(name: str, seed: int = SEED) -> np.ndarray:
    vocab = TINY_CONFIGS[name]["vocab_size"]
    return np.random.default_rng(seed + 1).integers(0, vocab, size=(BATCH, SEQ))


def generate() -> dict:
    cases = []
    for name in sorted(TINY_CONFIGS):
        ids = golden_ids(name)
        logits = tiny_model(name, SEED).forward(ids)
        cases.append({"model": name, "seed": SEED, "ids": ids.tolist(), "shape": list(logits.shape),
                      "logits": [format(float(v), ".9g") for v in logits.ravel()]})
    return {"command": "python -m torq_ref.model.golden --out golden/model", "dtype": "float32",
            "cases": cases}


def read(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="golden/model")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = generate()
    # one line per case keeps the file small and diffable
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in data.pop("cases"))
    head = json.dumps(data)[:-1]
    (out / FILE).write_text(f'{head}, "cases": [\n{lines}\n]}}\n')
    print(f"wrote {out / FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
