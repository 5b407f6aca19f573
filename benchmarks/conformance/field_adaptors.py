"""Adaptors for the implementations added beside the first eleven (spec/CF.md CF-1.2): MLX, the
ONNX reference evaluator, onnxruntime, AMD Quark, and the scalar float32 -> E8M0 casts of torch,
ml_dtypes and onnxruntime.

Each adaptor is named ``<impl>_<kind>[_<variant>]`` and imports its library lazily, so a missing
library is a "could not run" row (run_table.py) or a skipped test, never an import error here.
"""
from __future__ import annotations

import numpy as np


def _unpack_nibbles(packed_u8: np.ndarray, shape) -> np.ndarray:
    """Bytes holding element 2i in the low nibble and 2i + 1 in the high nibble -> codes."""
    p = packed_u8.reshape(shape[0], -1)
    c = np.empty(shape, np.uint8)
    c[:, 0::2] = p & 0xF
    c[:, 1::2] = p >> 4
    return c


# ------------------------------------------------------------------------- MLX (CPU)
def _mlx_quantize(x, mode, global_scale=None):
    """mx.quantize(w, group_size, bits, mode): w_q uint32 with element j of a word in bits
    4j .. 4j+3 (8j .. for mxfp8), scales uint8 (E8M0 or E4M3 bytes)."""
    import mlx.core as mx
    gs, bits = {"mxfp4": (32, 4), "mxfp8": (32, 8), "nvfp4": (16, 4)}[mode]
    kw = {} if global_scale is None else {"global_scale": mx.array(np.float32(global_scale))}
    wq, s = mx.quantize(mx.array(x), group_size=gs, bits=bits, mode=mode, **kw)[:2]
    words = np.array(wq).astype("<u4").view(np.uint8)        # little endian: low element first
    codes = _unpack_nibbles(words, x.shape) if bits == 4 else words.reshape(x.shape)
    return np.array(s).astype(np.uint8).reshape(x.shape[0], -1), codes


def mlx_quantize_mxfp4(x):
    return _mlx_quantize(x, "mxfp4")


def mlx_quantize_mxfp8(x):
    return _mlx_quantize(x, "mxfp8")


def mlx_quantize_nvfp4_reciprocal(x, g_enc):
    """MLX's nvfp4 ``global_scale`` is the tensor amax: it encodes with 448 * 6 / global_scale
    (mlx/ops.cpp fp_quantize). Given the harness' g_enc (profile nvfp4-reciprocal) it gets
    global_scale = fp32(2688 / g_enc)."""
    return _mlx_quantize(x, "nvfp4", np.float32(np.float32(2688.0) / np.float32(g_enc)))


def mlx_dequantize_mxfp4(s, c):
    """mx.dequantize(w_q, scales, mode="mxfp4", dtype=float32) of the packed codes."""
    import mlx.core as mx
    packed = (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)
    wq = mx.array(np.ascontiguousarray(packed).view("<u4"))
    y = mx.dequantize(wq, mx.array(s), group_size=32, bits=4, mode="mxfp4", dtype=mx.float32)
    return np.array(y)


# ------------------------------------------------------------------------- ONNX
def _onnx_model(nodes, inputs, outputs, opset, initializers=()):
    from onnx import helper
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                          initializer=list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=11)


def _onnx_ref(model, feeds):
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, feeds)[0]


def onnx_ref_encode_e2m1(x):
    """onnx.reference QuantizeLinear(x, y_scale=1.0, output_dtype=FLOAT4E2M1), opset 23."""
    from onnx import TensorProto as T, helper
    n = x.shape[0]
    m = _onnx_model([helper.make_node("QuantizeLinear", ["x", "s"], ["y"], output_dtype=T.FLOAT4E2M1)],
                    [("x", T.FLOAT, [n]), ("s", T.FLOAT, [])], [("y", T.FLOAT4E2M1, [n])], 23)
    return _onnx_ref(m, {"x": x, "s": np.array(1, np.float32)}).view(np.uint8) & 0xF


