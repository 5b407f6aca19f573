"""``python -m torq_ref experiment ...`` (spec/SH.md SH-5.4, spec/ME.md ME-5.2, spec/TQ.md TQ-2.16).

* ``experiment inter-block``: the macro strategies by held-out MXFP4 error on captured inputs of
  the real model (or heavy-tailed synthetic ones) (SH-5.4).
* ``experiment block-energy``: Schur-Horn block-energy targets other than the constant, and the
  bound of what the E8M0 grid leaves to any choice of block energies (SH-5.5, SH-5.6).
* ``experiment maxent-synthetic`` / ``maxent-real``: the max-entropy micro rotation against
  identity and Hadamard on synthetic or captured inputs (ME-5.2).
* ``experiment torq-variant``: the ``run`` table with the exploration variants of
  :mod:`torq_ref.experiments.variants` (TQ-2.16).
* ``experiment limit``: per site kind, MXFP4 NMSE under the FLOOR scale, the best E8M0 scale and
  the best real scale per block, raw and after the 32-block Hadamard (TQ-2.19, TQ-2.20).
* ``experiment scale-sites``: the calibration output error of the scale step at the o and down
  inputs per layer and alpha (TQ-2.21).
"""
from __future__ import annotations

import sys

from torq_ref.model.hooks import SITES
from torq_ref.rotations.maxent import DEFAULT_BETA, DEFAULT_MAX_SWEEPS

from .maxent import run_real, run_synthetic


def register(sub):
    """The subcommands below ``experiment``."""
    p = sub.add_parser("inter-block",
                       help="macro (inter-block) rotation strategies by held-out MXFP4 NMSE")
    p.add_argument("--source", choices=("auto", "model", "synthetic"), default="auto",
                   help="captured model activations (auto: when the model can be loaded)")
    p.add_argument("--model", dest="model_dir", default=None,
                   help="registry name or model path (default smollm2-135m)")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 10, 20, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "o", "gate_up", "down"], choices=SITES)
    p.add_argument("--calib-windows", type=int, default=4, help="windows 8.. (calibration)")
    p.add_argument("--heldout-windows", type=int, default=2,
                   help="windows after the calibration ones (held out)")
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.set_defaults(func=_run_compare)

    p = sub.add_parser("block-energy",
                       help="Schur-Horn block-energy targets and the E8M0 grid bound (SH-5.5, SH-5.6)")
    p.add_argument("--model", default="smollm2-135m", help="registry name or imported model directory")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 10, 20, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "gate_up", "o", "down"], choices=SITES)
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
    p.add_argument("--model", dest="model_dir", default=None,
                   help="registry name or model path (default smollm2-135m)")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 15, 29])
    p.add_argument("--sites", nargs="+", default=["qkv", "o", "gate_up", "down"], choices=SITES)
    p.add_argument("--calib-windows", type=int, default=4, help="windows 8.. (calibration)")
    p.add_argument("--heldout-windows", type=int, default=2, help="the windows after them")
    p.add_argument("--beta", type=float, nargs="+", default=[DEFAULT_BETA])
    p.add_argument("--max-sweeps", type=int, default=DEFAULT_MAX_SWEEPS)
    p.add_argument("--no-per-block", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_real)

    _register_variant(sub)
    _register_limit(sub)


