"""``python -m torq_ref selftest --mutations [--plant NAME ...] [--area AREA ...] [--list]`` (ST-1.3)."""
from __future__ import annotations


def register(sub):
    from .plants import PLANTS

    p = sub.add_parser("selftest", help="mutation check: plant known bugs in a scratch copy, "
                                        "the tests must catch every one")
    p.add_argument("--mutations", action="store_true", help="run the planted-bug registry")
    p.add_argument("--plant", nargs="+", default=None, choices=[q.name for q in PLANTS], metavar="NAME",
                   help="only these plants (by name; --list shows them)")
    p.add_argument("--area", nargs="+", default=None, choices=sorted({q.area for q in PLANTS}),
                   help="only these areas")
    p.add_argument("--list", action="store_true", help="list the plants and exit")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per plant's test run")
    p.add_argument("--keep", action="store_true", help="keep the scratch copy")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .plants import PLANTS
    from .runner import run, select

    plants = select(PLANTS, args.plant, args.area)
    if args.list:
        for p in plants:
            print(f"{p.area:<12} {p.name:<38} {p.why}")
        print(f"{len(plants)} plants")
        return 0
    if not args.mutations:
        print("nothing to do: pass --mutations (or --list)")
        return 2
    return run(plants, timeout=args.timeout, keep=args.keep)
