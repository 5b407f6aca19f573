"""Block energies other than equal: Schur-Horn targets and the E8M0 grid (spec/SH.md SH-5.5, SH-5.6).

``python -m torq_ref experiment block-energy``: two studies on captured inputs of the real model,
every transform built from calibration rows, every figure on held-out rows. The question they
answer: Schur-Horn reaches any majorized target diagonal exactly, so do targets other than the
constant help?

1. Targets (SH-5.5). The Schur-Horn level sets the block energies e_b of the transformed second
   moment exactly. The family tried is e(tau) = (1 - tau) e_0 + tau mean(e_0) (tau = 0 keeps each
   block's energy, spread evenly over its channels; tau = 1 is the constant target of the default),
   in both orders with the 32-block Hadamard B: "BQ" (x B Q, Q built on B^T C B) and "QB"
   (x Q B). Each is measured against B alone by MXFP4 NMSE and by the layer-output error of
   spec/TQ.md TQ-5.1.
2. The E8M0 grid (SH-5.6). With per-block power-of-two scales a block's relative error depends on
   its energy only through where its largest element falls between two powers of two. The most any
   choice of block energies can gain from that is bounded by scaling each block by its best
   c_b = 2^(k/K), k = 0..K-1 (a scalar keeps the block's shape, a rotation cannot do better),
   chosen per block on the calibration rows; the study reports that bound beside the `mse` scale
   rule (spec/MX.md MX-4.8), which chooses floor or floor + 1 per block and token.

Rows are smoothed first at the RMSNorm-fed sites (spec/TQ.md TQ-2.7, ``alpha``), as TORQ sees them.
"""
from __future__ import annotations

import numpy as np

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)
ORDERS = ("BQ", "QB")


