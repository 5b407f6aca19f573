"""Model configuration parsed from a Hugging Face ``config.json`` (spec/FW.md sections 1 and 9).

Four decoder families share one forward pass (FW-1.2, FW-9.1):

* ``llama`` (LlamaForCausalLM, optionally with ``llama3`` RoPE scaling),
* ``qwen3`` (Qwen3ForCausalLM: per-head q_norm / k_norm),
* ``qwen2`` (Qwen2ForCausalLM: q/k/v projection biases),
* ``gemma3`` (Gemma3ForCausalLM / ``gemma3_text``: scaled embedding, four norms per layer with
  the ``(1 + w)`` convention, q/k norm, GELU-tanh MLP, ``query_pre_attn_scalar``, sliding-window
  local layers with their own RoPE base, optional final-logit softcapping).

RoPE parameters are read both from the transformers-4 layout (top-level ``rope_theta`` /
``rope_scaling`` / ``rope_local_base_freq``) and the transformers-5 layout (``rope_parameters``,
per layer type for Gemma3). Anything else is refused with :class:`UnsupportedModelError`; a value
of the wrong type raises :class:`ModelError` naming its key (FW-1.6).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError, UnsupportedModelError

#: architecture name (config "architectures"[0] or model_type) -> family
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen2ForCausalLM": "qwen2",
    "Gemma3ForCausalLM": "gemma3",
    "llama": "llama",
    "qwen3": "qwen3",
    "qwen2": "qwen2",
    "gemma3_text": "gemma3",
}
#: model_type values accepted for each family
MODEL_TYPES = {"llama": ("llama",), "qwen3": ("qwen3",), "qwen2": ("qwen2",), "gemma3": ("gemma3_text",)}
FAMILIES = tuple(MODEL_TYPES)
#: layer kinds (transformers' ``layer_types`` values)
FULL, SLIDING = "full_attention", "sliding_attention"

_HIDDEN_ACT = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}


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
    family: str                 # one of FAMILIES
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeConfig            # RoPE of full-attention layers (all layers outside Gemma3)
    tie_word_embeddings: bool
    max_position_embeddings: int = 2048
    hidden_act: str = "silu"    # "silu" (SwiGLU) or "gelu_tanh" (GeGLU, Gemma3)
    attention_bias: bool = False            # q/k/v biases (Qwen2)
    query_pre_attn_scalar: float | None = None   # attention scale s^-0.5 (Gemma3); None: head_dim
    sliding_window: int | None = None       # local layers see keys q - W < k <= q (Gemma3)
    layer_types: tuple[str, ...] = ()       # FULL / SLIDING per layer (empty: all FULL)
    rope_local: RopeConfig | None = None    # RoPE of sliding layers (Gemma3)
    final_logit_softcapping: float | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attn_scale(self) -> float:
        """Factor on q k^T: query_pre_attn_scalar^-0.5 when set, else head_dim^-0.5 (FW-2.3, FW-9.5)."""
        return (self.query_pre_attn_scalar if self.query_pre_attn_scalar is not None else self.head_dim) ** -0.5

    def layer_type(self, i: int) -> str:
        return self.layer_types[i] if self.layer_types else FULL


# ---------------------------------------------------------------------------- typed values (FW-1.6)
def _number(cfg: dict, key: str, default=None, *, integer: bool = False, required: bool = False):
    """cfg[key] as an int / float; a missing required key or a non-numeric value raises ModelError
    naming the key (booleans and strings are not numbers)."""
    if key not in cfg or cfg[key] is None:
        if required:
            raise ModelError(f"config.json lacks required key {key!r}")
        return default
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ModelError(f"config.json: {key} = {v!r} is not a finite number")
    if integer:
        if isinstance(v, float) and not v.is_integer():
            raise ModelError(f"config.json: {key} = {v!r} is not an integer")
        return int(v)
    return float(v)


def _positive(cfg: dict, key: str, default=None, *, required: bool = False) -> int:
    v = _number(cfg, key, default, integer=True, required=required)
    if v is not None and v <= 0:
        raise ModelError(f"config.json: {key} = {v} must be a positive integer")
    return v


def _rope_block(d: dict, where: str, default_theta: float) -> RopeConfig:
    """A RopeConfig from one dict of rope settings (rope_theta, rope_type and llama3 keys)."""
    rope_type = d.get("rope_type", d.get("type", "default")) or "default"
    if d.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedModelError(f"{where}: partial_rotary_factor != 1 is not supported")
    theta = _number(d, "rope_theta", default_theta)
    if theta <= 0:
        raise ModelError(f"config.json: rope_theta = {theta} must be positive")
    if rope_type == "default":
        return RopeConfig(theta=theta)
    if rope_type == "llama3":
        for key in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if key not in d:
                raise ModelError(f"llama3 rope scaling lacks {key!r}")
        return RopeConfig(
            theta=theta, rope_type="llama3", factor=_number(d, "factor"),
            low_freq_factor=_number(d, "low_freq_factor"), high_freq_factor=_number(d, "high_freq_factor"),
            original_max_position_embeddings=_number(d, "original_max_position_embeddings", integer=True))
    raise UnsupportedModelError(f"{where}: rope_type {rope_type!r} is not supported (only 'default', 'llama3')")


def _rope_from(cfg: dict) -> RopeConfig:
    """RoPE of a single-kind model (Llama, Qwen2, Qwen3)."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and params and not all(isinstance(v, dict) for v in params.values()):
        merged = dict(params)
        if "rope_theta" not in merged and "rope_theta" in cfg:
            merged["rope_theta"] = cfg["rope_theta"]
    else:
        if isinstance(params, dict) and params:
            raise UnsupportedModelError("per-layer-type rope_parameters are only supported for Gemma3")
        merged = dict(cfg.get("rope_scaling") or {})
        if "rope_theta" in cfg:
            merged.setdefault("rope_theta", cfg["rope_theta"])
    return _rope_block(merged, "rope", 10000.0)


