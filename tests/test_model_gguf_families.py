"""GGUF import of qwen2 and gemma3 files (spec/FW.md FW-5.2 .. FW-5.7, FW-6.5), on tiny synthetic
GGUFs written as llama.cpp writes them: Qwen2 with q/k/v biases, a separate output matrix and the
qwen2 pre-tokenizer; Gemma3 with norms stored as 1 + w, a SentencePiece vocabulary without merges
(byte tokens, a whitespace token, control and user-defined tokens) and add_bos_token set.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from torq_ref.model import UnsupportedModelError, load
from torq_ref.model import gguf_import as gi
from torq_ref.model.config import parse_config
from torq_ref.model.data import bos_token_id, split_windows
from torq_ref.model.model import Model
from torq_ref.model.tiny import TINY_CONFIGS, random_tensors

gguf = pytest.importorskip("gguf")

BYTES = list(gi.bytes_to_unicode().values())
QWEN_MERGES = ["Ġ t", "h e", "Ġt he", "i s", "1 2"]
QWEN_TOKENS = BYTES + ["Ġt", "he", "Ġthe", "is", "12", "<|endoftext|>", "<|im_start|>", "<tool>"]
QWEN_TYPES = [1] * (len(BYTES) + 5) + [3, 3, 4]

SP = "\u2581"
GEMMA_TOKENS = (["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(256)]
                + [SP, "t", "h", "e", "i", "s", "c", "a", "n", "x", SP + "t", "he", SP + "the", "is", "  ",
                   "\n", SP + "is", "at", "<start_of_turn>", "<b>"])
GEMMA_TYPES = [3] * 5 + [6] * 256 + [1] * (len(GEMMA_TOKENS) - 261 - 2) + [3, 4]

QWEN_CFG = dict(TINY_CONFIGS["qwen2"], vocab_size=len(QWEN_TOKENS), tie_word_embeddings=False)
GEMMA_CFG = {k: v for k, v in TINY_CONFIGS["gemma3"].items() if k not in (
    "final_logit_softcapping", "query_pre_attn_scalar", "sliding_window_pattern")}
GEMMA_CFG.update(vocab_size=len(GEMMA_TOKENS), num_hidden_layers=7, head_dim=32, sliding_window=5)

_TO_GGUF = {arch: {v: k for k, v in names.items()} for arch, names in gi.LAYER_NAMES.items()}


def _gguf_name(hf: str, arch: str) -> str:
    for g, h in gi._GLOBAL_NAMES.items():
        if h == hf:
            return g
    layer, rest = hf[len("model.layers."):].split(".", 1)
    return f"blk.{layer}." + _TO_GGUF[arch][rest]


def _write(path, arch, cfg, tensors, tokenizer):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if arch == "gemma3":
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
        w.add_sliding_window(cfg["sliding_window"])
    tokenizer(w)
    used = {}
    for name, t in sorted(tensors.items()):
        stored = t + np.float32(1) if (arch == "gemma3" and name.endswith("norm.weight")) else t
        if name == "model.embed_tokens.weight":
            q = gguf.quants.quantize(stored, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(_gguf_name(name, arch), q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            used[name] = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(_gguf_name(name, arch), stored)
            used[name] = (stored - np.float32(1)) if stored is not t else t
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return used


def _qwen_tok(w):
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(QWEN_TOKENS)
    w.add_token_types(QWEN_TYPES)
    w.add_token_merges(QWEN_MERGES)
    w.add_bos_token_id(QWEN_TOKENS.index("<|endoftext|>"))
    w.add_eos_token_id(QWEN_TOKENS.index("<|endoftext|>"))
    w.add_add_bos_token(False)


def _gemma_tok(w):
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(GEMMA_TOKENS)
    w.add_token_scores([-1000.0] * 5 + [0.0] * 256 + [-float(i) for i in range(len(GEMMA_TOKENS) - 261)])
    w.add_token_types(GEMMA_TYPES)
    w.add_pad_token_id(0)
    w.add_eos_token_id(1)
    w.add_bos_token_id(2)
    w.add_unk_token_id(3)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)


@pytest.fixture(scope="module")
def qwen_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen")
    used = _write(d / "qwen.gguf", "qwen2", QWEN_CFG, random_tensors(QWEN_CFG, 1), _qwen_tok)
    return d / "qwen.gguf", used


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("gemma")
    used = _write(d / "gemma.gguf", "gemma3", GEMMA_CFG, random_tensors(GEMMA_CFG, 2), _gemma_tok)
    return d / "gemma.gguf", used


def _ours_vs_source(out, cfg, used):
    ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=(2, 13))
    return load(out).forward(ids), Model(parse_config(cfg), used).forward(ids)


@pytest.mark.clause("FW-5.7", "FW-5.2", "FW-5.4")
def test_qwen2_import_reproduces_the_model(qwen_gguf, tmp_path):
    path, used = qwen_gguf
    out = gi.import_gguf(path, tmp_path / "q", progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["tie_word_embeddings"] is False
    got, want = _ours_vs_source(out, QWEN_CFG, used)      # q/k rows kept as stored: no permutation
    assert np.abs(got - want).max() < 1e-5
    imp = json.loads((out / "import.json").read_text())
    assert imp["architecture"] == "qwen2" and imp["add_bos_token"] is False
    assert bos_token_id(out) is None


@pytest.mark.clause("FW-5.7", "FW-5.4", "FW-9.3")
def test_gemma3_import_reproduces_the_model(gemma_gguf, tmp_path):
    path, used = gemma_gguf
    out = gi.import_gguf(path, tmp_path / "g", progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "gemma3_text" and cfg["tie_word_embeddings"] is True
    assert cfg["layer_types"] == ["sliding_attention"] * 5 + ["full_attention", "sliding_attention"]
    assert (cfg["query_pre_attn_scalar"], cfg["rope_local_base_freq"], cfg["sliding_window"]) == (256, 1e4, 5)
    from safetensors.numpy import load_file

    st = load_file(str(out / "model.safetensors"))
    # llama.cpp's stored multiplier g = 1 + w comes back as w
    assert np.array_equal(st["model.layers.0.input_layernorm.weight"], used["model.layers.0.input_layernorm.weight"])
    ref_cfg = dict(GEMMA_CFG, query_pre_attn_scalar=256)
    got, want = _ours_vs_source(out, ref_cfg, used)
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.clause("FW-5.3")
def test_qwen2_tokenizer_uses_the_qwen2_split(qwen_gguf, tmp_path):
    from tokenizers import Tokenizer

    out = gi.import_gguf(qwen_gguf[0], tmp_path / "q", progress=False)
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    v = {t: i for i, t in enumerate(QWEN_TOKENS)}
    # Qwen2 splits digits one by one, so the "12" merge never applies; GPT-2's split would keep "12"
    assert tk.encode("12", add_special_tokens=False).ids == [v["1"], v["2"]]
    assert tk.encode(" the<tool>is", add_special_tokens=False).ids == [v["Ġthe"], v["<tool>"], v["is"]]
    text = "the cat is 12 é<|im_start|>x"
    assert tk.decode(tk.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text


@pytest.mark.clause("FW-5.6")
def test_gemma3_sentencepiece_tokenizer(gemma_gguf, tmp_path):
    from tokenizers import Tokenizer

    from torq_ref.model.gguf_tokenizer import derived_merges

    out = gi.import_gguf(gemma_gguf[0], tmp_path / "g", progress=False)
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    v = {t: i for i, t in enumerate(GEMMA_TOKENS)}
    enc = tk.encode(" the cat is", add_special_tokens=False).ids
    assert enc[0] == v[SP + "the"] and v[SP + "is"] == enc[-1]
    assert tk.encode("  ", add_special_tokens=False).ids == [v["  "]]            # respelled "▁▁"
    assert tk.encode("q", add_special_tokens=False).ids == [v["<0x71>"]]       # byte fallback
    assert tk.encode("<start_of_turn>he<b>", add_special_tokens=False).ids == [v["<start_of_turn>"], v["he"], v["<b>"]]
    text = "the hat\n is  x é"
    assert tk.decode(tk.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text
    # merges rank by the merged token's position: "▁t" (earlier) before "he", "▁the" after both
    m = derived_merges([SP, "t", "h", "e", SP + "t", "he", SP + "the", "th"])
    assert m == [(SP, "t"), ("h", "e"), (SP + "t", "he"), ("t", "h")]
    # two splits of one token: the longer left piece first
    assert derived_merges(["a", "b", "c", "ab", "bc", "abc"]) == [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]
    # a repeated token ranks by its last position
    assert derived_merges(["a", "b", "ab", "ba", "ab"]) == [("b", "a"), ("a", "b")]


@pytest.mark.clause("FW-6.5", "FW-5.4")
def test_bos_rule_is_recorded_and_windows_start_with_bos(gemma_gguf, tmp_path):
    out = gi.import_gguf(gemma_gguf[0], tmp_path / "g", progress=False)
    imp = json.loads((out / "import.json").read_text())
    assert imp["add_bos_token"] is True and imp["bos_token_id"] == 2
    assert json.loads((out / "tokenizer_config.json").read_text())["bos_token"] == "<bos>"
    m = load(out)
    assert m.add_bos and m.bos_token_id == 2
    ids = np.arange(100, 100 + 4 * 9)
    ev, cal = split_windows(ids, 3, 1, window=10, bos_id=2)
    assert ev.shape == (3, 10) and cal.shape == (1, 10)
    assert (ev[:, 0] == 2).all() and (cal[:, 0] == 2).all()
    assert np.array_equal(np.concatenate([ev[:, 1:].ravel(), cal[:, 1:].ravel()]), ids)   # 9 text tokens each
    from torq_ref.model.data import text_windows

    e2, _ = text_windows(m, 1, 0, window=4, text="the hat is the cat")
    assert e2[0, 0] == 2
    e3, _ = text_windows(m.tokenizer(), 1, 0, window=4, text="the hat is the cat")
    assert e3[0, 0] != 2 or e3[0, 0] == e2[0, 1]


@pytest.mark.clause("FW-5.4", "FW-5.3")
def test_unsupported_tokenizers_and_tensors_are_refused(tmp_path):
    cfg = dict(QWEN_CFG)

    def bad_pre(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("tekken")
        w.add_token_list(QWEN_TOKENS)
        w.add_token_merges(QWEN_MERGES)

    _write(tmp_path / "p.gguf", "qwen2", cfg, random_tensors(cfg, 0), bad_pre)
    with pytest.raises(UnsupportedModelError, match="tekken"):
        gi.import_gguf(tmp_path / "p.gguf", tmp_path / "o1")
    assert not (tmp_path / "o1" / "model.safetensors").exists()

    def sp_for_qwen(w):
        _gemma_tok(w)

    _write(tmp_path / "s.gguf", "qwen2", cfg, random_tensors(cfg, 0), sp_for_qwen)
    with pytest.raises(UnsupportedModelError, match="tokenizer.ggml.model"):
        gi.import_gguf(tmp_path / "s.gguf", tmp_path / "o2")
    with pytest.raises(UnsupportedModelError, match="attn_q_norm"):
        gi.hf_name("blk.0.attn_q_norm.weight", "qwen2")


@pytest.mark.crosscheck
@pytest.mark.clause("FW-5.3", "FW-5.6", "FW-5.7", "FW-5.2")
@pytest.mark.parametrize("which", ["qwen", "gemma"])
def test_tiny_family_ggufs_match_transformers(which, qwen_gguf, gemma_gguf, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    path, _ = qwen_gguf if which == "qwen" else gemma_gguf
    out = gi.import_gguf(path, tmp_path / which, progress=False)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tk = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in ["the theis  is\n\nthe 2024 <|im_start|>x the", " the cat is  at\n\n  hat <start_of_turn>q é"]:
        assert tk.encode(text, add_special_tokens=False).ids == hf_tok(text, add_special_tokens=False)["input_ids"]
    assert bool(getattr(hf_tok, "add_bos_token", False)) == (bos_token_id(out) is not None)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    vocab = len(QWEN_TOKENS) if which == "qwen" else len(GEMMA_TOKENS)
    ids = np.random.default_rng(1).integers(0, vocab, size=(2, 20))
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids), use_cache=False).logits.numpy()
    err = np.abs(load(out).forward(ids) - ref).max()
    assert err < 1e-4, f"{which}: max |ours - transformers| = {err:.3g}"


@pytest.mark.clause("FW-7.1", "FW-6.5", "FW-10.4")
def test_ppl_command_takes_a_gguf_path_and_applies_bos(gemma_gguf, tmp_path, capsys):
    from torq_ref.cli import main

    path, _ = gemma_gguf
    assert main(["models", "ppl", "--model", str(path), "--cache", str(tmp_path), "--eval-windows", "1", "--window", "8"]) == 0
    out = capsys.readouterr().out
    assert "BOS 2" in out and "1x8" in out and str(tmp_path / "imported" / "gemma") in out
