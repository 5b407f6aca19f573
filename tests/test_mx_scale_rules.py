"""The CUTLASS scale rule (spec/MX.md MX-4.9) and the per-format scale-rule vectors (spec/GV.md
GV-2.7): hand-derived boundary codes, the Triton 6054 block's answer per rule, and the harness
profile that checks a CUTLASS kernel."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import golden, mx
from torq_ref.conformance import check
from torq_ref.golden.hexio import from_hex


def _code(amax, fmt, rule):
    return int(mx.scale_codes(np.array([amax]), fmt, rule)[0])


@pytest.mark.clause("MX-4.9")
def test_cutlass_steps_at_one_point_seventy_five_whatever_the_format():
    below7 = float(np.nextafter(np.float32(7.0), np.float32(0)))
    # E2M1 (emax 2): 6 = 1.5 x 4 and 7 - ulp stay at 2^0, 7 = 1.75 x 4 goes to 2^1 (as EVEN)
    assert [_code(a, "e2m1", "cutlass") for a in (6.0, below7, 7.0)] == [0x7F, 0x7F, 0x80]
    assert [_code(a, "e2m1", "even") for a in (6.0, below7, 7.0)] == [0x7F, 0x7F, 0x80]
    # E4M3 (emax 8, mbits 3): 448 = 1.75 x 2^8: CUTLASS up, EVEN (1.9375) and RCEIL (448/448) not
    assert [_code(448.0, "e4m3", r) for r in ("floor", "rceil", "even", "cutlass")] == [0x7F, 0x7F, 0x7F, 0x80]
    # E2M3 (max 7.5 = 1.875 x 4): one ulp above 7.5 RCEIL goes up, FLOOR does not
    above = float(np.nextafter(np.float32(7.5), np.float32(8)))
    assert [_code(above, "e2m3", r) for r in ("floor", "rceil", "ceil", "even", "cutlass")] == \
        [0x7F, 0x80, 0x80, 0x7F, 0x80]
    # saturation past 6: m = 1.625 keeps 2^0, so 6.5 becomes the largest element 6 (code 0x7)
    t = mx.quantize(np.array([[6.5] + [0.0] * 31], np.float32), "e2m1", scale_rule="cutlass",
                    backend="numpy")
    assert int(t.scales[0, 0]) == 0x7F and int(t.codes[0, 0]) == 0x7


@pytest.mark.clause("GV-2.7")
def test_scale_rules_file_holds_every_format_and_rule_and_the_triton_block():
    doc = golden.read_tree(golden.committed_dir()).docs["mx_scale_rules.json"]
    groups = {(g["format"], g["scaleRule"]): g for g in doc["testGroups"]}
    assert set(groups) == {(f, r) for f in ("e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "int8")
                           for r in ("floor", "rceil", "ceil", "even", "cutlass")}
    # Triton issue 6054: 6 is 1.5 x 4, so only CEIL moves to 2^1; FLOOR's codes hand-derived
    want = {"floor": 0x7F, "rceil": 0x7F, "ceil": 0x80, "even": 0x7F, "cutlass": 0x7F}
    for rule, s in want.items():
        t = [t for t in groups[("e2m1", rule)]["tests"] if "Triton6054" in t["flags"]][0]
        assert int(from_hex(t["scale"], "uint8")[0]) == s, rule
    t = [t for t in groups[("e2m1", "floor")]["tests"] if "Triton6054" in t["flags"]][0]
    assert list(from_hex(t["codes"], "uint8")[:8]) == [0x7, 0, 0, 0, 0x2, 0x2, 0x2, 0x3]
    # the groups of one format share their inputs in order (GV-2.5)
    xs = {r: [t["x"] for t in groups[("e3m2", r)]["tests"]] for r in want}
    assert len({tuple(v) for v in xs.values()}) == 1


@pytest.mark.clause("CF-2.1", "MX-4.9")
def test_vllm_cutlass_moe_profile():
    def cutlass(x):
        t = mx.quantize(x, "e4m3", scale_rule="cutlass", backend="numpy")
        return t.scales, t.codes
    assert check("quantize", cutlass, profile="vllm-cutlass-moe", fmt="e4m3", level="quick").passed

    def even(x):                        # EVEN is not CUTLASS for E4M3: the 1.75 blocks differ
        t = mx.quantize(x, "e4m3", scale_rule="even", backend="numpy")
        return t.scales, t.codes
    rep = check("quantize", even, profile="vllm-cutlass-moe", fmt="e4m3", level="quick")
    assert not rep.passed and {r.clause for r in rep.failures} == {"MX-4.9"}

    def before_the_fix(x):              # the exponent of amax / 6: one too small for most blocks
        b = x.astype(np.float64).reshape(x.shape[0], -1, 32)
        with np.errstate(invalid="ignore"):
            amax = np.abs(b).max(-1)
        e = np.frexp(np.where(np.isfinite(amax) & (amax > 0), amax / 6.0, 1.0))[1] - 1
        s = np.where(np.isfinite(amax), np.where(amax > 0, np.clip(127 + e, 0, 254), 0), 255)
        s = s.astype(np.uint8)
        with np.errstate(invalid="ignore", over="ignore"):
            c = mx.encode(np.ldexp(b, (127 - s.astype(np.int64))[..., None]), "e2m1")
        return s, c.reshape(x.shape)
    rep = check("quantize", before_the_fix, profile="vllm-cutlass-moe", level="quick")
    assert not rep.passed and "MX-4.9" in {r.clause for r in rep.failures}


@pytest.mark.clause("MX-4.10")
def test_e8m0_cast_modes_hand_derived():
    x = np.array([1.0, 1.25, 1.5, 1.9999, 3.0, 2.0 ** -130, 2.0 ** 127, 1.5 * 2.0 ** 127, np.inf,
                  np.nan], np.float32)
    assert list(mx.e8m0_cast(x, "nearest")) == [0x7F, 0x7F, 0x80, 0x80, 0x81, 0, 0xFE, 0xFF, 0xFF, 0xFF]
    assert list(mx.e8m0_cast(x, "floor")) == [0x7F, 0x7F, 0x7F, 0x7F, 0x80, 0, 0xFE, 0xFE, 0xFF, 0xFF]
    assert list(mx.e8m0_cast(x, "ceil-satfinite")) == [0x7F, 0x80, 0x80, 0x80, 0x81, 0, 0xFE, 0xFE, 0xFE, 0xFF]
    with pytest.raises(ValueError, match="positive"):
        mx.e8m0_cast(np.array([0.0], np.float32))
    with pytest.raises(ValueError, match="known"):
        mx.e8m0_cast(np.array([1.0], np.float32), "rne")


@pytest.mark.clause("CF-3.12", "GV-2.8")
def test_e8m0_cast_kind_on_the_libraries_and_a_planted_floor_cast():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    torch = pytest.importorskip("torch")
    assert check("e8m0-cast", lambda x: x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)).passed
    t = lambda x: torch.from_numpy(x).to(torch.float8_e8m0fnu).view(torch.uint8).numpy()
    # torch rounds the float32 bit pattern: a subnormal 1.25 x 2^-127 (fraction bit 22 set)
    # goes up to 2^-126, although 2^-127 is nearer; every other vector is the nearest mode's
    rep = check("e8m0-cast", t)
    assert [r.detail.split()[0] for r in rep.failures] == ["x=00500000"], rep.per_cause
    rep = check("e8m0-cast", t, profile="nvidia")          # torch rounds to nearest, not up
    assert not rep.passed and rep.failing_causes() == {"OtherCastRounding"}
    assert "nearest" in {r.rule for r in rep.failures} and {r.clause for r in rep.failures} == {"MX-4.10"}
    exponent_field = lambda x: np.where(np.isnan(x), 255, (x.view(np.uint32) >> 23) & 0xFF).astype(np.uint8)
    assert check("e8m0-cast", exponent_field, profile="ocp+cast-floor").passed
    rep = check("e8m0-cast", exponent_field)
    assert rep.failing_causes() == {"OtherCastRounding"} and {r.rule for r in rep.failures} == {"floor"}
