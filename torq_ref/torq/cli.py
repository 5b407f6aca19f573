"""``python -m torq_ref run``: the main job (spec/TQ.md section 4)."""
from __future__ import annotations

from pathlib import Path

from torq_ref.errors import positive_int


def register(sub) -> None:
    p = sub.add_parser("run", help="TORQ end to end on a real model: the PPL / KLD / top-1 table, JSON and figures")
    add_run_arguments(p)
    p.set_defaults(func=_run)


def add_run_arguments(p) -> None:
    """The arguments of ``run``, in groups (TQ-4.1, TQ-4.2); ``experiment torq-variant`` adds its
    own group to the same list."""
    from torq_ref.mx import SCALE_RULES
    from torq_ref.rotations.inter_block import STRATEGIES

    from .methods import DEFAULT_METHODS, METHODS, FIT_GUARDS, MICRO_OBJECTIVES, SETTINGS, WEIGHT_QUANTS

    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=None, metavar="NAME|PATH[,NAME|PATH...]",
                   help="registry name (`python -m torq_ref models`) or path of a GGUF file / HF-layout "
                        "directory (default smollm2-135m); several, comma-separated: one run each "
                        "(OUT/<model>/), then the cross-model report (TQ-4.7)")
    g.add_argument("--eval-windows", type=positive_int, default=8, help="512-token evaluation windows (default 8)")
    g.add_argument("--calib-windows", type=positive_int, default=4, help="512-token calibration windows (default 4)")
    g.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="compute dtype of the forward pass (default float32; float64 to check a claim "
                        "below the float32 noise floor)")
    g.add_argument("--quick", action="store_true",
                   help="a fast smoke setting: 1 eval + 1 calibration window, 64 micro rows, 1 sweep, "
                        "one random orthogonal per site kind")

    g = p.add_argument_group("methods and settings")
    g.add_argument("--methods", default=None,
                   help=f"comma list of {', '.join(METHODS)}, or the preset 'ablation' (TQ-2.12); "
                        f"default {', '.join(DEFAULT_METHODS)}")
    g.add_argument("--settings", default=None, help=f"comma list of {','.join(SETTINGS)} (default: both)")
    g.add_argument("--seed", type=int, default=0, help="seed of the random draws and fits (TQ-4.8)")

    g = p.add_argument_group("quantization")
    g.add_argument("--scale-rule", default="floor", choices=SCALE_RULES,
                   help="E8M0 scale rule (spec/MX.md MX-4.2..4.8; default floor)")
    g.add_argument("--weight-quant", default="rtn", choices=WEIGHT_QUANTS,
                   help="how W4A4 rows quantize the weights (TQ-7.4, TQ-7.6; mr-gptq always uses gptq)")
    g.add_argument("--weight-scale-rule", default=None, choices=SCALE_RULES,
                   help="E8M0 scale rule of the W4A4 weights (default: --scale-rule; TQ-7.7)")
    g.add_argument("--quant-sites", default=None,
                   help="comma list of the site kinds to quantize, of qkv,o,gate_up,down (default all; "
                        "the others run in float: where the error comes from, TQ-2.15)")

    g = p.add_argument_group("fitting knobs")
    g.add_argument("--macro-strategy", default=None, choices=STRATEGIES, metavar="STRATEGY",
                   help="inter-block strategy of torq-macro (default block_hadamard_schur_horn, TQ-2.3): "
                        + ", ".join(STRATEGIES))
    g.add_argument("--scale-alpha", default=None,
                   help="exponent of the scale step, a number in [0, 2], 0 = off (default 0.5, TQ-2.7)")
    g.add_argument("--scale-sites", default=None,
                   help="comma list of the sites the scale step scales, of qkv,gate_up,o,down (default "
                        "qkv,gate_up; o folds into v_proj rows per KV head, down into up_proj rows, TQ-2.17)")
    g.add_argument("--beta", type=float, default=None, help="micro objective: entropy - beta * NMSE")
    g.add_argument("--micro-objective", default="activation", choices=MICRO_OBJECTIVES,
                   help="NMSE term of the micro objective: of the activations (default) or weighted "
                        "block by block by the consuming weight's energy (TQ-2.14)")
    g.add_argument("--fit-guard", default="off", choices=FIT_GUARDS,
                   help="torq's micro fit: keep it only if it lowers the output error of the held-out "
                        "calibration rows against its start, smoothrot's Hadamard ('output'), or always "
                        "('off', default; TQ-2.22)")
    g.add_argument("--holdout", type=float, default=0.25, help="fraction of calibration rows held out")
    g.add_argument("--max-sweeps", type=positive_int, default=None, help="micro optimizer sweeps")
    g.add_argument("--micro-rows", type=positive_int, default=None,
                   help="calibration rows per site for the micro step")

    g = p.add_argument_group("output")
    g.add_argument("--out", default=None,
                   help="output directory (default out/<model>; with several models the parent, default out)")
    g.add_argument("--no-figures", action="store_true")
    g.add_argument("--export-plan", default=None, metavar="DIR",
                   help="also write every row's transforms as a plan directory (spec/TQ.md TQ-8; with several "
                        "models DIR/<model>)")
    add_performance_args(p)


