"""GPTQ for MX weight formats, in NumPy (spec/TQ.md TQ-7, measured against RTN in TQ-7.3; Frantar et al., "GPTQ: Accurate
Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023, arXiv 2210.17323).

A linear layer y = x W^T, W (out, n), with calibration inputs of second moment H = E[x x^T] (n, n)
is quantized column by column. After column j is rounded (q_j = Q(w_j)), the columns not yet
quantized (the set F) are moved to the least-squares optimum given the ones already fixed
(Optimal Brain Surgeon):

    w_F <- w_F - (w_j - q_j) / [H_F^-1]_jj * [H_F^-1]_{j, F}

With U the upper Cholesky factor of H^-1 (H^-1 = U^T U), row j of U restricted to columns >= j
is [H_F^-1]_{j, F} / sqrt([H_F^-1]_jj) for F = {j, j+1, ...}, so one factorization serves every
step. Updates inside a batch of ``batch`` columns are applied at once ("lazy batch"), the rest
with one matmul per batch. Dampening adds ``damp`` x mean(diag H) to the diagonal; a column with
H_jj = 0 (input always zero) gets H_jj = 1 and is simply rounded. ``act_order`` processes columns
by decreasing H_jj.

MX groups: the E8M0 scale of every 32-group along the input dimension (the MX layout, fixed in
the original column order) is chosen by the scale rule from the group's values at the moment its
first column is quantized (the current, already updated values of all its columns); each element
is then rounded to the element format with that scale (saturating), exactly as torq_ref.mx
does for a block. With H = c I no update is made and the result is RTN bit for bit.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

#: the knobs and their defaults (TQ-7.1)
GPTQ_DEFAULTS = {"damp": 0.01, "act_order": True, "batch": 128}


class GPTQError(ValueError):
    """Bad input to GPTQ: shapes, a non-finite or non-symmetric Hessian, bad options."""


def transformed_hessian(C: np.ndarray, transform=None) -> np.ndarray:
    """The Hessian of the inputs T(x) = x D from the second moment C of x: D^T C D (TQ-7.2).

    ``transform``: None or a DenseTransform / object with ``apply(x)`` computing x @ D."""
    C = np.asarray(C, dtype=np.float64)
    if transform is None:
        return C
    CD = transform.apply(C)                      # (n, n): C D (rows of C mapped)
    return transform.apply(np.ascontiguousarray(CD.T))   # (C D)^T D = D^T C D


def _group_exponents(block: np.ndarray, fmt, rule: str) -> np.ndarray:
    """Shared exponents (out,) of one group block (out, g) under the scale rule, float64 working."""
    from torq_ref.mx import block_scale_codes
    from torq_ref.mx.formats import E8M0_BIAS, E8M0_NAN

    # from the values, not only amax: the MSE rule (spec/MX.md MX-4.8) needs them
    codes = block_scale_codes(block, fmt, rule, working_dtype=np.float64)   # (out,)
    if (codes == E8M0_NAN).any():
        raise GPTQError("a weight group overflows the E8M0 scale range")
    return codes.astype(np.int64) - E8M0_BIAS


def _round(col: np.ndarray, exp: np.ndarray, fmt: str) -> np.ndarray:
    """Element rounding of one column (out,) with per-row shared exponents (out,): exact.

    E2M1 (MXFP4) takes the decision table of mx/formats.py directly (TQ-6.9: the same bits as
    decode(encode(.)), -0 included, tested); other formats go through the element codec."""
    t = np.ldexp(col, -exp)
    if fmt == "e2m1":
        from torq_ref.mx.formats import E2M1_VALUES, e2m1_magnitude_code

        mag = np.asarray(E2M1_VALUES[:8], dtype=np.float64)[e2m1_magnitude_code(np.abs(t))]
        return np.ldexp(np.copysign(mag, t), exp)
    return _round_codec(t, exp, fmt)


def _round_codec(t: np.ndarray, exp: np.ndarray, fmt: str) -> np.ndarray:
    """The element codec's rounding of scaled values t with exponents exp (any format)."""
    from torq_ref.mx import decode, encode

    return np.ldexp(decode(encode(t, fmt, saturate=True), fmt), exp)


