"""The constructive Schur-Horn builder (spec/SH.md section 2)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torq_ref.rotations.givens import GivensSequence
from torq_ref.rotations.schur_horn import (
    DEFAULT_RTOL, MajorizationError, SymmetricMatrixError, _angle, block_traces,
    check_majorization, givens_factor, schur_horn, schur_horn_blocks)

KINDS = ["psd", "indefinite", "rank_one", "ties", "decades18", "zero", "scaled_identity",
         "diag_ties"]


def make_matrix(kind: str, n: int, seed: int) -> np.ndarray:
    """Symmetric test matrices of the kinds SH-2.10 lists."""
    rng = np.random.default_rng(seed)
    v = np.linalg.qr(rng.standard_normal((n, n)))[0]
    if kind == "psd":
        x = rng.standard_t(3, size=(2 * n + 3, n)) * np.exp(rng.normal(size=n))
        c = x.T @ x / x.shape[0]
    elif kind == "indefinite":
        c = v @ np.diag(rng.normal(size=n) * 10) @ v.T
    elif kind == "rank_one":
        u = rng.standard_normal(n)
        c = np.outer(u, u)
    elif kind == "ties":
        lam = rng.integers(-2, 3, n).astype(float)
        c = v @ np.diag(lam) @ v.T
    elif kind == "decades18":
        lam = np.logspace(-9, 9, n) if n > 1 else np.array([1e9])
        c = v @ np.diag(lam) @ v.T
    elif kind == "zero":
        c = np.zeros((n, n))
    elif kind == "scaled_identity":
        c = np.eye(n) * rng.normal()
    else:  # diag_ties: tied diagonal, non-zero off-diagonal
        g = rng.standard_normal((n, n))
        c = (g + g.T) / 2
        c[np.diag_indices(n)] = 1.0
    return 0.5 * (c + c.T)


def check_result(c, q, target, rtol=DEFAULT_RTOL):
    n = c.shape[0]
    m = q.matrix()
    lam = np.linalg.eigvalsh(c)
    scale = max(np.max(np.abs(lam)), np.max(np.abs(target)))
    # SH-2.2 orthogonality and spectrum
    assert np.max(np.abs(m.T @ m - np.eye(n))) <= 1e-12
    d = m.T @ c @ m
    np.testing.assert_allclose(np.linalg.eigvalsh(0.5 * (d + d.T)), lam, rtol=0,
                               atol=1e-12 * n * max(scale, 1e-300))
    # SH-2.3 accuracy
    assert np.max(np.abs(np.diag(d) - target)) <= rtol * n * scale + 1e-300


sizes = st.sampled_from([1, 2, 3, 5, 7, 12, 16, 24, 31])


@pytest.mark.clause("SH-2.1", "SH-2.2", "SH-2.3", "SH-2.10")
@given(kind=st.sampled_from(KINDS), n=sizes, seed=st.integers(0, 2**31))
def test_constant_target(kind, n, seed):
    c = make_matrix(kind, n, seed)
    q = schur_horn(c)
    assert isinstance(q, GivensSequence) and q.n == n
    check_result(c, q, np.full(n, np.trace(c) / n))
    assert len(q) <= max(n - 1, 0)                      # SH-2.4


@pytest.mark.clause("SH-2.10")
@pytest.mark.parametrize("kind", ["zero", "scaled_identity"])
@pytest.mark.parametrize("n", [1, 6, 576])
def test_degenerate_inputs_need_no_rotation(kind, n):
    assert len(schur_horn(make_matrix(kind, n, 0))) == 0
    assert len(schur_horn(np.array([[3.5]]), [3.5])) == 0


def majorized_target(c, seed, source="spectrum"):
    """A random vector majorized by the spectrum (or by diag(C)): a convex combination of
    permutations of it, mixed toward its mean."""
    rng = np.random.default_rng(seed)
    v = np.linalg.eigvalsh(c) if source == "spectrum" else np.diag(c).copy()
    w = rng.dirichlet(np.ones(3))
    t = sum(wk * rng.permutation(v) for wk in w)
    alpha = rng.uniform(0, 1)
    return alpha * t + (1 - alpha) * v.mean()


@pytest.mark.clause("SH-2.1", "SH-2.2", "SH-2.3", "SH-2.8")
@given(kind=st.sampled_from(["psd", "indefinite", "rank_one", "ties", "decades18"]),
       n=sizes, seed=st.integers(0, 2**31))
def test_targets_majorized_by_spectrum(kind, n, seed):
    c = make_matrix(kind, n, seed)
    t = majorized_target(c, seed)
    q = schur_horn(c, t)
    check_result(c, q, t)
    assert len(q) <= n * (n - 1) // 2 + 2 * (n - 1)


@pytest.mark.clause("SH-2.4")
@given(kind=st.sampled_from(["psd", "indefinite", "ties", "decades18", "diag_ties"]),
       n=sizes, seed=st.integers(0, 2**31))
def test_diagonal_path_counts_and_no_eigendecomposition(kind, n, seed):
    c = make_matrix(kind, n, seed)
    t = majorized_target(c, seed, source="diag")
    import numpy.linalg as la
    saved = la.eigh, la.eigvalsh, la.eig
    def refuse(*a, **k):
        raise AssertionError("eigendecomposition called on the diagonal path")
    la.eigh = la.eigvalsh = la.eig = refuse
    try:
        q = schur_horn(c, t, method="diagonal")
        q_sorted = schur_horn(c, np.sort(t)[::-1][np.argsort(np.argsort(-np.diag(c), kind="stable"))],
                              method="diagonal")
    finally:
        la.eigh, la.eigvalsh, la.eig = saved
    check_result(c, q, t)
    assert len(q) <= 2 * max(n - 1, 0)
    # a target ordered like diag(C) needs at most n - 1 rotations
    assert len(q_sorted) <= max(n - 1, 0)


@pytest.mark.clause("SH-2.5")
@given(x=st.lists(st.integers(-6, 6), min_size=1, max_size=7), data=st.data())
def test_majorization_check_matches_definition(x, data):
    """Exact integer vectors: the partial-sum check agrees with the definition
    sum max(x - a, 0) <= sum max(y - a, 0) for all a, with equal totals."""
    y = data.draw(st.lists(st.integers(-6, 6), min_size=len(x), max_size=len(x)))
    x, y = np.array(x, float), np.array(y, float)
    if data.draw(st.booleans()):       # equal totals half of the time: exercise partial sums
        y[-1] += x.sum() - y.sum()
    pts = np.concatenate([x, y])
    oracle = x.sum() == y.sum() and all(
        np.maximum(x - a, 0).sum() <= np.maximum(y - a, 0).sum() for a in pts)
    try:
        check_majorization(x, y)
        ok = True
    except MajorizationError:
        ok = False
    assert ok == oracle


@pytest.mark.clause("SH-2.5")
@given(kind=st.sampled_from(["psd", "indefinite", "decades18"]), n=st.integers(2, 20),
       seed=st.integers(0, 2**31), spread=st.floats(0.01, 3.0))
def test_majorization_error_exactly_when_it_fails(kind, n, seed, spread):
    c = make_matrix(kind, n, seed)
    lam = np.linalg.eigvalsh(c)
    if np.ptp(lam) <= 1e-6 * np.max(np.abs(lam)):
        return
    perm = np.random.default_rng(seed).permutation(n)
    inside = lam.mean() + (lam - lam.mean()) / (1 + spread)      # majorized: less spread
    outside = lam.mean() + (lam - lam.mean()) * (1 + spread)     # not majorized: more spread
    check_result(c, schur_horn(c, inside[perm]), inside[perm])
    with pytest.raises(MajorizationError, match="partial sum"):
        schur_horn(c, outside[perm])
    with pytest.raises(MajorizationError, match="totals"):
        schur_horn(c, inside[perm] - spread * np.max(np.abs(lam)))
    # the diagonal builder refuses targets not majorized by diag(C), e.g. the spectrum itself
    if np.ptp(np.diag(c)) < 0.9 * np.ptp(lam):
        with pytest.raises(MajorizationError, match=r"diag\(C\)"):
            schur_horn(c, lam, method="diagonal")


@pytest.mark.clause("SH-2.5")
def test_majorization_message_names_first_violated_sum():
    c = np.diag([2.0, 1.0, 0.0])
    with pytest.raises(MajorizationError) as err:
        schur_horn(c, [0.0, 3.0, 0.0])
    msg = str(err.value)
    assert "1 largest" in msg and "target 3" in msg and "spectrum of C 2" in msg
    with pytest.raises(MajorizationError, match="2 largest"):
        check_majorization([2.0, 2.0, -1.0], [2.0, 1.0, 0.0])
    assert issubclass(MajorizationError, ValueError)


@pytest.mark.clause("SH-2.6")
def test_input_errors():
    with pytest.raises(SymmetricMatrixError, match="square"):
        schur_horn(np.zeros((2, 3)))
    with pytest.raises(SymmetricMatrixError, match="square"):
        schur_horn(np.zeros((0, 0)))
    with pytest.raises(SymmetricMatrixError, match="NaN"):
        schur_horn(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(SymmetricMatrixError, match="not symmetric"):
        schur_horn(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(SymmetricMatrixError, match="real"):
        schur_horn(np.eye(2, dtype=complex))
    with pytest.raises(ValueError, match="shape"):
        schur_horn(np.eye(3), [1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        schur_horn(np.eye(2), [np.inf, 1.0])
    with pytest.raises(TypeError):
        schur_horn(np.eye(2), np.array([1 + 0j, 1]))
    with pytest.raises(ValueError, match="method"):
        schur_horn(np.eye(2), method="magic")
    with pytest.raises(ValueError, match="backend"):
        schur_horn(np.eye(2), backend="gpu")
    with pytest.raises(ValueError, match="rtol"):
        schur_horn(np.eye(2), rtol=-1.0)
    # tiny asymmetry (rounding of X^T X) is accepted and symmetrised
    c = make_matrix("psd", 6, 1)
    c[0, 1] += 1e-14 * np.max(np.abs(c))
    check_result(0.5 * (c + c.T), schur_horn(c), np.full(6, np.trace(c) / 6))
    assert issubclass(SymmetricMatrixError, ValueError)


@pytest.mark.clause("SH-2.7")
def test_two_by_two_step():
    # generic: z is reached at the first index, the trace is kept
    for a, b, m, z in [(3.0, 1.0, 0.5, 2.0), (1.0, 3.0, -0.7, 2.5), (1.0, 0.0, 1e-9, 0.5),
                       (1e8, 1e-8, 0.0, 1.0), (2.0, -2.0, 3.0, -1.0)]:
        c, s, z2 = _angle(a, b, m, z)
        assert z2 == z and abs(c * c + s * s - 1) < 1e-15
        g = np.array([[c, s], [-s, c]])
        r = g.T @ np.array([[a, m], [m, b]]) @ g
        assert abs(r[0, 0] - z) <= 4e-16 * max(abs(a), abs(b), abs(m)) * 4
        # the small root of (b - z) t^2 - 2 m t + (a - z) = 0 (numpy.roots, independent)
        t = s / c if c else np.inf
        roots = np.roots([b - z, -2 * m, a - z]) if b != z else np.array([(a - z) / (2 * m)])
        small = roots[np.argmin(np.abs(roots))].real
        assert abs(abs(t) - abs(small)) <= 1e-9 * max(abs(small), 1e-300)
        assert m != 0 or t >= 0                      # sign(0) = +1: the positive root
    # m = 0 and z = b: the swap
    assert _angle(5.0, 1.0, 0.0, 1.0)[:2] == (0.0, 1.0)
    # a = z: the identity
    assert _angle(5.0, 1.0, 0.3, 5.0)[:2] == (1.0, 0.0)
    # z outside [b, a] by rounding is clamped
    assert _angle(5.0, 1.0, 0.3, 5.0 + 1e-15)[2] == 5.0


@pytest.mark.clause("SH-2.8")
@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_givens_factor_reproduces_v(n):
    rng = np.random.default_rng(n)
    v = np.linalg.qr(rng.standard_normal((n, n)))[0]
    if np.linalg.det(v) < 0:
        v[:, 0] *= -1
    seq = givens_factor(v)
    assert len(seq) <= n * (n - 1) // 2
    np.testing.assert_allclose(seq.matrix(), v, atol=1e-13)
    if n > 1:
        with pytest.raises(ValueError, match="determinant"):
            givens_factor(v * np.r_[-1.0, np.ones(n - 1)][None, :])
        with pytest.raises(ValueError, match="orthogonal"):
            givens_factor(v * 2)


@pytest.mark.clause("SH-2.9")
@pytest.mark.parametrize("kind", ["psd", "indefinite", "ties", "decades18", "diag_ties"])
@pytest.mark.parametrize("n", [7, 64, 200])
def test_numba_equals_numpy_and_deterministic(kind, n):
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    c = make_matrix(kind, n, 5)
    a = schur_horn(c, backend="numpy")
    b = schur_horn(c, backend="numba")
    assert a == b
    assert np.array_equal(a.c.view(np.uint64), b.c.view(np.uint64))
    assert schur_horn(c.copy()) == b
    t = majorized_target(c, 3)
    assert schur_horn(c, t, backend="numpy") == schur_horn(c, t, backend="numba")


@pytest.mark.clause("SH-2.10")
def test_n_not_power_of_two_real_size():
    c = make_matrix("psd", 576, 2)
    q = schur_horn(c)
    assert len(q) <= 575
    check_result(c, q, np.full(576, np.trace(c) / 576))


@pytest.mark.clause("SH-2.11")
@given(kind=st.sampled_from(["psd", "indefinite", "decades18"]), nb=st.integers(1, 4),
       b=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**31), mix=st.floats(0, 1))
def test_block_targets(kind, nb, b, seed, mix):
    n = nb * b
    c = make_matrix(kind, n, seed)
    lam = np.sort(np.linalg.eigvalsh(c))[::-1]
    mu = lam.reshape(nb, b).sum(axis=1)
    rng = np.random.default_rng(seed)
    e = mix * rng.permutation(mu) + (1 - mix) * mu.mean()          # majorized by mu
    q = schur_horn_blocks(c, e, block_size=b)
    m = q.matrix()
    scale = max(np.max(np.abs(lam)), np.max(np.abs(e)))
    assert np.max(np.abs(block_traces(m.T @ c @ m, b) - e)) <= DEFAULT_RTOL * n * scale * b
    assert np.max(np.abs(m.T @ m - np.eye(n))) <= 1e-12
    q0 = schur_horn_blocks(c, block_size=b)
    m0 = q0.matrix()
    np.testing.assert_allclose(block_traces(m0.T @ c @ m0, b), np.trace(c) / nb,
                               atol=DEFAULT_RTOL * n * scale * b)
    if nb > 1 and np.ptp(mu) > 1e-6 * scale:
        bad = mu.mean() + (mu - mu.mean()) * 1.5                    # more spread than mu
        with pytest.raises(MajorizationError, match="blocks"):
            schur_horn_blocks(c, bad, block_size=b)


@pytest.mark.clause("SH-2.11")
def test_block_target_errors():
    with pytest.raises(ValueError, match="multiple"):
        schur_horn_blocks(np.eye(6), block_size=4)
    with pytest.raises(ValueError, match="shape"):
        schur_horn_blocks(np.eye(8), [1.0], block_size=4)


@pytest.mark.clause("SH-2.4a")
def test_some_orders_need_more_than_n_minus_1_rotations():
    """C = diag(0, 2, 3, 5), target (4, 4, 1, 1): majorized by diag(C), reached by the builder with
    4 rotations, and no sequence of 3 plane rotations comes closer than squared residual 1 (SH-2.4a).
    (Planted check: with the reachable order (1, 4, 4, 1) the same search finds ~1e-11.)"""
    import itertools

    from scipy.optimize import minimize

    c = np.diag([0.0, 2.0, 3.0, 5.0])
    t = np.array([4.0, 4.0, 1.0, 1.0])
    check_majorization(t, np.diag(c))                      # no MajorizationError
    q = schur_horn(c, t, method="diagonal")
    check_result(c, q, t)
    assert len(q) == 4                                     # tight: 4 = n is the minimum here
    assert np.allclose(np.diag(q.matrix()), 0.0, atol=1e-12)   # Ky Fan: every Q_kk = 0

    planes = list(itertools.combinations(range(4), 2))

    def residual(theta, seq):                               # |diag(Q^T C Q) - t|^2
        m = np.eye(4)
        for (i, j), a in zip(seq, theta):
            g = np.eye(4)
            g[i, i] = g[j, j] = np.cos(a)
            g[i, j], g[j, i] = np.sin(a), -np.sin(a)
            m = m @ g
        return float(np.sum((np.einsum("ij,ik,kj->j", m, c, m) - t) ** 2))

    starts = np.random.default_rng(0).uniform(-np.pi, np.pi, (3, 3))
    best = min(minimize(residual, s0, args=(seq,), method="BFGS").fun
               for seq in itertools.product(planes, repeat=3) for s0 in starts)
    assert best > 0.99                                     # the minimum is exactly 1


# --------------------------------------------------------------- pinned sequences, derived by hand
R2 = 1.0 / np.sqrt(2.0)


@pytest.mark.clause("SH-2.4", "SH-2.7")
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_pinned_sequence_last_excess_rank_first(backend):
    """C = diag(4, 3, 1, 0), constant target 2 (SH-2.4, worked by hand):
    deviations by rank (= index here) are (+2, +1, -1, -2). Step 1 takes the LAST excess rank
    (index 1, +1) and the first later deficit (index 2, -1); the gaps tie (1 <= 1), so index 1 is
    the one pinned: p = 1, q = 2, z = 2. SH-2.7 with a = 3, b = 1, m = 0: t = (3 - 2) /
    (0 + sqrt(0 - (3 - 2)(1 - 2))) = 1, c = s = 1/sqrt 2; both diagonals become 2 (index 2 is
    then within tolerance too). Step 2: indices 0 (+2) and 3 (-2), a = 4, b = 0, m = 0 (untouched
    by step 1): t = 2 / sqrt(4) = 1 again. Taking the FIRST excess rank instead would start with
    the plane (2, 0)."""
    if backend == "numba":
        pytest.importorskip("numba")
    q = schur_horn(np.diag([4.0, 3.0, 1.0, 0.0]), backend=backend)
    assert q.i.tolist() == [1, 0] and q.j.tolist() == [2, 3]
    assert q.c.tolist() == [R2, R2] and q.s.tolist() == [R2, R2]


@pytest.mark.clause("SH-2.4")
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_pinned_swap_cycle_order(backend):
    """C = diag(3, 2, 1), target (1, 3, 2): the target is a permutation of diag(C), so no rotation
    is needed, only swaps (SH-2.4). Ranks are the indices (0, 1, 2); sorted target values
    (3, 2, 1) belong to indices (1, 2, 0), so the value at index 0 goes to 1, 1 to 2, 2 to 0:
    one 3-cycle. Walking it from its smallest index gives the swaps (0, 1) then (0, 2), each
    c = 0, s = 1 (2 = cycle length - 1)."""
    if backend == "numba":
        pytest.importorskip("numba")
    c = np.diag([3.0, 2.0, 1.0])
    q = schur_horn(c, np.array([1.0, 3.0, 2.0]), backend=backend)
    assert q.i.tolist() == [0, 0] and q.j.tolist() == [1, 2]
    assert q.c.tolist() == [0.0, 0.0] and q.s.tolist() == [1.0, 1.0]
    m = q.matrix()
    assert np.diag(m.T @ c @ m).tolist() == [1.0, 3.0, 2.0]


@pytest.mark.clause("SH-2.7")
def test_pinned_two_by_two_step_both_branches():
    """SH-2.7 on [[a, m], [m, b]], written out by hand.
    |t| <= 1: a = 3, b = 1, m = 0, z = 2: t = 1 / sqrt(0 + 1 * 1) = 1, c = 1 / sqrt(1 + 1), s = c.
    |t| > 1 (never chosen by the builder, whose pinned index has the smaller gap, but defined):
    a = 0, b = 1, m = 0, z = 0.9: t = -0.9 / sqrt(0 + 0.9 * 0.1) = -0.9 / 0.3 = -3 (rounded),
    u = 1 / t, w = 1 / sqrt(1 + u^2), c = |u| w = 1 / sqrt 10, s = -w = -3 / sqrt 10; the new
    A_pp = c^2 a + s^2 b - 2 c s m = 0.9. m = 0 and z = b (zero denominator): the swap (0, 1);
    z = a: the identity (1, 0)."""
    from torq_ref.rotations.schur_horn import _angle

    c, s_, z = _angle(3.0, 1.0, 0.0, 2.0)
    assert (c, s_, z) == (1.0 / np.sqrt(2.0), 1.0 / np.sqrt(2.0), 2.0)
    tt = -0.9 / np.sqrt(0.0 - (0.0 - 0.9) * (1.0 - 0.9))
    u = 1.0 / tt
    w = 1.0 / np.sqrt(1.0 + u * u)
    c, s_, z = _angle(0.0, 1.0, 0.0, 0.9)
    assert (c, s_) == (abs(u) * w, -w) and abs(c - 1 / np.sqrt(10)) < 1e-15
    assert abs(c * c * 0.0 + s_ * s_ * 1.0 - 0.9) < 1e-15
    assert _angle(0.0, 1.0, 0.0, 1.0) == (0.0, 1.0, 1.0)
    assert _angle(2.0, 1.0, 0.5, 2.0) == (1.0, 0.0, 2.0)
    assert _angle(1.0, 2.0, 0.0, 5.0)[2] == 2.0           # z clamped into [min(a, b), max(a, b)]
