"""The glue inside the engine and the pipeline (spec/ST.md ST-4.1): no fit sees rows it must
not, every aggregate is right with several unequal parts, and the window check follows the
model's BOS rule."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref.model.capture import ActivationCapture
from torq_ref.torq import engine
from torq_ref.torq.methods import METHODS
from torq_ref.torq.oracle import calibrate
from torq_ref.torq.pipeline import RunSpec, check_windows
from torq_ref.torq.methods import SettingsError

from torq_fixtures import CFG, W, tiny, windows  # noqa: F401  (shared fixtures)

SMALL = replace(CFG, micro_rows=24, weight_quant="gptq")


class Poisoned(ActivationCapture):
    """A capture whose rows past ``micro_rows`` (the held-out metric rows, TQ-6.2) are NaN."""

    def inputs(self, layer=None, site=None):
        X = super().inputs(layer, site)
        if layer is None:
            return X
        X = X.copy()
        X[SMALL.micro_rows:] = np.nan
        return X


@pytest.mark.clause("ST-4.1", "TQ-6.2", "TQ-3.1")
def test_no_fit_sees_held_out_or_evaluation_rows(tiny, windows, monkeypatch):
    """Every method's fits (the micro optimizer, DuQuant, the macro and scale steps' moments,
    GPTQ's Hessian) receive calibration data only: the held-out rows are poisoned with NaN and
    every fit input must be finite, with exactly ``micro_rows`` rows; the site metrics get exactly
    the held-out rows; the raw rows fitted are the first ``micro_rows`` rows of a calibration of
    the calibration windows alone."""
    import torq_ref.rotations.maxent as maxent
    import torq_ref.torq.duquant as duquant

    ev, ca = windows
    fitted: dict = {"maxent": [], "duquant": []}
    real_maxent, real_duquant = maxent.maxent_rotation, duquant.duquant_transform

    def spy_maxent(X, *a, **kw):
        fitted["maxent"].append(np.array(X))
        return real_maxent(X, *a, **kw)

    def spy_duquant(X, *a, **kw):
        fitted["duquant"].append(np.array(X))
        return real_duquant(X, *a, **kw)

    metric_rows = []

    def spy_metrics(C, X_held, transform, cfg):
        metric_rows.append(np.array(X_held))
        return {"imbalance": 1.0, "entropy": 1.0}

    real_transform = engine.site_transform
    moments = []

    def spy_transform(method, layer, site, C, X, cfg, cache=None, **kw):
        moments.append(np.array(C))
        return real_transform(method, layer, site, C, X, cfg, cache, **kw)

    monkeypatch.setattr(maxent, "maxent_rotation", spy_maxent)
    monkeypatch.setattr(duquant, "duquant_transform", spy_duquant)
    monkeypatch.setattr(engine, "ActivationCapture", Poisoned)
    monkeypatch.setattr(engine, "site_transform", spy_transform)
    rows, _, _ = engine.stream_evaluate(tiny, ev, ca, METHODS, ("W16A4", "W4A4"), SMALL, progress=False,
                                        site_metrics=spy_metrics)
    assert fitted["maxent"] and fitted["duquant"]
    for X in fitted["maxent"] + fitted["duquant"]:
        assert X.shape[0] == SMALL.micro_rows and np.isfinite(X).all()
    for C in moments:
        assert np.isfinite(C).all()
    held = min(2 * SMALL.micro_rows, ca.size) - SMALL.micro_rows
    assert metric_rows and all(X.shape[0] == held and np.isnan(X).all() for X in metric_rows)
    assert all(np.isfinite(r["window_nll"]).all() for r in rows)
    # torq-maxent fits the raw rows: they are the calibration windows' first micro_rows rows
    monkeypatch.setattr(engine, "ActivationCapture", ActivationCapture)
    fitted["maxent"].clear()
    engine.stream_evaluate(tiny, ev, ca, ("torq-maxent",), ("W16A4",), SMALL, progress=False,
                           site_metrics=None)
    cap = calibrate(tiny, ca, 2 * SMALL.micro_rows, progress=False)
    want = [cap.inputs(i, s)[: SMALL.micro_rows] for i in range(tiny.config.num_layers)
            for s in ("qkv", "o", "gate_up", "down")]
    assert len(fitted["maxent"]) == len(want)
    for got, exp in zip(fitted["maxent"], want):
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-6)   # batched vs one-pass rounding


@pytest.mark.clause("ST-4.1", "TQ-6.4")
def test_combine_weights_unequal_chunks():
    """The window mean of chunk means is weighted by the chunks' position counts."""
    parts = [{"n": 3, "nll": 1.0, "kld": 0.5, "top1": 1.0}, {"n": 1, "nll": 5.0, "kld": 2.5, "top1": 0.0}]
    m = engine._combine(parts)
    assert m == {"n": 4, "nll": 2.0, "kld": 1.0, "top1": 0.75}
    one = engine._combine(parts[:1])
    assert one == {"n": 3, "nll": 1.0, "kld": 0.5, "top1": 1.0}


