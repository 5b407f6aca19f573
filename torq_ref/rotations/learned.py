"""A 32 x 32 block rotation trained on the layer-output error (spec/ME.md section 6).

SpinQuant / OSTQuant style (Liu et al., arXiv 2405.16406; Hu et al., arXiv 2501.13987), per site
and in NumPy: R (B, B) orthogonal, shared by every B-block of the site input (so it folds into the
consuming weight, W -> W (I (x) R)), minimises the relative output error of the linear y = x W^T
that the MXFP4 activation quantizer causes,

    L(R) = sum_t || (Q(x_t (I (x) R)) (I (x) R^T) - x_t) W^T ||^2 / sum_t || x_t W^T ||^2     (ME-6.1)

on calibration rows X (T, n), float64. The gradient uses the straight-through estimator for the
rounding (ME-6.2), the step is a Cayley retraction on the orthogonal group with a backtracking
line search on the true (quantized) L (ME-6.3), and the returned R is the one with the lowest
held-out objective, the start when no step lowers it (ME-6.4). Bad input: ME-6.5; the report and
determinism: ME-6.6.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .baselines import sylvester_hadamard

#: the knobs of learned_rotation and their defaults (ME-6.1)
LEARNED_DEFAULTS = {"steps": 24, "holdout": 0.25, "step_angle": 0.05, "gamma": 0.0, "patience": 4,
                    "backtracks": 4}


class LearnedInputError(ValueError):
    """Bad input to learned_rotation (shapes, values, options), naming the problem (ME-6.5)."""


@dataclass
class LearnedReport:
    """What the fit did (ME-6.6): the calibration and held-out objective of the start and of the
    returned R, one entry per step, the step kept and why it stopped."""

    calib_rows: int
    holdout_rows: int
    initial: dict
    final: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    best_step: int = 0
    stop_reason: str = ""
    seconds: float = 0.0


def _factor(W: np.ndarray) -> np.ndarray:
    """F (n, r) with F F^T = W^T W and r = min(out, n): the cheaper exact form of ||e W^T||^2 =
    ||e F||^2 (W^T itself when out <= n, else V sqrt(lambda) of eigh(W^T W), negative rounding
    eigenvalues clipped to 0)."""
    out, n = W.shape
    if out <= n:
        return np.ascontiguousarray(W.T)
    lam, V = np.linalg.eigh(W.T @ W)
    return V * np.sqrt(np.clip(lam, 0.0, None))[None, :]


class _Objective:
    """L (ME-6.1), the code entropy and the STE gradient (ME-6.2) on one set of rows X (T, n)."""

    def __init__(self, X: np.ndarray, F: np.ndarray, block_size: int, fmt: str, scale_rule: str):
        self.X, self.F, self.b = X, F, block_size
        self.fmt, self.rule = fmt, scale_rule
        XF = X @ F
        self.den = float(np.sum(XF * XF))

    def _blocks(self, A: np.ndarray) -> np.ndarray:
        return A.reshape(-1, self.b)                                  # (T * n/B, B) block rows

    def evaluate(self, R: np.ndarray, gamma: float = 0.0, grad: bool = False):
        """(J, L, H, grad or None): J = L - gamma * H, H the code entropy of X (I (x) R) in bits
        (computed only when gamma > 0, else 0)."""
        from torq_ref import mx

        T, n = self.X.shape
        Y = (self._blocks(self.X) @ R).reshape(T, n)                  # (T, n) rotated rows
        Qy = mx.quantize_dequantize(Y, self.fmt, block_size=self.b, axis=-1, scale_rule=self.rule)
        D = Qy - Y                                                    # rounding error, rotated basis
        E = (self._blocks(D) @ R.T).reshape(T, n)                     # the error in the input basis
        EF = E @ self.F                                               # (T, r)
        L = float(np.sum(EF * EF)) / self.den if self.den > 0 else 0.0
        H = 0.0
        if gamma > 0:
            from .entropy import code_entropy

            H = code_entropy(Y, block_size=self.b, scale_rule=self.rule)
        G = None
        if grad and self.den > 0:
            Gx = EF @ self.F.T                                        # (T, n): dL/dE up to 2 / den
            # STE: Q(Y) = Y + D with D held fixed, so E_b = D_b R^T and dL = 2 <G_b, D_b dR^T> / den
            G = 2.0 * (self._blocks(Gx).T @ self._blocks(D)) / self.den   # (B, B) Euclidean gradient
        return L - gamma * H, L, H, G


def _cayley(R: np.ndarray, A: np.ndarray, tau: float) -> np.ndarray:
    """(I + tau/2 A)^-1 (I - tau/2 A) R, the Cayley retraction along -A R, A skew, then its polar
    factor U V^T (SVD), so that the candidate is orthogonal to rounding and is exactly the R that
    is evaluated and may be returned (ME-6.3)."""
    eye = np.eye(len(R))
    Rn = np.linalg.solve(eye + 0.5 * tau * A, (eye - 0.5 * tau * A) @ R)
    U, _, Vt = np.linalg.svd(Rn)
    return U @ Vt


def _init(init, block_size: int) -> np.ndarray:
    """The start R (B, B): "hadamard", "identity" or a checked orthogonal array (ME-6.5)."""
    if isinstance(init, str):
        if init == "hadamard":
            return sylvester_hadamard(block_size)
        if init == "identity":
            return np.eye(block_size)
        raise LearnedInputError(f"unknown init {init!r}; use 'hadamard', 'identity' or an orthogonal array")
    R = np.array(init, dtype=np.float64)
    if R.shape != (block_size, block_size):
        raise LearnedInputError(f"init has shape {R.shape}; the block rotation needs ({block_size}, {block_size})")
    if np.abs(R.T @ R - np.eye(block_size)).max() > 1e-10:
        raise LearnedInputError("init is not orthogonal (max |R^T R - I| > 1e-10)")
    return R


def learned_rotation(X, W, *, block_size: int = 32, init="hadamard",
                     steps: int = LEARNED_DEFAULTS["steps"], holdout: float = LEARNED_DEFAULTS["holdout"],
                     step_angle: float = LEARNED_DEFAULTS["step_angle"],
                     gamma: float = LEARNED_DEFAULTS["gamma"], patience: int = LEARNED_DEFAULTS["patience"],
                     backtracks: int = LEARNED_DEFAULTS["backtracks"], seed: int = 0, fmt: str = "e2m1",
                     scale_rule: str = "floor"):
    """(R (B, B) float64 orthogonal, LearnedReport) for site rows X (T, n) consumed by W (out, n)
    (ME-6.1..6.6): the inputs checked (ME-6.5), the seeded split (ME-6.4), STE-gradient steps
    along the Cayley curve with backtracking (ME-6.2, ME-6.3), the held-out best kept (ME-6.4),
    the report filled (ME-6.6); deterministic given the seed."""
    t0 = time.perf_counter()
    if not (isinstance(X, np.ndarray) and np.issubdtype(X.dtype, np.floating) and X.ndim >= 2):
        raise LearnedInputError("X must be a float array (tokens, channels)")
    X = np.asarray(X, dtype=np.float64).reshape(-1, X.shape[-1])
    W = np.asarray(W, dtype=np.float64)
    T, n = X.shape
    if block_size < 2 or n % block_size or n == 0:
        raise LearnedInputError(f"{n} channels is not a positive multiple of the block size {block_size}")
    if W.ndim != 2 or W.shape[1] != n:
        raise LearnedInputError(f"weight has shape {W.shape}; the site needs (out, {n})")
    if not (np.isfinite(X).all() and np.isfinite(W).all()):
        raise LearnedInputError("X or W contains NaN or Inf")
    if not 0 <= holdout < 1:
        raise LearnedInputError(f"holdout must be in [0, 1); got {holdout!r}")
    for name, v, lo in (("steps", steps, 0), ("patience", patience, 1), ("backtracks", backtracks, 0)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo):
            raise LearnedInputError(f"{name} must be a whole number >= {lo}; got {v!r}")
    if not (np.isfinite(step_angle) and step_angle > 0):
        raise LearnedInputError(f"step_angle must be a positive number; got {step_angle!r}")
    if not (np.isfinite(gamma) and gamma >= 0):
        raise LearnedInputError(f"gamma must be a number >= 0; got {gamma!r}")
    R = _init(init, block_size)
    # ME-6.4: the seeded split of the rows into calibration and held-out
    n_hold = int(np.floor(holdout * T))
    order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(T)
    hold_idx, cal_idx = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    if len(cal_idx) == 0 or (holdout > 0 and n_hold == 0):
        raise LearnedInputError(f"too few tokens ({T}) for holdout {holdout}")
    F = _factor(W)
    cal = _Objective(X[cal_idx], F, block_size, fmt, scale_rule)
    held = _Objective(X[hold_idx], F, block_size, fmt, scale_rule) if n_hold else None

    def held_j(Rm):
        return held.evaluate(Rm, gamma)[:3] if held is not None else (np.nan, np.nan, np.nan)

    J, L, H, G = cal.evaluate(R, gamma, grad=True)
    hJ, hL, hH = held_j(R)
    rec = lambda k, acc, tau: {"step": k, "calib_J": J, "calib_L": L, "calib_H": H,   # noqa: E731
                               "holdout_J": hJ, "holdout_L": hL, "accepted": acc, "tau": tau}
    report = LearnedReport(len(cal_idx), n_hold, initial={"calib_L": L, "holdout_L": hL, "calib_H": H,
                                                            "holdout_H": hH})
    report.steps.append(rec(0, True, 0.0))
    best_R, best_j, best_k = R, (hJ if held is not None else J), 0
    stale = 0
    reason = "steps"
    for k in range(1, steps + 1):
        if G is None:
            reason = "zero"
            break
        A = G @ R.T - R @ G.T                                         # (B, B) skew: the descent generator
        norm = float(np.linalg.norm(A))
        if norm == 0.0:
            reason = "zero"
            break
        tau = step_angle / norm
        accepted = False
        for trial in range(backtracks + 1):                          # ME-6.3: accept only a lower J
            if trial:
                tau *= 0.5
            Rn = _cayley(R, A, tau)
            Jn = cal.evaluate(Rn, gamma)[0]
            if Jn < J:
                accepted = True
                break
        if not accepted:
            report.steps.append(rec(k, False, tau))
            reason = "no_descent"
            break
        R = Rn
        J, L, H, G = cal.evaluate(R, gamma, grad=True)
        hJ, hL, _ = held_j(R)
        report.steps.append(rec(k, True, tau))
        score = hJ if held is not None else J
        if score < best_j:
            best_R, best_j, best_k, stale = R, score, k, 0
        else:
            stale += 1
            if held is not None and stale >= patience:
                reason = "holdout"
                break
    fJ, fL, fH, _ = cal.evaluate(best_R, gamma)
    fhJ, fhL, fhH = held_j(best_R)
    report.final = {"calib_L": fL, "holdout_L": fhL, "calib_H": fH, "holdout_H": fhH}
    report.best_step, report.stop_reason = best_k, reason
    report.seconds = time.perf_counter() - t0
    return best_R, report
