"""Quantization hooks at the inputs of the linear layers (spec/FW.md section 3).

Every decoder layer has four linear-input *sites* (docs/torq-method.md section 2.3):

==========  =========================  ==================
site        linear layers fed          input width
==========  =========================  ==================
"qkv"       q_proj, k_proj, v_proj     hidden_size
"o"         o_proj                     heads * head_dim
"gate_up"   gate_proj, up_proj         hidden_size
"down"      down_proj                  intermediate_size
==========  =========================  ==================

A site may carry a :class:`SiteQuant`: an orthogonal :class:`Transform` ``T`` acting on the last
axis of row vectors, then an MX fake quantizer ``Q`` (torq_ref.mx, any element format / scale
rule) on the activations, and optionally RTN MX quantization ``Qw`` of the weights along their
input dimension in the transformed basis (or GPTQ, ``weight_quant="gptq"``, spec/TQ.md TQ-7,
which needs the site's input second moment). With ``y = x W^T`` and ``T`` orthogonal:

* folded:  ``y = Q(T(x)) . Qw(T(W))^T``              (T applied to the rows of W, once)
* online:  ``y = T^-1(Q(T(x))) . T^-1(Qw(T(W)))^T``  (or ``W`` itself when weights stay float)

Both are the same number up to float rounding (FW-3.3). Without quantization both equal ``x W^T``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import ModelError

SITES = ("qkv", "o", "gate_up", "down")
MODES = ("folded", "online")
#: how the weights of a site are quantized when ``weight_fmt`` is set (TQ-7.4)
WEIGHT_QUANTS = ("rtn", "gptq", "gpfq")


class TransformError(ModelError):
    """A transform that is not an orthogonal map of the right size."""


def _as_dense(matrix: Any, n: int) -> np.ndarray:
    """An (n, n) float64 matrix M with T(x) = x @ M, from a dense array or an object with .apply."""
    if hasattr(matrix, "apply") and not isinstance(matrix, np.ndarray):
        dense = np.asarray(matrix.apply(np.eye(n), axis=-1), dtype=np.float64)   # rows of I @ Q = Q
    else:
        dense = np.asarray(matrix, dtype=np.float64)
    if dense.shape != (n, n):
        raise TransformError(f"transform matrix has shape {dense.shape}, site width needs ({n}, {n})")
    return dense


def _check_orthogonal(m: np.ndarray, what: str, tol: float = 1e-6) -> None:
    # A probe with a few seeded random rows costs O(n^2) instead of the O(n^3) of M^T M.
    # It tests M M^T = I as a whole (every block of a per-block rotation), not the norms alone (ST-4.3).
    probe = np.random.default_rng(0).standard_normal((4, m.shape[-1]))
    err = np.abs(probe @ m @ np.swapaxes(m, -1, -2) - probe).max() if m.ndim == 2 else max(
        np.abs(probe[:, :m.shape[-1]] @ b @ b.T - probe[:, :m.shape[-1]]).max() for b in m)
    if not np.isfinite(err) or err > tol * max(1.0, np.abs(probe).max()) * np.sqrt(m.shape[-1]):
        raise TransformError(f"{what} is not orthogonal (probe error {err:.3g})")


@dataclass(frozen=True)
class Transform:
    """Orthogonal map on the last axis: ``x -> (x @ M)`` then, blockwise, ``x_b -> x_b @ R_b``.

    ``matrix``: None, a dense (n, n) array, or an object with ``.apply(x, axis=-1)`` computing
    ``x @ Q`` (e.g. the Schur-Horn GivensSequence). ``block``: None, one (b, b) rotation shared by
    all blocks, or (n / b, b, b) one per block; ``b = block_size`` (32). Applied in that order.
    """

    matrix: Any = None
    block: np.ndarray | None = None
    block_size: int = 32

    def materialize(self, n: int) -> "DenseTransform":
        """Check the parts and return the concrete map for a site of width ``n`` (FW-3.4)."""
        m = None if self.matrix is None else _as_dense(self.matrix, n)
        r = None
        if self.block is not None:
            r = np.asarray(self.block, dtype=np.float64)
            b = self.block_size
            if n % b:
                raise TransformError(f"site width {n} is not a multiple of block size {b}")
            if r.shape not in ((b, b), (n // b, b, b)):
                raise TransformError(f"block rotation has shape {r.shape}; expected ({b}, {b}) or ({n // b}, {b}, {b})")
        if m is not None:
            _check_orthogonal(m, "transform matrix")
        if r is not None:
            _check_orthogonal(r if r.ndim == 3 else r[None], "block rotation")
        return DenseTransform(n, m, r, self.block_size)


def flush_subnormals(a: np.ndarray | None) -> np.ndarray | None:
    """FW-3.6: ``a`` with every subnormal entry of its own dtype set to +0 (a copy when it has
    any; None and arrays without subnormals are returned as they are)."""
    if a is None:
        return None
    sub = (a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)
    if not sub.any():
        return a
    out = a.copy()
    out[sub] = 0
    return out


class DenseTransform:
    """A :class:`Transform` made concrete for one width ``n``: float64 arrays, with casts to the
    compute dtype cached so the per-call cost is the matmuls alone. Subnormal entries are zero in
    every dtype the arrays are held in (FW-3.6)."""

    def __init__(self, n: int, matrix: np.ndarray | None, block: np.ndarray | None, block_size: int):
        self.n, self.block_size = n, block_size
        self.matrix, self.block = flush_subnormals(matrix), flush_subnormals(block)
        self._cast: dict = {}

    def _arrays(self, dt):
        if dt not in self._cast:
            cast = lambda a: None if a is None else flush_subnormals(  # noqa: E731
                np.ascontiguousarray(a, dtype=dt))
            m, r = cast(self.matrix), cast(self.block)
            self._cast[dt] = (m, None if m is None else np.ascontiguousarray(m.T), r,
                              None if r is None else np.ascontiguousarray(np.swapaxes(r, -1, -2)))
        return self._cast[dt]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """T(x): x (..., n) -> (..., n)."""
        return self._run(x, inverse=False)

    def apply_inverse(self, x: np.ndarray) -> np.ndarray:
        """T^-1(x) = T^T(x): undo the block rotation, then the matrix."""
        return self._run(x, inverse=True)

    def _run(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        m, mt, r, rt = self._arrays(x.dtype)
        shape = x.shape
        x2 = x.reshape(-1, self.n)                                    # (T, n)
        b = self.block_size
        if not inverse and m is not None:
            x2 = x2 @ m
        if r is not None:
            rr = rt if inverse else r
            if r.ndim == 2:                                           # one rotation for all blocks
                x2 = (x2.reshape(-1, b) @ rr).reshape(-1, self.n)     # (T*n/b, b) @ (b, b)
            else:                                                     # per-block rotations
                xb = x2.reshape(-1, self.n // b, b).transpose(1, 0, 2)   # (n/b, T, b)
                x2 = (xb @ rr).transpose(1, 0, 2).reshape(-1, self.n)    # batched (T, b) @ (b, b)
        if inverse and m is not None:
            x2 = x2 @ mt
        return x2.reshape(shape)


@dataclass(frozen=True)
class SiteQuant:
    """What happens at one site: transform, then activation fake-quant, and weight RTN (FW-3.1).

    ``act_fmt`` / ``weight_fmt``: an element format name of torq_ref.mx (``"e2m1"`` for MXFP4) or
    None to leave that side in float. Scale rules are those of ``torq_ref.mx.SCALE_RULES``.
    """

    transform: Transform | None = None
    act_fmt: str | None = "e2m1"
    act_scale_rule: str = "floor"
    weight_fmt: str | None = None
    weight_scale_rule: str = "floor"
    block_size: int = 32
    weight_quant: str = "rtn"            # "rtn", "gptq" (TQ-7.4) or "gpfq" (TQ-7.6)
    gptq_damp: float = 0.01
    gptq_act_order: bool = True

    def __post_init__(self):
        if self.weight_quant not in WEIGHT_QUANTS:
            raise ModelError(f"weight_quant {self.weight_quant!r} unknown; use one of {WEIGHT_QUANTS}")


@dataclass(frozen=True, eq=False)
class QuantPlan:
    """Which sites of which layers are transformed / quantized, and how (FW-3.2).

    ``sites`` maps ``(layer, site)`` to a :class:`SiteQuant` (or None: leave that site exact);
    every other site of a layer in ``layers`` (all layers when None) gets ``default``.
    ``mode`` is ``"folded"`` or ``"online"``. A plan is immutable: the model caches the weights it
    prepares for the plan object it last saw.
    """

    default: SiteQuant | None = None
    sites: Mapping[tuple[int, str], SiteQuant | None] = field(default_factory=dict)
    mode: str = "folded"
    layers: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ModelError(f"mode {self.mode!r} unknown; use one of {MODES}")
        for key in self.sites:
            if not (isinstance(key, tuple) and len(key) == 2 and key[1] in SITES):
                raise ModelError(f"site key {key!r} must be (layer_index, one of {SITES})")

    def for_site(self, layer: int, site: str) -> SiteQuant | None:
        if (layer, site) in self.sites:
            return self.sites[(layer, site)]
        if self.layers is not None and layer not in self.layers:
            return None
        return self.default

    @classmethod
    def uniform(cls, act_fmt: str | None = "e2m1", scale_rule: str = "floor", *,
                weight_fmt: str | None = None, weight_scale_rule: str = "floor",
                transforms: Mapping[tuple[int, str], Transform] | None = None,
                mode: str = "folded", block_size: int = 32, weight_quant: str = "rtn") -> "QuantPlan":
        """Same formats everywhere; ``transforms[(layer, site)]`` where given (FW-3.2)."""
        base = SiteQuant(None, act_fmt, scale_rule, weight_fmt, weight_scale_rule, block_size, weight_quant)
        sites = {}
        for key, t in (transforms or {}).items():
            sites[key] = SiteQuant(t, act_fmt, scale_rule, weight_fmt, weight_scale_rule, block_size,
                                   weight_quant)
        return cls(default=base, sites=sites, mode=mode)


def fake_quant(x: np.ndarray, fmt: str, scale_rule: str, block_size: int) -> np.ndarray:
    """MX quantize-dequantize along the last axis with torq_ref.mx; keeps x's dtype."""
    from torq_ref import mx

    n = x.shape[-1]
    if n % block_size:
        raise ModelError(f"width {n} is not a multiple of the MX block size {block_size}")
    out = mx.quantize_dequantize(x, fmt, block_size=block_size, axis=-1, scale_rule=scale_rule)
    return np.asarray(out, dtype=x.dtype)


