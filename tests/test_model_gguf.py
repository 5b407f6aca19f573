"""GGUF import and the model locator (spec/FW.md section 5), on a tiny synthetic llama GGUF."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from torq_ref.model import ModelError, UnsupportedModelError, load
from torq_ref.model import gguf_import as gi
from torq_ref.model.config import parse_config
from torq_ref.model.model import Model
from torq_ref.model.tiny import TINY_CONFIGS, random_tensors

gguf = pytest.importorskip("gguf")

BYTES = list(gi.bytes_to_unicode().values())
MERGES = ["Ġ t", "h e", "Ġt he", "i s"]
TOKENS = ["<|endoftext|>", "<|im_start|>"] + BYTES + ["Ġt", "he", "Ġthe", "is"]
CFG = dict(TINY_CONFIGS["llama"], vocab_size=len(TOKENS), tie_word_embeddings=True)


def _to_gguf_name(hf):
    for g, h in gi._GLOBAL_NAMES.items():
        if h == hf:
            return g
    layer, rest = hf[len("model.layers."):].split(".", 1)
    return f"blk.{layer}." + {v: k for k, v in gi._LAYER_NAMES.items()}[rest]


def write_tiny_gguf(path, arch="llama", seed=0):
    """A llama GGUF as llama.cpp writes it: q/k rows permuted, Q8_0 embedding, byte-level BPE."""
    tensors = random_tensors(CFG, seed)
    w = gguf.GGUFWriter(str(path), arch)
    c = CFG
    w.add_block_count(c["num_hidden_layers"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_rope_dimension_count(c["hidden_size"] // c["num_attention_heads"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(TOKENS)
    w.add_token_types([3, 3] + [1] * (len(TOKENS) - 2))
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(0)
    used = {}
    for name, t in sorted(tensors.items()):
        if name.endswith("q_proj.weight"):
            t = gi.permute_qk_rows(t, c["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            t = gi.permute_qk_rows(t, c["num_key_value_heads"])
        if name == "model.embed_tokens.weight":
            q = gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(_to_gguf_name(name), q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            used[name] = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(_to_gguf_name(name), t)
            used[name] = tensors[name]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return used


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    used = write_tiny_gguf(d / "tiny.gguf")
    return d / "tiny.gguf", used


@pytest.mark.clause("FW-5.2")
def test_unpermute_inverts_llama_cpp_order():
    w = np.arange(3 * 8 * 2).reshape(3 * 8, 2)
    p = gi.permute_qk_rows(w, 3)
    # within head 0 (d = 8): GGUF row 2i + p holds HF row p*4 + i
    assert [r[0] // 2 for r in p[:8]] == [0, 4, 1, 5, 2, 6, 3, 7]
    assert np.array_equal(gi.unpermute_qk_rows(p, 3), w)
    with pytest.raises(ModelError):
        gi.unpermute_qk_rows(np.zeros((10, 2)), 3)


@pytest.mark.clause("FW-5.2", "FW-5.4")
def test_import_reproduces_the_original_model(tiny_gguf, tmp_path):
    path, used = tiny_gguf
    out = gi.import_gguf(path, tmp_path / "m", progress=False)
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "import.json"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is True and cfg["num_key_value_heads"] == 2
    ids = np.random.default_rng(0).integers(0, len(TOKENS), size=(2, 12))
    want = Model(parse_config(CFG), used).forward(ids)
    got = load(out).forward(ids)
    assert np.abs(got - want).max() < 1e-5
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert gi.import_gguf(path, out) == out and (out / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.clause("FW-5.3")
def test_tokenizer_from_gguf(tiny_gguf, tmp_path):
    from tokenizers import Tokenizer

    out = gi.import_gguf(tiny_gguf[0], tmp_path / "m", progress=False)
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = "the cat is in the hat<|endoftext|> 12 é"
    enc = tk.encode(text, add_special_tokens=False)
    assert tk.decode(enc.ids, skip_special_tokens=False) == text
    vocab = {t: i for i, t in enumerate(TOKENS)}
    assert enc.ids[:2] == [vocab["t"], vocab["he"]]             # no "t he" merge without the space
    assert vocab["Ġthe"] in enc.ids and vocab["is"] in enc.ids and 0 in enc.ids


@pytest.mark.clause("FW-5.3", "FW-5.2")
@pytest.mark.crosscheck
def test_tiny_gguf_matches_transformers(tiny_gguf, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path, used = tiny_gguf
    out = gi.import_gguf(path, tmp_path / "m", progress=False)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = "the theis  is\n\nthe 2024 <|im_start|>x the"
    assert tk.encode(text, add_special_tokens=False).ids == hf_tok(text, add_special_tokens=False)["input_ids"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    ids = np.random.default_rng(1).integers(0, len(TOKENS), size=(1, 20))
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    assert np.abs(load(out).forward(ids) - ref).max() < 1e-4


@pytest.mark.clause("FW-5.4")
def test_unsupported_gguf_architecture(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "falcon")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedModelError, match="falcon"):
        gi.import_gguf(tmp_path / "x.gguf", tmp_path / "out")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelError, match="GGUF"):
        gi.import_gguf(tmp_path / "bad.gguf", tmp_path / "out2")
    with pytest.raises(ModelError, match="not found"):
        gi.import_gguf(tmp_path / "none.gguf", tmp_path / "out3")


@pytest.mark.clause("FW-5.1")
def test_cache_dir_order(tmp_path, monkeypatch):
    from torq_ref.model.registry import cache_dir

    assert cache_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("TORQ_REF_CACHE", str(tmp_path / "envcache"))
    assert cache_dir() == tmp_path / "envcache"
    monkeypatch.delenv("TORQ_REF_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "torq_ref"
