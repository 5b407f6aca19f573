"""Optional numba kernels of the max-entropy optimizer (spec/ME.md, section ME-4).

Each kernel here has a pure-NumPy twin in :mod:`torq_ref.rotations.maxent` (the functions named
``_np_<kernel>``) that follows the same arithmetic in the same order, so both give the same bits
(ME-4.3, tested). Determinism does not depend on the thread count: rows are cut into fixed chunks
of ``chunk`` rows, each chunk is summed sequentially and the chunk partials are then summed
sequentially in chunk order (ME-2.2).

Element quantization (exact MXFP4 E2M1, FLOOR scale, round-to-nearest-even, saturating at 6):
for a row with scale exponent ``e`` an element ``y`` maps to the magnitude index
``m`` of ``t = |y| * 2^-e`` given by the decision table ``E2M1_THRESHOLDS`` / ``E2M1_TIE_UP`` of
mx/formats.py (the strict / non-strict comparisons put every tie on the even code), value
``MAG[m] * 2^e`` with the sign of ``y``. The histogram bin is ``0`` for ``m == 0`` (+0 and -0
merged) and ``m + 8 * (y < 0)`` otherwise, so bin 8 is never used (15 live bins).

This module imports numba at import time; :mod:`maxent` imports it lazily and falls back to the
NumPy path when numba is absent.
"""
from __future__ import annotations

import math
import types

import numba as nb
import numpy as np

from ..mx.formats import E2M1_THRESHOLDS, E2M1_TIE_UP, E2M1_VALUES

_MAG = np.array(E2M1_VALUES[:8])
# The E2M1 decision table of mx/formats.py as compile-time constants (fast). numba's on-disk
# cache does not notice an edit of formats.py: maxent_eval.get_kernels("numba") compares these
# kernels with their NumPy twins on the table's decision points once per process.
_THR = tuple(float(v) for v in E2M1_THRESHOLDS)
_UP = tuple(bool(v) for v in E2M1_TIE_UP)


@nb.njit(cache=True, inline="always")
def _magnitude_code(t):
    """E2M1 magnitude code 0..7 of a scaled magnitude t (ties to the even code, saturating)."""
    m = 0
    for k in range(7):          # a tie goes up (>=) where _UP[k], down (>) elsewhere
        m += (t >= _THR[k]) if _UP[k] else (t > _THR[k])
    return m


@nb.njit(cache=True, inline="always")
def _scale_exp(amax):
    """FLOOR shared exponent floor(log2 amax) - 2, clamped to [-127, 127]; amax == 0 -> -127."""
    if amax == 0.0:
        return -127
    _, ex = math.frexp(amax)          # amax = f * 2^ex, f in [0.5, 1): floor(log2 amax) = ex - 1
    e = ex - 3
    if e < -127:
        return -127
    if e > 127:
        return 127
    return e


@nb.njit(cache=True, inline="always")
def _quant(y, e, pow2, mag):
    """(squared error, histogram bin) of element y quantized with shared exponent e."""
    ay = abs(y)
    t = ay * pow2[127 - e]
    m = _magnitude_code(t)
    d = mag[m] * pow2[127 + e] - ay
    if m == 0:
        b = 0
    elif y < 0.0:
        b = m + 8
    else:
        b = m
    return d * d, b


def _full_eval(Y, pow2, chunk):
    """Quantize every row of Y (M, B): exponents E (M,), bins C (M, B), squared errors Err (M, B),
    histogram (16,) and the total squared error (row sums sequential, then chunked)."""
    M, B = Y.shape
    mag = _MAG
    E = np.empty(M, np.int64)
    C = np.empty((M, B), np.uint8)
    Err = np.empty((M, B), np.float64)
    nch = (M + chunk - 1) // chunk
    part = np.zeros(nch)
    hpart = np.zeros((nch, 16), np.int64)
    for ch in nb.prange(nch):
        r1 = min(M, (ch + 1) * chunk)
        acc = 0.0
        for r in range(ch * chunk, r1):
            amax = 0.0
            for k in range(B):
                v = abs(Y[r, k])
                if v > amax:
                    amax = v
            e = _scale_exp(amax)
            E[r] = e
            row = 0.0
            for k in range(B):
                q, b = _quant(Y[r, k], e, pow2, mag)
                Err[r, k] = q
                C[r, k] = b
                hpart[ch, b] += 1
                row += q
            acc += row
        part[ch] = acc
    total = 0.0
    hist = np.zeros(16, np.int64)
    for ch in range(nch):
        total += part[ch]
        hist += hpart[ch]
    return E, C, Err, hist, total


