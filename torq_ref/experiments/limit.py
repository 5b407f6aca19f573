"""How far from the limit: MXFP4 error under three per-block scale choices (spec/TQ.md TQ-2.19, TQ-2.20).

For rows X (N, n) of one site, transformed by T (identity or a method's transform), every 32-block
of every row y = (x T)_b is quantized to E2M1 with one scale per block, chosen three ways:

(a) ``floor``: the OCP MX v1.0 section 6.3 rule (``mx.quantize_dequantize``, scale_rule "floor");
(b) ``e8m0``: the best power-of-two scale of the block, the FLOOR code c plus d for d in
    :data:`E8M0_OFFSETS` = (-1, 0, +1, +2), each quantized by the codec (``mx.encode`` of
    y / 2^(c + d - 127), ``mx.dequantize`` of the MXTensor), the smallest squared error kept;
(c) ``real``: the best real scale s > 0 of the block, min over s of || y - s Q(y / s) ||^2 with Q
    E2M1 round-to-nearest-even with saturation at 6. Solved exactly (:func:`real_scale_errors`):
    the error is a continuous, piecewise quadratic function of s whose pieces end where |y_i| / s
    crosses a midpoint between two E2M1 magnitudes; the minimum of each piece is its clipped
    vertex, so the best of the 7 * 32 + 1 pieces is the global optimum to float64 rounding. The
    error at the chosen s is then measured directly with the codec's element encoder.

NMSE = sum of the squared errors / sum of y^2 over all blocks and rows. Since Q rounds to the
nearest code, (c) is also the optimum over the scale and the codes together: no one-scale E2M1
block quantizer does better. The fraction of the gap a method closes is (a_ref - m) / (a_ref - c_ref)
(:meth:`Limit.closed`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: offsets d of the E8M0 code searched in (b), around the FLOOR code c (TQ-2.19)
E8M0_OFFSETS = (-1, 0, 1, 2)
#: E2M1 magnitudes, and the midpoints between neighbours where round-to-nearest changes code
E2M1_MAGNITUDES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
_MIDPOINTS = 0.5 * (E2M1_MAGNITUDES[1:] + E2M1_MAGNITUDES[:-1])          # (7,)
#: blocks solved at once by the real-scale search (its arrays are (chunk, 225))
_CHUNK = 4096


@dataclass(frozen=True)
class Limit:
    """The three NMSEs of one set of rows (TQ-2.19): floor >= e8m0 >= real."""

    floor: float   # (a) the OCP FLOOR scale
    e8m0: float    # (b) the best E8M0 code of FLOOR + E8M0_OFFSETS, per block
    real: float    # (c) the best real-valued scale, per block

    @property
    def gap(self) -> float:
        """What a per-block scale choice could still gain over FLOOR: a - c."""
        return self.floor - self.real

    def closed(self, nmse: float) -> float:
        """(a - nmse) / (a - c): the fraction of this rows' gap that an NMSE of ``nmse`` closes
        (1: the best real scale reached; 0: no better than FLOOR; below 0: worse) (TQ-2.19)."""
        if not self.gap > 0:
            raise ValueError(f"no gap to close: FLOOR NMSE {self.floor!r}, best real-scale NMSE {self.real!r}")
        return (self.floor - float(nmse)) / self.gap


def check_rows(X, block_size: int = 32) -> np.ndarray:
    """X as float64 (N, n), refused with a specific message unless 2-D, real, finite, of a width
    that is a multiple of ``block_size`` and with some non-zero value (TQ-2.19)."""
    a = np.asarray(X)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"rows must be a real array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"rows must be 2-D (N, n), got shape {a.shape}")
    if a.shape[1] == 0 or a.shape[1] % block_size:
        raise ValueError(f"row width {a.shape[1]} is not a positive multiple of the block size {block_size}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"rows must be finite; found {float(a[tuple(bad)])} at row {bad[0]}, column {bad[1]}")
    if not np.any(a):
        raise ValueError("every row is zero: the NMSE is undefined")
    return a


def _blocks(Y: np.ndarray, block_size: int) -> np.ndarray:
    """(N, n) -> (N * n / block_size, block_size), row by row."""
    return Y.reshape(-1, block_size)


def floor_errors(Y: np.ndarray, block_size: int = 32) -> np.ndarray:
    """(a) Squared error of every block under the FLOOR rule (TQ-2.19): (N * nb,)."""
    from torq_ref import mx

    Yq = mx.quantize_dequantize(Y, "e2m1", block_size=block_size, scale_rule="floor")
    return ((Yq - Y) ** 2).reshape(-1, block_size).sum(axis=1)


def e8m0_errors(Y: np.ndarray, block_size: int = 32, offsets=E8M0_OFFSETS) -> tuple[np.ndarray, np.ndarray]:
    """(b) (squared error, chosen offset) of every block (N * nb,) with the best E8M0 code among
    FLOOR's code c plus ``offsets``, each through the codec (TQ-2.19). Codes outside 0..254 are
    not candidates; ties go to the earlier offset. Why (-1, 0, +1, +2) is enough (amax in
    [4u, 8u), u = 2^(c - 127) the FLOOR scale, the E2M1 grid {0, .5, 1, 1.5, 2, 3, 4, 6} t at
    scale t): a scale t with amax <= 6t never loses to 2t, since every point of the grid of 2t at
    most 6t is a point of the grid of t and nothing saturates, so d = +2 never beats +1 (kept as
    a check) and nothing above it can win; a scale t with amax >= 16t always loses to 2t: the
    largest element loses at least (amax - 6t)^2 - (amax - 12t)^2 >= 84 t^2, the others gain at
    most 31 * (t / 2)^2 (the two grids differ below 6t only on [0, 2t]), so d <= -2 never wins.
    d = -1 can (one element just above 4u, the other 31 near u / 4)."""
    from torq_ref import mx
    from torq_ref.mx.formats import E8M0_BIAS, E8M0_MAX_FINITE

    N, n = Y.shape
    nb = n // block_size
    amax = np.abs(Y).reshape(N, nb, block_size).max(axis=2)                   # (N, nb)
    c = mx.scale_codes(amax, "e2m1", "floor").astype(np.int64)                 # (N, nb)
    if np.any(c > E8M0_MAX_FINITE):
        raise ValueError("a block maximum lies above the E8M0 range (FLOOR code 0xFF)")
    errs = []
    for d in offsets:
        code = c + int(d)
        ok = (code >= 0) & (code <= E8M0_MAX_FINITE)
        code = np.clip(code, 0, E8M0_MAX_FINITE)
        scaled = np.ldexp(Y.reshape(N, nb, block_size), -(code - E8M0_BIAS)[..., None]).reshape(N, n)
        t = mx.MXTensor(codes=mx.encode(scaled, "e2m1", saturate=True), scales=code.astype(np.uint8),
                        fmt="e2m1", block_size=block_size, axis=1, scale_rule="floor")
        e = ((mx.dequantize(t) - Y) ** 2).reshape(N * nb, block_size).sum(axis=1)
        errs.append(np.where(ok.ravel(), e, np.inf))
    E = np.stack(errs)                                                         # (len(offsets), N * nb)
    k = np.argmin(E, axis=0)                                                   # first minimum: earlier offset
    return E[k, np.arange(k.size)], np.asarray(offsets)[k]


def real_scale_errors(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c) (squared error, scale s) of the best real scale of every block (M, B) (TQ-2.19).

    For |y_i| / s above the midpoint m_k of E2M1 magnitudes v_k < v_(k+1) the code of y_i has
    magnitude v_(k+1) or more, so along s the breakpoints |y_i| / m_k (7 per element) cut (0, inf)
    into 7B + 1 pieces; on each the codes are fixed and the error
    S - 2 s A + s^2 G (S = sum y^2, A = sum |y_i| v_i, G = sum v_i^2) is minimal at
    clip(A / G, piece); the error is continuous at the breakpoints (both codes are equally far).
    Below the first breakpoint every non-zero element saturates at 6; above the last all codes are
    0 (error S). (The error is also the lower envelope of the quadratics ||y - s q||^2 over every
    code vector q, since Q is the nearest code: so the clip does not change the minimum, it only
    makes every piece's value an error that Q reaches.) The piece with the smallest value is kept
    and its error measured directly:
    sum (y - s Q(y / s))^2 with the codec's encoder, float64. Tolerance: the optimum is exact up to
    float64 rounding of the piece values (relative 1e-12 of S), not a grid's step."""
    blocks = np.asarray(blocks, dtype=np.float64)
    errs = np.empty(blocks.shape[0])
    scales = np.empty(blocks.shape[0])
    for lo in range(0, blocks.shape[0], _CHUNK):
        errs[lo:lo + _CHUNK], scales[lo:lo + _CHUNK] = _real_chunk(blocks[lo:lo + _CHUNK])
    return errs, scales


