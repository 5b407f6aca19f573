"""Model configuration parsed from a Hugging Face ``config.json`` (spec/FW.md section 1).

Only what the forward pass of model-and-data.md needs is kept: the Llama family (optionally with
``llama3`` RoPE scaling) and the Qwen3 family (q_norm / k_norm). RoPE parameters are read both from
the transformers-4 layout (top-level ``rope_theta`` / ``rope_scaling``) and the transformers-5
layout (``rope_parameters``). Anything else is refused with :class:`UnsupportedModelError`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError, UnsupportedModelError

#: architecture name (config "architectures"[0] or model_type) -> family
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen3ForCausalLM": "qwen3",
    "llama": "llama",
    "qwen3": "qwen3",
}


@dataclass(frozen=True)
class RopeConfig:
    """RoPE: base ``theta`` and optional llama3 frequency scaling (``rope_type`` 'default' or 'llama3')."""

    theta: float
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    family: str                 # "llama" | "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeConfig
    tie_word_embeddings: bool
    max_position_embeddings: int = 2048
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim


def _rope_from(cfg: dict) -> RopeConfig:
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and params and not all(isinstance(v, dict) for v in params.values()):
        merged = dict(params)
    else:
        if isinstance(params, dict) and params:
            raise UnsupportedModelError("per-layer-type rope_parameters are not supported")
        merged = dict(cfg.get("rope_scaling") or {})
        merged.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    rope_type = merged.get("rope_type", merged.get("type", "default")) or "default"
    if merged.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError("partial_rotary_factor != 1 is not supported")
    theta = float(merged.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if rope_type == "default":
        return RopeConfig(theta=theta)
    if rope_type == "llama3":
        try:
            return RopeConfig(
                theta=theta, rope_type="llama3", factor=float(merged["factor"]),
                low_freq_factor=float(merged["low_freq_factor"]),
                high_freq_factor=float(merged["high_freq_factor"]),
                original_max_position_embeddings=int(merged["original_max_position_embeddings"]),
            )
        except KeyError as err:
            raise ModelError(f"llama3 rope scaling lacks {err.args[0]!r}") from None
    raise UnsupportedModelError(f"rope_type {rope_type!r} is not supported (only 'default', 'llama3')")


def parse_config(cfg: dict) -> ModelConfig:
    """Validate a config.json dict and return a :class:`ModelConfig` (FW-1.2)."""
    if not isinstance(cfg, dict):
        raise ModelError("config.json must hold a JSON object")
    archs = cfg.get("architectures") or []
    name = archs[0] if archs else cfg.get("model_type")
    family = ARCHITECTURES.get(name)
    if family is None or (cfg.get("model_type") not in (None, family)):
        raise UnsupportedModelError(
            f"unknown architecture {name!r} (model_type {cfg.get('model_type')!r}); "
            f"supported: LlamaForCausalLM, Qwen3ForCausalLM")
    if cfg.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"hidden_act {cfg.get('hidden_act')!r} is not supported (silu only)")
    for flag in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if cfg.get(flag):
            raise UnsupportedModelError(f"{flag}=true is not supported")
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or hidden // heads)
        conf = ModelConfig(
            family=family, vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]), num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope=_rope_from(cfg),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)), raw=dict(cfg),
        )
    except KeyError as err:
        raise ModelError(f"config.json lacks required key {err.args[0]!r}") from None
    if heads % kv_heads:
        raise ModelError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    if head_dim % 2:
        raise ModelError(f"head_dim {head_dim} must be even for RoPE")
    return conf


def read_config(model_dir: str | Path) -> ModelConfig:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{path} not found: a model directory needs config.json")
    return parse_config(json.loads(path.read_text(encoding="utf-8")))
