"""The methods of the TORQ evaluation table and how each builds its per-site transforms (spec/TQ.md).

Every method maps a site's calibration data to an orthogonal :class:`torq_ref.model.Transform`
(or None for no transform). A site is one linear-layer input of one decoder layer
("qkv", "o", "gate_up", "down"); its calibration data are the second moment C (n, n) and a sample
of input rows X (N, n) of the full-precision model on the calibration windows.

==================  ==============================================================  =========
method              transform of the site input x (row vector) before MX quantization  clause
==================  ==============================================================  =========
fp32                no quantization at all                                            TQ-2.1
rtn                 none (plain MXFP4 round to nearest)                               TQ-2.1
random-orthogonal   x @ Q, Q Haar-random (seeded per site; QuaRot style)              TQ-2.2
hadamard32          x_b @ H32 in every 32-block (BRQ / MR-GPTQ style)                 TQ-2.2
torq-macro          x @ M, M = macro_rotation(C) (inter-block, Schur-Horn based)       TQ-2.3
torq-micro          x_b @ R, R = maxent_rotation(X) (intra-block, max entropy)        TQ-2.4
torq                x @ B then x_b @ R', B the 32-block Hadamard: equals torq-micro     TQ-2.5
torq-maxent         x_b @ R, R = maxent_rotation(X), no scale step (ablation)          TQ-2.12
smoothrot           scale step, then x_b @ H32 (SmoothRot, no fitted rotation)        TQ-2.8
duquant             scale step, then ((x R1) P) R2 (DuQuant, 32-blocks, zig-zag P)    TQ-2.9
mr-gptq             x_b @ H32, weights by GPTQ at W4A4 (MR-GPTQ)                      TQ-2.10
torq-learned        scale step, then x_b @ R, R trained on the site's output error    TQ-2.18
==================  ==============================================================  =========
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

# SEED_FREE_METHODS: the methods whose transforms never depend on --seed (TQ-4.8); the seed-spread
# reader below this package owns the list, re-exported here with the other method lists
from torq_ref.evaluate.seed_spread import SEED_FREE_METHODS  # noqa: F401
from torq_ref.errors import UserError
from torq_ref.model.hooks import SITES

METHODS = ("fp32", "rtn", "random-orthogonal", "hadamard32", "torq-macro", "torq-micro", "torq",
           "smoothrot", "duquant", "mr-gptq", "torq-maxent", "torq-learned")
#: methods that equal another method of METHODS by construction (TQ-2.5): never two rows of the
#: same method in one table
SAME_AS = {"torq-micro": "torq"}
#: the methods of a plain ``run``: one row per distinct method (``torq-maxent`` is an ablation row,
#: asked for by name or preset; ``torq-micro`` is ``torq``, TQ-2.5; ``torq-learned`` is an
#: experiment row, TQ-2.18)
DEFAULT_METHODS = tuple(m for m in METHODS if m not in ("torq-maxent", "torq-learned", *SAME_AS))
#: named method lists for ``--methods`` (TQ-2.12): the ablation of TORQ's levels and scale step,
#: each a distinct method
METHOD_PRESETS = {"ablation": ("fp32", "hadamard32", "torq-macro", "smoothrot", "torq-maxent",
                               "torq-micro")}
#: methods that start with the scale step (TQ-2.7): TORQ's micro level, the smoothing peers
#: with the same alpha rule (TQ-2.8, TQ-2.9) and torq-learned (TQ-2.18)
SCALED_METHODS = ("torq-micro", "torq", "smoothrot", "duquant", "torq-learned")
SETTINGS = ("W16A4", "W4A4")
#: weight quantizers of the W4A4 rows (TQ-7.4)
WEIGHT_QUANTS = ("rtn", "gptq", "gpfq")
#: what the NMSE term of the micro objective measures (TQ-2.14)
MICRO_OBJECTIVES = ("activation", "output")
#: the fit guard of torq's micro rotation (TQ-2.22): "off" keeps every fit, "output" keeps a fit
#: only if it lowers the held-out calibration output error against its start
FIT_GUARDS = ("off", "output")
#: methods whose W4A4 weights are always GPTQ (TQ-2.10)
GPTQ_METHODS = ("mr-gptq",)


class SettingsError(UserError, ValueError):
    """Bad settings for the TORQ pipeline, reported before any long work."""


@dataclass(frozen=True)
class TorqConfig:
    """Knobs of the pipeline (defaults are the ones spec/TQ.md justifies). The exploration
    variants (the other composition orders and macro strategies of the full method, one rotation
    per block, a per-site alpha grid) are not knobs of the core: torq_ref.experiments.variants
    wraps this dispatch to run them (TQ-2.16)."""

    macro_strategy: str = "block_hadamard_schur_horn"
    beta: float | None = None            # None: torq_ref.rotations.maxent.DEFAULT_BETA
    holdout: float = 0.25
    max_sweeps: int | None = 2           # micro optimizer sweeps (held-out early stopping inside)
    micro_rows: int = 1024               # calibration rows per site given to the micro optimizer
    scale_alpha: float = 0.5             # micro-level scale step exponent, 0 = off (TQ-2.7)
    scale_sites: tuple = ("qkv", "gate_up")  # the sites the scale step scales (TQ-2.17)
    micro_objective: str = "activation"  # "activation" or "output": NMSE weighted by W (TQ-2.14)
    fit_guard: str = "off"               # "off" or "output": keep a fit only if it helps (TQ-2.22)
    random_per_layer: bool = True        # False (--quick): one Haar matrix per site kind (TQ-2.2)
    weight_quant: str = "rtn"            # W4A4 weights: "rtn", "gptq" (TQ-7.4) or "gpfq" (TQ-7.6)
    weight_scale_rule: str | None = None # W4A4 weights' scale rule; None: scale_rule (TQ-7.7)
    gptq_damp: float = 0.01              # GPTQ dampening, share of mean(diag H) (TQ-7.1)
    gptq_act_order: bool = True          # GPTQ columns by decreasing H_jj (TQ-7.1)
    duquant_steps: int = 16              # greedy steps per DuQuant block rotation (TQ-2.9)
    quant_sites: tuple = SITES           # the site kinds whose inputs (and weights) are quantized (TQ-2.15)
    block_size: int = 32
    scale_rule: str = "floor"
    fmt: str = "e2m1"
    seed: int = 0


def weight_quant_of(method: str, cfg: TorqConfig) -> str:
    """How a W4A4 row of ``method`` quantizes its weights: "gptq" for mr-gptq (TQ-2.10), else
    ``cfg.weight_quant`` (``--weight-quant``, TQ-7.4)."""
    return "gptq" if method in GPTQ_METHODS else cfg.weight_quant


def parse_list(text: str | None, allowed: tuple[str, ...], what: str, *, default=None,
               presets: dict | None = None) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'), checking every name against ``allowed`` (TQ-4.2); None gives
    ``default`` (``allowed`` when not given); a name of ``presets`` expands to its list."""
    if text is None:
        return allowed if default is None else default
    items = []
    for s in (s.strip() for s in text.split(",")):
        items.extend((presets or {}).get(s, (s,)) if s else ())
    items = tuple(dict.fromkeys(items))
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise SettingsError(f"unknown {what} {bad or text!r}; choose from {', '.join(allowed)}")
    return items