@pytest.mark.clause("ST-4.1", "TQ-6.3", "TQ-6.4")
def test_rows_independent_of_chunk_and_batch_sizes(tiny, windows, monkeypatch):
    """Head chunks of unequal sizes (16, 16, 7 positions) and window batches of unequal sizes
    (2, 1) give the rows of one chunk and one batch per window, and every window's numbers equal
    a run of that window alone (the window means are per window)."""
    ev, ca = windows
    methods, settings = ("fp32", "rtn", "hadamard32"), ("W16A4", "W4A4")

    def run(evw, head, batch):
        monkeypatch.setattr(engine, "HEAD_CHUNK", head)
        monkeypatch.setattr(engine, "WINDOW_BATCH", batch)
        rows, _, _ = engine.stream_evaluate(tiny, evw, ca, methods, settings, CFG, progress=False,
                                            site_metrics=None)
        return rows

    whole = run(ev, 1000, 8)
    split = run(ev, 16, 2)
    assert W - 1 == 39 and ev.shape[0] == 3
    for a, b in zip(whole, split):
        for k in ("window_nll", "window_kld", "window_top1"):
            np.testing.assert_allclose(b[k], a[k], rtol=2e-6, atol=1e-9, err_msg=f"{a['method']} {k}")
        assert a["window_n"] == b["window_n"] == [W - 1] * 3
        assert b["ppl"] == pytest.approx(np.exp(np.mean(b["window_nll"])), rel=1e-12)
        assert b["kld_percentiles"] == pytest.approx(a["kld_percentiles"], rel=1e-5, abs=1e-9)
    for j in range(ev.shape[0]):
        alone = run(ev[j:j + 1], 16, 2)
        for a, b in zip(alone, split):
            for k in ("window_nll", "window_kld", "window_top1"):
                assert a[k][0] == pytest.approx(b[k][j], rel=2e-6, abs=1e-9), (a["method"], k, j)


@pytest.mark.clause("ST-4.1", "TQ-4.2", "FW-6.5")
@pytest.mark.parametrize("bos", [None, 2])
def test_window_check_follows_the_bos_rule(bos):
    """A window holds ``window - 1`` text tokens after a BOS and ``window`` without: the check
    accepts exactly enough tokens and refuses one fewer, on both rules."""
    spec = RunSpec(eval_windows=3, calib_windows=2, window=W)
    text = spec.window - (bos is not None)
    check_windows(5 * text, spec, bos)
    with pytest.raises(SettingsError, match=f"need {5 * text} text tokens"):
        check_windows(5 * text - 1, spec, bos)
    if bos is not None:                      # what fits with BOS does not fit without it
        with pytest.raises(SettingsError):
            check_windows(5 * text, spec, None)


@pytest.mark.clause("ST-4.1", "FW-6.5", "TQ-4.2")
def test_run_on_a_bos_model_uses_its_bos_rule(monkeypatch, tmp_path):
    """``run`` on a Gemma3-like model that adds a BOS (id 2): a text of exactly (E + C) x
    (window - 1) tokens is enough, every window starts with the BOS, and results.json records it."""
    import torq_ref.model as M
    from test_glue_run_options import BASE, W as RW, run_cli

    seen = []
    real = M.split_windows

    def spy(ids, n_eval, n_calib, window, bos_id=None):
        ev, ca = real(ids, n_eval, n_calib, window, bos_id)
        seen.append((ev, ca, bos_id))
        return ev, ca

    monkeypatch.setattr(M, "split_windows", spy)
    res, _ = run_cli(monkeypatch, tmp_path, BASE, family="gemma3", bos=2, n_tokens=4 * (RW - 1))
    assert res["settings"]["bos_id"] == 2 and res["settings"]["n_tokens"] == 4 * (RW - 1)
    (ev, ca, bos_id), = seen
    assert bos_id == 2 and (ev[:, 0] == 2).all() and (ca[:, 0] == 2).all()
    assert all(r["window_n"] == [RW - 1] * 2 for r in res["results"])