def onnx_ref_dequantize_e8m0(s, c):
    """onnx.reference DequantizeLinear(x FLOAT4E2M1, x_scale FLOAT8E8M0, axis=1, block_size=32,
    output_dtype=FLOAT), opset 25: the OCP MXFP4 decode in ONNX."""
    import ml_dtypes
    from onnx import TensorProto as T, helper
    rows, k = c.shape
    m = _onnx_model([helper.make_node("DequantizeLinear", ["x", "s"], ["y"], axis=1, block_size=32,
                                      output_dtype=T.FLOAT)],
                    [("x", T.FLOAT4E2M1, [rows, k]), ("s", T.FLOAT8E8M0, [rows, k // 32])],
                    [("y", T.FLOAT, [rows, k])], 25)
    return _onnx_ref(m, {"x": c.astype(np.uint8).view(ml_dtypes.float4_e2m1fn),
                         "s": s.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)})


def onnx_ref_dequantize_e8m0_default_dtype(s, c):
    """The same node without output_dtype: the output takes the scale's type (FLOAT8E8M0)."""
    import ml_dtypes
    from onnx import TensorProto as T, helper
    rows, k = c.shape
    m = _onnx_model([helper.make_node("DequantizeLinear", ["x", "s"], ["y"], axis=1, block_size=32)],
                    [("x", T.FLOAT4E2M1, [rows, k]), ("s", T.FLOAT8E8M0, [rows, k // 32])],
                    [("y", T.FLOAT8E8M0, [rows, k])], 25)
    y = _onnx_ref(m, {"x": c.astype(np.uint8).view(ml_dtypes.float4_e2m1fn),
                      "s": s.astype(np.uint8).view(ml_dtypes.float8_e8m0fnu)})
    return y.astype(np.float32)


def _ort_run(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _ort_encode_fp8(x, t):
    from onnx import TensorProto as T, helper
    n = x.shape[0]
    zp = helper.make_tensor("zp", t, [], [0.0])
    m = _onnx_model([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])],
                    [("x", T.FLOAT, [n]), ("s", T.FLOAT, [])], [("y", t, [n])], 21, [zp])
    return np.asarray(_ort_run(m, {"x": x, "s": np.array(1, np.float32)})).view(np.uint8)


def ort_encode_e4m3(x):
    """onnxruntime QuantizeLinear(x, 1.0, zero_point FLOAT8E4M3FN), opset 21, saturate=1."""
    from onnx import TensorProto as T
    return _ort_encode_fp8(x, T.FLOAT8E4M3FN)


def ort_encode_e5m2(x):
    """onnxruntime QuantizeLinear to FLOAT8E5M2, opset 21, saturate=1. The runtime hands no
    FLOAT8E5M2 tensor to NumPy, so the graph casts the result back to FLOAT and the byte is
    read from that value (exact: every E5M2 value, -0 and +-Inf are float32 values; a NaN gets
    ml_dtypes' NaN code)."""
    import ml_dtypes
    from onnx import TensorProto as T, helper
    n = x.shape[0]
    zp = helper.make_tensor("zp", T.FLOAT8E5M2, [], [0.0])
    m = _onnx_model([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"]),
                     helper.make_node("Cast", ["y"], ["z"], to=T.FLOAT)],
                    [("x", T.FLOAT, [n]), ("s", T.FLOAT, [])], [("z", T.FLOAT, [n])], 21, [zp])
    v = np.asarray(_ort_run(m, {"x": x, "s": np.array(1, np.float32)}))
    return v.astype(ml_dtypes.float8_e5m2).view(np.uint8)


def onnx_ref_encode_e4m3(x):
    """onnx.reference QuantizeLinear(x, 1.0, zero_point FLOAT8E4M3FN), opset 21, saturate=1."""
    from onnx import TensorProto as T, helper
    n = x.shape[0]
    zp = helper.make_tensor("zp", T.FLOAT8E4M3FN, [], [0.0])
    m = _onnx_model([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"])],
                    [("x", T.FLOAT, [n]), ("s", T.FLOAT, [])], [("y", T.FLOAT8E4M3FN, [n])], 21, [zp])
    return np.asarray(_onnx_ref(m, {"x": x, "s": np.array(1, np.float32)})).view(np.uint8)


# ------------------------------------------------------------------------- scalar E8M0 casts
def e8m0_code_of_value(v: np.ndarray) -> np.ndarray:
    """The E8M0 code of a decoded value: NaN -> 0xFF, 2^e -> e + 127 (read by frexp, exact)."""
    v = np.asarray(v, np.float64)
    out = np.full(v.shape, 0xFF, np.uint8)
    fin = np.isfinite(v) & (v > 0)
    m, e = np.frexp(v[fin])
    if np.any(m != 0.5):
        raise ValueError("a decoded E8M0 value is not a power of two")
    out[fin] = (e - 1 + 127).astype(np.uint8)
    return out


def torch_e8m0_cast(x):
    """torch: float32 tensor .to(torch.float8_e8m0fnu), the byte."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.float8_e8m0fnu) \
        .view(torch.uint8).numpy()


def ml_dtypes_e8m0_cast(x):
    """ml_dtypes: float32 array .astype(float8_e8m0fnu), the byte."""
    import ml_dtypes
    return np.ascontiguousarray(x, np.float32).astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)


def ort_e8m0_cast(x):
    """onnxruntime Cast(to=FLOAT8E8M0) then Cast(to=FLOAT), opset 25 (the runtime hands no
    FLOAT8E8M0 tensor to NumPy): the code is read back from the power of two."""
    from onnx import TensorProto as T, helper
    n = np.asarray(x).size
    m = _onnx_model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E8M0),
                     helper.make_node("Cast", ["y"], ["z"], to=T.FLOAT)],
                    [("x", T.FLOAT, [n])], [("z", T.FLOAT, [n])], 25)
    return e8m0_code_of_value(_ort_run(m, {"x": np.ascontiguousarray(x, np.float32).reshape(-1)}))


def onnx_ref_e8m0_cast(x):
    """onnx.reference Cast(to=FLOAT8E8M0), opset 25, the byte."""
    from onnx import TensorProto as T, helper
    n = np.asarray(x).size
    m = _onnx_model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E8M0)],
                    [("x", T.FLOAT, [n])], [("y", T.FLOAT8E8M0, [n])], 25)
    return np.asarray(_onnx_ref(m, {"x": np.ascontiguousarray(x, np.float32).reshape(-1)})).view(np.uint8)


# ------------------------------------------------------------------------- AMD Quark
def _quark_fake_quant(x, mode):
    """quark hw_emulation fake_quantize_mx(x, axis=-1, block_size=32, mode, mx_element_dtype="fp4")
    (builds its C++ extension on first use)."""
    import torch
    from quark.torch.kernel.hw_emulation.hw_emulation_interface import fake_quantize_mx
    with torch.no_grad(), np.errstate(all="ignore"):
        return fake_quantize_mx(torch.from_numpy(x.copy()), -1, 32, mode,
                                mx_element_dtype="fp4").numpy()


def quark_fake_quant_floor(x):
    return _quark_fake_quant(x, "floor")


def quark_fake_quant_even(x):
    return _quark_fake_quant(x, "even")
