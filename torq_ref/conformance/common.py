"""Helpers shared by the kind runners: vector lookup, convention checks (spec/CF.md CF-1.2)."""
from __future__ import annotations

import numpy as np

from torq_ref.golden.flags import FLAGS

from .causes import RULE_CLAUSE
from .report import CaseResult

KINDS = ("encode", "quantize", "dequantize", "pack", "swizzle", "dot_scaled", "fake-quant",
         "gguf-block", "e8m0-cast", "hadamard", "rotate-quantize", "schur-horn", "maxent")
#: failures are kept individually up to this many per call; beyond it they are counted
MAX_KEPT = 200


class ConventionError(TypeError):
    """The kernel's output does not follow the kind's calling convention (CF-1.2)."""


def group_tests(doc: dict, gtype: str, **params):
    for g in doc["testGroups"]:
        if g["type"] == gtype and all(g.get(k) == v for k, v in params.items()):
            return g["tests"]
    return None


def split_variants(tests):
    """valid tests and, for each tcId, its acceptable / invalid variants."""
    valid = [t for t in tests if t["result"] == "valid"]
    variants: dict = {}
    for t in tests:
        if "variantOf" in t:
            variants.setdefault(t["variantOf"], []).append(t)
    return valid, variants


def as_u8(name, a, shape):
    a = np.asarray(a)
    if a.dtype != np.uint8:
        if a.dtype.kind in "iu" and (a.size == 0 or (a.min() >= 0 and a.max() <= 255)):
            a = a.astype(np.uint8)
        else:
            raise ConventionError(f"{name} must be uint8, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ConventionError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def as_float(name, a, shape):
    a = np.asarray(a)
    if a.dtype.kind != "f" and a.dtype.name != "bfloat16":
        raise ConventionError(f"{name} must be a float array, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ConventionError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def convention_failure(source, flags, err, count) -> CaseResult:
    return CaseResult(source, list(flags), "fail", "CF-1.2", "call",
                      f"{type(err).__name__}: {err}", "", count=count, cause="ConventionError")


def _first_clause(flags, order, default):
    for f in order:
        if f in flags:
            return FLAGS[f].clause
    return default


_SCALE_ORDER = ("PowerOfTwo", "NaNBlock", "InfBlock", "ZeroBlock", "ExtremeMagnitude",
                "RcdSubnormalQuotient", "Bf16Trap")
_CODE_ORDER = ("Tie", "TieNeighbour", "ScaleCodeZero", "Saturation", "SignedZero",
               "MixedMagnitude", "Subnormal", "NonFinite", "ExactValue", "PackOrder",
               "SwizzleLayout", "ScaleNaN", "Overflow", "NVFP4")


def diff_detail(exp, got, limit=4):
    idx = np.flatnonzero(exp.ravel() != got.ravel())[:limit]
    return ("elements " + ", ".join(f"[{i}] expected {int(exp.ravel()[i]):02x} got "
                                    f"{int(got.ravel()[i]):02x}" for i in idx))