def add_performance_args(p) -> None:
    """The "performance" group of ``run`` (spec/TQ.md TQ-6.6..6.8): how the work is spread and
    what is reused; none of it changes a number of the results."""
    g = p.add_argument_group("performance", "where the work runs; the results are the same bytes for every choice")
    g.add_argument("--jobs", type=int, default=None,
                   help="worker processes (default: the usable cores); 1 runs everything in this process")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the work units on the Dask distributed scheduler at ADDRESS (the 'dask' extra)")
    g.add_argument("--ref-cache", default=None, metavar="DIR",
                   help="directory of the cached FP32 references (default <model cache>/references); 'off': none")


def settings_from_args(args):
    """(RunSpec, TorqConfig) of parsed ``run`` arguments; SettingsError on a bad one (TQ-4.1, 4.2).
    Every option lands in a field the run records and uses (ST-4.1: checked option by option)."""
    from .methods import DEFAULT_METHODS, METHOD_PRESETS, METHODS, SETTINGS, SettingsError, TorqConfig, parse_list
    from .pipeline import RunSpec

    methods = parse_list(args.methods, METHODS, "method", default=DEFAULT_METHODS, presets=METHOD_PRESETS)
    settings = parse_list(args.settings, SETTINGS, "setting")
    models = model_list(args)
    ev, ca = args.eval_windows, args.calib_windows
    cfg_kw = {}
    if args.quick:      # TQ-4.1: a smoke run of the whole table in under 3 minutes
        ev, ca = min(ev, 1), min(ca, 1)
        cfg_kw.update(micro_rows=64, max_sweeps=1, random_per_layer=False)
    if args.macro_strategy:
        cfg_kw["macro_strategy"] = args.macro_strategy
    if args.scale_alpha is not None:
        cfg_kw["scale_alpha"] = _alpha_arg(args.scale_alpha)
    for key in ("beta", "max_sweeps", "micro_rows"):
        if getattr(args, key) is not None:
            cfg_kw[key] = getattr(args, key)
    if not 0 <= args.holdout < 1:
        raise SettingsError("--holdout must be in [0, 1)")
    cfg_kw["weight_quant"] = args.weight_quant
    cfg_kw["weight_scale_rule"] = args.weight_scale_rule
    cfg_kw["micro_objective"] = args.micro_objective
    cfg_kw["fit_guard"] = args.fit_guard
    if args.scale_sites is not None:
        from .scale_step import SCALE_SITES

        cfg_kw["scale_sites"] = parse_list(args.scale_sites, SCALE_SITES, "scale site")
    if args.quant_sites is not None:
        from torq_ref.model.hooks import SITES

        cfg_kw["quant_sites"] = parse_list(args.quant_sites, SITES, "site kind")
    cfg = TorqConfig(scale_rule=args.scale_rule, seed=args.seed, holdout=args.holdout, **cfg_kw)
    spec = RunSpec(methods=methods, settings=settings, eval_windows=ev, calib_windows=ca,
                   model=models[0], dtype=args.dtype)
    from .engine import check_rows

    check_rows(spec.calib_windows * spec.window, cfg)       # TQ-6.2, before any model work
    return spec, cfg


