"""GPTQ with MXFP4 groups against its defining property, RTN, and output error (spec/TQ.md TQ-7)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.quant import GPTQError, gptq_quantize, transformed_hessian


def _layer(seed=0, N=2048, n=128, out=48):
    """Correlated, heavy-tailed inputs with uneven channel scales, and a weight: real-ish data."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) / np.sqrt(n) + np.eye(n)
    X = (rng.standard_t(4, size=(N, n)) @ A) * np.exp(rng.normal(0, 0.7, size=n))
    W = rng.standard_normal((out, n)) * 0.05
    return X, W, X.T @ X / N


def _naive_obs(W, H, damp, act_order, bs=32, rule="floor"):
    """Brute force: before rounding each column, put every unquantized column at the least-squares
    optimum given the columns fixed so far, w_F = w0_F + H_FF^-1 H_FQ (w0_Q - q_Q), solved from
    scratch; group scales from the current values when the group's first column comes up."""
    from torq_ref.mx import scale_codes

    H = H.copy()
    H[np.diag_indices_from(H)] += damp * np.mean(np.diag(H))
    n = W.shape[1]
    order = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(n)
    Q = np.zeros_like(W)
    done: list[int] = []
    exps = {}
    for j in order:
        F = np.array([c for c in range(n) if c not in done])
        cur = W.copy()
        if done:
            D = np.array(done)
            cur[:, F] = W[:, F] + np.linalg.solve(H[np.ix_(F, F)], H[np.ix_(F, D)] @ (W[:, D] - Q[:, D]).T).T
        g = j // bs
        if g not in exps:
            amax = np.abs(cur[:, g * bs:(g + 1) * bs]).max(axis=1)
            exps[g] = scale_codes(amax, "e2m1", rule, working_dtype=np.float64).astype(np.int64) - 127
        Q[:, j] = np.ldexp(mx.decode(mx.encode(np.ldexp(cur[:, j], -exps[g]), "e2m1"), "e2m1"), exps[g])
        done.append(int(j))
    return Q


@pytest.mark.clause("TQ-7.1")
@pytest.mark.parametrize("act_order, batch", [(False, 128), (False, 7), (True, 128), (True, 7), (True, 32)])
def test_gptq_is_sequential_obs_least_squares(act_order, batch):
    X, W, H = _layer(1, N=512, n=64, out=6)
    got = gptq_quantize(W, H, damp=0.01, act_order=act_order, batch=batch)
    want = _naive_obs(W, H, 0.01, act_order)
    assert np.array_equal(got, want)


@pytest.mark.clause("TQ-7.1")
@pytest.mark.parametrize("rule", ["floor", "rceil", "even", "mse"])
def test_gptq_with_isotropic_inputs_is_rtn(rule):
    _, W, _ = _layer(2)
    for H in (np.eye(128), 3.0 * np.eye(128)):
        got = gptq_quantize(W, H, scale_rule=rule)
        assert np.array_equal(got, mx.quantize_dequantize(W, "e2m1", scale_rule=rule))


@pytest.mark.clause("TQ-7.1")
def test_gptq_output_is_mx_blocks():
    X, W, H = _layer(3)
    Q = gptq_quantize(W, H)
    assert np.array_equal(mx.quantize_dequantize(Q, "e2m1"), Q)       # every 32-group is an MX block


@pytest.mark.clause("TQ-7.3")
def test_gptq_lowers_the_output_error_of_rtn():
    X, W, _ = _layer(4, N=4096)
    Xc, Xe = X[:2048], X[2048:]               # calibrate on one half, measure on the other
    H = Xc.T @ Xc / len(Xc)
    ref = Xe @ W.T
    err = lambda Q: np.linalg.norm(ref - Xe @ Q.T) / np.linalg.norm(ref)   # noqa: E731
    rtn = err(mx.quantize_dequantize(W, "e2m1"))
    g_order = err(gptq_quantize(W, H))
    g_plain = err(gptq_quantize(W, H, act_order=False))
    assert g_order < 0.75 * rtn and g_plain < 0.85 * rtn, (rtn, g_plain, g_order)
    assert g_order <= g_plain * 1.02


@pytest.mark.clause("TQ-7.2")
def test_transformed_hessian_is_that_of_the_transformed_inputs():
    from torq_ref.model import Transform
    from torq_ref.rotations.baselines import random_orthogonal, sylvester_hadamard

    X, _, C = _layer(5, N=256, n=64)
    for t in (Transform(block=sylvester_hadamard(32)), Transform(matrix=random_orthogonal(64, seed=1),
                                                                  block=sylvester_hadamard(32))):
        d = t.materialize(64)
        Xt = d.apply(X)
        assert np.allclose(transformed_hessian(C, d), Xt.T @ Xt / len(X), rtol=1e-10, atol=1e-10)
    assert transformed_hessian(C, None) is not None and np.array_equal(transformed_hessian(C), C)


@pytest.mark.clause("TQ-7.1")
def test_gptq_bad_input():
    _, W, H = _layer(6, N=256, n=64, out=4)
    with pytest.raises(GPTQError, match="Hessian has shape"):
        gptq_quantize(W, H[:32, :32])
    with pytest.raises(GPTQError, match="multiple of the MX block"):
        gptq_quantize(W[:, :40], H[:40, :40])
    bad = H.copy()
    bad[0, 1] += 1
    with pytest.raises(GPTQError, match="symmetric"):
        gptq_quantize(W, bad)
    with pytest.raises(GPTQError, match="non-finite"):
        gptq_quantize(W * np.inf, H)
    with pytest.raises(GPTQError, match="damp"):
        gptq_quantize(W, H, damp=-1)
    with pytest.raises(GPTQError, match="positive definite"):
        gptq_quantize(W, -np.eye(64) - np.ones((64, 64)), damp=0)
    # a dead input channel (H_jj = 0) is rounded, not turned into NaN
    H0 = H.copy()
    H0[5, :] = H0[:, 5] = 0
    assert np.isfinite(gptq_quantize(W, H0, damp=0)).all()


@pytest.mark.clause("TQ-6.9")
def test_gptq_e2m1_rounding_is_the_codecs_bit_for_bit():
    """TQ-6.9: GPTQ's E2M1 column rounding (the decision table directly) gives the bits of the
    element codec's decode(encode(.)), saturation, ties and the sign of zero included."""
    from torq_ref.quant.gptq import _round, _round_codec

    rng = np.random.default_rng(5)
    exp = rng.integers(-130, 130, size=4096)
    # values on and around every E2M1 decision point and beyond saturation, both signs, zeros
    grid = np.array([0.0, -0.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, 7.0, 1e9])
    t = np.concatenate([grid, -grid, np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf),
                        rng.standard_t(3, size=4096 - 4 * len(grid)) * 3])
    col = np.ldexp(t, exp)
    fast = _round(col, exp, "e2m1")
    slow = _round_codec(np.ldexp(col, -exp), exp, "e2m1")
    assert np.array_equal(fast, slow) and np.array_equal(np.signbit(fast), np.signbit(slow))
