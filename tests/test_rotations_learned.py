"""The block rotation trained on the layer-output error (spec/ME.md section 6) and the
``torq-learned`` row that uses it (spec/TQ.md TQ-2.18)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.rotations.baselines import sylvester_hadamard
from torq_ref.rotations.learned import LearnedInputError, _Objective, _factor, learned_rotation

from torq_fixtures import CFG, tiny, windows  # noqa: F401  (shared fixtures)


def _site(seed=0, T=256, n=64, out=48):
    """Heavy-tailed rows with two outlier channels (X (T, n)) and the weight W (out, n) that consumes them."""
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, size=(T, n))
    X[:, 5] *= 20
    X[:, 40] *= 8
    W = rng.standard_normal((out, n)) / np.sqrt(n)
    return X, W


def _direct_L(X, W, R, b=32):
    """ME-6.1 written out: || (Q(x (I (x) R)) (I (x) R^T) - x) W^T ||^2 / || x W^T ||^2 over all rows."""
    T, n = X.shape
    Y = (X.reshape(T, n // b, b) @ R).reshape(T, n)
    back = (mx.quantize_dequantize(Y, "e2m1").reshape(T, n // b, b) @ R.T).reshape(T, n)
    return np.sum(((back - X) @ W.T) ** 2) / np.sum((X @ W.T) ** 2)


@pytest.mark.clause("ME-6.1")
@pytest.mark.parametrize("out", [48, 96])          # out <= n: F = W^T; out > n: the eigh factor
def test_objective_is_the_relative_output_error(out):
    X, W = _site(1, n=64, out=out)
    F = _factor(W)
    np.testing.assert_allclose(F @ F.T, W.T @ W, rtol=0, atol=1e-12)
    H = sylvester_hadamard(32)
    R, rep = learned_rotation(X, W, holdout=0.0, steps=0)
    assert np.array_equal(R, H)
    assert rep.initial["calib_L"] == pytest.approx(_direct_L(X, W, H), rel=1e-12)
    Q = np.linalg.qr(np.random.default_rng(2).standard_normal((32, 32)))[0]
    L = _Objective(X, F, 32, "e2m1", "floor").evaluate(Q)[1]
    assert L == pytest.approx(_direct_L(X, W, Q), rel=1e-12)
    assert 0 < L < 1


@pytest.mark.clause("ME-6.2")
def test_gradient_is_the_straight_through_estimate():
    """With the rounding error D of the current R held fixed, L is a quadratic in R: a central
    difference of it along any direction equals <G, Z>."""
    X, W = _site(2, T=128)
    F = _factor(W)
    obj = _Objective(X, F, 32, "e2m1", "floor")
    R = np.linalg.qr(np.random.default_rng(3).standard_normal((32, 32)))[0]
    _, _, _, G = obj.evaluate(R, grad=True)
    T, n = X.shape
    Y = (X.reshape(-1, 32) @ R).reshape(T, n)
    D = (mx.quantize_dequantize(Y, "e2m1") - Y).reshape(-1, 32)

    def surrogate(Rm):
        E = (D @ Rm.T).reshape(T, n) @ F
        return np.sum(E * E) / obj.den

    for k in range(3):
        Z = np.random.default_rng(10 + k).standard_normal((32, 32))
        eps = 1e-4
        fd = (surrogate(R + eps * Z) - surrogate(R - eps * Z)) / (2 * eps)
        assert fd == pytest.approx(np.sum(G * Z), rel=1e-6)


@pytest.mark.clause("ME-6.3", "ME-6.1")
@pytest.mark.parametrize("step_angle", [0.05, 0.5])
def test_steps_stay_orthogonal_and_lower_the_calibration_objective(step_angle):
    X, W = _site(1)
    R, rep = learned_rotation(X, W, seed=1, step_angle=step_angle, patience=3)
    assert np.abs(R.T @ R - np.eye(32)).max() <= 1e-12
    accepted = [s for s in rep.steps if s["accepted"]]
    assert all(b["calib_J"] < a["calib_J"] for a, b in zip(accepted, accepted[1:]))
    assert rep.stop_reason in ("no_descent", "holdout", "steps")
    if rep.stop_reason == "no_descent":
        assert not rep.steps[-1]["accepted"]
    kept = rep.steps[rep.best_step]
    assert kept["accepted"] and rep.final["calib_L"] == kept["calib_L"]
    if step_angle == 0.05:
        assert rep.best_step >= 1 and rep.final["holdout_L"] < rep.initial["holdout_L"]


@pytest.mark.clause("ME-6.4")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_result_is_the_held_out_best_never_worse_than_the_start(seed):
    X, W = _site(seed)
    R, rep = learned_rotation(X, W, seed=seed)
    held = [s["holdout_J"] for s in rep.steps if s["accepted"]]
    assert rep.steps[rep.best_step]["holdout_J"] == min(held)
    assert held.index(min(held)) == rep.best_step                     # the first of equals
    assert rep.final["holdout_L"] <= rep.initial["holdout_L"]
    assert rep.calib_rows + rep.holdout_rows == len(X) and rep.holdout_rows == 64
    if seed == 2:                     # a step lowers the calibration J but not the held-out one
        assert len(held) > 1 and rep.best_step == 0
        assert np.array_equal(R, sylvester_hadamard(32))


@pytest.mark.clause("ME-6.4", "ME-6.3")
def test_a_start_with_nothing_to_gain_is_returned_as_it_is():
    X, W = _site(3)
    H = sylvester_hadamard(32)
    Q = np.linalg.qr(np.random.default_rng(4).standard_normal((32, 32)))[0]
    R, rep = learned_rotation(np.zeros_like(X), W)                    # all-zero rows: L = 0
    assert np.array_equal(R, H) and rep.stop_reason == "zero" and rep.best_step == 0
    R, rep = learned_rotation(X, np.zeros_like(W), init=Q)           # a zero weight
    assert np.array_equal(R, Q) and rep.stop_reason == "zero"
    R, rep = learned_rotation(X, W, steps=0, init="identity")
    assert np.array_equal(R, np.eye(32)) and rep.stop_reason == "steps" and len(rep.steps) == 1
    R, rep = learned_rotation(X, W, holdout=0.0, steps=3)             # no held-out rows: calibration J
    assert rep.holdout_rows == 0 and np.isnan(rep.final["holdout_L"])
    calib = [s["calib_J"] for s in rep.steps if s["accepted"]]
    assert rep.steps[rep.best_step]["calib_J"] == min(calib)


@pytest.mark.clause("ME-6.6")
def test_deterministic_given_the_seed_and_the_report_is_complete():
    X, W = _site(1)
    R1, r1 = learned_rotation(X, W, seed=5)
    R2, r2 = learned_rotation(X.copy(), W.copy(), seed=5)
    assert np.array_equal(R1, R2) and r1.steps == r2.steps and r1.final == r2.final
    assert (r1.best_step, r1.stop_reason) == (r2.best_step, r2.stop_reason)
    R3, r3 = learned_rotation(X, W, seed=6)
    assert r3.initial["holdout_L"] != r1.initial["holdout_L"]       # another held-out split
    assert set(r1.initial) == set(r1.final) == {"calib_L", "holdout_L", "calib_H", "holdout_H"}
    assert set(r1.steps[0]) == {"step", "calib_J", "calib_L", "calib_H", "holdout_J", "holdout_L",
                                "accepted", "tau"}
    assert r1.seconds > 0
    # the entropy term: J = L - gamma H, H the code entropy of the rotated rows
    _, rg = learned_rotation(X, W, seed=5, gamma=0.01, steps=0)
    from torq_ref.rotations.entropy import code_entropy

    s0 = rg.steps[0]
    assert s0["calib_H"] > 3 and s0["calib_J"] == pytest.approx(s0["calib_L"] - 0.01 * s0["calib_H"], rel=1e-12)
    cal = X[np.sort(np.random.default_rng(np.random.SeedSequence(5)).permutation(len(X))[64:])]
    H = sylvester_hadamard(32)
    assert s0["calib_H"] == code_entropy((cal.reshape(-1, 32) @ H).reshape(cal.shape))


@pytest.mark.clause("ME-6.5")
def test_bad_input_names_the_problem():
    X, W = _site(0, T=64)
    cases = [
        (dict(X=X.astype(np.int64)), "float array"),
        (dict(X=X[0]), "float array"),
        (dict(X=X[:, :48], W=W[:, :48]), "multiple of the block size"),
        (dict(W=W[:, :32]), r"weight has shape \(48, 32\)"),
        (dict(X=np.where(np.arange(64) == 3, np.nan, X)), "NaN or Inf"),
        (dict(holdout=1.0), "holdout must be in"),
        (dict(X=X[:2], holdout=0.25), "too few tokens"),
        (dict(steps=-1), "steps must be a whole number >= 0"),
        (dict(steps=2.5), "steps must be a whole number"),
        (dict(patience=0), "patience must be a whole number >= 1"),
        (dict(backtracks=-1), "backtracks must be a whole number >= 0"),
        (dict(step_angle=0.0), "step_angle must be a positive number"),
        (dict(gamma=-1.0), "gamma must be a number >= 0"),
        (dict(init="haar"), "unknown init 'haar'"),
        (dict(init=np.eye(16)), r"init has shape \(16, 16\)"),
        (dict(init=2 * np.eye(32)), "init is not orthogonal"),
    ]
    for kw, msg in cases:
        args = {"X": X, "W": W, **kw}
        with pytest.raises(LearnedInputError, match=msg):
            learned_rotation(args.pop("X"), args.pop("W"), **args)
    assert issubclass(LearnedInputError, ValueError)


# ---- the torq-learned row (spec/TQ.md TQ-2.18) ----

@pytest.mark.clause("TQ-2.18")
def test_torq_learned_is_a_scaled_experiment_row():
    from torq_ref.torq.methods import DEFAULT_METHODS, METHODS, SCALED_METHODS, site_seed, site_transform

    assert "torq-learned" in METHODS and "torq-learned" in SCALED_METHODS
    assert "torq-learned" not in DEFAULT_METHODS
    X, W = _site(4, T=200)
    cfg = replace(CFG, micro_rows=120)
    t, info = site_transform("torq-learned", 1, "down", X.T @ X / len(X), X, cfg, weight=W)
    R, rep = learned_rotation(X[:120], W, init="hadamard", holdout=cfg.holdout,
                              seed=site_seed(cfg.seed, 1, "down"))
    assert t.block_size == 32 and np.array_equal(t.block, R)
    assert info["learned"]["stop_reason"] == rep.stop_reason
    assert info["learned"]["final"]["holdout_L"] == rep.final["holdout_L"]
    from torq_ref.torq.methods import SettingsError

    with pytest.raises(SettingsError, match="needs the site's weight"):
        site_transform("torq-learned", 1, "down", X.T @ X, X, cfg)


@pytest.mark.clause("TQ-2.18")
def test_torq_learned_runs_through_the_engine(tiny, windows):  # noqa: F811
    from torq_ref.torq import engine
    from torq_ref.torq.site_metrics import site_metrics

    ev, ca = windows
    rows, per_site, _ = engine.stream_evaluate(tiny, ev, ca, ("torq-learned",), ("W16A4",), CFG,
                                               progress=False, site_metrics=site_metrics)
    (row,) = rows
    assert (row["method"], row["setting"]) == ("torq-learned", "W16A4")
    assert all(np.isfinite(row["window_kld"])) and np.mean(row["window_kld"]) > 0
