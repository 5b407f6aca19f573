"""The default suite runs every golden vector against torq-ref's own codec (spec/CF.md CF-1.1)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.conformance import check


def _q(rule, fmt="e2m1", sat=False):
    def fn(x):
        t = mx.quantize(x, fmt, scale_rule=rule, saturate_scale=sat)
        return t.scales, t.codes
    return fn


@pytest.mark.clause("CF-1.1", "CF-2.1")
@pytest.mark.parametrize("profile, rule", [("ocp", "floor"), ("nvidia", "rceil"), ("torchao", "floor"),
                                           ("torchao-rceil", "rceil"), ("ceil", "ceil"), ("even", "even")])
def test_codec_quantize_e2m1(profile, rule):
    rep = check("quantize", _q(rule), profile=profile)
    assert rep.passed and rep.counts["acceptable"] == 0, str(rep)


@pytest.mark.clause("CF-1.1", "CF-2.2")
def test_codec_satfinite_is_acceptable_under_nvidia():
    rep = check("quantize", _q("rceil", sat=True), profile="nvidia")
    assert rep.passed and rep.per_flag["InfBlock"]["acceptable"] == 2


@pytest.mark.clause("CF-1.1")
@pytest.mark.parametrize("fmt, profile", [("e4m3", "ocp"), ("e4m3", "nvidia"), ("e2m3", "ocp"),
                                          ("e3m2", "ocp"), ("e5m2", "ocp"), ("int8", "ocp")])
def test_codec_quantize_other_formats(fmt, profile):
    rep = check("quantize", _q("rceil" if profile == "nvidia" else "floor", fmt), profile=profile, fmt=fmt)
    assert rep.passed, str(rep)


@pytest.mark.clause("CF-1.1")
def test_codec_other_kinds():
    for fmt in ("e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "int8"):
        assert check("encode", lambda x, f=fmt: mx.encode(x, f), fmt=fmt).passed
    nv = check("quantize", lambda x, g: (lambda t: (t.scales, t.codes))(mx.quantize_nvfp4(x, global_scale=g)),
               fmt="nvfp4")
    assert nv.passed, str(nv)
    deq = lambda s, c: mx.dequantize(mx.MXTensor(c, s, "e2m1", 32, 1, "floor"))
    assert check("dequantize", deq).passed
    assert check("dequantize", lambda s, c: deq(s, c).astype(np.float32)).passed   # 0xFE*6 -> Inf
    assert check("pack", mx.pack_fp4).passed
    assert check("swizzle", mx.swizzle_scales).passed
    assert check("dot_scaled", lambda a, b, c, d: deq(a, b) @ deq(c, d).T).passed


def _mse_ties_up(x):
    """A planted MSE kernel that takes FLOOR + 1 on ties (MX-4.8 keeps FLOOR)."""
    t = mx.quantize(x, scale_rule="floor", backend="numpy")
    s, c = t.scales.copy(), t.codes.copy()
    for r in range(x.shape[0]):
        f = int(s[r, 0])
        if f >= 254 or not np.isfinite(x[r]).all():
            continue
        c1 = mx.encode(np.ldexp(x[r].astype(np.float64), 126 - f), "e2m1")
        e0 = np.sum((x[r] - mx.decode(c[r], "e2m1") * 2.0 ** (f - 127)) ** 2)
        e1 = np.sum((x[r] - mx.decode(c1, "e2m1") * 2.0 ** (f - 126)) ** 2)
        if e1 <= e0:
            s[r, 0], c[r] = f + 1, c1
    return s, c


@pytest.mark.clause("CF-2.1", "MX-4.8", "GV-2.6")
def test_mse_profile():
    rep = check("quantize", _q("mse"), profile="mse")
    assert rep.passed and rep.counts["acceptable"] == 0 and rep.counts["pass"] >= 15, str(rep)
    fq = check("fake-quant", lambda x: mx.quantize_dequantize(x, scale_rule="mse"), profile="mse")
    assert fq.passed, str(fq)
    # a FLOOR kernel fails exactly the MseFloorPlusOne blocks, diagnosed as FLOOR's scale
    floor = check("quantize", _q("floor"), profile="mse")
    bad = floor.failures
    assert bad and all("MseFloorPlusOne" in r.flags and r.cause == "OtherScaleRule" and r.rule == "floor"
                       for r in bad)
    assert floor.per_flag["MseFloorPlusOne"]["fail"] == len(bad)
    # ties up: the tie block (and the zero block, whose errors are both 0) fail, nothing else
    up = check("quantize", _mse_ties_up, profile="mse")
    assert {f for r in up.failures for f in r.flags} == {"MseTie", "ZeroBlock"}, str(up)
