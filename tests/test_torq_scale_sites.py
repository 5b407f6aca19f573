"""The scale step at the o and down inputs (spec/TQ.md TQ-2.17): folded exactly into v_proj's rows
per KV head and into up_proj's rows, shared by the query heads of a KV group, wired through the
engine and refused by the plan export."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref.model.tiny import tiny_model
from torq_ref.torq import SettingsError, engine
from torq_ref.torq.oracle import calibrate
from torq_ref.torq.plan import check_exportable
from torq_ref.torq.scale_step import (SCALE_SITES, ScaledCalibration, o_channel_scales, scaled_layer,
                                      scaled_model, site_scales)

from torq_fixtures import CFG, tiny, windows  # noqa: F401  (shared fixtures)

IDS = np.random.default_rng(5).integers(0, 96, size=(2, 48))


@pytest.mark.clause("TQ-2.17")
@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3", "llama3_tied"])
def test_o_and_down_scales_fold_exactly(family):
    """Scaling all four sites (o per KV head, through v_proj rows and, for Qwen2, its bias; down
    through up_proj rows) leaves the FP32 logits unchanged to float32 rounding, and the scaled
    model records exactly the rows X / s at every site."""
    m = tiny_model(family, seed=3)
    cap = calibrate(m, IDS, 96, progress=False)
    scales = site_scales(cap.moment, m.config.num_layers, 0.75, SCALE_SITES, m.config)
    assert all(not np.allclose(s, 1.0) for s in scales.values())        # the step does act
    sm = scaled_model(m, scales)
    ref = m.forward(IDS[:1])
    diff = np.max(np.abs(sm.forward(IDS[:1]) - ref))
    assert diff < 1e-4 * max(1.0, np.max(np.abs(ref))), diff           # folded: the same function
    view, cap2 = ScaledCalibration(cap, scales), calibrate(sm, IDS, 96, progress=False)
    for layer in range(m.config.num_layers):
        for site in ("o", "down"):
            X, X2 = view.inputs(layer, site), cap2.inputs(layer, site)
            assert np.max(np.abs(X - X2)) <= 1e-4 * np.max(np.abs(X)), (layer, site)
            assert not np.allclose(X, cap.inputs(layer, site), rtol=1e-3)   # and they did change


@pytest.mark.clause("TQ-2.17")
def test_o_scales_shared_by_the_query_heads_of_a_kv_group():
    """With grouped-query attention the o scale of query head j is that of its KV head j // G, from
    the RMS pooled over the group; a vector that differs inside a group is refused, since v_proj's
    rows cannot give two query heads of one group different scales."""
    H, K, d = 4, 2, 4
    rng = np.random.default_rng(0)
    diag = rng.uniform(0.1, 9.0, H * d)
    s = o_channel_scales(np.diag(diag), 0.5, H, K, d).reshape(H, d)
    assert np.array_equal(s[0], s[1]) and np.array_equal(s[2], s[3]) and not np.allclose(s[0], s[2])
    r = np.sqrt(diag.reshape(K, 2, d).mean(axis=1))                     # pooled RMS per KV channel
    g = np.exp(np.mean(np.log(r)))
    np.testing.assert_allclose(s[::2], (r / g) ** 0.5, rtol=1e-14)
    m = tiny_model("llama", seed=3)                                       # 4 query heads, 2 KV heads
    n = m.config.q_dim
    bad = np.ones(n)
    bad[0] = 2.0                                                          # head 0 only, not head 1
    with pytest.raises(ValueError, match="shared by the query heads"):
        scaled_layer(m.layers[0], {"o": bad}, m.config)
    with pytest.raises(ValueError, match="needs the model config"):
        scaled_layer(m.layers[0], {"o": np.ones(n)})
    with pytest.raises(ValueError, match="scalable sites"):
        scaled_layer(m.layers[0], {"lm_head": np.ones(n)})
    # the fold touches v_proj's rows and o_proj's columns only (q and k rows stay as they were)
    s_o = o_channel_scales(np.diag(rng.uniform(0.1, 9.0, n)), 0.5, 4, 2, m.config.head_dim)
    lw = scaled_layer(m.layers[0], {"o": s_o}, m.config)
    qk = m.config.q_dim + m.config.kv_dim
    assert np.array_equal(lw.qkv[:qk], m.layers[0].qkv[:qk])
    np.testing.assert_allclose(lw.o, m.layers[0].o * s_o[None, :], rtol=1e-6)


@pytest.mark.clause("TQ-2.17", "TQ-6.2")
def test_engine_scales_o_and_down_when_asked(tiny, windows):
    """Through the engine: a scaled row with every site in float is the FP32 model (KLD ~ 0), and
    the quantized rows of scale_sites qkv,gate_up,o,down differ from the default's."""
    ev, ca = windows
    cfg = replace(CFG, scale_sites=SCALE_SITES)
    rows, _, _ = engine.stream_evaluate(tiny, ev, ca, ("smoothrot",), ("W16A4",),
                                        replace(cfg, quant_sites=()), progress=False)
    assert max(rows[0]["window_kld"]) < 1e-8
    got = {}
    for sites in (CFG.scale_sites, SCALE_SITES):
        rows, _, _ = engine.stream_evaluate(tiny, ev, ca, ("smoothrot",), ("W16A4",),
                                            replace(CFG, scale_sites=sites), progress=False)
        got[sites] = rows[0]["window_nll"]
    assert got[CFG.scale_sites] != got[SCALE_SITES]


@pytest.mark.clause("TQ-2.17", "TQ-8.1")
def test_plan_export_refuses_o_and_down_scales():
    check_exportable(CFG)
    with pytest.raises(SettingsError, match="scales o, down"):
        check_exportable(replace(CFG, scale_sites=SCALE_SITES))


@pytest.mark.clause("TQ-2.17", "TQ-4.2")
def test_scale_sites_option(tmp_path):
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    args = build_parser().parse_args(["run", "--scale-sites", "qkv,gate_up,down", "--quick"])
    _, cfg = settings_from_args(args)
    assert cfg.scale_sites == ("qkv", "gate_up", "down")
    args = build_parser().parse_args(["run", "--scale-sites", "qkv,lm_head", "--quick"])
    with pytest.raises(SettingsError, match="scale site"):
        settings_from_args(args)