#: the "layer" seeding the one Haar matrix per site kind that --quick shares across layers
_ALL_LAYERS = 2**20


def site_seed(seed: int, layer: int, site: str) -> int:
    """The seed of one site's random draws, derived from the run seed only (TQ-4.5: same seed,
    same transforms)."""
    return int(np.random.SeedSequence([seed, layer, SITES.index(site)])
               .generate_state(1)[0])


def macro_transform(C: np.ndarray, cfg: TorqConfig):
    from torq_ref.rotations.inter_block import macro_rotation

    return macro_rotation(C, strategy=cfg.macro_strategy, block_size=cfg.block_size, seed=cfg.seed)


def output_block_exponents(W: np.ndarray, block_size: int) -> np.ndarray:
    """k (n / block_size,) ints of TQ-2.14: block b of the micro step's rows is multiplied by 2^k_b
    so that its quantization error counts in the NMSE term about as much as it counts in the layer
    output, w_b = ||W[:, block b]||_F^2 (rotation-invariant inside the block): k_b = the integer
    nearest to log4(w_b / geomean(w)), clipped to [-8, 8]; blocks with w_b = 0 get the floor -8."""
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[1]
    if n % block_size:
        raise SettingsError(f"weight of {n} input channels is not a multiple of the block size {block_size}")
    w = np.einsum("ij,ij->j", W, W).reshape(n // block_size, block_size).sum(axis=1)   # (nb,)
    live = w > 0
    if not live.any():
        return np.zeros(len(w), dtype=np.int64)
    logw = np.full(len(w), -np.inf)
    logw[live] = np.log2(w[live])
    k = np.round(0.5 * (logw - np.mean(logw[live])))
    return np.clip(np.where(live, k, -8), -8, 8).astype(np.int64)


def weighted_rows(X: np.ndarray, k: np.ndarray, block_size: int) -> np.ndarray:
    """X (T, n) with block b multiplied by 2^k_b (exact: ldexp), so every block keeps its E2M1
    codes and its squared error is weighted by 4^k_b (TQ-2.14)."""
    T, n = X.shape
    Y = np.ldexp(np.asarray(X, dtype=np.float64).reshape(T, n // block_size, block_size),
                 k[None, :, None])
    return Y.reshape(T, n).astype(X.dtype)


def micro_rotation(X: np.ndarray, cfg: TorqConfig, seed: int, init: str = "hadamard", weight=None,
                   per_block: bool = False):
    """The micro rotation fitted on ``X[:micro_rows]``; with ``cfg.micro_objective == "output"``
    and the consuming ``weight`` (out, n) the rows are first weighted block by block (TQ-2.14).
    ``per_block`` (one rotation per block) is for the experiments' variants only (TQ-2.16)."""
    from torq_ref.rotations.maxent import maxent_rotation

    kwargs = {}
    if cfg.beta is not None:
        kwargs["beta"] = cfg.beta
    if cfg.max_sweeps is not None:
        kwargs["max_sweeps"] = cfg.max_sweeps
    rows = X[: cfg.micro_rows]
    if cfg.micro_objective == "output":
        if weight is None:
            raise SettingsError("micro_objective 'output' needs the site's weight")
        rows = weighted_rows(rows, output_block_exponents(weight, cfg.block_size), cfg.block_size)
    elif cfg.micro_objective != "activation":
        raise SettingsError(f"unknown micro objective {cfg.micro_objective!r}; choose from {', '.join(MICRO_OBJECTIVES)}")
    R, report = maxent_rotation(rows, block_size=cfg.block_size, holdout=cfg.holdout, seed=seed,
                                per_block=per_block, init=init, **kwargs)
    return R, report


def site_transform(method: str, layer: int, site: str, C: np.ndarray, X: np.ndarray | None,
                   cfg: TorqConfig, cache: dict | None = None, weight: np.ndarray | None = None):
    """(Transform or None, info dict) of ``method`` for one site (TQ-2.x). ``weight`` (out, n):
    the weight that consumes the site, as the method's model has it (needed by TQ-2.14).

    ``cache`` (optional) keeps the micro rotation fitted on a site's rows, which ``torq-micro``
    and ``torq`` share (TQ-2.5): the same fit is never run twice."""
    from torq_ref.model import Transform
    from torq_ref.rotations import baselines

    n = C.shape[0]
    b = cfg.block_size
    info: dict = {}
    if method in ("fp32", "rtn"):
        return None, info
    if method == "random-orthogonal":
        if cfg.random_per_layer:
            q = baselines.random_orthogonal(n, seed=site_seed(cfg.seed, layer, site))
        else:                                         # --quick: one per site kind, shared
            q = _shared_haar(n, site_seed(cfg.seed, _ALL_LAYERS, site))
        return Transform(matrix=q, block_size=b), info
    if method in ("hadamard32", "smoothrot", "mr-gptq"):
        # smoothrot: the scale step (applied by the caller, SCALED_METHODS) then this (TQ-2.8);
        # mr-gptq: this, with GPTQ weights at W4A4 (TQ-2.10)
        return Transform(block=baselines.sylvester_hadamard(b), block_size=b), info
    if method == "duquant":
        from .duquant import duquant_transform

        return duquant_transform(X[: cfg.micro_rows], b, cfg.duquant_steps,
                                 site_seed(cfg.seed, layer, site)), info
    if method == "torq-macro":
        return Transform(matrix=macro_transform(C, cfg), block_size=b), info
    if method in ("torq-micro", "torq-maxent"):
        # the same fit on different rows: smoothed (torq-micro) or raw (torq-maxent, TQ-2.12)
        R, info["micro"] = _raw_micro(layer, site, X, cfg, cache, tag=method, weight=weight)
        if method == "torq-micro":                    # torq's fit, guarded as torq's (TQ-2.5, TQ-2.22)
            R, guard = _guarded(layer, site, R, X, weight, cfg, cache)
            if guard is not None:
                info["fit_guard"] = guard
        return Transform(block=R, block_size=b), info
    if method == "torq-learned":
        R, info["learned"] = learned_transform(layer, site, X, weight, cfg)
        return Transform(block=R, block_size=b), info
    if method == "torq":
        # block Hadamard B, then R' fitted on X B from the identity: B (I (x) R') = I (x) (H R'),
        # and H R' is exactly the micro fit of the same rows from the Hadamard start, torq-micro's
        # fit (TQ-2.5): the two methods share it
        R, info["micro"] = _raw_micro(layer, site, X, cfg, cache, weight=weight)
        R, guard = _guarded(layer, site, R, X, weight, cfg, cache)
        if guard is not None:
            info["fit_guard"] = guard
        return Transform(block=R, block_size=b), info
    raise SettingsError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def block_output_error(X: np.ndarray, R: np.ndarray, W: np.ndarray, cfg: TorqConfig) -> float:
    """The relative layer-output error of TQ-2.22, in float64, of the block rotation R (b, b)
    applied to every block of the rows X (T, n) consumed by W (out, n):

        L = sum_t ||(Q(x_t T) T^T - x_t) W^T||^2 / sum_t ||x_t W^T||^2

    with T = I (x) R and Q the run's MXFP4 fake quantizer (cfg.fmt, cfg.block_size,
    cfg.scale_rule). A ratio of sums over the rows; 0 when x W^T is 0 on every row."""
    from torq_ref import mx

    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    T, n = X.shape
    b = cfg.block_size
    if n % b or R.shape != (b, b) or W.shape[1] != n:
        raise SettingsError(f"fit guard: rows {X.shape}, block rotation {R.shape} and weight {W.shape} "
                            f"do not fit blocks of {b}")
    Xt = (X.reshape(T, n // b, b) @ R).reshape(T, n)                           # (T, n) x T
    Xq = mx.quantize_dequantize(Xt, cfg.fmt, block_size=b, scale_rule=cfg.scale_rule)
    back = (Xq.reshape(T, n // b, b) @ R.T).reshape(T, n)                      # Q(x T) T^T
    err = (back - X) @ W.T                                                     # (T, out)
    ref = X @ W.T
    den = float(np.sum(ref * ref))
    return float(np.sum(err * err)) / den if den > 0 else 0.0


def fit_guard(R_fit: np.ndarray, R_start: np.ndarray, held_out: np.ndarray, W: np.ndarray,
              cfg: TorqConfig) -> tuple[np.ndarray, dict]:
    """(R, record) of TQ-2.22: the fitted block rotation R_fit if its output error
    :func:`block_output_error` on the held-out calibration rows ``held_out`` is lower than that of
    its start R_start, else R_start (ties keep the start). ``record``: both errors and the choice
    ("fit" or "start")."""
    if W is None:
        raise SettingsError("fit_guard 'output' needs the site's weight")
    L_fit = block_output_error(held_out, R_fit, W, cfg)
    L_start = block_output_error(held_out, R_start, W, cfg)
    kept = "fit" if L_fit < L_start else "start"
    return (R_fit if kept == "fit" else R_start), {"L_fit": L_fit, "L_start": L_start, "kept": kept,
                                                   "rows": int(len(held_out))}


def _guarded(layer: int, site: str, R: np.ndarray, X: np.ndarray, weight, cfg: TorqConfig,
             cache: dict | None):
    """(R, record or None): torq's micro fit R passed through the fit guard of TQ-2.22 when
    ``cfg.fit_guard == "output"`` (start: the 32 x 32 Hadamard, smoothrot's transform; rows: the
    held-out calibration rows ``X[micro_rows:]``, held_out_rows), memoized per site in
    ``cache`` like the fit it judges; (R, None) with the guard off."""
    if cfg.fit_guard == "off":
        return R, None
    if cfg.fit_guard != "output":
        raise SettingsError(f"unknown fit guard {cfg.fit_guard!r}; choose from {', '.join(FIT_GUARDS)}")
    from torq_ref.rotations import baselines

    def judge():
        return fit_guard(R, baselines.sylvester_hadamard(cfg.block_size), held_out_rows(X, cfg), weight, cfg)

    return _memo(cache, ("fit_guard", layer, site), judge)


def learned_transform(layer: int, site: str, X: np.ndarray, weight, cfg: TorqConfig):
    """(R, summary) of ``torq-learned`` (TQ-2.18): the 32 x 32 block rotation trained on the
    site's output error (spec/ME.md section 6, ME-6.1) on the first ``micro_rows`` scaled rows, from the
    block Hadamard, with the held-out fraction ``cfg.holdout`` and the site's seed."""
    from torq_ref.rotations.learned import learned_rotation

    if weight is None:
        raise SettingsError("torq-learned needs the site's weight")
    R, rep = learned_rotation(X[: cfg.micro_rows], weight, block_size=cfg.block_size, init="hadamard",
                              holdout=cfg.holdout, seed=site_seed(cfg.seed, layer, site),
                              fmt=cfg.fmt, scale_rule=cfg.scale_rule)
    summary = {"stop_reason": rep.stop_reason, "best_step": int(rep.best_step),
               "steps": len(rep.steps) - 1, "initial": _plain(rep.initial), "final": _plain(rep.final),
               "seconds": float(rep.seconds)}
    return R, summary


@functools.lru_cache(maxsize=8)
def _shared_haar(n: int, seed: int) -> np.ndarray:
    """The Haar matrix of --quick shared by every layer of a site kind, memoized per process by
    (width, seed): the key is everything it depends on, so the memo gives the same matrix in any
    process and in any order of the work units (TQ-6.6). Read-only."""
    from torq_ref.rotations import baselines

    q = baselines.random_orthogonal(n, seed=seed)
    q.setflags(write=False)
    return q


def _memo(cache: dict | None, key, make):
    """``make()``, kept in ``cache`` under ``key`` when a cache is given."""
    if cache is None:
        return make()
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _raw_micro(layer: int, site: str, X: np.ndarray, cfg: TorqConfig, cache: dict | None,
               tag: str = "torq-micro", weight=None):
    """The micro rotation of a site's rows (Hadamard start), memoized in ``cache``. ``tag`` names
    the rows: the methods that share a tag fit the same rows (torq-micro and torq: the smoothed
    rows; torq-maxent: the raw rows), so a fit is never reused for other rows."""
    def fit():
        R, rep = micro_rotation(X, cfg, site_seed(cfg.seed, layer, site), "hadamard", weight)
        return R, report_summary(rep)

    return _memo(cache, ("micro", tag, layer, site), fit)


def report_summary(rep) -> dict:
    """The JSON-friendly part of a MaxentReport: why it stopped and the metrics it moved."""
    return {"stop_reason": rep.stop_reason, "best_sweep": int(rep.best_sweep),
            "sweeps": len(rep.sweeps), "initial": _plain(rep.initial), "final": _plain(rep.final),
            "seconds": float(rep.seconds)}


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v)
            for k, v in d.items() if isinstance(v, (int, float, str, np.floating, np.integer))}


def held_out_rows(X: np.ndarray, cfg: TorqConfig) -> np.ndarray:
    """The rows of a site sample the micro step never saw (TQ-6.2): ``X[micro_rows:]`` (the site
    metrics and the fit guard of TQ-2.22 read them; engine.py imports it from here)."""
    if len(X) <= cfg.micro_rows:
        raise SettingsError(f"{len(X)} calibration rows at a site, need more than micro_rows={cfg.micro_rows}")
    return X[cfg.micro_rows:]
