"""Adaptors that wrap real implementations in the harness calling conventions (spec/CF.md CF-1.2).

Each adaptor is named ``<impl>_<kind>[_<variant>]`` and imports its library lazily. Used by
benchmarks/conformance/run_table.py (CPU) and gpu_run.py (CUDA).
"""
from __future__ import annotations

import os

import numpy as np


# ------------------------------------------------------------------------- ml_dtypes
def ml_dtypes_encode(x):
    import ml_dtypes
    return x.astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF


# ------------------------------------------------------------------------- torchao 0.18
def _torchao_quantize(x, mode, elem="fp4"):
    import torch
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_mx
    dtype = torch.float4_e2m1fn_x2 if elem == "fp4" else torch.float8_e4m3fn
    scale, data = to_mx(torch.from_numpy(x.copy()), dtype, 32, getattr(ScaleCalculationMode, mode))
    s = scale.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    if elem == "fp4":
        packed = data.view(torch.uint8).numpy().reshape(x.shape[0], -1)
        c = np.empty(x.shape, np.uint8)
        c[:, 0::2] = packed & 0xF
        c[:, 1::2] = packed >> 4
    else:
        c = data.view(torch.uint8).numpy().reshape(x.shape)
    return s, c


def torchao_quantize_floor(x):
    return _torchao_quantize(x, "FLOOR")


def torchao_quantize_rceil(x):
    return _torchao_quantize(x, "RCEIL")


def torchao_quantize_mxfp8_floor(x):
    return _torchao_quantize(x, "FLOOR", "fp8")


def torchao_pack(c):
    import torch
    from torchao.prototype.mx_formats.kernels import pack_uint4
    return pack_uint4(torch.from_numpy(c.copy())).numpy().reshape(c.shape[0], -1)


def torchao_swizzle(s):
    import torch
    from torchao.prototype.mx_formats.utils import to_blocked
    return to_blocked(torch.from_numpy(s.copy())).view(torch.uint8).numpy().reshape(-1)


# ------------------------------------------------------------------------- JAX
def _jax_quantize(x, mode, data_type, global_scale=None):
    import jax.numpy as jnp
    import ml_dtypes
    from jax._src.cudnn.scaled_matmul_stablehlo import BlockScaleConfig, quantize
    bs = 32 if mode == "mxfp8" else 16
    stype = ml_dtypes.float8_e8m0fnu if mode == "mxfp8" else ml_dtypes.float8_e4m3fn
    g = None if global_scale is None else jnp.asarray(global_scale, jnp.float32)
    cfg = BlockScaleConfig(mode=mode, block_size=bs, data_type=data_type, scale_type=stype,
                           global_scale=g, infer_only=True)
    q, s = quantize(jnp.asarray(x), cfg)
    q = np.asarray(q)
    codes = q.view(np.uint8) & (0xF if data_type == ml_dtypes.float4_e2m1fn else 0xFF)
    return np.asarray(s).view(np.uint8).reshape(x.shape[0], -1), codes


def jax_quantize_mxfp8(x):
    import ml_dtypes
    return _jax_quantize(x, "mxfp8", ml_dtypes.float8_e4m3fn)


def jax_quantize_mxfp4(x):
    import ml_dtypes
    return _jax_quantize(x, "mxfp8", ml_dtypes.float4_e2m1fn)


def jax_quantize_nvfp4(x, g):
    import ml_dtypes
    return _jax_quantize(x, "nvfp4", ml_dtypes.float4_e2m1fn, np.float32(g))


