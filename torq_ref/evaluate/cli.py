"""``python -m torq_ref report``: the cross-model table and KLD figure (spec/EV.md section 4, EV-4.4)."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("report", help="one table (and a KLD figure) of several models' results.json")
    p.add_argument("--models", required=True, help="comma list of model names, e.g. smollm2-135m,qwen2.5-coder-0.5b")
    p.add_argument("--results", default=None,
                   help="comma list of results.json paths, one per model (default: ROOT/<model>/results.json)")
    p.add_argument("--root", default="out", help="directory holding <model>/results.json (default out)")
    p.add_argument("--out", default="out/report", help="output directory (default out/report)")
    p.add_argument("--no-figures", action="store_true")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from .cross_model import (ReportError, cross_model_table, head_to_head, head_to_head_table,
                              imbalance_table, load_per_site, load_results, write_report)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    paths = None if args.results is None else [p.strip() for p in args.results.split(",") if p.strip()]
    try:
        results = load_results(models, paths, args.root)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(cross_model_table(results))
    h2h = head_to_head(results)
    if h2h:
        print("\n" + head_to_head_table(h2h))
    per_site = load_per_site(models, paths, args.root)
    table = imbalance_table(per_site)
    if table:
        print("\n" + table)
    for p in write_report(results, args.out, figure=not args.no_figures, per_site=per_site):
        print(f"wrote {p}")
    return 0
