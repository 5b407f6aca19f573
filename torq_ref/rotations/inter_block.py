"""The inter-block (macro) rotation of TORQ and the strategies it is chosen from (spec/SH.md, SH-5).

From the calibration second moment C (n, n) of a linear layer's input, ``macro_rotation`` builds an
orthogonal M (n, n) used on row vectors as X @ M (activations; weights as W @ M along their
input axis so that (X M)(W M)^T = X W^T). Strategies (names are stable):

=========================  ===============================================================
``identity``               M = I
``schur_horn``             M = Q, Schur-Horn with the constant target: diag(M^T C M) = tr(C)/n
``hadamard_schur_horn``    M = H Q', Q' = Schur-Horn of H^T C H (global Hadamard first)
``schur_horn_block_hadamard``  M = Q B, Schur-Horn then the block Hadamard of size block_size
``block_hadamard_schur_horn``  M = B Q', Q' = Schur-Horn of B^T C B (block Hadamard first)
``eigen_hadamard``         M = V H, V eigenvectors of C (exact diagonal equalisation)
``block_hadamard``         M = B = kron(I, H_b) (BRQ / MR-GPTQ style)
``hadamard``               M = H, the normalised global Hadamard of order n (see baselines)
``random_orthogonal``      M = Haar random orthogonal (seeded; QuaRot-like)
=========================  ===============================================================

``compare_strategies`` measures each on held-out rows by MXFP4 NMSE (the choice criterion).
"""
from __future__ import annotations

import time

import numpy as np

from . import baselines
from .givens import GivensSequence
from .metrics import block_energy_imbalance, mxfp4_nmse, scale_exponent_spread, second_moment

__all__ = ["STRATEGIES", "ComposedOrthogonal", "macro_rotation", "compare_strategies",
           "choose_strategy", "select_macro_rotation"]

STRATEGIES = ("identity", "schur_horn", "hadamard_schur_horn", "schur_horn_block_hadamard",
              "block_hadamard_schur_horn", "eigen_hadamard", "block_hadamard", "hadamard",
              "random_orthogonal")


class ComposedOrthogonal:
    """M = M_1 M_2 ... M_k: ``apply`` runs X @ M_1, then @ M_2, ... (each stage has ``apply``)."""

    __slots__ = ("n", "stages", "name")

    def __init__(self, n: int, stages=(), name: str = "composed"):
        self.n = int(n)
        self.stages = tuple(stages)
        for st in self.stages:
            if st.n != self.n:
                raise ValueError(f"stage {st!r} has size {st.n}, expected {self.n}")
        self.name = name

    def __repr__(self) -> str:
        return f"ComposedOrthogonal({self.name!r}, n={self.n}, stages={list(self.stages)})"

    def apply(self, x, axis: int = -1) -> np.ndarray:
        """X @ M along ``axis`` (float64)."""
        y = np.asarray(x, dtype=np.float64)
        if y.ndim == 0 or y.shape[axis] != self.n:
            raise ValueError(f"x must have length {self.n} along axis {axis}, got shape {y.shape}")
        for st in self.stages:
            y = st.apply(y, axis=axis)
        return np.array(y, dtype=np.float64, copy=True) if not self.stages else y

    def apply_transpose(self, x, axis: int = -1) -> np.ndarray:
        """X @ M^T along ``axis`` (the inverse of ``apply``)."""
        y = np.asarray(x, dtype=np.float64)
        if y.ndim == 0 or y.shape[axis] != self.n:
            raise ValueError(f"x must have length {self.n} along axis {axis}, got shape {y.shape}")
        for st in reversed(self.stages):
            y = st.apply_transpose(y, axis=axis)
        return np.array(y, dtype=np.float64, copy=True) if not self.stages else y

    def matrix(self) -> np.ndarray:
        """Dense M (n, n)."""
        return self.apply(np.eye(self.n))


