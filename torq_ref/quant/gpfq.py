"""GPFQ for MX weight formats, in NumPy (spec/TQ.md TQ-7.5, its measured property TQ-7.8; Lybrand and Saab, "A greedy
algorithm for quantizing neural networks", JMLR 22 (2021), arXiv 2010.15979; Zhang, Zhou and Saab,
"Post-training quantization for neural networks with provable guarantees", SIAM J. Math. Data Sci.
2023, arXiv 2201.11113, whose form with quantized inputs is used here).

A linear layer y = x W^T, W (out, n), sees the float inputs X (N, n) in the float model and the
inputs Xq (N, n) in the quantized model (at W4A4: the MXFP4 activations). GPFQ walks the input
channels t = 0 .. n-1 in index order, keeping the residual u_t = sum_{s <= t} (w_s X_s - q_s Xq_s)
(N, out) of the layer output, and rounds each column to the grid value nearest to the one that
minimises || u_{t-1} + w_t X_t - q Xq_t ||:

    q_t = Q( <Xq_t, u_{t-1} + w_t X_t> / ||Xq_t||^2 )

With A = Xq^T X and B = Xq^T Xq (n, n) the argument is w_t + (r_t + w_t (A_tt - B_tt)) / B_tt,
r_t = sum_{s < t} (A_ts w_s - B_ts q_s), so only the two Gram matrices are needed (computed in
float64); the sums over s are applied lazily in batches of ``batch`` columns. Unlike GPTQ it
corrects the error of the quantized inputs too (Xq != X), and with Xq = X and B diagonal it is RTN.

MX groups: the E8M0 scale of every 32-group along the input dimension is chosen by the scale rule
from the group's original weights (the ``mse`` rule searches it, spec/MX.md MX-4.8), before any
column moves; each argument is then rounded to the element format with that scale (saturating).
"""
from __future__ import annotations

import numpy as np

#: the knobs and their defaults (TQ-7.5)
GPFQ_DEFAULTS = {"batch": 128}


class GPFQError(ValueError):
    """Bad input to GPFQ: shapes, non-finite values, bad options, named in the message (TQ-7.5)."""


def _check(W, X, Xq, block_size):
    """(W, X, Xq) as float64 after the input checks of TQ-7.5 (GPFQError naming the problem)."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise GPFQError(f"weight must be (out, n); got shape {W.shape}")
    n = W.shape[1]
    X = np.asarray(X, dtype=np.float64)
    Xq = X if Xq is None else np.asarray(Xq, dtype=np.float64)
    for name, a in (("X", X), ("Xq", Xq)):
        if a.ndim != 2 or a.shape[1] != n:
            raise GPFQError(f"{name} has shape {a.shape}; the weight's input width needs (rows, {n})")
    if X.shape != Xq.shape:
        raise GPFQError(f"X {X.shape} and Xq {Xq.shape} must be the same rows")
    if len(X) == 0:
        raise GPFQError("GPFQ needs at least one calibration row")
    if n % block_size:
        raise GPFQError(f"input width {n} is not a multiple of the MX block size {block_size}")
    if not (np.isfinite(W).all() and np.isfinite(X).all() and np.isfinite(Xq).all()):
        raise GPFQError("weight or inputs contain non-finite values")
    return W, X, Xq


def gpfq_quantize(W, X, Xq=None, *, fmt: str = "e2m1", scale_rule: str = "floor", block_size: int = 32,
                  batch: int = GPFQ_DEFAULTS["batch"]) -> np.ndarray:
    """Fake-quantized weight (out, n) float64 of W (out, n) for float inputs X (N, n) and quantized
    inputs Xq (N, n) (None: Xq = X) (TQ-7.5). Every row of every 32-group of the result is an MX
    block: element values of ``fmt`` times the group's power-of-two scale."""
    from torq_ref.mx import block_scale_codes, decode, encode
    from torq_ref.mx.formats import E8M0_BIAS, E8M0_NAN, check_scale_rule, get_format

    f = get_format(fmt)
    rule = check_scale_rule(scale_rule)
    if int(batch) < 1:
        raise GPFQError(f"batch must be >= 1; got {batch!r}")
    W, X, Xq = _check(W, X, Xq, block_size)
    out, n = W.shape
    codes = block_scale_codes(W.reshape(out, n // block_size, block_size), f, rule,
                              working_dtype=np.float64)                 # (out, n / bs)
    if (codes == E8M0_NAN).any():
        raise GPFQError("a weight group overflows the E8M0 scale range")
    exps = codes.astype(np.int64) - E8M0_BIAS
    A = Xq.T @ X                                                        # (n, n): A_ts = Xq_t . X_s
    B = Xq.T @ Xq                                                       # (n, n)
    Wt = np.ascontiguousarray(W.T)                                      # (n, out): column t is row t
    Qt = np.empty_like(Wt)
    Racc = np.zeros_like(Wt)                                            # r_t of the columns not yet done
    for i1 in range(0, n, int(batch)):
        i2 = min(n, i1 + int(batch))
        for t in range(i1, i2):
            w = Wt[t]
            e = exps[:, t // block_size]
            if B[t, t] > 0:
                arg = w + (Racc[t] + w * (A[t, t] - B[t, t])) / B[t, t]
            else:                                                       # dead quantized input: RTN
                arg = w
            Qt[t] = np.ldexp(decode(encode(np.ldexp(arg, -e), f.name, saturate=True), f.name), e)
            Racc[t + 1:i2] += A[t + 1:i2, t, None] * w[None, :] - B[t + 1:i2, t, None] * Qt[t][None, :]
        Racc[i2:] += A[i2:, i1:i2] @ Wt[i1:i2] - B[i2:, i1:i2] @ Qt[i1:i2]
    return np.ascontiguousarray(Qt.T)