# ------------------------------------------------------------------------- Triton tl.dot_scaled
def triton_dot_scaled(a_s, a_c, b_s, b_c):
    """C = A @ B^T through tl.dot_scaled with e2m1 operands (packed along K) and e8m0 scales.

    Runs on CUDA when available, else through the interpreter (TRITON_INTERPRET=1 must be set
    before triton is imported)."""
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, M: tl.constexpr, N: tl.constexpr,
               K: tl.constexpr):
        rm = tl.arange(0, M)
        rn = tl.arange(0, N)
        rk2 = tl.arange(0, K // 2)
        rs = tl.arange(0, K // 32)
        a = tl.load(a_ptr + rm[:, None] * (K // 2) + rk2[None, :])
        b = tl.load(b_ptr + rk2[:, None] + rn[None, :] * (K // 2))        # (K/2, N) view of B^T
        sa = tl.load(as_ptr + rm[:, None] * (K // 32) + rs[None, :])
        sb = tl.load(bs_ptr + rn[:, None] * (K // 32) + rs[None, :])
        c = tl.dot_scaled(a, sa, "e2m1", b, sb, "e2m1")
        tl.store(c_ptr + rm[:, None] * N + rn[None, :], c)

    dev = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
    m, k = a_c.shape
    n = b_c.shape[0]
    pm, pn = (max(16, 1 << (v - 1).bit_length()) for v in (m, n))   # tl.dot: powers of 2, >= 16

    def pad(c, s, rows):
        cc = np.zeros((rows, k), np.uint8); cc[: c.shape[0]] = c
        ss = np.full((rows, k // 32), 127, np.uint8); ss[: s.shape[0]] = s
        packed = cc[:, 0::2] | (cc[:, 1::2] << 4)
        return (torch.from_numpy(packed).to(dev), torch.from_numpy(ss).to(dev))

    a, sa = pad(a_c, a_s, pm)
    b, sb = pad(b_c, b_s, pn)
    out = torch.zeros((pm, pn), dtype=torch.float32, device=dev)
    kernel[(1,)](a, sa, b, sb, out, pm, pn, k)
    return out.cpu().numpy()[:m, :n]


# ------------------------------------------------------------------------- gguf-py (llama.cpp)
def gguf_block(x):
    """gguf.quants.quantize(x, MXFP4): ggml block_mxfp4 bytes (rows, K/32 * 17)."""
    from gguf.quants import GGMLQuantizationType, quantize
    return quantize(np.ascontiguousarray(x), GGMLQuantizationType.MXFP4)


def gguf_dequantize(s, c):
    """gguf.quants.dequantize of the ggml blocks that hold (scales, codes) (layout MX-8.3)."""
    from gguf.quants import GGMLQuantizationType, dequantize

    from torq_ref.mx.layout import pack_gguf_mxfp4
    blocks = pack_gguf_mxfp4(s, c).reshape(s.shape[0], -1)
    return dequantize(blocks, GGMLQuantizationType.MXFP4)


# ------------------------------------------------------------------------- PyTorch core casts
def _torch_cast(x, dtype_name):
    import torch
    return torch.from_numpy(x.copy()).to(getattr(torch, dtype_name)).view(torch.uint8).numpy()


def torch_encode_e4m3(x):
    return _torch_cast(x, "float8_e4m3fn")


def torch_encode_e5m2(x):
    return _torch_cast(x, "float8_e5m2")


# ------------------------------------------------------------------------- transformers (gpt-oss)
def transformers_dequantize(s, c):
    """transformers.integrations.mxfp4.convert_moe_packed_tensors, float32 output: the gpt-oss
    MXFP4 checkpoint loader (blocks of 16 bytes, pair-packed low nibble first; uint8 scales)."""
    import torch
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    rows, nb = s.shape
    blocks = (c[:, 0::2] | (c[:, 1::2] << 4)).reshape(1, rows, nb, 16)
    out = convert_moe_packed_tensors(torch.from_numpy(blocks), torch.from_numpy(s.reshape(1, rows, nb)),
                                     dtype=torch.float32)                    # (1, K, rows)
    return out[0].T.contiguous().numpy()


# ------------------------------------------------------------------------- NVIDIA ModelOpt
def modelopt_quantize_mxfp4(x):
    """modelopt MXFP4QTensor.quantize(x, 32): E8M0 scales and packed E2M1 codes."""
    import torch
    from modelopt.torch.quantization.qtensor.mxfp4_tensor import MXFP4QTensor
    with np.errstate(all="ignore"):
        q, s = MXFP4QTensor.quantize(torch.from_numpy(x.copy()), 32)
    packed = q._quantized_data.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    c = np.empty(x.shape, np.uint8)
    c[:, 0::2] = packed & 0xF
    c[:, 1::2] = packed >> 4
    return s.view(torch.uint8).numpy().reshape(x.shape[0], -1), c


def modelopt_quantize_nvfp4(x, g):
    """modelopt NVFP4QTensor.quantize(x, 16, weights_scaling_factor_2=g) (decode-side g)."""
    import torch
    from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
    q, s, _ = NVFP4QTensor.quantize(torch.from_numpy(x.copy()), 16,
                                    weights_scaling_factor_2=torch.tensor(np.float32(g)))
    packed = q._quantized_data.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    c = np.empty(x.shape, np.uint8)
    c[:, 0::2] = packed & 0xF
    c[:, 1::2] = packed >> 4
    return s.view(torch.uint8).numpy().reshape(x.shape[0], -1), c


# ------------------------------------------------------------------------- compressed-tensors
def _ct_args(group, mx_scale):
    import torch
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.quant_args import FP8_E4M3_DATA
    return QuantizationArgs(num_bits=4, type="float", strategy="group" if mx_scale else "tensor_group",
                            symmetric=True, group_size=group,
                            scale_dtype=torch.uint8 if mx_scale else FP8_E4M3_DATA.dtype,
                            zp_dtype=torch.uint8 if mx_scale else FP8_E4M3_DATA.dtype)


def compressed_tensors_fake_quant_mxfp4(x):
    """compressed-tensors MXFP4 (preset scheme MXFP4): calculate_qparams then fake_quantize."""
    import torch
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import calculate_qparams
    args = _ct_args(32, True)
    t = torch.from_numpy(x.copy())
    b = t.reshape(x.shape[0], -1, 32)
    with np.errstate(all="ignore"):
        scale, zp = calculate_qparams(b.amin(-1), b.amax(-1), args)
        y = fake_quantize(t, scale, zp, args)
    return y.numpy()


def compressed_tensors_quantize_nvfp4(x, g_enc):
    """compressed-tensors NVFP4: its global_scale is the reciprocal g_enc = 448 * 6 / amax
    (profile nvfp4-reciprocal); E4M3 scales from calculate_qparams, codes from _quantize."""
    import ml_dtypes
    import torch
    from compressed_tensors.quantization.lifecycle.forward_helpers import _quantize
    from compressed_tensors.quantization.utils import calculate_qparams
    args = _ct_args(16, False)
    t = torch.from_numpy(x.copy())
    b = t.reshape(x.shape[0], -1, 16)
    gs = torch.tensor([np.float32(g_enc)])
    scale, zp = calculate_qparams(b.amin(-1), b.amax(-1), args, global_scale=gs)
    q = _quantize(t.reshape(x.shape[0], -1, 16), scale.unsqueeze(-1),
                  None, torch.tensor(-6.0), torch.tensor(6.0), args, global_scale=gs)
    vals = q.reshape(x.shape).float().numpy()
    codes = vals.astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF
    # scales come back as float32 already rounded to E4M3: the cast is exact
    return scale.to(torch.float8_e4m3fn).view(torch.uint8).numpy().reshape(x.shape[0], -1), codes


# ------------------------------------------------------------------------- microxcaling (Microsoft)
def _microxcaling(x, rnd):
    """mx.mx_ops._quantize_mx from microsoft/microxcaling (not on PyPI: set MICROXCALING_PATH to a
    checkout; its code is not part of this repository)."""
    import sys
    path = os.environ.get("MICROXCALING_PATH")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    import torch
    from mx.mx_ops import _quantize_mx
    return _quantize_mx(torch.from_numpy(x.copy()), 8, "fp4_e2m1", shared_exp_method="max", axes=[-1],
                        block_size=32, round=rnd).numpy()


def microxcaling_fake_quant_nearest(x):
    return _microxcaling(x, "nearest")


def microxcaling_fake_quant_even(x):
    return _microxcaling(x, "even")


# ------------------------------------------------------------------------- brevitas (AMD)
_BREVITAS = {}


def brevitas_fake_quant_mxfp4(x):
    """brevitas QuantIdentity with its OCP MX act quantizer (MXFloat8e4m3Act) at 4 bits, E2M1,
    groups of 32 along the last axis, eval mode: the dequantized values. Blocks with amax in the
    top 44 float32 values come back all NaN (scale 2.0**128 = Inf, then 0 * Inf); see
    trace_brevitas_nan.py."""
    import torch
    if "m" not in _BREVITAS:
        import brevitas.nn as qnn
        from brevitas.quant.experimental.mx_quant_ocp import MXFloat8e4m3Act

        class MXFP4Act(MXFloat8e4m3Act):
            bit_width = 4
            exponent_bit_width = 2
            mantissa_bit_width = 1
            group_dim = -1
            group_size = 32
        _BREVITAS["m"] = qnn.QuantIdentity(act_quant=MXFP4Act, return_quant_tensor=False).eval()
    with torch.no_grad(), np.errstate(all="ignore"):
        return _BREVITAS["m"](torch.from_numpy(x.copy())).numpy()
