"""Forward pass of torq_ref.model without torch: golden logits, equations, loading errors (spec/FW.md 1, 2, 8)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from torq_ref.model import (MissingTensorError, ModelError, ShapeMismatchError, UnsupportedModelError,
                            WeightsFormatError, load, parse_config)
from torq_ref.model import layers as L
from torq_ref.model.config import RopeConfig
from torq_ref.model.golden import FILE, golden_ids
from torq_ref.model.tiny import TINY_CONFIGS, random_tensors, tiny_model, write_model_dir

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "model" / FILE


def _golden_cases():
    return json.loads(GOLDEN.read_text())["cases"]


@pytest.mark.clause("FW-8.2", "FW-2.5")
@pytest.mark.parametrize("case", _golden_cases(), ids=lambda c: c["model"])
def test_golden_logits(case):
    ids = np.asarray(case["ids"])
    assert np.array_equal(ids, golden_ids(case["model"], case["seed"]))
    want = np.asarray([float(v) for v in case["logits"]], dtype=np.float64).reshape(case["shape"])
    got = tiny_model(case["model"], case["seed"]).forward(ids)
    assert got.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got - want).max()
    bound = 1e-6 * max(1.0, float(np.abs(want).max()))     # FW-8.2: relative to the largest logit
    assert err < bound, f"{case['model']}: max error {err:.3g} > {bound:.3g}"
    got64 = tiny_model(case["model"], case["seed"], dtype=np.float64).forward(ids)
    assert got64.dtype == np.float64 and np.abs(got64 - want).max() < 1e-4


@pytest.mark.clause("FW-1.1")
def test_load_directory_roundtrip_and_sharded(tmp_path):
    cfg = TINY_CONFIGS["qwen3"]
    t = random_tensors(cfg, 3)
    d = write_model_dir(cfg, t, tmp_path / "single")
    ids = np.arange(10)[None] % 96
    ref = load(d).forward(ids)
    # the same tensors split over two shards with an index
    from safetensors.numpy import save_file
    s = tmp_path / "sharded"
    s.mkdir()
    (s / "config.json").write_text(json.dumps(cfg))
    names = sorted(t)
    half = len(names) // 2
    parts = {"a-00001.safetensors": names[:half], "a-00002.safetensors": names[half:]}
    for fn, ks in parts.items():
        save_file({k: t[k] for k in ks}, str(s / fn))
    (s / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: fn for fn, ks in parts.items() for k in ks}}))
    assert np.array_equal(load(s).forward(ids), ref)
    with pytest.raises(ModelError, match="float32 or float64"):
        load(d, dtype=np.float16)


@pytest.mark.clause("FW-1.5")
def test_half_precision_tensors_are_widened(tmp_path):
    cfg = TINY_CONFIGS["llama"]
    t = random_tensors(cfg, 1)
    # bfloat16 written by hand: the top 16 bits of float32 values that bf16 represents exactly
    bits = (t["model.embed_tokens.weight"].view(np.uint32) >> 16).astype(np.uint16)
    exact_bf16 = (bits.astype(np.uint32) << 16).view(np.float32)
    t16 = dict(t, **{"model.norm.weight": t["model.norm.weight"].astype(np.float16)})
    d = write_model_dir(cfg, t16, tmp_path / "m")
    header_patch = _rewrite_as_bf16(d / "model.safetensors", "model.embed_tokens.weight", bits)
    assert header_patch
    m = load(d)
    assert np.array_equal(m.embed, exact_bf16)
    assert np.array_equal(m.final_norm, t["model.norm.weight"].astype(np.float16).astype(np.float32))


def _rewrite_as_bf16(path, name, bits):
    """Replace tensor ``name`` by a BF16 tensor holding ``bits`` (rewrites the safetensors file)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    blobs = {}
    for k, info in header.items():
        if k == "__metadata__":
            continue
        a, b = info["data_offsets"]
        blobs[k] = (info, raw[8 + n + a: 8 + n + b])
    blobs[name] = ({"dtype": "BF16", "shape": list(bits.shape)}, bits.astype("<u2").tobytes())
    new_header, data, off = {}, b"", 0
    for k, (info, blob) in blobs.items():
        new_header[k] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [off, off + len(blob)]}
        data += blob
        off += len(blob)
    h = json.dumps(new_header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)
    return True


