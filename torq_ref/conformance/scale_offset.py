"""A dequantize output off by one exact power of two (spec/CF.md CF-3.11): every finite nonzero
expected value comes back multiplied by the same 2^k, k != 0, as when a loader applies the E8M0
exponent offset twice (scale - 127 - 2: weights 4x too small) or not at all."""
from __future__ import annotations

import numpy as np


def power_of_two_offset(got, exp):
    """k when ``got == exp * 2^k`` on every finite nonzero expected value (with the same sign)
    and ``got == 0`` where 0 is expected, for one k != 0; else None. Expected values that are
    not finite (NaN, or Inf from a float32 overflow) are not looked at. Exact: frexp mantissas
    and integer exponents, no division."""
    g = np.asarray(got, np.float64)
    e = np.asarray(exp, np.float64)
    if g.shape != e.shape:
        return None
    fin = np.isfinite(e)
    nz = fin & (e != 0)
    if not nz.any() or not (g[fin & (e == 0)] == 0).all() or not np.isfinite(g[nz]).all():
        return None
    mg, xg = np.frexp(g[nz])
    me, xe = np.frexp(e[nz])
    if not (mg == me).all():
        return None
    k = np.unique(xg - xe)
    return int(k[0]) if k.size == 1 and k[0] != 0 else None
