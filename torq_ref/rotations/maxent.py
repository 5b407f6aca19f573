"""Maximum-entropy intra-block ("micro") rotation of TORQ (spec/ME.md; torq-method.md section 2.2).

TORQ (arXiv 2605.19561) rotates the inside of every 32-element MXFP4 block so that the FP4 codebook
is used evenly. :func:`maxent_rotation` finds an orthogonal R (block_size x block_size, shared by
every block, or one per block) that maximises, on calibration tokens,

    J(R) = H(codes of MXFP4(X R)) - beta * NMSE(X R)

with the exact MXFP4 quantizer (E2M1 elements, FLOOR E8M0 scale, round-to-nearest-even). The
optimizer starts from the normalised Hadamard matrix and runs Jacobi sweeps of Givens rotations
over all block_size*(block_size-1)/2 planes; each plane gets a two-stage grid search over the
angle and a move is kept only when it raises J. Part of the tokens is held out and the returned R is
the sweep with the best held-out J (never with a worse held-out NMSE than the start).

Speed (ME-4): a rotation in plane (i, j) changes two columns of every block row; the other
columns only matter through their maximum (which fixes the shared scale) and their summed error and
codes. Those are cached per plane, so a trial angle costs O(rows) instead of O(rows * block_size);
rows whose shared exponent moves are requantized in full. The kernels exist twice, in NumPy here
(``_np_*``) and in numba (:mod:`._numba_maxent`), with identical results.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..mx.formats import E2M1_VALUES, e2m1_magnitude_code
from .baselines import sylvester_hadamard
from .entropy import N_BINS, entropy_from_counts

#: Default weight of the NMSE term (bits per unit NMSE); chosen by measurement, see spec/ME.md ME-3.3.
DEFAULT_BETA = 100.0
#: Default upper bound on Jacobi sweeps (early stopping on held-out data usually ends sooner).
DEFAULT_MAX_SWEEPS = 6
#: Rows per deterministic reduction chunk (ME-4.2).
CHUNK = 2048
#: Stage-1 angle grid (radians): 0 first, then +-pi/32 * {1/64, 1/16, 1/4, 1, 4, 8}; accepted
#: angles are mostly tiny, but +-pi/8 and +-pi/4 keep large moves reachable.
THETA_STAGE1 = (math.pi / 32) * np.array(
    [0.0, 1 / 64, -1 / 64, 1 / 16, -1 / 16, 1 / 4, -1 / 4, 1.0, -1.0, 4.0, -4.0, 8.0, -8.0])
#: Stage 2 tries theta1 + f * max(|theta1|, pi/2048) for these f around the stage-1 winner theta1.
THETA_STAGE2_FACTORS = np.array([-0.5, -0.25, 0.25, 0.5])
#: Calibration block rows used by the angle search (the winner is confirmed on all rows).
DEFAULT_SEARCH_ROWS = 16384
#: Smallest improvement of J that counts as an improvement (guards against rounding noise).
ACCEPT_TOL = 1e-12

_MAG = np.array(E2M1_VALUES[:8])
#: POW2[k] = 2^(k - 127), k = 0..254 (every E8M0 scale), exact.
POW2 = np.array([math.ldexp(1.0, k - 127) for k in range(255)])
#: Largest 2-norm of one input block: keeps every rotated value below 2^127 (finite FLOOR scale).
MAX_BLOCK_NORM = math.ldexp(1.0, 127)


class MaxentInputError(ValueError):
    """Bad input to maxent_rotation (shape, values, holdout, options)."""


# --------------------------------------------------------------------------------------------
# NumPy kernels (the reference path; _numba_maxent mirrors them operation for operation)
# --------------------------------------------------------------------------------------------

def _np_scale_exp(amax: np.ndarray) -> np.ndarray:
    """FLOOR shared exponent floor(log2 amax) - 2 clamped to [-127, 127]; amax == 0 -> -127."""
    _, ex = np.frexp(amax)                       # amax = f 2^ex, f in [0.5, 1)
    e = np.clip(ex.astype(np.int64) - 3, -127, 127)
    return np.where(amax == 0.0, -127, e)


def _np_quant(y: np.ndarray, e: np.ndarray):
    """Squared error and histogram bin of elements y quantized with shared exponents e."""
    ay = np.abs(y)
    t = ay * POW2[127 - e]
    m = e2m1_magnitude_code(t)                   # the one E2M1 decision table (mx/formats.py)
    d = _MAG[m] * POW2[127 + e] - ay
    b = np.where(m == 0, 0, m + 8 * (y < 0.0))
    return d * d, b.astype(np.uint8)


def _np_chunked_sum(v: np.ndarray, chunk: int) -> np.ndarray:
    """Sum the last axis of v >= 0: sequentially inside chunks of `chunk`, then over the chunks."""
    m = v.shape[-1]
    nch = -(-m // chunk)
    pad = np.zeros(v.shape[:-1] + (nch * chunk - m,))
    w = np.concatenate([v, pad], axis=-1).reshape(v.shape[:-1] + (nch, chunk))
    part = np.cumsum(w, axis=-1)[..., -1]        # (..., nch) sequential inside each chunk
    return np.cumsum(part, axis=-1)[..., -1]      # sequential over chunks


def _np_row_sum(err: np.ndarray, cols) -> np.ndarray:
    """Sequential sum over the given columns of err (M, B), starting from 0.0."""
    acc = np.zeros(err.shape[0])
    for k in cols:
        acc = acc + err[:, k]
    return acc


def _np_full_eval(Y: np.ndarray, pow2=POW2, chunk: int = CHUNK):
    E = _np_scale_exp(np.max(np.abs(Y), axis=1))                  # (M,)
    Err, C = _np_quant(Y, E[:, None])                             # (M, B) each
    hist = np.bincount(C.ravel(), minlength=N_BINS).astype(np.int64)
    total = float(_np_chunked_sum(_np_row_sum(Err, range(Y.shape[1])), chunk))
    return E, C, Err, hist, total


def _np_plane_prep(Y, Err, i, j, chunk=CHUNK):
    others = [k for k in range(Y.shape[1]) if k != i and k != j]
    om = np.max(np.abs(Y[:, others]), axis=1) if others else np.zeros(Y.shape[0])
    return om, _np_row_sum(Err, others)


def _np_plane_trials(Y, E, C, om, oe, i, j, cs, sn, pow2=POW2, chunk=CHUNK):
    M, B = Y.shape
    K = cs.shape[0]
    yi, yj = Y[:, i][None, :], Y[:, j][None, :]                  # (1, M)
    a = cs[:, None] * yi - sn[:, None] * yj                       # (K, M)
    b = sn[:, None] * yi + cs[:, None] * yj
    amax = np.maximum(np.maximum(om[None, :], np.abs(a)), np.abs(b))
    e = _np_scale_exp(amax)                                       # (K, M)
    other = np.broadcast_to(oe, (K, M)).copy()
    hist = np.zeros(K * N_BINS, np.int64)
    kk, rr = np.nonzero(e != E[None, :])                          # rows whose scale moves
    if kk.size:
        se = e[kk, rr]
        acc = np.zeros(kk.size)
        for col in range(B):
            if col == i or col == j:
                continue
            q, bb = _np_quant(Y[rr, col], se)
            acc = acc + q
            hist += np.bincount(kk * N_BINS + bb, minlength=K * N_BINS)
            hist -= np.bincount(kk * N_BINS + C[rr, col], minlength=K * N_BINS)
        other[kk, rr] = acc
    qa, ba = _np_quant(a, e)
    qb, bb2 = _np_quant(b, e)
    row = other + qa + qb
    kidx = np.arange(K)[:, None] * N_BINS
    hist += np.bincount((kidx + ba).ravel(), minlength=K * N_BINS)
    hist += np.bincount((kidx + bb2).ravel(), minlength=K * N_BINS)
    return hist.reshape(K, N_BINS), _np_chunked_sum(row, chunk)


def _np_apply_rotation(Y, E, C, Err, i, j, c, s, pow2=POW2, chunk=CHUNK):
    yi, yj = Y[:, i].copy(), Y[:, j].copy()
    a = c * yi - s * yj
    b = s * yi + c * yj
    Y[:, i], Y[:, j] = a, b
    e = _np_scale_exp(np.max(np.abs(Y), axis=1))
    same = e == E
    Err[same, i], C[same, i] = _np_quant(a[same], e[same])
    Err[same, j], C[same, j] = _np_quant(b[same], e[same])
    moved = ~same
    if moved.any():
        E[moved] = e[moved]
        Err[moved], C[moved] = _np_quant(Y[moved], e[moved][:, None])


def _np_rotate_blocks(X, R, chunk=CHUNK):
    """Y = X @ R with each dot product summed sequentially over k (same order as numba)."""
    acc = X[:, 0:1] * R[0]
    for k in range(1, X.shape[1]):
        acc = acc + X[:, k:k + 1] * R[k]
    return acc


class _Kernels:
    """The five kernels of one backend, with the chunk size bound."""

    def __init__(self, name: str, chunk: int = CHUNK):
        self.name = name
        self.chunk = chunk
        if name == "numba":
            from . import _numba_maxent as m
            self._full, self._prep, self._trials = m.full_eval, m.plane_prep, m.plane_trials
            self._apply, self._rot = m.apply_rotation, m.rotate_blocks
        elif name == "numpy":
            self._full, self._prep, self._trials = _np_full_eval, _np_plane_prep, _np_plane_trials
            self._apply, self._rot = _np_apply_rotation, _np_rotate_blocks
        else:
            raise MaxentInputError(f"unknown backend {name!r} (use 'auto', 'numba' or 'numpy')")

    def full_eval(self, Y):
        E, C, Err, hist, total = self._full(Y, POW2, self.chunk)
        return E, C, Err, np.asarray(hist, np.int64), float(total)

    def plane_prep(self, Y, Err, i, j):
        return self._prep(Y, Err, i, j, self.chunk)

    def plane_trials(self, Y, E, C, om, oe, i, j, cs, sn):
        hist, err = self._trials(Y, E, C, om, oe, i, j, cs, sn, POW2, self.chunk)
        return np.asarray(hist, np.int64), np.asarray(err, np.float64)

    def apply_rotation(self, Y, E, C, Err, i, j, c, s):
        self._apply(Y, E, C, Err, i, j, float(c), float(s), POW2, self.chunk)

    def rotate(self, X, R):
        return self._rot(np.ascontiguousarray(X), np.ascontiguousarray(R), self.chunk)


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def get_kernels(backend: str = "auto", chunk: int = CHUNK) -> _Kernels:
    """Kernels of ``backend``: "numba", "numpy", or "auto" (numba when installed)."""
    if backend == "auto":
        backend = "numba" if numba_available() else "numpy"
    return _Kernels(backend, chunk)


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

def _energy(X: np.ndarray, chunk: int) -> float:
    """Sum of squares of X (M, B), in the fixed order used for every error sum."""
    return float(_np_chunked_sum(_np_row_sum(X * X, range(X.shape[1])), chunk))


class _Data:
    """One data set (calibration or held-out) as block rows (M, B) with its energy."""

    def __init__(self, X: np.ndarray, kern: _Kernels):
        self.X = np.ascontiguousarray(X)
        self.energy = _energy(self.X, kern.chunk)
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

    def __init__(self, kern: _Kernels, Y: np.ndarray, energy: float, full=None):
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
        return [entropy_from_counts(hists[k]) - beta * float(nm[k]) for k in range(len(theta))], hists

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
            sub = full.subset(idx, _energy(cal.X[idx], kern.chunk))
        order = rng.permutation(len(planes))
        bar = tqdm(order, desc=f"{label} sweep {sweep}", leave=False,
                   disable=not sys.stderr.isatty())
        for p in bar:
            i, j = planes[p]
            if use_subset:
                sub_plane = sub.prepare(i, j)
                theta, j_best, j_zero, h_sub = _search_angle(sub, sub_plane, beta)
                if not j_best > j_zero + ACCEPT_TOL:
                    continue
                # confirm on all calibration rows: J must rise there too
                obj, hists = full.objectives(full.prepare(i, j), np.array([0.0, theta]), beta)
                j_zero, j_best, h_new = obj[0], obj[1], hists[1]
            else:
                theta, j_best, j_zero, h_new = _search_angle(full, full.prepare(i, j), beta)
            if _TRACE is not None:
                _TRACE.append((sweep, i, j, theta, j_best - j_zero))
            if j_best > j_zero + ACCEPT_TOL:
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


def apply_rotation(X, R, *, block_size: int = 32) -> np.ndarray:
    """X (..., n) with every block of the last axis multiplied by R (shared (B, B) or (n/B, B, B))."""
    X = np.asarray(X)
    R = np.asarray(R)
    n = X.shape[-1]
    if n % block_size:
        raise MaxentInputError(f"last axis ({n}) is not divisible by block_size ({block_size})")
    Xb = X.reshape(X.shape[:-1] + (n // block_size, block_size))   # (..., nb, B)
    if R.ndim == 2:
        Y = Xb @ R
    else:
        Y = np.einsum("...bk,bkl->...bl", Xb, R)
    return Y.reshape(X.shape)


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


def evaluate_fast(X, R, *, block_size: int = 32, kern: _Kernels | None = None):
    """(code entropy, NMSE) of MXFP4(X rotated by R) with the optimizer's own kernels.

    NMSE = sum of squared quantization errors / sum of X^2 (R is orthogonal, so the error is the
    same in the rotated and the original basis). Equal to :func:`rotation_metrics` (ME-4.1).
    """
    kern = kern or get_kernels("auto")
    X = np.asarray(X, dtype=np.float64)
    T, n = X.reshape(-1, X.shape[-1]).shape
    nb = n // block_size
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 2:
        Y = kern.rotate(X.reshape(-1, block_size), R)                            # (T nb, B)
    else:
        Xb = X.reshape(T, nb, block_size)
        Y = np.stack([kern.rotate(Xb[:, b], R[b]) for b in range(nb)], axis=1).reshape(-1, block_size)
    _, _, _, hist, total = kern.full_eval(np.ascontiguousarray(Y))
    energy = _energy(X.reshape(-1, block_size), kern.chunk)
    return entropy_from_counts(hist), (total / energy if energy > 0 else 0.0)


def rotation_metrics(X, R=None, *, block_size: int = 32) -> dict:
    """Reference metrics through torq_ref.mx: code entropy and NMSE of MXFP4(X rotated by R)."""
    from torq_ref import mx

    from .entropy import code_entropy

    X = np.asarray(X, dtype=np.float64)
    Y = X if R is None else apply_rotation(X, R, block_size=block_size)
    q = np.asarray(mx.quantize_dequantize(Y, "e2m1", block_size=block_size, scale_rule="floor"),
                   dtype=np.float64)
    return {"entropy": code_entropy(Y, block_size=block_size),
            "nmse": float(np.sum((q - Y) ** 2) / np.sum(X * X))}


def heavy_tailed_activations(T: int, n: int, *, df: float = 3.0, n_outliers: int | None = None,
                             outlier_scale: float = 30.0, seed: int = 0) -> np.ndarray:
    """Synthetic layer inputs (T, n): Student-t(df) entries with log-normal channel scales, plus
    ``n_outliers`` channels (default n // 64) multiplied by ``outlier_scale``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(df, size=(T, n)) * np.exp(0.5 * rng.standard_normal(n))
    k = n // 64 if n_outliers is None else n_outliers
    if k:
        x[:, rng.choice(n, size=k, replace=False)] *= outlier_scale
    return x


# --------------------------------------------------------------------------------------------
# Experiments and command line (ME-6): maxent-synthetic, maxent-real, bench-maxent
# --------------------------------------------------------------------------------------------

def compare_rotations(X_cal, X_eval, *, block_size: int = 32, beta: float = DEFAULT_BETA,
                      seed: int = 0, max_sweeps: int = DEFAULT_MAX_SWEEPS, per_block: bool = True,
                      search_rows: int | None = DEFAULT_SEARCH_ROWS) -> list[dict]:
    """Rows of the results table: identity, Hadamard, optimized shared R (and per-block R).

    The optimizer sees only X_cal (it holds out 25% of it for early stopping); X_eval is never
    seen. Metrics come from the reference path (:func:`rotation_metrics`, torq_ref.mx)."""
    nb = X_cal.shape[-1] // block_size
    rows = []

    def add(name, R, secs=None, rep=None):
        mc = rotation_metrics(X_cal, R, block_size=block_size)
        me = rotation_metrics(X_eval, R, block_size=block_size)
        rows.append({"rotation": name, "entropy_cal": mc["entropy"], "nmse_cal": mc["nmse"],
                     "entropy_eval": me["entropy"], "nmse_eval": me["nmse"], "seconds": secs,
                     "sweeps": None if rep is None else _sweeps_done(rep),
                     "stop": None if rep is None else rep.stop_reason})

    add("identity", None)
    add("hadamard", sylvester_hadamard(block_size))
    R, rep = maxent_rotation(X_cal, block_size=block_size, beta=beta, seed=seed,
                             max_sweeps=max_sweeps, search_rows=search_rows)
    add("maxent shared", R, rep.seconds, rep)
    if per_block:
        R, rep = maxent_rotation(X_cal, block_size=block_size, beta=beta, seed=seed,
                                 max_sweeps=max_sweeps, per_block=True, search_rows=search_rows)
        add(f"maxent per-block ({nb} R)", R, rep.seconds, rep)
    return rows


def _sweeps_done(rep: MaxentReport) -> str:
    if rep.per_block:
        best = [b.best_sweep for b in rep.blocks]
        return f"best {min(best)}..{max(best)}"
    return f"{len(rep.sweeps) - 1} (best {rep.best_sweep})"


def render_rows(rows: list[dict]) -> str:
    out = ["| rotation | H cal (bits) | NMSE cal | H held-out (bits) | NMSE held-out | "
           "sweeps run (best) | stop | time (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        out.append(f"| {r['rotation']} | {r['entropy_cal']:.4f} | {r['nmse_cal']:.5f} | "
                   f"{r['entropy_eval']:.4f} | {r['nmse_eval']:.5f} | {r['sweeps'] or ''} | "
                   f"{r['stop'] or ''} | {secs} |")
    return "\n".join(out)


def register_cli(sub) -> None:
    """Add the max-entropy subcommands (appended to torq_ref.rotations.cli.register)."""
    p = sub.add_parser("maxent-synthetic",
                       help="max-entropy micro rotation on heavy-tailed synthetic activations")
    p.add_argument("--tokens", type=int, default=4096, help="calibration tokens")
    p.add_argument("--eval-tokens", type=int, default=2048, help="held-out evaluation tokens")
    p.add_argument("--channels", type=int, default=576)
    p.add_argument("--beta", type=float, nargs="+", default=[DEFAULT_BETA])
    p.add_argument("--max-sweeps", type=int, default=DEFAULT_MAX_SWEEPS)
    p.add_argument("--no-per-block", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_synthetic)

    p = sub.add_parser("maxent-real", help="max-entropy micro rotation on captured model inputs")
    p.add_argument("--model-dir", default=None, help="imported model directory (default cache)")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 15, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "o", "gate_up", "down"])
    p.add_argument("--calib-windows", type=int, default=4, help="windows 8.. (calibration)")
    p.add_argument("--heldout-windows", type=int, default=2, help="the windows after them")
    p.add_argument("--beta", type=float, nargs="+", default=[DEFAULT_BETA])
    p.add_argument("--max-sweeps", type=int, default=DEFAULT_MAX_SWEEPS)
    p.add_argument("--no-per-block", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_real)

    p = sub.add_parser("bench-maxent", help="time maxent_rotation (numba vs NumPy) and scaling")
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--channels", type=int, nargs="+", default=[576])
    p.add_argument("--sweeps", type=int, default=2, help="sweeps timed (holdout off)")
    p.add_argument("--numpy-tokens", type=int, default=512,
                   help="size at which the NumPy path is timed against numba (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="numba threads (0: numba default)")
    p.add_argument("--default-run", type=int, nargs=2, default=None, metavar=("T", "N"),
                   help="also time one call with all defaults (holdout 0.25, early stopping)")
    p.set_defaults(func=_run_bench)


def _print_tables(title: str, X_cal, X_eval, args) -> None:
    for beta in args.beta:
        print(f"\n### {title}, beta = {beta:g}\n", flush=True)
        rows = compare_rotations(X_cal, X_eval, beta=beta, seed=args.seed,
                                 max_sweeps=args.max_sweeps, per_block=not args.no_per_block)
        print(render_rows(rows), flush=True)


def _run_synthetic(args) -> int:
    X = heavy_tailed_activations(args.tokens + args.eval_tokens, args.channels, seed=args.seed)
    print(f"Student-t(3) x log-normal channel scales, {args.channels // 64} outlier channels x30; "
          f"{args.tokens} calibration tokens (25% of them held out for early stopping), "
          f"{args.eval_tokens} evaluation tokens never seen by the optimizer.")
    _print_tables(f"synthetic {args.tokens} x {args.channels}", X[:args.tokens],
                  X[args.tokens:], args)
    return 0


def _run_real(args) -> int:
    from torq_ref import model as tm
    from torq_ref.model.data import N_EVAL as start

    path = tm.ensure_model(args.model_dir)
    mdl = tm.load(path)
    ids = tm.tokenize_text(path)
    calib = tm.calibration_windows(ids, args.calib_windows, start=start)
    held = tm.calibration_windows(ids, args.heldout_windows, start=start + args.calib_windows)
    caps = []
    for wins in (calib, held):
        cap = tm.ActivationCapture(args.layers, args.sites, moments=False, inputs=True)
        for k in range(wins.shape[0]):
            mdl.forward(wins[k:k + 1], capture=cap)
        caps.append(cap)
    print(f"SmolLM2-135M-Instruct ({path}); calibration windows {start}..{start + args.calib_windows - 1}"
          f", held-out windows {start + args.calib_windows}..{start + args.calib_windows + args.heldout_windows - 1}"
          " (512 tokens each, pydoc topics text); float32 forward pass of torq_ref.model.")
    for layer in args.layers:
        for site in args.sites:
            xc = caps[0].inputs(layer, site).astype(np.float64)
            xh = caps[1].inputs(layer, site).astype(np.float64)
            _print_tables(f"layer {layer} {site} ({xc.shape[0]} x {xc.shape[1]})", xc, xh, args)
    return 0


def _run_bench(args) -> int:
    import platform

    if args.threads and numba_available():
        import numba
        numba.set_num_threads(args.threads)
    kern = "numba" if numba_available() else "numpy"
    # compile outside timing: the serial kernels (small data) and the parallel ones (> 2 chunks)
    maxent_rotation(heavy_tailed_activations(64, 64, seed=1), holdout=0.0, max_sweeps=1,
                    backend=kern)
    maxent_rotation(heavy_tailed_activations(2 * CHUNK + 64, 16, seed=1), block_size=8,
                    holdout=0.0, max_sweeps=1, search_rows=None, backend=kern)
    print(f"machine: {platform.processor() or platform.machine()}, os.cpu_count() = "
          f"{__import__('os').cpu_count()}; backend {kern}; {args.sweeps} sweeps, holdout off, "
          f"search_rows {DEFAULT_SEARCH_ROWS}\n")
    print("| tokens | channels | block rows | wall (s) | CPU (s) | wall per sweep (s) | accepted planes |")
    print("|---|---|---|---|---|---|---|")
    for n in args.channels:
        for T in args.tokens:
            X = heavy_tailed_activations(T, n, seed=1)
            w0, c0 = time.perf_counter(), time.process_time()
            _, rep = maxent_rotation(X, holdout=0.0, max_sweeps=args.sweeps, backend=kern)
            w, c = time.perf_counter() - w0, time.process_time() - c0
            acc = "/".join(str(s.accepted_planes) for s in rep.sweeps[1:])
            print(f"| {T} | {n} | {T * n // 32} | {w:.2f} | {c:.2f} | {w / args.sweeps:.2f} | {acc} |",
                  flush=True)
    if args.default_run:
        T, n = args.default_run
        X = heavy_tailed_activations(T, n, seed=1)
        w0, c0 = time.perf_counter(), time.process_time()
        _, rep = maxent_rotation(X, backend=kern)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        print(f"\nDefault call on {T} x {n} (holdout 0.25, beta {DEFAULT_BETA:g}, early stopping): "
              f"wall {w:.2f} s, CPU {c:.2f} s, {len(rep.sweeps) - 1} sweeps, stop {rep.stop_reason}, "
              f"best sweep {rep.best_sweep}")
    if args.numpy_tokens and kern == "numba":
        X = heavy_tailed_activations(args.numpy_tokens, 576, seed=1)
        out = {}
        for b in ("numba", "numpy"):
            w0 = time.perf_counter()
            out[b] = maxent_rotation(X, holdout=0.0, max_sweeps=1, backend=b)[0]
            out[b + "_t"] = time.perf_counter() - w0
        same = "yes" if np.array_equal(out["numba"], out["numpy"]) else "NO"
        print(f"\nNumPy path vs numba, {args.numpy_tokens} x 576, 1 sweep: NumPy {out['numpy_t']:.2f} s, "
              f"numba {out['numba_t']:.2f} s, ratio {out['numpy_t'] / out['numba_t']:.1f}x; "
              f"identical R: {same}")
        if same == "NO":
            return 1
    return 0
