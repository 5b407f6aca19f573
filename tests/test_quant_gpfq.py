"""GPFQ with quantized inputs and MX groups (spec/TQ.md TQ-7.5, TQ-7.8), its wiring into
prepare_site and the engine (TQ-7.6), the weights' own scale rule (TQ-7.7) and the plan export."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.model.errors import ModelError
from torq_ref.model.hooks import SiteQuant, Transform, prepare_site
from torq_ref.quant import GPFQError, gpfq_quantize
from torq_ref.rotations.baselines import sylvester_hadamard
from torq_ref.torq import engine
from torq_ref.torq.site_metrics import site_metrics

from torq_fixtures import CFG, tiny, windows  # noqa: F401  (shared fixtures)


def _layer(seed=0, N=2048, n=128, out=48):
    """Correlated, heavy-tailed inputs with uneven channel scales, and a weight (as for GPTQ)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) / np.sqrt(n) + np.eye(n)
    X = (rng.standard_t(4, size=(N, n)) @ A) * np.exp(rng.normal(0, 0.7, size=n))
    W = rng.standard_normal((out, n)) * 0.05
    return X, W


def _exps(W, rule="floor", bs=32):
    """The E8M0 exponents (out, n / bs) of W's groups by the scale rule."""
    from torq_ref.mx import block_scale_codes
    from torq_ref.mx.formats import get_format

    out, n = W.shape
    codes = block_scale_codes(W.reshape(out, n // bs, bs), get_format("e2m1"), rule, working_dtype=np.float64)
    return codes.astype(np.int64) - 127


def _naive_gpfq(W, X, Xq, rule="floor", bs=32):
    """The greedy path written out with the residual itself: u (N, out) of the layer output."""
    exps = _exps(W, rule, bs)
    u = np.zeros((len(X), W.shape[0]))
    Q = np.zeros_like(W)
    for t in range(W.shape[1]):
        v = u + np.outer(X[:, t], W[:, t])
        nrm = Xq[:, t] @ Xq[:, t]
        arg = (Xq[:, t] @ v) / nrm if nrm > 0 else W[:, t]
        e = exps[:, t // bs]
        Q[:, t] = np.ldexp(mx.decode(mx.encode(np.ldexp(arg, -e), "e2m1", saturate=True), "e2m1"), e)
        u = v - np.outer(Xq[:, t], Q[:, t])
    return Q


@pytest.mark.clause("TQ-7.5")
@pytest.mark.parametrize("batch", [128, 7, 1])
def test_gpfq_is_the_greedy_path_of_the_residual(batch):
    X, W = _layer(1, N=256, n=64, out=8)
    Xq = mx.quantize_dequantize(X, "e2m1")
    Xq[:, 37] = 0.0                                   # a dead quantized input: rounded as it is
    got = gpfq_quantize(W, X, Xq, batch=batch)
    assert np.array_equal(got, _naive_gpfq(W, X, Xq))
    assert np.array_equal(got[:, 37], mx.quantize_dequantize(W, "e2m1")[:, 37])
    assert not np.array_equal(got, mx.quantize_dequantize(W, "e2m1"))


@pytest.mark.clause("TQ-7.5")
@pytest.mark.parametrize("rule", ["floor", "rceil", "even", "mse"])
def test_gpfq_with_orthogonal_unquantized_inputs_is_rtn(rule):
    """Xq = X with orthogonal columns (each row nonzero in one channel only: B diagonal)."""
    rng = np.random.default_rng(2)
    _, W = _layer(2)
    N, n = 512, W.shape[1]
    X = np.zeros((N, n))
    X[np.arange(N), np.concatenate([np.arange(n), rng.integers(0, n, N - n)])] = rng.standard_t(3, N) * 5
    B = X.T @ X
    assert np.array_equal(B, np.diag(np.diag(B))) and (np.diag(B) > 0).all()
    rtn = mx.quantize_dequantize(W, "e2m1", scale_rule=rule)
    assert np.array_equal(gpfq_quantize(W, X, scale_rule=rule), rtn)
    assert np.array_equal(gpfq_quantize(W, X, X.copy(), scale_rule=rule), rtn)


@pytest.mark.clause("TQ-7.5")
@pytest.mark.parametrize("rule", ["floor", "rceil"])
def test_gpfq_output_is_mx_blocks(rule):
    X, W = _layer(3, N=512)
    Xq = mx.quantize_dequantize(X, "e2m1")
    Q = gpfq_quantize(W, X, Xq, scale_rule=rule)
    # every group is element values times the group's scale, taken from the original weights
    e = np.repeat(_exps(W, rule), 32, axis=1)                            # (out, n)
    t = np.ldexp(Q, -e)
    assert np.array_equal(mx.decode(mx.encode(t, "e2m1"), "e2m1"), t)
    assert np.abs(t).max() <= 6.0
    assert np.array_equal(mx.quantize_dequantize(Q, "e2m1"), Q)       # the codec's round trip
    assert not np.array_equal(Q, mx.quantize_dequantize(W, "e2m1", scale_rule=rule))


@pytest.mark.clause("TQ-7.8")
@pytest.mark.parametrize("seed", [0, 1])
def test_gpfq_lowers_the_quantized_layers_output_error_of_rtn(seed):
    X, W = _layer(seed, N=4096)
    Xq = mx.quantize_dequantize(X, "e2m1")
    cal, held = slice(0, 2048), slice(2048, None)
    Q = gpfq_quantize(W, X[cal], Xq[cal])
    rtn = mx.quantize_dequantize(W, "e2m1")

    def err(Qm, s):
        ref = X[s] @ W.T
        return np.linalg.norm(ref - Xq[s] @ Qm.T) / np.linalg.norm(ref)

    assert err(Q, cal) < 0.95 * err(rtn, cal)
    assert err(Q, held) < 0.98 * err(rtn, held)


@pytest.mark.clause("TQ-7.5")
def test_gpfq_bad_input_and_determinism():
    X, W = _layer(4, N=64, n=64, out=4)
    cases = [
        (dict(W=W[0]), r"weight must be \(out, n\)"),
        (dict(X=X[:, :32]), r"X has shape \(64, 32\)"),
        (dict(Xq=X[:, :32]), r"Xq has shape \(64, 32\)"),
        (dict(Xq=X[:10]), "must be the same rows"),
        (dict(X=X[:0], Xq=X[:0]), "at least one calibration row"),
        (dict(W=W[:, :48], X=X[:, :48], Xq=None), "not a multiple of the MX block size 32"),
        (dict(X=np.where(np.arange(64) == 3, np.inf, X)), "non-finite"),
        (dict(W=np.where(np.arange(64) == 3, np.nan, W)), "non-finite"),
        (dict(batch=0), "batch must be >= 1"),
    ]
    for kw, msg in cases:
        a = {"W": W, "X": X, "Xq": X, **kw}
        with pytest.raises(GPFQError, match=msg):
            gpfq_quantize(a.pop("W"), a.pop("X"), a.pop("Xq"), **a)
    with pytest.raises(GPFQError, match="overflows the E8M0"):
        gpfq_quantize(np.full((2, 32), 1e45), X[:, :32])
    assert issubclass(GPFQError, ValueError)
    Xq = mx.quantize_dequantize(X, "e2m1")
    assert np.array_equal(gpfq_quantize(W, X, Xq), gpfq_quantize(W.copy(), X.copy(), Xq.copy()))


# ---- wiring (TQ-7.6, TQ-7.7) ----

@pytest.mark.clause("TQ-7.6")
def test_prepare_site_gpfq_needs_the_rows_and_quantizes_them_as_the_site_does():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((400, 64)) * np.exp(rng.normal(0, 1, 64))
    Wt = (rng.standard_normal((16, 64)) * 0.1).astype(np.float32)
    t = Transform(block=sylvester_hadamard(32))
    q = SiteQuant(t, "e2m1", "floor", "e2m1", "floor", 32, weight_quant="gpfq")
    with pytest.raises(ModelError, match="calibration input rows"):
        prepare_site(Wt, q, "folded")
    with pytest.raises(ModelError, match="rows have 32 channels; the site width is 64"):
        prepare_site(Wt, q, "folded", rows=X[:, :32])
    p = prepare_site(Wt, q, "folded", rows=X.reshape(4, 100, 64))       # leading axes are rows
    d = t.materialize(64)
    Xt = d.apply(X)
    Xqt = mx.quantize_dequantize(Xt, "e2m1")
    wd = d.apply(Wt.astype(np.float64))
    np.testing.assert_array_equal(p.weight, gpfq_quantize(wd, Xt, Xqt).astype(np.float32))
    rtn = prepare_site(Wt, replace(q, weight_quant="rtn"), "folded")
    err = lambda w: np.linalg.norm(Xt @ wd.T - Xqt @ w.astype(np.float64).T)   # noqa: E731
    assert err(p.weight) < err(rtn.weight)
    # without an activation format the float rows are the quantized ones too
    p16 = prepare_site(Wt, replace(q, act_fmt=None), "folded", rows=X)
    np.testing.assert_array_equal(p16.weight, gpfq_quantize(wd, Xt, Xt).astype(np.float32))


@pytest.mark.clause("TQ-7.6")
def test_engine_passes_the_rows_to_gpfq_sites_and_w4a4_runs(tiny, windows, monkeypatch):  # noqa: F811
    calls = []
    real = engine.prepare_site

    def spy(weight, q, mode, **kw):
        calls.append((q.weight_fmt, q.weight_quant, sorted(kw)))
        out = real(weight, q, mode, **kw)
        if q.weight_quant == "gpfq" and q.weight_fmt is not None:
            rows = kw["rows"]
            assert rows.ndim == 2 and rows.shape[1] == weight.shape[1] and len(rows) > 32
        return out

    monkeypatch.setattr(engine, "prepare_site", spy)
    ev, ca = windows
    cfg = replace(CFG, weight_quant="gpfq")
    rows, _, _ = engine.stream_evaluate(tiny, ev, ca, ("fp32", "hadamard32", "torq"), ("W16A4", "W4A4"), cfg,
                                        progress=False, site_metrics=site_metrics)
    by = {(r["method"], r["setting"]): r for r in rows}
    L = tiny.config.num_layers
    assert calls.count(("e2m1", "gpfq", ["rows"])) == 8 * L            # hadamard32 and torq at W4A4
    assert calls.count((None, "gpfq", [])) == 8 * L                    # W16A4: no weight quantizer
    for m in ("hadamard32", "torq"):
        assert all(np.isfinite(by[(m, "W4A4")]["window_kld"]))
        assert np.mean(by[(m, "W4A4")]["window_kld"]) > np.mean(by[(m, "W16A4")]["window_kld"]) > 0
    plain, _, _ = engine.stream_evaluate(tiny, ev, ca, ("hadamard32",), ("W4A4",), CFG, progress=False,
                                         site_metrics=site_metrics)
    assert plain[0]["window_nll"] != by[("hadamard32", "W4A4")]["window_nll"]


@pytest.mark.clause("TQ-7.7", "TQ-7.4")
def test_weight_scale_rule_reaches_the_weights_only(tiny, windows, monkeypatch):  # noqa: F811
    seen = []
    real = engine.prepare_site

    def spy(weight, q, mode, **kw):
        seen.append((q.act_scale_rule, q.weight_fmt, q.weight_scale_rule))
        return real(weight, q, mode, **kw)

    monkeypatch.setattr(engine, "prepare_site", spy)
    ev, ca = windows
    engine.stream_evaluate(tiny, ev, ca, ("hadamard32",), ("W4A4",), replace(CFG, weight_scale_rule="rceil"),
                           progress=False, site_metrics=site_metrics)
    assert set(seen) == {("floor", "e2m1", "rceil")}


@pytest.mark.clause("TQ-7.6", "TQ-7.7", "TQ-4.2")
def test_weight_quant_and_weight_scale_rule_options():
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    parser = build_parser()
    _, cfg = settings_from_args(parser.parse_args(["run", "--weight-quant", "gpfq"]))
    assert cfg.weight_quant == "gpfq" and cfg.weight_scale_rule is None
    _, cfg = settings_from_args(parser.parse_args(["run", "--weight-scale-rule", "rceil", "--scale-rule", "floor"]))
    assert cfg.weight_scale_rule == "rceil" and cfg.scale_rule == "floor"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--weight-scale-rule", "ceiling"])


@pytest.mark.clause("TQ-7.6", "TQ-7.7", "TQ-8.1")
def test_plan_export_skips_gpfq_rows_and_a_second_scale_rule(tmp_path):
    from torq_ref.torq.plan import PlanRecorder

    def skipped(cfg, sub):
        rec = PlanRecorder(tmp_path / sub, ("fp32", "hadamard32"), ("W16A4", "W4A4"), cfg)
        return rec.rows, [(s["method"], s["setting"], s["reason"]) for s in rec.skipped]

    rows, skip = skipped(replace(CFG, weight_quant="gpfq"), "gpfq")
    assert rows == [("fp32", "FP32"), ("hadamard32", "W16A4")]
    assert [s[:2] for s in skip] == [("hadamard32", "W4A4")] and skip[0][2].startswith("GPFQ weights")
    rows, skip = skipped(replace(CFG, weight_scale_rule="rceil"), "rule")
    assert [s[:2] for s in skip] == [("hadamard32", "W4A4")] and "scale rule" in skip[0][2]
    rows, skip = skipped(replace(CFG, weight_scale_rule=CFG.scale_rule), "same")
    assert skip == [] and ("hadamard32", "W4A4") in rows
