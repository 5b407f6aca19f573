"""numba path == NumPy reference, bit for bit (spec/MX.md MX-6.1); bad input (MX-7.1)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.mx import _numba_kernels

RULES = list(mx.SCALE_RULES)   # every rule, MSE (MX-4.8) included


def _nasty(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(3, size=(256, 256)) * np.exp(rng.normal(size=(256, 256)) * 8)).astype(np.float32)
    x[0, :3] = [np.nan, 1, 2]
    x[1, :3] = [np.inf, 1, -2]
    x[2, :32] = -0.0
    x[3, :32] = 1e-44
    x[4, :32] = np.float32(2.0**-127)
    x[5, 0] = np.finfo(np.float32).max
    x[6, :8] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0]
    x[7] = rng.integers(-12, 13, 256).astype(np.float32) / 2     # many exact ties
    return x


def _assert_backends_agree(x: np.ndarray, rule: str, saturate_scale: bool):
    """numba == NumPy for quantize (codes, scales) and quantize_dequantize (bits, in x's dtype);
    returns the numba MXTensor."""
    a = mx.quantize(x, scale_rule=rule, saturate_scale=saturate_scale, backend="numpy")
    b = mx.quantize(x, scale_rule=rule, saturate_scale=saturate_scale, backend="numba")
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.scales, b.scales)
    fq = mx.quantize_dequantize(x, scale_rule=rule, saturate_scale=saturate_scale, backend="numba")
    assert fq.dtype == x.dtype
    with np.errstate(over="ignore"):
        ref = mx.dequantize(a).astype(x.dtype)
    _assert_same_bits(fq, ref)
    return b


def _assert_same_bits(got: np.ndarray, want: np.ndarray):
    """Bit-identical (MX-6.1): +0 and -0 differ; only NaN payloads are not compared."""
    assert got.dtype == want.dtype and got.shape == want.shape
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), "NaN positions differ"
    g, w = got.view(bits)[~nan], want.view(bits)[~nan]
    assert np.array_equal(g, w), f"{int(np.sum(g != w))} values differ in their bits"


@pytest.mark.clause("MX-6.1")
def test_bit_check_sees_signed_zero():
    """The agreement check itself: -0.0 vs +0.0 is a difference (equal values, different bits)."""
    a = np.array([0.0, 1.0, np.nan], np.float32)
    _assert_same_bits(a, a.copy())
    with pytest.raises(AssertionError):
        _assert_same_bits(np.array([-0.0, 1.0, np.nan], np.float32), a)
    with pytest.raises(AssertionError):
        _assert_same_bits(np.array([0.0, 1.0, 2.0], np.float32), a)


@pytest.mark.clause("MX-6.1")
def test_negative_zero_survives_both_backends():
    """-0.0 and negatives that round to zero keep the sign bit on both paths (MX-3.3, MX-6.1)."""
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    x = np.zeros((2, 32), np.float32)
    x[0, :4] = [-0.0, -0.1, 0.1, 4.0]
    x[1, :] = -0.0
    for backend in ("numpy", "numba"):
        fq = mx.quantize_dequantize(x, backend=backend)
        assert np.signbit(fq[0, :2]).all() and not np.signbit(fq[0, 2])
        assert np.signbit(fq[1]).all()


@pytest.mark.clause("MX-6.1", "MX-7.1")
def test_numba_backend_never_falls_back_silently():
    """backend='numba' outside the numba kernels' reach (e4m3, float16, nan_code) is an error."""
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    x = np.ones((2, 32), np.float32)
    with pytest.raises(ValueError, match="backend='numba' covers e2m1"):
        mx.quantize(x, "e4m3", backend="numba")
    with pytest.raises(ValueError, match="backend='numba' covers e2m1"):
        mx.quantize(x.astype(np.float16), backend="numba")
    with pytest.raises(ValueError, match="backend='numba' encodes e2m1"):
        mx.encode(x, "e4m3", backend="numba")
    with pytest.raises(ValueError, match="backend='numba' encodes e2m1"):
        mx.encode(x, "e2m1", nan_code=0, backend="numba")
    assert mx.quantize(x, "e4m3", backend="auto").scales.shape == (2, 1)    # auto: NumPy


@pytest.mark.clause("MX-3.2", "MX-7.1")
@pytest.mark.parametrize("backend", ["auto", "numba", "numpy"])
def test_saturate_false_checked_before_any_backend(backend):
    """encode(e2m1 float32, saturate=False) raises on every backend, the numba one included."""
    if backend == "numba":
        pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    with pytest.raises(ValueError, match="saturate=False has no defined result"):
        mx.encode(np.ones(4, np.float32), "e2m1", saturate=False, backend=backend)


@pytest.mark.clause("MX-4.6", "MX-7.1")
def test_negative_amax_is_an_error():
    with pytest.raises(ValueError, match="amax must be non-negative"):
        mx.scale_codes([-5.0], "e2m1")
    with pytest.raises(ValueError, match="amax must be non-negative"):
        mx.scale_codes([1.0, -np.inf], "e2m1", "rceil")
    with pytest.raises(TypeError, match="amax"):
        mx.scale_codes(np.array(["1.0"]), "e2m1")


@pytest.mark.clause("MX-5.6", "MX-7.1")
def test_dequantize_rejects_codes_outside_the_format():
    t = mx.quantize(np.ones((1, 32), np.float32))
    for bad in (np.full((1, 32), 16, np.uint8), np.full((1, 32), -1, np.int16),
                np.full((1, 32), 200, np.int64)):
        with pytest.raises(ValueError, match=r"MXTensor codes \(e2m1\).*0\.\.15"):
            mx.dequantize(dataclasses.replace(t, codes=bad))
    with pytest.raises(TypeError, match="unsigned integer"):
        mx.dequantize(dataclasses.replace(t, codes=np.ones((1, 32))))
    with pytest.raises(TypeError, match="scales must be uint8"):
        mx.dequantize(dataclasses.replace(t, scales=t.scales.astype(np.int64)))
    e4 = mx.quantize(np.ones((1, 32), np.float32), "e4m3")
    assert mx.dequantize(dataclasses.replace(e4, codes=np.full((1, 32), 0x7E, np.int64)))[0, 0] == 448.0 * 2.0**-8


@pytest.mark.clause("MX-6.1")
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("saturate_scale", [False, True])
def test_numba_equals_numpy(rule, saturate_scale):
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    x = _nasty(7)
    _assert_backends_agree(x, rule, saturate_scale)
    enc_a = mx.encode(x, "e2m1", backend="numpy")
    enc_b = mx.encode(x, "e2m1", backend="numba")
    assert np.array_equal(enc_a, enc_b)


def _nasty64(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(128, 256)) * np.exp(rng.normal(size=(128, 256)) * 30)
    x[0, :32] = 1e300                                   # beyond float32: scale saturates / 0xFF
    x[1, :32] = 1e-300                                  # below every E8M0 scale
    x[2, :32] = 0.0
    x[2, 0] = 6.0 * (1 + 2.0**-52)                      # RCEIL: float64 quotient > 1, float32 == 1
    x[3, :3] = [np.nan, 1, 2]
    x[4, :8] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0]
    x[5, :32] = np.nextafter(1.25, 2.0)                 # one ulp above a tie
    x[6] = _nasty(seed)[7]
    return x


