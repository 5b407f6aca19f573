"""Import a llama.cpp GGUF checkpoint into the Hugging Face layout (spec/FW.md section 5).

``import_gguf(gguf_path, out_dir)`` writes ``config.json``, ``model.safetensors`` (dequantized
float32 weights under Hugging Face names) and ``tokenizer.json`` (a byte-level BPE built with
``tokenizers``, :mod:`torq_ref.model.gguf_tokenizer`), so that :func:`torq_ref.model.load` reads
the result like any Hugging Face checkpoint. Architectures ``llama``, ``qwen2`` and ``gemma3`` are
supported (FW-5.4, FW-5.7); anything else raises UnsupportedModelError before any tensor work.

For ``llama`` only, llama.cpp's converter reorders the rows of ``attn_q`` / ``attn_k`` inside every
head: the Hugging Face row ``p * (d/2) + i`` of a head (half p in {0, 1}, i < d/2) is stored at
row ``2 i + p``, which suits llama.cpp's interleaved RoPE. The importer undoes it (FW-5.2), so the
rotate_half RoPE of the forward pass sees the original layout; Qwen2 and Gemma3 files keep the
Hugging Face order (transformers' loader permutes only llama).

Where a registered model's GGUF comes from (SmolLM2's included) is the registry's job
(:mod:`torq_ref.model.registry`, FW-10); this module only converts a file it is given (FW-5.1).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .errors import ModelError, UnsupportedModelError
from .gguf_tokenizer import add_bos, bytes_to_unicode, field, gguf_tokenizer  # noqa: F401 (re-exported)

IMPORTER_VERSION = 2


# ---------------------------------------------------------------------------- conversion
def unpermute_qk_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head row order of attn_q / attn_k (FW-5.2): (n_heads*d, in) -> same."""
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise ModelError(f"{rows} rows do not split into {n_heads} heads of even size")
    half = rows // n_heads // 2
    # GGUF row h*d + 2i + p  ->  HF row h*d + p*half + i
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's order (the inverse of :func:`unpermute_qk_rows`), for tests."""
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


