"""Code entropy of the exact MXFP4 quantizer (spec/ME.md, section ME-1).

TORQ (arXiv 2605.19561, "micro level") measures how evenly a tensor uses the FP4 codebook by the
Shannon entropy of the histogram of the E2M1 values that MXFP4 quantization produces. The 16 E2M1
codes hold 15 distinct values (+0 and -0 are the same value), so the entropy is at most
log2(15) = 3.907 bits.

Histogram bins (used throughout torq_ref.rotations): bin 0 is zero (codes 0x0 and 0x8), bins 1..7
the positive values 0.5 .. 6 (codes 0x1..0x7) and bins 9..15 the negative values (codes
0x9..0xF); bin 8 is always empty.

Clauses: ME-1.1 ``code_entropy``, ME-1.2 ``entropy_from_counts`` (summed over sorted counts, so
invariant under permutations), ME-1.3 ``code_histogram`` and bad input.
"""
from __future__ import annotations

import math

import numpy as np

#: Number of histogram bins (bin 8, negative zero, is merged into bin 0 and stays empty).
N_BINS = 16
#: Largest possible code entropy in bits: log2 of the 15 distinct E2M1 values.
MAX_ENTROPY_BITS = math.log2(15)


class EntropyInputError(ValueError):
    """Bad input to the code-entropy functions."""


def code_histogram(codes: np.ndarray) -> np.ndarray:
    """Integer histogram (16,) of E2M1 element codes (uint8 0..15) with -0 (0x8) merged into +0."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"E2M1 codes must be uint8, got {codes.dtype}")
    if codes.size and int(codes.max()) > 15:
        raise EntropyInputError(f"E2M1 codes are 4-bit; found code {int(codes.max())}")
    counts = np.bincount(codes.ravel(), minlength=N_BINS).astype(np.int64)  # (16,)
    counts[0] += counts[8]
    counts[8] = 0
    return counts


def entropy_from_counts(counts) -> float:
    """Shannon entropy in bits of an integer histogram.

    The terms -p log2 p are summed over the nonzero counts sorted ascending, so the result depends
    only on the multiset of counts: it is exactly invariant to any relabelling of the bins (for
    example a global sign flip) and, the counts being integers, to the order of the data.
    """
    c = np.asarray(counts)
    if c.dtype.kind not in "iu":
        raise TypeError(f"counts must be integers, got {c.dtype}")
    if c.size and int(c.min()) < 0:
        raise EntropyInputError("counts must be non-negative")
    return _entropy_of_list(c.ravel().tolist())


def entropies_from_counts(hists) -> list[float]:
    """ME-1.2 for each row of an integer (K, bins) array of histograms: the same floats as
    ``[entropy_from_counts(h) for h in hists]`` (the same Python arithmetic in the same order),
    checked once for the whole array; the optimizer's per-trial path (spec/TQ.md TQ-6.9)."""
    c = np.asarray(hists)
    if c.dtype.kind not in "iu" or c.ndim != 2:
        raise TypeError(f"histograms must be a 2-D integer array, got {c.dtype} {c.shape}")
    if c.size and int(c.min()) < 0:
        raise EntropyInputError("counts must be non-negative")
    return [_entropy_of_list(row) for row in c.tolist()]


def _entropy_of_list(counts: list) -> float:
    """The sum of ME-1.2 over a list of non-negative Python ints."""
    nz = sorted(v for v in counts if v > 0)
    if not nz:
        raise EntropyInputError("entropy of an empty histogram is undefined")
    n = float(sum(nz))
    h = 0.0
    for v in nz:
        p = v / n
        h -= p * math.log2(p)
    return h + 0.0  # turn -0.0 (a single used bin) into +0.0


def code_entropy(x, *, block_size: int = 32, scale_rule: str = "floor") -> float:
    """Entropy (bits) of the E2M1 code histogram of MXFP4-quantizing x along its last axis.

    The codes come from :func:`torq_ref.mx.quantize` (fmt "e2m1", blocks of ``block_size`` along
    the last axis, the given scale rule), so they are the exact MXFP4 codes.
    """
    from torq_ref import mx  # the exact MXFP4 codec (spec/MX.md)

    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"code_entropy needs a float array, got {x.dtype}")
    if x.ndim == 0 or x.size == 0:
        raise EntropyInputError(f"code_entropy needs a non-empty array with an axis, got shape {x.shape}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise EntropyInputError(f"block_size must be a positive integer, got {block_size!r}")
    if x.shape[-1] % block_size:
        raise EntropyInputError(
            f"last axis ({x.shape[-1]}) is not divisible by block_size ({block_size})")
    if not np.all(np.isfinite(x)):
        raise EntropyInputError("code_entropy needs finite values (NaN/Inf would give NaN scales)")
    t = mx.quantize(x, "e2m1", block_size=int(block_size), axis=-1, scale_rule=scale_rule)
    return entropy_from_counts(code_histogram(np.asarray(t.codes, dtype=np.uint8)))