def energy_target(e: np.ndarray, tau: float) -> np.ndarray:
    """Block energies (1 - tau) e + tau mean(e) (SH-5.5): majorized by ``e`` for tau in [0, 1]."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1], got {tau!r}")
    e = np.asarray(e, dtype=np.float64)
    return (1.0 - tau) * e + tau * e.mean()


def _nmse(Y: np.ndarray, block_size: int, scale_rule: str = "floor") -> float:
    from torq_ref import mx

    Yq = mx.quantize_dequantize(np.ascontiguousarray(Y, dtype=np.float32), "e2m1",
                                block_size=block_size, scale_rule=scale_rule).astype(np.float64)
    return float(np.sum((Yq - Y) ** 2) / np.sum(Y * Y))


def target_matrices(C: np.ndarray, block_size: int = 32, taus=TAUS, orders=ORDERS) -> dict:
    """{("B", None): B, (order, tau): M} of SH-5.5, dense (n, n) orthogonal, from the moment C."""
    from torq_ref.rotations.baselines import block_hadamard
    from torq_ref.rotations.schur_horn import block_traces, schur_horn_blocks

    n = C.shape[0]
    B = block_hadamard(n, block_size)
    out = {("B", None): B}
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; choose from {ORDERS}")
        Cs = B.T @ C @ B if order == "BQ" else np.asarray(C, dtype=np.float64)
        Cs = 0.5 * (Cs + Cs.T)
        e = block_traces(Cs, block_size)                                   # (n / block_size,)
        for tau in taus:
            Q = schur_horn_blocks(Cs, energy_target(e, tau), block_size=block_size).apply(np.eye(n))
            out[(order, float(tau))] = B @ Q if order == "BQ" else Q @ B
    return out


def target_study(X_cal, X_held, W, block_size: int = 32, taus=TAUS, orders=ORDERS) -> dict:
    """{key of target_matrices: (held-out NMSE, held-out output error)} of one site (SH-5.5);
    ``W`` (out, n) the weight the site feeds (as the smoothed model has it)."""
    from torq_ref.torq.macro import output_error

    X_cal = np.asarray(X_cal, dtype=np.float64)
    X_held = np.asarray(X_held, dtype=np.float64)
    C = X_cal.T @ X_cal / X_cal.shape[0]
    Wd = np.asarray(W, dtype=np.float64)
    return {key: (_nmse(X_held @ M, block_size), output_error(X_held, M, Wd, block_size=block_size))
            for key, M in target_matrices(C, block_size, taus, orders).items()}


def _block_errors(Y: np.ndarray, c: float, block_size: int) -> np.ndarray:
    """Squared MXFP4 (FLOOR) error of every block, summed over rows, after scaling by c: (nb,)."""
    from torq_ref import mx

    Yq = mx.quantize_dequantize(np.ascontiguousarray(Y * c, dtype=np.float32), "e2m1",
                                block_size=block_size).astype(np.float64) / c
    T, n = Y.shape
    return ((Yq - Y) ** 2).reshape(T, n // block_size, block_size).sum(axis=(0, 2))


def grid_alignment(Y_cal, Y_held, block_size: int = 32, K: int = 8) -> dict:
    """SH-5.6 on rotated rows: held-out NMSE under FLOOR, with each block scaled by its best
    c_b = 2^(k/K) (chosen on ``Y_cal``, the index k of the smallest error, ties to the smaller k)
    and under the ``mse`` rule; and the chosen k per block."""
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K!r}")
    Y_cal = np.asarray(Y_cal, dtype=np.float64)
    Y_held = np.asarray(Y_held, dtype=np.float64)
    cs = 2.0 ** (np.arange(K) / K)
    E_cal = np.stack([_block_errors(Y_cal, c, block_size) for c in cs])    # (K, nb)
    E_held = np.stack([_block_errors(Y_held, c, block_size) for c in cs])
    k = np.argmin(E_cal, axis=0)                                           # first minimum: smaller k
    ref = float(np.sum(Y_held * Y_held))
    return {"floor": float(E_held[0].sum() / ref),
            "aligned": float(E_held[k, np.arange(k.size)].sum() / ref),
            "mse": _nmse(Y_held, block_size, "mse"), "k": k}


def run_block_energy(*, model="smollm2-135m", layers=(0, 10, 20, 29), sites=("qkv", "gate_up", "o", "down"),
                     calib_windows: int = 4, heldout_windows: int = 2, alpha: float = 0.5,
                     block_size: int = 32, K: int = 8, progress: bool | None = None) -> str:
    """Both studies on the captured inputs of ``model``; the markdown report (SH-5.5, SH-5.6)."""
    import sys

    from tqdm import tqdm

    from torq_ref import model as tm
    from torq_ref.rotations.baselines import block_hadamard
    from torq_ref.torq.scale_step import NORM_OF_SITE, channel_scales

    from .capture import capture_inputs

    if progress is None:
        progress = sys.stderr.isatty()
    data, note = capture_inputs(model, list(layers), list(sites), calib_windows, heldout_windows, progress)
    mdl = tm.load(tm.ensure_model(model))
    targets, align = {}, {}
    for key in tqdm(sorted(data), desc="block energy", disable=not progress):
        layer, site = key
        Xc, Xh = data[key]
        s = (channel_scales(Xc.T @ Xc / Xc.shape[0], alpha) if site in NORM_OF_SITE
             else np.ones(Xc.shape[1]))
        Xc, Xh = Xc / s, Xh / s                                            # the smoothed rows
        W = mdl.site_weight(layer, site).astype(np.float64) * s[None, :]  # (out, n): W s
        targets[key] = target_study(Xc, Xh, W, block_size)
        B = block_hadamard(Xc.shape[1], block_size)
        align[key] = grid_alignment(Xc @ B, Xh @ B, block_size, K)
    return _render(model, note, alpha, K, targets, align)


def _geomean_ratio(values, base) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values) / np.asarray(base)))))


def _render(model, note, alpha, K, targets, align) -> str:
    keys = sorted(targets)
    cols = list(targets[keys[0]])
    name = lambda c: "B alone" if c[0] == "B" else f"{c[0]} tau={c[1]:g}"       # noqa: E731
    lines = [f"# Block energies other than equal ({model})", "", f"Source: {note}.",
             f"Rows smoothed at the RMSNorm-fed sites (alpha {alpha}, spec/TQ.md TQ-2.7); every "
             "transform built from the calibration rows, every figure on the held-out rows.", "",
             "## Schur-Horn block-energy targets (SH-5.5)", "",
             "Geometric mean over sites of the held-out figure relative to the 32-block Hadamard B "
             "alone (< 1: better than B):", "",
             "| transform | MXFP4 NMSE / B | output error / B |", "|---|---|---|"]
    for c in cols:
        nm = _geomean_ratio([targets[k][c][0] for k in keys], [targets[k][("B", None)][0] for k in keys])
        oe = _geomean_ratio([targets[k][c][1] for k in keys], [targets[k][("B", None)][1] for k in keys])
        lines.append(f"| {name(c)} | {nm:.4f} | {oe:.4f} |")
    lines += ["", "Per site (held-out NMSE / output error):", "",
              "| layer | site | " + " | ".join(name(c) for c in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for k in keys:
        lines.append(f"| {k[0]} | {k[1]} | " + " | ".join(f"{targets[k][c][0]:.5f} / {targets[k][c][1]:.5f}"
                                                        for c in cols) + " |")
    lines += ["", f"## The E8M0 grid: per-block scale 2^(k/{K}) after B (SH-5.6)", "",
              "| layer | site | NMSE FLOOR | aligned / FLOOR | mse rule / FLOOR |", "|---|---|---|---|---|"]
    for k in keys:
        a = align[k]
        lines.append(f"| {k[0]} | {k[1]} | {a['floor']:.5f} | {a['aligned'] / a['floor']:.4f} | "
                     f"{a['mse'] / a['floor']:.4f} |")
    ga = _geomean_ratio([align[k]["aligned"] for k in keys], [align[k]["floor"] for k in keys])
    gm = _geomean_ratio([align[k]["mse"] for k in keys], [align[k]["floor"] for k in keys])
    lines += [f"| all | geometric mean | | {ga:.4f} | {gm:.4f} |", ""]
    return "\n".join(lines)