def _register_limit(sub):
    """``experiment limit`` (TQ-2.20) and ``experiment scale-sites`` (TQ-2.21)."""
    p = sub.add_parser("limit", help="MXFP4 NMSE per site kind under FLOOR, the best E8M0 and the best "
                                     "real per-block scale, raw and after the 32-block Hadamard")
    p.add_argument("--model", default="smollm2-135m", help="registry name or imported model directory")
    p.add_argument("--calib-windows", type=int, default=4, help="calibration windows (as run)")
    p.add_argument("--micro-rows", type=int, default=1024,
                   help="rows fitted by the micro step; the figures use the next as many (held out)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="default: every layer")
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.set_defaults(func=_run_limit)

    p = sub.add_parser("scale-sites", help="the scale step's calibration output error at the o and down "
                                           "inputs, per layer and alpha (the --scale-sites measurement)")
    p.add_argument("--model", default="smollm2-135m", help="registry name or imported model directory")
    p.add_argument("--calib-windows", type=int, default=4, help="calibration windows (as run)")
    p.add_argument("--micro-rows", type=int, default=1024, help="rows the micro step fits (as run)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    p.add_argument("--layers", type=int, nargs="+", default=None, help="default: every layer")
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.set_defaults(func=_run_scale_sites)


def _run_limit(args) -> int:
    from .limit import run_limit

    _check_rows_args(args)
    text = run_limit(model=args.model, calib_windows=args.calib_windows, micro_rows=args.micro_rows,
                     layers=args.layers)
    return _emit(text, args.out)


def _run_scale_sites(args) -> int:
    from .scale_sites import run_scale_sites

    _check_rows_args(args)
    text = run_scale_sites(model=args.model, calib_windows=args.calib_windows, micro_rows=args.micro_rows,
                           alphas=args.alphas, layers=args.layers)
    return _emit(text, args.out)


def _check_rows_args(args) -> None:
    """--calib-windows and --micro-rows of limit / scale-sites: positive, refused before any work."""
    from torq_ref.torq.methods import SettingsError

    if args.calib_windows < 1 or args.micro_rows < 1:
        raise SettingsError("--calib-windows and --micro-rows must be at least 1")
    if args.calib_windows * 512 < 2 * args.micro_rows:
        raise SettingsError(f"{args.calib_windows} calibration windows of 512 tokens hold fewer than the "
                            f"2 * {args.micro_rows} rows per site (fitted + held out) the figures need; "
                            f"add --calib-windows or lower --micro-rows")


def _register_variant(sub):
    """``experiment torq-variant``: ``run``'s arguments plus the variant knobs (TQ-2.16)."""
    from torq_ref.rotations.inter_block import STRATEGIES
    from torq_ref.torq.cli import add_run_arguments

    from .variants import ORDERS

    p = sub.add_parser("torq-variant", help="the run table with TORQ's exploration variants "
                                            "(composition order, full-method macro, per-block, alpha grid)")
    add_run_arguments(p)
    g = p.add_argument_group("variants (spec/TQ.md TQ-2.16)")
    g.add_argument("--order", default="macro-micro", choices=ORDERS,
                   help="composition of the full method torq (default macro-micro, TQ-2.5)")
    g.add_argument("--full-macro-strategy", default="block_hadamard", choices=STRATEGIES,
                   help="macro strategy inside the full method torq (default block_hadamard, TQ-2.5)")
    g.add_argument("--per-block", action="store_true", help="one micro rotation per 32-block (ME-3.8)")
    g.add_argument("--alpha-grid", default=None,
                   help="'auto' (0, 0.25, 0.5, 0.75, 1) or a comma list: the scale step's alpha per "
                        "site from this grid by the calibration output error (TQ-2.11)")
    p.set_defaults(func=_run_variant)


def _alpha_grid(text: str | None):
    """--alpha-grid: None, 'auto' or a comma list of numbers in [0, 2] (TQ-2.11)."""
    from torq_ref.torq.methods import SettingsError

    from .variants import ALPHA_GRID

    if text is None:
        return None
    if text.strip().lower() == "auto":
        return ALPHA_GRID
    try:
        grid = tuple(float(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise SettingsError(f"--alpha-grid {text!r}: give 'auto' or a comma list of numbers") from None
    if not grid or not all(0 <= a <= 2 for a in grid):
        raise SettingsError(f"--alpha-grid {text!r}: give 'auto' or numbers in [0, 2]")
    return grid


def _run_variant(args) -> int:
    from torq_ref.torq.cli import run_models, settings_from_args

    from .variants import Variant

    spec, cfg = settings_from_args(args)
    variant = Variant(order=args.order, full_macro_strategy=args.full_macro_strategy,
                      per_block=args.per_block, alpha_grid=_alpha_grid(args.alpha_grid))
    return run_models(args, spec, cfg, variant.dispatch())


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
