"""Maximum-entropy intra-block ("micro") rotation of TORQ: the optimizer (spec/ME.md section 3;
docs/torq-method.md section 2.2).

TORQ (arXiv 2605.19561) rotates the inside of every 32-element MXFP4 block so that the FP4 codebook
is used evenly. :func:`maxent_rotation` finds an orthogonal R (block_size x block_size, shared by
every block, or one per block) that maximises, on calibration tokens,

    J(R) = H(codes of MXFP4(X R)) - beta * NMSE(X R)                        (ME-2.1)

with the exact MXFP4 quantizer (E2M1 elements, FLOOR E8M0 scale, round-to-nearest-even). The
optimizer starts from the normalised Hadamard matrix (ME-3.2) and runs Jacobi sweeps of Givens
rotations over all block_size*(block_size-1)/2 planes; each plane gets a two-stage grid search over
the angle (ME-3.3) and a move is kept only when it raises J (ME-3.4). Part of the tokens is held
out and the returned R is the sweep with the best held-out J, never with a worse held-out NMSE than
the start (ME-3.5); per_block optimizes each block on its own (ME-3.8). Same seed, same bits
(ME-3.6); a local optimum is a fixed point (ME-3.7); the report is ME-3.9, bad input ME-3.10,
the default beta ME-3.11.

The evaluation kernels (incremental per plane, ME-4) live in :mod:`.maxent_eval`; this module only
drives them.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .baselines import sylvester_hadamard
from .entropy import N_BINS, entropies_from_counts, entropy_from_counts
from .maxent_eval import (MAX_BLOCK_NORM, Kernels, MaxentInputError, apply_rotation, evaluate_fast,
                          fixed_order_energy, get_kernels, rotation_metrics)
from .synthetic import heavy_tailed_activations

__all__ = ["DEFAULT_BETA", "MaxentInputError", "MaxentReport", "SweepRecord", "apply_rotation",
           "evaluate_fast", "heavy_tailed_activations", "maxent_rotation", "rotation_metrics"]

#: Default weight of the NMSE term (bits per unit NMSE); chosen by measurement, see spec/ME.md ME-3.11.
DEFAULT_BETA = 100.0
#: Default upper bound on Jacobi sweeps (early stopping on held-out data usually ends sooner).
DEFAULT_MAX_SWEEPS = 6
#: Stage-1 angle grid (radians): 0 first, then +-pi/32 * {1/64, 1/16, 1/4, 1, 4, 8}; accepted
#: angles are mostly tiny, but +-pi/8 and +-pi/4 keep large moves reachable (ME-3.3).
THETA_STAGE1 = (math.pi / 32) * np.array(
    [0.0, 1 / 64, -1 / 64, 1 / 16, -1 / 16, 1 / 4, -1 / 4, 1.0, -1.0, 4.0, -4.0, 8.0, -8.0])
#: Stage 2 tries theta1 + f * max(|theta1|, pi/2048) for these f around the stage-1 winner theta1.
THETA_STAGE2_FACTORS = np.array([-0.5, -0.25, 0.25, 0.5])
#: Calibration block rows used by the angle search (the winner is confirmed on all rows).
DEFAULT_SEARCH_ROWS = 16384
#: Smallest improvement of J that counts as an improvement (guards against rounding noise).
ACCEPT_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

@dataclass
class SweepRecord:
    """Metrics after one sweep (sweep 0 = the initial rotation). Held-out fields are None when
    there is no held-out data."""
    sweep: int
    objective_cal: float
    entropy_cal: float
    nmse_cal: float
    objective_hold: float | None
    entropy_hold: float | None
    nmse_hold: float | None
    accepted_planes: int
    seconds: float


@dataclass
class MaxentReport:
    """What maxent_rotation did. For per_block=True, ``sweeps`` is empty and ``blocks`` holds one
    report per block; ``initial`` / ``final`` are always measured on all blocks together."""
    beta: float
    block_size: int
    per_block: bool
    backend: str
    n_cal_tokens: int
    n_hold_tokens: int
    sweeps: list[SweepRecord] = field(default_factory=list)
    best_sweep: int = 0
    stop_reason: str = ""
    initial: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    blocks: list["MaxentReport"] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------

def _as_tokens(X, name: str, block_size: int) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array (tokens x channels), got dtype {X.dtype}")
    if X.ndim < 2:
        raise MaxentInputError(f"{name} must be (tokens, channels), got shape {X.shape}")
    n = X.shape[-1]
    if n == 0 or n % block_size:
        raise MaxentInputError(
            f"{name}: last axis ({n}) is not a positive multiple of block_size ({block_size})")
    X = X.reshape(-1, n).astype(np.float64)      # (T, n)
    if not np.all(np.isfinite(X)):
        raise MaxentInputError(f"{name} holds NaN or Inf")
    norms = np.sqrt(np.sum(X.reshape(-1, block_size) ** 2, axis=1))
    if norms.size and norms.max() >= MAX_BLOCK_NORM:
        raise MaxentInputError(f"{name}: a block norm reaches 2^127; the E8M0 scale would overflow")
    return X


def _initial_rotation(init, block_size: int, n_blocks: int, per_block: bool) -> np.ndarray:
    if isinstance(init, str):
        if init == "hadamard":
            if block_size & (block_size - 1):
                raise MaxentInputError(f"init='hadamard' needs a power-of-two block_size, got {block_size}")
            r = sylvester_hadamard(block_size)
        elif init == "identity":
            r = np.eye(block_size)
        else:
            raise MaxentInputError(f"init must be 'hadamard', 'identity' or an array, got {init!r}")
        return np.broadcast_to(r, (n_blocks, block_size, block_size)).copy() if per_block else r
    r = np.asarray(init, dtype=np.float64)
    want = (n_blocks, block_size, block_size) if per_block else (block_size, block_size)
    if r.shape != want:
        raise MaxentInputError(f"init array must have shape {want}, got {r.shape}")
    eye = np.eye(block_size)
    gram = np.swapaxes(r, -1, -2) @ r
    if not np.all(np.isfinite(r)) or np.max(np.abs(gram - eye)) > 1e-10:
        raise MaxentInputError("init array is not orthogonal (R^T R != I within 1e-10)")
    return r.copy()


# --------------------------------------------------------------------------------------------
# The optimizer
# --------------------------------------------------------------------------------------------

class _Data:
    """One data set (calibration or held-out) as block rows (M, B) with its energy."""

    def __init__(self, X: np.ndarray, kern: Kernels):
        self.X = np.ascontiguousarray(X)
        self.energy = fixed_order_energy(self.X, kern.chunk)
        self.kern = kern

    def nmse(self, err_total: float) -> float:
        return err_total / self.energy if self.energy > 0 else 0.0

    def evaluate(self, R):
        """(Y, state, entropy, nmse) of the data rotated by R."""
        Y = self.kern.rotate(self.X, R)
        E, C, Err, hist, total = self.kern.full_eval(Y)
        return Y, [E, C, Err, hist], entropy_from_counts(hist), self.nmse(total)


class _State:
    """Quantized state of block rows Y (M, B): exponents E, bins C, errors Err, histogram."""

    def __init__(self, kern: Kernels, Y: np.ndarray, energy: float, full=None):
        self.kern, self.Y, self.energy = kern, Y, energy
        if full is None:
            self.E, self.C, self.Err, self.hist, _ = kern.full_eval(Y)
        else:
            self.E, self.C, self.Err = full
            self.hist = np.bincount(self.C.ravel(), minlength=N_BINS).astype(np.int64)

    def subset(self, idx: np.ndarray, energy: float) -> "_State":
        """A copy of the rows idx (their own state, updated separately)."""
        return _State(self.kern, self.Y[idx], energy, (self.E[idx], self.C[idx], self.Err[idx]))

    def prepare(self, i: int, j: int):
        """Per-plane cache: other-column max and error per row, histogram without columns i, j."""
        om, oe = self.kern.plane_prep(self.Y, self.Err, i, j)
        hbase = self.hist - np.bincount(self.C[:, i], minlength=N_BINS) \
            - np.bincount(self.C[:, j], minlength=N_BINS)
        return i, j, om, oe, hbase

    def objectives(self, plane, theta: np.ndarray, beta: float):
        """J for each angle of theta (K,), and the K histograms the angles would give."""
        i, j, om, oe, hbase = plane
        hd, err = self.kern.plane_trials(self.Y, self.E, self.C, om, oe, i, j,
                                         np.cos(theta), np.sin(theta))
        hists = hbase[None, :] + hd                                   # (K, 16)
        nm = err / self.energy if self.energy > 0 else np.zeros_like(err)
        h = entropies_from_counts(hists)
        return [h[k] - beta * float(nm[k]) for k in range(len(theta))], hists

    def rotate(self, i: int, j: int, c: float, s: float, hist: np.ndarray):
        self.kern.apply_rotation(self.Y, self.E, self.C, self.Err, i, j, c, s)
        self.hist = hist


def _search_angle(state: _State, plane, beta: float):
    """Two-stage 1-D search. Returns (best angle, J at best, J at 0, histogram at best)."""
    obj1, h1 = state.objectives(plane, THETA_STAGE1, beta)
    k1 = int(np.argmax(obj1))
    th1 = float(THETA_STAGE1[k1])
    theta2 = th1 + max(abs(th1), THETA_STAGE1[1]) * THETA_STAGE2_FACTORS
    obj2, h2 = state.objectives(plane, theta2, beta)
    k2 = int(np.argmax(obj2))
    if obj2[k2] > obj1[k1]:
        return float(theta2[k2]), obj2[k2], obj1[0], h2[k2]
    return th1, obj1[k1], obj1[0], h1[k1]


def _decide_plane(full: _State, sub: _State | None, i: int, j: int, beta: float):
    """The angle search for plane (i, j) (ME-3.3): (theta, gain of J on all calibration rows,
    histogram at theta on all rows, histogram on the search subset or None).

    With a search subset the winner is searched there and then confirmed on all rows; a subset
    search that finds no gain returns gain 0 without touching the full state."""
    if sub is None:
        theta, j_best, j_zero, h_new = _search_angle(full, full.prepare(i, j), beta)
        return theta, j_best - j_zero, h_new, None
    theta, j_best, j_zero, h_sub = _search_angle(sub, sub.prepare(i, j), beta)
    if not j_best > j_zero + ACCEPT_TOL:
        return 0.0, 0.0, None, None
    obj, hists = full.objectives(full.prepare(i, j), np.array([0.0, theta]), beta)
    return theta, obj[1] - obj[0], hists[1], h_sub


def _optimize(cal: _Data, hold: _Data | None, R0: np.ndarray, beta: float, max_sweeps: int,
              rng: np.random.Generator, patience: int, search_rows: int | None, label: str):
    """Jacobi sweeps on one rotation. Returns (R, sweep records, best sweep, stop reason)."""
    from tqdm import tqdm

    kern = cal.kern
    B = R0.shape[0]
    M = cal.X.shape[0]
    planes = [(i, j) for i in range(B) for j in range(i + 1, B)]
    use_subset = search_rows is not None and search_rows < M

    def hold_metrics(R):
        if hold is None:
            return None, None, None
        _, _, h, n = hold.evaluate(R)
        return h - beta * n, h, n

    t0 = time.perf_counter()
    R = R0.copy()
    Y, st, h_c, n_c = cal.evaluate(R)
    oh, hh, nh = hold_metrics(R)
    records = [SweepRecord(0, h_c - beta * n_c, h_c, n_c, oh, hh, nh, 0, time.perf_counter() - t0)]
    best = (oh, 0, R.copy())
    nmse_hold_init = nh
    since_best = 0
    reason = "max_sweeps"
    for sweep in range(1, max_sweeps + 1):
        t0 = time.perf_counter()
        R_prev = R.copy()
        accepted = 0
        full = _State(kern, Y, cal.energy, full=tuple(st[:3]))
        full.hist = st[3]
        if use_subset:
            idx = np.sort(rng.choice(M, size=search_rows, replace=False))
            sub = full.subset(idx, fixed_order_energy(cal.X[idx], kern.chunk))
        order = rng.permutation(len(planes))
        bar = tqdm(order, desc=f"{label} sweep {sweep}", leave=False,
                   disable=not sys.stderr.isatty())
        for p in bar:
            i, j = planes[p]
            theta, gain, h_new, h_sub = _decide_plane(full, sub if use_subset else None, i, j, beta)
            if gain > ACCEPT_TOL:
                c, s = math.cos(theta), math.sin(theta)
                full.rotate(i, j, c, s, h_new)
                if use_subset:
                    sub.rotate(i, j, c, s, h_sub)
                ri, rj = R[:, i].copy(), R[:, j].copy()
                R[:, i] = c * ri - s * rj
                R[:, j] = s * ri + c * rj
                accepted += 1
        # Re-synchronise the state with X @ R (the rotated data drifts by rounding otherwise).
        Y, st, h_c, n_c = cal.evaluate(R)
        obj_c = h_c - beta * n_c
        if obj_c < records[-1].objective_cal:
            # Only rounding between the incremental state and X @ R can cause this: undo and stop.
            R = R_prev
            reason = "rounding"
            break
        oh, hh, nh = hold_metrics(R)
        records.append(SweepRecord(sweep, obj_c, h_c, n_c, oh, hh, nh, accepted,
                                   time.perf_counter() - t0))
        if hold is None:
            best = (None, sweep, R.copy())
        elif nh <= nmse_hold_init and oh > best[0]:
            best = (oh, sweep, R.copy())
            since_best = 0
        else:
            since_best += 1
        if accepted == 0:
            reason = "converged"
            break
        if hold is not None and since_best >= patience:
            reason = "holdout"
            break
    return best[2], records, best[1], reason


def _split_tokens(T: int, holdout: float, rng: np.random.Generator):
    n_hold = int(math.floor(holdout * T))
    if holdout > 0 and (n_hold < 1 or T - n_hold < 1):
        raise MaxentInputError(
            f"too few tokens for holdout={holdout}: {T} tokens give {n_hold} held-out and "
            f"{T - n_hold} calibration tokens; both need at least one")
    perm = rng.permutation(T)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def maxent_rotation(X, *, block_size: int = 32, beta: float = DEFAULT_BETA, holdout=0.25,
                    seed: int = 0, max_sweeps: int = DEFAULT_MAX_SWEEPS, init="hadamard",
                    per_block: bool = False, patience: int = 1,
                    search_rows: int | None = DEFAULT_SEARCH_ROWS, backend: str = "auto"):
    """Maximum-entropy intra-block rotation (spec/ME.md ME-3).

    X: (tokens, channels) float array (leading axes are flattened into tokens); channels must be
    a multiple of block_size. Returns (R, report): R (block_size, block_size) orthogonal, or
    (channels / block_size, block_size, block_size) when per_block, applied as
    X.reshape(T, n / block_size, block_size) @ R. holdout: fraction of tokens held out (seeded
    split), 0 for none, or an explicit (tokens', channels) array of held-out data.
    """
    t_start = time.perf_counter()
    if not isinstance(block_size, (int, np.integer)) or block_size < 2:
        raise MaxentInputError(f"block_size must be an integer >= 2, got {block_size!r}")
    block_size = int(block_size)
    if not (isinstance(beta, (int, float, np.floating, np.integer)) and math.isfinite(beta)
            and beta >= 0):
        raise MaxentInputError(f"beta must be a finite number >= 0, got {beta!r}")
    if not isinstance(max_sweeps, (int, np.integer)) or max_sweeps < 0:
        raise MaxentInputError(f"max_sweeps must be an integer >= 0, got {max_sweeps!r}")
    if search_rows is not None and (not isinstance(search_rows, (int, np.integer))
                                    or search_rows < 1):
        raise MaxentInputError(f"search_rows must be a positive integer or None, got {search_rows!r}")
    if not isinstance(patience, (int, np.integer)) or patience < 1:
        raise MaxentInputError(f"patience must be an integer >= 1, got {patience!r}")
    X = _as_tokens(X, "X", block_size)                            # (T, n)
    T, n = X.shape
    nb = n // block_size
    kern = get_kernels(backend)
    rng_split, rng_order = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if isinstance(holdout, (int, float, np.floating, np.integer)) and not isinstance(holdout, bool):
        if not (0.0 <= holdout < 1.0):
            raise MaxentInputError(f"holdout fraction must be in [0, 1), got {holdout}")
        cal_idx, hold_idx = _split_tokens(T, float(holdout), rng_split)
        Xc, Xh = X[cal_idx], (X[hold_idx] if hold_idx.size else None)
    else:
        Xh = _as_tokens(holdout, "holdout", block_size)
        if Xh.shape[1] != n:
            raise MaxentInputError(f"holdout has {Xh.shape[1]} channels, X has {n}")
        Xc = X
    R0 = _initial_rotation(init, block_size, nb, bool(per_block))
    report = MaxentReport(beta=float(beta), block_size=block_size, per_block=bool(per_block),
                          backend=kern.name, n_cal_tokens=Xc.shape[0],
                          n_hold_tokens=0 if Xh is None else Xh.shape[0])

    def block_rows(A, b=None):          # (T', n) -> (T' * nb, B), or one block's (T', B)
        if b is None:
            return A.reshape(-1, block_size)
        return A[:, b * block_size:(b + 1) * block_size]

    if not per_block:
        cal = _Data(block_rows(Xc), kern)
        hold = None if Xh is None else _Data(block_rows(Xh), kern)
        R, recs, best, reason = _optimize(cal, hold, R0, float(beta), int(max_sweeps), rng_order,
                                          int(patience), search_rows, "maxent")
        report.sweeps, report.best_sweep, report.stop_reason = recs, best, reason
    else:
        R = np.empty_like(R0)
        for b in range(nb):
            cal = _Data(block_rows(Xc, b), kern)
            hold = None if Xh is None else _Data(block_rows(Xh, b), kern)
            rb, recs, best, reason = _optimize(cal, hold, R0[b], float(beta), int(max_sweeps),
                                               rng_order, int(patience), search_rows,
                                               f"maxent block {b}")
            R[b] = rb
            report.blocks.append(MaxentReport(
                beta=float(beta), block_size=block_size, per_block=False, backend=kern.name,
                n_cal_tokens=Xc.shape[0], n_hold_tokens=report.n_hold_tokens, sweeps=recs,
                best_sweep=best, stop_reason=reason))
        reasons = sorted({blk.stop_reason for blk in report.blocks})
        report.stop_reason = "per-block: " + ", ".join(
            f"{r} x{sum(blk.stop_reason == r for blk in report.blocks)}" for r in reasons)
    report.initial = _summary(Xc, Xh, R0, block_size, kern, beta)
    report.final = _summary(Xc, Xh, R, block_size, kern, beta)
    report.seconds = time.perf_counter() - t_start
    return R, report


def _summary(Xc, Xh, R, block_size, kern, beta) -> dict:
    """Entropy / NMSE / objective of calibration and held-out data (all blocks together)."""
    out = {}
    for tag, A in (("cal", Xc), ("hold", Xh)):
        if A is None:
            continue
        h, nm = evaluate_fast(A, R, block_size=block_size, kern=kern)
        out[f"entropy_{tag}"], out[f"nmse_{tag}"] = h, nm
        out[f"objective_{tag}"] = h - beta * nm
    return out