def _hadamard_or_block(n: int, block_size: int) -> baselines.DenseOrthogonal:
    try:
        return baselines.DenseOrthogonal(baselines.hadamard(n), "hadamard")
    except baselines.HadamardOrderError:
        # no global Hadamard of this order: fall back to the largest block Hadamard we can build
        for b in sorted({d for d in range(1, n + 1) if n % d == 0}, reverse=True):
            try:
                baselines.hadamard_construction(b)
            except baselines.HadamardOrderError:
                continue
            return baselines.DenseOrthogonal(baselines.block_hadamard(n, b), f"block_hadamard{b}")
    raise AssertionError("unreachable: b = 1 always works")


def macro_rotation(C, strategy: str = "hadamard_schur_horn", *, block_size: int = 32,
                   seed: int = 0, rtol: float | None = None,
                   backend: str = "auto") -> ComposedOrthogonal:
    """The macro (inter-block) orthogonal transform for second moment C (n, n) (SH-5.1).

    Returns a ComposedOrthogonal M with ``apply(x, axis=-1)`` = X @ M (activations and weight
    rows), ``apply_transpose`` and ``matrix``. ``strategy`` is one of STRATEGIES (see module
    docstring); ``seed`` only matters for ``random_orthogonal``.
    """
    from .schur_horn import check_symmetric, schur_horn

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    c = check_symmetric(C)
    n = c.shape[0]
    if strategy == "identity":
        return ComposedOrthogonal(n, (), strategy)
    if strategy == "schur_horn":
        return ComposedOrthogonal(n, (schur_horn(c, rtol=rtol, backend=backend),), strategy)
    if strategy == "hadamard_schur_horn":
        h = _hadamard_or_block(n, block_size)
        ch = h.m.T @ c @ h.m                                            # H^T C H
        return ComposedOrthogonal(n, (h, schur_horn(0.5 * (ch + ch.T), rtol=rtol, backend=backend)),
                                  strategy)
    if strategy == "schur_horn_block_hadamard":
        q = schur_horn(c, rtol=rtol, backend=backend)
        b = baselines.DenseOrthogonal(baselines.block_hadamard(n, block_size), "block_hadamard")
        return ComposedOrthogonal(n, (q, b), strategy)
    if strategy == "block_hadamard_schur_horn":
        b = baselines.DenseOrthogonal(baselines.block_hadamard(n, block_size), "block_hadamard")
        cb = b.m.T @ c @ b.m                                            # B^T C B
        return ComposedOrthogonal(n, (b, schur_horn(0.5 * (cb + cb.T), rtol=rtol, backend=backend)),
                                  strategy)
    if strategy == "eigen_hadamard":
        _, v = np.linalg.eigh(c)                                          # (n,), (n, n)
        h = _hadamard_or_block(n, block_size)
        return ComposedOrthogonal(n, (baselines.DenseOrthogonal(v, "eigenbasis"), h), strategy)
    if strategy == "block_hadamard":
        b = baselines.DenseOrthogonal(baselines.block_hadamard(n, block_size), "block_hadamard")
        return ComposedOrthogonal(n, (b,), strategy)
    if strategy == "hadamard":
        return ComposedOrthogonal(n, (_hadamard_or_block(n, block_size),), strategy)
    # random_orthogonal
    return ComposedOrthogonal(
        n, (baselines.DenseOrthogonal(baselines.random_orthogonal(n, seed), "random_orthogonal"),),
        strategy)


