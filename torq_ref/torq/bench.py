"""Benchmarks of the main job (spec/TQ.md TQ-6.6..6.8): where its time goes and what the
executors save. Figures are recorded in benchmarks/run.md; no timed tests. ``python -m torq_ref.torq.bench``
takes the same subcommands.

``python -m torq_ref bench fits [--model NAME] [--layer I] [--methods ...]``
    per-method build seconds of the transforms of one real layer (its four sites), inline, BLAS on
    one thread, each method with a fresh memo (torq does not reuse torq-micro's fit here).
``python -m torq_ref bench speed [--quick] [--jobs 1,2] [--out DIR]``
    in one run: the project's FP32 forward of one 512-token window against transformers' forward
    of the same model on the same CPU and thread count, quantized rows per window against the
    FP32 one, the ratios; then the whole default ``run`` (``--quick`` settings if asked) once per
    ``--jobs`` value, each in a fresh process: wall time, peak RSS of its largest process, and
    whether the results.json files are the same bytes apart from timings (TQ-6.6).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _load(model_name, dtype="float32"):
    from torq_ref import model as M
    from torq_ref.model.data import bos_token_id
    from torq_ref.model.registry import ensure_model

    model_dir = ensure_model(model_name, progress=False)
    return M.load(model_dir, dtype=np.dtype(dtype)), model_dir, M, bos_token_id(model_dir)


def bench_fits(args) -> int:
    from torq_ref.model.capture import ActivationCapture

    from . import engine
    from .methods import DEFAULT_METHODS, METHODS, SCALED_METHODS, TorqConfig, parse_list

    model, model_dir, M, bos = _load(args.model)
    ids = M.tokenize_text(model_dir)
    _, calib_w = M.split_windows(ids, 1, args.calib_windows, 512, bos)
    cfg = TorqConfig()
    methods = parse_list(args.methods, METHODS, "method", default=DEFAULT_METHODS)
    layer = model.config.num_layers // 2 if args.layer is None else args.layer
    rope = model.rope_tables(calib_w.shape[1])
    x = model.embed_tokens(calib_w)
    t0 = time.perf_counter()
    for i in range(layer):
        x = engine._run_layer(model, i, x, rope, {})
    cap = ActivationCapture(layers=[layer], moments=True, inputs=True, max_rows=2 * cfg.micro_rows)
    engine._run_layer(model, layer, x, rope, {}, capture=cap)
    print(f"model {model_dir}  layer {layer}/{model.config.num_layers}  {args.calib_windows} calibration "
          f"windows  micro_rows {cfg.micro_rows}  (calibration {time.perf_counter() - t0:.1f} s)")
    # warm-up: every method once on the narrowest site (numba compilation, BLAS buffers)
    for method in methods:
        _fit_one(model, engine, cap, layer, method, "o", cfg, SCALED_METHODS)
    print(f"{'method':<18} {'build s':>8}   per site (qkv, o, gate_up, down)")
    total = 0.0
    for method in methods:
        times = {site: _fit_one(model, engine, cap, layer, method, site, cfg, SCALED_METHODS)
                 for site in M.SITES}
        s = sum(times.values())
        total += s
        print(f"{method:<18} {s:8.2f}   " + "  ".join(f"{times[k]:6.2f}" for k in M.SITES))
    print(f"{'all':<18} {total:8.2f}   (x {model.config.num_layers} layers = {total * model.config.num_layers / 60:.1f} min of fits per run)")
    return 0


def _fit_one(model, engine, cap, layer, method, site, cfg, scaled_methods) -> float:
    """Seconds of one (site, method) fit unit of the engine, inline, with a fresh memo."""
    from .parallel import Inline
    from .scale_step import ScaledCalibration, scaled_layer

    scaled = (method,) if method in scaled_methods else ()
    views, weights = {False: cap}, {False: model.layers[layer]}
    if scaled:
        scales = {s: engine.layer_scales(model, layer, s, cap, cfg)[0] for s in cfg.scale_sites}
        weights[True] = scaled_layer(model.layers[layer], scales, model.config)
        views[True] = ScaledCalibration(cap, {(layer, s): v for s, v in scales.items()})
    shared = (layer, views, weights, scaled, cfg, None, {}, engine.CORE)
    return Inline().map(engine._fit_unit, model, shared, [(site, (method,))])[0][method][2]


def _best(fn, repeats: int) -> float:
    fn()                                              # warm-up (numba compilation, caches)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_forward(args) -> dict:
    """Seconds per 512-token window: the project's FP32 forward, transformers', quantized rows."""
    from torq_ref.model import Transform
    from torq_ref.rotations.baselines import sylvester_hadamard

    from .methods import TorqConfig
    from .oracle import plan_for

    model, model_dir, M, bos = _load(args.model)
    ids = M.tokenize_text(model_dir)
    eval_w, _ = M.split_windows(ids, 1, 1, 512, bos)
    cfg = TorqConfig()
    L = model.config.num_layers
    had = {(i, s): Transform(block=sylvester_hadamard(32), block_size=32) for i in range(L) for s in M.SITES}
    rows = {"fp32 (numpy)": None,
            "rtn W16A4": plan_for("rtn", "W16A4", {}, cfg),
            "hadamard32 W16A4": plan_for("hadamard32", "W16A4", had, cfg),
            "rtn W4A4": plan_for("rtn", "W4A4", {}, cfg)}
    out = {}
    for name, plan in rows.items():
        out[name] = _best(lambda: model.forward(eval_w, quant=plan), args.repeats)
    if not args.no_transformers:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(1)
        hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        tid = torch.tensor(eval_w)

        def run_hf():
            with torch.no_grad():
                hf(tid, use_cache=False)
        out[f"transformers {__import__('transformers').__version__} fp32"] = _best(run_hf, args.repeats)
    print(f"\n### per 512-token window, one thread, best of {args.repeats} ({model_dir.name})\n")
    base = out["fp32 (numpy)"]
    print("| forward | s / window | vs fp32 (numpy) |\n|---|---|---|")
    for name, t in out.items():
        print(f"| {name} | {t:.3f} | {t / base:.2f} |")
    return out


_WRAP = ("import json, resource, subprocess, sys, time\n"
         "t = time.perf_counter(); rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
         "w = time.perf_counter() - t\n"
         "print(json.dumps({'rc': rc, 'wall_s': w, 'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")


def bench_runs(args) -> dict:
    """The whole ``run`` once per --jobs value, each in a fresh process tree."""
    from .parallel import without_timings

    out_root = Path(args.out)
    out = {}
    env = dict(os.environ, TORQ_REF_BLAS_THREADS="1")
    for jobs in [int(j) for j in args.jobs.split(",")]:
        d = out_root / f"jobs{jobs}"
        cmd = [sys.executable, "-m", "torq_ref", "run", "--jobs", str(jobs), "--out", str(d), "--no-figures",
               "--ref-cache", "off", *(["--quick"] if args.quick else []), *(["--model", args.model] if args.model else []),
               *args.run_args.split()]
        res = json.loads(subprocess.run([sys.executable, "-c", _WRAP, *cmd], env=env, check=True,
                                        capture_output=True, text=True).stdout.strip().splitlines()[-1])
        res["results"] = d / "results.json"
        out[jobs] = res
    print(f"\n### the whole `run`{' --quick' if args.quick else ''}, per --jobs (TORQ_REF_BLAS_THREADS=1)\n")
    print("| --jobs | exit | wall (min) | peak RSS, largest process (GB) |\n|---|---|---|---|")
    for jobs, r in out.items():
        print(f"| {jobs} | {r['rc']} | {r['wall_s'] / 60:.2f} | {r['peak_kb'] / 1e6:.2f} |")
    texts = {j: json.dumps(without_timings(json.loads(r["results"].read_text())), sort_keys=True)
             for j, r in out.items() if r["rc"] == 0}
    if len(texts) > 1:
        same = len(set(texts.values())) == 1
        print(f"\nresults.json apart from timings: {'the same bytes' if same else 'DIFFERENT'} for --jobs "
              + ", ".join(map(str, texts)))
    first = next(iter(out.values()))
    for jobs, r in out.items():
        if r is not first and r["wall_s"] > 0:
            print(f"speed-up of --jobs {jobs}: {first['wall_s'] / r['wall_s']:.2f}x")
    return out


def bench_speed(args) -> int:
    bench_forward(args)
    bench_runs(args)
    return 0


def _add_fits(sub):
    f = sub.add_parser("fits", help="per-method build seconds of one real layer's transforms")
    f.add_argument("--model", default=None)
    f.add_argument("--layer", type=int, default=None, help="default: the middle layer")
    f.add_argument("--methods", default=None)
    f.add_argument("--calib-windows", type=int, default=4)
    f.set_defaults(func=_pinned(bench_fits))


def _add_speed(sub):
    s = sub.add_parser("speed", help="forward per window vs transformers, rows vs fp32, whole run per --jobs")
    s.add_argument("--model", default=None)
    s.add_argument("--quick", action="store_true", help="the whole runs with `run --quick` (a check of the script)")
    s.add_argument("--jobs", default="1,2", help="comma list of --jobs values for the whole runs")
    s.add_argument("--run-args", default="", help="more `run` options for the whole runs, e.g. \"--methods fp32,rtn\"")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--no-transformers", action="store_true")
    s.add_argument("--out", default="out/bench-speed")
    s.set_defaults(func=_pinned(bench_speed))


def _pinned(fn):
    """``fn(args)`` with BLAS on one thread (FW-1.8), its exit code an int."""
    def run(args) -> int:
        from torq_ref.blas_threads import fixed_blas_threads

        with fixed_blas_threads():
            return int(fn(args) or 0)
    run.__doc__ = fn.__doc__
    return run


def register_bench(sub) -> None:
    """``bench fits`` and ``bench speed`` of ``python -m torq_ref`` (the same as this module's
    ``main``)."""
    _add_fits(sub)
    _add_speed(sub)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m torq_ref.torq.bench")
    sub = p.add_subparsers(dest="what", required=True)
    register_bench(sub)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
