"""``python -m torq_ref report``: the cross-model table and KLD figure (spec/EV.md section 4, EV-4.4),
and with ``--seeds`` the seed spread of one model's runs (section 5, EV-5.4)."""
from __future__ import annotations



def register(sub) -> None:
    p = sub.add_parser("report", help="one table (and a KLD figure) of several models' results.json; "
                                      "with --seeds, the seed spread of one model's runs")
    p.add_argument("--models", default=None, help="comma list of model names, e.g. smollm2-135m,qwen2.5-coder-0.5b")
    p.add_argument("--results", default=None,
                   help="comma list of results.json paths, one per model (default: ROOT/<model>/results.json)")
    p.add_argument("--root", default="out", help="directory holding <model>/results.json (default out)")
    p.add_argument("--out", default=None,
                   help="output directory (default out/report); with --seeds a markdown file (default: none)")
    p.add_argument("--no-figures", action="store_true")
    g = p.add_argument_group("seed spread (EV-5.4)")
    g.add_argument("--seeds", default=None, metavar="A.json,B.json[,...]",
                   help="comma list of results.json paths of one model's runs that differ only in --seed "
                        "(two or more): the seed spread instead of the cross-model table")
    g.add_argument("--method", default="torq", help="the method held against the peers (default torq)")
    g.add_argument("--peers", default=None, help="comma list of peer methods (default: those of the report, EV-4.5)")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from .cross_model import (ReportError, cross_model_table, head_to_head, head_to_head_table,
                              imbalance_table, load_per_site, load_results, write_report)

    if (args.models is None) == (args.seeds is None):
        raise ReportError("give --models (the cross-model table) or --seeds (the seed spread), one of them")
    if args.seeds is not None:
        return _seeds(args)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    paths = None if args.results is None else [p.strip() for p in args.results.split(",") if p.strip()]
    results = load_results(models, paths, args.root)
    print(cross_model_table(results))
    h2h = head_to_head(results)
    if h2h:
        print("\n" + head_to_head_table(h2h))
    per_site = load_per_site(models, paths, args.root)
    table = imbalance_table(per_site)
    if table:
        print("\n" + table)
    for p in write_report(results, args.out or "out/report", figure=not args.no_figures, per_site=per_site):
        print(f"wrote {p}")
    return 0


def _seeds(args) -> int:
    from pathlib import Path

    from .cross_model import PEERS
    from .seed_spread import load_seed_runs, seed_head_to_head, seed_head_to_head_table, seed_table

    paths = [p.strip() for p in args.seeds.split(",") if p.strip()]
    peers = PEERS if args.peers is None else tuple(p.strip() for p in args.peers.split(",") if p.strip())
    runs = load_seed_runs(paths)
    h2h = seed_head_to_head(runs, args.method, peers)
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
