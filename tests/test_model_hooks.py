"""Quantization hooks and activation capture of torq_ref.model (spec/FW.md sections 3, 4)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.model import (SITES, ActivationCapture, ModelError, QuantPlan, SiteQuant, Transform,
                            TransformError, collect_moments)
from torq_ref.model import layers as L
from torq_ref.model.hooks import prepare_site
from torq_ref.model.tiny import tiny_model


def _orth(n, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.sign(np.diag(r))


class Givens:
    """A stand-in for the Schur-Horn GivensSequence: .apply(x, axis=-1) computes x @ Q."""

    def __init__(self, n, seed, count=40):
        rng = np.random.default_rng(seed)
        self.rots = [(*sorted(rng.choice(n, 2, replace=False)), rng.uniform(0, 2 * np.pi)) for _ in range(count)]

    def apply(self, x, axis=-1):
        x = np.array(np.moveaxis(x, axis, -1), dtype=np.float64)
        for i, j, a in self.rots:                  # x @ G(i, j, a) for each plane rotation in turn
            c, s = np.cos(a), np.sin(a)
            xi, xj = x[..., i].copy(), x[..., j].copy()
            x[..., i], x[..., j] = c * xi - s * xj, s * xi + c * xj
        return np.moveaxis(x, -1, axis)

    def dense(self, n):
        return self.apply(np.eye(n))


def _transforms(model, seed=0, per_block=False):
    out = {}
    for i in range(model.config.num_layers):
        for k, site in enumerate(SITES):
            n = model.site_width(site)
            rng_seed = seed + 10 * i + k
            block = (np.stack([_orth(32, rng_seed + 100 + b) for b in range(n // 32)]) if per_block
                     else _orth(32, rng_seed + 100))
            matrix = Givens(n, rng_seed) if k % 2 else _orth(n, rng_seed)
            out[(i, site)] = Transform(matrix=matrix, block=block)
    return out


IDS = np.random.default_rng(9).integers(0, 96, size=(2, 16))


@pytest.mark.clause("FW-3.3")
@pytest.mark.parametrize("name", ["llama", "qwen3"])
def test_folded_and_online_agree_float64(name):
    m = tiny_model(name, 1, dtype=np.float64)
    tr = _transforms(m)
    for weight_fmt in (None, "e2m1"):
        kw = dict(weight_fmt=weight_fmt, transforms=tr)
        folded = m.forward(IDS, quant=QuantPlan.uniform("e2m1", "floor", mode="folded", **kw))
        online = m.forward(IDS, quant=QuantPlan.uniform("e2m1", "floor", mode="online", **kw))
        rtn = m.forward(IDS, quant=QuantPlan.uniform("e2m1", "floor", weight_fmt=weight_fmt))
        assert np.abs(folded - online).max() < 1e-9
        assert np.abs(folded - rtn).max() > 1e-3          # the transforms do change the quantized result


@pytest.mark.clause("FW-3.3")
def test_folded_and_online_agree_float32():
    m = tiny_model("llama3_tied", 2)
    tr = _transforms(m, per_block=True)
    plain = m.forward(IDS)
    for mode in ("folded", "online"):
        no_quant = m.forward(IDS, quant=QuantPlan.uniform(None, transforms=tr, mode=mode))
        assert np.abs(no_quant - plain).max() < 1e-4
    f = m.forward(IDS, quant=QuantPlan.uniform(None, weight_fmt="e2m1", transforms=tr, mode="folded"))
    o = m.forward(IDS, quant=QuantPlan.uniform(None, weight_fmt="e2m1", transforms=tr, mode="online"))
    assert np.abs(f - o).max() < 1e-4


@pytest.mark.clause("FW-3.1", "FW-3.4")
def test_site_matches_manual_transform_and_quantizer():
    rng = np.random.default_rng(3)
    n = 96
    w = rng.standard_normal((40, n)).astype(np.float32)
    x = rng.standard_normal((7, n)).astype(np.float32)
    g, r = Givens(n, 5), _orth(32, 6)
    q = SiteQuant(Transform(g, r), act_fmt="e2m1", act_scale_rule="rceil", weight_fmt="e2m1",
                  weight_scale_rule="floor")
    p = prepare_site(w, q, "folded")
    M = g.dense(n)
    tx = ((x.astype(np.float64) @ M).reshape(7, 3, 32) @ r).reshape(7, n).astype(np.float32)
    want_x = mx.quantize_dequantize(tx, "e2m1", block_size=32, axis=-1, scale_rule="rceil")
    assert np.abs(p.input(x) - want_x).max() == 0 or np.abs(p.input(x) - want_x).max() < 1e-5
    tw = ((w.astype(np.float64) @ M).reshape(40, 3, 32) @ r).reshape(40, n)
    want_w = mx.quantize_dequantize(tw, "e2m1", block_size=32, axis=-1, scale_rule="floor")
    assert np.abs(p.weight - want_w).max() < 1e-6
    # other element formats go through the same hook
    p8 = prepare_site(w, SiteQuant(None, act_fmt="e4m3"), "folded")
    assert np.array_equal(p8.input(x), mx.quantize_dequantize(x, "e4m3", block_size=32, axis=-1))


@pytest.mark.clause("FW-3.4")
def test_transform_forms_agree_and_bad_transforms_refused():
    n = 64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, n))
    g = Givens(n, 1)
    r = _orth(32, 2)
    a = Transform(g, r).materialize(n)
    b = Transform(g.dense(n), np.stack([r, r])).materialize(n)
    assert np.allclose(a.apply(x), b.apply(x), atol=1e-12)
    assert np.allclose(a.apply_inverse(a.apply(x)), x, atol=1e-12)
    assert np.allclose(Transform(block=r).materialize(n).apply(x),
                       (x.reshape(5, 2, 32) @ r).reshape(5, n), atol=1e-12)
    with pytest.raises(TransformError, match="not orthogonal"):
        Transform(np.eye(n) * 1.01).materialize(n)
    with pytest.raises(TransformError, match="not orthogonal"):
        Transform(block=r + 0.01).materialize(n)
    with pytest.raises(TransformError, match="shape"):
        Transform(np.eye(n + 1)).materialize(n)
    with pytest.raises(TransformError, match="block rotation has shape"):
        Transform(block=np.eye(16)).materialize(n)
    with pytest.raises(TransformError, match="multiple"):
        Transform(block=r).materialize(48)


@pytest.mark.clause("FW-3.2")
def test_plan_selection_rules():
    special = SiteQuant(act_fmt="e4m3")
    plan = QuantPlan(default=SiteQuant(), sites={(0, "o"): special, (1, "down"): None}, layers=(0,))
    assert plan.for_site(0, "o") is special
    assert plan.for_site(0, "qkv") == SiteQuant()
    assert plan.for_site(1, "qkv") is None and plan.for_site(1, "down") is None
    with pytest.raises(ModelError, match="mode"):
        QuantPlan(mode="fused")
    with pytest.raises(ModelError, match="site key"):
        QuantPlan(sites={(0, "q_proj"): SiteQuant()})


@pytest.mark.clause("FW-3.1", "FW-3.5")
def test_quantized_forward_and_plan_cache(monkeypatch):
    m = tiny_model("llama", 0)
    plain = m.forward(IDS)
    assert np.array_equal(m.forward(IDS, quant=None), plain)
    assert np.array_equal(m.forward(IDS, quant=QuantPlan()), plain)        # no site quantized
    plan = QuantPlan.uniform("e2m1", "floor")
    q = m.forward(IDS, quant=plan)
    assert np.abs(q - plain).max() > 1e-2
    import torq_ref.model.model as mm
    calls = []
    monkeypatch.setattr(mm, "prepare_site", lambda *a: calls.append(a) or prepare_site(*a))
    assert np.array_equal(m.forward(IDS, quant=plan), q) and not calls      # cached
    m.forward(IDS, quant=QuantPlan.uniform("e2m1", "rceil"))
    assert len(calls) == 2 * len(SITES)
    # only layer 1 down quantized: layer-0 capture unaffected
    one = QuantPlan(sites={(1, "down"): SiteQuant()})
    assert np.abs(m.forward(IDS, quant=one) - plain).max() > 0


@pytest.mark.clause("FW-4.1", "FW-4.2")
def test_capture_moments_stream_and_match_inputs():
    m = tiny_model("qwen3", 3, dtype=np.float64)   # float64: batch-1 and batch-2 passes agree to 1e-15
    full = ActivationCapture(moments=True, inputs=True)
    m.forward(IDS, capture=full)
    stream = ActivationCapture(layers=[0, 1], moments=True, inputs=False)
    m.forward(IDS[:1], capture=stream)
    m.forward(IDS[1:], capture=stream)
    assert not stream._rows                                   # moments only: no rows held
    for layer in (0, 1):
        for site in SITES:
            x = full.inputs(layer, site).astype(np.float64)
            assert x.shape == (IDS.size, m.site_width(site))
            c = x.T @ x / len(x)
            assert stream.count(layer, site) == IDS.size
            assert np.allclose(stream.moment(layer, site), c, rtol=1e-6, atol=1e-7)  # rows kept as float32
            assert full.inputs(layer, site).dtype == np.float32
    # the qkv input of layer 0 is RMSNorm(embedding), before any transform or quantizer
    want = L.rms_norm(m.embed[IDS], m.layers[0].attn_norm, m.config.rms_norm_eps).reshape(-1, 64)
    cap_q = ActivationCapture(layers=[0], sites=["qkv"], moments=False, inputs=True)
    m.forward(IDS, quant=QuantPlan.uniform("e2m1", transforms={(0, "qkv"): Transform(block=_orth(32, 0))}),
              capture=cap_q)
    assert np.array_equal(cap_q.inputs(0, "qkv"), want.astype(np.float32))
    assert cap_q.keys() == [(0, "qkv")]
    with pytest.raises(ModelError, match="unknown site"):
        ActivationCapture(sites=["q_proj"])


@pytest.mark.clause("FW-4.2", "FW-4.3")
def test_collect_moments_max_rows_and_callback():
    m = tiny_model("llama", 0)
    windows = np.random.default_rng(1).integers(0, 96, size=(3, 10))
    cap = collect_moments(m, windows, layers=[1], inputs=True, max_rows=25, progress=False)
    assert cap.count(1, "down") == 30 and cap.inputs(1, "down").shape == (25, 96)
    seen = []
    m.forward(windows[:1], capture=ActivationCapture(layers=[0], moments=False,
                                                     callback=lambda i, s, x: seen.append((i, s, x.shape))))
    assert seen == [(0, "qkv", (10, 64)), (0, "o", (10, 64)), (0, "gate_up", (10, 64)), (0, "down", (10, 96))]


@pytest.mark.clause("FW-3.4")
def test_real_givens_sequence_plugs_in():
    from torq_ref.rotations import givens   # part of the package: an import error must fail, not skip
    n = 64
    rng = np.random.default_rng(4)
    i = rng.integers(0, n // 2, 30)
    j = i + n // 2
    a = rng.uniform(0, 2 * np.pi, 30)
    seq = givens.GivensSequence(n, i, j, np.cos(a), np.sin(a))
    x = rng.standard_normal((3, n))
    t = Transform(seq, _orth(32, 1)).materialize(n)
    want = (seq.apply(x).reshape(3, 2, 32) @ _orth(32, 1)).reshape(3, n)
    assert np.allclose(t.apply(x), want, atol=1e-12)


def _with_subnormals(n, seed):
    """An orthogonal (n, n) matrix with entries far below float32's normal range: plane rotations
    by angles of 3e-40 (a float32 subnormal) and 1e-310 (a float64 one) in planes (0, 1) and
    (2, 3), a random rotation on the other channels (the Schur-Horn Givens products leave such
    entries, FW-3.6)."""
    m = np.zeros((n, n))
    for (i, j), a in (((0, 1), 3e-40), ((2, 3), 1e-310)):
        m[i, i] = m[j, j] = np.cos(a)
        m[i, j], m[j, i] = np.sin(a), -np.sin(a)
    m[4:, 4:] = _orth(n - 4, seed)
    return m


@pytest.mark.clause("FW-3.6")
def test_materialized_transform_holds_no_subnormals():
    n = 64
    m = _with_subnormals(n, 7)
    r = np.stack([_orth(32, 0), _with_subnormals(32, 1)])
    d = Transform(matrix=m, block=r).materialize(n)
    assert np.count_nonzero((m != 0) & (np.abs(m) < np.finfo(np.float32).tiny)) >= 2   # the input has them
    for dt in (np.float64, np.float32):
        for a in d._arrays(np.dtype(dt)):
            tiny = np.finfo(a.dtype).tiny
            assert not np.any((a != 0) & (np.abs(a) < tiny)), f"a {a.dtype} array of the transform holds subnormals"
    assert d.matrix[2, 3] == 0 and d.block[1, 2, 3] == 0 and d.matrix[0, 1] == 3e-40   # float64
    m32, _, r32, _ = d._arrays(np.dtype(np.float32))
    assert m32[0, 1] == 0 and r32[1, 0, 1] == 0 and m32[0, 0] == 1                        # float32
    # the normal entries are untouched
    keep = np.abs(m) >= np.finfo(np.float64).tiny
    assert np.array_equal(d.matrix[keep], m[keep])


@pytest.mark.clause("FW-3.6")
def test_flushed_transform_gives_the_same_bits_on_activation_like_rows():
    n = 64
    m = _with_subnormals(n, 3)
    x = (np.random.default_rng(1).standard_normal((256, n)) * 30).astype(np.float32)
    raw = x @ np.ascontiguousarray(m, dtype=np.float32)        # the unflushed float32 matrix
    got = Transform(matrix=m).materialize(n).apply(x)
    assert np.array_equal(got, raw)
