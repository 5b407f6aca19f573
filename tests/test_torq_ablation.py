"""The per-site scale-step alpha (spec/TQ.md TQ-2.11) and the ablation rows of TORQ's levels
(TQ-2.12)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref.rotations.baselines import block_hadamard
from torq_ref.torq import SettingsError, engine
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
    """L(s) equals the docstring's definition computed here token by token, without folding:
    x -> s * Q((x / s) B) B^T, the error of that through the ORIGINAL weight W, relative to x W^T
    (the implementation instead folds s into W and calls the TQ-5.1 proxy)."""
    from torq_ref import mx

    X, C, W = _site()
    B = block_hadamard(X.shape[1], 32)
    for alpha in (0.0, 0.5, 1.0):
        s = channel_scales(C, alpha)
        per_token = []
        for x in X:
            y = np.ascontiguousarray(((x / s) @ B)[None, :], dtype=np.float32)
            q = mx.quantize_dequantize(y, "e2m1", block_size=32).astype(np.float64)[0]
            e = (s * (q @ B.T) - x) @ W.T
            r = x @ W.T
            per_token.append(np.dot(e, e) / np.dot(r, r))
        want = float(np.mean(per_token))
        assert smoothed_output_error(X, s, W) == pytest.approx(want, rel=1e-6)
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


@pytest.mark.clause("TQ-2.14")
def test_output_block_exponents_and_weighted_rows_keep_the_codes():
    from torq_ref import mx
    from torq_ref.torq.methods import output_block_exponents, weighted_rows

    rng = np.random.default_rng(2)
    W = rng.standard_normal((16, 96))
    W[:, 32:64] *= 4.0                       # block 1 feeds 16x the output energy: k = +2 over
    W[:, 64:] = 0.0                          # a dead block: the floor
    k = output_block_exponents(W, 32)
    assert k[2] == -8 and k[1] - k[0] == 2
    X = rng.standard_normal((10, 96)).astype(np.float32)
    Y = weighted_rows(X, k, 32)
    assert Y.dtype == X.dtype
    np.testing.assert_array_equal(Y[:, 32:64], X[:, 32:64] * np.float32(2.0 ** k[1]))   # exact
    a, b = (mx.quantize(np.ascontiguousarray(Z[:, :64]), "e2m1") for Z in (X, Y))
    np.testing.assert_array_equal(a.codes, b.codes)                       # same E2M1 codes
    assert output_block_exponents(np.zeros((4, 64)), 32).tolist() == [0, 0]
    with pytest.raises(SettingsError, match="multiple of the block"):
        output_block_exponents(np.ones((4, 40)), 32)


@pytest.mark.clause("TQ-2.14")
def test_output_objective_fits_the_weighted_rows(tiny, windows, monkeypatch):
    """With --micro-objective output the optimizer sees the rows weighted by the exponents of the
    weight the site feeds (the scaled weight for a scaled method), and the rows then differ."""
    from torq_ref.rotations import maxent
    from torq_ref.torq.methods import output_block_exponents, weighted_rows

    fitted = []
    real = maxent.maxent_rotation

    def spy(rows, **kw):
        fitted.append(np.array(rows))
        return real(rows, **kw)

    monkeypatch.setattr(maxent, "maxent_rotation", spy)
    cfg = replace(CFG, micro_objective="output")
    rows, sites, _ = _run(tiny, windows, ("torq-maxent",), cfg)
    _, ca = windows
    cap = calibrate(tiny, ca, 2 * CFG.micro_rows, progress=False)
    want = [weighted_rows(cap.inputs(i, s)[: CFG.micro_rows],
                          output_block_exponents(tiny.layers[i].site_weight(s), 32), 32)
            for i in range(tiny.config.num_layers) for s in ("qkv", "o", "gate_up", "down")]
    assert len(fitted) == len(want)
    for got, w in zip(fitted, want):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6)   # layer-streamed vs whole-model capture
    # a weight that makes one block count more gives another fit than the plain objective
    from torq_ref.torq.methods import micro_rotation

    from torq_ref.rotations.synthetic import heavy_tailed_activations

    X = heavy_tailed_activations(512, 64, seed=1)                   # block 0: heavy tails
    X[:, 32:] = np.random.default_rng(0).standard_normal((512, 32)) * np.linspace(0.1, 5, 32)
    Wb = np.ones((8, 64))
    Wb[:, 32:] *= 64.0                        # block 1 feeds 4096x the energy of block 0: k = -+3
    c = replace(CFG, micro_rows=512, max_sweeps=2)
    R_plain, _ = micro_rotation(X, c, 0)
    R_out, _ = micro_rotation(X, replace(c, micro_objective="output"), 0, "hadamard", Wb)
    assert not np.array_equal(R_plain, R_out)
    with pytest.raises(SettingsError, match="micro objective"):
        _run(tiny, windows, ("torq-maxent",), replace(CFG, micro_objective="logits"))