def compare_strategies(calib, heldout, strategies=STRATEGIES, *, block_size: int = 32,
                       seed: int = 0, moment=None, validation=None) -> list[dict]:
    """Build each strategy from the calibration rows (or ``moment``, their second moment) and
    measure it on calibration and held-out rows (SH-5.2). Returns one dict per strategy:
    strategy, nmse_calib, nmse_heldout, imbalance_heldout, exp_spread_heldout (mean per-row
    spread of the block scale exponents), rotations (Givens count, 0 if none), build_s; with ``validation`` rows also
    nmse_validation."""
    calib = np.asarray(calib, dtype=np.float64).reshape(-1, np.shape(calib)[-1])
    heldout = np.asarray(heldout, dtype=np.float64).reshape(-1, np.shape(heldout)[-1])
    c = second_moment(calib) if moment is None else np.asarray(moment, dtype=np.float64)
    rows = []
    for name in strategies:
        t0 = time.perf_counter()
        m = macro_rotation(c, name, block_size=block_size, seed=seed)
        build = time.perf_counter() - t0
        yh = m.apply(heldout)
        rows.append({
            "strategy": name,
            "n": heldout.shape[1],
            "nmse_calib": mxfp4_nmse(m.apply(calib), None, block_size),
            "nmse_heldout": mxfp4_nmse(yh, None, block_size),
            "imbalance_heldout": block_energy_imbalance(second_moment(yh), block_size),
            "exp_spread_heldout": scale_exponent_spread(yh, block_size)["mean"],
            "rotations": sum(len(s) for s in m.stages if isinstance(s, GivensSequence)),
            "build_s": build,
        })
        if validation is not None:
            v = np.asarray(validation, dtype=np.float64).reshape(-1, heldout.shape[1])
            rows[-1]["nmse_validation"] = mxfp4_nmse(m.apply(v), None, block_size)
    return rows


def choose_strategy(rows: list[dict], key: str = "nmse_heldout") -> str:
    """The strategy with the smallest ``key`` (held-out NMSE by default; ties: the first listed)
    (SH-5.3)."""
    if not rows:
        raise ValueError("no strategies measured")
    best = min(range(len(rows)), key=lambda k: (rows[k][key], k))
    return rows[best]["strategy"]


def select_macro_rotation(calib, heldout, strategies=STRATEGIES, *, block_size: int = 32,
                          seed: int = 0) -> tuple[str, ComposedOrthogonal, list[dict]]:
    """Per-site choice for a pipeline (SH-5.3): measure ``strategies`` with ``compare_strategies``
    (built from ``calib`` rows, judged on ``heldout`` rows) and return (name, transform built
    from the calibration moment, the measured rows)."""
    rows = compare_strategies(calib, heldout, strategies, block_size=block_size, seed=seed)
    name = choose_strategy(rows)
    calib = np.asarray(calib, dtype=np.float64).reshape(-1, np.shape(calib)[-1])
    return name, macro_rotation(second_moment(calib), name, block_size=block_size, seed=seed), rows


# --------------------------------------------------------------------------------------------
# the measured comparison (CLI ``experiment inter-block``, results/inter_block.md)
# --------------------------------------------------------------------------------------------
SYNTHETIC_WIDTHS = {"qkv": 576, "o": 576, "gate_up": 576, "down": 1536}


def synthetic_activations(n: int, rows: int, seed: int = 0, *, df: float = 3.0,
                          outliers: int = 6, outlier_gain: float = 20.0) -> np.ndarray:
    """Heavy-tailed rows (rows, n): Student-t(df) entries, log-normal channel scales, ``outliers``
    channels amplified by ``outlier_gain``, then mixed by I + 0.3 G / sqrt(n) (correlated channels).
    The channel structure depends on ``seed`` only, so calibration and held-out rows drawn with
    the same seed (different ``rows`` streams, see ``synthetic_split``) share it."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0.0, 0.5, n))
    scale[rng.choice(n, outliers, replace=False)] *= outlier_gain
    mix = np.eye(n) + 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)
    x = np.random.default_rng([seed, rows]).standard_t(df, size=(rows, n))
    return (x * scale) @ mix                                             # (rows, n)


def synthetic_split(n: int, calib_rows: int, heldout_rows: int, seed: int = 0):
    """(calibration, held-out) rows with the same channel structure and independent samples."""
    x = synthetic_activations(n, calib_rows + heldout_rows, seed)
    return x[:calib_rows], x[calib_rows:]
