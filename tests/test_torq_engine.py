"""The layer-streaming engine of ``run`` (spec/TQ.md section 6): equivalence with whole-model
passes, and the wiring of calibration data, scale step, metrics and scale rules (spies)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref import model as M
from torq_ref.torq import SettingsError, site_transform
from torq_ref.torq import engine
from torq_ref.torq import methods as methods_mod
from torq_ref.torq.oracle import calibrate, plan_for
from torq_ref.torq.site_metrics import site_metrics
from torq_ref.torq.scale_step import NORM_OF_SITE, channel_scales, scaled_model, site_scales

from torq_fixtures import CFG, W, tiny, windows  # noqa: F401  (shared fixtures)


def _run(tiny, windows, methods, settings=("W16A4",), cfg=CFG, **kw):
    ev, ca = windows
    return engine.stream_evaluate(tiny, ev, ca, methods, settings, cfg, progress=False,
                                  site_metrics=kw.pop("site_metrics", site_metrics), **kw)


@pytest.mark.clause("TQ-6.3", "TQ-6.5")
def test_engine_equals_whole_model_passes(tiny, windows, monkeypatch):
    """Every row of the streamed table equals a whole-model forward with the same plan."""
    ev, ca = windows
    seen: dict = {}
    real = engine.site_transform

    def spy(method, layer, site, C, X, cfg, cache=None, **kw):
        t, info = real(method, layer, site, C, X, cfg, cache, **kw)
        seen[(method, layer, site)] = t
        return t, info

    monkeypatch.setattr(engine, "site_transform", spy)
    methods = ("fp32", "rtn", "hadamard32", "torq-micro")
    rows, _, _ = _run(tiny, windows, methods, settings=("W16A4", "W4A4"))
    cap = calibrate(tiny, ca, 2 * CFG.micro_rows, progress=False)
    scales = site_scales(cap.moment, tiny.config.num_layers, CFG.scale_alpha)
    for r in rows:
        transforms = {(i, s): seen[(r["method"], i, s)] for i in range(tiny.config.num_layers)
                      for s in M.SITES if seen[(r["method"], i, s)] is not None}
        model = scaled_model(tiny, scales) if r["method"] == "torq-micro" else tiny
        plan = plan_for(r["method"], r["setting"], transforms, CFG)
        ppl, nll = M.perplexity(model, ev, quant=plan, progress=False, return_nll=True)
        np.testing.assert_allclose(r["window_nll"], nll, rtol=2e-6, err_msg=str((r["method"], r["setting"])))
    by = {(r["method"], r["setting"]): r for r in rows}
    assert by[("fp32", "FP32")]["window_kld"] == pytest.approx([0.0] * 3, abs=1e-12)
    assert by[("fp32", "FP32")]["window_top1"] == [1.0] * 3
    assert all(k > 0 for k in by[("rtn", "W4A4")]["window_kld"])
    assert by[("rtn", "W4A4")]["window_n"] == [W - 1] * 3


@pytest.mark.clause("TQ-6.2", "TQ-2.7")
def test_micro_step_fits_the_scaled_rows(tiny, windows, monkeypatch):
    """The micro optimizer of a scaled method sees X / s, the rows of the scaled model."""
    _, ca = windows
    fitted = []
    real = methods_mod.micro_rotation

    def spy(X, cfg, seed, init="hadamard", *rest):
        fitted.append(np.array(X))
        return real(X, cfg, seed, init, *rest)

    monkeypatch.setattr(methods_mod, "micro_rotation", spy)
    _run(tiny, windows, ("torq-micro",))
    cap = calibrate(tiny, ca, 2 * CFG.micro_rows, progress=False)
    expect = []
    for i in range(tiny.config.num_layers):
        for site in M.SITES:
            X = cap.inputs(i, site)
            if site in NORM_OF_SITE:
                X = (X / channel_scales(cap.moment(i, site), CFG.scale_alpha)).astype(X.dtype)
            expect.append(X[: CFG.micro_rows])
    assert len(fitted) == len(expect)
    for got, want in zip(fitted, expect):
        # float32 captures of the streamed and the whole-model pass differ in rounding (BLAS kernels)
        np.testing.assert_allclose(got[: CFG.micro_rows], want, rtol=1e-4, atol=1e-6)   # micro_rotation slices


@pytest.mark.clause("TQ-6.2", "TQ-3.3")
def test_site_metrics_use_rows_the_micro_step_never_saw(tiny, windows):
    _, ca = windows
    calls = []

    def metrics(C, X, t, cfg):
        calls.append(np.array(X))
        return {"imbalance": 1.0, "entropy": 1.0}

    _run(tiny, windows, ("rtn",), site_metrics=metrics)
    cap = calibrate(tiny, ca, 2 * CFG.micro_rows, progress=False)
    want = [cap.inputs(i, s)[CFG.micro_rows:] for i in range(tiny.config.num_layers) for s in M.SITES]
    assert len(calls) == len(want)
    for got, w in zip(calls, want):
        assert got.shape == w.shape
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6)   # streamed vs whole-model rounding
    # too few calibration rows for a held-out part: an error before any model work
    with pytest.raises(SettingsError, match="micro_rows"):
        _run(tiny, windows, ("torq-micro",), cfg=replace(CFG, micro_rows=2 * W))
    with pytest.raises(SettingsError, match="micro_rows"):
        engine.held_out_rows(np.zeros((10, 32)), CFG)


@pytest.mark.clause("TQ-6.3", "TQ-2.6")
def test_rows_quantize_with_the_configured_scale_rule(tiny, windows, monkeypatch):
    seen = []
    real = engine.prepare_site

    def spy(weight, q, mode):
        seen.append((q.act_fmt, q.act_scale_rule, q.weight_fmt, q.weight_scale_rule, mode))
        return real(weight, q, mode)

    monkeypatch.setattr(engine, "prepare_site", spy)
    cfg = replace(CFG, scale_rule="rceil")
    _run(tiny, windows, ("fp32", "hadamard32"), settings=("W16A4", "W4A4"), cfg=cfg)
    per_row = 4 * tiny.config.num_layers
    assert len(seen) == 2 * per_row                    # fp32 prepares nothing
    w16 = [s for s in seen if s[2] is None]
    assert len(w16) == per_row and set(w16) == {("e2m1", "rceil", None, "rceil", "folded")}
    assert set(seen) - set(w16) == {("e2m1", "rceil", "e2m1", "rceil", "folded")}


@pytest.mark.clause("TQ-6.1")
def test_calibration_is_released_layer_by_layer(tiny, windows, monkeypatch):
    """At most one layer's calibration capture is alive at any time."""
    import weakref

    alive = []
    real = engine.ActivationCapture

    def make(*a, **k):
        cap = real(*a, **k)
        assert k["layers"] == [len(alive)]
        assert all(r() is None for r in alive), "an earlier layer's capture is still alive"
        alive.append(weakref.ref(cap))
        return cap

    monkeypatch.setattr(engine, "ActivationCapture", make)
    _run(tiny, windows, ("rtn", "torq-micro"))
    assert len(alive) == tiny.config.num_layers