def _check(W, H, block_size):
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    if W.ndim != 2:
        raise GPTQError(f"weight must be (out, n); got shape {W.shape}")
    n = W.shape[1]
    if H.shape != (n, n):
        raise GPTQError(f"Hessian has shape {H.shape}; the weight's input width needs ({n}, {n})")
    if n % block_size:
        raise GPTQError(f"input width {n} is not a multiple of the MX block size {block_size}")
    if not (np.isfinite(W).all() and np.isfinite(H).all()):
        raise GPTQError("weight or Hessian contains non-finite values")
    if not np.allclose(H, H.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(H).max())):
        raise GPTQError("Hessian is not symmetric")
    return W.copy(), H.copy()


def gptq_quantize(W, H, *, fmt: str = "e2m1", scale_rule: str = "floor", block_size: int = 32,
                  damp: float = GPTQ_DEFAULTS["damp"], act_order: bool = GPTQ_DEFAULTS["act_order"],
                  batch: int = GPTQ_DEFAULTS["batch"]) -> np.ndarray:
    """Fake-quantized weight (out, n) float64 of W (out, n) under Hessian H (n, n) (TQ-7.1).

    Every row of every 32-group of the result is an MX block: element values of ``fmt`` times one
    power-of-two scale chosen by ``scale_rule``."""
    from torq_ref.mx.formats import check_scale_rule, get_format

    f = get_format(fmt)
    rule = check_scale_rule(scale_rule)
    if not (np.isfinite(damp) and damp >= 0):
        raise GPTQError(f"damp must be a finite number >= 0; got {damp!r}")
    if int(batch) < 1:
        raise GPTQError(f"batch must be >= 1; got {batch!r}")
    W, H = _check(W, H, block_size)
    out, n = W.shape
    dead = np.diag(H) <= 0
    H[dead, dead] = 1.0
    H[np.diag_indices(n)] += damp * np.mean(np.diag(H))
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(n)
    W = W[:, perm]                                            # (out, n) in processing order
    H = H[np.ix_(perm, perm)]
    try:
        U = scipy.linalg.cholesky(scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), np.eye(n)),
                                  lower=False)                # H^-1 = U^T U, U upper (n, n)
    except np.linalg.LinAlgError:
        raise GPTQError("Hessian is not positive definite after dampening; raise damp") from None
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)                                  # original column -> processing position
    group_exp = {}                                            # group -> (out,) exponents
    Wt = np.ascontiguousarray(W.T)                            # (n, out): a column of W is a row here
    Qt = np.empty_like(Wt)
    for i1 in range(0, n, batch):
        i2 = min(n, i1 + batch)
        W1 = Wt[i1:i2].copy()                                 # (c, out) current values of the batch
        Err = np.empty((i2 - i1, out))
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            g = col // block_size
            if g not in group_exp:
                p = pos[g * block_size:(g + 1) * block_size]  # processing positions, all >= i1 + i
                vals = np.empty((block_size, out))
                inside = p < i2
                vals[inside] = W1[p[inside] - i1]
                later = p[~inside]
                if later.size:                                # lazy columns: add the batch's pending update
                    vals[~inside] = Wt[later] - U[i1:i1 + i, later].T @ Err[:i]
                group_exp[g] = _group_exponents(vals.T, f, rule)
            w = W1[i]
            q = _round(w, group_exp[g], f.name)
            Qt[i1 + i] = q
            e = (w - q) / U[i1 + i, i1 + i]
            W1[i + 1:] -= U[i1 + i, i1 + i + 1:i2, None] * e[None, :]
            Err[i] = e
        Wt[i2:] -= U[i1:i2, i2:].T @ Err
    return np.ascontiguousarray(Qt[pos].T)                    # back to (out, n), original column order
