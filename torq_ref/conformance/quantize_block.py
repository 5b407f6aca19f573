"""Judging one quantized block, a scale and its element codes: shared by the quantize kinds (MX
and NVFP4) and gguf-block (spec/CF.md CF-3.1, CF-3.3, CF-3.5, CF-3.7).

The order a failing block is looked at, which is the order a kernel author reads the verdict:

1. scale and codes equal: pass;
2. a NaN block with the right scale, other element codes, under a profile that accepts it
   (NanElementCode): acceptable;
3. equal to an acceptable variant of the case (CF-2.2): acceptable; equal to an invalid one:
   its KnownDefect flag is kept for the failure (CF-3.4);
4. equal to the same input under a rule the profile accepts (CF-2.3): acceptable;
5. otherwise a :class:`Pending` failure with every candidate cause (``Judging.candidates``),
   resolved for the whole call and written by :func:`block_failure`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from torq_ref.golden.defects import codes_for_scale

from .common import MAX_KEPT, ConventionError, as_u8, diff_detail
from .judge import Case, Outputs, Pending, aggregate_bulk, failing_blocks, finish, variant_match
from .report import CaseResult, hexwords, repro_snippet


@dataclass(frozen=True)
class Judging:
    """How the blocks of one call are judged."""
    profile: object
    rule: str                   # the profile's scale rule ("floor" for NVFP4 and gguf blocks)
    call: str                   # the call as the reproduction writes it: "scales, codes = fn(x)"
    candidates: Callable        # (Case, expected Outputs, got Outputs) -> [(cause, rule), ...]
    nvfp4: bool = False
    output_name: str = "codes"  # the output named when only the codes differ
    #: the accepted rules one block matches -> the name reported (causes.accepted_rule_namer);
    #: None names the first
    accepted_rule: Callable | None = None
    #: the element format of MX blocks, for +own-scale (CF-3.16); "" where it does not apply
    fmt: str = ""


def judge_block(case: Case, exp: Outputs, got: Outputs, how: Judging, *, matched=(),
                repro: Callable | None = None):
    """One block (CF-3.1): a CaseResult (pass / acceptable) or a Pending failure. ``matched``
    adds invalid-variant flags found by the caller; ``repro(clause)`` replaces the default
    reproduction (scales and codes)."""
    profile = how.profile
    if got.same_as(exp):
        return CaseResult(case.src, case.flags, "pass")
    scale_ok = bool((got.scale == exp.scale).all())
    if scale_ok and "NanElementCode" in case.flags and "NanElementCode" in profile.acceptable_flags:
        return CaseResult(case.src, case.flags, "acceptable", matched=["NanElementCode"])
    status, known = variant_match(case.variants, got, case.flags, profile)
    if status:
        return CaseResult(case.src, case.flags, "acceptable", matched=known)
    matching = [r for r, other in case.others.items() if other.codes is not None and got.same_as(other)]
    if matching:
        r = how.accepted_rule(matching) if how.accepted_rule else matching[0]
        return CaseResult(case.src, case.flags, "acceptable", matched=["ScaleRuleVariant", r],
                          cause="OtherScaleRule", rule=r)
    own = own_scale_expectation(case, exp, got, how)
    if own is not None:
        if got.same_as(own):
            return CaseResult(case.src, case.flags, "acceptable", matched=["KernelScale"],
                              cause="KernelScale")
        exp = own
    render = block_failure(case, exp, got, how, known + list(matched), repro)
    return Pending(case, how.candidates(case, exp, got), profile, how.rule, render, how.nvfp4)


def own_scale_expectation(case: Case, exp: Outputs, got: Outputs, how: Judging):
    """CF-3.16: under +own-scale, the expected outputs of an MX block whose scale byte is not
    the rule's: that byte and the oracle's codes under it (MX-5.3), for a finite block with a
    nonzero element and a byte in 0..254; None where the option does not apply."""
    if getattr(how.profile, "scale_judging", "rule") != "own" or how.nvfp4 or not how.fmt:
        return None
    s = int(got.scale.ravel()[0])
    x = np.asarray(case.x, np.float64)
    if s == int(exp.scale.ravel()[0]) or s > 254 or not np.isfinite(x).all() or not (x != 0).any():
        return None
    return Outputs(got.scale, codes_for_scale(case.x.ravel(), s, how.fmt).reshape(got.codes.shape))


def block_failure(case: Case, exp: Outputs, got: Outputs, how: Judging, matched, repro=None):
    """The failure writer of one block: (cause, clause, under) -> CaseResult. The detail names
    the scale bytes when they differ, then the first differing codes."""
    def render(cause: str, clause: str, under: str) -> CaseResult:
        codes_ok = exp.codes is None or bool((got.codes == exp.codes).all())
        if not (got.scale == exp.scale).all():
            fld = "scale"
            detail = f"scale expected {hexwords(exp.scale)} got {hexwords(got.scale)}"
            if not codes_ok:
                detail += "; codes differ: " + diff_detail(exp.codes, got.codes)
        else:
            fld = how.output_name
            detail = "codes differ: " + diff_detail(exp.codes, got.codes)
        if under:
            detail = f"scale follows {under.upper()}; " + detail
        known = list(matched)
        if cause.startswith(("DivisorClamped", "FlushedScale")):
            known.append(cause)
        if not case.repro:
            text = ""
        elif repro is not None:
            text = repro(clause)
        else:
            text = repro_snippet(how.call, {"x": case.x},
                                 {"scales": exp.scale, "codes": exp.codes},
                                 {"scales": got.scale, "codes": got.codes}, clause)
        return CaseResult(case.src, case.flags, "fail", clause, fld, detail, text, known,
                          cause=cause, rule=under)
    return render


def judge_bulk(src, flags, x, exp, got, bs: int, how: Judging, others=()):
    """A bulk file of blocks: exp and got are (scales (rows, nb), codes (rows, nb * bs)).
    Passes and accepted-rule blocks (CF-2.3) are counted; every other block is judged."""
    es, ec = exp
    gs, gc = got
    rows, nb = es.shape
    blk = (rows, nb, bs)
    blk_ok = (gs == es) & (gc.reshape(blk) == ec.reshape(blk)).all(-1)
    out = [CaseResult(src, flags, "pass", count=int(blk_ok.sum()))]
    acc = np.zeros_like(blk_ok)
    for o in others:       # the same inputs under a scale rule the profile accepts (CF-2.3)
        if np.array_equal(o["x"], x):
            acc |= (gs == o["scales"]) & (gc.reshape(blk) == o["codes"].reshape(blk)).all(-1)
    acc &= ~blk_ok
    if acc.any():
        out.append(CaseResult(src, flags, "acceptable", count=int(acc.sum()),
                              matched=["ScaleRuleVariant"], cause="OtherScaleRule"))
    res = []
    for j, r, b in failing_blocks(blk_ok | acc):
        sl = slice(b * bs, (b + 1) * bs)
        case = Case(f"{src}[row {r}, block {b}]", flags, x[r:r + 1, sl], repro=j < MAX_KEPT)
        res.append(judge_block(case, Outputs(es[r:r + 1, b:b + 1], ec[r:r + 1, sl]),
                               Outputs(gs[r:r + 1, b:b + 1], gc[r:r + 1, sl]), how))
    return aggregate_bulk(out, src, flags, finish(res))


def call_quantize(fn, x, nb: int, g=None):
    """The quantize convention (CF-1.2): fn(x) or fn(x, g) -> (scales (rows, nb), codes x.shape)."""
    out = fn(x.copy()) if g is None else fn(x.copy(), np.float32(g))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ConventionError("quantize must return a pair (scales, codes)")
    return as_u8("scales", out[0], (x.shape[0], nb)), as_u8("codes", out[1], x.shape)
