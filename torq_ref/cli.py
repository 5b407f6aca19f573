"""Command line of torq-ref: ``python -m torq_ref <command> ...`` (spec/CL.md).

Each command lives next to the code it drives, in a module exposing a registration function
(``register(subparsers)`` for a top-level command, ``register_bench`` for one below ``bench``); that
function adds its parser and sets ``func`` (called with the parsed namespace, returns an exit
code). This file lists those modules (:data:`COMMANDS`), the spellings that were removed and what
replaces them (:data:`RENAMED`, :data:`REMOVED_OPTIONS`), and is the one place that turns a
user's bad input (a :class:`torq_ref.errors.UserError`) into ``error: ...`` and exit status 2
(CL-3.1; the bad inputs of CL-3.4 among them).
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: (group, module, registration function) in the order ``--help`` lists them (CL-1.1): the user
#: commands first; ``bench ...`` and ``experiment ...`` are groups of subcommands. A module that
#: does not exist yet is skipped (``eval-plan`` until torq_ref/torch/ lands).
COMMANDS = (
    (None, "torq_ref.torq.cli", "register"),             # run: the end-to-end TORQ table
    (None, "torq_ref.torch.cli", "register"),            # eval-plan: an exported TORQ plan in torch
    (None, "torq_ref.evaluate.cli", "register"),         # report (and report --seeds)
    (None, "torq_ref.model.cli", "register"),            # models [list|import|ppl]
    (None, "torq_ref.mx.cli", "register"),               # demo
    (None, "torq_ref.conformance.cli", "register"),      # conformance: check a kernel from the shell
    (None, "torq_ref.golden.cli", "register"),           # golden: regenerate golden/
    ("bench", "torq_ref.mx.cli", "register_bench"),         # bench codec
    ("bench", "torq_ref.rotations.cli", "register_bench"),  # bench schur-horn, bench maxent
    ("bench", "torq_ref.model.cli", "register_bench"),      # bench forward
    ("bench", "torq_ref.torq.bench", "register_bench"),     # bench fits, bench speed
    ("experiment", "torq_ref.experiments.cli", "register"),  # experiment inter-block, ...
    (None, "torq_ref.selftest.cli", "register"),         # selftest --mutations
)
#: the help line of each group of :data:`COMMANDS`
GROUPS = {"bench": "timings: bench codec | schur-horn | maxent | forward | fits | speed",
          "experiment": "measurements behind the design choices: experiment inter-block | block-energy "
                        "| maxent-synthetic | maxent-real | torq-variant | limit | scale-sites"}

#: commands that were renamed: old spelling -> the new one (CL-2.1)
RENAMED = {
    "ppl": "models ppl", "import-gguf": "models import", "seeds": "report --seeds",
    "bench-codec": "bench codec", "bench-schur-horn": "bench schur-horn",
    "bench-maxent": "bench maxent", "bench-forward": "bench forward",
    "compare-inter-block": "experiment inter-block", "compare-block-energy": "experiment block-energy",
    "maxent-synthetic": "experiment maxent-synthetic", "maxent-real": "experiment maxent-real",
}
_VARIANT = "python -m torq_ref experiment torq-variant"
#: options that were removed: (command, option) -> what to use instead (CL-2.2)
REMOVED_OPTIONS = {
    ("run", "--models"): "--model a,b,c",
    ("run", "--model-dir"): "--model PATH",
    ("run", "--order"): f"{_VARIANT} --order ...",
    ("run", "--full-macro-strategy"): f"{_VARIANT} --full-macro-strategy ...",
    ("run", "--per-block"): f"{_VARIANT} --per-block",
    ("models", "--gguf"): "--model FILE.gguf",
    ("bench", "--gguf"): "--model FILE.gguf",
    ("experiment", "--model-dir"): "--model NAME|PATH",
}
#: option values that were removed: (command, option, value) -> what to use instead (CL-2.2)
REMOVED_VALUES = {("run", "--scale-alpha", "auto"): f"{_VARIANT} --alpha-grid auto"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torq_ref",
        description="Reference MXFP4 codec, TORQ rotations and conformance oracle.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    groups: dict[str, argparse._SubParsersAction] = {}
    for group, name, fn in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            # Only a module that does not exist yet is skipped; a broken import inside it is not.
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise
            continue
        target = sub
        if group is not None:
            if group not in groups:
                g = sub.add_parser(group, help=GROUPS[group])
                groups[group] = g.add_subparsers(dest=f"{group}_command", metavar=f"<{group}>",
                                                 required=True)
            target = groups[group]
        getattr(module, fn)(target)
    return parser


def removed_spelling(argv: list[str]) -> str | None:
    """The error message for a removed command, option or option value in ``argv``, or None
    (CL-2.1, CL-2.2)."""
    if not argv:
        return None
    command = argv[0]
    if command in RENAMED:
        return f"{command!r} was renamed; use {RENAMED[command]!r}"
    for i, arg in enumerate(argv[1:], 1):
        option, eq, value = arg.partition("=")
        if (command, option) in REMOVED_OPTIONS:
            return f"{option} was removed; use {REMOVED_OPTIONS[command, option]}"
        if not eq and i + 1 < len(argv):
            value = argv[i + 1]
        if (command, option, value) in REMOVED_VALUES:
            return f"{option} {value} was removed from {command}; use {REMOVED_VALUES[command, option, value]}"
    return None


def main(argv: list[str] | None = None) -> int:
    from torq_ref.errors import UserError

    argv = sys.argv[1:] if argv is None else list(argv)
    gone = removed_spelling(argv)
    if gone is not None:
        print(f"error: {gone}", file=sys.stderr)
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:                # argparse's own errors (exit 2, CL-3.3) and --help
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from torq_ref.blas_threads import fixed_blas_threads

    try:
        with fixed_blas_threads():           # FW-1.8: results independent of the core count
            return int(args.func(args) or 0)
    except UserError as err:                 # CL-3.1: a bad input, never a bug: no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
