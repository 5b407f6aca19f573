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


#: safetensors dtype codes this reader takes (BF16 is widened by placing its bits high, FW-1.5)
_ST_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2"}


def read_tensors(files: list[Path], dtype=np.float32) -> dict[str, np.ndarray]:
    """All tensors of the files as numpy arrays of ``dtype`` (FW-1.4, FW-1.5, FW-1.7).

    The header is parsed and checked here and every tensor is read with plain file reads, one at
    a time, straight into its array: peak memory is the arrays plus one tensor, with no memory map
    of the file (whose touched pages would count in the resident set until it is closed)."""
    out: dict[str, np.ndarray] = {}
    for f in files:
        if f.suffix != ".safetensors":
            raise WeightsFormatError(f"{f.name}: only .safetensors weights are read")
        out.update(_read_safetensors(f, np.dtype(dtype)))
    return out


def _read_safetensors(f: Path, dtype: np.dtype) -> dict[str, np.ndarray]:
    def bad(why: str) -> WeightsFormatError:
        return WeightsFormatError(f"{f.name} is not a readable safetensors file: {why}")

    size = f.stat().st_size
    with open(f, "rb") as h:
        head = h.read(8)
        if len(head) < 8:
            raise bad("shorter than its 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise bad(f"header length {n} exceeds the file ({size} bytes)")
        try:
            header = json.loads(h.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise bad(f"header is not JSON ({err})") from None
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        header.pop("__metadata__", None)
        base, body = 8 + n, size - 8 - n
        out = {}
        for name, info in header.items():
            try:
                code, shape = info["dtype"], tuple(int(d) for d in info["shape"])
                lo, hi = (int(v) for v in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise bad(f"tensor {name!r} has a malformed header entry ({err!r})") from None
            if code not in _ST_DTYPES:
                raise WeightsFormatError(f"{f.name}:{name}: dtype {code} is not supported "
                                         f"(only {', '.join(_ST_DTYPES)})")
            raw_dt = np.dtype(_ST_DTYPES[code])
            count = int(np.prod(shape, dtype=np.int64))
            if min(shape, default=1) < 0 or not 0 <= lo <= hi <= body or hi - lo != count * raw_dt.itemsize:
                raise bad(f"tensor {name!r} needs bytes {lo}..{hi} for shape {list(shape)} of {code}; "
                          f"the data section has {body} bytes (truncated or inconsistent)")
            h.seek(base + lo)
            arr = np.fromfile(h, dtype=raw_dt, count=count)                   # (count,) one read
            if code == "BF16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = np.ascontiguousarray(arr.reshape(shape), dtype=dtype)
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
