"""The ``swizzle`` kind: a block-scale layout judged bit for bit against the layout the kernel
claims (spec/CF.md CF-1.2, CF-3.1, CF-3.13; spec/MX.md MX-8.2, MX-8.4 .. MX-8.10).

    swizzle     fn(scales uint8 (rows, cols))                  -> uint8 1-D buffer
                fn(scales, num_warps=w)                        triton-hopper
                fn(scales, experts=E, gate_up=b)               aiter-moe-a16w4

The profile's ``scale_layout`` (option ``+layout-NAME``; default ``cublas-128x4``) picks the
groups of ``scale_swizzle.json`` that are valid. A failing buffer is compared with the buffers
of every other known layout of the same scales (and of the transposed scales), so the verdict
names the layout the kernel writes (OtherScaleLayout, its ``rule`` the layout), or says that
only padding bytes differ (ScalePaddingBytes; acceptable under ``aiter-e8m0-shuffle``, whose
source leaves them unspecified, MX-8.9), or neither (ScaleLayoutMismatch).
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex
from torq_ref.mx import vendor_layout as vl

from .common import ConventionError, convention_failure, diff_detail
from .report import CaseResult, repro_snippet

#: layout -> the clause that defines it
LAYOUT_CLAUSE = {"cublas-128x4": "MX-8.2", "triton-hopper": "MX-8.4", "triton-blackwell": "MX-8.5",
                 "triton-cdna4": "MX-8.6", "aiter-e8m0-shuffle": "MX-8.9", "aiter-moe-a16w4": "MX-8.10"}
#: the layouts whose padding bytes are unspecified memory in their source (MX-8.9)
UNSPECIFIED_PADDING = frozenset({"aiter-e8m0-shuffle"})
#: the num_warps values of triton-hopper tried when naming a layout
HOPPER_WARPS = (1, 2, 4, 8, 16)

#: cause -> (clause, description); "" = the claimed layout's clause (CF-3.13)
CAUSES = {
    "OtherScaleLayout": ("", "the buffer is another layout's (named in rule), or the claimed "
                             "one's of the transposed scales"),
    "ScalePaddingBytes": ("MX-8.7", "every scale in its place, but padding bytes other than 0x00"),
    "ScaleLayoutMismatch": ("", "the buffer is no known layout of these scales"),
}


def _layout_buffer(name: str, s: np.ndarray, params: dict) -> np.ndarray:
    """The buffer of layout ``name`` (MX-8.2, MX-8.4 .. MX-8.10) for scales s (rows, cols)."""
    if name == "cublas-128x4":
        return mx.swizzle_scales(s)
    if name == "aiter-moe-a16w4":
        return vl.shuffle_scale_a16w4(s, params["experts"], params["gate_up"])
    if name == "triton-hopper":
        return vl.swizzle_scales_for(name, s, params.get("num_warps", 8))
    return vl.swizzle_scales_for(name, s)


def _label(name: str, params: dict) -> str:
    if not params:
        return name
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _candidates(group: dict):
    """(label, params, layout) of every layout a kernel might write for these scales: each known
    layout with its parameters (Hopper at each num_warps, a16w4 at the group's expert count or 1,
    with and without gate_up, where the shape fits the tile)."""
    experts = group.get("experts", 1)
    out = [("cublas-128x4", {}), ("triton-blackwell", {}), ("triton-cdna4", {}),
           ("aiter-e8m0-shuffle", {})]
    out += [("triton-hopper", {"num_warps": w}) for w in HOPPER_WARPS]
    out += [("aiter-moe-a16w4", {"experts": experts, "gate_up": b}) for b in (False, True)]
    return out


def name_layout(got: np.ndarray, s: np.ndarray, claimed: str, claimed_params: dict, group: dict):
    """The label of the layout whose buffer of s (or of s.T, "... of scales.T") equals ``got``,
    the claimed layout with its own parameters excluded; "" when none does (CF-3.13). The
    claimed layout at other parameters is tried first (layouts that coincide on a shape, e.g.
    a16w4 without gate_up and triton-cdna4, are named after the claimed one)."""
    cands = sorted(_candidates(group), key=lambda c: c[0] != claimed)
    for src, tag in ((s, ""), (np.ascontiguousarray(s.T), " of scales.T")):
        for name, params in cands:
            if not tag and name == claimed and params == claimed_params:
                continue
            try:
                buf = _layout_buffer(name, src, params)
            except ValueError:                       # a16w4 off its tile: not this layout
                continue
            if buf.shape == got.shape and np.array_equal(buf, got):
                return _label(name, params) + tag
    return ""


def _padding_mask(name: str, s: np.ndarray, params: dict) -> np.ndarray:
    """True at the bytes of the claimed buffer that hold no scale (MX-8.7)."""
    marker = np.zeros(s.shape, np.uint8) + 1
    return _layout_buffer(name, marker, params) == 0


def _call_kwargs(group: dict) -> dict:
    """The keyword arguments of the call for a group's layout parameters (CF-1.2)."""
    if group["layout"] == "triton-hopper":
        return {"num_warps": group["numWarps"]}
    if group["layout"] == "aiter-moe-a16w4":
        return {"experts": group["experts"], "gate_up": group["gateUp"]}
    return {}


