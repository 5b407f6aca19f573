"""The quantize kind for MX formats (spec/CF.md CF-1.2, CF-3.1, CF-3.5, CF-3.7):

    fn(x float32 (rows, K)) -> (scales uint8 (rows, K/32), codes uint8 (rows, K))

judged block by block against the profile's rule group of mx_quantize.json and the bulk file
``quantize_<fmt>_<rule>``; ``fmt="nvfp4"`` goes to :mod:`.quantize_nvfp4`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex

from .causes import accepted_rule_namer, block_candidates, rules_followed
from .common import group_tests, split_variants
from .judge import Case, Outputs, call_kernel, finish
from .quantize_block import Judging, call_quantize, judge_block, judge_bulk

CALL = "scales, codes = fn(x)"


def mx_judging(profile, fmt: str, follows) -> Judging:
    """Judging of MX blocks: the candidates of causes.block_candidates, with the other rules
    the kernel follows on this call (causes.rules_followed)."""
    rule = profile.scale_rule

    def candidates(case, exp, got):
        return block_candidates(case.x, exp.scale.ravel()[0], exp.codes, got.scale.ravel()[0],
                                got.codes, fmt, rule, follows, mx.AMAX_RULES)
    return Judging(profile, rule, CALL, candidates, fmt=fmt)


#: the JSON files whose MxQuantize groups the quantize kinds read, in order
QUANTIZE_FILES = ("mx_quantize.json", "mx_scale_rules.json")


def json_quantize_cases(vs, profile, fmt):
    """(Cases, expected Outputs, x (n, 32)) of the profile's groups of QUANTIZE_FILES, each
    Case with its variants and its outputs under the rules the profile accepts (from the same
    file); None when no file has such a group."""
    cases, expected = [], []
    for name in QUANTIZE_FILES:
        if name not in vs.docs:
            continue
        doc = vs.docs[name]
        tests = group_tests(doc, "MxQuantize", format=fmt, scaleRule=profile.scale_rule)
        if tests is None:
            continue
        valid, variants = split_variants(tests)
        by_rule = {}
        for r in profile.acceptable_rules:
            ot = group_tests(doc, "MxQuantize", format=fmt, scaleRule=r)
            if ot:
                by_rule[r] = {t["x"]: t for t in ot if t["result"] == "valid"}
        for t in valid:
            others = {r: _outputs(m[t["x"]]) for r, m in by_rule.items()
                      if t["x"] in m and m[t["x"]]["codes"]}
            cases.append(Case(f"{name}#{t['tcId']}", t["flags"],
                              from_hex(t["x"], "float32").reshape(1, -1),
                              variants=variants.get(t["tcId"], []), others=others))
            expected.append(_outputs(t))
    if not cases:
        return None
    return cases, expected, np.concatenate([c.x for c in cases])                 # (n, 32)


def _matches(cases, gots, profile) -> dict:
    """accepted rule -> bool per block of the call: the kernel's block equals that rule's."""
    return {r: np.array([r in c.others and g.same_as(c.others[r]) for c, g in zip(cases, gots)])
            for r in profile.acceptable_rules}


def _outputs(t) -> Outputs:
    codes = None if t["codes"] is None else from_hex(t["codes"], "uint8").reshape(1, -1)
    return Outputs(from_hex(t["scale"], "uint8").reshape(1, 1), codes)


def run_quantize(fn, vs, profile, fmt, use_bulk):
    if fmt == "nvfp4":
        from .quantize_nvfp4 import run_nvfp4
        return run_nvfp4(fn, vs, profile, use_bulk)
    rule = profile.scale_rule
    bulk_name = f"quantize_{fmt}_{rule}"
    cases = json_quantize_cases(vs, profile, fmt)
    if cases is None and bulk_name not in vs.bulk:
        raise ValueError(f"no quantize vectors for format {fmt!r} under rule {rule!r}")
    out = []
    if cases is not None:
        cs, expected, x = cases
        got, failed = call_kernel(lambda: call_quantize(fn, x, 1), "mx_quantize.json",
                                  ["Convention"], len(cs))
        if failed:
            out.append(failed)
        else:
            gs, gc = got
            gots = [Outputs(gs[i:i + 1], gc[i:i + 1]) for i in range(len(cs))]
            how = replace(mx_judging(profile, fmt, rules_followed(x, gs, fmt, rule)),
                          accepted_rule=accepted_rule_namer(_matches(cs, gots, profile)))
            out += finish([judge_block(c, e, g, how) for c, e, g in zip(cs, expected, gots)])
    if use_bulk and bulk_name in vs.bulk:
        out += _bulk_quantize(fn, vs, bulk_name, profile, fmt)
    return out


def _bulk_quantize(fn, vs, bulk_name, profile, fmt):
    arrays, _ = vs.bulk[bulk_name]
    src = f"bulk/{bulk_name}"
    x, es, ec = arrays["x"], arrays["scales"], arrays["codes"]
    got, failed = call_kernel(lambda: call_quantize(fn, x, x.shape[1] // 32), src, ["Random"],
                              es.size)
    if failed:
        return [failed]
    others = [vs.bulk[f"quantize_{fmt}_{r}"][0] for r in profile.acceptable_rules
              if f"quantize_{fmt}_{r}" in vs.bulk]
    how = mx_judging(profile, fmt, rules_followed(x, got[0], fmt, profile.scale_rule))
    return judge_bulk(src, ["Random"], x, (es, ec), got, 32, how, others)