def _real_chunk(blk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`real_scale_errors` on one chunk of blocks (M, B)."""
    from torq_ref import mx

    M, B = blk.shape
    y = np.abs(blk)                                                            # (M, B)
    v = E2M1_MAGNITUDES
    # breakpoint of element i at midpoint k: s = |y_i| / m_k; passing it (s grows) moves the code
    # magnitude from v_(k+1) down to v_k
    bp = (y[:, :, None] / _MIDPOINTS[None, None, :]).reshape(M, -1)            # (M, 7B)
    dA = (y[:, :, None] * (v[:-1] - v[1:])[None, None, :]).reshape(M, -1)     # (M, 7B)
    dG = np.broadcast_to(v[:-1] ** 2 - v[1:] ** 2, (M, B, 7)).reshape(M, -1)  # (M, 7B)
    order = np.argsort(bp, axis=1, kind="stable")
    bp = np.take_along_axis(bp, order, axis=1)
    A0 = 6.0 * y.sum(axis=1, keepdims=True)                                    # all saturated: (M, 1)
    G0 = np.full((M, 1), 36.0 * B)
    A = np.concatenate([A0, A0 + np.cumsum(np.take_along_axis(dA, order, axis=1), axis=1)], axis=1)
    G = np.concatenate([G0, G0 + np.cumsum(np.take_along_axis(dG, order, axis=1), axis=1)], axis=1)
    lo = np.concatenate([np.zeros((M, 1)), bp], axis=1)                        # (M, 7B + 1)
    hi = np.concatenate([bp, np.full((M, 1), np.inf)], axis=1)
    S = np.sum(blk * blk, axis=1, keepdims=True)                               # (M, 1)
    live = G > 0.125                                                           # G: a sum of quarters, exact
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.clip(np.where(live, A / np.where(live, G, 1.0), np.inf), lo, hi)
        val = np.where(live, S - 2.0 * s * A + s * s * G, S)                   # (M, 7B + 1)
    j = np.argmin(val, axis=1)
    s_best = s[np.arange(M), j]
    s_best = np.where(np.isfinite(s_best) & (s_best > 0), s_best, 1.0)         # all-zero codes: any s
    q = mx.decode(mx.encode(blk / s_best[:, None], "e2m1", saturate=True), "e2m1") * s_best[:, None]
    return np.sum((blk - q) ** 2, axis=1), s_best


def transformed(X: np.ndarray, transform=None) -> np.ndarray:
    """x T of every row, float64 (N, n): ``transform`` None (identity), an (n, n) matrix, or a
    :class:`torq_ref.model.Transform` (TQ-2.19)."""
    if transform is None:
        return X
    if hasattr(transform, "materialize"):
        return np.asarray(transform.materialize(X.shape[1]).apply(X), dtype=np.float64)
    M = np.asarray(transform, dtype=np.float64)
    if M.shape != (X.shape[1], X.shape[1]):
        raise ValueError(f"transform matrix has shape {M.shape}, the rows need ({X.shape[1]}, {X.shape[1]})")
    return X @ M


def limit_nmse(X, transform=None, *, block_size: int = 32) -> Limit:
    """The three NMSEs (a) floor, (b) best E8M0, (c) best real scale of the rows ``X`` (N, n)
    after ``transform`` (see :func:`transformed`) (TQ-2.19)."""
    Y = transformed(check_rows(X, block_size), transform)                     # (N, n)
    b = e8m0_errors(Y, block_size)[0].sum()           # first: it refuses blocks above the E8M0 range
    ref = float(np.sum(Y * Y))
    a = floor_errors(Y, block_size).sum() / ref
    b = b / ref
    c = real_scale_errors(_blocks(Y, block_size))[0].sum() / ref
    return Limit(floor=float(a), e8m0=float(b), real=float(c))


# ---------------------------------------------------------------------- the command (TQ-2.20)
KINDS = ("qkv", "o", "gate_up", "down")


def run_limit(*, model: str = "smollm2-135m", calib_windows: int = 4, micro_rows: int = 1024,
              layers=None, progress: bool | None = None) -> str:
    """``experiment limit`` (TQ-2.20): calibrate ``model`` as the run does
    (:func:`torq_ref.experiments.capture.run_calibration`), and on the held-out rows
    ``micro_rows .. 2 * micro_rows - 1`` of every site the three NMSEs of the raw rows and of the
    rows after the 32-block Hadamard; the markdown report."""
    import sys

    from .capture import run_calibration

    if progress is None:
        progress = sys.stderr.isatty()
    mdl, cap, note = run_calibration(model, calib_windows, micro_rows, progress)
    layers = list(range(mdl.config.num_layers)) if layers is None else list(layers)
    rows = {(i, site): limit_rows(cap.inputs(i, site), micro_rows) for i in layers for site in KINDS}
    note += (f"; figures on rows {micro_rows}..{2 * micro_rows - 1} of every site (held out: the micro "
             f"step fits rows 0..{micro_rows - 1}). Made by `python -m torq_ref experiment limit --model "
             f"{model} --calib-windows {calib_windows} --micro-rows {micro_rows} --layers "
             f"{' '.join(map(str, layers))}` (torq-ref {_version()})")
    return render_limit(model, note, layers, rows)


def _version() -> str:
    """torq_ref's version, for the line that says how a report was made."""
    import torq_ref

    return torq_ref.__version__


def limit_rows(X: np.ndarray, micro_rows: int) -> dict[str, Limit]:
    """{"raw": Limit, "hadamard": Limit} of one site's held-out rows ``X[micro_rows:]`` (TQ-2.20)."""
    from torq_ref.rotations.baselines import block_hadamard

    held = np.asarray(X, dtype=np.float64)[micro_rows:]
    if len(held) == 0:
        raise ValueError(f"{len(X)} calibration rows at the site, none held out after micro_rows={micro_rows}")
    return {"raw": limit_nmse(held), "hadamard": limit_nmse(held, block_hadamard(held.shape[1], 32))}


def render_limit(model: str, note: str, layers, rows: dict) -> str:
    """The markdown table of TQ-2.20: per site kind, the means over ``layers`` of the NMSEs."""
    def mean(kind, view, field):
        return float(np.mean([getattr(rows[(i, kind)][view], field) for i in layers]))

    lines = [f"# How far from the limit: MXFP4 scale choices per site kind ({model})", "",
             f"Source: {note}.", "",
             "NMSE of E2M1 with one scale per 32-block (spec/TQ.md TQ-2.19), mean over layers "
             f"{layers[0]}..{layers[-1]}: (a) the OCP FLOOR scale, (b) the best E8M0 scale of FLOOR's "
             "code -1..+2 per block, (c) the best real scale per block (exact). "
             "'closed' is (a - b) / (a - c): the part of the gap the best power-of-two scale closes; "
             "'H closes' is (a_raw - a_H) / (a_raw - c_raw): the part of the raw rows' gap that the "
             "32-block Hadamard closes under FLOOR.", "",
             "| site | raw (a) | raw (b) | raw (c) | raw closed | H (a) | H (b) | H (c) | H closed | H closes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for kind in KINDS:
        r = [mean(kind, "raw", f) for f in ("floor", "e8m0", "real")]
        h = [mean(kind, "hadamard", f) for f in ("floor", "e8m0", "real")]
        lim_r, lim_h = Limit(*r), Limit(*h)
        lines.append(f"| {kind} | " + " | ".join(f"{v:.5f}" for v in r) + f" | {lim_r.closed(r[1]):.3f} | "
                     + " | ".join(f"{v:.5f}" for v in h) + f" | {lim_h.closed(h[1]):.3f} | "
                     f"{lim_r.closed(h[0]):.3f} |")
    lines += ["", "Per layer (a / b / c):", "",
              "| layer | " + " | ".join(f"{k} raw | {k} H" for k in KINDS) + " |",
              "|---|" + "---|---|" * len(KINDS)]
    for i in layers:
        cells = []
        for kind in KINDS:
            for view in ("raw", "hadamard"):
                lim = rows[(i, kind)][view]
                cells.append(f"{lim.floor:.4f} / {lim.e8m0:.4f} / {lim.real:.4f}")
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
