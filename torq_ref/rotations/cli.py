"""Rotation benchmarks of ``python -m torq_ref`` (spec/SH.md SH-6.1, spec/ME.md ME-5.2).

``register_bench(sub)`` adds them below ``bench``; each runs both sides in one process on synthetic data:

* ``bench schur-horn``: the constant-target Schur-Horn builder (numba and NumPy paths) against
  ``numpy.linalg.eigvalsh`` of the same matrix (SH-6.1).
* ``bench maxent``: the max-entropy optimizer, numba against NumPy, and its scaling (ME-5.2).

The experiments on the real model's inputs (``experiment inter-block``, ``experiment maxent-real``)
live in torq_ref.experiments, above both the model and the rotations.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from torq_ref.mx import numba_available

from .maxent import DEFAULT_BETA, DEFAULT_SEARCH_ROWS, maxent_rotation
from .maxent_eval import CHUNK
from .synthetic import heavy_tailed_activations


def register_bench(sub):
    """``bench schur-horn`` and ``bench maxent``."""
    p = sub.add_parser("schur-horn",
                       help="Schur-Horn builder vs numpy.linalg.eigvalsh, numba vs NumPy")
    p.add_argument("--n", type=int, nargs="+", default=[4096, 8192], help="matrix sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="timing repeats (best of)")
    p.add_argument("--no-numpy", action="store_true", help="skip the NumPy-path timing")
    p.set_defaults(func=_run_bench_schur_horn)

    p = sub.add_parser("maxent", help="time maxent_rotation (numba vs NumPy) and scaling")
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--channels", type=int, nargs="+", default=[576])
    p.add_argument("--sweeps", type=int, default=2, help="sweeps timed (holdout off)")
    p.add_argument("--numpy-tokens", type=int, default=512,
                   help="size at which the NumPy path is timed against numba (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="numba threads (0: numba default)")
    p.add_argument("--default-run", type=int, nargs=2, default=None, metavar=("T", "N"),
                   help="also time one call with all defaults (holdout 0.25, early stopping)")
    p.set_defaults(func=_run_bench_maxent)


def _run_bench_schur_horn(args) -> int:
    from .schur_horn import schur_horn

    def best(fn, k):
        times, out = [], None
        for _ in range(k):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    schur_horn(np.eye(4) + 1.0)                       # compile the numba kernels outside timing
    print("| n | builder numba (s) | builder NumPy (s) | eigvalsh (s) | numba / eigvalsh | "
          "rotations | max diag error / (n max|lambda|) | numba == NumPy |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.n:
        c = bench_matrix(n, args.seed)
        t_nb, q_nb = best(lambda: schur_horn(c, backend="numba"), args.repeat)
        if args.no_numpy:
            t_np, same = float("nan"), "n/a"
        else:
            t_np, q_np = best(lambda: schur_horn(c, backend="numpy"), args.repeat)
            same = "yes" if q_np == q_nb else "NO"
        t_ev, lam = best(lambda: np.linalg.eigvalsh(c), args.repeat)
        err = _diag_error(c, q_nb) / (n * float(np.max(np.abs(lam))))
        print(f"| {n} | {t_nb:.3f} | {t_np:.3f} | {t_ev:.3f} | {t_nb / t_ev:.3f} | {len(q_nb)} | "
              f"{err:.1e} | {same} |", flush=True)
        if same == "NO":
            print("numba and NumPy paths differ", file=sys.stderr)
            return 1
    return 0


def bench_matrix(n: int, seed: int = 0):
    """The benchmark's PSD matrix: diag(exp(2 g)) + B B^T / 64, g ~ N(0,1), B ~ N(0,1) (n, 64)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, 64))
    c = b @ b.T / 64.0                                  # (n, n)
    c[np.diag_indices(n)] += np.exp(2.0 * rng.standard_normal(n))
    return 0.5 * (c + c.T)


def _diag_error(c, q) -> float:
    """max |diag(Q^T C Q) - tr(C)/n|, Q^T C Q formed by applying the rotations on both sides."""
    import numpy as np

    n = c.shape[0]
    qcq = q.apply(q.apply(c, axis=-1), axis=0)          # (n, n) = Q^T C Q
    return float(np.max(np.abs(np.diag(qcq) - np.trace(c) / n)))


def _run_bench_maxent(args) -> int:
    import platform

    if args.threads and numba_available():
        import numba
        numba.set_num_threads(args.threads)
    kern = "numba" if numba_available() else "numpy"
    # compile outside timing: the serial kernels (small data) and the parallel ones (> 2 chunks)
    maxent_rotation(heavy_tailed_activations(64, 64, seed=1), holdout=0.0, max_sweeps=1,
                    backend=kern)
    maxent_rotation(heavy_tailed_activations(2 * CHUNK + 64, 16, seed=1), block_size=8,
                    holdout=0.0, max_sweeps=1, search_rows=None, backend=kern)
    print(f"machine: {platform.processor() or platform.machine()}, os.cpu_count() = "
          f"{__import__('os').cpu_count()}; backend {kern}; {args.sweeps} sweeps, holdout off, "
          f"search_rows {DEFAULT_SEARCH_ROWS}\n")
    print("| tokens | channels | block rows | wall (s) | CPU (s) | wall per sweep (s) | accepted planes |")
    print("|---|---|---|---|---|---|---|")
    for n in args.channels:
        for T in args.tokens:
            X = heavy_tailed_activations(T, n, seed=1)
            w0, c0 = time.perf_counter(), time.process_time()
            _, rep = maxent_rotation(X, holdout=0.0, max_sweeps=args.sweeps, backend=kern)
            w, c = time.perf_counter() - w0, time.process_time() - c0
            acc = "/".join(str(s.accepted_planes) for s in rep.sweeps[1:])
            print(f"| {T} | {n} | {T * n // 32} | {w:.2f} | {c:.2f} | {w / args.sweeps:.2f} | {acc} |",
                  flush=True)
    if args.default_run:
        T, n = args.default_run
        X = heavy_tailed_activations(T, n, seed=1)
        w0, c0 = time.perf_counter(), time.process_time()
        _, rep = maxent_rotation(X, backend=kern)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        print(f"\nDefault call on {T} x {n} (holdout 0.25, beta {DEFAULT_BETA:g}, early stopping): "
              f"wall {w:.2f} s, CPU {c:.2f} s, {len(rep.sweeps) - 1} sweeps, stop {rep.stop_reason}, "
              f"best sweep {rep.best_sweep}")
    if args.numpy_tokens and kern == "numba":
        X = heavy_tailed_activations(args.numpy_tokens, 576, seed=1)
        out = {}
        for b in ("numba", "numpy"):
            w0 = time.perf_counter()
            out[b] = maxent_rotation(X, holdout=0.0, max_sweeps=1, backend=b)[0]
            out[b + "_t"] = time.perf_counter() - w0
        same = "yes" if np.array_equal(out["numba"], out["numpy"]) else "NO"
        print(f"\nNumPy path vs numba, {args.numpy_tokens} x 576, 1 sweep: NumPy {out['numpy_t']:.2f} s, "
              f"numba {out['numba_t']:.2f} s, ratio {out['numpy_t'] / out['numba_t']:.1f}x; "
              f"identical R: {same}")
        if same == "NO":
            return 1
    return 0