@pytest.mark.clause("FW-1.2")
@pytest.mark.parametrize("patch, match", [
    ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, "unknown architecture"),
    ({"architectures": ["MistralForCausalLM"]}, "unknown architecture"),
    ({"attention_bias": True}, "attention_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "rope_type"),
])
def test_unsupported_configs(patch, match):
    cfg = dict(TINY_CONFIGS["llama"], **patch)
    with pytest.raises(UnsupportedModelError, match=match):
        parse_config(cfg)


@pytest.mark.clause("FW-1.2")
def test_config_rope_layouts_and_missing_keys():
    v4 = parse_config(TINY_CONFIGS["llama3_tied"])
    cfg5 = {k: v for k, v in TINY_CONFIGS["llama3_tied"].items() if k not in ("rope_theta", "rope_scaling")}
    cfg5["rope_parameters"] = dict(TINY_CONFIGS["llama3_tied"]["rope_scaling"], rope_theta=10000.0)
    assert parse_config(cfg5).rope == v4.rope and v4.rope.rope_type == "llama3"
    bad = {k: v for k, v in TINY_CONFIGS["llama"].items() if k != "hidden_size"}
    with pytest.raises(ModelError, match="hidden_size"):
        parse_config(bad)


@pytest.mark.clause("FW-1.3")
def test_missing_and_misshaped_tensors(tmp_path):
    cfg = TINY_CONFIGS["llama"]
    t = random_tensors(cfg, 0)
    t.pop("model.layers.1.mlp.down_proj.weight")
    with pytest.raises(MissingTensorError, match="down_proj"):
        load(write_model_dir(cfg, t, tmp_path / "a"))
    t = random_tensors(cfg, 0)
    t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.k_proj.weight"][:16]
    with pytest.raises(ShapeMismatchError, match="k_proj"):
        load(write_model_dir(cfg, t, tmp_path / "b"))
    t = random_tensors(cfg, 0)
    t.pop("lm_head.weight")
    with pytest.raises(MissingTensorError, match="lm_head"):
        load(write_model_dir(cfg, t, tmp_path / "c"))


@pytest.mark.clause("FW-1.3")
def test_tied_embeddings_use_the_embedding_matrix():
    m = tiny_model("llama3_tied", 2)
    assert m.lm_head is m.embed
    assert "lm_head.weight" not in random_tensors(TINY_CONFIGS["llama3_tied"], 2)


@pytest.mark.clause("FW-1.4")
@pytest.mark.parametrize("fname", ["pytorch_model.bin", "model.pt", "weights.pth", "model.ckpt"])
def test_pickle_weights_are_refused_unopened(tmp_path, fname, monkeypatch):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY_CONFIGS["llama"]))
    (d / fname).write_bytes(b"\x80\x04 not a real pickle")
    import builtins
    real_open = builtins.open

    def guarded(file, *a, **k):
        assert not str(file).endswith(fname), "a pickle file was opened"
        return real_open(file, *a, **k)
    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(WeightsFormatError, match="never unpickled"):
        load(d)
    with pytest.raises(WeightsFormatError, match="pickle"):
        load(d / fname)


@pytest.mark.clause("FW-1.4")
def test_corrupt_safetensors_and_not_a_dir(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY_CONFIGS["llama"]))
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(WeightsFormatError):
        load(d)
    with pytest.raises(ModelError, match="not a model directory"):
        load(tmp_path / "nowhere")


@pytest.mark.clause("FW-2.1")
def test_rms_norm_equation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-5) * w
    got = L.rms_norm(x, w, 1e-5)
    assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-5


