"""The peers smoothrot, duquant, mr-gptq and the --weight-quant plumbing (spec/TQ.md TQ-2.8 ..
TQ-2.10, TQ-7.4), on a tiny model through the layer-streaming engine."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref import model as M
from torq_ref import mx
from torq_ref.model.errors import ModelError
from torq_ref.model.hooks import SiteQuant, Transform, prepare_site
from torq_ref.quant import gptq_quantize, transformed_hessian
from torq_ref.rotations.baselines import sylvester_hadamard
from torq_ref.torq import engine, site_transform
from torq_ref.torq.duquant import duquant_transform, outlier_rotation, zigzag_permutation
from torq_ref.torq.methods import METHODS, SCALED_METHODS, weight_quant_of
from torq_ref.torq.oracle import calibrate, plan_for
from torq_ref.torq.site_metrics import site_metrics
from torq_ref.torq.scale_step import scaled_model, site_scales

from torq_fixtures import CFG, W, tiny, windows  # noqa: F401  (shared fixtures)


def _run(tiny, windows, methods, settings=("W16A4",), cfg=CFG):
    ev, ca = windows
    rows, _, _ = engine.stream_evaluate(tiny, ev, ca, methods, settings, cfg, progress=False,
                                        site_metrics=site_metrics)
    return {(r["method"], r["setting"]): r for r in rows}


def _outlier_rows(seed=0, N=512, n=128):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n))
    X[:, 5] *= 30
    X[:, 70] *= 10
    X[:, 71] *= 8
    return X


@pytest.mark.clause("TQ-2.8")
def test_smoothrot_is_the_scale_step_then_the_block_hadamard(tiny, windows):
    assert {"smoothrot", "duquant", "mr-gptq"} <= set(METHODS)
    assert "smoothrot" in SCALED_METHODS and "duquant" in SCALED_METHODS and "mr-gptq" not in SCALED_METHODS
    C = np.eye(64)
    t, _ = site_transform("smoothrot", 0, "qkv", C, np.zeros((8, 64)), CFG)
    assert np.array_equal(t.block, sylvester_hadamard(32)) and t.matrix is None
    by = _run(tiny, windows, ("hadamard32", "smoothrot"))
    # the row equals a whole-model pass of the scaled model (TQ-2.7's alpha rule) with the Hadamard
    ev, ca = windows
    cap = calibrate(tiny, ca, 2 * CFG.micro_rows, progress=False)
    scaled = scaled_model(tiny, site_scales(cap.moment, tiny.config.num_layers, CFG.scale_alpha))
    transforms = {(i, s): t for i in range(tiny.config.num_layers) for s in M.SITES}
    _, nll = M.perplexity(scaled, ev, quant=plan_for("smoothrot", "W16A4", transforms, CFG),
                          progress=False, return_nll=True)
    np.testing.assert_allclose(by[("smoothrot", "W16A4")]["window_nll"], nll, rtol=2e-6)
    assert by[("smoothrot", "W16A4")]["window_nll"] != by[("hadamard32", "W16A4")]["window_nll"]
    # --scale-alpha 0 turns the step off: smoothrot is then hadamard32
    by0 = _run(tiny, windows, ("hadamard32", "smoothrot"), cfg=replace(CFG, scale_alpha=0.0))
    assert by0[("smoothrot", "W16A4")]["window_nll"] == by0[("hadamard32", "W16A4")]["window_nll"]


@pytest.mark.clause("TQ-2.9")
def test_outlier_rotation_spreads_the_largest_channel():
    X = _outlier_rows()[:, :32]
    R = outlier_rotation(X, steps=8, seed=1)
    assert np.allclose(R @ R.T, np.eye(32), atol=1e-12)
    assert np.abs(X @ R).max() < 0.5 * np.abs(X).max()
    assert np.array_equal(R, outlier_rotation(X, steps=8, seed=1))
    # on rows with no outlier to spread, the identity may be the best prefix; never worse
    Y = np.random.default_rng(2).standard_normal((256, 32))
    assert np.abs(Y @ outlier_rotation(Y, 8)).max() <= np.abs(Y).max()


@pytest.mark.clause("TQ-2.9")
def test_zigzag_balances_the_blocks():
    assert zigzag_permutation(np.arange(8.0), 2).tolist() == [7, 0, 6, 1, 5, 2, 4, 3]
    cm = np.random.default_rng(3).uniform(1, 10, size=256)
    perm = zigzag_permutation(cm, 32)
    assert sorted(perm.tolist()) == list(range(256))
    sums = cm[perm].reshape(8, 32).sum(axis=1)
    sorted_sums = np.sort(cm)[::-1].reshape(8, 32).sum(axis=1)     # contiguous by size: unbalanced
    assert sums.max() / sums.min() < 1.3 < sorted_sums.max() / sorted_sums.min()
    with pytest.raises(ValueError, match="multiple"):
        zigzag_permutation(np.ones(40), 32)


@pytest.mark.clause("TQ-2.9")
def test_duquant_transform_is_rotation_permutation_rotation(tiny, windows):
    X = _outlier_rows(4)
    t = duquant_transform(X, 32, steps=8, seed=5)
    d = t.materialize(128)                                  # checks orthogonality of both parts
    D = d.apply(np.eye(128))
    assert np.allclose(D @ D.T, np.eye(128), atol=1e-10)
    assert t.block.shape == (4, 32, 32)
    hmax = np.abs(X @ np.kron(np.eye(4), sylvester_hadamard(32))).max()
    assert np.abs(d.apply(X)).max() < hmax                  # beats the plain block Hadamard here
    t2, _ = site_transform("duquant", 0, "qkv", X.T @ X / len(X), X, replace(CFG, micro_rows=512, duquant_steps=8))
    assert np.array_equal(t2.block, site_transform("duquant", 0, "qkv", X.T @ X, X,
                                                   replace(CFG, micro_rows=512, duquant_steps=8))[0].block)
    by = _run(tiny, windows, ("fp32", "duquant"), settings=("W16A4", "W4A4"))
    assert all(np.isfinite(by[("duquant", s)]["ppl"]) for s in ("W16A4", "W4A4"))


@pytest.mark.clause("TQ-2.10", "TQ-7.4")
def test_mr_gptq_rows_use_gptq_with_the_rotated_hessian(tiny, windows, monkeypatch):
    assert weight_quant_of("mr-gptq", CFG) == "gptq" and weight_quant_of("hadamard32", CFG) == "rtn"
    assert weight_quant_of("hadamard32", replace(CFG, weight_quant="gptq")) == "gptq"
    calls = []
    real = engine.prepare_site

    def spy(weight, q, mode, **kw):
        calls.append((q.weight_fmt, q.weight_quant, "moment" in kw))
        out = real(weight, q, mode, **kw)
        if q.weight_quant == "gptq" and q.weight_fmt is not None:
            d = q.transform.materialize(weight.shape[1])
            want = gptq_quantize(d.apply(weight.astype(np.float64)), transformed_hessian(kw["moment"], d))
            np.testing.assert_array_equal(out.weight, want.astype(weight.dtype))
        return out

    monkeypatch.setattr(engine, "prepare_site", spy)
    by = _run(tiny, windows, ("hadamard32", "mr-gptq"), settings=("W16A4", "W4A4"))
    L = tiny.config.num_layers
    assert calls.count(("e2m1", "gptq", True)) == 4 * L                      # mr-gptq W4A4 only
    assert calls.count(("e2m1", "rtn", False)) == 4 * L                      # hadamard32 W4A4
    assert by[("mr-gptq", "W16A4")]["window_nll"] == by[("hadamard32", "W16A4")]["window_nll"]
    assert by[("mr-gptq", "W4A4")]["window_nll"] != by[("hadamard32", "W4A4")]["window_nll"]
    calls.clear()
    _run(tiny, windows, ("hadamard32", "torq-micro"), settings=("W4A4",), cfg=replace(CFG, weight_quant="gptq"))
    assert calls.count(("e2m1", "gptq", True)) == 8 * L and len(calls) == 8 * L


@pytest.mark.clause("TQ-7.4")
def test_prepare_site_gptq_needs_the_moment_and_uses_its_transformed_hessian():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((400, 64)) * np.exp(rng.normal(0, 1, 64))
    C = X.T @ X / len(X)
    Wt = (rng.standard_normal((16, 64)) * 0.1).astype(np.float32)
    t = Transform(block=sylvester_hadamard(32))
    q = SiteQuant(t, "e2m1", "floor", "e2m1", "floor", 32, weight_quant="gptq")
    with pytest.raises(ModelError, match="second moment"):
        prepare_site(Wt, q, "folded")
    with pytest.raises(ModelError, match="moment has shape"):
        prepare_site(Wt, q, "folded", moment=C[:32, :32])
    with pytest.raises(ModelError, match="weight_quant"):
        SiteQuant(weight_quant="awq")
    p = prepare_site(Wt, q, "folded", moment=C)
    d = t.materialize(64)
    Xt = d.apply(X)
    np.testing.assert_array_equal(p.weight, gptq_quantize(d.apply(Wt.astype(np.float64)), Xt.T @ Xt / len(X)
                                                          ).astype(np.float32))
    rtn = prepare_site(Wt, replace(q, weight_quant="rtn"), "folded")
    err = lambda w: np.linalg.norm(Xt @ (d.apply(Wt.astype(np.float64)) - w).T)   # noqa: E731
    assert err(p.weight) < err(rtn.weight)
    # online mode undoes the transform after GPTQ; without weight_fmt GPTQ is never asked for
    on = prepare_site(Wt, q, "online", moment=C)
    np.testing.assert_allclose(on.weight, d.apply_inverse(p.weight.astype(np.float64)), rtol=1e-6, atol=1e-7)
    assert np.array_equal(prepare_site(Wt, replace(q, weight_fmt=None), "folded").weight,
                          d.apply(Wt.astype(np.float64)).astype(np.float32))
    assert np.array_equal(mx.quantize_dequantize(p.weight, "e2m1"), p.weight)


@pytest.mark.clause("TQ-7.4")
def test_weight_quant_option():
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    parser = build_parser()
    _, cfg = settings_from_args(parser.parse_args(["run", "--weight-quant", "gptq"]))
    assert cfg.weight_quant == "gptq"
    _, cfg = settings_from_args(parser.parse_args(["run", "--methods", "smoothrot,duquant,mr-gptq"]))
    assert cfg.weight_quant == "rtn"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--weight-quant", "awq"])


@pytest.mark.clause("TQ-2.9")
def test_row_pruning_is_exact():
    from torq_ref.torq.duquant import block_rotations

    rng = np.random.default_rng(9)
    X = rng.standard_t(3, size=(600, 96)) * np.exp(rng.normal(0, 1, 96))
    X[rng.integers(0, 600, 5)] *= 20                                   # a few massive tokens
    np.testing.assert_array_equal(block_rotations(X, 32, 12, 3), block_rotations(X, 32, 12, 3, prune=False))


@pytest.mark.clause("TQ-2.9")
def test_row_pruning_keeps_a_spiky_row_below_the_largest_norm():
    from torq_ref.torq.duquant import block_rotations

    rng = np.random.default_rng(10)
    X = 0.05 * rng.standard_normal((64, 32))
    X[0] = 6 / np.sqrt(32) * np.sign(rng.standard_normal(32))       # largest norm (6), flat
    X[1, 3] = 2.5                                                     # norm 2.5 > 6 / sqrt(32): the max
    R = block_rotations(X, 32, 16, 1)
    np.testing.assert_array_equal(R, block_rotations(X, 32, 16, 1, prune=False))
    assert np.abs(X @ R).max() < 2.0                                  # the spike was spread
