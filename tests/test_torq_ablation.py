"""The ablation rows of TORQ's levels (spec/TQ.md TQ-2.12), one row per distinct method (TQ-2.5),
and the micro objective weighted by the output (TQ-2.14)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref.torq import SettingsError, engine
from torq_ref.torq.methods import DEFAULT_METHODS, METHOD_PRESETS, METHODS, parse_list
from torq_ref.torq.oracle import calibrate
from torq_ref.torq.site_metrics import site_metrics

from torq_fixtures import CFG, spiky_site, tiny, windows  # noqa: F401  (shared fixtures)

_site = spiky_site


def _run(tiny, windows, methods, cfg):
    ev, ca = windows
    return engine.stream_evaluate(tiny, ev, ca, methods, ("W16A4",), cfg, progress=False,
                                  site_metrics=site_metrics)


@pytest.mark.clause("TQ-2.12")
def test_ablation_preset_and_default_methods():
    assert "torq-maxent" in METHODS and "torq-maxent" not in DEFAULT_METHODS
    assert parse_list(None, METHODS, "method", default=DEFAULT_METHODS) == DEFAULT_METHODS
    abl = parse_list("ablation", METHODS, "method", presets=METHOD_PRESETS)
    assert abl == ("fp32", "hadamard32", "torq-macro", "smoothrot", "torq-maxent", "torq-micro")
    assert parse_list("rtn,ablation,torq", METHODS, "method", presets=METHOD_PRESETS) == ("rtn",) + abl + ("torq",)
    with pytest.raises(SettingsError, match="unknown method"):
        parse_list("ablation,nope", METHODS, "method", presets=METHOD_PRESETS)


@pytest.mark.clause("TQ-2.5", "TQ-2.12")
def test_default_and_ablation_tables_have_one_row_per_distinct_method():
    """No method of a preset or of the default list equals another of the same list by
    construction (SAME_AS): torq-micro is torq, so the default table has torq only and the
    ablation torq-micro only."""
    from torq_ref.torq.methods import SAME_AS

    assert "torq-micro" not in DEFAULT_METHODS and "torq" in DEFAULT_METHODS
    for methods in (DEFAULT_METHODS, *METHOD_PRESETS.values()):
        assert len(set(methods)) == len(methods)
        for a, b in SAME_AS.items():
            assert not (a in methods and b in methods), (a, b, methods)
    assert "torq-micro" in METHODS                                   # still a valid name


@pytest.mark.clause("TQ-2.5")
def test_torq_and_torq_micro_are_one_method(tiny, windows):
    """The two rows are identical on a tiny model (the reason torq-micro left the default)."""
    rows, _, _ = _run(tiny, windows, ("torq-micro", "torq"), CFG)
    assert rows[0]["window_nll"] == rows[1]["window_nll"]
    assert rows[0]["window_kld"] == rows[1]["window_kld"]


@pytest.mark.clause("TQ-2.5", "TQ-4.5")
def test_dropping_a_row_leaves_the_other_rows_unchanged(tiny, windows):
    """The rows of a table do not share a random stream or a fit that another row's presence
    changes: with and without torq-micro (and with the rows in another order) every other row
    has the same numbers, bit for bit."""
    others = ("random-orthogonal", "hadamard32", "torq", "duquant", "torq-maxent")
    ev, ca = windows
    with_it, _, _ = engine.stream_evaluate(tiny, ev, ca, ("torq-micro",) + others, ("W16A4", "W4A4"),
                                           CFG, progress=False)
    without, _, _ = engine.stream_evaluate(tiny, ev, ca, others[::-1], ("W16A4", "W4A4"), CFG,
                                           progress=False)
    key = lambda r: (r["method"], r["setting"])                      # noqa: E731
    a = {key(r): r for r in with_it if r["method"] != "torq-micro"}
    b = {key(r): r for r in without}
    assert set(a) == set(b)
    for k in a:
        for field in ("window_nll", "window_kld", "window_top1"):
            assert a[k][field] == b[k][field], (k, field)


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
