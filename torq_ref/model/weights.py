"""Reading checkpoint tensors from safetensors only (spec/FW.md section 1, FW-1.3 .. FW-1.5).

A model directory holds ``model.safetensors`` or shards listed by ``model.safetensors.index.json``.
Pickle-based files (``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.pkl``) are refused by name and
never opened. Tensors are looked up by their Hugging Face names and checked against the config.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .errors import MissingTensorError, ShapeMismatchError, WeightsFormatError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a model directory; refuses pickle checkpoints (FW-1.4)."""
    d = Path(model_dir)
    single = d / "model.safetensors"
    index = d / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        missing = [s for s in shards if not (d / s).is_file()]
        if missing:
            raise WeightsFormatError(f"shards listed in {index.name} are missing: {missing}")
        bad = [s for s in shards if not s.endswith(".safetensors")]
        if bad:
            raise WeightsFormatError(f"index lists non-safetensors shards {bad}; refused")
        return [d / s for s in shards]
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES) if d.is_dir() else []
    if pickles:
        raise WeightsFormatError(
            f"{d} holds only pickle-based weights {pickles}; they are refused and never unpickled "
            f"(convert them to safetensors)")
    raise WeightsFormatError(f"{d} has no model.safetensors (or sharded index)")


def read_tensors(files: list[Path], dtype=np.float32) -> dict[str, np.ndarray]:
    """All tensors of the files as numpy arrays of ``dtype`` (bfloat16 is widened via ml_dtypes-free bit shift)."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    for f in files:
        if f.suffix != ".safetensors":
            raise WeightsFormatError(f"{f.name}: only .safetensors weights are read")
        try:
            with safe_open(str(f), framework="numpy") as h:
                for name in h.keys():
                    out[name] = np.ascontiguousarray(h.get_tensor(name), dtype=dtype)
        except TypeError:  # bfloat16 is not a numpy dtype: read raw and widen
            out.update(_read_bf16_aware(f, dtype))
        except Exception as err:  # safetensors raises its own error types on bad headers
            if isinstance(err, WeightsFormatError):
                raise
            raise WeightsFormatError(f"{f.name} is not a readable safetensors file: {err}") from err
    return out


def _read_bf16_aware(f: Path, dtype) -> dict[str, np.ndarray]:
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    kinds = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": "bf16"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        kind = kinds.get(info["dtype"])
        if kind is None:
            raise WeightsFormatError(f"{f.name}:{name}: dtype {info['dtype']} is not supported")
        a, b = info["data_offsets"]
        buf = raw[base + a: base + b]
        if kind == "bf16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(kind).newbyteorder("<"))
        out[name] = np.ascontiguousarray(arr.reshape(info["shape"]), dtype=dtype)
    return out


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor names and shapes the architecture needs (FW-1.3, FW-9.2, FW-9.3)."""
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (v, h)
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (cfg.q_dim, h),
            p + "self_attn.k_proj.weight": (cfg.kv_dim, h),
            p + "self_attn.v_proj.weight": (cfg.kv_dim, h),
            p + "self_attn.o_proj.weight": (h, cfg.q_dim),
            p + "mlp.gate_proj.weight": (f, h),
            p + "mlp.up_proj.weight": (f, h),
            p + "mlp.down_proj.weight": (h, f),
        })
        if cfg.family in ("qwen3", "gemma3"):
            shapes[p + "self_attn.q_norm.weight"] = (cfg.head_dim,)
            shapes[p + "self_attn.k_norm.weight"] = (cfg.head_dim,)
        if cfg.attention_bias:                                            # Qwen2 (FW-9.2)
            shapes[p + "self_attn.q_proj.bias"] = (cfg.q_dim,)
            shapes[p + "self_attn.k_proj.bias"] = (cfg.kv_dim,)
            shapes[p + "self_attn.v_proj.bias"] = (cfg.kv_dim,)
        if cfg.family == "gemma3":                                        # sandwich norms (FW-9.3)
            shapes[p + "pre_feedforward_layernorm.weight"] = (h,)
            shapes[p + "post_feedforward_layernorm.weight"] = (h,)
    return shapes


def check_tensors(tensors: dict[str, np.ndarray], cfg: ModelConfig) -> None:
    """Raise MissingTensorError / ShapeMismatchError naming the first offending tensors (FW-1.3)."""
    want = expected_shapes(cfg)
    if cfg.tie_word_embeddings is False and "lm_head.weight" not in tensors:
        raise MissingTensorError("lm_head.weight is absent and tie_word_embeddings is false")
    missing = [k for k in want if k not in tensors]
    if missing:
        raise MissingTensorError(f"{len(missing)} required tensor(s) missing, e.g. {missing[:3]}")
    for k, shape in want.items():
        if tuple(tensors[k].shape) != shape:
            raise ShapeMismatchError(f"{k}: shape {tuple(tensors[k].shape)}, config implies {shape}")
