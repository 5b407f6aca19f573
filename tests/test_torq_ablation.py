"""The per-site scale-step alpha (spec/TQ.md TQ-2.11) and the ablation rows of TORQ's levels
(TQ-2.12)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref.rotations.baselines import block_hadamard
from torq_ref.torq import SettingsError, engine
from torq_ref.torq.macro import output_error
from torq_ref.torq.methods import DEFAULT_METHODS, METHOD_PRESETS, METHODS, parse_list
from torq_ref.torq.pipeline import calibrate, site_metrics
from torq_ref.torq.scale_step import (ALPHA_GRID, NORM_OF_SITE, channel_scales, choose_alpha,
                                      smoothed_output_error)

from torq_fixtures import CFG, tiny, windows  # noqa: F401  (shared fixtures)


def _site(seed=0, T=256, n=64, out=48, spike=60.0):
    """Calibration rows with one dominant channel (a massive activation) and a weight."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, n))
    X[:, 5] *= spike
    W = rng.standard_normal((out, n)) / np.sqrt(n)
    return X, X.T @ X / T, W


def _run(tiny, windows, methods, cfg):
    ev, ca = windows
    return engine.stream_evaluate(tiny, ev, ca, methods, ("W16A4",), cfg, progress=False,
                                  site_metrics=site_metrics)


@pytest.mark.clause("TQ-2.11")
def test_smoothed_output_error_is_the_folded_layer_error():
    """L(s) equals the output error of the smoothed rows through the folded weight W s, measured
    by the macro proxy (an independent code path: dense block Hadamard, no reshapes)."""
    X, C, W = _site()
    B = block_hadamard(X.shape[1], 32)
    for alpha in (0.0, 0.5, 1.0):
        s = channel_scales(C, alpha)
        want = output_error(X / s, B, W * s[None, :])
        assert smoothed_output_error(X, s, W) == pytest.approx(want, rel=1e-9)
    # the quantizer is really in it: a coarser rule changes the loss, and exact inputs give 0
    s = channel_scales(C, 0.5)
    assert smoothed_output_error(X, s, W, scale_rule="rceil") != smoothed_output_error(X, s, W)
    from torq_ref.rotations.baselines import sylvester_hadamard

    Z = 4.0 * np.kron(np.eye(2), sylvester_hadamard(32))[:8]   # rows whose x B is 4 e_k: exact in E2M1
    assert smoothed_output_error(Z, np.ones(64), W) < 1e-25


@pytest.mark.clause("TQ-2.11")
def test_choose_alpha_takes_the_smallest_calibration_loss():
    X, C, W = _site()
    alpha, losses = choose_alpha(C, X, W)
    assert set(losses) == set(ALPHA_GRID)
    assert losses[alpha] == min(losses.values())
    assert alpha > 0 and losses[alpha] < losses[0.0]     # the dominant channel: smoothing pays
    # ties go to the earlier (smaller) alpha: a site without spread has s = 1 for every alpha
    flat = np.ones((8, 32))
    a, l = choose_alpha(np.eye(32), flat, np.eye(32))
    assert a == 0.0 and len(set(l.values())) == 1
    with pytest.raises(ValueError, match="empty"):
        choose_alpha(C, X, W, grid=())


