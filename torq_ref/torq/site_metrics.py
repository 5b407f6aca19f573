"""The per-site metrics of a method's transform (spec/TQ.md TQ-3.3), measured by the engine on the
held-out calibration rows of each site (TQ-6.2)."""
from __future__ import annotations

import numpy as np

from .methods import TorqConfig


def site_metrics(C: np.ndarray, X: np.ndarray, transform, cfg: TorqConfig) -> dict:
    """Block-energy imbalance of the transformed second moment and code entropy of the
    transformed sample (TQ-3.3)."""
    from torq_ref.rotations.entropy import code_entropy
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
    return {
        "imbalance": float(block_energy_imbalance(diag, cfg.block_size)),
        "entropy": float(code_entropy(Xt.astype(np.float32), block_size=cfg.block_size,
                                      scale_rule=cfg.scale_rule)),
        "codes": np.bincount(_codes(Xt, cfg), minlength=16).tolist(),
    }


def _codes(X: np.ndarray, cfg: TorqConfig) -> np.ndarray:
    from torq_ref import mx

    t = mx.quantize(np.ascontiguousarray(X, dtype=np.float32), cfg.fmt, block_size=cfg.block_size,
                    scale_rule=cfg.scale_rule)
    return t.codes.ravel()