def _cases(vs, layout: str, use_bulk: bool):
    """(source, flags, scales, expected buffer, group) of the claimed layout's groups."""
    groups = [g for g in vs.docs["scale_swizzle.json"]["testGroups"]
              if g["type"] == "ScaleSwizzle" and g["layout"] == layout]
    if not groups:
        raise ValueError(f"no swizzle vectors for layout {layout!r}; known: {', '.join(LAYOUT_CLAUSE)}")
    cases = [(f"scale_swizzle.json#{t['tcId']}", t["flags"],
              from_hex(t["scales"], "uint8").reshape(t["rows"], t["cols"]),
              from_hex(t["swizzled"], "uint8"), g)
             for g in groups for t in g["tests"] if t["result"] == "valid"]
    if use_bulk and layout == "cublas-128x4" and "swizzle" in vs.bulk:
        a, _ = vs.bulk["swizzle"]
        cases.append(("bulk/swizzle", ["SwizzleLayout", "SwizzlePadding"], a["scales"], a["swizzled"],
                      groups[0]))
    return cases


def _as_buffer(out) -> np.ndarray:
    """The kernel's output as a 1-D uint8 buffer (integers in 0..255 accepted, CF-1.2)."""
    a = np.asarray(out).reshape(-1)
    if a.dtype != np.uint8:
        if a.dtype.kind in "iu" and (a.size == 0 or (a.min() >= 0 and a.max() <= 255)):
            return a.astype(np.uint8)
        raise ConventionError(f"swizzled must be uint8, got {a.dtype}")
    return a


def _judge(src, flags, s, exp, got, layout, params, group) -> CaseResult:
    """One buffer: pass, or the cause of CF-3.13."""
    if got.shape == exp.shape and np.array_equal(got, exp):
        return CaseResult(src, flags, "pass")
    clause = LAYOUT_CLAUSE[layout]
    repro = repro_snippet(f"fn(scales{''.join(f', {k}={v!r}' for k, v in params.items())})",
                          {"scales": s}, {"swizzled": exp}, {"swizzled": got}, clause)
    other = name_layout(got, s, layout, params, group)
    if other:
        return CaseResult(src, flags, "fail", clause, "swizzled",
                          f"{s.shape[0]} x {s.shape[1]}: {got.size} bytes laid out as {other}, not "
                          f"{_label(layout, params)} ({exp.size} bytes)", repro,
                          cause="OtherScaleLayout", rule=other)
    if got.shape != exp.shape:
        return convention_failure(src, flags, ConventionError(
            f"swizzled must have {exp.size} bytes ({_label(layout, params)} of {s.shape[0]} x "
            f"{s.shape[1]} scales), got {got.size}, the size of no known layout's buffer"), 1)
    pad = _padding_mask(layout, s, params)
    if np.array_equal(got[~pad], exp[~pad]):
        n = int((got[pad] != exp[pad]).sum())
        detail = f"{s.shape[0]} x {s.shape[1]}: {n} padding bytes not 0x00, " + diff_detail(
            np.where(pad, exp, 0), np.where(pad, got, 0))
        if layout in UNSPECIFIED_PADDING:
            return CaseResult(src, flags, "acceptable", matched=["UnspecifiedPadding"],
                              cause="ScalePaddingBytes", detail=detail)
        return CaseResult(src, flags, "fail", "MX-8.7", "swizzled", detail, repro,
                          cause="ScalePaddingBytes")
    return CaseResult(src, flags, "fail", clause, "swizzled",
                      f"{s.shape[0]} x {s.shape[1]}: " + diff_detail(exp, got), repro,
                      cause="ScaleLayoutMismatch")


def run_swizzle(fn, vs, profile, fmt, use_bulk):
    """CF-3.13: the groups of the profile's layout, one call per case, each buffer judged."""
    layout = profile.scale_layout
    out = []
    for src, flags, s, exp, group in _cases(vs, layout, use_bulk):
        kw = _call_kwargs(group)
        try:
            got = _as_buffer(fn(s.copy(), **kw))
        except Exception as err:  # noqa: BLE001 - any kernel error is a reported failure (CF-3.10)
            out.append(convention_failure(src, flags, err, 1))
            continue
        out.append(_judge(src, flags, s, exp, got, layout, kw, group))
    return out
