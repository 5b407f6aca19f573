"""A dequantizer whose values are off by one power of two gets its own cause (spec/CF.md CF-3.11)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.conformance import check
from torq_ref.conformance.scale_offset import power_of_two_offset
from torq_ref.mx.formats import VALUE_TABLES


def _dequantizer(offset):
    """A gpt-oss-style loader: value(code) * 2^(scale - 127 + offset), scale 0xFF as NaN."""
    def fn(s, c):
        e = s.astype(np.int64) - 127 + offset
        y = VALUE_TABLES["e2m1"][c] * np.ldexp(1.0, e).repeat(32, axis=1)
        y[(s == 0xFF).repeat(32, axis=1)] = np.nan
        return y
    return fn


@pytest.mark.clause("CF-3.11")
def test_exponent_offset_applied_twice_is_named():
    assert check("dequantize", _dequantizer(0)).passed
    rep = check("dequantize", _dequantizer(-2))               # weights 4x too small
    assert "ScaleOffsetPowerOfTwo" in rep.failing_causes()
    assert rep.failing_causes() <= {"ScaleOffsetPowerOfTwo", "ValueMismatch"}
    first = next(r for r in rep.failures if r.cause == "ScaleOffsetPowerOfTwo")
    assert "x 2^-2" in first.detail and first.clause == "MX-5.6"


@pytest.mark.clause("CF-3.11")
def test_power_of_two_offset_is_exact():
    e = np.array([0.0, 1.5, -3.0, 6.0, np.nan, np.inf])
    assert power_of_two_offset(e * 0.25, e) == -2
    assert power_of_two_offset(e * 8, e) == 3
    assert power_of_two_offset(e, e) is None                  # k = 0 is no offset
    g = e * 0.25
    g[1] = 1.5 * 0.25 * (1 + 2.0 ** -52)
    assert power_of_two_offset(g, e) is None                  # one value off by an ulp
    g = e * 0.25
    g[0] = 2.0 ** -30
    assert power_of_two_offset(g, e) is None                  # a zero that is not zero
    g = e * 0.25
    g[3] = 6.0 * 0.5
    assert power_of_two_offset(g, e) is None                  # two different k
