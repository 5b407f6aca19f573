"""``python -m torq_ref conformance --kernel MODULE:FUNCTION --kind KIND ...`` (spec/CF.md CF-1.3)."""
from __future__ import annotations

from .common import KINDS


def register(sub):
    p = sub.add_parser("conformance", help="check a kernel against the golden vectors")
    p.add_argument("--kernel", required=True, help="MODULE:FUNCTION of the kernel under test")
    p.add_argument("--kind", required=True,
                   choices=KINDS)
    p.add_argument("--profile", default="ocp",
                   help="ocp, nvidia, torchao, torchao-rceil, ceil, even, any-rule, nvfp4-reciprocal, "
                        "vllm-cutlass-moe, mse; options after '+': ocp+unsigned-zero, "
                        "ocp+cast-floor, ocp+cast-ceil-satfinite (CF-2.4), NVFP4 ocp+no-tensor-scale "
                        "(CF-2.5); hadamard conventions "
                        "+unnormalized, +sequency, +left (CF-5.2)")
    p.add_argument("--level", default="default", choices=("quick", "default", "thorough"))
    from . import FMTS

    p.add_argument("--fmt", default="e2m1", choices=FMTS, help="element format (default e2m1)")
    p.add_argument("--golden-dir", default=None, help="read vectors from this directory")
    p.add_argument("--max-failures", type=int, default=5)
    p.add_argument("--accumulate-u", type=float, default=None,
                   help="dot_scaled accumulator unit roundoff (default 2^-24, float32; CF-3.6)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import json

    from torq_ref.errors import argument

    from . import check
    from .plugin import load_kernel
    from .profiles import get_profile, with_accumulate_u

    with argument("--profile", args.profile):          # CL-3.2: the argument named in the error
        get_profile(args.profile)
    kernel = load_kernel(args.kernel)                  # its errors name --kernel themselves
    rep = check(args.kind, kernel,
                profile=with_accumulate_u(args.profile, args.accumulate_u), level=args.level,
                fmt=args.fmt, golden_dir=args.golden_dir, max_failures=args.max_failures)
    print(json.dumps(rep.to_dict(), indent=1) if args.json else str(rep))
    return 0 if rep.passed else 1
