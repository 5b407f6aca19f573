"""Block-energy targets and the E8M0 grid bound (spec/SH.md SH-5.5, SH-5.6), on synthetic rows."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.experiments.block_energy import (energy_target, grid_alignment, target_matrices,
                                               target_study)
from torq_ref.rotations.inter_block import macro_rotation
from torq_ref.rotations.schur_horn import block_traces, check_majorization
from torq_ref.torq.macro import output_error


def _rows(seed=0, T=400, n=96):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(4, size=(T, n)) * np.exp(rng.normal(0, 0.8, n))
    X[:, 3] *= 15
    return X


@pytest.mark.clause("SH-5.5")
def test_energy_target_family():
    e = np.array([9.0, 1.0, 2.0])
    for tau in (0.0, 0.3, 1.0):
        t = energy_target(e, tau)
        assert t.sum() == pytest.approx(e.sum())
        check_majorization(t, e, tol=1e-12)
    assert np.array_equal(energy_target(e, 0.0), e) and np.allclose(energy_target(e, 1.0), 4.0)
    with pytest.raises(ValueError, match=r"tau must lie in \[0, 1\]"):
        energy_target(e, 1.5)


@pytest.mark.clause("SH-5.5")
def test_target_matrices_reach_their_block_energies():
    X = _rows()
    C = X.T @ X / len(X)
    mats = target_matrices(C, 32, taus=(0.0, 0.5, 1.0))
    B = mats[("B", None)]
    e_bq = block_traces(B.T @ C @ B)
    e_qb = block_traces(C)
    for (order, tau), M in mats.items():
        assert np.allclose(M.T @ M, np.eye(96), atol=1e-12)
        if order == "B":
            continue
        want = energy_target(e_bq if order == "BQ" else e_qb, tau)
        assert np.allclose(block_traces(M.T @ C @ M), want, rtol=1e-9), (order, tau)
    # tau = 1: the constant target of the block_hadamard_schur_horn strategy
    ref = macro_rotation(C, "block_hadamard_schur_horn").matrix()
    assert np.allclose(mats[("BQ", 1.0)], ref, atol=1e-10)
    with pytest.raises(ValueError, match="unknown order"):
        target_matrices(C, 32, orders=("QQ",))


@pytest.mark.clause("SH-5.5")
def test_target_study_measures_held_out_rows():
    X = _rows(1, T=600)
    Wt = np.random.default_rng(2).standard_normal((24, 96))
    got = target_study(X[:400], X[400:], Wt, 32, taus=(1.0,), orders=("BQ",))
    assert set(got) == {("B", None), ("BQ", 1.0)}
    B = target_matrices(X[:400].T @ X[:400] / 400, 32, taus=(), orders=())[("B", None)]
    Y = X[400:] @ B
    Yq = mx.quantize_dequantize(Y.astype(np.float32), "e2m1", block_size=32).astype(np.float64)
    assert got[("B", None)][0] == pytest.approx(np.sum((Yq - Y) ** 2) / np.sum(Y * Y), rel=1e-12)
    assert got[("B", None)][1] == pytest.approx(output_error(X[400:], B, Wt), rel=1e-12)


@pytest.mark.clause("SH-5.6")
def test_grid_alignment_bound():
    X = _rows(3, T=500)
    got = grid_alignment(X, X, 32, K=8)               # chosen and measured on the same rows
    assert got["aligned"] <= got["floor"]              # k = 0 is a candidate, the best is taken
    assert got["k"].shape == (3,) and got["k"].min() >= 0 and got["k"].max() < 8
    Yq = mx.quantize_dequantize(X.astype(np.float32), "e2m1", block_size=32, scale_rule="mse")
    assert got["mse"] == pytest.approx(np.sum((Yq - X) ** 2) / np.sum(X * X), rel=1e-12)
    one = grid_alignment(X[:300], X[300:], 32, K=1)
    assert one["aligned"] == one["floor"] and not one["k"].any()
    # a block scaled by 2^(3/8) is best scaled back by 2^(5/8): the grid position, not the energy
    Y = X.copy()
    Y[:, 32:64] *= 2.0 ** (3 / 8)
    base, moved = grid_alignment(X, X, 32, K=8)["k"], grid_alignment(Y, Y, 32, K=8)["k"]
    assert moved[1] == (base[1] - 3) % 8 and moved[0] == base[0]
    with pytest.raises(ValueError, match="K must be"):
        grid_alignment(X, X, 32, K=0)
