"""Tiny seeded random models for tests and golden logits (spec/FW.md section 8).

Weights are drawn from ``np.random.default_rng(seed)`` in a fixed tensor order, so a model is
fully described by (config, seed) and nothing large is committed. Scales keep activations O(1):
embeddings N(0, 1), projections N(0, 1/fan_in), norm multipliers 1 + N(0, 0.1^2) (Gemma3 stores
w with multiplier 1 + w, so its norm weights are N(0, 0.1^2)), biases N(0, 0.1^2).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import parse_config
from .weights import expected_shapes

#: config.json dicts of the tiny models (all site widths are multiples of 32)
TINY_CONFIGS: dict[str, dict] = {
    "llama": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96,
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": False,
        "hidden_act": "silu",
    },
    "llama3_tied": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 96,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": True,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "hidden_act": "silu",
    },
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 96,
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 128, "tie_word_embeddings": False,
        "hidden_act": "silu",
    },
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 96,
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 128, "tie_word_embeddings": True,
        "hidden_act": "silu",
    },
    "gemma3": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 96,
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 4,
        "sliding_window_pattern": 2, "query_pre_attn_scalar": 24, "final_logit_softcapping": 20.0,
        "max_position_embeddings": 128, "tie_word_embeddings": True,
        "hidden_activation": "gelu_pytorch_tanh",
    },
}


def random_tensors(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded float32 weights for every tensor the config needs, in sorted-name order."""
    conf = parse_config(cfg)
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in sorted(expected_shapes(conf).items()):
        if name.endswith(".bias") or (len(shape) == 1 and conf.family == "gemma3"):
            w = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            w = rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / np.sqrt(shape[1])
        out[name] = w.astype(np.float32)
    return out


def write_model_dir(cfg: dict, tensors: dict[str, np.ndarray], out_dir: str | Path) -> Path:
    """config.json + model.safetensors in ``out_dir`` (no tokenizer)."""
    from safetensors.numpy import save_file

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(d / "model.safetensors"))
    return d


def tiny_model(name: str = "llama", seed: int = 0, dtype=np.float32):
    """A :class:`Model` built from ``TINY_CONFIGS[name]`` and seeded random weights (FW-8.1)."""
    from .model import Model

    cfg = TINY_CONFIGS[name]
    return Model(parse_config(cfg), random_tensors(cfg, seed), dtype=dtype)
