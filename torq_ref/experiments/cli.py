"""Experiment subcommands of ``python -m torq_ref`` (spec/SH.md SH-5.4, spec/ME.md ME-5.2).

* ``compare-inter-block``: the macro strategies by held-out MXFP4 error on captured inputs of the
  real model (or heavy-tailed synthetic ones) (SH-5.4).
* ``compare-block-energy``: Schur-Horn block-energy targets other than the constant, and the
  bound of what the E8M0 grid leaves to any choice of block energies (SH-5.5, SH-5.6).
* ``maxent-synthetic`` / ``maxent-real``: the max-entropy micro rotation against identity and
  Hadamard on synthetic or captured inputs (ME-5.2).
"""
from __future__ import annotations

import sys

from torq_ref.rotations.maxent import DEFAULT_BETA, DEFAULT_MAX_SWEEPS

from .maxent import run_real, run_synthetic


def register(sub):
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

    p = sub.add_parser("compare-block-energy",
                       help="Schur-Horn block-energy targets and the E8M0 grid bound (SH-5.5, SH-5.6)")
    p.add_argument("--model", default="smollm2-135m", help="registry name or imported model directory")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 10, 20, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "gate_up", "o", "down"])
    p.add_argument("--calib-windows", type=int, default=4, help="windows 8.. (calibration)")
    p.add_argument("--heldout-windows", type=int, default=2, help="the windows after them (held out)")
    p.add_argument("--scale-alpha", type=float, default=0.5, help="smoothing of qkv / gate_up (TQ-2.7)")
    p.add_argument("--grid", type=int, default=8, help="K of the per-block scales 2^(k/K)")
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.set_defaults(func=_run_block_energy)

    p = sub.add_parser("maxent-synthetic",
                       help="max-entropy micro rotation on heavy-tailed synthetic activations")
    p.add_argument("--tokens", type=int, default=4096, help="calibration tokens")
    p.add_argument("--eval-tokens", type=int, default=2048, help="held-out evaluation tokens")
    p.add_argument("--channels", type=int, default=576)
    p.add_argument("--beta", type=float, nargs="+", default=[DEFAULT_BETA])
    p.add_argument("--max-sweeps", type=int, default=DEFAULT_MAX_SWEEPS)
    p.add_argument("--no-per-block", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_synthetic)

    p = sub.add_parser("maxent-real", help="max-entropy micro rotation on captured model inputs")
    p.add_argument("--model-dir", default=None, help="imported model directory (default cache)")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 15, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "o", "gate_up", "down"])
    p.add_argument("--calib-windows", type=int, default=4, help="windows 8.. (calibration)")
    p.add_argument("--heldout-windows", type=int, default=2, help="the windows after them")
    p.add_argument("--beta", type=float, nargs="+", default=[DEFAULT_BETA])
    p.add_argument("--max-sweeps", type=int, default=DEFAULT_MAX_SWEEPS)
    p.add_argument("--no-per-block", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_real)


def _run_compare(args) -> int:
    from .inter_block import run_comparison

    text = run_comparison(source=args.source, model_dir=args.model_dir, layers=args.layers,
                          sites=args.sites, calib_windows=args.calib_windows,
                          heldout_windows=args.heldout_windows, block_size=args.block_size,
                          seed=args.seed)
    return _emit(text, args.out)


def _run_block_energy(args) -> int:
    from .block_energy import run_block_energy

    text = run_block_energy(model=args.model, layers=args.layers, sites=args.sites,
                            calib_windows=args.calib_windows, heldout_windows=args.heldout_windows,
                            alpha=args.scale_alpha, K=args.grid)
    return _emit(text, args.out)


def _emit(text: str, out: str | None) -> int:
    """Write a report to ``out`` (saying so on stderr) or print it; exit code 0."""
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)
    return 0
