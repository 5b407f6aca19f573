"""The cause classifier (spec/CF.md CF-3.7): for each cause, a planted kernel with exactly that
defect is classified as that cause, and only that.

Each kernel is the oracle (torq_ref.mx) with one step changed, so that every failing block
carries the one defect; the correct kernel passes, which keeps the plants honest.
"""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.conformance import check
from torq_ref.conformance.causes import CAUSES, classify_block

E2M1_POS = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])


def _blocks(x):
    return x.astype(np.float64).reshape(x.shape[0], -1, 32)                  # (rows, nb, 32)


def _floor_scale(x, emax=2):
    """FLOOR E8M0 codes (rows, nb) from frexp, with the ocp NaN / Inf handling."""
    b = _blocks(x)
    with np.errstate(invalid="ignore"):
        amax = np.abs(b).max(-1)
    fin = np.where(np.isfinite(amax), amax, 0)
    e = np.frexp(fin)[1] - 1
    s = np.where(fin > 0, np.clip(127 + e - emax, 0, 254), 0)
    return np.where(np.isfinite(amax), s, 255).astype(np.uint8)


def _rne_e2m1(q):
    """float64 quotients -> E2M1 codes, RNE, saturating (independent of the codec)."""
    a = np.minimum(np.abs(np.nan_to_num(q, nan=0.0)), 6.0)
    step = np.where(a < 2, 0.5, np.where(a < 4, 1.0, 2.0))
    v = np.minimum(np.round(a / step) * step, 6.0)
    return (np.searchsorted(E2M1_POS, v) | np.where(np.signbit(q), 8, 0)).astype(np.uint8)


def kernel(scale_fn=_floor_scale, codes_fn=None, post=None):
    """quantize kernel: scales from scale_fn(x), codes = codes_fn(q, x) (default RNE)."""
    def quantize(x):
        s = scale_fn(x)
        div = np.ldexp(1.0, s.astype(np.int64) - 127)[..., None]
        with np.errstate(invalid="ignore"):
            q = _blocks(x) / div
        c = (codes_fn or (lambda q, x: _rne_e2m1(q)))(q, _blocks(x)).reshape(x.shape)
        if post is not None:
            s, c = post(x, s, c)
        return s, c.astype(np.uint8)
    return quantize


def _unsigned_zero(q, b):
    c = _rne_e2m1(q)
    return np.where(c == 8, 0, c).astype(np.uint8)


