"""Per-window token metrics of a quantized model against the FP32 model (spec/EV.md section 1).

For one window, with P the FP32 next-token distribution and Q the quantized row's at every
scored position t (log-softmax in float64):

* ``nll``  = mean_t  -log Q_t(target_t)                               (EV-1.2)
* ``kld``  = mean_t  sum_v P_t(v) (log P_t(v) - log Q_t(v))   nats    (EV-1.3)
* ``top1`` = mean_t  [argmax_v Q_t = argmax_v P_t]                     (EV-1.4)

the quantities llama.cpp's ``perplexity --kl-divergence`` reports as PPL, "Mean KLD" and
"Same top p". The FP32 log-probabilities of a window are computed once (``ref_logprobs``) and
reused for every row (EV-1.5); the work runs over chunks of positions so that the float64
temporaries stay at a few times ``chunk x V`` elements.
"""
from __future__ import annotations

import numpy as np

#: positions per chunk: 64 x 151936 float64 is 78 MB per temporary
CHUNK = 64


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """float64 log-softmax over the last axis; z (c, V) -> (c, V)."""
    z = np.array(z, dtype=np.float64)                   # a float64 copy we may overwrite
    z -= z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (c, 1)
    z -= lse
    return z


def _check_logits(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 2:
        raise ValueError(f"{name} must be (positions, vocab) with vocab >= 2; got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a float array; got {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains non-finite values (inf or nan)")
    return a


def _align(rows: int, targets: np.ndarray, name: str) -> int:
    """Number of scored positions: logits of positions 0..S-2 predict targets of length S-1;
    a caller may pass the whole window (S rows, the last one unused) or the sliced S-1 rows."""
    n = targets.shape[0]
    if rows not in (n, n + 1):
        raise ValueError(f"{name} has {rows} positions but targets has {n}: expected {n} or {n + 1} "
                         f"(the window's last position predicts nothing)")
    return n


def ref_logprobs(ref_logits) -> np.ndarray:
    """FP32 model's log-probabilities of one window, float64 (S, V); compute once, reuse for
    every row via ``window_metrics(..., ref_logp=...)`` (EV-1.5)."""
    ref_logits = _check_logits(ref_logits, "ref_logits")
    out = np.empty(ref_logits.shape, dtype=np.float64)
    for i in range(0, ref_logits.shape[0], CHUNK):
        out[i:i + CHUNK] = _log_softmax(ref_logits[i:i + CHUNK])
    return out


class RefTerms:
    """What every row of a window reads from the FP32 log-probabilities ``ref_logp`` (c, V), per
    CHUNK of positions: P = exp(log P) and argmax_v P, computed once per window (EV-1.5, TQ-6.9)
    with the very calls :func:`window_metrics` would make per row, so the bits are the same."""

    def __init__(self, ref_logp: np.ndarray, n: int):
        self.logp = np.asarray(ref_logp, dtype=np.float64)
        self.n = int(n)
        self.p, self.top = [], []
        for i in range(0, self.n, CHUNK):
            lp = self.logp[i:min(self.n, i + CHUNK)]
            self.p.append(np.exp(lp))
            self.top.append(np.argmax(lp, axis=-1))


def window_metrics(ref_logits, logits, targets, *, ref_logp: np.ndarray | None = None,
                   per_position: bool = False, ref_terms: RefTerms | None = None) -> dict:
    """Means over the scored positions of one window (EV-1.1 .. EV-1.4).

    ``ref_logits`` (S, V) or (S-1, V): the FP32 model's logits (may be None when ``ref_logp``,
    the output of :func:`ref_logprobs`, is given); ``logits``: the quantized row's, same shape;
    ``targets`` (S-1,): the next tokens. Returns {"nll", "kld", "top1", "n"} (floats, n an int),
    and "kld_pos" (n,) float64 when ``per_position``."""
    if ref_terms is not None:
        ref_logp = ref_terms.logp
    targets = np.asarray(targets)
    if targets.ndim != 1 or targets.shape[0] < 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be a non-empty 1-d integer array; got {targets.dtype} {targets.shape}")
    logits = _check_logits(logits, "logits")
    if ref_logp is None:
        if ref_logits is None:
            raise ValueError("give ref_logits or ref_logp")
        ref_logp = ref_logprobs(ref_logits)
    else:
        ref_logp = np.asarray(ref_logp, dtype=np.float64)
    if ref_logp.shape[1:] != logits.shape[1:]:
        raise ValueError(f"vocab sizes differ: reference {ref_logp.shape}, logits {logits.shape}")
    n = _align(logits.shape[0], targets, "logits")
    _align(ref_logp.shape[0], targets, "ref_logits")
    if ref_terms is not None and ref_terms.n != n:
        raise ValueError(f"ref_terms cover {ref_terms.n} positions, the targets {n}")
    V = logits.shape[1]
    if targets.min() < 0 or targets.max() >= V:
        raise ValueError(f"targets must lie in [0, {V}); got range [{targets.min()}, {targets.max()}]")
    nll = np.empty(n)
    kld = np.empty(n)
    same = np.empty(n, dtype=bool)
    for i in range(0, n, CHUNK):
        j = min(n, i + CHUNK)
        lq = _log_softmax(logits[i:j])                       # (c, V)
        lp = ref_logp[i:j]                                   # (c, V)
        nll[i:j] = -lq[np.arange(j - i), targets[i:j]]
        k = i // CHUNK
        p = np.exp(lp) if ref_terms is None else ref_terms.p[k]
        kld[i:j] = np.einsum("cv,cv->c", p, lp - lq)
        # ties: np.argmax takes the lowest token id, on both sides (EV-1.4)
        top_p = np.argmax(lp, axis=-1) if ref_terms is None else ref_terms.top[k]
        same[i:j] = np.argmax(lq, axis=-1) == top_p
    out = {"nll": float(nll.mean()), "kld": float(kld.mean()), "top1": float(same.mean()), "n": int(n)}
    if per_position:
        out["kld_pos"] = kld
    return out
