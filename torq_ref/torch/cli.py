"""``python -m torq_ref eval-plan``: evaluate an exported plan with the torch path (spec/TQ.md TQ-9.3)."""
from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval-plan", help="evaluate an exported TORQ plan (run --export-plan) on the transformers "
                                         "model with torch: PPL, KLD, top-1 vs FP32, against the NumPy engine's")
    p.add_argument("--plan", required=True, metavar="DIR", help="plan directory written by run --export-plan")
    p.add_argument("--model", default=None,
                   help="Hugging Face layout directory (or registry name) of the same weights (default: the "
                        "plan's model directory)")
    p.add_argument("--device", default="cpu", help="torch device for the whole model: cpu (default) or cuda[:i]")
    p.add_argument("--device-map", default=None,
                   help="shard the model with accelerate instead (e.g. auto); overrides --device")
    p.add_argument("--rows", default=None, help="comma list of method/setting (default: every row of the plan)")
    p.add_argument("--eval-windows", type=int, default=None,
                   help="evaluate the first N of the plan's evaluation windows (default: all of them)")
    p.add_argument("--no-digest", action="store_true",
                   help="check the plan against the model by shapes and layer count only, not the weights' sha256")
    p.add_argument("--out", default=None, help="results JSON (default: <plan>/eval-plan-<device>.json)")
    p.set_defaults(func=_run)


def _rows(text):
    if text is None:
        return None
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if "/" not in item:
            from torq_ref.torq.plan import PlanError

            raise PlanError(f"--rows item {item!r}: write method/setting, e.g. torq/W16A4")
        m, s = item.split("/", 1)
        out.append((m, s))
    return out


def model_dir_of(plan, name) -> Path:
    """The model directory: ``--model`` (a directory or a registry name), else the plan's."""
    from torq_ref.model.registry import ensure_model

    if name is None:
        d = plan.manifest["model"]["dir"]
        if d is None or not Path(d).is_dir():
            name = plan.manifest["model"]["name"]
            if name is None:
                from torq_ref.torq.plan import PlanError

                raise PlanError("the plan's model directory is gone and it names no model; give --model")
        else:
            return Path(d)
    return Path(ensure_model(name))


def _run(args) -> int:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        print(f"error: eval-plan needs the torch extra (pip install 'torq-ref[torch]'): {err}", file=sys.stderr)
        return 2
    from torq_ref.model.errors import ModelError
    from torq_ref.torq.plan import PlanError, load_plan

    from .evaluate import BOUND, BOUND_WINDOWS, compare, evaluate_plan, load_hf_model, plan_windows, write_json

    try:
        plan = load_plan(args.plan)
        rows = _rows(args.rows)
        for r in rows or ():
            plan.row(*r)
        model_dir = model_dir_of(plan, args.model)
        windows = plan_windows(plan, model_dir, args.eval_windows)
        model = load_hf_model(model_dir, args.device, args.device_map)
        res = evaluate_plan(plan, model, windows, rows, digest=not args.no_digest,
                            progress=lambda j, n: print(f"[eval-plan] window {j}/{n}", file=sys.stderr, flush=True))
    except (PlanError, ModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cmp = compare(res, plan.manifest["engine_results"])
    device = args.device_map and f"device_map={args.device_map}" or args.device
    out = {"plan": str(args.plan), "model_dir": str(model_dir), "device": device,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "windows": int(len(windows)), "rows": res, "comparison": cmp, "bound": BOUND, "bound_windows": BOUND_WINDOWS}
    path = write_json(out, args.out or Path(args.plan) / f"eval-plan-{device.replace(':', '')}.json")
    print(f"{'method':<12} {'setting':<6} {'ppl torch':>10} {'ppl numpy':>10} {'kld torch':>10} {'kld numpy':>10} "
          f"{'top1 torch':>10} {'top1 numpy':>10}  within bound")
    by = {(c["method"], c["setting"]): c for c in cmp}
    for r in res:
        c = by.get((r["method"], r["setting"]))
        n = c["numpy"] if c else {"ppl": float("nan"), "kld": float("nan"), "top1": float("nan")}
        print(f"{r['method']:<12} {r['setting']:<6} {r['ppl']:10.4f} {n['ppl']:10.4f} {r['kld']:10.5f} "
              f"{n['kld']:10.5f} {r['top1']:10.4f} {n['top1']:10.4f}  {'-' if c is None else c['within_bound']}")
    print(f"results: {path}")
    return 0 if all(c["within_bound"] for c in cmp) else 1