def _plane_prep(Y, Err, i, j, chunk):
    """Per row: max |y| over the columns other than i, j and the sequential sum of their errors."""
    M, B = Y.shape
    om = np.empty(M)
    oe = np.empty(M)
    nch = (M + chunk - 1) // chunk
    for ch in nb.prange(nch):
        for r in range(ch * chunk, min(M, (ch + 1) * chunk)):
            amax = 0.0
            s = 0.0
            for k in range(B):
                if k == i or k == j:
                    continue
                v = abs(Y[r, k])
                if v > amax:
                    amax = v
                s += Err[r, k]
            om[r] = amax
            oe[r] = s
    return om, oe


#: E2M1 magnitude steps MAG[k + 1] - MAG[k]: the value of code m is the sum of the first m steps
#: (0.5 0.5 0.5 0.5 1 1 2), exact in binary, so a code's value needs no table lookup
_STEP = tuple(float(_MAG[k + 1] - _MAG[k]) for k in range(7))


@nb.njit(cache=True, inline="always")
def _code_and_value(t):
    """(E2M1 magnitude code, its magnitude) of a scaled magnitude t, without branches or lookups:
    the code and value of _magnitude_code / _MAG[code] (same decision table, exact sums)."""
    m = 0
    v = 0.0
    for k in range(7):
        c = (t >= _THR[k]) if _UP[k] else (t > _THR[k])
        m += c
        v += _STEP[k] * c
    return m, v


def _plane_trials(Y, E, C, om, oe, i, j, cs, sn, pow2, chunk):
    """Evaluate K rotations of plane (i, j) by angles with cosines cs and sines sn (K,).

    Returns the histogram change (K, 16) relative to the histogram without columns i and j, and
    the total squared error (K,). Rows whose shared exponent moves are requantized in full.
    A row keeps its exponent e0 exactly when 2^(e0+2) <= amax < 2^(e0+3) (for the clamped
    e0 = -127: amax < 2^-124), which avoids frexp on the common path.

    Two passes per angle and chunk: a branch-free pass over the chunk's rows computes every row's
    error total, bins and "exponent moves" flag as if its exponent stayed (the compiler can
    vectorize it); a sequential pass then requantizes the flagged rows and adds the row totals in
    row order. Each row's total is ``oe + qa + qb`` (or ``other + qa + qb``) and the chunk sum
    runs over the rows in order, as in the NumPy twin: the same bits (ME-4.3).
    """
    M, B = Y.shape
    K = cs.shape[0]
    mag = _MAG
    nch = (M + chunk - 1) // chunk
    part = np.zeros((nch, K))
    hpart = np.zeros((nch, K, 16), np.int64)
    for ch in nb.prange(nch):
        r0 = ch * chunk
        L = min(M, r0 + chunk) - r0
        # the chunk's per-row inputs, contiguous                                       (L,) each
        yi = np.empty(L)
        yj = np.empty(L)
        inv0 = np.empty(L)
        sc0 = np.empty(L)
        lo = np.empty(L)
        hi = np.empty(L)
        o = np.empty(L)
        oer = np.empty(L)
        for r in range(L):
            e0 = E[r0 + r]
            yi[r] = Y[r0 + r, i]
            yj[r] = Y[r0 + r, j]
            inv0[r] = pow2[127 - e0]
            sc0[r] = pow2[127 + e0]
            lo[r] = 0.0 if e0 == -127 else pow2[129 + e0]
            hi[r] = pow2[130 + e0]
            o[r] = om[r0 + r]
            oer[r] = oe[r0 + r]
        total = np.empty(L)
        bin_a = np.empty(L, np.uint8)
        bin_b = np.empty(L, np.uint8)
        moves = np.empty(L, np.uint8)
        for k in range(K):
            c = cs[k]
            s = sn[k]
            for r in range(L):                     # branch-free: the exponent stays
                a = c * yi[r] - s * yj[r]
                b = s * yi[r] + c * yj[r]
                aa = abs(a)
                ab = abs(b)
                amax = max(o[r], max(aa, ab))
                moves[r] = (amax < lo[r]) | (amax >= hi[r])
                ma, va = _code_and_value(aa * inv0[r])
                mb, vb = _code_and_value(ab * inv0[r])
                da = va * sc0[r] - aa
                db = vb * sc0[r] - ab
                total[r] = oer[r] + da * da + db * db
                bin_a[r] = (ma + 8 * (a < 0.0)) * (ma != 0)
                bin_b[r] = (mb + 8 * (b < 0.0)) * (mb != 0)
            acc = 0.0
            h = hpart[ch, k]
            for r in range(L):                     # in row order: the rows whose exponent moves
                if moves[r]:
                    rr = r0 + r
                    a = c * yi[r] - s * yj[r]
                    b = s * yi[r] + c * yj[r]
                    e = _scale_exp(max(o[r], max(abs(a), abs(b))))
                    other = 0.0
                    for col in range(B):
                        if col == i or col == j:
                            continue
                        q, bb = _quant(Y[rr, col], e, pow2, mag)
                        other += q
                        h[bb] += 1
                        h[C[rr, col]] -= 1
                    qa, ba = _quant(a, e, pow2, mag)
                    qb, bb2 = _quant(b, e, pow2, mag)
                    acc += other + qa + qb
                    h[ba] += 1
                    h[bb2] += 1
                else:
                    acc += total[r]
                    h[bin_a[r]] += 1
                    h[bin_b[r]] += 1
            part[ch, k] = acc
    err = np.zeros(K)
    hist = np.zeros((K, 16), np.int64)
    for ch in range(nch):
        for k in range(K):
            err[k] += part[ch, k]
            for t in range(16):
                hist[k, t] += hpart[ch, k, t]
    return hist, err


