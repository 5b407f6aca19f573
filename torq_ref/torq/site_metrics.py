"""The per-site metrics of a method's transform (spec/TQ.md TQ-3.3), measured by the engine on the
held-out calibration rows of each site (TQ-6.2)."""
from __future__ import annotations

import numpy as np

from .methods import TorqConfig


def site_metrics(C: np.ndarray, X: np.ndarray, transform, cfg: TorqConfig) -> dict:
    """Block-energy imbalance of the transformed second moment and code entropy of the
    transformed sample (TQ-3.3)."""
    from torq_ref.rotations.entropy import (EntropyInputError, code_entropy, code_histogram,
                                          entropy_from_counts)
    from torq_ref.rotations.metrics import block_energy_imbalance

    n = C.shape[0]
    if transform is None:
        diag, Xt = np.diag(C), X
    else:
        dense = transform.materialize(n)
        Xt = dense.apply(X.astype(np.float64))
        # Rotations inside the 32-blocks keep every block trace, so the block energies are those
        # of x @ M alone: diag(M^T C M), one (n, n) matmul (no need to materialize M (I (x) R)).
        M = dense.matrix
        diag = np.diag(C) if M is None else np.einsum("ik,ik->k", M, C @ M)
    if not np.all(np.isfinite(Xt)):
        raise EntropyInputError("site metrics need finite calibration rows (NaN/Inf would give NaN scales)")
    codes = _codes(Xt, cfg)
    # the entropy of the e2m1 codes is code_entropy's: the histogram of these codes (ME-1.1),
    # quantized once for both figures
    entropy = entropy_from_counts(code_histogram(codes)) if cfg.fmt == "e2m1" else float(
        code_entropy(Xt.astype(np.float32), block_size=cfg.block_size, scale_rule=cfg.scale_rule))
    return {
        "imbalance": float(block_energy_imbalance(diag, cfg.block_size)),
        "entropy": float(entropy),
        "codes": np.bincount(codes, minlength=16).tolist(),
    }


def _codes(X: np.ndarray, cfg: TorqConfig) -> np.ndarray:
    """The element codes (uint8, flat) of the rows X (float32) in cfg.fmt."""
    from torq_ref import mx

    t = mx.quantize(np.ascontiguousarray(X, dtype=np.float32), cfg.fmt, block_size=cfg.block_size,
                    scale_rule=cfg.scale_rule)
    return np.asarray(t.codes, dtype=np.uint8).ravel()
