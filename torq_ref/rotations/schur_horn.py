"""Constructive Schur-Horn builder (spec/SH.md, section SH-2; docs/torq-method.md section 2.1).

Schur-Horn: for symmetric C with eigenvalues lambda, the diagonals of Q^T C Q over orthogonal Q
are exactly the vectors majorized by lambda. ``schur_horn(C, target)`` builds such a Q as a
``GivensSequence`` (diag(Q^T C Q) = target):

* diagonal path (target majorized by diag(C), e.g. the constant vector trace(C)/n): the
  T-transform pair rule of Marshall-Olkin (Inequalities, 2.B.1) realised by plane rotations.
  Ranks sort diag(C) and target non-increasingly; while some rank is unmatched, take the LAST
  rank j whose diagonal exceeds its target and the FIRST later rank k whose diagonal is below its
  target, and rotate the plane of their indices so that the one with the smaller gap hits its
  target exactly (the other takes the rest of the 2x2 trace). Each step pins one rank for good,
  so at most n-1 rotations, each an O(n) update of two rows/columns of the working matrix; no
  eigendecomposition. A target in another order than diag(C) is then put in place by signed
  swaps (<= 2(n-1) in all); SH-2.4a proves that n-1 is impossible for some such orders. The 2x2 angle uses the small root of
  (b - z) t^2 - 2 m t + (a - z) = 0,  t = (a - z) / (m + sign(m) sqrt(m^2 - (a - z)(b - z)))
  (Davies & Higham 2000), c = 1/hypot(1, t), s = c t; m = 0 and z = b is a swap.
* eigen path (target majorized by lambda only): C = V diag(lambda) V^T; the diagonal path runs on
  diag(lambda) and Q = V Q_2, with V itself factored into plane rotations.

Clauses: SH-2.1 ``schur_horn`` and its methods, SH-2.2 orthogonality and spectrum, SH-2.3 the
tolerance, SH-2.4 the diagonal path (``_run_diagonal``: rank order, pair choice, swap cycles),
SH-2.5 ``check_majorization``, SH-2.6 ``check_symmetric`` and argument checks, SH-2.7 the 2x2 step
(``_angle``), SH-2.8 the eigen path and ``givens_factor``, SH-2.9 numba == NumPy, SH-2.10
degenerate inputs (zero rotations when the diagonal already matches), SH-2.11
``schur_horn_blocks``.
"""
from __future__ import annotations

import math

import numpy as np

from . import _numba_givens
from .givens import GivensSequence

__all__ = [
    "MajorizationError", "SymmetricMatrixError", "DEFAULT_RTOL", "check_majorization",
    "schur_horn", "schur_horn_blocks", "block_traces", "givens_factor",
]

#: default relative tolerance; the diagonal is reached within rtol * n * scale (SH-2.3)
DEFAULT_RTOL = 1e-12
#: relative asymmetry max|C - C^T| / max|C| accepted (the matrix is then symmetrised)
SYMMETRY_RTOL = 1e-10


class MajorizationError(ValueError):
    """The requested diagonal (or block energies) is not reachable (SH-2.5)."""


