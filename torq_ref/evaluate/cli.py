"""``python -m torq_ref report``: the cross-model table and KLD figure (spec/EV.md section 4, EV-4.4);
``python -m torq_ref seeds``: the seed spread of one model's runs (section 5, EV-5.4)."""
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
    q = sub.add_parser("seeds", help="the seed spread of one model's runs that differ only in --seed")
    q.add_argument("--results", required=True, help="comma list of results.json paths, one per seed (two or more)")
    q.add_argument("--method", default="torq", help="the method held against the peers (default torq)")
    q.add_argument("--peers", default=None, help="comma list of peer methods (default: those of the report, EV-4.5)")
    q.add_argument("--out", default=None, help="also write the two tables to this markdown file")
    q.set_defaults(func=_seeds)


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


def _seeds(args) -> int:
    from pathlib import Path

    from .cross_model import PEERS, ReportError
    from .seed_spread import load_seed_runs, seed_head_to_head, seed_head_to_head_table, seed_table

    paths = [p.strip() for p in args.results.split(",") if p.strip()]
    peers = PEERS if args.peers is None else tuple(p.strip() for p in args.peers.split(",") if p.strip())
    try:
        runs = load_seed_runs(paths)
        h2h = seed_head_to_head(runs, args.method, peers)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model = runs[0]["settings"].get("model", "?")
    text = (f"# Seed spread: {model}, seeds {', '.join(str(r['seed']) for r in runs)}\n\n"
            f"Mean KLD per seed (spec/EV.md EV-5.2):\n\n{seed_table(runs)}\n")
    if h2h:
        text += (f"\n{args.method} against its peers, paired by window on each seed (EV-5.3):\n\n"
                 f"{seed_head_to_head_table(h2h)}\n")
    else:
        text += f"\nNo run has both {args.method!r} and a peer row.\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0
