"""The implementations added beside the first eleven, through the harness where they are
installed (CONFORMANCE.md "More implementations"; spec/CF.md CF-3.2, CF-3.7, CF-3.8): the causes
the table documents stay the causes found. Each test skips when its library is missing (the
`field` extra installs MLX, onnx and onnxruntime; AMD Quark is the `quark` extra)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from torq_ref.conformance import check

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "conformance"))
F = pytest.importorskip("field_adaptors")


def _parts(rep):
    return {p for c in rep.failing_causes() for p in c.split("+")}


@pytest.mark.clause("CF-3.7", "MX-3.3")
def test_mlx_mxfp4_causes():
    pytest.importorskip("mlx.core")
    with np.errstate(all="ignore"):
        rep = check("quantize", F.mlx_quantize_mxfp4, profile="nvidia+unsigned-zero", level="quick")
    # argmin over the E2M1 table: ties to the lower index (smaller magnitude), +0 before -0;
    # the scale is RCEIL, not clamped below code 0
    assert "TieDirection" in rep.failing_causes()
    assert "SignedZero" in rep.per_cause and rep.per_cause["SignedZero"]["fail"] == 0
    assert {"TieDirection", "ScaleNotClamped", "InfHandling"} <= _parts(rep)


@pytest.mark.clause("MX-4.3")
def test_mlx_scale_rounds_up():
    """The 0.32.4 CPU path rounds amax / 6 up to a power of two (RCEIL), 0x7F for a zero block."""
    pytest.importorskip("mlx.core")
    q = np.array([1.0, 1.01, 1.5, 2.0, 0.5, 0.75], np.float32)
    x = np.zeros((q.size + 1, 32), np.float32)
    x[:-1, 0] = q * 6
    s, _ = F.mlx_quantize_mxfp4(x)
    assert (s.ravel().astype(int) - 127).tolist() == [0, 1, 1, 1, -1, 0, 0]


@pytest.mark.clause("CF-3.2")
def test_mlx_dequantize_scale_ff_is_inf():
    pytest.importorskip("mlx.core")
    rep = check("dequantize", F.mlx_dequantize_mxfp4)
    assert rep.failing_causes() == {"NaNHandling"}        # 2^(255 - 127) = Inf, not NaN


@pytest.mark.clause("CF-1.2")
def test_mlx_nvfp4_needs_rows_of_32():
    pytest.importorskip("mlx.core")
    x = np.ones((1, 16), np.float32)
    with pytest.raises(ValueError, match="reshape"):          # reshape(wq, {-1, 4, 8})
        F.mlx_quantize_nvfp4_reciprocal(x, np.float32(1.0))
    s, c = F.mlx_quantize_nvfp4_reciprocal(np.ones((1, 32), np.float32), np.float32(1.0))
    assert s.shape == (1, 2) and c.shape == (1, 32)


@pytest.mark.clause("CF-3.1", "CF-3.2")
def test_onnx_reference_mx_ops():
    pytest.importorskip("onnx.reference")
    assert check("encode", F.onnx_ref_encode_e4m3, fmt="e4m3", level="quick").passed
    assert check("dequantize", F.onnx_ref_dequantize_e8m0).passed
    # without output_dtype the output takes the scale's type, E8M0: no sign, no zero
    rep = check("dequantize", F.onnx_ref_dequantize_e8m0_default_dtype)
    assert rep.failing_causes() == {"NaNHandling"}


@pytest.mark.clause("CF-3.1")
def test_onnxruntime_fp8_quantize_linear():
    pytest.importorskip("onnxruntime")
    assert check("encode", F.ort_encode_e4m3, fmt="e4m3", level="quick").passed
    assert check("encode", F.ort_encode_e5m2, fmt="e5m2", level="quick").passed


@pytest.mark.clause("CF-1.2")
def test_onnxruntime_has_no_fp4_kernels():
    """onnxruntime 1.31's CPU provider has no FLOAT4E2M1 QuantizeLinear / DequantizeLinear."""
    pytest.importorskip("onnxruntime")
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        from onnx import TensorProto as T, helper
        m = F._onnx_model([helper.make_node("QuantizeLinear", ["x", "s"], ["y"],
                                            output_dtype=T.FLOAT4E2M1)],
                          [("x", T.FLOAT, [2]), ("s", T.FLOAT, [])], [("y", T.FLOAT4E2M1, [2])], 23)
        F._ort_run(m, {"x": np.ones(2, np.float32), "s": np.array(1, np.float32)})


