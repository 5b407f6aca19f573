"""E8M0 scale rules and block quantization, the tricky cases of docs/mx-format.md section 8 with their
expected bytes written out, and hypothesis properties (spec/MX.md sections 4-5)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torq_ref import mx

RULES = list(mx.SCALE_RULES)   # every rule, MSE (MX-4.8) included
F32_MAX = float(np.finfo(np.float32).max)


def f32(bits: int) -> float:
    return float(np.array([bits], np.uint32).view(np.float32)[0])


def up(v):   # next float32 above
    return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def down(v):  # next float32 below (towards zero for positive v)
    return float(np.nextafter(np.float32(v), np.float32(0)))


def block(*vals, n=32):
    out = np.zeros(n, np.float32)
    out[: len(vals)] = vals
    return out


# (name, amax, expected scale code per rule (floor, rceil, ceil, even)) -- hand-derived from MX-4.x
SCALE_CASES = [
    ("6+ulp", up(6), (0x7F, 0x80, 0x80, 0x7F)),
    ("7", 7.0, (0x7F, 0x80, 0x80, 0x80)),
    ("8-ulp", down(8), (0x7F, 0x80, 0x80, 0x80)),
    ("8", 8.0, (0x80, 0x80, 0x80, 0x80)),
    ("6", 6.0, (0x7F, 0x7F, 0x80, 0x7F)),
    ("3+ulp", up(3), (0x7E, 0x7F, 0x7F, 0x7E)),
    ("1.75", 1.75, (0x7D, 0x7E, 0x7E, 0x7E)),
    ("zero", 0.0, (0x00, 0x00, 0x00, 0x00)),
    ("2^-126 smallest normal", 2.0**-126, (0, 0, 0, 0)),
    ("2^-125", 2.0**-125, (0, 0, 0, 0)),
    ("2^-124", 2.0**-124, (1, 1, 1, 1)),
    ("2^-127", 2.0**-127, (0, 0, 0, 0)),
    ("2^-149 subnormal", 2.0**-149, (0, 0, 0, 0)),
    ("above 6*2^-127", up(6 * 2.0**-127), (0x00, 0x00, 0x01, 0x00)),
    ("2^127", 2.0**127, (0xFC, 0xFC, 0xFC, 0xFC)),
    ("FLT_MAX", F32_MAX, (0xFC, 0xFD, 0xFD, 0xFD)),
    ("96(1+2^-23)", up(96.0), (0x83, 0x84, 0x84, 0x83)),
    ("0x43FFFFFF not rounded to bf16", f32(0x43FFFFFF), (0x85, 0x86, 0x86, 0x86)),
    ("0x40600001 not rounded to bf16", f32(0x40600001), (0x7E, 0x7F, 0x7F, 0x7F)),
]
# 2^k and one float32 ulp below: FLOOR 125+k / 124+k, RCEIL 125+k / 125+k (clamped at 0)
POWERS = {-126: (0, 0), -100: (25, 24), -64: (61, 60), 3: (128, 127), 10: (135, 134), 64: (189, 188),
          100: (225, 224), 127: (252, 251)}


@pytest.mark.clause("MX-4.2", "MX-4.3", "MX-4.4", "MX-4.5", "MX-4.6")
@pytest.mark.parametrize("name, amax, expected", SCALE_CASES, ids=[c[0] for c in SCALE_CASES])
@pytest.mark.parametrize("rule_index", range(4), ids=RULES[:4])   # MSE: tests/test_mx_mse.py
def test_scale_codes_written_out(name, amax, expected, rule_index):
    rule = RULES[rule_index]
    t = mx.quantize(block(amax, -amax / 2), scale_rule=rule, backend="numpy")
    assert t.scales[0] == expected[rule_index]
    t2 = mx.quantize(block(amax, -amax / 2), scale_rule=rule)
    assert t2.scales[0] == expected[rule_index]


@pytest.mark.clause("MX-4.7", "MX-4.2", "MX-4.3")
@pytest.mark.parametrize("k", sorted(POWERS))
def test_powers_of_two_and_one_ulp_below(k):
    floor_p, floor_below = POWERS[k]
    p = 2.0**k
    assert mx.quantize(block(p), scale_rule="floor").scales[0] == floor_p
    assert mx.quantize(block(down(p)), scale_rule="floor").scales[0] == floor_below
    assert mx.quantize(block(p), scale_rule="rceil").scales[0] == floor_p
    expected_rceil_below = floor_below + 1 if k > -126 else 0
    assert mx.quantize(block(down(p)), scale_rule="rceil").scales[0] == expected_rceil_below


@pytest.mark.clause("MX-4.6", "MX-5.2", "MX-5.4")
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("backend", ["numpy", "auto"])      # the reference itself, and the fast path
def test_nan_and_inf_blocks(rule, backend):
    q = lambda x, **kw: mx.quantize(x, scale_rule=rule, backend=backend, **kw)
    t = q(block(np.nan, 1, 2))
    assert t.scales[0] == 0xFF and np.all(t.codes == 0x7)
    t = q(block(np.nan, np.inf), saturate_scale=True)
    assert t.scales[0] == 0xFF
    t = q(block(np.inf, 1, -2))
    assert t.scales[0] == 0xFF and np.all(t.codes == 0x7)
    t = q(block(-np.inf, 1, -2), saturate_scale=True)
    assert t.scales[0] == 0xFE
    assert list(t.codes[:4]) == [0xF, 0x0, 0x8, 0x0]


@pytest.mark.clause("MX-5.4")
@pytest.mark.parametrize("fmt", sorted(mx.FORMATS))
def test_nan_block_gets_the_positive_nan_code_in_every_format(fmt):
    """MX-5.4: every element of a 0xFF block is the format's positive NaN code, whatever the sign
    of the NaN (-NaN here) and whatever the other elements."""
    x = block(-np.nan, -3.0, 0.5)
    assert np.signbit(x[0])
    t = mx.quantize(x, fmt, backend="numpy")
    want = {"e2m1": 0x7, "e2m3": 0x1F, "e3m2": 0x1F, "e4m3": 0x7F, "e5m2": 0x7E, "int8": 0x7F}[fmt]
    assert t.scales[0] == 0xFF and np.all(t.codes == want)


@pytest.mark.clause("MX-4.6")
def test_scale_range_written_out_on_the_reference():
    """MX-4.6 on scale_codes itself (no backend involved): e2m1 (emax 2), FLOOR.
    2^200: 127 + 200 - 2 = 325 > 254 -> 0xFF, or 0xFE with saturate_scale; Inf likewise;
    2^129: 127 + 129 - 2 = 254 stays; 2^-140: 127 - 140 - 2 < 0 -> 0; NaN -> 0xFF always."""
    amax = np.array([2.0**200, np.inf, 2.0**129, 2.0**-140, np.nan, 0.0])
    assert mx.scale_codes(amax, "e2m1").tolist() == [0xFF, 0xFF, 254, 0, 0xFF, 0]
    assert mx.scale_codes(amax, "e2m1", saturate_scale=True).tolist() == [0xFE, 0xFE, 254, 0, 0xFF, 0]


@pytest.mark.clause("MX-5.3")
@pytest.mark.parametrize("rule, scale, codes", [
    ("floor", 0x7F, [0x7, 0x5, 0xA, 0x0, 0x2, 0x8]),
    ("rceil", 0x80, [0x5, 0x3, 0x9, 0x0, 0x1, 0x8]),
    ("ceil", 0x80, [0x5, 0x3, 0x9, 0x0, 0x1, 0x8]),
    ("even", 0x7F, [0x7, 0x5, 0xA, 0x0, 0x2, 0x8]),
])
def test_block_codes_written_out(rule, scale, codes):
    t = mx.quantize(block(up(6), 3.0, -1.0, 0.25, 0.75, -0.1), scale_rule=rule)
    assert t.scales[0] == scale
    assert list(t.codes[:6]) == codes
    assert np.all(t.codes[6:] == 0)


@pytest.mark.clause("MX-5.3", "MX-3.3")
def test_mixed_magnitudes_and_signed_zero_blocks():
    t = mx.quantize(block(F32_MAX, 1.0, -1.0), scale_rule="floor")
    assert t.scales[0] == 0xFC and list(t.codes[:3]) == [0x7, 0x0, 0x8]
    t = mx.quantize(block(F32_MAX, 1.0, -1.0), scale_rule="rceil")
    assert t.scales[0] == 0xFD and list(t.codes[:3]) == [0x6, 0x0, 0x8]
    t = mx.quantize(np.full(32, -0.0, np.float32))
    assert t.scales[0] == 0x00 and np.all(t.codes == 0x8)
    # tiny blocks: code 0 scale means 2^-127, elements are scaled by 2^127 (not 2^126)
    t = mx.quantize(block(2.0**-127, 2.0**-128, -3 * 2.0**-128))
    assert t.scales[0] == 0 and list(t.codes[:3]) == [0x2, 0x1, 0xB]


@pytest.mark.clause("MX-5.6", "MX-4.1")
def test_dequantize_special_scales():
    t = mx.MXTensor(codes=np.array([[0x7] * 32, [0x7] * 32, [0x1] * 32, [0x0] * 32], np.uint8),
                    scales=np.array([[0xFF], [0xFE], [0x00], [0xFF]], np.uint8),
                    fmt="e2m1", block_size=32, axis=1, scale_rule="floor")
    v = mx.dequantize(t)
    assert np.all(np.isnan(v[0])) and np.all(np.isnan(v[3]))
    assert np.all(v[1] == 6 * 2.0**127) and v.dtype == np.float64
    assert np.all(v[2] == 2.0**-128)
    assert np.isnan(mx.scale_values(np.array([0xFF], np.uint8))[0])
    assert mx.scale_values(np.array([0], np.uint8))[0] == 2.0**-127


@pytest.mark.clause("MX-5.1", "MX-5.5")
def test_shapes_axis_and_padding():
    x = np.arange(2 * 64 * 3, dtype=np.float32).reshape(2, 64, 3)
    t = mx.quantize(x, axis=1)
    assert t.codes.shape == x.shape and t.scales.shape == (2, 2, 3) and t.axis == 1
    ref = mx.quantize(np.moveaxis(x, 1, -1))
    assert np.array_equal(np.moveaxis(t.codes, 1, -1), ref.codes)
    y = np.linspace(-3, 3, 40, dtype=np.float32)
    with pytest.raises(ValueError, match="not a multiple of block_size 32"):
        mx.quantize(y)
    tp = mx.quantize(y, pad=True)
    assert tp.codes.shape == (40,) and tp.scales.shape == (2,)
    full = mx.quantize(np.concatenate([y, np.zeros(24, np.float32)]))
    assert np.array_equal(tp.codes, full.codes[:40]) and np.array_equal(tp.scales, full.scales)
    assert mx.dequantize(tp).shape == (40,)


@pytest.mark.clause("MX-5.7")
def test_quantize_dequantize_dtype():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    for backend in ("numpy", "auto"):
        fq = mx.quantize_dequantize(x, backend=backend)
        assert fq.dtype == np.float32
        assert np.array_equal(fq, mx.dequantize(mx.quantize(x)).astype(np.float32))
    assert mx.quantize_dequantize(x.astype(np.float64)).dtype == np.float64
    assert mx.quantize_dequantize(x.astype(np.float16)).dtype == np.float64


def _finite_blocks(max_exp=60):
    elems = st.floats(min_value=-(2.0**max_exp), max_value=2.0**max_exp, width=32, allow_nan=False)
    return hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.just(64)), elements=elems)


@pytest.mark.clause("MX-5.8")
@given(x=_finite_blocks(), rule=st.sampled_from(RULES), fmt=st.sampled_from(["e2m1", "e4m3", "e3m2", "int8"]))
def test_value_fixed_point(x, rule, fmt):
    t = mx.quantize(x, fmt, scale_rule=rule)
    v = mx.dequantize(t)
    t2 = mx.quantize(v, fmt, scale_rule=rule)
    assert np.array_equal(mx.dequantize(t2), v)
    if rule == "floor":
        assert np.array_equal(t2.codes, t.codes) and np.array_equal(t2.scales, t.scales)


@pytest.mark.clause("MX-5.8")
@given(x=_finite_blocks(40), k=st.integers(-30, 30), rule=st.sampled_from(RULES))
def test_scale_invariance_and_sign_symmetry(x, k, rule):
    t = mx.quantize(x, scale_rule=rule)
    nz = t.scales > 0   # blocks whose scale is not clamped at 0 stay exact under 2^k when k > 0
    ts = mx.quantize(np.ldexp(x, k).astype(np.float32), scale_rule=rule)
    clamp_free = nz & (t.scales.astype(int) + k > 0) & (t.scales.astype(int) + k < 255)
    rows, blocks = np.nonzero(clamp_free)
    for r, b in zip(rows, blocks):
        sl = slice(32 * b, 32 * b + 32)
        assert int(ts.scales[r, b]) == int(t.scales[r, b]) + k
        assert np.array_equal(ts.codes[r, sl], t.codes[r, sl])
    tn = mx.quantize(-x, scale_rule=rule)
    assert np.array_equal(tn.scales, t.scales)
    assert np.array_equal(tn.codes, t.codes ^ 0x8)


@pytest.mark.clause("MX-5.8", "MX-3.1")
@given(codes=hnp.arrays(np.uint8, (3, 32), elements=st.integers(0, 15)), s=st.integers(1, 250))
def test_representable_blocks_round_trip(codes, s):
    # a block whose largest magnitude is 4 or 6 times 2^(s-127) re-derives scale s under FLOOR
    codes = codes.copy()
    codes[:, 0] = 0x7
    t = mx.MXTensor(codes=codes, scales=np.full((3, 1), s, np.uint8), fmt="e2m1", block_size=32, axis=1,
                    scale_rule="floor")
    back = mx.quantize(mx.dequantize(t), scale_rule="floor")
    assert np.array_equal(back.scales, t.scales)
    neg_zero_equiv = np.where(codes == 0x8, 0x8, codes)
    assert np.array_equal(back.codes, neg_zero_equiv)


@pytest.mark.clause("MX-1.1")
def test_block_value_is_scale_times_element():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(256).astype(np.float32) * 100
    t = mx.quantize(x)
    v = mx.dequantize(t)
    per = np.repeat(2.0 ** (t.scales.astype(int) - 127), 32)
    assert np.array_equal(v, mx.E2M1_VALUES[t.codes] * per)


# EVEN and CEIL for formats with mbits > 1, derived by hand from MX-4.4 / MX-4.5 (not from vectors
# the codec generated). amax = m * 2^E, m in [1, 2):
#   e4m3: emax 8, mbits 3 -> EVEN carries when m >= 2 - 2^-4 = 1.9375; CEIL when m > 1.
#   e3m2: emax 4, mbits 2 -> EVEN carries when m >= 2 - 2^-3 = 1.875;  CEIL when m > 1.
#   FLOOR code = 127 + E - emax; e.g. e4m3 amax 1.9 (E = 0) -> 119, amax 1.9375 -> EVEN 120.
# (fmt, amax, floor, ceil, even)
HIGH_MBITS_CASES = [
    ("e4m3", 1.0, 119, 119, 119),                  # m = 1: no carry for either rule
    ("e4m3", up(1.0), 119, 120, 119),              # m just above 1: CEIL carries
    ("e4m3", 1.75, 119, 120, 119),                 # the e2m1 EVEN threshold: no carry for e4m3
    ("e4m3", 1.9, 119, 120, 119),                  # 1.9 < 1.9375
    ("e4m3", down(1.9375), 119, 120, 119),         # one float32 ulp below the threshold
    ("e4m3", 1.9375, 119, 120, 120),               # the threshold itself carries (>=)
    ("e4m3", 448.0, 127, 128, 127),                # 448 = 1.75 * 2^8: E = 8, 1.75 < 1.9375
    ("e4m3", 496.0, 127, 128, 128),                # 496 = 1.9375 * 2^8
    ("e3m2", 1.8, 123, 124, 123),                  # 1.8 < 1.875
    ("e3m2", down(1.875), 123, 124, 123),
    ("e3m2", 1.875, 123, 124, 124),
    ("e3m2", 28.0, 127, 128, 127),                 # 28 = 1.75 * 2^4: below 1.875, FLOOR = EVEN
    ("e3m2", 30.0, 127, 128, 128),                 # 30 = 1.875 * 2^4
]


@pytest.mark.clause("MX-4.2", "MX-4.4", "MX-4.5")
@pytest.mark.parametrize("fmt, amax, floor, ceil, even", HIGH_MBITS_CASES,
                         ids=[f"{c[0]}-{c[1]!r}" for c in HIGH_MBITS_CASES])
def test_even_and_ceil_hand_derived_for_mbits_above_one(fmt, amax, floor, ceil, even):
    for rule, want in (("floor", floor), ("ceil", ceil), ("even", even)):
        assert mx.scale_codes(np.float32(amax), fmt, rule) == want, rule
        assert mx.quantize(block(amax, -amax / 2), fmt, scale_rule=rule).scales[0] == want, rule