@pytest.mark.clause("TQ-2.11")
def test_engine_uses_the_per_site_alpha(tiny, windows, monkeypatch):
    """A one-entry grid reproduces the fixed alpha; grid (0,) makes smoothrot the Hadamard; the
    chosen alphas are recorded per site and come from the fit rows only."""
    fixed, _, _ = _run(tiny, windows, ("smoothrot",), CFG)
    one, sites, _ = _run(tiny, windows, ("smoothrot",), replace(CFG, alpha_grid=(CFG.scale_alpha,)))
    assert one[0]["window_nll"] == fixed[0]["window_nll"]
    zero, _, _ = _run(tiny, windows, ("smoothrot", "hadamard32"), replace(CFG, alpha_grid=(0.0,)))
    assert zero[0]["window_nll"] == zero[1]["window_nll"]
    assert zero[0]["window_nll"] != fixed[0]["window_nll"]
    seen = []
    real = engine.layer_scales

    def spy(model, i, site, cap, cfg):
        seen.append((i, site, len(cap.inputs(i, site)[: cfg.micro_rows])))
        return real(model, i, site, cap, cfg)

    monkeypatch.setattr(engine, "layer_scales", spy)
    rows, sites, _ = _run(tiny, windows, ("hadamard32", "smoothrot"), replace(CFG, alpha_grid=ALPHA_GRID))
    n_layers = tiny.config.num_layers
    assert sorted(seen) == sorted((i, s, CFG.micro_rows) for i in range(n_layers) for s in NORM_OF_SITE)
    for i in range(n_layers):
        for site in NORM_OF_SITE:
            info = sites["smoothrot"][f"{i}:{site}"]["scale_alpha"]
            assert info["alpha"] in ALPHA_GRID
            assert info["losses"][str(info["alpha"])] == min(info["losses"].values())
        assert "scale_alpha" not in sites["smoothrot"][f"{i}:o"]
        assert "scale_alpha" not in sites["hadamard32"][f"{i}:qkv"]


@pytest.mark.clause("TQ-2.11")
def test_scale_alpha_auto_on_the_command_line():
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    parse = lambda *a: settings_from_args(build_parser().parse_args(["run", *a]))   # noqa: E731
    assert parse("--scale-alpha", "auto")[1].alpha_grid == ALPHA_GRID
    assert parse("--scale-alpha", "0.25")[1].scale_alpha == 0.25
    for bad in ("3", "-0.5", "often"):
        with pytest.raises(SettingsError, match="--scale-alpha"):
            parse("--scale-alpha", bad)


@pytest.mark.clause("TQ-2.12")
def test_ablation_preset_and_default_methods():
    assert "torq-maxent" in METHODS and "torq-maxent" not in DEFAULT_METHODS
    assert parse_list(None, METHODS, "method", default=DEFAULT_METHODS) == DEFAULT_METHODS
    abl = parse_list("ablation", METHODS, "method", presets=METHOD_PRESETS)
    assert abl == ("fp32", "hadamard32", "torq-macro", "smoothrot", "torq-maxent", "torq-micro", "torq")
    assert parse_list("rtn,ablation,torq", METHODS, "method", presets=METHOD_PRESETS) == ("rtn",) + abl
    with pytest.raises(SettingsError, match="unknown method"):
        parse_list("ablation,nope", METHODS, "method", presets=METHOD_PRESETS)


@pytest.mark.clause("TQ-2.12")
def test_torq_maxent_is_the_fitted_rotation_without_the_scale_step(tiny, windows):
    """torq-maxent fits the raw rows (its own fit, not torq-micro's on the smoothed rows);
    with the scale step off the two rows are the same method."""
    rows, sites, _ = _run(tiny, windows, ("hadamard32", "torq-micro", "torq-maxent"), CFG)
    by = {r["method"]: r for r in rows}
    assert by["torq-maxent"]["window_nll"] != by["torq-micro"]["window_nll"]
    assert by["torq-maxent"]["window_nll"] != by["hadamard32"]["window_nll"]
    assert "scale_alpha" not in sites["torq-maxent"]["0:qkv"]
    alone, _, _ = _run(tiny, windows, ("torq-maxent",), CFG)     # no fit shared with torq-micro
    assert alone[0]["window_nll"] == by["torq-maxent"]["window_nll"]
    off, _, _ = _run(tiny, windows, ("torq-micro", "torq-maxent"), replace(CFG, scale_alpha=0.0))
    assert off[0]["window_nll"] == off[1]["window_nll"]
    # the raw-row fit equals a direct fit on the raw calibration rows
    _, ca = windows
    cap = calibrate(tiny, ca, 2 * CFG.micro_rows, progress=False)
    from torq_ref.torq.methods import site_transform

    t, _ = site_transform("torq-maxent", 0, "qkv", cap.moment(0, "qkv"), cap.inputs(0, "qkv"), CFG, {})
    t2, _ = site_transform("torq-micro", 0, "qkv", cap.moment(0, "qkv"), cap.inputs(0, "qkv"), CFG, {})
    np.testing.assert_array_equal(t.block, t2.block)   # same rows in, same fit out