@dataclass
class PreparedSite:
    """A site made ready for one plan: the weight to multiply and the input map (FW-3.3)."""

    weight: np.ndarray                # (out, n) used as x' @ weight.T
    quant: SiteQuant
    transform: DenseTransform | None
    mode: str

    def input(self, x: np.ndarray) -> np.ndarray:
        """x (T, n) -> the row vectors that meet ``weight``."""
        q = self.quant
        if self.transform is not None:
            x = self.transform.apply(x)
        if q.act_fmt is not None:
            x = fake_quant(x, q.act_fmt, q.act_scale_rule, q.block_size)
        if self.transform is not None and self.mode == "online":
            x = self.transform.apply_inverse(x)
        return x


def prepare_site(weight: np.ndarray, quant: SiteQuant, mode: str,
                 moment: np.ndarray | None = None, rows: np.ndarray | None = None) -> PreparedSite:
    """Precompute the weight of a site for a plan (folding, weight RTN or GPTQ) (FW-3.3, FW-3.4).

    ``moment``: the site's second moment C (n, n) of the untransformed inputs, needed only by
    ``weight_quant="gptq"``, which uses the Hessian of the transformed inputs, D^T C D (TQ-7.4).
    ``rows``: calibration input rows (N, n) of the untransformed inputs, needed only by
    ``weight_quant="gpfq"``, which sees them transformed (X D) and, with ``act_fmt``, quantized
    as the site quantizes them (TQ-7.6)."""
    n = weight.shape[1]
    t = None if quant.transform is None else quant.transform.materialize(n)
    w = weight.astype(np.float64)
    if t is not None:
        w = t.apply(w)                                       # rows of W transformed: T(W) (out, n)
    if quant.weight_fmt is not None and quant.weight_quant == "gptq":
        from torq_ref.quant import gptq_quantize, transformed_hessian

        if moment is None:
            raise ModelError("weight_quant='gptq' needs the site's input second moment (moment=...)")
        if np.shape(moment) != (n, n):
            raise ModelError(f"moment has shape {np.shape(moment)}; the site width needs ({n}, {n})")
        w = gptq_quantize(w, transformed_hessian(moment, t), fmt=quant.weight_fmt,
                          scale_rule=quant.weight_scale_rule, block_size=quant.block_size,
                          damp=quant.gptq_damp, act_order=quant.gptq_act_order)
    elif quant.weight_fmt is not None and quant.weight_quant == "gpfq":
        from torq_ref.quant import gpfq_quantize

        if rows is None:
            raise ModelError("weight_quant='gpfq' needs the site's calibration input rows (rows=...)")
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, np.shape(rows)[-1])
        if rows.shape[1] != n:
            raise ModelError(f"rows have {rows.shape[1]} channels; the site width is {n}")
        xt = rows if t is None else t.apply(rows)                       # (N, n) transformed inputs
        xq = xt if quant.act_fmt is None else fake_quant(xt, quant.act_fmt, quant.act_scale_rule,
                                                          quant.block_size)
        w = gpfq_quantize(w, xt, xq, fmt=quant.weight_fmt, scale_rule=quant.weight_scale_rule,
                          block_size=quant.block_size)
    elif quant.weight_fmt is not None:
        w = fake_quant(w, quant.weight_fmt, quant.weight_scale_rule, quant.block_size)
    if t is not None and mode == "online":
        w = t.apply_inverse(w) if quant.weight_fmt is not None else weight.astype(np.float64)
    return PreparedSite(np.ascontiguousarray(w, dtype=weight.dtype), quant, t, mode)
