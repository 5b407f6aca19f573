"""Real Hadamard / rotate-quantize implementations in the calling conventions of the rotation
kinds (spec/CF.md CF-5.1, CF-5.6). Each imports its library lazily; run by
``python benchmarks/conformance/rotation_table.py`` and tests/test_conformance_rotation_real.py.

    hadamard         fn(x float32 (rows, n), block int) -> float32 (rows, n)
    rotate-quantize  fn(x float32 (rows, n), R float32 (b, b)) -> (codes, scales)
"""
from __future__ import annotations

import math

import numpy as np


def _blocks(x, b):
    return x.reshape(-1, b)


# ------------------------------------------------------------------------- scipy
def scipy_hadamard(x, block):
    """scipy.linalg.hadamard(block) (Sylvester, +-1 integers) as float32 / sqrt(block), x @ H:
    the way QuaRot-style reference code uses it (a dense float32 product)."""
    from scipy.linalg import hadamard
    h = (hadamard(block) / math.sqrt(block)).astype(np.float32)
    return (_blocks(x, block) @ h).reshape(x.shape)


def scipy_hadamard_unnormalized(x, block):
    from scipy.linalg import hadamard
    return (_blocks(x, block) @ hadamard(block).astype(np.float32)).reshape(x.shape)


# ------------------------------------------------------------------------- torchao (spinquant)
def torchao_spinquant_hadamard(x, block):
    """torchao.prototype.spinquant.hadamard_utils.matmul_hadU_slow on CPU (the path matmul_hadU
    takes without CUDA): an in-place butterfly in the input dtype, then / sqrt(n)."""
    import torch
    from torchao.prototype.spinquant.hadamard_utils import get_hadK, matmul_hadU_slow
    had_k, k = get_hadK(block)
    y = matmul_hadU_slow(torch.from_numpy(_blocks(x, block).copy()), had_k, k)
    return y.numpy().reshape(x.shape)


# ------------------------------------------------------------------------- compressed-tensors
def compressed_tensors_hadamard(x, block):
    """compressed-tensors 0.20 HadamardTransform, online (input activation) location: the
    Sylvester matrix from deterministic_hadamard_matrix in the scheme precision (float32), value
    @ H through apply_transform_weight, divided by the float64 tensor sqrt(size)."""
    import torch
    from compressed_tensors.transform import TransformLocation
    from compressed_tensors.transform.utils.hadamard import deterministic_hadamard_matrix
    from compressed_tensors.transform.utils.matrix import apply_transform_weight
    h = deterministic_hadamard_matrix(block, torch.float32)
    scale = torch.tensor(block, dtype=torch.float64).sqrt()
    v = torch.from_numpy(x.copy())
    y = apply_transform_weight(h, v, TransformLocation.INPUT, torch.nn.Linear) / scale
    return y.to(torch.float32).numpy()


# ------------------------------------------------------------------------- hadamard-transform (PyPI)
def hadamard_transform_pypi(x, block):
    """hadamard-transform 0.2.0 hadamard_transform: torch.cat((a + b, a - b)) per stage, then
    / sqrt(d) (normalized)."""
    import torch
    from hadamard_transform import hadamard_transform
    return hadamard_transform(torch.from_numpy(_blocks(x, block).copy())).numpy().reshape(x.shape)


def hadamard_transform_pypi_inplace(x, block):
    """hadamard-transform 0.2.0 hadamard_transform_ (in place, one 1-D vector at a time): the
    second half is (a + b) - 2 b, two roundings where the butterfly has one."""
    import torch
    from hadamard_transform import hadamard_transform_
    out = _blocks(x, block).copy()
    for r in out:
        t = torch.from_numpy(r)
        hadamard_transform_(t)
    return out.reshape(x.shape)


# ------------------------------------------------------------------------- rotate-quantize
def torch_matmul_torchao_mx(x, R):
    """A composed rotate-then-quantize: torch float32 matmul x_block @ R, then torchao 0.18
    to_mx (FLOOR, its default), codes unpacked low nibble first."""
    import torch
    from torchao.prototype.mx_formats.config import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_mx
    b = R.shape[0]
    y = (torch.from_numpy(x.reshape(x.shape[0], -1, b).copy()) @ torch.from_numpy(R.copy())).reshape(x.shape)
    scale, data = to_mx(y.contiguous(), torch.float4_e2m1fn_x2, 32, ScaleCalculationMode.FLOOR)
    s = scale.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    packed = data.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    c = np.empty(x.shape, np.uint8)
    c[:, 0::2] = packed & 0xF
    c[:, 1::2] = packed >> 4
    return c, s

