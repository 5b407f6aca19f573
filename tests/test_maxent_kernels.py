"""Fast evaluation kernels of the max-entropy optimizer (spec/ME.md sections 2 and 4)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.mx import numba_available
from torq_ref.rotations import maxent as M
from torq_ref.rotations import maxent_eval as ME
from torq_ref.rotations.entropy import code_entropy, code_histogram, entropy_from_counts

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    not numba_available(), reason="numba (the `fast` extra) is not installed"))]


def _rows(seed=0, T=96, nb=3, special=True):
    """Block rows (M, 32) exercising scale moves: heavy tails, zero rows, tiny and subnormal rows,
    exact powers of two and rounding ties."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(2, size=(T * nb, 32)) * np.exp(2 * rng.standard_normal((T * nb, 1)))
    if special:
        x[0] = 0.0
        x[1] = rng.standard_normal(32) * 1e-300            # subnormal / clamped exponent
        x[2] = rng.standard_normal(32) * 2.0 ** -126
        x[3, :] = 0.75 * 2.0 ** rng.integers(-3, 4, 32)    # ties
        x[4, :] = np.ldexp(1.0, rng.integers(-5, 5, 32))   # powers of two
        x[5, :] = -0.0
        x[6, 0] = 8.0                                      # row max on a scale boundary
    return np.ascontiguousarray(x)


@pytest.mark.clause("ME-2.1", "ME-2.3")
@pytest.mark.parametrize("backend", BACKENDS)
def test_full_evaluation_equals_the_codec(backend):
    kern = ME.get_kernels(backend)
    Y = _rows(1)
    E, C, Err, hist, total = kern.full_eval(Y)
    t = mx.quantize(Y, "e2m1", block_size=32, scale_rule="floor")
    assert np.array_equal(E + 127, np.asarray(t.scales).ravel().astype(np.int64))
    codes = np.asarray(t.codes)
    bins = np.where((codes & 7) == 0, 0, codes).astype(np.uint8)   # merge -0 into +0
    assert np.array_equal(C, bins)
    assert np.array_equal(hist, code_histogram(codes))
    q = mx.dequantize(t)
    assert np.array_equal(Err, (q - Y) ** 2)
    ref = np.sum((q - Y) ** 2)
    assert total == pytest.approx(ref, rel=1e-12)


@pytest.mark.clause("ME-2.1", "ME-2.3")
def test_evaluate_fast_equals_reference_metrics():
    X = M.heavy_tailed_activations(200, 128, seed=3)
    for R in (np.eye(32), M.sylvester_hadamard(32)):
        h, nm = M.evaluate_fast(X, R)
        ref = M.rotation_metrics(X, R)
        assert h == ref["entropy"] == code_entropy(M.apply_rotation(X, R))
        assert nm == pytest.approx(ref["nmse"], rel=1e-12)
    per = np.stack([M.sylvester_hadamard(32), np.eye(32), M.sylvester_hadamard(32)[::-1], np.eye(32)])
    h, nm = M.evaluate_fast(X, per)
    ref = M.rotation_metrics(X, per)
    assert h == ref["entropy"] and nm == pytest.approx(ref["nmse"], rel=1e-12)


@pytest.mark.clause("ME-2.1")
def test_nmse_of_zero_data_is_zero():
    assert M.evaluate_fast(np.zeros((4, 64)), np.eye(32)) == (0.0, 0.0)


@pytest.mark.clause("ME-2.2")
def test_chunked_sum_order():
    v = np.random.default_rng(0).random(5000)
    # sequential inside chunks of 2048, then over chunks
    expect = 0.0
    for start in range(0, 5000, 2048):
        acc = 0.0
        for x in v[start:start + 2048]:
            acc += x
        expect += acc
    assert ME._np_chunked_sum(v, 2048) == expect


@pytest.mark.clause("ME-4.1")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_trials_equal_full_evaluation(backend, seed):
    kern = ME.get_kernels(backend, chunk=64)               # several chunks on small data
    Y = _rows(seed)
    E, C, Err, hist, _ = kern.full_eval(Y)
    rng = np.random.default_rng(seed)
    theta = np.r_[0.0, rng.uniform(-math.pi, math.pi, 7), M.THETA_STAGE1[1:5]]
    moved_rows = 0
    for i, j in [(0, 1), (3, 17), (30, 31), tuple(sorted(rng.choice(32, 2, replace=False)))]:
        om, oe = kern.plane_prep(Y, Err, i, j)
        hbase = hist - np.bincount(C[:, i], minlength=16) - np.bincount(C[:, j], minlength=16)
        hd, err = kern.plane_trials(Y, E, C, om, oe, i, j, np.cos(theta), np.sin(theta))
        for k, th in enumerate(theta):
            Z = Y.copy()
            c, s = np.cos(th), np.sin(th)
            Z[:, i], Z[:, j] = c * Y[:, i] - s * Y[:, j], s * Y[:, i] + c * Y[:, j]
            Ef, _, _, hf, tf = kern.full_eval(Z)
            moved_rows += int(np.sum(Ef != E))
            assert np.array_equal(hbase + hd[k], hf), (i, j, th)
            assert err[k] == pytest.approx(tf, rel=1e-12, abs=0.0)
        assert err[0] == pytest.approx(float(np.sum(Err)), rel=1e-12)
    assert moved_rows > 0                                  # the scale-move path was exercised


