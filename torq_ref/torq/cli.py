"""``python -m torq_ref run``: the main job (spec/TQ.md section 4)."""
from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("run", help="TORQ end to end on a real model: the PPL / KLD / top-1 table, JSON and figures")
    p.add_argument("--methods", default=None,
                   help="comma list of fp32,rtn,random-orthogonal,hadamard32,torq-macro,torq-micro,torq,"
                        "smoothrot,duquant,mr-gptq (default: these ten), the ablation row torq-maxent, "
                        "or the preset 'ablation' (TQ-2.12)")
    p.add_argument("--settings", default=None, help="comma list of W16A4,W4A4 (default: both)")
    p.add_argument("--eval-windows", type=int, default=8, help="512-token evaluation windows (default 8)")
    p.add_argument("--calib-windows", type=int, default=4, help="512-token calibration windows (default 4)")
    p.add_argument("--out", default=None,
                   help="output directory (default out/<model>; with --models the parent, default out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None,
                   help="registry name (`python -m torq_ref models`) or path of a GGUF file / HF-layout "
                        "directory (default smollm2-135m)")
    p.add_argument("--models", default=None,
                   help="comma list of models: one run each (out/<model>/), then the cross-model report")
    p.add_argument("--model-dir", default=None, help="HF-layout model dir (same as --model PATH)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="compute dtype of the forward pass (default float32; float64 to check a claim "
                        "below the float32 noise floor)")
    p.add_argument("--scale-rule", default="floor", help="E8M0 scale rule: floor | rceil | ceil | even | mse (spec/MX.md MX-4.2..4.8)")
    p.add_argument("--macro-strategy", default=None, help="inter-block strategy (torq_ref.rotations.inter_block)")
    p.add_argument("--beta", type=float, default=None, help="micro objective: entropy - beta * NMSE")
    p.add_argument("--holdout", type=float, default=0.25, help="fraction of calibration rows held out")
    p.add_argument("--max-sweeps", type=int, default=None, help="micro optimizer sweeps")
    p.add_argument("--micro-rows", type=int, default=None, help="calibration rows per site for the micro step")
    p.add_argument("--scale-alpha", default=None,
                   help="exponent of the micro level's channel scale step, 0 = off (default 0.5, TQ-2.7), "
                        "or 'auto': per site, the alpha of {0, 0.25, 0.5, 0.75, 1} with the smallest "
                        "calibration output error (TQ-2.11)")
    p.add_argument("--micro-objective", default="activation", choices=("activation", "output"),
                   help="NMSE term of the micro objective: of the activations (default) or weighted "
                        "block by block by the consuming weight's energy (TQ-2.14)")
    p.add_argument("--weight-quant", default="rtn", choices=("rtn", "gptq"),
                   help="how W4A4 rows quantize the weights: rtn (default) or gptq (TQ-7.4; mr-gptq always uses gptq)")
    p.add_argument("--quant-sites", default=None,
                   help="comma list of the site kinds to quantize, of qkv,o,gate_up,down (default all; "
                        "the others run in float: where the error comes from, TQ-2.15)")
    p.add_argument("--per-block", action="store_true", help="one micro rotation per 32-block")
    p.add_argument("--order", default="macro-micro", choices=("macro-micro", "micro-macro"),
                   help="composition of the full method (default macro-micro, see spec/TQ.md TQ-2.5)")
    p.add_argument("--full-macro-strategy", default=None,
                   help="macro strategy inside the full method (default block_hadamard, see TQ-2.5)")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke setting: 1 eval + 1 calibration window, 64 micro rows, 1 sweep, one random orthogonal per site kind")
    p.add_argument("--no-figures", action="store_true")
    add_performance_args(p)
    p.set_defaults(func=_run)


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
    """(RunSpec, TorqConfig) of parsed ``run`` arguments; SettingsError on a bad one (TQ-4.1, 4.2)."""
    from torq_ref.mx import SCALE_RULES

    from .methods import DEFAULT_METHODS, METHOD_PRESETS, METHODS, SETTINGS, SettingsError, TorqConfig, parse_list
    from .pipeline import RunSpec

    methods = parse_list(args.methods, METHODS, "method", default=DEFAULT_METHODS, presets=METHOD_PRESETS)
    settings = parse_list(args.settings, SETTINGS, "setting")
    if args.scale_rule not in SCALE_RULES:
        raise SettingsError(f"unknown scale rule {args.scale_rule!r}; choose from {', '.join(SCALE_RULES)}")
    if args.model_dir is not None and not (Path(args.model_dir) / "config.json").is_file():
        raise SettingsError(f"--model-dir {args.model_dir}: no config.json there (missing model)")
    if args.model_dir is not None and (args.model or args.models):
        raise SettingsError("give --model-dir or --model / --models, not both")
    if args.model and args.models:
        raise SettingsError("give --model or --models, not both")
    ev, ca = args.eval_windows, args.calib_windows
    cfg_kw = {}
    if args.quick:      # TQ-4.1: a smoke run of the whole table in under 3 minutes
        ev, ca = min(ev, 1), min(ca, 1)
        cfg_kw.update(micro_rows=64, max_sweeps=1, random_per_layer=False)
    from torq_ref.rotations.inter_block import STRATEGIES

    for opt, key in (("--macro-strategy", "macro_strategy"), ("--full-macro-strategy", "full_macro_strategy")):
        value = getattr(args, key)
        if value:
            if value not in STRATEGIES:
                raise SettingsError(f"unknown macro strategy {value!r} for {opt}; choose from {', '.join(STRATEGIES)}")
            cfg_kw[key] = value
    if args.scale_alpha is not None:
        alpha = _alpha_arg(args.scale_alpha)
        if alpha == "auto":
            from .scale_step import ALPHA_GRID

            cfg_kw["alpha_grid"] = ALPHA_GRID
        else:
            cfg_kw["scale_alpha"] = alpha
    for key in ("beta", "max_sweeps", "micro_rows"):
        if getattr(args, key) is not None:
            cfg_kw[key] = getattr(args, key)
    if not 0 <= args.holdout < 1:
        raise SettingsError("--holdout must be in [0, 1)")
    cfg_kw["weight_quant"] = getattr(args, "weight_quant", "rtn")
    cfg_kw["micro_objective"] = getattr(args, "micro_objective", "activation")
    if getattr(args, "quant_sites", None) is not None:
        from torq_ref.model.hooks import SITES

        cfg_kw["quant_sites"] = parse_list(args.quant_sites, SITES, "site kind")
    cfg = TorqConfig(scale_rule=args.scale_rule, seed=args.seed, holdout=args.holdout,
                     per_block=args.per_block, order=args.order, **cfg_kw)
    spec = RunSpec(methods=methods, settings=settings, eval_windows=ev, calib_windows=ca,
                   model=args.model_dir or args.model, dtype=args.dtype)
    from .engine import check_rows

    check_rows(spec.calib_windows * spec.window, cfg)       # TQ-6.2, before any model work
    return spec, cfg


def _alpha_arg(text) -> float | str:
    """--scale-alpha: 'auto' or a number in [0, 2] (TQ-2.7, TQ-2.11)."""
    from .methods import SettingsError

    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        alpha = float(text)
    except ValueError:
        raise SettingsError(f"--scale-alpha {text!r}: give a number in [0, 2] or 'auto'") from None
    if not 0 <= alpha <= 2:
        raise SettingsError("--scale-alpha must be in [0, 2] (or 'auto')")
    return alpha


def model_list(args) -> list[str | None]:
    """The models of a ``run`` (TQ-4.7): --models a,b,c, or the one --model / --model-dir
    (None: the default model)."""
    if args.models:
        items = [m.strip() for m in args.models.split(",") if m.strip()]
        if not items:
            from .methods import SettingsError

            raise SettingsError(f"--models {args.models!r} names no model")
        return items
    return [args.model_dir or args.model]


def model_label(model: str | None) -> str:
    """The short name of a model for output paths: the registry name, or a path's stem."""
    from torq_ref.model.registry import DEFAULT_MODEL

    if model is None:
        return DEFAULT_MODEL
    p = Path(model)
    return p.stem if (p.suffix == ".gguf" or p.is_dir()) else model


def _run(args) -> int:
    from .methods import SettingsError

    try:
        spec, cfg = settings_from_args(args)
        models = model_list(args)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    several = len(models) > 1
    from .parallel import make_executor

    try:
        executor = make_executor(args.jobs, args.scheduler)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ref_cache = None
    if args.ref_cache != "off":
        from torq_ref.evaluate.ref_cache import RefCache

        from .pipeline import _log

        ref_cache = RefCache(args.ref_cache, log=_log)
    try:
        return _run_models(args, spec, cfg, models, several, executor, ref_cache)
    finally:
        executor.close()


def _run_models(args, spec, cfg, models, several, executor, ref_cache) -> int:
    from dataclasses import replace

    from torq_ref.evaluate.summary import metrics_table
    from torq_ref.model.errors import ModelError

    from .methods import SettingsError
    from .pipeline import run
    from .report import table, write_figures, write_json

    done = []
    for name in models:
        label = model_label(name)
        out = Path(args.out or "out") / label if several else Path(args.out or Path("out") / label)
        try:
            results = run(replace(spec, model=name), cfg, executor=executor, ref_cache=ref_cache)
        except (SettingsError, ModelError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        results["settings"]["model"] = label
        path = write_json(results, out)
        print(f"\n## {label}\n")
        print(table(results))
        print()
        print(metrics_table(results["results"]))
        print(f"\nresults: {path}")
        if not args.no_figures:
            for p in write_figures(results, out):
                print(f"figure: {p}")
        print(f"total time: {results['timings']['total_s'] / 60:.1f} min")
        done.append((label, path))
    if several:                    # the cross-model report of the runs just made (spec/EV.md EV-4)
        from torq_ref.evaluate.cross_model import cross_model_table, load_results, write_report

        res = load_results([label for label, _ in done], [p for _, p in done])
        print("\n## all models\n")
        print(cross_model_table(res))
        from torq_ref.evaluate.cross_model import load_per_site

        per_site = load_per_site([label for label, _ in done], [p for _, p in done])
        for p in write_report(res, Path(args.out or "out") / "report", figure=not args.no_figures,
                              per_site=per_site):
            print(f"report: {p}")
    return 0
