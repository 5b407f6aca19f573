"""Command line of torq-ref: ``python -m torq_ref <subcommand> ...``.

Each subcommand lives next to the code it drives, in a module exposing
``register(subparsers)``; that function adds its parser and sets ``func`` (called with the parsed
namespace, returns an exit code). This file only lists those modules.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that contribute subcommands, in the order ``--help`` lists them.
SUBCOMMAND_MODULES = (
    "torq_ref.torq.cli",         # run: the end-to-end TORQ table (the main job)
    "torq_ref.torch.cli",        # eval-plan: an exported plan on the transformers model (torch path)
    "torq_ref.evaluate.cli",     # report: the cross-model table of several runs
    "torq_ref.mx.cli",           # demo, bench-codec
    "torq_ref.golden.cli",       # golden: regenerate golden/
    "torq_ref.conformance.cli",  # conformance: check a kernel from the shell
    "torq_ref.rotations.cli",    # rotation benchmarks
    "torq_ref.experiments.cli",  # rotation experiments on the model's inputs (above model/ and rotations/)
    "torq_ref.model.cli",        # models, import-gguf, ppl, bench-forward
    "torq_ref.selftest.cli",     # selftest --mutations: the planted-bug check
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torq_ref",
        description="Reference MXFP4 codec, TORQ rotations and conformance oracle.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            # Only a module that does not exist yet is skipped; a broken import inside it is not.
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from torq_ref.blas_threads import fixed_blas_threads

    try:
        with fixed_blas_threads():           # FW-1.8: results independent of the core count
            return int(args.func(args) or 0)
    except ValueError as err:
        if "TORQ_REF_BLAS_THREADS" not in str(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
