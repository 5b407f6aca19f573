"""MX fake quantization in torch ops (spec/TQ.md TQ-9.1): quantize then dequantize along the
last axis, bit for bit what ``torq_ref.mx.quantize_dequantize`` returns for float32 input.

Exact by construction: the shared exponent comes from the exponent bits (``torch.frexp``), the
powers of two are built from their float64 bit patterns, scaling and rounding run in float64 where
every step is exact for float32 / bfloat16 / float16 input, and the E2M1 rounding is
round-half-to-even on a uniform grid per binade (``torch.round``).
"""
from __future__ import annotations

import torch

#: element formats and scale rules this module implements
ELEMENTS = ("e2m1",)
SCALE_RULES = ("floor",)
#: E2M1: largest binade exponent (6 = 1.5 * 2^2) and largest magnitude
_EMAX, _MAX = 2, 6.0


class FakeQuantError(ValueError):
    """A format, rule or shape this fake quantizer does not handle."""


def _pow2(k: torch.Tensor) -> torch.Tensor:
    """2^k as float64 for integer k in [-1022, 1023], from the bit pattern (exact)."""
    return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)


def mx_fake_quant(x: torch.Tensor, element: str = "e2m1", scale_rule: str = "floor",
                  block_size: int = 32) -> torch.Tensor:
    """MX quantize-dequantize of ``x`` (..., n) in blocks of ``block_size`` along the last axis;
    returns x's dtype and device (OCP MX v1.0 section 6.3, spec/MX.md MX-4.2, MX-4.6, MX-5.3)."""
    if element not in ELEMENTS:
        raise FakeQuantError(f"element format {element!r}: the torch path implements {ELEMENTS}")
    if scale_rule not in SCALE_RULES:
        raise FakeQuantError(f"scale rule {scale_rule!r}: the torch path implements {SCALE_RULES}")
    n = x.shape[-1]
    if n % block_size:
        raise FakeQuantError(f"last axis of {n} is not a multiple of the MX block size {block_size}")
    xb = x.reshape(*x.shape[:-1], n // block_size, block_size).to(torch.float64)
    amax = xb.abs().amax(dim=-1, keepdim=True)
    _, e = torch.frexp(amax)                         # amax = m 2^e, m in [0.5, 1): E = e - 1
    s = torch.where(amax > 0, e.to(torch.int64) + 127 - 1 - _EMAX, 0).clamp(min=0)   # MX-4.2, 4.6
    bad = ~torch.isfinite(amax) | (s > 254)          # NaN / Inf amax: scale 0xFF, a NaN block
    s = s.clamp(max=254)
    y = xb * _pow2(127 - s)                          # exact: a power of two in float64
    a = y.abs()
    q = torch.where(a < 2, torch.round(a * 2) / 2, torch.where(a < 4, torch.round(a), torch.round(a / 2) * 2))
    q = torch.copysign(q.clamp(max=_MAX), y)         # saturating; negative values keep -0
    out = q * _pow2(s - 127)
    out = torch.where(bad, torch.full_like(out, float("nan")), out)
    return out.reshape(x.shape).to(x.dtype)
