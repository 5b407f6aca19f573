"""transformers as the reference implementation (crosscheck extra: torch, transformers).

Used by the slow tests (FW-5.5, FW-6.4, FW-9.8: every registry model against transformers loading
the same GGUF), ``models ppl --reference`` and ``bench forward``; imported lazily so the package works
without torch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import window_bar, window_nll


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


def hf_from_source(kind: str, path: str | Path, threads: int | None = None):
    """(model, tokenizer or None) of transformers loading a GGUF (``kind == "gguf"``) or a Hugging
    Face directory (``"dir"``), float32, eval mode."""
    if kind == "gguf":
        return hf_from_gguf(path, threads)
    import torch
    from transformers import AutoModelForCausalLM

    if threads:
        torch.set_num_threads(threads)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval(), None


def hf_logits(hf, ids) -> np.ndarray:
    import torch

    with torch.no_grad():
        return hf(torch.as_tensor(np.asarray(ids)), use_cache=False).logits.float().numpy()


def hf_perplexity(hf, windows: np.ndarray, *, progress: bool = True, return_nll: bool = False):
    """The perplexity protocol of :func:`torq_ref.model.perplexity`, with transformers' logits."""
    windows = np.asarray(windows)
    nll = np.empty(windows.shape[0])
    for j in window_bar(range(windows.shape[0]), "ppl (transformers)", progress):
        nll[j] = window_nll(hf_logits(hf, windows[j:j + 1])[0], windows[j])
    ppl = float(np.exp(nll.mean()))
    return (ppl, nll) if return_nll else ppl


def torch_mxfp4_floor(x):
    """An independent MXFP4 fake quantizer in torch (FLOOR scale, RNE, saturation), blocks of 32
    along the last axis: scale 2^(floor(log2 amax) - 2) from ``torch.frexp``, e2m1 grid steps 0.5 /
    1 / 2 on [0, 2) / [2, 4) / [4, 6]. Used only to cross-check torq_ref.mx inside transformers."""
    import torch

    shape = x.shape
    b = x.reshape(-1, 32)
    amax = b.abs().amax(-1, keepdim=True)
    _, e = torch.frexp(amax)                       # amax = m 2^e, m in [0.5, 1): floor(log2) = e - 1
    scale = torch.exp2((e - 3).clamp(-127, 127).to(x.dtype))
    a = (b / scale).abs()
    q = torch.where(a < 2, torch.round(a * 2) / 2,
                    torch.where(a < 4, torch.round(a), (torch.round(a / 2) * 2).clamp(max=6)))
    out = torch.where(amax > 0, torch.sign(b) * q * scale, torch.zeros_like(b))
    return out.reshape(shape)


def add_act_quant_hooks(hf) -> list:  # noqa: D401
    """Fake-quantize the inputs of the 7 linears of every decoder layer of a transformers model
    with :func:`torch_mxfp4_floor`; returns the hook handles (call ``.remove()`` to undo)."""
    handles = []
    for layer in hf.model.layers:
        for mod in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                    layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            handles.append(mod.register_forward_pre_hook(lambda m, args: (torch_mxfp4_floor(args[0]),)))
    return handles
