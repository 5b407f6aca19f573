"""``models`` (``models [list]``, ``models import``, ``models ppl``) and ``bench forward``
(spec/FW.md FW-7.1, FW-10.5; spec/CL.md section 1).

Every command that loads a model takes ``--model NAME|PATH`` (FW-7.1), the one way to name one."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from torq_ref.errors import UserError, positive_int

MODEL_HELP = ("registry name (see `python -m torq_ref models`; default smollm2-135m), a .gguf file "
              "(llama / qwen2 / gemma3) or a Hugging Face safetensors model dir")
CACHE_HELP = "cache dir (default: $TORQ_REF_CACHE or ~/.cache/torq_ref)"


def register(sub):
    """``models``: the registry listing, with ``list``, ``import`` and ``ppl`` below it."""
    p = sub.add_parser("models", help="the model registry (list), importing a model, its perplexity (ppl)")
    p.add_argument("--cache", help=CACHE_HELP)
    p.set_defaults(func=_run_models)
    msub = p.add_subparsers(dest="models_command", metavar="{list,import,ppl}")

    q = msub.add_parser("list", help="names, families, sources, sha256, what is present (the default)")
    _cache_arg(q)
    q.set_defaults(func=_run_models)

    q = msub.add_parser("import", help="fetch, assemble and import a registry model (or a GGUF file) "
                                       "into a HF-layout dir")
    q.add_argument("--model", help=MODEL_HELP)
    q.add_argument("--out", help="output dir (default: <cache>/<model dir>)")
    _cache_arg(q)
    q.add_argument("--force", action="store_true", help="re-import even if the output is current")
    q.set_defaults(func=_run_import)

    from torq_ref.mx import FORMATS, SCALE_RULES

    q = msub.add_parser("ppl", help="perplexity on the evaluation windows of the protocol (spec/FW.md section 6)")
    _model_args(q)
    q.add_argument("--eval-windows", type=positive_int, default=8)
    q.add_argument("--window", type=positive_int, default=512)
    q.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    q.add_argument("--act-fmt", default="none", choices=("none", *FORMATS),
                   help="MX element format for all linear inputs, or none")
    q.add_argument("--weight-fmt", default="none", choices=("none", *FORMATS),
                   help="MX element format for weights (RTN), or none")
    q.add_argument("--scale-rule", default="floor", choices=SCALE_RULES)
    q.add_argument("--reference", action="store_true",
                   help="also run transformers on the same GGUF and windows (crosscheck extra; "
                        "activation quantization: e2m1 floor only, via an independent torch quantizer)")
    q.set_defaults(func=_run_ppl)


def register_bench(sub):
    """``bench forward``."""
    p = sub.add_parser("forward", help="tokens/s of the NumPy forward vs transformers, same threads")
    _model_args(p)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--seq", type=positive_int, default=512)
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--no-transformers", action="store_true")
    p.set_defaults(func=_run_bench, cache=None)


def _model_args(p):
    p.add_argument("--model", help=MODEL_HELP)
    _cache_arg(p)


def _cache_arg(p):
    """--cache of a command below ``models`` (which has its own: ``models --cache D ppl`` and
    ``models ppl --cache D`` both work) or of ``bench forward``."""
    p.add_argument("--cache", default=argparse.SUPPRESS, help=CACHE_HELP)


def _run_models(args) -> int:
    from .registry import describe

    print(describe(args.cache))
    return 0


def _run_import(args) -> int:
    from .gguf_import import import_gguf
    from .registry import Entry, assemble, cache_dir, resolve

    what = resolve(args.model)
    if isinstance(what, Entry):
        src, default_out = assemble(what, args.cache), cache_dir(args.cache) / what.dir_name
    elif what.is_dir():
        print(f"{what} is a model directory already; nothing to import")
        return 0
    else:
        src, default_out = what, cache_dir(args.cache) / "imported" / what.stem
    out = import_gguf(src, args.out or default_out, force=args.force)
    print(f"imported {src} -> {out}")
    return 0


def _plan(args):
    from .hooks import QuantPlan

    act = None if args.act_fmt == "none" else args.act_fmt
    wfmt = None if args.weight_fmt == "none" else args.weight_fmt
    if act is None and wfmt is None:
        return None
    return QuantPlan.uniform(act, args.scale_rule, weight_fmt=wfmt, weight_scale_rule=args.scale_rule)


def _run_ppl(args) -> int:
    import numpy as np

    from .data import text_windows
    from .metrics import perplexity
    from .model import load
    from .registry import ensure_model

    plan = _plan(args)
    model = load(ensure_model(args.model, args.cache), dtype=getattr(np, args.dtype))
    windows, _ = text_windows(model, args.eval_windows, 0, args.window)         # BOS rule of FW-6.5
    t0 = time.perf_counter()
    ppl, nll = perplexity(model, windows, plan, return_nll=True)
    dt = time.perf_counter() - t0
    print(f"model {model.path}  windows {len(windows)}x{args.window}  BOS {model.bos_token_id}  dtype {args.dtype}  "
          f"act {args.act_fmt}  weights {args.weight_fmt}  scale {args.scale_rule}")
    print(f"PPL {ppl:.4f}   (per-window NLL {np.round(nll, 4).tolist()})   {dt:.1f} s")
    if args.reference:
        from .reference import add_act_quant_hooks, hf_from_source, hf_perplexity
        from .registry import reference_source

        if args.weight_fmt != "none" or args.act_fmt not in ("none", "e2m1") or (
                args.act_fmt == "e2m1" and args.scale_rule != "floor"):
            raise UserError("--reference supports FP32 and W16A4 e2m1/floor only")
        hf, _ = hf_from_source(*reference_source(args.model, args.cache))
        if args.act_fmt == "e2m1":
            add_act_quant_hooks(hf)
        t0 = time.perf_counter()
        ref, rnll = hf_perplexity(hf, windows, return_nll=True)
        print(f"transformers PPL {ref:.4f}   (per-window NLL {np.round(rnll, 4).tolist()})   "
              f"{time.perf_counter() - t0:.1f} s")
    return 0


#: thread variables the benchmark sets for its own run; TORQ_REF_BLAS_THREADS too, so that the
#: command line's fixed BLAS thread count (spec/FW.md FW-1.8) is the one asked for
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "TORQ_REF_BLAS_THREADS")


def _run_bench(args) -> int:
    # BLAS reads its thread count at import: re-run this command with the variables set.
    if any(os.environ.get(v) != str(args.threads) for v in _THREAD_VARS):
        env = dict(os.environ, **{v: str(args.threads) for v in _THREAD_VARS})
        cmd = [sys.executable, "-m", "torq_ref", "bench", "forward", *_bench_argv(args)]
        return subprocess.call(cmd, env=env)
    import numpy as np

    from .hooks import QuantPlan
    from .model import load
    from .registry import ensure_model

    model_dir = ensure_model(args.model, args.cache)
    model = load(model_dir)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(1, args.seq))

    from .hooks import SITES, Transform

    plan = QuantPlan.uniform("e2m1", "floor")
    rng = np.random.default_rng(0)
    rot = {s: Transform(np.linalg.qr(rng.standard_normal((model.site_width(s),) * 2))[0]) for s in SITES}
    online = QuantPlan.uniform("e2m1", "floor", mode="online", transforms={
        (i, s): rot[s] for i in range(model.config.num_layers) for s in SITES})
    runs = {"numpy fp32": lambda: model.forward(ids),
            "numpy fp32 + MXFP4 act (all 7 linears)": lambda: model.forward(ids, quant=plan),
            "numpy + dense rotation (online) + MXFP4 act": lambda: model.forward(ids, quant=online)}
    if not args.no_transformers:
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(args.threads)
        hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        tid = torch.tensor(ids)

        def run_hf():
            with torch.no_grad():
                hf(tid, use_cache=False)
        runs[f"transformers {__import__('transformers').__version__} / torch {torch.__version__}"] = run_hf
    # interleaved repeats, best time each: fair under background load
    best = {name: float("inf") for name in runs}
    for rep in range(args.repeats + 1):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            if rep:                                    # repeat 0 is the warm-up
                best[name] = min(best[name], time.perf_counter() - t)
    rows = list(best.items())
    print(f"model {model_dir}  seq {args.seq}  threads {args.threads}  best of {args.repeats}")
    base = rows[-1][1] if not args.no_transformers else rows[0][1]
    for name, t in rows:
        print(f"{name:55s} {t * 1000:8.1f} ms  {args.seq / t:8.0f} tok/s  time/ref {t / base:5.2f}")
    return 0


def _bench_argv(args):
    out = ["--threads", str(args.threads), "--seq", str(args.seq), "--repeats", str(args.repeats)]
    for k in ("model", "cache"):
        if getattr(args, k):
            out += [f"--{k}", getattr(args, k)]
    if args.no_transformers:
        out.append("--no-transformers")
    return out
