"""Optional numba kernels for plane rotations (spec/SH.md, section SH-1 and SH-2).

Each kernel here has a pure-NumPy twin in ``givens.py`` / ``schur_horn.py`` that performs the
same floating-point operations in the same order, so both paths give identical bits
(SH-1.6, SH-2.9). numba is an optional dependency (the ``fast`` extra): ``load()`` returns
``None`` when it is not installed and callers fall back to NumPy. No ``fastmath`` and no
``parallel``: results must not depend on the thread count, and LLVM must not contract
``c*u - s*v`` into a fused multiply-add (NumPy never does).
"""
from __future__ import annotations

import functools
import math


@functools.lru_cache(maxsize=1)
def load():
    """Return the namespace of compiled kernels, or None when numba is unavailable."""
    try:
        import numba
        import numpy as np
    except ImportError:  # pragma: no cover - exercised only without the `fast` extra
        return None

    njit = numba.njit(cache=False, nogil=True, fastmath=False)

    @njit
    def apply_rows(y, ii, jj, cc, ss, reverse, transpose):
        # y: (n, m) float64 C-contiguous; rotation r mixes rows ii[r], jj[r]:
        #   y[p] <- c*y[p] - s*y[q],  y[q] <- s*y[p] + c*y[q]   (s negated when transpose)
        k = ii.shape[0]
        m = y.shape[1]
        for t in range(k):
            r = k - 1 - t if reverse else t
            p = ii[r]
            q = jj[r]
            c = cc[r]
            s = -ss[r] if transpose else ss[r]
            for col in range(m):
                u = y[p, col]
                v = y[q, col]
                y[p, col] = c * u - s * v
                y[q, col] = s * u + c * v

    @njit
    def build_diagonal(a, idx_of_rank, y, tau, out_i, out_j, out_c, out_s):
        # a: (n, n) symmetric float64 work matrix (overwritten);
        # idx_of_rank: (n,) int64, diag(a)[idx_of_rank] is non-increasing;
        # y: (n,) float64 target at each rank, non-increasing.
        # Returns the number of rotations written to out_*.
        n = a.shape[0]
        # active ranks (unmatched), ascending
        active = idx_of_rank.copy()  # reused as storage for ranks
        n_act = 0
        for r in range(n):
            p = idx_of_rank[r]
            if abs(a[p, p] - y[r]) > tau:
                active[n_act] = r
                n_act += 1
        act_idx = idx_of_rank.copy()  # matrix indices of the active ranks (first n_act used)
        dev = np.empty(n, np.float64)  # diag - target of the active ranks (contiguous copy)
        for t in range(n_act):
            act_idx[t] = idx_of_rank[active[t]]
            dev[t] = a[act_idx[t], act_idx[t]] - y[active[t]]
        count = 0
        while n_act >= 2:
            # last active rank with an excess
            jpos = -1
            for t in range(n_act - 1, -1, -1):
                if dev[t] > tau:
                    jpos = t
                    break
            if jpos < 0:
                break
            # first later active rank with a deficit
            kpos = -1
            for t in range(jpos + 1, n_act):
                if dev[t] < -tau:
                    kpos = t
                    break
            if kpos < 0:
                break
            rj = active[jpos]
            rk = active[kpos]
            ij = act_idx[jpos]
            ik = act_idx[kpos]
            excess = a[ij, ij] - y[rj]
            deficit = y[rk] - a[ik, ik]
            if excess <= deficit:
                p = ij   # pinned index
                q = ik
                z = y[rj]
                pin_pos = jpos
            else:
                p = ik
                q = ij
                z = y[rk]
                pin_pos = kpos
            av = a[p, p]
            bv = a[q, q]
            m = a[p, q]
            # keep z inside [min(a, b), max(a, b)] (guards rounding in the sortedness invariant)
            lo = min(av, bv)
            hi = max(av, bv)
            if z < lo:
                z = lo
            if z > hi:
                z = hi
            num = av - z
            disc = math.sqrt(m * m - num * (bv - z))
            sgn = 1.0 if m >= 0.0 else -1.0
            den = m + sgn * disc
            if num == 0.0:
                c = 1.0
                s = 0.0
            elif den == 0.0:
                c = 0.0
                s = 1.0
            else:
                tt = num / den
                # c = 1/hypot(1, t), s = c t, written out so NumPy and numba round alike
                if abs(tt) <= 1.0:
                    c = 1.0 / math.sqrt(1.0 + tt * tt)
                    s = c * tt
                else:
                    u = 1.0 / tt
                    w = 1.0 / math.sqrt(1.0 + u * u)
                    c = abs(u) * w
                    s = w if tt > 0.0 else -w
            # rotate rows/columns p, q over the active indices (pinned ones are never read again)
            for t in range(n_act):
                kk = act_idx[t]
                if kk == p or kk == q:
                    continue
                u = a[p, kk]
                v = a[q, kk]
                nu = c * u - s * v
                nv = s * u + c * v
                a[p, kk] = nu
                a[q, kk] = nv
                a[kk, p] = nu
                a[kk, q] = nv
            newm = c * s * (av - bv) + (c * c - s * s) * m
            a[p, p] = z
            a[q, q] = (av + bv) - z
            a[p, q] = newm
            a[q, p] = newm
            out_i[count] = p
            out_j[count] = q
            out_c[count] = c
            out_s[count] = s
            count += 1
            # drop the pinned rank; also the partner if it matched by coincidence
            w = 0
            for t in range(n_act):
                r = active[t]
                ix = act_idx[t]
                if t == pin_pos:
                    continue
                dv = dev[t]
                if ix == q:
                    dv = a[q, q] - y[r]
                    if abs(dv) <= tau:
                        continue
                active[w] = r
                act_idx[w] = ix
                dev[w] = dv
                w += 1
            n_act = w
        return count

    @njit
    def givens_factor(v, out_i, out_j, out_c, out_s):
        # v: (n, n) orthogonal with det +1, overwritten. Column operations reduce v to I;
        # returns the count of rotations H_1..H_K with v @ H_1 ... H_K = I.
        n = v.shape[0]
        count = 0
        for r in range(n - 1):
            for k in range(r + 1, n):
                x = v[r, r]
                w = v[r, k]
                if w == 0.0:
                    continue
                h = math.sqrt(x * x + w * w)
                c = x / h
                s = -w / h
                for row in range(r, n):
                    u = v[row, r]
                    z = v[row, k]
                    v[row, r] = c * u - s * z
                    v[row, k] = s * u + c * z
                out_i[count] = r
                out_j[count] = k
                out_c[count] = c
                out_s[count] = s
                count += 1
        return count

    class _Kernels:
        pass

    ns = _Kernels()
    ns.apply_rows = apply_rows
    ns.build_diagonal = build_diagonal
    ns.givens_factor = givens_factor
    return ns
