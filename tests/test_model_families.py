"""Qwen2 and Gemma3 beside Llama / Qwen3, without torch (spec/FW.md FW-1.2, FW-1.6, section 9).

The logits of the tiny models are checked against transformers in test_model_crosscheck.py and
against the golden file in test_model_forward.py; here: config parsing and refusals, the norm
convention, the per-family pieces of the layer, and the scale-step invariance for every family.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from torq_ref.model import ModelError, QuantPlan, SiteQuant, Transform, UnsupportedModelError, parse_config
from torq_ref.model import layers as L
from torq_ref.model.config import FULL, SLIDING, read_config
from torq_ref.model.model import Model
from torq_ref.model.tiny import TINY_CONFIGS, random_tensors, tiny_model

IDS = np.random.default_rng(9).integers(0, 96, size=(2, 11))


# ---------------------------------------------------------------------------- config (FW-1.2, FW-1.6)
@pytest.mark.clause("FW-1.2", "FW-9.2", "FW-9.6")
def test_family_configs_parse():
    q = parse_config(TINY_CONFIGS["qwen2"])
    assert q.family == "qwen2" and q.attention_bias and q.hidden_act == "silu" and q.layer_types == ()
    g = parse_config(TINY_CONFIGS["gemma3"])
    assert g.family == "gemma3" and g.hidden_act == "gelu_tanh" and not g.attention_bias
    assert g.layer_types == (SLIDING, FULL, SLIDING) and g.sliding_window == 4
    assert g.rope.theta == 1e6 and g.rope_local.theta == 1e4 and g.attn_scale == 24 ** -0.5
    assert g.final_logit_softcapping == 20.0 and g.tie_word_embeddings
    # transformers-5 layout: per-layer-type rope_parameters, explicit layer_types
    t5 = {k: v for k, v in TINY_CONFIGS["gemma3"].items()
          if k not in ("rope_theta", "rope_local_base_freq", "sliding_window_pattern")}
    t5.update(rope_parameters={FULL: {"rope_type": "default", "rope_theta": 5e5},
                               SLIDING: {"rope_type": "default", "rope_theta": 2e3}},
              layer_types=[FULL, SLIDING, FULL])
    g5 = parse_config(t5)
    assert (g5.rope.theta, g5.rope_local.theta) == (5e5, 2e3) and g5.layer_types == (FULL, SLIDING, FULL)
    # defaults of transformers' Gemma3TextConfig: pattern 6, bases 1e6 / 1e4, scalar 256
    bare = {k: v for k, v in t5.items() if k not in ("rope_parameters", "layer_types", "query_pre_attn_scalar")}
    gd = parse_config(dict(bare, num_hidden_layers=7))
    assert gd.layer_types == (SLIDING,) * 5 + (FULL, SLIDING)
    assert (gd.rope.theta, gd.rope_local.theta, gd.query_pre_attn_scalar) == (1e6, 1e4, 256.0)


@pytest.mark.clause("FW-1.2", "FW-9.7")
@pytest.mark.parametrize("name,change,match", [
    ("gemma3", {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
    ("gemma3", {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ("gemma3", {"hidden_activation": "silu"}, "hidden_activation"),
    ("qwen2", {"use_sliding_window": True}, "use_sliding_window"),
    ("qwen2", {"hidden_act": "gelu"}, "hidden_act"),
    ("llama", {"rope_parameters": {FULL: {"rope_theta": 1.0}}}, "per-layer-type"),
    ("qwen2", {"model_type": "gemma3_text"}, "unknown architecture"),
    ("gemma3", {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3"}, "unknown architecture"),
    ("gemma3", {"rope_parameters": {FULL: {"rope_type": "yarn", "factor": 2.0}, SLIDING: {}}}, "yarn"),
])
def test_unimplemented_features_are_refused(name, change, match):
    with pytest.raises(UnsupportedModelError, match=match):
        parse_config(dict(TINY_CONFIGS[name], **change))


@pytest.mark.clause("FW-1.6")
@pytest.mark.parametrize("name,key,value", [
    ("llama", "rope_theta", "abc"),
    ("qwen2", "rope_theta", "1e6"),
    ("llama", "hidden_size", "64"),
    ("llama", "num_hidden_layers", 2.5),
    ("llama", "rms_norm_eps", True),
    ("qwen3", "head_dim", [32]),
    ("gemma3", "sliding_window", "512"),
    ("gemma3", "query_pre_attn_scalar", "x"),
    ("gemma3", "final_logit_softcapping", float("nan")),
    ("gemma3", "rope_local_base_freq", "ten"),
    ("llama", "vocab_size", -3),
    ("llama", "max_position_embeddings", 0),
])
def test_non_numeric_config_values_name_their_key(name, key, value):
    with pytest.raises(ModelError, match=key) as err:
        parse_config(dict(TINY_CONFIGS[name], **{key: value}))
    assert not isinstance(err.value, UnsupportedModelError)


@pytest.mark.clause("FW-1.6")
def test_layer_types_and_json_are_checked(tmp_path):
    with pytest.raises(ModelError, match="layer_types"):
        parse_config(dict(TINY_CONFIGS["gemma3"], layer_types=[FULL, FULL]))
    with pytest.raises(ModelError, match="layer_types"):
        parse_config(dict(TINY_CONFIGS["gemma3"], layer_types=[FULL, "local", FULL]))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_config(tmp_path)


# ---------------------------------------------------------------------------- the layer pieces
@pytest.mark.clause("FW-9.3", "FW-9.1")
def test_norm_weights_are_held_as_multipliers():
    t = random_tensors(TINY_CONFIGS["gemma3"], 2)
    m = Model(parse_config(TINY_CONFIGS["gemma3"]), t)
    p = "model.layers.1."
    lw = m.layers[1]
    assert np.array_equal(lw.attn_norm, 1 + t[p + "input_layernorm.weight"])
    assert np.array_equal(lw.mlp_norm, 1 + t[p + "pre_feedforward_layernorm.weight"])
    assert np.array_equal(lw.post_attn_norm, 1 + t[p + "post_attention_layernorm.weight"])
    assert np.array_equal(lw.post_mlp_norm, 1 + t[p + "post_feedforward_layernorm.weight"])
    assert np.array_equal(lw.q_norm, 1 + t[p + "self_attn.q_norm.weight"])
    assert np.array_equal(m.final_norm, 1 + t["model.norm.weight"])
    t = random_tensors(TINY_CONFIGS["qwen2"], 2)
    m = Model(parse_config(TINY_CONFIGS["qwen2"]), t)
    assert np.array_equal(m.layers[1].mlp_norm, t[p + "post_attention_layernorm.weight"])
    assert m.layers[1].post_attn_norm is None and m.layers[1].q_norm is None
    assert np.array_equal(m.layers[1].qkv_bias, np.concatenate([t[p + f"self_attn.{n}_proj.bias"] for n in "qkv"]))


@pytest.mark.clause("FW-9.4")
def test_gemma_embedding_is_scaled_by_float32_sqrt_hidden():
    for dtype in (np.float32, np.float64):
        m = tiny_model("gemma3", 1, dtype=dtype)
        want = m.embed[IDS] * dtype(np.float32(np.sqrt(64.0)))
        assert np.array_equal(m.embed_tokens(IDS), want)
    q = tiny_model("qwen2", 1)
    assert np.array_equal(q.embed_tokens(IDS), q.embed[IDS])
    # sqrt(96) is irrational: the float64 model must still use the float32-rounded factor
    cfg = dict(TINY_CONFIGS["gemma3"], hidden_size=96)
    m64 = Model(parse_config(cfg), random_tensors(cfg, 0), dtype=np.float64)
    assert m64.embed_scale == np.float64(np.float32(np.sqrt(96.0))) != np.sqrt(96.0)


@pytest.mark.clause("FW-9.5")
def test_gelu_tanh_and_attention_scale():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0], dtype=np.float64)
    want = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    assert np.allclose(L.gelu_tanh(x), want, rtol=0, atol=1e-15)
    from math import erf
    exact = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x])
    assert np.abs(L.gelu_tanh(x) - exact).max() < 1e-3          # the tanh approximation of GELU
    assert np.array_equal(L.geglu_tanh(x, x), L.gelu_tanh(x) * x)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    s = (q[0, 0] @ k[0, 0].T) * 0.3 + np.triu(np.full((3, 3), -np.inf), 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert np.allclose(L.causal_attention(q, k, v, scale=0.3)[0, 0], p @ v[0, 0])


@pytest.mark.clause("FW-9.6")
def test_sliding_window_mask_and_local_rope():
    m = L.causal_mask(5, np.float64, window=2)
    visible = np.isfinite(m)
    want = np.array([[t - 2 < s <= t for s in range(5)] for t in range(5)])
    assert np.array_equal(visible, want)
    assert np.array_equal(np.isfinite(L.causal_mask(5, np.float64)), np.tril(np.ones((5, 5), bool)))
    g = tiny_model("gemma3", 0)
    assert [g.layer_rope_kind(i) for i in range(3)] == ["local", "default", "local"]
    rope = g.rope_tables(7)
    assert set(rope.tables) == {"default", "local"}
    assert not np.allclose(rope.for_layer("local")[0], rope.for_layer("default")[0])
    assert set(tiny_model("qwen2", 0).rope_tables(7).tables) == {"default"}


@pytest.mark.clause("FW-9.7")
def test_final_logit_softcapping():
    import dataclasses

    g = tiny_model("gemma3", 3)
    capped = g.forward(IDS)
    g.config = dataclasses.replace(g.config, final_logit_softcapping=None)
    raw = g.forward(IDS)
    assert np.abs(raw).max() > 20 and np.abs(capped).max() < 20
    assert np.allclose(capped, 20 * np.tanh(raw / 20), rtol=0, atol=1e-5)


@pytest.mark.clause("FW-9.2")
def test_qwen2_biases_sit_after_the_site_quantizer():
    """With zero q/k/v weights the qkv site output is the bias alone: a transform and MXFP4 on
    the site's activations and weights must then change nothing."""
    import dataclasses

    m = tiny_model("qwen2", 5)
    m.layers = [dataclasses.replace(lw, qkv=np.zeros_like(lw.qkv)) for lw in m.layers]
    rng = np.random.default_rng(1)
    rot = Transform(np.linalg.qr(rng.standard_normal((64, 64)))[0])
    sq = SiteQuant(rot, "e2m1", "floor", "e2m1", "floor")
    plan = QuantPlan(sites={(i, "qkv"): sq for i in range(2)}, layers=())
    assert np.array_equal(m.forward(IDS, quant=plan), m.forward(IDS))
    on_o = QuantPlan(sites={(i, "o"): sq for i in range(2)}, layers=())
    assert not np.array_equal(m.forward(IDS, quant=on_o), m.forward(IDS))   # the plan does bite


@pytest.mark.clause("FW-9.1")
@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_scale_step_is_exact_for_every_family(name):
    from torq_ref.torq.scale_step import scaled_model

    m = tiny_model(name, 4, dtype=np.float64)
    rng = np.random.default_rng(2)
    scales = {(i, s): np.exp(rng.uniform(-1, 1, 64)) for i in range(m.config.num_layers)
              for s in ("qkv", "gate_up")}
    sm = scaled_model(m, scales)
    assert not np.array_equal(sm.layers[0].attn_norm, m.layers[0].attn_norm)
    assert np.abs(sm.forward(IDS) - m.forward(IDS)).max() < 1e-9
    assert len(m.site_weight(0, "qkv")) == m.config.q_dim + 2 * m.config.kv_dim


@pytest.mark.clause("FW-8.1")
def test_tiny_config_files_are_json(tmp_path):
    for name, cfg in TINY_CONFIGS.items():
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        assert read_config(tmp_path).family == parse_config(cfg).family