@pytest.mark.clause("ME-4.1")
@pytest.mark.parametrize("backend", BACKENDS)
def test_accepting_a_move_equals_full_evaluation(backend):
    kern = ME.get_kernels(backend, chunk=64)
    Y = _rows(5)
    E, C, Err, hist, _ = kern.full_eval(Y)
    for (i, j, th) in [(2, 9, 0.3), (0, 31, -1.2), (4, 5, 1e-3), (6, 7, 2.9)]:
        Z = Y.copy()
        c, s = math.cos(th), math.sin(th)
        Z[:, i], Z[:, j] = c * Y[:, i] - s * Y[:, j], s * Y[:, i] + c * Y[:, j]
        kern.apply_rotation(Y, E, C, Err, i, j, c, s)
        assert np.array_equal(Y, Z)
        Ef, Cf, Errf, hf, _ = kern.full_eval(Z)
        assert np.array_equal(E, Ef) and np.array_equal(C, Cf) and np.array_equal(Err, Errf)


@pytest.mark.clause("ME-4.2")
def test_fast_exponent_test_equals_the_floor_rule():
    amax = np.concatenate([
        [0.0, 5e-324, 2.0 ** -1074, 2.0 ** -1022, 2.0 ** -125, 2.0 ** -124, 2.0 ** -123],
        np.ldexp(1.0, np.arange(-130, 128)),
        np.nextafter(np.ldexp(1.0, np.arange(-130, 128)), 0.0),
        np.random.default_rng(0).lognormal(0, 30, 2000)])
    amax = amax[amax < M.MAX_BLOCK_NORM]       # the optimizer's domain (ME-3.10)
    e = ME._np_scale_exp(amax)
    # FLOOR rule from the codec's scales
    blocks = np.zeros((amax.size, 32))
    blocks[:, 0] = amax
    ref = np.asarray(mx.quantize(blocks, "e2m1").scales).ravel().astype(np.int64) - 127
    assert np.array_equal(e, ref)
    for e0 in range(-127, 125):
        lo = 0.0 if e0 == -127 else ME.POW2[129 + e0]
        hi = ME.POW2[130 + e0]
        assert np.array_equal((amax >= lo) & (amax < hi), e == e0), e0


@pytest.mark.clause("ME-4.3")
@pytest.mark.skipif(not numba_available(), reason="numba (the `fast` extra) is not installed")
def test_numba_kernels_equal_numpy_bit_for_bit():
    import numba

    kp = ME.get_kernels("numpy", chunk=64)
    kn = ME.get_kernels("numba", chunk=64)
    X = _rows(7)
    R = np.linalg.qr(np.random.default_rng(1).standard_normal((32, 32)))[0]
    Y = kp.rotate(X, R)
    assert np.array_equal(Y, kn.rotate(X, R))
    fp, fn = kp.full_eval(Y), kn.full_eval(Y)
    assert all(np.array_equal(a, b) for a, b in zip(fp, fn))
    E, C, Err, hist, _ = fp
    theta = np.r_[0.0, np.linspace(-3, 3, 9)]
    saved = numba.get_num_threads()
    try:
        for threads in sorted({1, saved}):
            numba.set_num_threads(threads)
            for i, j in [(0, 1), (5, 20), (31, 2)]:
                i, j = min(i, j), max(i, j)
                pp, pn = kp.plane_prep(Y, Err, i, j), kn.plane_prep(Y, Err, i, j)
                assert all(np.array_equal(a, b) for a, b in zip(pp, pn))
                tp = kp.plane_trials(Y, E, C, *pp, i, j, np.cos(theta), np.sin(theta))
                tn = kn.plane_trials(Y, E, C, *pn, i, j, np.cos(theta), np.sin(theta))
                assert all(np.array_equal(a, b) for a, b in zip(tp, tn))
            states = [[a.copy() for a in (Y, E, C, Err)] for _ in range(2)]
            kp.apply_rotation(*states[0], 3, 4, 0.8, 0.6)
            kn.apply_rotation(*states[1], 3, 4, 0.8, 0.6)
            assert all(np.array_equal(a, b) for a, b in zip(*states))
    finally:
        numba.set_num_threads(saved)


