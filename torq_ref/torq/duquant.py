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


def _spreader(b: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """G (b, b) orthogonal with row d = 1 / sqrt(b): x -> x G spreads coordinate d evenly."""
    from torq_ref.rotations.baselines import random_orthogonal, sylvester_hadamard

    mid = np.eye(b)
    mid[1:, 1:] = random_orthogonal(b - 1, seed=int(rng.integers(2**31)))
    G = mid @ sylvester_hadamard(b)
    G[[0, d]] = G[[d, 0]]                                  # P_d: row d is now the uniform row
    return G


def outlier_rotation(Xb: np.ndarray, steps: int = DEFAULT_STEPS, seed: int = 0) -> np.ndarray:
    """Greedy outlier-spreading rotation R (b, b) of one block's rows Xb (N, b) (TQ-2.9)."""
    Xb = np.asarray(Xb, dtype=np.float64)
    b = Xb.shape[1]
    rng = np.random.default_rng(seed)
    R = np.eye(b)
    best, best_max = R, np.abs(Xb).max()
    for _ in range(steps):
        col_max = np.abs(Xb @ R).max(axis=0)               # (b,)
        R = R @ _spreader(b, int(np.argmax(col_max)), rng)
        m = np.abs(Xb @ R).max()
        if m < best_max:
            best, best_max = R, m
    return best


def block_rotations(X: np.ndarray, block_size: int, steps: int, seed: int) -> np.ndarray:
    """(n / b, b, b): one outlier rotation per block of X (N, n)."""
    n = X.shape[1]
    seeds = np.random.SeedSequence(seed).generate_state(n // block_size)
    return np.stack([outlier_rotation(X[:, k * block_size:(k + 1) * block_size], steps, int(s))
                     for k, s in enumerate(seeds)])


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
    s1, s2 = np.random.SeedSequence(seed).generate_state(2)
    R1 = block_rotations(X, block_size, steps, int(s1))              # (K, b, b)
    B1 = _block_diag(R1)                                             # (n, n)
    Y = X @ B1
    perm = zigzag_permutation(np.abs(Y).max(axis=0), block_size)
    P = np.zeros((X.shape[1],) * 2)
    P[perm, np.arange(X.shape[1])] = 1.0                             # x @ P = x[:, perm]
    R2 = block_rotations(Y[:, perm], block_size, steps, int(s2))     # (K, b, b)
    return Transform(matrix=B1 @ P, block=R2, block_size=block_size)
