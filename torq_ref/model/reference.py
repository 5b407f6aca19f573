"""transformers as the reference implementation (crosscheck extra: torch, transformers).

Used by the slow tests, ``ppl --reference`` and ``bench-forward``; imported lazily so the package
works without torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import _bar, window_nll


def hf_from_gguf(gguf_path: str | Path, threads: int | None = None):
    """(model, tokenizer) of transformers loading the GGUF file itself, float32, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    p = Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    return model, tok


def hf_logits(hf, ids) -> np.ndarray:
    import torch

    with torch.no_grad():
        return hf(torch.as_tensor(np.asarray(ids)), use_cache=False).logits.float().numpy()


def hf_perplexity(hf, windows: np.ndarray, *, progress: bool = True, return_nll: bool = False):
    """The perplexity protocol of :func:`torq_ref.model.perplexity`, with transformers' logits."""
    windows = np.asarray(windows)
    nll = np.empty(windows.shape[0])
    for j in _bar(range(windows.shape[0]), "ppl (transformers)", progress):
        nll[j] = window_nll(hf_logits(hf, windows[j:j + 1])[0], windows[j])
    ppl = float(np.exp(nll.mean()))
    return (ppl, nll) if return_nll else ppl