def _gemma3_ropes(cfg: dict) -> tuple[RopeConfig, RopeConfig]:
    """(global, local) RoPE of Gemma3: ``rope_parameters[full_attention / sliding_attention]``
    (transformers 5), else ``rope_theta`` / ``rope_scaling`` and ``rope_local_base_freq``, with
    transformers' defaults 1e6 / 1e4 (FW-9.6)."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and params and all(isinstance(v, dict) for v in params.values()):
        unknown = set(params) - {FULL, SLIDING}
        if unknown:
            raise UnsupportedModelError(f"rope_parameters for unknown layer types {sorted(unknown)}")
        full = dict(params.get(FULL) or {})
        local = dict(params.get(SLIDING) or {})
    elif isinstance(params, dict) and params:
        full, local = dict(params), {}
    else:
        full = dict(cfg.get("rope_scaling") or {})
        local = {}
    if "rope_theta" in cfg:
        full.setdefault("rope_theta", cfg["rope_theta"])
    if "rope_local_base_freq" in cfg:
        local.setdefault("rope_theta", _number(cfg, "rope_local_base_freq"))
    return (_rope_block(full, "rope_parameters.full_attention", 1_000_000.0),
            _rope_block(local, "rope_parameters.sliding_attention", 10_000.0))


def _gemma3_layer_types(cfg: dict, n_layers: int) -> tuple[str, ...]:
    """``layer_types`` as given, else transformers' rule: layer i is sliding unless
    (i + 1) % sliding_window_pattern == 0 (pattern default 6) (FW-9.6)."""
    types = cfg.get("layer_types")
    if types is None:
        pattern = _positive(cfg, "sliding_window_pattern", 6)
        types = [SLIDING if (i + 1) % pattern else FULL for i in range(n_layers)]
    if not isinstance(types, list) or len(types) != n_layers or not set(types) <= {FULL, SLIDING}:
        raise ModelError(f"config.json: layer_types must list {n_layers} of {FULL!r} / {SLIDING!r}; got {types!r}")
    return tuple(types)


def _family(cfg: dict) -> str:
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list):
        raise ModelError(f"config.json: architectures = {archs!r} is not a list")
    name = archs[0] if archs else cfg.get("model_type")
    family = ARCHITECTURES.get(name)
    if family is None or cfg.get("model_type") not in (None, *MODEL_TYPES[family]):
        raise UnsupportedModelError(
            f"unknown architecture {name!r} (model_type {cfg.get('model_type')!r}); supported: "
            f"LlamaForCausalLM, Qwen3ForCausalLM, Qwen2ForCausalLM, Gemma3ForCausalLM")
    return family


def parse_config(cfg: dict) -> ModelConfig:
    """Validate a config.json dict and return a :class:`ModelConfig` (FW-1.2, FW-1.6, FW-9.1)."""
    if not isinstance(cfg, dict):
        raise ModelError("config.json must hold a JSON object")
    family = _family(cfg)
    act_key = "hidden_activation" if family == "gemma3" else "hidden_act"
    act_default = "gelu_pytorch_tanh" if family == "gemma3" else "silu"
    act = cfg.get(act_key) or (cfg.get("hidden_act") if family == "gemma3" else None) or act_default
    want_act = "gelu_pytorch_tanh" if family == "gemma3" else "silu"
    if act != want_act:
        raise UnsupportedModelError(f"{act_key} {act!r} is not supported for {family} ({want_act} only)")
    for flag in ("attention_bias", "mlp_bias", "use_sliding_window", "use_bidirectional_attention"):
        if cfg.get(flag):
            raise UnsupportedModelError(f"{flag}=true is not supported")
    if cfg.get("attn_logit_softcapping") is not None:
        raise UnsupportedModelError("attn_logit_softcapping is not implemented (transformers' Gemma3 ignores it too)")
    hidden = _positive(cfg, "hidden_size", required=True)
    heads = _positive(cfg, "num_attention_heads", required=True)
    kv_heads = _positive(cfg, "num_key_value_heads", heads)
    head_dim = _positive(cfg, "head_dim", hidden // heads)
    n_layers = _positive(cfg, "num_hidden_layers", required=True)
    extra = {}
    if family == "gemma3":
        rope, rope_local = _gemma3_ropes(cfg)
        window = _positive(cfg, "sliding_window", 4096)
        cap = _number(cfg, "final_logit_softcapping")
        if cap is not None and cap <= 0:
            raise ModelError(f"config.json: final_logit_softcapping = {cap} must be positive")
        extra = dict(hidden_act="gelu_tanh", query_pre_attn_scalar=_number(cfg, "query_pre_attn_scalar", 256.0),
                     sliding_window=window, layer_types=_gemma3_layer_types(cfg, n_layers),
                     rope_local=rope_local, final_logit_softcapping=cap)
        if extra["query_pre_attn_scalar"] <= 0:
            raise ModelError("config.json: query_pre_attn_scalar must be positive")
    else:
        rope = _rope_from(cfg)
        if family == "qwen2":
            extra = dict(attention_bias=True)
    tie_default = family == "gemma3"
    conf = ModelConfig(
        family=family, vocab_size=_positive(cfg, "vocab_size", required=True), hidden_size=hidden,
        intermediate_size=_positive(cfg, "intermediate_size", required=True), num_layers=n_layers,
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        rms_norm_eps=_number(cfg, "rms_norm_eps", 1e-6), rope=rope,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        max_position_embeddings=_positive(cfg, "max_position_embeddings", 2048), raw=dict(cfg), **extra,
    )
    if heads % kv_heads:
        raise ModelError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    if head_dim % 2:
        raise ModelError(f"head_dim {head_dim} must be even for RoPE")
    if not conf.rms_norm_eps >= 0:
        raise ModelError(f"config.json: rms_norm_eps = {conf.rms_norm_eps} must be >= 0")
    return conf


def read_config(model_dir: str | Path) -> ModelConfig:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{path} not found: a model directory needs config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"{path} is not valid JSON: {err}") from None
    return parse_config(data)