def _ties_away(q, b):
    a = np.abs(q)
    ties = np.isin(a, [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    return _rne_e2m1(np.where(ties, np.copysign(np.nextafter(a, np.inf), q), q))


def _add_half_float32(q, b):
    """floor(|q| / step + 0.5) with the addition rounded to float32: 0.5 - 2^-25 goes up."""
    a = np.minimum(np.abs(q), 6.0)
    step = np.where(a < 2, 0.5, np.where(a < 4, 1.0, 2.0))
    u = (a / step).astype(np.float32)
    r = np.floor((u + np.float32(0.5)).astype(np.float32)).astype(np.float64)
    ties = np.isin(a, [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    r = np.where(ties, np.round(a / step), r)          # exact ties stay even: one defect only
    v = np.minimum(r * step, 6.0)
    return (np.searchsorted(E2M1_POS, v) | np.where(np.signbit(q), 8, 0)).astype(np.uint8)


def _no_saturation(q, b):
    c = _rne_e2m1(q)
    return np.where(np.abs(q) > 6, 0, c).astype(np.uint8)                    # overflow to zero


def _farther_neighbour(q, b):
    """Non-tie, non-exact quotients go to the farther neighbour."""
    c = _rne_e2m1(q)
    a = np.minimum(np.abs(q), 6.0)
    exact = np.isin(a, E2M1_POS)
    t = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    ties = (np.abs(a[..., None] - t) <= a[..., None] * 2.0 ** -20).any(-1)    # ties and neighbours
    lo = np.searchsorted(E2M1_POS, a, side="right") - 1
    hi = np.minimum(lo + 1, 7)
    near = c & 7
    other = np.where(near == lo, hi, lo)
    change = ~exact & ~ties & (np.abs(q) < 6) & np.isfinite(q) & (other != 0)
    return np.where(change, other | (c & 8), c).astype(np.uint8)


def _daz(inner):
    def quantize(x):
        sub = (np.abs(x) < 2.0 ** -126) & (x != 0)
        return inner(np.where(sub, np.copysign(np.float32(0), x), x).astype(np.float32))
    return quantize


def _nanmax_scale(x):
    b = _blocks(x)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        amax = np.nanmax(np.where(np.isinf(b), np.nan, np.abs(b)), -1)
    s = _floor_scale(np.nan_to_num(amax, nan=0.0).astype(np.float32).repeat(32, -1))
    return np.where(np.isinf(_blocks(x)).any(-1), 255, s).astype(np.uint8)


def _inf_fd(x):
    s = _floor_scale(x)
    inf = np.isinf(_blocks(x)).any(-1) & ~np.isnan(_blocks(x)).any(-1)
    return np.where(inf, 0xFD, s).astype(np.uint8)


def _float_log2_scale(x):
    b = _blocks(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        amax = np.abs(b).max(-1)
        fin = np.where(np.isfinite(amax), amax, 0).astype(np.float32)
        e = np.where(fin > 0, np.floor(np.log2(fin)), 0)
    s = np.where(fin > 0, np.clip(127 + e - 2, 0, 254), 0)
    return np.where(np.isfinite(amax), s, 255).astype(np.uint8)


def _wrapped_scale(x):
    b = _blocks(x)
    with np.errstate(invalid="ignore"):
        amax = np.abs(b).max(-1)
    fin = np.where(np.isfinite(amax), amax, 0)
    s = np.where(fin > 0, np.minimum(127 + np.frexp(fin)[1] - 1 - 2, 254), 0) % 256
    return np.where(np.isfinite(amax), s, 255).astype(np.uint8)


def _scale_byte_plus_one(x, s, c):
    fin = np.isfinite(_blocks(x)).all(-1) & (s < 254) & (np.abs(_blocks(x)).max(-1) > 0)
    return np.where(fin, s + 1, s).astype(np.uint8), c


def _divisor_126(x):
    s = _floor_scale(x)
    return np.where(s == 0, 1, s).astype(np.uint8)     # divide by 2^-126, write 0x00 below


def _write_zero(x, s, c):
    return np.where(_floor_scale(x) == 0, 0, s).astype(np.uint8), c


def _flush_code0(x, s, c):
    z = np.repeat(s == 0, 32, axis=-1).reshape(c.shape)
    normal = np.repeat((np.abs(_blocks(x)) >= 2.0 ** -126).any(-1), 32, -1).reshape(c.shape)
    return s, np.where(z & normal, 0, c).astype(np.uint8)


def _rceil_scale(x):
    return mx.quantize(x, "e2m1", scale_rule="rceil", backend="numpy").scales


PLANTS = {
    "SignedZero": kernel(codes_fn=_unsigned_zero),
    "TieDirection": kernel(codes_fn=_ties_away),
    "TieNeighbour": kernel(codes_fn=_add_half_float32),
    "Saturation": kernel(codes_fn=_no_saturation),
    "ElementRounding": kernel(codes_fn=_farther_neighbour),
    "SubnormalFlush": _daz(kernel()),
    "NaNHandling": kernel(scale_fn=_nanmax_scale),
    "InfHandling": kernel(scale_fn=_inf_fd),
    "FloatLog2": kernel(scale_fn=_float_log2_scale),
    "ScaleNotClamped": kernel(scale_fn=_wrapped_scale),
    "ScaleByteOnly": kernel(post=_scale_byte_plus_one),
    "WrongScale": kernel(scale_fn=lambda x: np.where(_floor_scale(x) < 255, np.maximum(
        _floor_scale(x).astype(np.int64) - 1, 0), 255).astype(np.uint8)),
    "DivisorClampedAt2^-126": kernel(scale_fn=_divisor_126, post=_write_zero),
    "FlushedScaleCodeZero": kernel(post=_flush_code0),
    "OtherScaleRule": kernel(scale_fn=_rceil_scale),
}


@pytest.mark.clause("CF-3.7", "CF-3.3")
def test_correct_plant_base_passes():
    assert check("quantize", kernel()).passed


@pytest.mark.clause("CF-3.7", "CF-3.3", "CF-3.5")
@pytest.mark.parametrize("cause", sorted(PLANTS))
def test_each_planted_defect_is_named(cause):
    rep = check("quantize", PLANTS[cause])
    assert not rep.passed
    assert rep.failing_causes() == {cause}, rep.per_cause
    clause = CAUSES[cause][0] or "MX-4.2"
    assert {r.clause for r in rep.failures} == {clause}
    if cause == "OtherScaleRule":
        assert {r.rule for r in rep.failures} == {"rceil"}
    # every failing block is counted under its cause, however many (no lumping past 200)
    assert sum(v["fail"] for v in rep.per_cause.values()) == rep.counts["fail"]


@pytest.mark.clause("CF-2.3", "CF-3.7")
def test_any_rule_reports_codes_against_the_rule_matched():
    rep = check("quantize", PLANTS["OtherScaleRule"], profile="any-rule")
    assert rep.passed and rep.counts["acceptable"] > 0
    rceil_ties = kernel(scale_fn=_rceil_scale, codes_fn=_ties_away)
    rep = check("quantize", rceil_ties, profile="any-rule")
    assert not rep.passed
    assert rep.failing_causes() == {"TieDirection"}
    assert {r.clause for r in rep.failures} == {"MX-3.1"}        # not a FLOOR scale failure
    assert "rceil" in {r.rule for r in rep.failures}


@pytest.mark.clause("CF-2.4", "CF-3.7")
def test_signed_zero_option():
    sz = PLANTS["SignedZero"]
    assert not check("quantize", sz).passed
    rep = check("quantize", sz, profile="ocp+unsigned-zero")
    assert rep.passed and rep.counts["acceptable"] > 0
    def unsigned_ties_away(q, b):
        c = _ties_away(q, b)
        return np.where(c == 8, 0, c).astype(np.uint8)
    both = kernel(codes_fn=unsigned_ties_away)
    rep = check("quantize", both, profile="ocp+unsigned-zero")
    assert not rep.passed and rep.failing_causes() == {"TieDirection"}
    enc = check("encode", lambda x: np.where(mx.encode(x, "e2m1") == 8, 0, mx.encode(x, "e2m1")))
    assert enc.failing_causes() == {"SignedZero"}
    assert check("encode", lambda x: np.where(mx.encode(x, "e2m1") == 8, 0, mx.encode(x, "e2m1")),
                 profile="ocp+unsigned-zero").passed


@pytest.mark.clause("CF-3.4", "GV-4.3")
def test_known_defect_variants_of_quantize_are_named():
    for cause, flag in [("FloatLog2", "KnownDefectFloatLog2"), ("TieDirection", "KnownDefectTiesAway"),
                        ("ScaleNotClamped", "KnownDefectScaleNotClamped"),
                        ("FlushedScaleCodeZero", "KnownDefectFlushedScaleCodeZero")]:
        rep = check("quantize", PLANTS[cause], level="quick")
        assert flag in rep.known_defects, (cause, rep.known_defects)


@pytest.mark.clause("CF-3.10")
def test_one_kernel_error_does_not_hide_the_other_files():
    good = kernel()

    def flaky(x):
        if x.shape[1] == 32:
            raise RuntimeError("boom on the JSON batch")
        return good(x)
    rep = check("quantize", flaky)
    srcs = {r.source.split("[")[0] for r in rep.results}
    assert "mx_quantize.json" in {r.source for r in rep.failures}
    assert "bulk/quantize_e2m1_floor" in srcs and rep.failing_causes() == {"ConventionError"}
    enc = check("encode", lambda x: mx.encode(x, "e2m1") if x.size == 65536 else 1 / 0)
    assert {r.source for r in enc.failures} == {"mx_encode.json"}
    assert any(r.source == "bulk/e2m1_encode_bf16_all" and r.status == "pass" for r in enc.results)


@pytest.mark.clause("CF-3.2")
def test_dequantize_nan_only_where_expected():
    def deq(s, c):
        return (mx.decode(c, "e2m1") * np.repeat(mx.scale_values(s), 32, axis=1)).astype(np.float32)
    assert check("dequantize", deq).passed

    def nan_for_6(s, c):            # plant: code 7 (6.0) read as NaN
        y = deq(s, c)
        return np.where(c == 7, np.nan, y).astype(np.float32)
    rep = check("dequantize", nan_for_6)
    assert not rep.passed and rep.failing_causes() == {"NaNHandling"}


@pytest.mark.clause("CF-3.7")
def test_classify_block_unit():
    x = np.zeros(32, np.float32)
    x[0], x[1] = 6.0, -0.1
    t = mx.quantize(x.reshape(1, -1), "e2m1")
    s, c = int(t.scales[0, 0]), t.codes.ravel()
    bad = c.copy(); bad[1] = 0
    assert classify_block(x, s, c, s, bad, "e2m1", "floor") == ("SignedZero", "floor")
    bad = c.copy(); bad[0] = 0x6
    assert classify_block(x, s, c, s, bad, "e2m1", "floor")[0] == "ElementRounding"
