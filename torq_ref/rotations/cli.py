"""Rotation subcommands of ``python -m torq_ref`` (spec/SH.md section SH-6; spec/ME.md).

``register(sub)`` adds every rotation subcommand; contributors append their own parsers there.

* ``bench-schur-horn``: the constant-target Schur-Horn builder (numba and NumPy paths) against
  ``numpy.linalg.eigvalsh`` of the same matrix, side by side in one process (SH-6.1).
* ``compare-inter-block``: the macro strategies measured by held-out MXFP4 error on captured
  activations of the real model (or heavy-tailed synthetic ones) (SH-5.4).
"""
from __future__ import annotations

import sys


def register(sub):
    p = sub.add_parser("bench-schur-horn",
                       help="Schur-Horn builder vs numpy.linalg.eigvalsh, numba vs NumPy")
    p.add_argument("--n", type=int, nargs="+", default=[4096, 8192], help="matrix sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="timing repeats (best of)")
    p.add_argument("--no-numpy", action="store_true", help="skip the NumPy-path timing")
    p.set_defaults(func=_run_bench)

    p = sub.add_parser("compare-inter-block",
                       help="macro (inter-block) rotation strategies by held-out MXFP4 NMSE")
    p.add_argument("--source", choices=("auto", "model", "synthetic"), default="auto",
                   help="captured model activations (auto: when the model can be loaded)")
    p.add_argument("--model-dir", default=None, help="imported model directory (default cache)")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 10, 20, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "o", "gate_up", "down"])
    p.add_argument("--calib-windows", type=int, default=4, help="windows 8.. (calibration)")
    p.add_argument("--heldout-windows", type=int, default=2,
                   help="windows after the calibration ones (held out)")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.set_defaults(func=_run_compare)


def _run_bench(args) -> int:
    import time

    import numpy as np

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


def _run_compare(args) -> int:
    from .inter_block import run_comparison

    text = run_comparison(source=args.source, model_dir=args.model_dir, layers=args.layers,
                          sites=args.sites, calib_windows=args.calib_windows,
                          heldout_windows=args.heldout_windows, block_size=args.block_size,
                          seed=args.seed)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


# --- max-entropy micro rotation subcommands (spec/ME.md ME-6), appended by the ME owner ---
_register_without_maxent = register


def register(sub):  # noqa: F811  (wraps the function above and adds the ME subcommands)
    _register_without_maxent(sub)
    from .maxent import register_cli
    register_cli(sub)