@pytest.mark.clause("TQ-6.1", "TQ-6.2")
def test_transforms_are_released_before_the_next_layer_builds(tiny, windows, monkeypatch):
    """Layer i's transforms are gone when layer i + 1 starts building its own (the dense (n, n)
    matrices of two layers are never alive together)."""
    import gc
    import weakref

    alive = []
    real = engine._layer_transforms

    def spy(model, i, *a, **k):
        gc.collect()
        assert all(r() is None for r in alive), f"layer {i - 1}'s transforms are still alive"
        out = real(model, i, *a, **k)
        alive.extend(weakref.ref(t) for t in out[0]["random-orthogonal"].values())
        return out

    monkeypatch.setattr(engine, "_layer_transforms", spy)
    _run(tiny, windows, ("random-orthogonal",))
    assert len(alive) == 4 * tiny.config.num_layers


@pytest.mark.clause("TQ-6.4")
def test_scores_without_an_fp32_row(tiny, windows):
    rows, _, _ = _run(tiny, windows, ("rtn",))
    with_ref, _, _ = _run(tiny, windows, ("fp32", "rtn"))
    np.testing.assert_array_equal(rows[0]["window_kld"], with_ref[1]["window_kld"])
    np.testing.assert_array_equal(rows[0]["window_nll"], with_ref[1]["window_nll"])