#: GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N."), per architecture
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
LAYER_NAMES = {
    "llama": _LAYER_NAMES,
    "qwen2": dict(_LAYER_NAMES, **{f"attn_{n}.bias": f"self_attn.{n}_proj.bias" for n in "qkv"}),
    "gemma3": dict(_LAYER_NAMES, **{
        "ffn_norm.weight": "pre_feedforward_layernorm.weight",     # Gemma's norm before the MLP
        "post_attention_norm.weight": "post_attention_layernorm.weight",
        "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
        "attn_q_norm.weight": "self_attn.q_norm.weight",
        "attn_k_norm.weight": "self_attn.k_norm.weight",
    }),
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
#: supported GGUF general.architecture values
GGUF_ARCHITECTURES = tuple(LAYER_NAMES)


def hf_name(gguf_name: str, arch: str = "llama") -> str:
    """The Hugging Face name of a GGUF tensor for an architecture (FW-5.7)."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    names = LAYER_NAMES[arch]
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in names:
        return f"model.layers.{int(parts[1])}.{names[parts[2]]}"
    raise UnsupportedModelError(f"GGUF tensor {gguf_name!r} has no Hugging Face counterpart for {arch}")


_field = field


def gguf_architecture(reader) -> str:
    """``general.architecture``, refused unless llama, qwen2 or gemma3 (FW-5.4)."""
    arch = _field(reader, "general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported (supported: {', '.join(GGUF_ARCHITECTURES)})")
    return arch


def gguf_config(reader) -> dict:
    """config.json contents from the GGUF metadata, with transformers' defaults for what the
    file does not state (FW-5.7)."""
    arch = gguf_architecture(reader)
    if _field(reader, f"{arch}.rope.scaling.type") not in (None, "none"):
        raise UnsupportedModelError("GGUF rope scaling is not supported by the importer")
    if _field(reader, f"{arch}.attn_logit_softcapping") is not None:
        raise UnsupportedModelError("GGUF attn_logit_softcapping is not implemented")
    g = lambda k, d=None: _field(reader, f"{arch}.{k}", d)  # noqa: E731
    for key in ("embedding_length", "attention.head_count", "block_count", "feed_forward_length"):
        if g(key) is None:
            raise ModelError(f"GGUF metadata lacks {arch}.{key}")
    hidden, heads = int(g("embedding_length")), int(g("attention.head_count"))
    names = {t.name for t in reader.tensors}
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    n_layers = int(g("block_count"))
    eps = g("attention.layer_norm_rms_epsilon")
    cfg = {
        "hidden_size": hidden,
        "intermediate_size": int(g("feed_forward_length")),
        "num_hidden_layers": n_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": int(g("attention.head_count_kv", heads)),
        "rms_norm_eps": float(eps if eps is not None else 1e-6),
        "max_position_embeddings": int(g("context_length", 2048)),
        "vocab_size": int(g("vocab_size", len(tokens))),
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }
    if arch == "llama":
        cfg.update(architectures=["LlamaForCausalLM"], model_type="llama",
                   head_dim=int(g("rope.dimension_count", hidden // heads)),
                   rope_theta=float(g("rope.freq_base", 10000.0)), hidden_act="silu",
                   attention_bias=False, mlp_bias=False)
    elif arch == "qwen2":
        cfg.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                   rope_theta=float(g("rope.freq_base", 10000.0)), hidden_act="silu",
                   use_sliding_window=False)
    else:  # gemma3: what transformers' GGUF loader takes from the file, its config defaults for the rest
        from .config import FULL, SLIDING

        pattern = 6
        cfg.update(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
                   head_dim=int(g("attention.key_length", 256)),
                   rope_theta=float(g("rope.freq_base", 1_000_000.0)),
                   rope_local_base_freq=float(g("rope.freq_base_swa", 10_000.0)),
                   sliding_window=int(g("attention.sliding_window", 4096)),
                   layer_types=[SLIDING if (i + 1) % pattern else FULL for i in range(n_layers)],
                   query_pre_attn_scalar=256, hidden_activation="gelu_pytorch_tanh",
                   final_logit_softcapping=g("final_logit_softcapping"), attn_logit_softcapping=None)
    return cfg


def gguf_tensors(reader, config: dict, progress: bool = True) -> dict[str, np.ndarray]:
    """Dequantized float32 tensors under Hugging Face names (FW-5.2, FW-5.7): q/k rows
    un-permuted for llama only; Gemma3 norm weights stored as w = g - 1 (llama.cpp writes the
    multiplier g = 1 + w, transformers' Gemma3 adds the 1 back)."""
    from gguf.quants import dequantize
    from tqdm import tqdm

    arch = {"llama": "llama", "qwen2": "qwen2", "gemma3_text": "gemma3"}[config["model_type"]]
    out = {}
    for t in tqdm(reader.tensors, desc="dequantize", unit="tensor",
                  disable=not (progress and sys.stderr.isatty())):
        name = hf_name(t.name, arch)
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if arch == "llama" and name.endswith("q_proj.weight"):
            w = unpermute_qk_rows(w, config["num_attention_heads"])
        elif arch == "llama" and name.endswith("k_proj.weight"):
            w = unpermute_qk_rows(w, config["num_key_value_heads"])
        elif arch == "gemma3" and name.endswith("norm.weight"):
            w = w - np.float32(1)
        out[name] = np.ascontiguousarray(w)
    return out


# ---------------------------------------------------------------------------- file extent
#: byte width of the fixed-size GGUF value types (gguf's GGUFValueType numbering)
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _Cursor:
    """Little-endian reads from the bytes of a GGUF header; past the end raises EOFError."""

    def __init__(self, f):
        self.f, self.pos = f, 0

    def take(self, n: int) -> bytes:
        b = self.f.read(n)
        self.pos += len(b)
        if len(b) < n:
            raise EOFError(self.pos + n - len(b))
        return b

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def skip_value(self, vtype: int, key: str = "") -> object:
        if vtype == _STRING:
            return self.take(self.uint(8)).decode("utf-8", "replace")
        if vtype == _ARRAY:
            etype, count = self.uint(4), self.uint(8)
            if etype in _SCALAR:
                self.take(_SCALAR[etype] * count)
            else:
                for _ in range(count):
                    self.skip_value(etype)
            return None
        if vtype not in _SCALAR:
            raise ModelError(f"unknown GGUF value type {vtype} (key {key!r})")
        raw = self.take(_SCALAR[vtype])
        return int.from_bytes(raw, "little") if vtype in (4, 10) else None


def gguf_extent(path: str | Path) -> int:
    """The number of bytes a GGUF file must have (FW-5.8): its header, tensor infos and, at the
    data section's alignment, the end of its last tensor's data. Read from the header alone, so
    that a truncated file is named as such before any tensor is read; a header that is itself cut
    short gives the size its next field needed. Only GGUF versions 2 and 3 (64-bit counts)."""
    from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT

    with open(path, "rb") as f:
        c = _Cursor(f)
        try:
            if c.take(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF file (no GGUF magic)")
            if c.uint(4) not in (2, 3):
                raise ModelError(f"{path}: only GGUF versions 2 and 3 are read")
            n_tensors, n_kv = c.uint(8), c.uint(8)
            align = GGUF_DEFAULT_ALIGNMENT
            for _ in range(n_kv):
                key = c.take(c.uint(8)).decode("utf-8", "replace")
                value = c.skip_value(c.uint(4), key)
                if key == "general.alignment" and value:
                    align = int(value)
            end = 0
            for _ in range(n_tensors):
                c.take(c.uint(8))                                   # name
                dims = [c.uint(8) for _ in range(c.uint(4))]
                ttype, offset = c.uint(4), c.uint(8)
                if ttype not in GGML_QUANT_SIZES:
                    raise ModelError(f"{path}: unknown GGML tensor type {ttype}")
                block, size = GGML_QUANT_SIZES[ttype]
                end = max(end, offset + int(np.prod(dims, dtype=np.int64)) // block * size)
        except EOFError as err:
            return int(err.args[0])
        start = -(-c.pos // align) * align
    return start + end


def check_not_truncated(path: str | Path) -> None:
    """ModelError "truncated: expected N bytes, found M" when the file is shorter than its own
    header says (FW-5.8)."""
    want, have = gguf_extent(path), Path(path).stat().st_size
    if have < want:
        raise ModelError(f"{path}: truncated: expected {want} bytes, found {have}")


def import_gguf(gguf_path: str | Path, out_dir: str | Path, *, progress: bool = True,
                force: bool = False) -> Path:
    """Convert a GGUF file into a Hugging Face layout directory and return its path (FW-5.4).

    Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json (``add_bos_token``,
    ``bos_token``) and import.json (source name and size, importer version, architecture, BOS rule).
    Skips the work when ``out_dir`` already holds an import of the same file (same name and size,
    same importer version) unless ``force``. The architecture and tokenizer kind are checked before
    any tensor is dequantized.
    """
    from gguf import GGUFReader
    from safetensors.numpy import save_file

    src = Path(gguf_path)
    if not src.is_file():
        raise ModelError(f"GGUF file {src} not found")
    out = Path(out_dir)
    stamp = {"source": src.name, "size": src.stat().st_size, "importer_version": IMPORTER_VERSION}
    if not force and is_current_import(out, stamp):
        return out
    check_not_truncated(src)                            # FW-5.8: before the reader maps it
    try:
        reader = GGUFReader(str(src))
    except Exception as err:
        raise ModelError(f"{src} is not a readable GGUF file: {err}") from err
    config = gguf_config(reader)                       # refuses an unsupported architecture first
    tokenizer = gguf_tokenizer(reader)                 # and an unsupported vocabulary
    bos = bool(add_bos(reader))
    bos_id = _field(reader, "tokenizer.ggml.bos_token_id")
    if bos and bos_id is None:
        raise ModelError(f"{src.name}: tokenizer.ggml.add_bos_token is true but no bos_token_id is given")
    tensors = gguf_tensors(reader, config, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt", "source": src.name})
    del tensors
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save(str(out / "tokenizer.json"))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    tok_cfg = {"add_bos_token": bos, "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
               "bos_token": None if bos_id is None else str(tokens[int(bos_id)])}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    marker = dict(stamp, architecture=_field(reader, "general.architecture"), add_bos_token=bos,
                  bos_token_id=None if bos_id is None else int(bos_id))
    (out / "import.json").write_text(json.dumps(marker) + "\n")
    return out


def is_current_import(out: Path, stamp: dict) -> bool:
    """True when ``out`` holds a complete import whose import.json matches ``stamp``'s keys."""
    marker = Path(out) / "import.json"
    if not marker.is_file():
        return False
    try:
        got = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return (isinstance(got, dict) and all(got.get(k) == v for k, v in stamp.items())
            and all((Path(out) / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")))