@pytest.mark.clause("MX-6.1")
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("saturate_scale", [False, True])
def test_numba_equals_numpy_float64(rule, saturate_scale):
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    x = _nasty64(11)
    b = _assert_backends_agree(x, rule, saturate_scale)
    if rule == "rceil":                                 # the float64 quotient decides (MX-4.3)
        assert b.scales[2, 0] == 128
        assert mx.quantize(x[2:3, :32].astype(np.float32), scale_rule=rule, backend="numba").scales[0, 0] == 127


@pytest.mark.clause("MX-6.1")
def test_thread_count_does_not_change_bits():
    numba = pytest.importorskip("numba", reason="numba not installed")
    x = _nasty(11)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = mx.quantize(x, backend="numba")
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS))
        many = mx.quantize(x, backend="numba")
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one.codes, many.codes) and np.array_equal(one.scales, many.scales)


@pytest.mark.clause("MX-7.1")
@pytest.mark.parametrize("bad, kind", [
    (np.arange(32), "int64"), (np.ones(32, bool), "bool"), (np.ones(32, complex), "complex"),
    (np.array([1.0] * 32, dtype=object), "object")])
def test_bad_dtypes(bad, kind):
    with pytest.raises(TypeError, match=kind):
        mx.quantize(bad)
    with pytest.raises(TypeError, match=kind):
        mx.encode(bad, "e2m1")


@pytest.mark.clause("MX-7.1")
def test_bad_arguments():
    x = np.zeros(32, np.float32)
    with pytest.raises(ValueError, match="unknown format fp4; known: e2m1"):
        mx.quantize(x, "fp4")
    with pytest.raises(ValueError, match="unknown scale rule nearest; known: floor"):
        mx.quantize(x, scale_rule="nearest")
    with pytest.raises(ValueError, match="block_size"):
        mx.quantize(x, block_size=0)
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        mx.quantize(x, axis=3)
    with pytest.raises(ValueError, match="backend"):
        mx.quantize(x, backend="cuda")
    with pytest.raises(ValueError, match="length 33, not a multiple"):
        mx.quantize(np.zeros(33, np.float32))
    with pytest.raises(TypeError, match="MXTensor"):
        mx.dequantize(x)
    with pytest.raises(TypeError, match="unsigned integer"):
        mx.decode(np.array([1.5]), "e2m1")


@pytest.mark.clause("MX-6.1")
def test_stale_compiled_table_is_refused(monkeypatch):
    """The numba kernels bake formats.E2M1_* in when compiled; if the table no longer matches
    (an edit that numba's on-disk cache cannot see), both fast paths refuse to run."""
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    from torq_ref.mx import formats
    from torq_ref.rotations import maxent_eval

    _numba_kernels._check_compiled_table()                    # the real table passes
    maxent_eval.get_kernels("numba")
    monkeypatch.setattr(formats, "E2M1_TIE_UP", ~formats.E2M1_TIE_UP)
    monkeypatch.setattr(_numba_kernels, "_TABLE_CHECKED", False)
    monkeypatch.setattr(maxent_eval, "_NUMBA_CHECKED", False)
    with pytest.raises(RuntimeError, match="another E2M1 decision table"):
        mx.quantize(np.ones((1, 32), np.float32), backend="numba")
    with pytest.raises(RuntimeError, match="another E2M1 decision table"):
        maxent_eval.get_kernels("numba")
