"""GPU rows for the implementations added beside the first eleven (CUDA): torch's casts on the
device, triton_kernels' MXFP4 quantize kernel (downcast_to_mxfp), FlashInfer's mxfp4_quantize,
MLX on CUDA. Run by gpu_run.sh after the JAX / Triton rows; prints markdown table rows. A library
that is missing or whose call fails prints "could not run" and the others go on. Written for a
GPU machine without network: it uses what is installed there.

    PYTHONPATH=.:benchmarks/conformance python benchmarks/conformance/gpu_field.py --device "H200 (CUDA)"
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from run_table import row


def _cuda():
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda is not available")
    return torch


def torch_cuda_encode_e4m3(x):
    torch = _cuda()
    return torch.from_numpy(x.copy()).cuda().to(torch.float8_e4m3fn).view(torch.uint8).cpu().numpy()


def torch_cuda_encode_e5m2(x):
    torch = _cuda()
    return torch.from_numpy(x.copy()).cuda().to(torch.float8_e5m2).view(torch.uint8).cpu().numpy()


def torch_cuda_encode_e2m1(x):
    """torch has no float32 -> float4_e2m1fn_x2 cast on CUDA in every version: could not run then."""
    torch = _cuda()
    t = torch.from_numpy(np.stack([x, np.zeros_like(x)], -1).reshape(-1).copy()).cuda()
    return (t.to(torch.float4_e2m1fn_x2).view(torch.uint8).cpu().numpy() & 0xF)


def torch_cuda_e8m0_cast(x):
    torch = _cuda()
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).cuda().to(torch.float8_e8m0fnu) \
        .view(torch.uint8).cpu().numpy()


def _unpack(packed, shape):
    c = np.empty(shape, np.uint8)
    p = packed.reshape(shape[0], -1)
    c[:, 0::2] = p & 0xF
    c[:, 1::2] = p >> 4
    return c


def triton_kernels_downcast_mxfp4(x):
    """triton_kernels.numerics_details.mxfp.downcast_to_mxfp(x, torch.uint8, axis=-1): packed
    E2M1 pairs (low nibble first) and E8M0 scales (rows, K/32); its default scale rounding."""
    torch = _cuda()
    from triton_kernels.numerics_details.mxfp import downcast_to_mxfp
    q, s = downcast_to_mxfp(torch.from_numpy(x.copy()).cuda(), torch.uint8, axis=-1)
    return s.view(torch.uint8).cpu().numpy().reshape(x.shape[0], -1), _unpack(
        q.view(torch.uint8).cpu().numpy(), x.shape)


def flashinfer_mxfp4_quantize(x):
    """flashinfer.mxfp4_quantize(x) on bf16 input of the float32 values that bf16 holds exactly
    is not the harness' float32 input: rows run on float32 where the API takes it, else could
    not run. Scales come back swizzled (128 x 4) or linear; both are read."""
    torch = _cuda()
    import flashinfer
    from torq_ref.mx.layout import unswizzle_scales
    q, s = flashinfer.mxfp4_quantize(torch.from_numpy(x.copy()).cuda())
    s = s.view(torch.uint8).cpu().numpy().reshape(-1)
    rows, nb = x.shape[0], x.shape[1] // 32
    s = s.reshape(rows, nb) if s.size == rows * nb else unswizzle_scales(s, rows, nb)
    return s, _unpack(q.view(torch.uint8).cpu().numpy(), x.shape)


def mlx_cuda_quantize_mxfp4(x):
    import mlx.core as mx
    import field_adaptors as F
    if not mx.cuda.is_available():
        raise RuntimeError("mlx has no CUDA backend here")
    with mx.stream(mx.gpu):
        return F.mlx_quantize_mxfp4(x)


ROWS = [
    ("PyTorch CUDA .to(float8_e4m3fn)", "encode", torch_cuda_encode_e4m3, "ocp", "e4m3"),
    ("PyTorch CUDA .to(float8_e5m2)", "encode", torch_cuda_encode_e5m2, "ocp", "e5m2"),
    ("PyTorch CUDA .to(float4_e2m1fn_x2)", "encode", torch_cuda_encode_e2m1, "ocp", "e2m1"),
    ("triton_kernels downcast_to_mxfp (e2m1)", "quantize", triton_kernels_downcast_mxfp4, "any-rule", "e2m1"),
    ("FlashInfer mxfp4_quantize", "quantize", flashinfer_mxfp4_quantize, "any-rule", "e2m1"),
    ("MLX CUDA quantize mode=mxfp4", "quantize", mlx_cuda_quantize_mxfp4, "nvidia", "e2m1"),
]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="GPU (CUDA)")
    args = ap.parse_args(argv)
    for name, kind, fn, prof, fmt in ROWS:
        try:        # a library that is missing or cannot run here: one line, not a failing row
            probe = np.linspace(-6, 6, 64, dtype=np.float32)
            fn(probe if kind == "encode" else probe.reshape(2, 32))
        except Exception as err:  # noqa: BLE001
            print(f"| {name} | {args.device} | {kind} {fmt} | {prof} | - | - | - | could not run: "
                  f"{type(err).__name__}: {str(err)[:160]} |", flush=True)
            continue
        with np.errstate(all="ignore"):
            print(row(name, kind, fn, prof, fmt, args.device)[0], flush=True)
    try:
        torch = _cuda()
        x = np.array([0.0, 1.0, 1.5, 1.25, 0.75, 2.0 ** -127, 1.5 * 2.0 ** 127, np.inf, np.nan, -1.0],
                     np.float32)
        print(f"torch CUDA float8_e8m0fnu cast bytes of {x.tolist()}: {torch_cuda_e8m0_cast(x).tolist()}")
    except Exception as err:  # noqa: BLE001
        print(f"torch CUDA e8m0 cast: could not run: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
