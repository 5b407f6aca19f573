"""The gguf-block kind (spec/CF.md CF-1.2, CF-3.9):

    fn(x float32 (rows, K)) -> uint8 (rows, K/32 * 17)    ggml block_mxfp4 bytes (MX-8.3)

A failing block whose bytes are the OCP pair-order packing of the expected codes is
GgufNibbleOrder; otherwise it is unpacked and judged as an MX quantize block under FLOOR.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex

from .causes import clause_of, rules_followed
from .common import MAX_KEPT, as_u8, diff_detail, group_tests, split_variants
from .judge import Case, Outputs, aggregate_bulk, call_kernel, failing_blocks, finish
from .quantize_block import judge_block
from .quantize_mx import mx_judging
from .report import CaseResult, repro_snippet

CALL = "blocks = fn(x)"


def _call_gguf(fn, x):
    rows, k = x.shape
    got = np.asarray(fn(x.copy()))
    if got.size == rows * (k // 32) * 17 and got.ndim in (2, 3) and got.shape[0] == rows:
        got = got.reshape(rows, -1)
    return as_u8("blocks", got, (rows, k // 32 * 17))


def judge_gguf(case: Case, exp_b, got_b, how):
    """One ggml block (17 bytes): bytes equal, else the nibble-order defect, else the block's
    scale / code cause after unpacking (CF-3.9)."""
    if np.array_equal(exp_b, got_b):
        return CaseResult(case.src, case.flags, "pass")
    es, ec = mx.layout.unpack_gguf_mxfp4(exp_b.reshape(1, 1, 17))
    gs, gc = mx.layout.unpack_gguf_mxfp4(got_b.reshape(1, 1, 17))
    known = [f for v in case.variants for f in v["flags"]
             if np.array_equal(from_hex(v["block"], "uint8"), got_b.ravel())]

    def repro(clause):
        return repro_snippet(CALL, {"x": case.x}, {"block": exp_b.ravel()},
                             {"block": got_b.ravel()}, clause)
    pair = np.concatenate([es.ravel(), mx.pack_fp4(ec.ravel())])
    if np.array_equal(pair, got_b.ravel()):
        clause = clause_of("GgufNibbleOrder")
        return CaseResult(case.src, case.flags, "fail", clause, "block", "bytes in OCP pair order: "
                          + diff_detail(exp_b, got_b), repro(clause) if case.repro else "", known,
                          cause="GgufNibbleOrder")
    # the unpacked block has no variants of its own: the byte variants were matched above
    block = Case(case.src, case.flags, case.x, case.repro)
    return judge_block(block, Outputs(es.reshape(1, 1), ec.reshape(1, -1)),
                       Outputs(gs.reshape(1, 1), gc.reshape(1, -1)), how, matched=known,
                       repro=repro)


def run_gguf_block(fn, vs, profile, fmt, use_bulk):
    """gguf-block: x -> ggml block_mxfp4 bytes, FLOOR (CF-3.9)."""
    if fmt != "e2m1" or profile.scale_rule != "floor":
        raise ValueError("gguf-block vectors are MXFP4 (fmt e2m1) under the floor rule only "
                         f"(got fmt {fmt!r}, profile rule {profile.scale_rule!r})")
    valid, variants = split_variants(group_tests(vs.docs["gguf_mxfp4.json"], "GgufMxfp4Block"))
    x = np.stack([from_hex(t["x"], "float32") for t in valid])                 # (n, 32)
    out = []
    got, failed = call_kernel(lambda: _call_gguf(fn, x), "gguf_mxfp4.json", ["Convention"], len(valid))
    if failed:
        out.append(failed)
    else:
        how = _judging(profile, rules_followed(x, got[:, 0::17].astype(np.int64), "e2m1", "floor"))
        out += finish([judge_gguf(Case(f"gguf_mxfp4.json#{t['tcId']}", t["flags"], x[i:i + 1],
                                       variants=variants.get(t["tcId"], [])),
                                  from_hex(t["block"], "uint8"), got[i], how)
                       for i, t in enumerate(valid)])
    if use_bulk and "quantize_e2m1_floor" in vs.bulk:
        a = vs.bulk["quantize_e2m1_floor"][0]
        src = "bulk/quantize_e2m1_floor (gguf)"
        xb = a["x"]
        exp = mx.layout.pack_gguf_mxfp4(a["scales"], a["codes"])             # (rows, nb, 17)
        got, failed = call_kernel(lambda: _call_gguf(fn, xb).reshape(exp.shape), src, ["Random"],
                                  a["scales"].size)
        if failed:
            return out + [failed]
        ok = (got == exp).all(-1)
        how = _judging(profile, rules_followed(xb, got[..., 0].astype(np.int64), "e2m1", "floor"))
        out.append(CaseResult(src, ["Random"], "pass", count=int(ok.sum())))
        res = [judge_gguf(Case(f"{src}[row {r}, block {b}]", ["Random"], xb[r:r + 1, b * 32:(b + 1) * 32],
                               repro=j < MAX_KEPT), exp[r, b], got[r, b], how)
               for j, r, b in failing_blocks(ok)]
        aggregate_bulk(out, src, ["Random"], finish(res))
    return out


def _judging(profile, follows=()):
    """MX judging under FLOOR with the other rules the call's scale bytes follow as a whole
    (causes.rules_followed, CF-3.9), the failure named after the block."""
    return replace(mx_judging(profile, "e2m1", follows), call=CALL, output_name="block")