def _apply_rotation(Y, E, C, Err, i, j, c, s, pow2, chunk):
    """Rotate columns i, j of Y in place by (c, s) and refresh E, C, Err of the touched entries."""
    M, B = Y.shape
    mag = _MAG
    nch = (M + chunk - 1) // chunk
    for ch in nb.prange(nch):
        for r in range(ch * chunk, min(M, (ch + 1) * chunk)):
            yi = Y[r, i]
            yj = Y[r, j]
            a = c * yi - s * yj
            b = s * yi + c * yj
            Y[r, i] = a
            Y[r, j] = b
            amax = 0.0
            for k in range(B):
                v = abs(Y[r, k])
                if v > amax:
                    amax = v
            e = _scale_exp(amax)
            if e == E[r]:
                q, bb = _quant(a, e, pow2, mag)
                Err[r, i] = q
                C[r, i] = bb
                q, bb = _quant(b, e, pow2, mag)
                Err[r, j] = q
                C[r, j] = bb
            else:
                E[r] = e
                for k in range(B):
                    q, bb = _quant(Y[r, k], e, pow2, mag)
                    Err[r, k] = q
                    C[r, k] = bb


def _rotate_blocks(X, R, chunk):
    """Y = X @ R for X (M, B), with every dot product summed sequentially over k (fixed order)."""
    M, B = X.shape
    Y = np.empty((M, B))
    nch = (M + chunk - 1) // chunk
    for ch in nb.prange(nch):
        for r in range(ch * chunk, min(M, (ch + 1) * chunk)):
            for col in range(B):
                acc = X[r, 0] * R[0, col]
                for k in range(1, B):
                    acc += X[r, k] * R[k, col]
                Y[r, col] = acc
    return Y


# Each kernel is compiled twice from the same source: a parallel version (prange over chunks) and
# a serial one (prange runs as range) for data of at most two chunks, where starting threads
# costs more than it saves. Both perform the same operations in the same order (ME-4.3).
def _renamed(fn, suffix):
    """A copy of fn under another qualified name: numba's on-disk cache is keyed by the name, not
    by the compile flags, so the serial and parallel builds must not share one."""
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                           fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    return g


def _dispatch(fn):
    par = nb.njit(cache=True, parallel=True)(_renamed(fn, "_parallel"))
    ser = nb.njit(cache=True)(_renamed(fn, "_serial"))

    def run(*args):
        rows, chunk = args[0].shape[0], args[-1]
        return (ser if rows <= 2 * chunk else par)(*args)

    run.__name__ = fn.__name__.lstrip("_")
    run.__doc__ = fn.__doc__
    run.parallel, run.serial = par, ser
    return run


full_eval = _dispatch(_full_eval)
plane_prep = _dispatch(_plane_prep)
plane_trials = _dispatch(_plane_trials)
apply_rotation = _dispatch(_apply_rotation)
rotate_blocks = _dispatch(_rotate_blocks)
