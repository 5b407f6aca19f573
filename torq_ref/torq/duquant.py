"""DuQuant's outlier-aware block rotations and zig-zag permutation, with 32-blocks (spec/TQ.md
TQ-2.9; Lin et al., "DuQuant: Distributing Outliers via Dual Transformation Makes Stronger
Quantized LLMs", NeurIPS 2024, arXiv 2406.01721; DuQuant++, arXiv 2604.17789, sets the rotation
block to the MXFP4 group size 32).

Per 32-block, the rotation is built greedily from calibration rows X_b (N, 32): find the channel d
with the largest magnitude of X_b R, and append the orthogonal G_d = P_d diag(1, Q) H, where H is
the normalized 32 x 32 Sylvester Hadamard (its first row is uniform), P_d swaps rows 0 and d and
Q is a seeded Haar rotation of the other 31 coordinates (so that repeated steps do not undo each
other): row d of G_d is uniform, so channel d's value is spread evenly over the block. After
``steps`` steps the prefix with the smallest max |X_b R| is kept (the identity included).

The zig-zag permutation sorts channels by their max magnitude and deals them to the blocks
0, 1, .., K-1, K-1, .., 1, 0, 0, 1, .. so that every block gets a similar share of large channels.

The full transform is DuQuant's rotation - permutation - rotation: x -> ((x R1) P) R2 with R1, R2
block-diagonal (one rotation per 32-block).
"""
from __future__ import annotations

import numpy as np

#: greedy steps per block rotation
DEFAULT_STEPS = 16


def _haar(rng: np.random.Generator, K: int, m: int) -> np.ndarray:
    """(K, m, m) Haar-random orthogonal matrices (QR of Gaussians, signs fixed by diag R)."""
    q, r = np.linalg.qr(rng.standard_normal((K, m, m)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def _spreaders(d: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """(K, b, b) orthogonal G_k with row d_k = 1 / sqrt(b): x -> x G_k spreads coordinate d_k
    evenly over the block. G = P_d diag(1, Q) H."""
    from torq_ref.rotations.baselines import sylvester_hadamard

    K = d.size
    mid = np.zeros((K, b, b))
    mid[:, 0, 0] = 1.0
    mid[:, 1:, 1:] = _haar(rng, K, b - 1)
    G = mid @ sylvester_hadamard(b)                          # row 0 of every G_k is uniform
    k = np.arange(K)
    row0 = G[k, 0].copy()
    G[k, 0] = G[k, d]
    G[k, d] = row0                                           # P_d: row d is now the uniform row
    return G


def block_rotations(X: np.ndarray, block_size: int, steps: int = DEFAULT_STEPS, seed: int = 0, *,
                    prune: bool = True) -> np.ndarray:
    """(n / b, b, b): the greedy outlier rotation of every 32-block of X (N, n) (TQ-2.9), all
    blocks at once: per step, each block's largest channel is spread by its G_d; each block
    keeps the prefix with the smallest max |x R| (the identity included).

    ``prune`` (exact): a rotation keeps every row's norm, so max |x R| over the rows is at least
    L = max_i ||x_i|| / sqrt(b), and a row with ||x_i|| < L can never hold the maximum (nor the
    channel that attains it). Only the rows with ||x_i|| >= L are carried through the steps."""
    X = np.asarray(X, dtype=np.float64)
    N, n = X.shape
    b = block_size
    if n % b:
        raise ValueError(f"width {n} is not a multiple of block size {b}")
    K = n // b
    rng = np.random.default_rng(seed)
    Y = np.ascontiguousarray(X.reshape(N, K, b).transpose(1, 0, 2))    # (K, N, b)
    if prune:
        norms = np.sqrt(np.einsum("knb,knb->kn", Y, Y))                  # (K, N) row norms per block
        keep = int((norms >= norms.max(axis=1, keepdims=True) / np.sqrt(b)).sum(axis=1).max())
        idx = np.argsort(-norms, axis=1, kind="stable")[:, :keep]        # (K, r) largest rows first
        Y = np.take_along_axis(Y, idx[:, :, None], axis=1)               # (K, r, b)
    R = np.broadcast_to(np.eye(b), (K, b, b)).copy()
    best, best_max = R.copy(), np.abs(Y).max(axis=(1, 2))              # (K, b, b), (K,)
    for _ in range(steps):
        d = np.argmax(np.abs(Y).max(axis=1), axis=1)                   # (K,) largest channel
        G = _spreaders(d, b, rng)
        Y = Y @ G
        R = R @ G
        m = np.abs(Y).max(axis=(1, 2))
        better = m < best_max
        best[better], best_max[better] = R[better], m[better]
    return best


def outlier_rotation(Xb: np.ndarray, steps: int = DEFAULT_STEPS, seed: int = 0) -> np.ndarray:
    """The greedy outlier-spreading rotation R (b, b) of one block's rows Xb (N, b) (TQ-2.9)."""
    Xb = np.asarray(Xb, dtype=np.float64)
    return block_rotations(Xb, Xb.shape[1], steps, seed)[0]


def zigzag_permutation(channel_max: np.ndarray, block_size: int) -> np.ndarray:
    """perm (n,): new position p holds old channel perm[p]; channels dealt to blocks in zig-zag
    order of decreasing ``channel_max`` (ties by channel index)."""
    cm = np.asarray(channel_max, dtype=np.float64)
    n = cm.size
    if n % block_size:
        raise ValueError(f"width {n} is not a multiple of block size {block_size}")
    K = n // block_size
    order = np.argsort(-cm, kind="stable")                 # channels, largest first
    r = np.arange(n) % (2 * K)
    block = np.where(r < K, r, 2 * K - 1 - r)              # 0..K-1, K-1..0, ...
    slots = [list(order[block == k]) for k in range(K)]    # each block gets exactly block_size
    return np.array([c for k in range(K) for c in slots[k]], dtype=np.int64)


def _block_diag(R: np.ndarray) -> np.ndarray:
    K, b, _ = R.shape
    out = np.zeros((K * b, K * b))
    for k in range(K):
        out[k * b:(k + 1) * b, k * b:(k + 1) * b] = R[k]
    return out


def duquant_transform(X: np.ndarray, block_size: int = 32, steps: int = DEFAULT_STEPS, seed: int = 0):
    """The :class:`torq_ref.model.Transform` x -> ((x R1) P) R2 fitted on rows X (N, n) (TQ-2.9)."""
    from torq_ref.model import Transform

    X = np.asarray(X, dtype=np.float64)
    N, n = X.shape
    s1, s2 = np.random.SeedSequence(seed).generate_state(2)
    R1 = block_rotations(X, block_size, steps, int(s1))              # (K, b, b)
    K = n // block_size
    Y = (X.reshape(N, K, block_size).transpose(1, 0, 2) @ R1).transpose(1, 0, 2).reshape(N, n)   # X B1
    perm = zigzag_permutation(np.abs(Y).max(axis=0), block_size)
    R2 = block_rotations(Y[:, perm], block_size, steps, int(s2))     # (K, b, b)
    M = _block_diag(R1)[:, perm]                                     # B1 P: x @ P = x[:, perm]
    return Transform(matrix=M, block=R2, block_size=block_size)