@pytest.mark.clause("ME-2.2", "ME-4.3")
@pytest.mark.skipif(not numba_available(), reason="numba (the `fast` extra) is not installed")
def test_result_independent_of_thread_count():
    import numba

    X = M.heavy_tailed_activations(400, 128, seed=4)   # 6400 block rows: parallel kernels
    kw = dict(block_size=8, max_sweeps=1, backend="numba", search_rows=5000)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        r1, rep1 = M.maxent_rotation(X, **kw)
        numba.set_num_threads(saved)
        r2, rep2 = M.maxent_rotation(X, **kw)
    finally:
        numba.set_num_threads(saved)
    assert np.array_equal(r1, r2)
    assert rep1.sweeps[-1].objective_cal == rep2.sweeps[-1].objective_cal


@pytest.mark.clause("ME-4.3")
@pytest.mark.skipif(not numba_available(), reason="numba (the `fast` extra) is not installed")
def test_serial_and_parallel_numba_builds_agree():
    from torq_ref.rotations import _numba_maxent as K

    Y = _rows(9)
    a = K.full_eval.serial(Y, ME.POW2, 64)
    b = K.full_eval.parallel(Y, ME.POW2, 64)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    E, C, Err, _, _ = a
    om, oe = K.plane_prep.serial(Y, Err, 2, 7, 64)
    th = np.linspace(-1, 1, 5)
    t1 = K.plane_trials.serial(Y, E, C, om, oe, 2, 7, np.cos(th), np.sin(th), ME.POW2, 64)
    t2 = K.plane_trials.parallel(Y, E, C, om, oe, 2, 7, np.cos(th), np.sin(th), ME.POW2, 64)
    assert all(np.array_equal(x, y) for x, y in zip(t1, t2))


@pytest.mark.clause("ME-4.3", "TQ-6.9")
@pytest.mark.skipif(not numba_available(), reason="numba (the `fast` extra) is not installed")
def test_two_pass_trial_kernel_equals_numpy_on_edge_rows():
    """TQ-6.9: the two-pass trial kernel (branch-free pass, then the rows whose exponent moves in
    row order) gives the NumPy twin's bits on rows of zeros, subnormals, values on the E2M1
    decision points and rows whose exponent moves at small angles."""
    from torq_ref.rotations import _numba_maxent as K

    rng = np.random.default_rng(11)
    Y = rng.standard_t(3, size=(700, 32)) * np.exp(rng.normal(0, 2, size=(700, 1)))
    Y[:50] = 0.0
    Y[50:100] *= 2.0 ** -1070                                    # subnormal rows
    Y[100:150] = rng.choice([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0, -0.75, -2.5],
                            size=(50, 32)) * 2.0 ** rng.integers(-3, 4, size=(50, 1))
    Y[150:200, 0] = Y[150:200, 1:].max(axis=1) * 1.999          # the pair holds the row's max
    E, C, Err, _, _ = K.full_eval.serial(Y, ME.POW2, 64)
    theta = np.r_[0.0, 1e-3, -1e-3, 0.05, -0.3, 0.7, 1.5, -3.1]
    for i, j in [(0, 1), (0, 31), (14, 15)]:
        om, oe = K.plane_prep.serial(Y, Err, i, j, 64)
        want = ME._np_plane_trials(Y, E, C, om, oe, i, j, np.cos(theta), np.sin(theta), ME.POW2, 64)
        for kern in (K.plane_trials.serial, K.plane_trials.parallel):
            got = kern(Y, E, C, om, oe, i, j, np.cos(theta), np.sin(theta), ME.POW2, 64)
            assert all(np.array_equal(a, b) for a, b in zip(want, got)), (i, j)
    # (c, s) = (1, 1) maps y_i = y_j = 2^(k-1) to b = 2^k exactly: the boundary of "the
    # exponent stays" (amax < 2^(e0+3)) is met with equality
    Z = rng.uniform(-0.5, 0.5, size=(64, 32)) * 2.0 ** rng.integers(-4, 4, size=(64, 1))
    Z[:, :2] = np.abs(Z).max(axis=1, keepdims=True) * 1.0
    Z[:, :2] = 2.0 ** np.ceil(np.log2(Z[:, :2]))
    E, C, Err, _, _ = K.full_eval.serial(Z, ME.POW2, 64)
    om, oe = K.plane_prep.serial(Z, Err, 0, 1, 64)
    one = np.array([1.0, 0.5])
    want = ME._np_plane_trials(Z, E, C, om, oe, 0, 1, one, one, ME.POW2, 64)
    for kern in (K.plane_trials.serial, K.plane_trials.parallel):
        got = kern(Z, E, C, om, oe, 0, 1, one, one, ME.POW2, 64)
        assert all(np.array_equal(a, b) for a, b in zip(want, got))
