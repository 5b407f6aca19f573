"""The swizzle kind judging the vendor scale layouts (spec/CF.md CF-3.13): kernels written here
from the layouts' reshape / permute steps (the second formulations of tests/test_mx_vendor_layout.py)
pass the layout they claim, and planted kernels that write another layout, the transposed
scales, wrong padding bytes or a broken map get the cause that says so."""
from __future__ import annotations

import numpy as np
import pytest

from test_mx_vendor_layout import (_a16w4_steps, _aiter_steps, _blackwell_steps, _cdna4_steps,
                                   _hopper_steps)
from torq_ref.conformance import ProfileError, check, get_profile


def _cublas_steps(s):
    """cuBLAS 128 x 4 tiles (MX-8.2): pad to (128, 4) multiples, view (R/128, 4, 32, C/4, 4),
    permute (0, 3, 2, 1, 4)."""
    pr, pc = -(-s.shape[0] // 128) * 128, -(-s.shape[1] // 4) * 4
    d = np.zeros((pr, pc), np.uint8)
    d[: s.shape[0], : s.shape[1]] = s
    return d.reshape(pr // 128, 4, 32, pc // 4, 4).transpose(0, 3, 2, 1, 4).reshape(-1)


KERNELS = {
    "cublas-128x4": lambda s: _cublas_steps(s),
    "triton-hopper": lambda s, num_warps: _hopper_steps(s, num_warps),
    "triton-blackwell": lambda s: _blackwell_steps(s),
    "triton-cdna4": lambda s: _cdna4_steps(s),
    "aiter-e8m0-shuffle": lambda s: _aiter_steps(s),
    "aiter-moe-a16w4": lambda s, experts, gate_up: _a16w4_steps(s, experts, gate_up),
}


def _causes(rep):
    return {(r.cause, r.rule) for r in rep.failures}


@pytest.mark.clause("CF-3.13", "CF-1.2")
@pytest.mark.parametrize("layout", sorted(KERNELS))
def test_each_layout_passes_the_kernel_that_writes_it(layout):
    rep = check("swizzle", KERNELS[layout], profile=f"ocp+layout-{layout}")
    assert rep.passed, str(rep)
    want = {"cublas-128x4": 8, "triton-hopper": 5, "triton-blackwell": 3, "triton-cdna4": 3,
            "aiter-e8m0-shuffle": 2, "aiter-moe-a16w4": 2}[layout]
    assert rep.counts["pass"] == want           # every group of the layout, nothing else
    assert get_profile(f"ocp+layout-{layout}").scale_layout == layout


@pytest.mark.clause("CF-3.13")
def test_a_kernel_writing_another_layout_is_named():
    # Triton's Blackwell layout handed to a cuBLAS consumer: K padded to 8, not 4 (MX-8.5)
    rep = check("swizzle", KERNELS["triton-blackwell"], profile="ocp")
    assert _causes(rep) == {("OtherScaleLayout", "triton-blackwell")}, rep.per_cause
    assert rep.failing_clauses() == {"MX-8.2"} and rep.counts["pass"] == 4   # cols % 8 == 0 agree
    # triton_kernels' CDNA4 preshuffle where aiter's (rows to 256) is claimed: a shorter buffer
    rep = check("swizzle", KERNELS["triton-cdna4"], profile="ocp+layout-aiter-e8m0-shuffle")
    assert _causes(rep) == {("OtherScaleLayout", "triton-cdna4")} and rep.failing_clauses() == {"MX-8.9"}
    # aiter's shuffle where the CDNA4 layout is claimed (vLLM PR 54773's kind of mismatch)
    rep = check("swizzle", KERNELS["aiter-e8m0-shuffle"], profile="ocp+layout-triton-cdna4")
    assert _causes(rep) == {("OtherScaleLayout", "aiter-e8m0-shuffle")}
    assert rep.failing_clauses() == {"MX-8.6"}
    # the CDNA4 map where Hopper's is claimed
    rep = check("swizzle", lambda s, num_warps: _cdna4_steps(s), profile="ocp+layout-triton-hopper")
    assert {c for c, _ in _causes(rep)} == {"OtherScaleLayout"} and rep.counts["pass"] == 0
    rules = {r for _, r in _causes(rep)}
    assert "triton-cdna4" in rules, rules
    # a 1 x 1 matrix is one byte at offset 0: only the buffer size tells layouts apart there,
    # and CDNA4's 32 x 8 is Hopper's at num_warps 4 (128 x 2); the claimed layout is named first
    assert rules <= {"triton-cdna4", "triton-hopper(num_warps=4)"}, rules


@pytest.mark.clause("CF-3.13")
def test_hopper_at_the_wrong_num_warps_and_a16w4_without_gate_up_are_named():
    rep = check("swizzle", lambda s, num_warps: _hopper_steps(s, 8), profile="ocp+layout-triton-hopper")
    assert _causes(rep) == {("OtherScaleLayout", "triton-hopper(num_warps=8)")}, rep.per_cause
    assert rep.counts == {"pass": 2, "acceptable": 0, "fail": 3}     # the numWarps 1 group fails
    rep = check("swizzle", lambda s, experts, gate_up: _a16w4_steps(s, experts, False),
                profile="ocp+layout-aiter-moe-a16w4")
    assert _causes(rep) == {("OtherScaleLayout", "aiter-moe-a16w4(experts=1, gate_up=False)")}
    assert rep.failing_clauses() == {"MX-8.10"}


@pytest.mark.clause("CF-3.13")
def test_transposed_scales_are_named():
    rep = check("swizzle", lambda s: _cublas_steps(np.ascontiguousarray(s.T)), profile="ocp")
    causes = _causes(rep)
    assert causes and {c for c, _ in causes} == {"OtherScaleLayout"}, rep.per_cause
    assert all(r.endswith(" of scales.T") for _, r in causes)
    assert ("OtherScaleLayout", "cublas-128x4 of scales.T") in causes


@pytest.mark.clause("CF-3.13", "MX-8.7", "MX-8.9")
def test_padding_bytes_other_than_zero():
    def pad_ff(steps):
        def fn(s, **kw):
            marker = steps(np.ones_like(s), **kw)
            return np.where(marker == 0, np.uint8(0xFF), steps(s, **kw))
        return fn
    rep = check("swizzle", pad_ff(_cublas_steps), profile="ocp")
    assert _causes(rep) == {("ScalePaddingBytes", "")} and rep.failing_clauses() == {"MX-8.7"}
    assert rep.counts["pass"] == 2               # the two shapes without padding
    # aiter allocates its padded matrix with torch.empty: unspecified, so acceptable (MX-8.9)
    rep = check("swizzle", pad_ff(_aiter_steps), profile="ocp+layout-aiter-e8m0-shuffle")
    assert rep.passed and rep.counts["acceptable"] == 2, str(rep)
    assert rep.per_cause["ScalePaddingBytes"]["acceptable"] == 2
    rep = check("swizzle", pad_ff(_cdna4_steps), profile="ocp+layout-triton-cdna4")
    assert _causes(rep) == {("ScalePaddingBytes", "")}


@pytest.mark.clause("CF-3.13", "CF-1.2")
def test_no_known_layout_and_a_wrong_size():
    def swapped(s):                        # the row strides of the 128 x 4 tile swapped
        pr, pc = -(-s.shape[0] // 128) * 128, -(-s.shape[1] // 4) * 4
        d = np.zeros((pr, pc), np.uint8)
        d[: s.shape[0], : s.shape[1]] = s
        return d.reshape(pr // 128, 32, 4, pc // 4, 4).transpose(0, 3, 2, 1, 4).reshape(-1)
    rep = check("swizzle", swapped, profile="ocp", level="quick")
    assert _causes(rep) == {("ScaleLayoutMismatch", "")} and rep.failing_clauses() == {"MX-8.2"}
    rep = check("swizzle", lambda s: _cublas_steps(s)[:-1], profile="ocp", level="quick")
    assert _causes(rep) == {("ConventionError", "")} and rep.failing_clauses() == {"CF-1.2"}
    assert "the size of no known layout" in rep.failures[0].detail


@pytest.mark.clause("CF-3.13", "CF-2.4")
def test_unknown_layout_option_is_refused():
    with pytest.raises(ProfileError, match="layout-triton-hopper"):
        get_profile("ocp+layout-hopper")
