"""Weight-aware macro candidates (spec/TQ.md section 5): explored, measured, not the default."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.torq.macro import (MACRO_CANDIDATES, candidate_matrix, output_error,
                                 ratio_grouping_permutation, select_macro)


def _site(n=64, out=48, rows=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(4, size=(rows, n)) * np.exp(rng.normal(size=n))
    W = rng.normal(size=(out, n)) / np.sqrt(n)
    return X, W, X.T @ X / rows


@pytest.mark.clause("TQ-5.1")
def test_output_error_definition():
    X, W, C = _site()
    M = candidate_matrix("block_hadamard", C, np.ones(64))
    e = output_error(X, M, W)
    from torq_ref import mx

    Xq = mx.quantize_dequantize(np.ascontiguousarray(X @ M, dtype=np.float32)).astype(np.float64) @ M.T
    per = np.sum(((Xq - X) @ W.T) ** 2, 1) / np.sum((X @ W.T) ** 2, 1)
    assert e == pytest.approx(per.mean(), rel=1e-12)
    # values already on the MXFP4 grid have no error
    grid = mx.quantize_dequantize(np.ascontiguousarray(X, dtype=np.float32)).astype(np.float64)
    assert output_error(grid, np.eye(64), W) == 0.0


@pytest.mark.clause("TQ-5.2")
def test_ratio_grouping_and_candidates_orthogonal():
    X, W, C = _site()
    u = np.einsum("ij,ij->j", W, W)
    order = ratio_grouping_permutation(C, u)
    r = np.diag(C)[order] / u[order]
    assert np.all(np.diff(r) <= 0) and sorted(order) == list(range(64))
    for name in MACRO_CANDIDATES:
        M = candidate_matrix(name, C, u)
        assert np.allclose(M.T @ M, np.eye(64), atol=1e-12)
    with pytest.raises(ValueError, match="unknown macro candidate"):
        candidate_matrix("quarot", C, u)


@pytest.mark.clause("TQ-5.3")
def test_select_macro_returns_the_smallest_error():
    X, W, C = _site(seed=2)
    name, M, errors = select_macro(C, W, X[128:])
    assert set(errors) == set(MACRO_CANDIDATES)
    assert errors[name] == min(errors.values())
    assert np.allclose(M, candidate_matrix(name, C, np.einsum("ij,ij->j", W, W)))
