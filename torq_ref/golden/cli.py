"""``python -m torq_ref golden --out DIR [--level default|thorough] [--seed N] [--check]`` (GV-5.1)."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser("golden", help="regenerate the golden vectors (JSON, bulk, MANIFEST)")
    p.add_argument("--out", required=True, help="output directory (e.g. golden)")
    p.add_argument("--level", default="default", choices=("default", "thorough"),
                   help="coverage level (default: the committed CI set)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: the committed one)")
    p.add_argument("--check", action="store_true",
                   help="do not write: compare DIR with a fresh regeneration, exit 1 on any difference")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import sys
    from pathlib import Path

    from . import generate
    from .io import serialize, write_tree

    vs = generate(args.level, args.seed)
    out = Path(args.out)
    if args.check:
        files = serialize(vs)
        bad = [p for p, data in files.items()
               if not (out / p).is_file() or (out / p).read_bytes() != data]
        for p in bad:
            print(f"differs: {p}", file=sys.stderr)
        print(f"{len(files) - len(bad)}/{len(files)} files identical")
        return 1 if bad else 0
    manifest = write_tree(vs, out)
    print(f"wrote {len(manifest['files']) + 1} files, {manifest['totalCases']} cases, "
          f"level {manifest['level']}, seed {manifest['seed']} to {out}")
    return 0