#: float32 inputs and the E8M0 byte each cast gives (probed on the versions in CONFORMANCE.md)
_CAST_X = np.array([0.0, -0.0, 1.0, 1.5, np.nextafter(np.float32(1.5), np.float32(0)), 1.25, 0.75,
                    2.0 ** -127, 2.0 ** -149, 2.0 ** 127, 1.5 * 2.0 ** 127, np.inf, -np.inf,
                    np.nan, -1.0, -2.0], np.float32)
_CAST_BYTES = {
    "torch_e8m0_cast": [0, 0, 127, 128, 127, 127, 127, 0, 0, 254, 255, 255, 255, 255, 127, 128],
    "ml_dtypes_e8m0_cast": [255, 255, 127, 128, 127, 127, 127, 0, 0, 254, 255, 255, 255, 255, 255, 255],
    "ort_e8m0_cast": [0, 0, 127, 128, 128, 128, 127, 0, 0, 254, 254, 254, 0, 255, 0, 0],
    "onnx_ref_e8m0_cast": [0, 0, 127, 128, 128, 128, 127, 1, 1, 254, 254, 255, 255, 255, 127, 128],
}
_CAST_LIB = {"torch_e8m0_cast": "torch", "ml_dtypes_e8m0_cast": "ml_dtypes",
             "ort_e8m0_cast": "onnxruntime", "onnx_ref_e8m0_cast": "onnx"}


@pytest.mark.clause("CF-1.2")
@pytest.mark.parametrize("name", sorted(_CAST_BYTES))
def test_e8m0_cast_bytes(name):
    """The scalar float32 -> E8M0 casts disagree (nearest vs up, the sign, zero, overflow):
    the bytes each gives on the boundary inputs, as CONFORMANCE.md lists them."""
    pytest.importorskip(_CAST_LIB[name])
    got = getattr(F, name)(_CAST_X)
    assert got.tolist() == _CAST_BYTES[name]


@pytest.mark.clause("CF-1.1")
@pytest.mark.parametrize("name", sorted(_CAST_BYTES))
def test_e8m0_cast_through_harness(name):
    pytest.importorskip(_CAST_LIB[name])
    rep = check("e8m0-cast", getattr(F, name))
    assert rep.counts["pass"] > 0


@pytest.mark.clause("CF-3.12")
def test_run_table_e8m0_cast_row_reaches_the_harness():
    """run_table.py's e8m0-cast rows: the kind takes no element format, so the row runs (it once
    passed fmt e8m0, which ``check`` refuses, and every row read "could not run")."""
    pytest.importorskip("ml_dtypes")
    R = pytest.importorskip("run_table")
    line, rep = R.row("ml_dtypes astype(float8_e8m0fnu)", "e8m0-cast", F.ml_dtypes_e8m0_cast,
                      "ocp", "e8m0", "CPU")
    assert rep is not None, line
    assert "could not run" not in line and rep.counts["pass"] > 0
    assert "| e8m0-cast e8m0 |" in line                     # the row still names the E8M0 output


@pytest.mark.slow
@pytest.mark.clause("CF-3.8")
def test_quark_fake_quant_causes():
    """AMD Quark builds a C++ extension on first use (tens of seconds): slow."""
    pytest.importorskip("quark.torch.kernel.hw_emulation.hw_emulation_interface")
    with np.errstate(all="ignore"):
        rep = check("fake-quant", F.quark_fake_quant_floor)
    # +0 for -0 (funcs.cuh returns 0.0 before the sign), float log2, scale not clamped at 2^-127
    assert {"SignedZero", "FloatLog2", "ValueMismatch"} <= _parts(rep)
    assert _parts(rep) <= {"SignedZero", "FloatLog2", "ValueMismatch", "ElementRounding"}
