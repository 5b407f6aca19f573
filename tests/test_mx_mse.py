"""The MSE scale rule (spec/MX.md MX-4.8): FLOOR's code s or s + 1, whichever block squared error
is strictly smaller (float64, element order), a tie keeping s; both backends bit for bit (MX-6.1).

E2M1 values: codes 0..7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6 (codes 8..15 the negatives); a tie in
element rounding goes to the even code (MX-3.1). Errors below are in units of the FLOOR scale.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from torq_ref import mx

BACKENDS = ["numpy", "numba"] if mx.numba_available() else ["numpy"]


def _block(*head, dtype=np.float32):
    x = np.zeros(32, dtype)
    x[:len(head)] = head
    return x.reshape(1, 32)


def _q(x, backend, **kw):
    return mx.quantize(x, scale_rule="mse", backend=backend, **kw)


# (name, block head, MSE scale code, element codes of the head), derivations in the comments
PINNED = [
    # 32 x 7.5: amax 7.5 = 1.875 * 2^2, FLOOR s = 127 + 2 - 2 = 127 (scale 1). Under s every 7.5
    # saturates to 6: e_s = 32 * 1.5^2 = 72. Under s + 1 (scale 2) 7.5 / 2 = 3.75 -> 4 (value 8):
    # e_{s+1} = 32 * 0.5^2 = 8 < 72, so s + 1 = 128 wins; codes 0x6 (value 4).
    ("floor+1 wins", [7.5] * 32, 128, [0x6] * 32),
    # [4, 0.5, 0 ...]: FLOOR s = 127 (4 = 1 * 2^2). Under s both are exact: e_s = 0. Under s + 1,
    # 4 / 2 = 2 exact, 0.5 / 2 = 0.25 ties between 0 and 0.5 -> 0 (even): e_{s+1} = 0.5^2 = 0.25.
    ("floor wins", [4.0, 0.5], 127, [0x6, 0x1]),
    # 32 x 7.0: FLOOR s = 127. Under s, 7 saturates to 6: e_s = 32 * 1 = 32. Under s + 1, 7 / 2 = 3.5
    # ties between 3 and 4 -> 4 (even code 6), value 8: e_{s+1} = 32 * 1 = 32. A tie keeps s = 127.
    ("tie keeps floor", [7.0] * 32, 127, [0x7] * 32),
    # [7.5, 0.5, 0.5, 0.5, 0 ...]: s = 127. e_s = 1.5^2 + 0 = 2.25. Under s + 1, 7.5 -> 8 (d 0.5) and
    # each 0.5 -> 0.25 -> 0 (d 0.5): e_{s+1} = 4 * 0.25 = 1.0 < 2.25 -> 128. The absolute errors
    # (1.5 against 2.0) would pick s: this case tells squared from absolute error.
    ("squared, not absolute", [7.5, 0.5, 0.5, 0.5], 128, [0x6, 0x0, 0x0, 0x0]),
    # all zero: FLOOR gives 0 (MX-4.6); not a candidate block, the code stays 0.
    ("zero block", [], 0, [0x0] * 32),
    # all -0.0: as zero, codes keep the sign (MX-3.3).
    ("negative zero block", [-0.0] * 32, 0, [0x8] * 32),
]


@pytest.mark.clause("MX-4.8")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, head, scale, codes", PINNED, ids=[p[0] for p in PINNED])
def test_pinned_blocks(name, head, scale, codes, backend):
    for dtype in (np.float32, np.float64):
        t = _q(_block(*head, dtype=dtype), backend)
        assert int(t.scales[0, 0]) == scale, (name, dtype)
        assert t.codes[0, :len(codes)].tolist() == codes, (name, dtype)
        if not head:
            assert np.all(t.codes == 0)
        assert int(mx.block_scale_codes(_block(*head, dtype=dtype).reshape(1, 1, 32), "e2m1", "mse")[0, 0]) == scale


@pytest.mark.clause("MX-4.8", "MX-4.6")
@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_blocks_follow_floor(backend):
    # NaN -> 0xFF; Inf -> 0xFF, or 0xFE under saturate_scale; exactly as FLOOR.
    assert _q(_block(np.nan, 7.5), backend).scales[0, 0] == 0xFF
    assert _q(_block(np.inf, 7.5), backend).scales[0, 0] == 0xFF
    assert _q(_block(np.inf, 7.5), backend, saturate_scale=True).scales[0, 0] == 0xFE
    # 7.5 * 2^127 (float64): FLOOR s = 127 + 129 - 2 = 254, and 255 is NaN, so s stays although
    # s + 1 would have the smaller error (the 7.5 block above); the elements saturate to 6.
    t = _q(_block(*[7.5 * 2.0**127] * 32, dtype=np.float64), backend)
    assert t.scales[0, 0] == 254 and np.all(t.codes == 0x7)
    # one binade lower, s = 253 and s + 1 = 254 wins as in the 7.5 block
    assert _q(_block(*[7.5 * 2.0**126] * 32, dtype=np.float64), backend).scales[0, 0] == 254
    # beyond every scale: FLOOR's 0xFF / 0xFE
    big = _block(*[1e300] * 32, dtype=np.float64)
    assert _q(big, backend).scales[0, 0] == 0xFF
    assert _q(big, backend, saturate_scale=True).scales[0, 0] == 0xFE


@pytest.mark.clause("MX-4.8", "MX-7.1")
def test_scale_codes_from_amax_refuses_mse():
    with pytest.raises(ValueError, match="mse.*block values|block_scale_codes"):
        mx.scale_codes([1.0], "e2m1", "mse")


def _brute_force(x: np.ndarray, fmt: str) -> np.ndarray:
    """MX-4.8 spelled out per block with Python floats (IEEE float64, left to right)."""
    xb = x.astype(np.float64).reshape(-1, 32)
    floor = mx.quantize(x, fmt, scale_rule="floor", backend="numpy").scales.reshape(-1)
    table = mx.VALUE_TABLES[fmt]
    out = []
    for row, s in zip(xb, floor.tolist()):
        if s >= 254 or not np.all(np.isfinite(row)) or not np.any(row != 0):
            out.append(s)
            continue
        errs = []
        for j in (0, 1):
            e = 0.0
            for v in row.tolist():
                y = float(np.ldexp(v, 127 - s))
                q = float(table[mx.encode(np.array([np.ldexp(v, 127 - s - j)]), fmt)[0]]) * 2**j
                e = e + (y - q) * (y - q)
            errs.append(e)
        out.append(s + 1 if errs[1] < errs[0] else s)
    return np.array(out)


@pytest.mark.clause("MX-4.8")
@pytest.mark.parametrize("fmt", ["e2m1", "e4m3", "int8"])
def test_reference_equals_the_clause_written_out(fmt):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((8, 64)) * np.exp(rng.standard_normal((8, 1)) * 4)).astype(np.float32)
    x[0, :32] = 7.0                                   # the tie
    got = mx.quantize(x, fmt, scale_rule="mse", backend="numpy").scales.reshape(-1)
    assert np.array_equal(got, _brute_force(x, fmt))
    if fmt != "int8":         # INT8's top value 127/64 leaves FLOOR little to lose to saturation
        assert np.any(got != mx.quantize(x, fmt, scale_rule="floor", backend="numpy").scales.reshape(-1))


@pytest.mark.clause("MX-4.8")
@pytest.mark.parametrize("fmt", ["e2m1", "e4m3"])
def test_float32_squared_errors_are_exact(fmt):
    """MX-4.8: for float32 input each difference and square is exact in float64 (checked in
    rational arithmetic); only the sum rounds."""
    rng = np.random.default_rng(9)
    x = (rng.standard_t(3, (16, 32)) * np.exp(rng.standard_normal((16, 1)) * 20)).astype(np.float32)
    s = mx.quantize(x, fmt, scale_rule="floor", backend="numpy").scales[:, 0].astype(int)
    table = mx.VALUE_TABLES[fmt]
    for row, sc in zip(x.astype(np.float64), s):
        for j in (0, 1):
            y = np.ldexp(row, 127 - sc)
            q = table[mx.encode(np.ldexp(row, 127 - sc - j), fmt)] * 2.0**j
            for yi, qi in zip(y.tolist(), q.tolist()):
                d = yi - qi
                assert Fraction(d) == Fraction(yi) - Fraction(qi)
                assert Fraction(d * d) == Fraction(d) ** 2


@pytest.mark.clause("MX-4.8", "MX-6.1")
def test_mse_never_has_more_error_than_floor_and_is_a_valid_tensor():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((64, 256)) * np.exp(rng.standard_normal((64, 1)) * 3)).astype(np.float32)
    tm = mx.quantize(x, scale_rule="mse")
    tf = mx.quantize(x, scale_rule="floor")
    d = tm.scales.astype(int) - tf.scales.astype(int)
    assert set(np.unique(d)) <= {0, 1} and d.any()
    em = ((mx.dequantize(tm) - x) ** 2).reshape(64, 8, 32).sum(-1)
    ef = ((mx.dequantize(tf) - x) ** 2).reshape(64, 8, 32).sum(-1)
    assert np.all(em <= ef) and np.any(em < ef)
    assert np.all(tm.scales <= 254) and tm.codes.max() <= 15
