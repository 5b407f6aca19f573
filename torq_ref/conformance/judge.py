"""What the block kinds share: one block's case and outputs, the call-and-check preamble, the
variant lookup, the failure that waits for the run's cause resolution, and bulk aggregation
(spec/CF.md CF-2.2 .. CF-2.4, CF-3.4, CF-3.5, CF-3.7, CF-3.10).

A kind runner (``quantize_mx``, ``quantize_nvfp4``, ``fake_quant``, ``gguf_block``) reads its
vectors, calls the kernel once per batch through :func:`call_kernel`, and judges each block.
A block that passes (or matches an acceptable variant) becomes a :class:`CaseResult` at once;
a failing block becomes a :class:`Pending` with every candidate cause. :func:`finish` then picks
one cause per block for the whole call (:func:`causes.resolve`) and turns each Pending into
its CaseResult, through the profile's leniencies (:func:`lenient_verdict`) and the kind's own
failure text (``Pending.render``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from torq_ref.golden.hexio import from_hex

from .causes import clause_of, resolve, rule_parts
from .common import MAX_KEPT, convention_failure
from .report import CaseResult


@dataclass(frozen=True)
class Case:
    """One block of a golden file: where it comes from, its flags, its input."""
    src: str                    # "mx_quantize.json#17" or "bulk/quantize_e2m1_floor[row 3, block 1]"
    flags: list
    x: np.ndarray               # float32 (1, block size)
    repro: bool = True          # keep a reproduction (only the first MAX_KEPT of a bulk file)
    variants: list = field(default_factory=list)    # the case's acceptable / invalid variants
    others: dict = field(default_factory=dict)      # accepted rule -> that rule's Outputs


@dataclass(frozen=True)
class Outputs:
    """A block's scale and element codes: the expected ones, or the kernel's."""
    scale: np.ndarray           # uint8 (1, 1)
    codes: np.ndarray | None    # uint8 (1, block size); None where a vector has no codes

    def same_as(self, other: "Outputs") -> bool:
        return bool((self.scale == other.scale).all()) and (
            other.codes is None or bool((self.codes == other.codes).all()))


def call_kernel(call: Callable, src: str, flags, count: int):
    """(the kernel's checked output, None), or (None, the CF-1.2 failure of the whole batch)
    when the kernel raises or breaks its calling convention (CF-3.10)."""
    try:
        return call(), None
    except Exception as err:  # noqa: BLE001 - any kernel error is a reported failure (CF-3.10)
        return None, convention_failure(src, list(flags), err, count)


def variant_match(variants, got: Outputs, flags, profile):
    """('acceptable', the flags matched) if an acceptable variant equals the output (CF-2.2),
    else (None, the flags of the invalid variants it equals: CF-3.4 reports them)."""
    matched = []
    for v in variants:
        vs = from_hex(v["scale"], "uint8").reshape(got.scale.shape)
        vc = None if v["codes"] is None else from_hex(v["codes"], "uint8").reshape(got.codes.shape)
        if (got.scale == vs).all() and (vc is None or (got.codes == vc).all()):
            if v["result"] == "acceptable" and all(
                    f in profile.acceptable_flags or f in flags for f in v["flags"]):
                return "acceptable", [f for f in v["flags"] if f not in flags]
            matched += v["flags"]
    return None, matched


def lenient_verdict(case: Case, profile, cause: str, crule: str, rule: str):
    """The profile's leniencies on a resolved cause: (an acceptable CaseResult, cause) when the
    block follows an accepted scale rule (CF-2.3) or differs only in the sign of a zero under
    ``+unsigned-zero`` (CF-2.4); else (None, the cause with an accepted SignedZero part
    removed)."""
    accepted = bool(rule_parts(crule)) and all(r in profile.acceptable_rules for r in rule_parts(crule))
    if crule != rule and accepted and cause == "OtherScaleRule":
        return CaseResult(case.src, case.flags, "acceptable", matched=["ScaleRuleVariant", crule],
                          cause=cause, rule=crule), cause
    parts = cause.split("+")
    if "SignedZero" in parts and profile.signed_zero == "acceptable":
        if cause == "SignedZero":
            return CaseResult(case.src, case.flags, "acceptable", matched=["UnsignedZero"],
                              cause=cause), cause
        cause = "+".join(c for c in parts if c != "SignedZero")
    return None, cause


@dataclass
class Pending:
    """A failing block whose cause waits for the run-level resolution (:func:`finish`).

    ``render(cause, clause, under)`` writes the kind's failure: ``under`` is the other scale
    rule the cause was measured against ("" for the profile's own)."""
    case: Case
    candidates: list            # [(cause, rule), ...], most specific first (causes.block_candidates)
    profile: object
    rule: str                   # the profile's scale rule ("floor" for NVFP4 and gguf blocks)
    render: Callable[[str, str, str], CaseResult]
    nvfp4: bool = False
    status: str = "pending"

    def finalize(self, cause: str, crule: str) -> CaseResult:
        accepted, cause = lenient_verdict(self.case, self.profile, cause, crule, self.rule)
        if accepted is not None:
            return accepted
        under = "" if crule in ("", self.rule) else crule
        return self.render(cause, clause_of(cause, self.rule, self.nvfp4), under)


def finish(results) -> list:
    """Resolve the causes of the pending failures of one call (causes.resolve) in place."""
    idx = [i for i, r in enumerate(results) if isinstance(r, Pending)]
    for i, (cause, crule) in zip(idx, resolve([results[i].candidates for i in idx])):
        results[i] = results[i].finalize(cause, crule)
    return results


def aggregate_bulk(out, src, flags, results):
    """Keep the first MAX_KEPT failing results, count the rest per (cause, rule, clause, output)."""
    agg: dict = {}
    for j, res in enumerate(results):
        if j < MAX_KEPT or res.status != "fail":
            out.append(res)
            continue
        key = (res.cause, res.rule, res.clause, res.output)
        if key not in agg:
            agg[key] = [0, res]
        agg[key][0] += 1
    for (cause, rule, clause, fld), (n, first) in agg.items():
        out.append(CaseResult(src, flags, "fail", clause, fld,
                              f"{n} further blocks with cause {cause}; first {first.source}: "
                              f"{first.detail}", count=n, cause=cause, rule=rule))
    return out


def failing_blocks(ok: np.ndarray):
    """(j, row, block) of each block of a bulk file that failed the bitwise comparison (ok is
    (rows, nb) bool), in C order; the block with j < MAX_KEPT keeps its reproduction."""
    return [(j, int(r), int(b)) for j, (r, b) in enumerate(np.argwhere(~ok))]