def _alpha_arg(text) -> float:
    """--scale-alpha: a number in [0, 2] (TQ-2.7); the per-site grid is an experiment (TQ-2.16)."""
    from .methods import SettingsError

    try:
        alpha = float(text)
    except ValueError:
        raise SettingsError(f"--scale-alpha {text!r}: give a number in [0, 2]") from None
    if not 0 <= alpha <= 2:
        raise SettingsError("--scale-alpha must be in [0, 2]")
    return alpha


def model_list(args) -> list[str | None]:
    """The models of a ``run`` (TQ-4.7): ``--model a,b,c`` (one run each), or the default model
    (None). A path with a comma in it is not supported."""
    if args.model is None:
        return [None]
    items = [m.strip() for m in args.model.split(",") if m.strip()]
    if not items:
        from .methods import SettingsError

        raise SettingsError(f"--model {args.model!r} names no model")
    return items


def model_label(model: str | None) -> str:
    """The short name of a model for output paths: the registry name, or a path's stem."""
    from torq_ref.model.registry import DEFAULT_MODEL

    if model is None:
        return DEFAULT_MODEL
    p = Path(model)
    return p.stem if (p.suffix == ".gguf" or p.is_dir()) else model


def _run(args) -> int:
    spec, cfg = settings_from_args(args)
    return run_models(args, spec, cfg)


def run_models(args, spec, cfg, dispatch=None) -> int:
    """Run the table on every model of ``--model`` (TQ-4.7), print and write each, then the
    cross-model report when there are several; ``dispatch``: the engine dispatch (default the
    core one; the experiments pass their variants', TQ-2.16). The work units run on the executor
    of ``--jobs`` / ``--scheduler`` (TQ-6.6, 6.7), the FP32 reference comes from ``--ref-cache``
    (TQ-6.8). A bad input raises a UserError (the command line prints it, CL-3.1)."""
    from .parallel import make_executor

    models = model_list(args)
    executor = make_executor(getattr(args, "jobs", None), getattr(args, "scheduler", None))
    try:
        return _run_models(args, spec, cfg, models, dispatch, executor, _ref_cache(args))
    finally:
        executor.close()


def _ref_cache(args):
    """The RefCache of ``--ref-cache`` (TQ-6.8): None for 'off'."""
    if getattr(args, "ref_cache", None) == "off":
        return None
    from torq_ref.evaluate.ref_cache import RefCache

    from .pipeline import _log

    return RefCache(getattr(args, "ref_cache", None), log=_log)


def _run_models(args, spec, cfg, models, dispatch, executor, ref_cache) -> int:
    from dataclasses import replace

    from torq_ref.evaluate.kld_summary import summary_blocks
    from torq_ref.evaluate.summary import metrics_table

    from .plan import export_run
    from .report import table, write_figures, write_json

    several = len(models) > 1
    done = []
    for name in models:
        label = model_label(name)
        out = Path(args.out or "out") / label if several else Path(args.out or Path("out") / label)
        results = export_run(replace(spec, model=name), cfg, getattr(args, "export_plan", None),
                             label if several else None, dispatch=dispatch, executor=executor,
                             ref_cache=ref_cache)
        results["settings"]["model"] = label
        path = write_json(results, out)
        print(f"\n## {label}\n")
        print(table(results))
        print()
        print(metrics_table(results["results"]))
        print("\n" + summary_blocks(results["results"]))          # llama.cpp-style (spec/EV.md EV-7.3)
        print(f"\nresults: {path}")
        if not args.no_figures:
            for p in write_figures(results, out):
                print(f"figure: {p}")
        print(f"total time: {results['timings']['total_s'] / 60:.1f} min")
        done.append((label, path))
    if several:                    # the cross-model report of the runs just made (spec/EV.md EV-4)
        from torq_ref.evaluate.cross_model import cross_model_table, load_per_site, load_results, write_report

        res = load_results([label for label, _ in done], [p for _, p in done])
        print("\n## all models\n")
        print(cross_model_table(res))
        per_site = load_per_site([label for label, _ in done], [p for _, p in done])
        for p in write_report(res, Path(args.out or "out") / "report", figure=not args.no_figures,
                              per_site=per_site):
            print(f"report: {p}")
    return 0