@pytest.mark.clause("ST-4.1", "EV-3.1")
def test_window_means_weight_unequal_windows():
    """The table's KLD, NLL and top-1 of a row are window means weighted by window_n."""
    from torq_ref.evaluate.summary import summarize

    row = {"method": "rtn", "setting": "W4A4", "window_nll": [1.0, 4.0, 2.0], "window_kld": [0.1, 0.4, 0.2],
           "window_top1": [1.0, 0.0, 0.5], "window_n": [3, 1, 2]}
    out = summarize([row])[0]
    assert out["nll"] == pytest.approx((3 * 1.0 + 4.0 + 2 * 2.0) / 6)
    assert out["kld"] == pytest.approx((3 * 0.1 + 0.4 + 2 * 0.2) / 6)
    assert out["top1"] == pytest.approx((3 * 1.0 + 0.0 + 2 * 0.5) / 6)


@pytest.mark.clause("ST-4.1", "EV-5.2")
def test_seed_table_over_three_seeds_with_unequal_windows():
    """Three seeds, windows of unequal sizes, one row missing from one seed: each seed's mean
    KLD is window_n-weighted, the mean and range are over the seeds that have the row."""
    from torq_ref.evaluate.seed_spread import seed_table

    def run(seed, kld, with_rtn=True):
        rows = [{"method": "torq", "setting": "W4A4", "window_kld": kld, "window_n": [3, 1]}]
        if with_rtn:
            rows.append({"method": "rtn", "setting": "W4A4", "window_kld": [0.5, 0.5], "window_n": [3, 1]})
        return {"seed": seed, "path": f"s{seed}", "rows": rows}

    runs = [run(0, [0.1, 0.5]), run(1, [0.2, 0.2], with_rtn=False), run(2, [0.3, 0.7])]
    per_seed = [(3 * 0.1 + 0.5) / 4, 0.2, (3 * 0.3 + 0.7) / 4]                # 0.2, 0.2, 0.4
    lines = seed_table(runs).splitlines()
    torq = next(l for l in lines if l.startswith("| torq |")).strip("| ").split(" | ")
    assert [float(c) for c in torq[2:5]] == pytest.approx(per_seed, abs=5e-5)
    assert float(torq[5]) == pytest.approx(np.mean(per_seed), abs=5e-5)
    assert float(torq[6]) == pytest.approx(max(per_seed) - min(per_seed), abs=5e-5)
    rtn = next(l for l in lines if l.startswith("| rtn |")).strip("| ").split(" | ")
    assert rtn[3] == "-" and float(rtn[5]) == pytest.approx(0.5) and float(rtn[6]) == pytest.approx(0.0)


@pytest.mark.clause("ST-4.1", "TQ-2.11", "TQ-2.16")
def test_variant_alpha_choice_and_fits_see_calibration_rows_only(tiny, windows, monkeypatch):
    """The experiments' per-site alpha choice and the micro-macro order's fit get the first
    ``micro_rows`` calibration rows only (held-out rows poisoned with NaN)."""
    import torq_ref.experiments.variants as variants
    import torq_ref.rotations.maxent as maxent

    ev, ca = windows
    seen = {"alpha": [], "maxent": []}
    real_choose, real_maxent = variants.choose_alpha, maxent.maxent_rotation

    def spy_choose(C, X, W, grid, **kw):
        seen["alpha"].append(np.array(X))
        return real_choose(C, X, W, grid, **kw)

    def spy_maxent(X, *a, **kw):
        seen["maxent"].append(np.array(X))
        return real_maxent(X, *a, **kw)

    monkeypatch.setattr(variants, "choose_alpha", spy_choose)
    monkeypatch.setattr(maxent, "maxent_rotation", spy_maxent)
    monkeypatch.setattr(engine, "ActivationCapture", Poisoned)
    v = variants.Variant(order="micro-macro", alpha_grid=(0.0, 0.5))
    engine.stream_evaluate(tiny, ev, ca, ("torq",), ("W16A4",), SMALL, progress=False,
                           site_metrics=lambda C, X, t, cfg: {"imbalance": 1.0, "entropy": 1.0},
                           dispatch=v.dispatch())
    assert seen["alpha"] and seen["maxent"]
    for X in seen["alpha"] + seen["maxent"]:
        assert X.shape[0] == SMALL.micro_rows and np.isfinite(X).all()
