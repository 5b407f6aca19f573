"""Exploration variants of the TORQ table, kept out of the core pipeline (spec/TQ.md TQ-2.16).

The core ``run`` has one way to compose TORQ (block Hadamard, then the micro fit: TQ-2.5), one
micro rotation for all blocks of a site (TQ-2.4) and one alpha for the scale step (TQ-2.7). The
variants that were measured against those choices live here, as a :class:`Variant` that wraps the
core method dispatch (:func:`torq_ref.torq.methods.site_transform`) and the engine's scale step,
and runs through the same engine (``python -m torq_ref experiment torq-variant``):

* ``order="micro-macro"``: the full method fits R first, then the Schur-Horn Q that equalizes the
  block energies of the micro-rotated second moment: x -> ((x_b @ R) ...) @ Q (TQ-2.5);
* ``full_macro_strategy``: the macro level of the full method, any strategy of
  :data:`torq_ref.rotations.inter_block.STRATEGIES` (core: ``block_hadamard``); the micro step
  after it starts from the identity when the strategy contains the 32-block Hadamard (H H = I);
* ``per_block``: one micro rotation per 32-block instead of one per site (spec/ME.md ME-3.8);
* ``alpha_grid``: the scale step's alpha chosen per site from a grid by the calibration output
  error (TQ-2.11), instead of the one alpha of ``--scale-alpha``.

The default :class:`Variant` is the core dispatch: same transforms, same numbers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from torq_ref.torq.engine import Dispatch
from torq_ref.torq.methods import (SettingsError, TorqConfig, macro_transform, micro_rotation,
                                   report_summary, site_seed, site_transform)

ORDERS = ("macro-micro", "micro-macro")
#: the alphas ``--alpha-grid auto`` chooses from, per site (TQ-2.11)
ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: macro strategies that already end in (or contain) the 32-block Hadamard; the micro step after
#: them starts from the identity, since a second Hadamard would undo the first (H H = I)
_MACRO_WITH_BLOCK_HADAMARD = ("block_hadamard", "block_hadamard_schur_horn", "schur_horn_block_hadamard")


@dataclass(frozen=True)
class Variant:
    """The exploration knobs (TQ-2.16); the defaults are the core's behaviour."""

    order: str = "macro-micro"                    # composition of the full method (TQ-2.5)
    full_macro_strategy: str = "block_hadamard"   # the macro level of the full method (TQ-2.5)
    per_block: bool = False                       # one micro rotation per block (ME-3.8)
    alpha_grid: tuple | None = None               # per-site alpha from this grid (TQ-2.11)

    def __post_init__(self):
        from torq_ref.rotations.inter_block import STRATEGIES

        if self.order not in ORDERS:
            raise SettingsError(f"unknown order {self.order!r}; choose from {', '.join(ORDERS)}")
        if self.full_macro_strategy not in STRATEGIES:
            raise SettingsError(f"unknown macro strategy {self.full_macro_strategy!r}; choose from "
                                f"{', '.join(STRATEGIES)}")
        if self.alpha_grid is not None and not self.alpha_grid:
            raise SettingsError("the alpha grid is empty")

    def dispatch(self) -> Dispatch:
        """The engine dispatch of this variant: the core one with the variant's transforms and
        scale step, its knobs recorded in results.json settings under ``variant``."""
        return Dispatch(site_transform=self.site_transform,
                        layer_scales=self.layer_scales if self.alpha_grid else None,
                        scale_step=bool(self.alpha_grid), settings={"variant": asdict(self)})

    # ------------------------------------------------------------------ the method dispatch
    def site_transform(self, method: str, layer: int, site: str, C: np.ndarray, X: np.ndarray | None,
                       cfg: TorqConfig, cache: dict | None = None, weight: np.ndarray | None = None):
        """:func:`torq_ref.torq.methods.site_transform` with this variant's ``torq``, ``torq-micro``
        and ``torq-maxent``; every other method is the core's."""
        from torq_ref.model import Transform

        b = cfg.block_size
        info: dict = {}
        if method in ("torq-micro", "torq-maxent") and self.per_block:
            R, info["micro"] = self._micro(method, layer, site, X, cfg, cache, weight)
            return Transform(block=R, block_size=b), info
        if method != "torq" or (self.order, self.full_macro_strategy) == ("macro-micro", "block_hadamard"):
            if method == "torq" and self.per_block:
                R, info["micro"] = self._micro("torq-micro", layer, site, X, cfg, cache, weight)
                return Transform(block=R, block_size=b), info
            return site_transform(method, layer, site, C, X, cfg, cache, weight=weight)
        n = C.shape[0]
        if self.order == "micro-macro":
            # micro first (Hadamard start, on the site's rows), then the inter-block Schur-Horn
            # equalization of the micro-rotated second moment: x -> ((x_b @ R) ...) @ Q
            from torq_ref.rotations.schur_horn import schur_horn

            R, info["micro"] = self._micro("torq-micro", layer, site, X, cfg, cache, weight)
            BR = np.kron(np.eye(n // b), R) if R.ndim == 2 else _block_diag(R)   # (n, n)
            Q = schur_horn(BR.T @ C @ BR)
            return Transform(matrix=Q.apply(BR), block_size=b), info
        M = macro_transform(C, replace(cfg, macro_strategy=self.full_macro_strategy))
        init = "identity" if self.full_macro_strategy in _MACRO_WITH_BLOCK_HADAMARD else "hadamard"
        WM = None if weight is None else M.apply(np.asarray(weight, dtype=np.float64))   # (out, n): W M
        R, rep = micro_rotation(M.apply(X[: cfg.micro_rows]), cfg, site_seed(cfg.seed, layer, site), init, WM,
                                per_block=self.per_block)
        info["micro"] = report_summary(rep)
        return Transform(matrix=M, block=R, block_size=b), info

    def _micro(self, tag: str, layer: int, site: str, X, cfg: TorqConfig, cache: dict | None, weight):
        """The micro fit of a site's rows from the Hadamard start with this variant's
        ``per_block``, memoized per (tag, layer, site) like the core's."""
        key = ("variant-micro", self.per_block, tag, layer, site)
        if cache is not None and key in cache:
            return cache[key]
        R, rep = micro_rotation(X, cfg, site_seed(cfg.seed, layer, site), "hadamard", weight,
                                per_block=self.per_block)
        out = (R, report_summary(rep))
        if cache is not None:
            cache[key] = out
        return out

    # ------------------------------------------------------------------ the scale step
    def layer_scales(self, model, i: int, site: str, cap, cfg: TorqConfig):
        """(s, info) of the scale step at one RMSNorm-fed site of layer i with ``alpha_grid``: the
        per-site choice of TQ-2.11 on the rows the micro step fits (the held-out rows of the site
        metrics are not used); without a grid the core's fixed alpha."""
        from torq_ref.torq.engine import layer_scales
        from torq_ref.torq.scale_step import NORM_OF_SITE, channel_scales

        if site not in NORM_OF_SITE:                    # the grid is for qkv, gate_up only (TQ-2.11)
            return layer_scales(model, i, site, cap, cfg)
        if not self.alpha_grid:
            return layer_scales(model, i, site, cap, cfg)
        C = cap.moment(i, site)
        X = cap.inputs(i, site)[: cfg.micro_rows]
        alpha, losses = choose_alpha(C, X, model.layers[i].site_weight(site), self.alpha_grid,
                                     block_size=cfg.block_size, fmt=cfg.fmt, scale_rule=cfg.scale_rule)
        return channel_scales(C, alpha), {"alpha": alpha, "losses": {str(a): v for a, v in losses.items()}}


def _block_diag(R: np.ndarray) -> np.ndarray:
    """(n, n) block-diagonal matrix of per-block rotations R (nb, B, B)."""
    nb, B, _ = R.shape
    out = np.zeros((nb * B, nb * B))
    for k in range(nb):
        out[k * B:(k + 1) * B, k * B:(k + 1) * B] = R[k]
    return out


def smoothed_output_error(X: np.ndarray, s: np.ndarray, W: np.ndarray, *, block_size: int = 32,
                          fmt: str = "e2m1", scale_rule: str = "floor") -> float:
    """The calibration loss of one scale vector s at a site (TQ-2.11): the mean over tokens of

        || (s * Q((x / s) B) B^T - x) W^T ||^2 / || x W^T ||^2

    with B the 32-block Hadamard and Q the MXFP4 fake quantizer, i.e. the relative error of the
    layer output when the site's input is smoothed by s, rotated by B, quantized, and the consuming
    weight is W s (folded). ``X`` (T, n) calibration rows, ``W`` (out, n) the consuming weight."""
    from torq_ref.rotations.baselines import block_hadamard
    from torq_ref.torq.macro import output_error

    X = np.asarray(X, dtype=np.float64)
    n = X.shape[1]
    if n % block_size:
        raise ValueError(f"site width {n} is not a multiple of the block size {block_size}")
    # the smoothed rows x / s through the folded weight W s: (x / s)(W s)^T = x W^T (TQ-5.1's proxy)
    return output_error(X / s, block_hadamard(n, block_size), np.asarray(W, dtype=np.float64) * s[None, :],
                        fmt=fmt, scale_rule=scale_rule, block_size=block_size)


def choose_alpha(C: np.ndarray, X: np.ndarray, W: np.ndarray, grid=ALPHA_GRID, **quant) -> tuple[float, dict]:
    """(alpha, {alpha: loss}) of one site (TQ-2.11): the alpha of ``grid`` whose scales
    ``channel_scales(C, alpha)`` give the smallest :func:`smoothed_output_error` on the calibration
    rows ``X``; ties go to the earlier grid entry."""
    from torq_ref.torq.scale_step import channel_scales

    grid = tuple(float(a) for a in grid)
    if not grid:
        raise ValueError("the alpha grid is empty")
    losses = {a: smoothed_output_error(X, channel_scales(C, a), W, **quant) for a in grid}
    best = min(grid, key=lambda a: (losses[a], grid.index(a)))
    return best, losses