@pytest.mark.clause("FW-2.2")
def test_rope_rotate_half_and_llama3_frequencies():
    x = np.arange(8, dtype=np.float64)
    assert L.rotate_half(x).tolist() == [-4, -5, -6, -7, 0, 1, 2, 3]
    d = 16
    plain = L.rope_inv_freq(d, RopeConfig(theta=10000.0))
    assert np.allclose(plain, 10000.0 ** (-np.arange(0, d, 2) / d), rtol=1e-15, atol=0)
    rc = RopeConfig(theta=10000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=64)
    scaled = L.rope_inv_freq(d, rc)
    wl = 2 * np.pi / plain
    assert np.array_equal(scaled[wl < 16], plain[wl < 16])            # high frequencies kept
    assert np.allclose(scaled[wl > 64], plain[wl > 64] / 8)           # low frequencies divided
    mid = (wl >= 16) & (wl <= 64)
    assert mid.any() and np.all(scaled[mid] < plain[mid]) and np.all(scaled[mid] > plain[mid] / 8)
    # a rotation preserves the norm of each (i, i + d/2) pair and position 0 is the identity
    cos, sin = L.rope_cos_sin(np.arange(5), plain, np.float64)
    v = np.random.default_rng(1).standard_normal((1, 1, 5, d))
    r = L.apply_rope(v, cos, sin)
    pair = lambda a: a[..., :d // 2] ** 2 + a[..., d // 2:] ** 2  # noqa: E731
    assert np.allclose(pair(r), pair(v)) and np.allclose(r[..., 0, :], v[..., 0, :])


@pytest.mark.clause("FW-2.3")
def test_attention_against_a_per_head_loop():
    rng = np.random.default_rng(2)
    b, h, kv, s, d = 2, 6, 2, 7, 8
    q, k, v = (rng.standard_normal((b, n, s, d)) for n in (h, kv, kv))
    got = L.causal_attention(q, k, v)
    for bi in range(b):
        for j in range(h):
            kk, vv = k[bi, j // (h // kv)], v[bi, j // (h // kv)]
            sc = q[bi, j] @ kk.T / np.sqrt(d)
            sc[np.triu_indices(s, 1)] = -np.inf
            p = np.exp(sc - sc.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            assert np.allclose(got[bi, j], p @ vv, atol=1e-12)


@pytest.mark.clause("FW-2.4")
def test_swiglu_equation():
    g = np.array([-100.0, -1.0, 0.0, 2.0])
    u = np.array([3.0, 2.0, 5.0, 0.5])
    assert np.allclose(L.swiglu(g, u), g / (1 + np.exp(-g)) * u)


@pytest.mark.clause("FW-2.5")
def test_forward_shapes_and_bad_ids():
    m = tiny_model("llama", 0)
    assert m.forward(np.arange(5)).shape == (1, 5, 96)
    for bad in (np.array([[0.5, 1.0]]), np.array([[96]]), np.array([[-1]]), np.zeros((1, 2, 3), int)):
        with pytest.raises(ModelError):
            m.forward(bad)


@pytest.mark.clause("FW-2.6")
def test_qwen3_uses_q_and_k_norms():
    m = tiny_model("qwen3", 4)
    ids = np.arange(6)[None]
    ref = m.forward(ids)
    m.layers[0].q_norm = m.layers[0].q_norm * 2
    assert np.abs(m.forward(ids) - ref).max() > 1e-3


@pytest.mark.clause("FW-2.7")
def test_causal_and_rows_independent():
    m = tiny_model("llama", 5)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 96, size=(2, 10))
    ref = m.forward(ids)
    changed = ids.copy()
    changed[0, 6:] = (changed[0, 6:] + 1) % 96
    out = m.forward(changed)
    assert np.abs(out[0, :6] - ref[0, :6]).max() < 1e-5
    assert np.abs(out[0, 6:] - ref[0, 6:]).max() > 1e-3
    assert np.abs(out[1] - ref[1]).max() < 1e-5
    assert np.abs(m.forward(ids[1:]) [0] - ref[1]).max() < 1e-5


@pytest.mark.clause("FW-1.7")
def test_safetensors_reader_checks_the_header(tmp_path):
    """Every header fault is a WeightsFormatError naming the file; good files round-trip."""
    import json as _json
    import struct

    from torq_ref.model.errors import WeightsFormatError
    from torq_ref.model.weights import read_tensors

    def write(name, header, body):
        h = _json.dumps(header).encode()
        p = tmp_path / name
        p.write_bytes(struct.pack("<Q", len(h)) + h + body)
        return p

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    bf = (np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    good = write("good.safetensors", {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                                      "b": {"dtype": "BF16", "shape": [2], "data_offsets": [24, 28]},
                                      "__metadata__": {"x": "y"}}, a.tobytes() + bf.tobytes())
    got = read_tensors([good])
    assert np.array_equal(got["a"], a) and got["b"].tolist() == [1.5, -2.0]
    assert read_tensors([good], dtype=np.float64)["a"].dtype == np.float64
    cases = {
        "short.safetensors": b"\x01\x00",
        "long.safetensors": struct.pack("<Q", 10**6) + b"{}",
        "nojson.safetensors": struct.pack("<Q", 3) + b"{x}",
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
    write("trunc.safetensors", {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, b"\0" * 20)
    write("shape.safetensors", {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 24]}}, b"\0" * 24)
    write("dtype.safetensors", {"a": {"dtype": "I64", "shape": [3], "data_offsets": [0, 24]}}, b"\0" * 24)
    for name in list(cases) + ["trunc.safetensors", "shape.safetensors", "dtype.safetensors"]:
        with pytest.raises(WeightsFormatError, match=name.split(".")[0]):
            read_tensors([tmp_path / name])
