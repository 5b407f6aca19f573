"""Property conformance of the rotation builders, whose outputs are not unique (spec/CF.md
CF-5.10 .. CF-5.12).

    schur-horn  fn(eigvals float64 (n,), target float64 (n,)) -> Q float (n, n)
                diag(Q^T diag(eigvals) Q) = target, Q orthogonal; a target that eigvals do
                not majorize must be refused (the call raises)
    maxent      fn(X float32 (tokens, channels), seed int) -> R float (B, B), B = 32
                R orthogonal and its held-out objective J = H - beta NMSE (spec/ME.md ME-2.1,
                computed here by the oracle on held-out tokens the kernel never sees) within
                the stated margin of the reference's own
"""
from __future__ import annotations

import numpy as np

from torq_ref.golden.hexio import from_hex
from torq_ref.rotations.maxent_eval import heldout_objective  # the oracle objective (ME-2.1)

from .common import as_float
from .report import CaseResult

#: CF-5.10 bounds, relative: orthogonality max|Q^T Q - I| <= ORTH_RTOL n, diagonal
#: max|diag(Q^T L Q) - t| <= DIAG_RTOL n max(|eigvals|max, |target|max)
ORTH_RTOL = 1e-10
DIAG_RTOL = 1e-10
#: CF-5.11: a maxent R passes when J_heldout(R) >= min over the reference's seeds of its own
#: J_heldout - MAXENT_MARGIN (bits)
MAXENT_MARGIN = 0.02
MAXENT_ORTH = 1e-10

CAUSES = {
    "NotOrthogonal": ("CF-5.10", "max |Q^T Q - I| above the bound"),
    "DiagonalMismatch": ("CF-5.10", "diag(Q^T diag(eigvals) Q) differs from the target by more "
                                    "than the bound"),
    "TransposedQ": ("CF-5.10", "diag(Q diag(eigvals) Q^T) is the target: Q^T returned"),
    "RefusedMajorized": ("CF-5.10", "the call raised for a target that eigvals majorize"),
    "AcceptedNonMajorized": ("CF-5.10", "a Q returned for a target that eigvals do not majorize"),
    "BadOutput": ("CF-1.2", "not a finite float (n, n) / (B, B) array"),
    "HeldoutBelowReference": ("CF-5.11", "the held-out objective is below the reference's by "
                                         "more than the margin"),
}


def _fail(src, flags, cause, detail, output="Q"):
    return CaseResult(src, flags, "fail", CAUSES[cause][0], output, detail, cause=cause)


def orth_error(Q) -> float:
    Q = np.asarray(Q, np.float64)
    return float(np.max(np.abs(Q.T @ Q - np.eye(Q.shape[0]))))


def judge_schur_horn(src, flags, lam, t, expect, call) -> CaseResult:
    """One (eigvals, target) case (CF-5.10)."""
    n = lam.shape[0]
    try:
        Q = call()
    except Exception as err:  # noqa: BLE001 - refusing is the convention for a bad target
        if expect == "refuse":
            return CaseResult(src, flags, "pass")
        return _fail(src, flags, "RefusedMajorized", f"{type(err).__name__}: {err}")
    if expect == "refuse":
        return _fail(src, flags, "AcceptedNonMajorized", "returned a matrix; the target breaks "
                     "majorization")
    try:
        Q = as_float("Q", Q, (n, n)).astype(np.float64)
    except Exception as err:  # noqa: BLE001
        return _fail(src, flags, "BadOutput", str(err))
    if not np.isfinite(Q).all():
        return _fail(src, flags, "BadOutput", "NaN or Inf in Q")
    oe = orth_error(Q)
    if oe > ORTH_RTOL * n:
        return _fail(src, flags, "NotOrthogonal", f"max|Q^T Q - I| = {oe:.3g} > {ORTH_RTOL * n:.3g}")
    scale = max(float(np.max(np.abs(lam))), float(np.max(np.abs(t))), np.finfo(float).tiny)
    tol = DIAG_RTOL * n * scale
    d = np.einsum("ji,j,ji->i", Q, lam, Q)
    de = float(np.max(np.abs(d - t)))
    if de <= tol:
        return CaseResult(src, flags, "pass")
    dt = np.einsum("ij,j,ij->i", Q, lam, Q)
    if float(np.max(np.abs(dt - t))) <= tol:
        return _fail(src, flags, "TransposedQ", f"diag(Q L Q^T) matches, diag(Q^T L Q) off by {de:.3g}")
    return _fail(src, flags, "DiagonalMismatch", f"max|diag(Q^T L Q) - target| = {de:.3g} > {tol:.3g}")


def run_schur_horn(fn, vs, profile, fmt, use_bulk):
    out = []
    for grp in vs.docs["rotation_builders.json"]["testGroups"]:
        if grp["type"] != "SchurHorn":
            continue
        for t in grp["tests"]:
            lam = from_hex(t["eigvals"], "float64")
            tg = from_hex(t["target"], "float64")
            out.append(judge_schur_horn(f"rotation_builders.json#{t['tcId']}", t["flags"], lam, tg,
                                        t["expect"], lambda: fn(lam.copy(), tg.copy())))
    return out


def judge_maxent(src, flags, x_held, R, beta, j_ref_min, block_size) -> CaseResult:
    try:
        R = as_float("R", R, (block_size, block_size)).astype(np.float64)
    except Exception as err:  # noqa: BLE001
        return _fail(src, flags, "BadOutput", str(err), "R")
    if not np.isfinite(R).all():
        return _fail(src, flags, "BadOutput", "NaN or Inf in R", "R")
    oe = orth_error(R)
    if oe > MAXENT_ORTH:
        return _fail(src, flags, "NotOrthogonal", f"max|R^T R - I| = {oe:.3g} > {MAXENT_ORTH}", "R")
    j = heldout_objective(x_held, R, beta, block_size)
    floor = j_ref_min - MAXENT_MARGIN
    if j >= floor:
        return CaseResult(src, flags, "pass")
    return _fail(src, flags, "HeldoutBelowReference",
                 f"held-out J = {j:.6f} < {floor:.6f} (reference's lowest {j_ref_min:.6f} - margin "
                 f"{MAXENT_MARGIN})", "R")


def run_maxent(fn, vs, profile, fmt, use_bulk):
    arrays, _ = vs.bulk["maxent_heldout"]
    out = []
    for grp in vs.docs["rotation_builders.json"]["testGroups"]:
        if grp["type"] != "Maxent":
            continue
        xc, xh = arrays[grp["calibration"]], arrays[grp["heldout"]]
        j_min = float(min(from_hex(grp["jReference"], "float64")))
        for t in grp["tests"]:
            src = f"rotation_builders.json#{t['tcId']}"
            try:
                R = fn(xc.copy(), int(t["seed"]))
            except Exception as err:  # noqa: BLE001
                out.append(_fail(src, t["flags"], "BadOutput", f"{type(err).__name__}: {err}", "R"))
                continue
            out.append(judge_maxent(src, t["flags"], xh, R, grp["beta"], j_min, grp["blockSize"]))
    return out
