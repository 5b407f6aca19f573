"""The macro (inter-block) step of the pipeline: weight-aware candidates and their per-site choice
(spec/TQ.md section 5).

Why weight-aware. After a 32-block Hadamard the blocks of a layer input are close to Gaussian, so
the MXFP4 error of block b of a token is about eps * E_b (E_b its energy, eps ~ 1.3 % for FLOOR)
whatever the inter-block rotation does; the error of the layer OUTPUT is then about

    sum_b eps * E_b * w_b,     w_b = squared Frobenius norm of the weight columns fed by block b,

(in the rotated basis). Equalizing E_b (the energy-balancing reading of TORQ) makes this
eps * mean(E) * sum(w), which is worse than leaving channels where large activations meet small
weights, as they usually do. The candidates below are orthogonal inter-block transforms; the
pipeline keeps, per site, the one with the smallest measured output error on held-out rows.

=======================  =================================================================
candidate                transform (x -> x @ M), then the 32-block Hadamard in every case
=======================  =================================================================
``block_hadamard``       M = I                                       (the BRQ baseline)
``schur_horn``           M = Q, Schur-Horn: diag(Q^T C Q) = tr(C)/n  (energy equalization)
``ratio_grouping``       M = P, a permutation sorting channels by v_j / u_j (activation
                         energy over weight-column energy) into consecutive blocks
=======================  =================================================================
"""
from __future__ import annotations

import numpy as np

MACRO_CANDIDATES = ("block_hadamard", "schur_horn", "ratio_grouping")


def ratio_grouping_permutation(C: np.ndarray, G_diag: np.ndarray) -> np.ndarray:
    """Channel order (n,) sorting v_j / u_j decreasing (ties by index): x[:, order] groups channels
    of similar activation-to-weight energy ratio into the same 32-blocks (TQ-5.2)."""
    v = np.diag(C).astype(np.float64)
    u = np.asarray(G_diag, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    return np.argsort(-(v / np.maximum(u, tiny)), kind="stable")


def candidate_matrix(name: str, C: np.ndarray, G_diag: np.ndarray, block_size: int = 32) -> np.ndarray:
    """Dense (n, n) orthogonal M of a candidate, with the 32-block Hadamard applied after it."""
    from torq_ref.rotations import baselines
    from torq_ref.rotations.schur_horn import schur_horn

    n = C.shape[0]
    B = baselines.block_hadamard(n, block_size)
    if name == "block_hadamard":
        return B
    if name == "schur_horn":
        return schur_horn(C).apply(np.eye(n)) @ B
    if name == "ratio_grouping":
        return np.eye(n)[:, ratio_grouping_permutation(C, G_diag)] @ B
    raise ValueError(f"unknown macro candidate {name!r}; choose from {', '.join(MACRO_CANDIDATES)}")


def output_error(X: np.ndarray, M: np.ndarray, W: np.ndarray, *, fmt="e2m1", scale_rule="floor",
                 block_size: int = 32) -> float:
    """Mean over tokens of the relative output error ||(Q(x M) M^T - x) W^T||^2 / ||x W^T||^2
    (TQ-5.1). Per token, so the few tokens with massive activations do not decide alone."""
    from torq_ref import mx

    Xt = np.ascontiguousarray(X @ M, dtype=np.float32)
    Xq = mx.quantize_dequantize(Xt, fmt, block_size=block_size, scale_rule=scale_rule).astype(np.float64)
    err = (Xq @ M.T - X) @ W.T                                         # (T, out)
    ref = X @ W.T
    per_token = np.sum(err * err, axis=1) / np.maximum(np.sum(ref * ref, axis=1), np.finfo(np.float64).tiny)
    return float(np.mean(per_token))


def select_macro(C: np.ndarray, W: np.ndarray, X_check: np.ndarray,
                 candidates=MACRO_CANDIDATES, *, block_size: int = 32, scale_rule: str = "floor"):
    """Per-site choice (TQ-5.3): build each candidate from the calibration moment ``C`` and the
    weight ``W`` (out, n), measure its output error on ``X_check`` (rows ``C`` was not computed
    from), return (name, M, {name: error})."""
    G_diag = np.einsum("ij,ij->j", W, W, dtype=np.float64)
    errors, mats = {}, {}
    Xc = np.asarray(X_check, dtype=np.float64)
    Wd = np.asarray(W, dtype=np.float64)
    for name in candidates:
        mats[name] = candidate_matrix(name, C, G_diag, block_size)
        errors[name] = output_error(Xc, mats[name], Wd, scale_rule=scale_rule, block_size=block_size)
    best = min(candidates, key=lambda k: (errors[k], candidates.index(k)))
    return best, mats[best], errors
