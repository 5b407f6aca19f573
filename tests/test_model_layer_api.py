"""The forward pass by parts: embed_tokens, rope_tables, block, head (spec/FW.md FW-2.8)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.model import ActivationCapture, ModelError, QuantPlan
from torq_ref.model.hooks import SITES, prepare_site
from torq_ref.model.tiny import TINY_CONFIGS, tiny_model

IDS = np.random.default_rng(5).integers(0, 96, size=(2, 12))


def _streamed(m, ids, capture=None, prepared_of=None):
    x = m.embed_tokens(ids)                                                   # (B, S, D)
    rope = m.rope_tables(x.shape[1])
    for i in range(m.config.num_layers):
        x = m.block(i, x, rope, capture, None if prepared_of is None else prepared_of(i))
    return m.head(x)


@pytest.mark.clause("FW-2.8")
@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_parts_compose_to_forward_bit_for_bit(name):
    m = tiny_model(name, 3)
    assert np.array_equal(_streamed(m, IDS), m.forward(IDS))
    cap_a, cap_b = ActivationCapture(), ActivationCapture()
    _streamed(m, IDS, cap_a)
    m.forward(IDS, capture=cap_b)
    assert cap_a.keys() == cap_b.keys() and len(cap_a.keys()) == 4 * m.config.num_layers
    for k in cap_a.keys():
        assert np.array_equal(cap_a.moment(*k), cap_b.moment(*k))


@pytest.mark.clause("FW-2.8")
def test_block_prepared_argument_matches_model_plan():
    m = tiny_model("qwen3", 4)
    plan = QuantPlan.uniform("e2m1", weight_fmt="e2m1")
    want = m.forward(IDS, quant=plan)
    assert not np.allclose(want, m.forward(IDS))                              # the plan does something
    fresh = tiny_model("qwen3", 4)                                            # no plan cached here

    def prepared_of(i):
        return {s: prepare_site(fresh.site_weight(i, s), plan.for_site(i, s), plan.mode) for s in SITES}

    assert np.array_equal(_streamed(fresh, IDS, prepared_of=prepared_of), want)
    # the model's own cache is used when prepared is None, and {} means "all sites exact"
    fresh.prepare(plan)
    assert np.array_equal(_streamed(fresh, IDS), want)
    assert np.array_equal(_streamed(fresh, IDS, prepared_of=lambda i: {}), m.forward(IDS))
    # one site only: the others stay exact
    only_o = _streamed(tiny_model("qwen3", 4), IDS, prepared_of=lambda i: {"o": prepared_of(i)["o"]})
    assert not np.array_equal(only_o, want) and not np.array_equal(only_o, m.forward(IDS))


@pytest.mark.clause("FW-2.8")
def test_parts_validate_their_inputs():
    m = tiny_model("llama", 0)
    with pytest.raises(ModelError, match="token ids"):
        m.embed_tokens(np.array([[0, 96]]))
    with pytest.raises(ModelError, match="integer"):
        m.embed_tokens(np.zeros((1, 3)))
    x = m.embed_tokens(IDS)
    assert x.shape == (2, 12, 64) and x.dtype == np.float32
    with pytest.raises(ModelError, match="rope tables"):
        m.block(0, x, m.rope_tables(11))
    with pytest.raises(ModelError, match="out of range"):
        m.block(2, x, m.rope_tables(12))
