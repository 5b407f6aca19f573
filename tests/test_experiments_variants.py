"""The exploration variants of the TORQ table, outside the core (spec/TQ.md TQ-2.16): the other
composition order and macro strategies of the full method (TQ-2.5), one rotation per block, and
the per-site scale-step alpha (TQ-2.11)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref.experiments import variants
from torq_ref.experiments.variants import ALPHA_GRID, Variant, choose_alpha, smoothed_output_error
from torq_ref.rotations.baselines import block_hadamard
from torq_ref.torq import SettingsError, engine
from torq_ref.torq.methods import TorqConfig, site_transform
from torq_ref.torq.scale_step import NORM_OF_SITE, channel_scales

from torq_fixtures import CFG, spiky_site, tiny, windows  # noqa: F401  (shared fixtures)

_site = spiky_site


def _run(tiny, windows, methods, cfg, variant=None):
    ev, ca = windows
    if isinstance(cfg, tuple):
        cfg, variant = cfg
    dispatch = engine.CORE if variant is None else variant.dispatch()
    return engine.stream_evaluate(tiny, ev, ca, methods, ("W16A4",), cfg, progress=False,
                                  dispatch=dispatch)


def _moment_and_rows(seed=0, T=400, n=64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, n)) * np.linspace(0.2, 4.0, n)
    return X.T @ X / T, X


def _dense(t, n):
    return t.materialize(n).apply(np.eye(n))


@pytest.mark.clause("TQ-2.16")
def test_the_default_variant_is_the_core(tiny, windows):
    methods = ("torq-micro", "torq", "smoothrot", "torq-maxent")
    core, _, _ = _run(tiny, windows, methods, CFG)
    var, _, _ = _run(tiny, windows, methods, CFG, Variant())
    assert [r["window_nll"] for r in core] == [r["window_nll"] for r in var]
    assert not hasattr(TorqConfig(), "order") and not hasattr(TorqConfig(), "alpha_grid")
    with pytest.raises(SettingsError, match="unknown order"):
        Variant(order="sideways")
    with pytest.raises(SettingsError, match="unknown macro strategy"):
        Variant(full_macro_strategy="nope")


@pytest.mark.clause("TQ-2.5", "TQ-2.16")
def test_variant_compositions_of_the_full_method():
    from torq_ref.rotations.schur_horn import schur_horn
    from torq_ref.torq.methods import macro_transform

    C, X = _moment_and_rows()
    cache = {}
    mic, _ = site_transform("torq-micro", 0, "o", C, X, CFG, cache)
    BR = np.kron(np.eye(2), mic.block)
    # order micro-macro: the same R, then Schur-Horn of (BR)^T C BR (block energies equalized last)
    mm, _ = Variant(order="micro-macro").site_transform("torq", 0, "o", C, X, CFG, cache)
    Df = _dense(mm, 64)
    assert np.allclose(Df.T @ Df, np.eye(64), atol=1e-12)
    assert np.allclose(Df, schur_horn(BR.T @ C @ BR).apply(BR), atol=1e-12)
    assert np.allclose(np.diag(Df.T @ C @ Df), np.trace(C) / 64, rtol=1e-9)
    again, _ = Variant(order="micro-macro").site_transform("torq", 0, "o", C, X, CFG)   # no cache
    assert np.array_equal(_dense(again, 64), Df)
    # macro-micro with a Schur-Horn macro: x @ M, then a block rotation fitted on X @ M (from I)
    v = Variant(full_macro_strategy="block_hadamard_schur_horn")
    ms, _ = v.site_transform("torq", 0, "o", C, X, CFG)
    Dm2 = macro_transform(C, replace(CFG, macro_strategy="block_hadamard_schur_horn")).apply(np.eye(64))
    assert ms.block.shape == (32, 32)
    assert np.allclose(_dense(ms, 64), Dm2 @ np.kron(np.eye(2), ms.block), atol=1e-12)
    # per block: one rotation per 32-block, each orthogonal, other than the shared one
    pb, _ = Variant(per_block=True).site_transform("torq-micro", 0, "o", C, X, CFG)
    assert pb.block.shape == (2, 32, 32)
    for R in pb.block:
        assert np.allclose(R.T @ R, np.eye(32), atol=1e-12)
    # the other methods are the core's
    h, _ = Variant(order="micro-macro", per_block=True).site_transform("hadamard32", 0, "o", C, X, CFG)
    assert np.array_equal(h.block, site_transform("hadamard32", 0, "o", C, X, CFG)[0].block)


@pytest.mark.clause("TQ-2.5", "TQ-2.16")
def test_micro_after_block_hadamard_macro_starts_from_identity(monkeypatch):
    seen = []
    real = variants.micro_rotation

    def spy(X, cfg, seed, init="hadamard", *rest, **kw):
        seen.append(init)
        return real(X, cfg, seed, init, *rest, **kw)

    monkeypatch.setattr(variants, "micro_rotation", spy)
    C, X = _moment_and_rows()
    Variant(full_macro_strategy="block_hadamard_schur_horn").site_transform("torq", 0, "o", C, X, CFG)
    Variant(full_macro_strategy="schur_horn").site_transform("torq", 0, "o", C, X, CFG)
    assert seen == ["identity", "hadamard"]      # H H = I: no second Hadamard after one in the macro


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
    one, sites, _ = _run(tiny, windows, ("smoothrot",), (CFG, Variant(alpha_grid=(CFG.scale_alpha,))))
    assert one[0]["window_nll"] == fixed[0]["window_nll"]
    zero, _, _ = _run(tiny, windows, ("smoothrot", "hadamard32"), (CFG, Variant(alpha_grid=(0.0,))))
    assert zero[0]["window_nll"] == zero[1]["window_nll"]
    assert zero[0]["window_nll"] != fixed[0]["window_nll"]
    seen = []
    real = variants.choose_alpha

    def spy(C, X, W, grid, **kw):
        seen.append(len(X))
        return real(C, X, W, grid, **kw)

    monkeypatch.setattr(variants, "choose_alpha", spy)
    rows, sites, _ = _run(tiny, windows, ("hadamard32", "smoothrot"), (CFG, Variant(alpha_grid=ALPHA_GRID)))
    n_layers = tiny.config.num_layers
    assert seen == [CFG.micro_rows] * (n_layers * len(NORM_OF_SITE))   # the fit rows only
    for i in range(n_layers):
        for site in NORM_OF_SITE:
            info = sites["smoothrot"][f"{i}:{site}"]["scale_alpha"]
            assert info["alpha"] in ALPHA_GRID
            assert info["losses"][str(info["alpha"])] == min(info["losses"].values())
        assert "scale_alpha" not in sites["smoothrot"][f"{i}:o"]
        assert "scale_alpha" not in sites["hadamard32"][f"{i}:qkv"]


@pytest.mark.clause("TQ-2.11", "TQ-2.16")
def test_alpha_grid_on_the_command_line():
    from torq_ref.cli import build_parser
    from torq_ref.experiments.cli import _alpha_grid

    args = build_parser().parse_args(["experiment", "torq-variant", "--alpha-grid", "auto", "--order",
                                      "micro-macro", "--per-block", "--methods", "torq"])
    assert (args.alpha_grid, args.order, args.per_block, args.methods) == ("auto", "micro-macro", True, "torq")
    assert _alpha_grid("auto") == ALPHA_GRID and _alpha_grid("0,0.5") == (0.0, 0.5)
    assert _alpha_grid(None) is None
    for bad in ("3", "-0.5", "often", ","):
        with pytest.raises(SettingsError, match="--alpha-grid"):
            _alpha_grid(bad)


@pytest.mark.clause("TQ-2.16")
def test_torq_variant_command_runs_the_table_with_the_variant(tmp_path, monkeypatch):
    """``experiment torq-variant`` takes run's arguments and hands the variant's dispatch to the
    pipeline, which records the variant in results.json settings."""
    from torq_ref.cli import main
    from torq_ref.torq import pipeline

    seen = {}

    def fake_run(spec, cfg, dispatch=None, **run_kw):
        seen.update(spec=spec, cfg=cfg, dispatch=dispatch)
        return {"results": [], "per_site": {}, "settings": dict(dispatch.settings), "timings": {"total_s": 1.0},
                "seed": 0}

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr("torq_ref.torq.report.table", lambda r: "")
    monkeypatch.setattr("torq_ref.evaluate.summary.metrics_table", lambda r: "")
    assert main(["experiment", "torq-variant", "--methods", "torq", "--settings", "W16A4",
                 "--order", "micro-macro", "--alpha-grid", "0,0.5", "--micro-rows", "64",
                 "--out", str(tmp_path), "--no-figures"]) == 0
    d = seen["dispatch"]
    assert d.scale_step and d.layer_scales is not None and d.site_transform is not None
    assert d.settings["variant"] == {"order": "micro-macro", "full_macro_strategy": "block_hadamard",
                                     "per_block": False, "alpha_grid": (0.0, 0.5)}
    assert seen["spec"].methods == ("torq",) and seen["cfg"].micro_rows == 64
    import json

    assert json.loads((tmp_path / "results.json").read_text())["settings"]["variant"][
        "order"] == "micro-macro"
