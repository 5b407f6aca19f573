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