@pytest.mark.clause("TQ-2.15")
def test_quant_sites_leaves_the_other_kinds_in_float(tiny, windows):
    from dataclasses import replace

    from torq_ref.torq.methods import SettingsError

    def rows(cfg=CFG):
        return {(r["method"], r["setting"]): r for r in _run(tiny, windows, ("fp32", "hadamard32"), cfg=cfg)[0]}

    full = rows()[("hadamard32", "W16A4")]
    none = rows(replace(CFG, quant_sites=()))
    assert none[("hadamard32", "W16A4")]["window_kld"] == pytest.approx([0.0] * 3, abs=1e-9)
    per_kind = {}
    for site in M.SITES:
        cfg = replace(CFG, quant_sites=(site,))
        r = rows(cfg)[("hadamard32", "W16A4")]
        per_kind[site] = np.mean(r["window_kld"])
        assert 0 < per_kind[site] < np.mean(full["window_kld"])
        # the whole-model path agrees (TQ-6.5), with every site listed explicitly
        plan = plan_for("rtn", "W16A4", {}, cfg, num_layers=tiny.config.num_layers)
        quantized = {key for key, q in plan.sites.items() if q is not None}
        assert quantized == {(i, site) for i in range(tiny.config.num_layers)}
    assert len(set(per_kind.values())) == 4
    with pytest.raises(SettingsError, match="needs num_layers"):
        plan_for("rtn", "W16A4", {}, replace(CFG, quant_sites=("qkv",)))


@pytest.mark.clause("TQ-2.15", "TQ-4.2")
def test_quant_sites_option_is_checked():
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args
    from torq_ref.torq.methods import SettingsError

    _, cfg = settings_from_args(build_parser().parse_args(["run"]))
    assert cfg.quant_sites == M.SITES
    _, cfg = settings_from_args(build_parser().parse_args(["run", "--quant-sites", "down,o"]))
    assert cfg.quant_sites == ("down", "o")
    with pytest.raises(SettingsError, match="unknown site kind"):
        settings_from_args(build_parser().parse_args(["run", "--quant-sites", "down,mlp"]))


@pytest.mark.clause("TQ-3.3", "TQ-6.9")
def test_site_metrics_entropy_and_codes_are_those_of_the_codec():
    """The site metrics quantize the transformed rows once: their entropy is code_entropy's of
    the same rows and their code counts the codec's, for a dense and a block transform."""
    from torq_ref import mx
    from torq_ref.rotations.baselines import random_orthogonal, sylvester_hadamard
    from torq_ref.rotations.entropy import code_entropy

    rng = np.random.default_rng(5)
    X = (rng.standard_normal((64, 64)) * np.exp(rng.standard_normal(64))).astype(np.float32)
    X[0, :32] = 0.0                                   # a zero block: +0 codes
    X[1, 32:] = -0.0                                  # -0 inputs: merged into the zero bin
    C = X.T.astype(np.float64) @ X / len(X)
    for t in (None, M.Transform(block=sylvester_hadamard(32)), M.Transform(matrix=random_orthogonal(64, seed=1))):
        m = site_metrics(C, X, t, CFG)
        Xt = X if t is None else t.materialize(64).apply(X.astype(np.float64))
        Xt32 = np.ascontiguousarray(Xt, dtype=np.float32)
        assert m["entropy"] == code_entropy(Xt32, block_size=32, scale_rule=CFG.scale_rule)
        codes = mx.quantize(Xt32, CFG.fmt, block_size=32, scale_rule=CFG.scale_rule).codes
        assert m["codes"] == np.bincount(np.asarray(codes).ravel(), minlength=16).tolist()