class SymmetricMatrixError(ValueError):
    """C is not a finite, real, square, symmetric matrix (SH-2.6)."""


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def check_symmetric(C) -> np.ndarray:
    arr = np.asarray(C)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)):
        raise SymmetricMatrixError(f"C must be a real float or integer matrix, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise SymmetricMatrixError(f"C must be a non-empty square matrix, got shape {arr.shape}")
    a = arr.astype(np.float64)
    if not np.isfinite(a).all():
        raise SymmetricMatrixError("C contains NaN or infinity")
    n = a.shape[0]
    asym = 0.0
    big = 0.0
    for r0 in range(0, n, 256):                         # chunked: no n x n temporaries
        rows = a[r0:r0 + 256]
        asym = max(asym, float(np.max(np.abs(rows - a[:, r0:r0 + 256].T))))
        big = max(big, float(np.max(np.abs(rows))))
    if asym > SYMMETRY_RTOL * big:
        raise SymmetricMatrixError(f"C is not symmetric: max|C - C^T| = {asym:.3e} "
                                   f"> {SYMMETRY_RTOL:g} * max|C| = {SYMMETRY_RTOL * big:.3e}")
    if asym:
        a = 0.5 * (a + a.T)
    return a


def _check_vector(v, n: int, what: str) -> np.ndarray:
    arr = np.asarray(v)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{what} must be real, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinity")
    return arr


def check_majorization(target, source, *, tol: float = 0.0, source_name: str = "source",
                       unit: str = "entries") -> None:
    """Raise MajorizationError unless ``target`` is majorized by ``source`` (within ``tol``).

    Sort both non-increasingly; every partial sum of the k largest target entries must not exceed
    that of the source by more than ``tol`` (k = 1..n-1), and the totals must agree within ``tol``.
    The message names the first violated partial sum and both values (SH-2.5).
    """
    t = np.sort(np.asarray(target, dtype=np.float64))[::-1]
    s = np.sort(np.asarray(source, dtype=np.float64))[::-1]
    if t.shape != s.shape:
        raise ValueError(f"target and {source_name} differ in length: {t.shape} vs {s.shape}")
    st = np.cumsum(t)
    ss = np.cumsum(s)
    over = st[:-1] - ss[:-1] > tol
    if over.any():
        k = int(np.argmax(over))
        raise MajorizationError(
            f"target is not majorized by {source_name}: first violated partial sum is over the "
            f"{k + 1} largest {unit}: target {st[k]:.17g} > {source_name} {ss[k]:.17g} "
            f"(tolerance {tol:.3g})")
    if abs(st[-1] - ss[-1]) > tol:
        raise MajorizationError(
            f"target is not majorized by {source_name}: totals differ (partial sum over all "
            f"{len(t)} {unit}): target {st[-1]:.17g} vs {source_name} {ss[-1]:.17g} "
            f"(tolerance {tol:.3g})")


def _is_majorized(target, source, tol) -> bool:
    try:
        check_majorization(target, source, tol=tol)
    except MajorizationError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# the diagonal builder (NumPy twin of _numba_givens.build_diagonal; identical operations)
# --------------------------------------------------------------------------------------------
def _angle(av: float, bv: float, m: float, z: float) -> tuple[float, float, float]:
    """(c, s, z) of the plane rotation putting z at the first index of [[av, m], [m, bv]]."""
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
        return 1.0, 0.0, z
    if den == 0.0:
        return 0.0, 1.0, z
    tt = num / den
    if abs(tt) <= 1.0:
        c = 1.0 / math.sqrt(1.0 + tt * tt)
        s = c * tt
    else:
        u = 1.0 / tt
        w = 1.0 / math.sqrt(1.0 + u * u)
        c = abs(u) * w
        s = w if tt > 0.0 else -w
    return c, s, z


def _build_diagonal_numpy(a, idx_of_rank, y, tau, out_i, out_j, out_c, out_s) -> int:
    n = a.shape[0]
    dev = a[idx_of_rank, idx_of_rank] - y
    active = np.flatnonzero(np.abs(dev) > tau)          # ranks, ascending
    act_idx = idx_of_rank[active]                      # their matrix indices
    count = 0
    while len(active) >= 2:
        dev = a[act_idx, act_idx] - y[active]
        pos = np.flatnonzero(dev > tau)
        if len(pos) == 0:
            break
        jpos = int(pos[-1])
        later = np.flatnonzero(dev[jpos + 1:] < -tau)
        if len(later) == 0:
            break
        kpos = jpos + 1 + int(later[0])
        rj, rk = int(active[jpos]), int(active[kpos])
        ij, ik = int(act_idx[jpos]), int(act_idx[kpos])
        excess = a[ij, ij] - y[rj]
        deficit = y[rk] - a[ik, ik]
        if excess <= deficit:
            p, q, z, pin_pos = ij, ik, float(y[rj]), jpos
        else:
            p, q, z, pin_pos = ik, ij, float(y[rk]), kpos
        av, bv, m = float(a[p, p]), float(a[q, q]), float(a[p, q])
        c, s, z = _angle(av, bv, m, z)
        others = act_idx[(act_idx != p) & (act_idx != q)]
        u = a[p, others]
        v = a[q, others]
        nu = c * u - s * v
        nv = s * u + c * v
        a[p, others] = nu
        a[q, others] = nv
        a[others, p] = nu
        a[others, q] = nv
        newm = c * s * (av - bv) + (c * c - s * s) * m
        a[p, p] = z
        a[q, q] = (av + bv) - z
        a[p, q] = newm
        a[q, p] = newm
        out_i[count], out_j[count], out_c[count], out_s[count] = p, q, c, s
        count += 1
        keep = np.ones(len(active), dtype=bool)
        keep[pin_pos] = False
        qpos = int(np.flatnonzero(act_idx == q)[0])
        if abs(a[q, q] - y[active[qpos]]) <= tau:
            keep[qpos] = False
        active = active[keep]
        act_idx = act_idx[keep]
    return count


def _run_diagonal(a: np.ndarray, target: np.ndarray, tau: float, backend: str) -> GivensSequence:
    """Diagonal path on the working matrix ``a`` (overwritten); target already checked."""
    n = a.shape[0]
    diag = np.diag(a).copy()
    # ranks: diag non-increasing, ties broken by target (non-increasing), then by index
    idx_of_rank = np.lexsort((np.arange(n), -target, -diag)).astype(np.int64)
    # the index that should finally hold rank r's target value: same as idx_of_rank where the
    # target is ordered like diag(C) (always for a constant target)
    order = np.argsort(-target[idx_of_rank], kind="stable")
    dest_of_rank = idx_of_rank[order]
    y = target[dest_of_rank].copy()                     # (n,) non-increasing
    cap = 2 * n
    out_i = np.zeros(cap, np.int64)
    out_j = np.zeros(cap, np.int64)
    out_c = np.zeros(cap, np.float64)
    out_s = np.zeros(cap, np.float64)
    kern = None if backend == "numpy" else _numba_givens.load()
    if backend == "numba" and kern is None:
        raise RuntimeError("backend='numba' requested but numba is not installed")
    if kern is not None:
        count = int(kern.build_diagonal(a, idx_of_rank, y, float(tau), out_i, out_j, out_c, out_s))
    else:
        count = _build_diagonal_numpy(a, idx_of_rank, y, float(tau), out_i, out_j, out_c, out_s)
    # move values from idx_of_rank[r] to dest_of_rank[r] with signed swaps (c = 0, s = 1)
    goes_to = np.arange(n)
    goes_to[idx_of_rank] = dest_of_rank
    seen = np.zeros(n, dtype=bool)
    for start in range(n):
        if seen[start] or goes_to[start] == start:
            seen[start] = True
            continue
        cur = int(goes_to[start])
        seen[start] = True
        while cur != start:
            out_i[count], out_j[count], out_c[count], out_s[count] = start, cur, 0.0, 1.0
            count += 1
            seen[cur] = True
            cur = int(goes_to[cur])
    return GivensSequence(n, out_i[:count], out_j[:count], out_c[:count], out_s[:count])


# --------------------------------------------------------------------------------------------
# eigenbasis factorisation
# --------------------------------------------------------------------------------------------
def givens_factor(V, *, backend: str = "auto") -> GivensSequence:
    """Factor an orthogonal V with det(V) = +1 into at most n(n-1)/2 plane rotations (SH-2.8).

    Column rotations H_1..H_K reduce V to the identity (V H_1 ... H_K = I, Givens QR by columns);
    the returned sequence is their inverse, so ``.matrix()`` reproduces V to rounding.
    """
    v = np.array(V, dtype=np.float64, order="C", copy=True)
    n = v.shape[0]
    if v.ndim != 2 or v.shape != (n, n):
        raise ValueError(f"V must be square, got shape {v.shape}")
    if not np.allclose(v.T @ v, np.eye(n), atol=1e-10):
        raise ValueError("V is not orthogonal (|V^T V - I| > 1e-10)")
    if np.linalg.det(v) < 0:
        raise ValueError("V has determinant -1; flip the sign of one column first")
    cap = max(n * (n - 1) // 2, 1)
    out_i = np.zeros(cap, np.int64)
    out_j = np.zeros(cap, np.int64)
    out_c = np.zeros(cap, np.float64)
    out_s = np.zeros(cap, np.float64)
    kern = None if backend == "numpy" else _numba_givens.load()
    if kern is not None:
        count = int(kern.givens_factor(v, out_i, out_j, out_c, out_s))
    else:
        count = 0
        for r in range(n - 1):
            for k in range(r + 1, n):
                x = float(v[r, r])
                w = float(v[r, k])
                if w == 0.0:
                    continue
                h = math.sqrt(x * x + w * w)
                c = x / h
                s = -w / h
                u = v[r:, r].copy()
                z = v[r:, k].copy()
                v[r:, r] = c * u - s * z
                v[r:, k] = s * u + c * z
                out_i[count], out_j[count], out_c[count], out_s[count] = r, k, c, s
                count += 1
    seq = GivensSequence(n, out_i[:count], out_j[:count], out_c[:count], out_s[:count])
    return seq.inverse()


# --------------------------------------------------------------------------------------------
# public builders
# --------------------------------------------------------------------------------------------
def schur_horn(C, target=None, *, rtol: float | None = None, method: str = "auto",
               backend: str = "auto") -> GivensSequence:
    """Orthogonal Q (as plane rotations) with diag(Q^T C Q) = target (SH-2).

    C: (n, n) real symmetric, finite. target: (n,) (default: constant trace(C)/n).
    method: "auto" (diagonal path when target is majorized by diag(C), else eigen path),
    "diagonal" (MajorizationError unless majorized by diag(C)) or "eigen".
    rtol: default DEFAULT_RTOL; entries within rtol*scale of their target count as matched and the
    result is within rtol*n*scale, scale = max(|C|max or |lambda|max, |target|max).
    backend: "auto" | "numba" | "numpy" (identical bits).
    """
    if method not in ("auto", "diagonal", "eigen"):
        raise ValueError(f"method must be 'auto', 'diagonal' or 'eigen', got {method!r}")
    if backend not in ("auto", "numba", "numpy"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
    rtol = DEFAULT_RTOL if rtol is None else float(rtol)
    if not (rtol >= 0.0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite non-negative number, got {rtol}")
    a = check_symmetric(C)
    n = a.shape[0]
    diag = np.diag(a).copy()
    if target is None:
        target = np.full(n, diag.sum() / n)
    else:
        target = _check_vector(target, n, "target")
    tmax = float(np.max(np.abs(target)))
    if method in ("auto", "diagonal"):
        # max|C_ij| <= |lambda|max, so this tolerance never exceeds the spec's (SH-2.3)
        scale = max(float(np.max(np.abs(a))), tmax)
        tol = rtol * n * scale
        if method == "diagonal":
            check_majorization(target, diag, tol=tol, source_name="diag(C)")
            return _run_diagonal(a, target, rtol * scale, backend)
        if _is_majorized(target, diag, tol):
            return _run_diagonal(a, target, rtol * scale, backend)
    # eigen path
    lam, V = np.linalg.eigh(a)                          # ascending; (n,), (n, n)
    scale = max(float(np.max(np.abs(lam))), tmax)
    check_majorization(target, lam, tol=rtol * n * scale, source_name="the spectrum of C")
    if np.linalg.det(V) < 0:
        V[:, 0] = -V[:, 0]
    basis = givens_factor(V, backend=backend)          # X @ V
    inner = _run_diagonal(np.diag(lam), target, rtol * scale, backend)
    return basis.then(inner)


def block_traces(C, block_size: int = 32) -> np.ndarray:
    """Traces of the consecutive (block_size x block_size) diagonal blocks of C: (n/block_size,)."""
    d = np.diag(np.asarray(C, dtype=np.float64))
    if block_size < 1 or d.shape[0] % block_size:
        raise ValueError(f"n = {d.shape[0]} is not a multiple of block_size = {block_size}")
    return d.reshape(-1, block_size).sum(axis=1)


def schur_horn_blocks(C, block_energies=None, *, block_size: int = 32, rtol: float | None = None,
                      backend: str = "auto") -> GivensSequence:
    """Orthogonal Q with block traces of Q^T C Q equal to ``block_energies`` (SH-2.11).

    Reachable iff block_energies is majorized by the sums of consecutive block_size-chunks of the
    non-increasingly sorted eigenvalues (docs/torq-method.md section 2.1). The builder spreads each block's
    energy evenly over its entries (diagonal target e_b / block_size) and calls ``schur_horn``:
    that target is majorized by lambda exactly when the block condition holds, and by diag(C)
    in the common case (e.g. equal energies) so no eigendecomposition is needed then.
    Default block_energies: equal, trace(C) / (n / block_size).
    """
    rtol = DEFAULT_RTOL if rtol is None else float(rtol)
    a = check_symmetric(C)
    n = a.shape[0]
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1 or n % block_size:
        raise ValueError(f"n = {n} is not a multiple of block_size = {block_size!r}")
    nb = n // block_size
    if block_energies is None:
        e = np.full(nb, np.trace(a) / nb)
    else:
        e = _check_vector(block_energies, nb, "block_energies")
    d = np.repeat(e / block_size, block_size)         # (n,)
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(d))))
    if _is_majorized(d, np.diag(a), rtol * n * scale):
        return _run_diagonal(a.copy(), d, rtol * scale, backend)
    lam = np.linalg.eigvalsh(a)[::-1]                  # non-increasing
    mu = lam.reshape(nb, block_size).sum(axis=1)        # chunk sums, (nb,)
    scale = max(float(np.max(np.abs(lam))), float(np.max(np.abs(d))))
    check_majorization(e, mu, tol=rtol * n * scale,
                       source_name="the block_size-chunk sums of the sorted spectrum",
                       unit="blocks")
    return schur_horn(a, d, rtol=rtol, method="eigen", backend=backend)
