"""Conformance harness: run the golden vectors against anyone's MX kernel (spec/CF.md).

    from torq_ref.conformance import check
    report = check("quantize", my_kernel, profile="nvidia")
    assert report.passed, str(report)

Kinds and their calling conventions are in :mod:`torq_ref.conformance.kinds` and
:mod:`torq_ref.conformance.quantize_mx`, :mod:`~torq_ref.conformance.quantize_nvfp4`,
:mod:`~torq_ref.conformance.fake_quant` and :mod:`~torq_ref.conformance.gguf_block` (the block
kinds, sharing :mod:`~torq_ref.conformance.judge` and :mod:`~torq_ref.conformance.quantize_block`); the cause classifier in
:mod:`torq_ref.conformance.causes`; profiles (the
legitimate variants: scale rule, satfinite, NaN element codes) in
:mod:`torq_ref.conformance.profiles`. Levels: "quick" (JSON vectors only), "default" (JSON +
the committed bulk files), "thorough" (JSON + bulk regenerated at the thorough level).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from torq_ref.errors import UserError

from .kinds import KINDS, RUNNERS, ConventionError
from .profiles import PROFILES, Profile, ProfileError, get_profile, with_accumulate_u
from .report import CaseResult, Report

LEVELS = ("quick", "default", "thorough")


class KindError(UserError, ValueError):
    """Unknown kind or level."""


def check_fmt(fmt: str) -> str:
    """``fmt`` if the harness knows it (the MX element formats and ``nvfp4``), else FormatError
    "unknown format X; known: ..." (CF-1.1), before any vector is read."""
    from torq_ref.mx.formats import FormatError

    if fmt not in FMTS:
        raise FormatError(f"unknown format {fmt}; known: {', '.join(FMTS)}")
    return fmt


def _fmts() -> tuple[str, ...]:
    from torq_ref.mx.formats import FORMATS

    return (*FORMATS, "nvfp4")


#: the element formats ``check`` and ``conformance --fmt`` accept
FMTS = _fmts()


@lru_cache(maxsize=4)
def _vectors(level: str, golden_dir: str | None):
    from torq_ref import golden

    if golden_dir is not None:
        return golden.read_tree(Path(golden_dir))
    if level == "thorough":
        return golden.generate("thorough")
    root = golden.committed_dir()
    return golden.read_tree(root) if root is not None else golden.generate("default")


def load_vectors(level: str = "default", golden_dir=None):
    if level not in LEVELS:
        raise KindError(f"level must be one of {LEVELS}, not {level!r}")
    return _vectors(level, None if golden_dir is None else str(golden_dir))


def check(kind: str, fn, *, profile="ocp", level: str = "default", fmt: str = "e2m1",
          golden_dir=None, max_failures: int = 10) -> Report:
    """Run every golden case of ``kind`` through ``fn`` and judge it under ``profile`` (CF-1.1)."""
    if kind not in RUNNERS:
        raise KindError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    check_fmt(fmt)
    prof = get_profile(profile)
    vs = load_vectors(level, golden_dir)
    results = RUNNERS[kind](fn, vs, prof, fmt, level != "quick")
    return Report(kind, prof.name, level, fmt, results, max_failures)


__all__ = ["FMTS", "KINDS", "LEVELS", "PROFILES", "CaseResult", "ConventionError", "KindError", "Profile",
           "ProfileError", "Report", "check", "check_fmt", "get_profile", "load_vectors", "with_accumulate_u"]
