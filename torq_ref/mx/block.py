"""Block quantization to MX: shared E8M0 scale + element codes (spec/MX.md section 5).

For each block of ``block_size`` consecutive elements along ``axis``:

    amax  = max |x_i|                       (NaN if any x_i is NaN)
    s     = scale_codes(amax, fmt, rule)    (torq_ref.mx.scale; MSE: block_scale_codes, MX-4.8)
    P_i   = encode(x_i / 2^(s-127), fmt)    (exact power-of-two scaling, RNE, saturating)

A block whose scale is 0xFF (NaN) carries the format's NaN element code in every element (MX-5.4).
The pure NumPy path below is the reference; ``torq_ref.mx._numba_kernels`` is a faster path for
e2m1 / float32 that is tested to give identical bits.

Clauses: MX-1.1 blocks, MX-5.1 ``MXTensor``, MX-5.2..5.4 ``_quantize_reference``, MX-5.5 padding,
MX-5.6 ``dequantize``, MX-5.7 ``quantize_dequantize``, MX-5.8 the fixed point (a consequence of
FLOOR: every dequantized value is exactly representable under the same scale), MX-6.1 backend
selection, MX-7.1 argument checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _numba_kernels
from .element import encode
from .formats import E8M0_BIAS, E8M0_NAN, VALUE_TABLES, check_scale_rule, get_format
from .validate import as_code_array, as_float_array, normalize_axis

BACKENDS = ("auto", "numpy", "numba")


@dataclass(frozen=True)
class MXTensor:
    """An MX-quantized array (MX-5.1).

    codes:  uint8, same shape as the input, one unpacked element code per value (low bits).
    scales: uint8 E8M0 codes, same shape except ``axis`` has ceil(length / block_size) entries.
    """

    codes: np.ndarray
    scales: np.ndarray
    fmt: str
    block_size: int
    axis: int
    scale_rule: str
    saturate_scale: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape


def _check_block_size(block_size) -> int:
    if not isinstance(block_size, (int, np.integer)) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    return int(block_size)


def _blocked(x: np.ndarray, axis: int, block_size: int, pad: bool) -> tuple[np.ndarray, int]:
    """Move ``axis`` last and split it into blocks: (..., n) -> (..., n_blocks, block_size)."""
    moved = np.moveaxis(x, axis, -1)
    n = moved.shape[-1]
    rem = n % block_size
    if rem:
        if not pad:
            raise ValueError(
                f"axis {axis} has length {n}, not a multiple of block_size {block_size}; "
                "pass pad=True to zero-pad the last block (MX-5.5)"
            )
        widths = [(0, 0)] * (moved.ndim - 1) + [(0, block_size - rem)]
        moved = np.pad(moved, widths)
    nb = moved.shape[-1] // block_size
    return moved.reshape(moved.shape[:-1] + (nb, block_size)), n


def quantize(x, fmt: str = "e2m1", *, block_size: int = 32, axis: int = -1, scale_rule: str = "floor",
             saturate_scale: bool = False, pad: bool = False, backend: str = "auto") -> MXTensor:
    """Quantize ``x`` to MX format ``fmt`` with one E8M0 scale per block along ``axis`` (MX-5).

    ``backend``: "numpy" (the reference), "numba" (fast path, e2m1 float32 / float64 only, same bits), or
    "auto" (numba when installed and applicable).
    """
    f = get_format(fmt)
    rule = check_scale_rule(scale_rule)
    bs = _check_block_size(block_size)
    a = as_float_array(x)
    if a.ndim == 0:
        raise ValueError("x must have at least one dimension")
    ax = normalize_axis(axis, a.ndim)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    blocks, n = _blocked(a, ax, bs, pad)          # (..., nb, bs)
    numba_fits = f.name == "e2m1" and a.dtype in (np.float32, np.float64)
    if backend == "numba":
        if not _numba_kernels.available():
            raise RuntimeError("backend='numba' requested but numba is not installed (pip install torq-ref[fast])")
        if not numba_fits:
            # MX-6.1: never a silent fall back to NumPy when the caller asked for numba.
            raise ValueError(f"backend='numba' covers e2m1 with float32 / float64 input only; got fmt "
                             f"{f.name!r}, dtype {a.dtype}; use backend='auto' or 'numpy'")
    use_numba = backend == "numba" or (backend == "auto" and _numba_kernels.available())
    if use_numba and numba_fits:
        scales, codes = _numba_kernels.quantize_e2m1(blocks, rule, saturate_scale)
    else:
        scales, codes = _quantize_reference(blocks, f, rule, saturate_scale, a.dtype)
    codes = codes.reshape(codes.shape[:-2] + (-1,))[..., :n]      # (..., n)
    return MXTensor(
        codes=np.ascontiguousarray(np.moveaxis(codes, -1, ax)),
        scales=np.ascontiguousarray(np.moveaxis(scales, -1, ax)),
        fmt=f.name, block_size=bs, axis=ax, scale_rule=rule, saturate_scale=bool(saturate_scale),
    )


def _quantize_reference(blocks: np.ndarray, f, rule: str, saturate_scale: bool, dtype):
    """Pure NumPy reference of MX-5.2..5.4 on (..., nb, bs) blocks -> (scales (..., nb), codes)."""
    from .scale import block_scale_codes

    wide = blocks.astype(np.float64)
    working = np.float64 if dtype == np.float64 else np.float32
    scales = block_scale_codes(wide, f, rule, saturate_scale=saturate_scale, working_dtype=working)
    shared_exp = scales.astype(np.int64) - E8M0_BIAS
    shared_exp = np.where(scales == E8M0_NAN, 0, shared_exp)
    scaled = np.ldexp(wide, -shared_exp[..., None])         # exact: power-of-two scaling in float64
    codes = encode(scaled, f.name, saturate=True)
    codes[scales == E8M0_NAN] = f.default_nan_code
    return scales, codes


def dequantize(t: MXTensor) -> np.ndarray:
    """float64 values of an MXTensor (MX-5.6): code value x 2^(s-127); scale 0xFF gives NaN."""
    if not isinstance(t, MXTensor):
        raise TypeError(f"dequantize expects an MXTensor, got {type(t).__name__}")
    f = get_format(t.fmt)
    codes = as_code_array(t.codes, f.bits, name=f"MXTensor codes ({f.name})")
    if np.asarray(t.scales).dtype != np.uint8:
        raise TypeError(f"MXTensor scales must be uint8 E8M0 codes, got dtype {np.asarray(t.scales).dtype}")
    _check_block_size(t.block_size)
    ax = normalize_axis(t.axis, codes.ndim) if codes.ndim else 0
    if ax != t.axis:
        raise ValueError(f"MXTensor axis must be non-negative and in range, got {t.axis}")
    values = VALUE_TABLES[f.name][codes]
    moved = np.moveaxis(values, t.axis, -1)
    n = moved.shape[-1]
    sc = np.moveaxis(t.scales, t.axis, -1)
    expected_blocks = -(-n // t.block_size)
    if sc.shape[-1] != expected_blocks or sc.shape[:-1] != moved.shape[:-1]:
        raise ValueError(f"scales shape {t.scales.shape} does not match codes shape {t.codes.shape} "
                         f"with block_size {t.block_size} along axis {t.axis}")
    per_elem = np.repeat(sc, t.block_size, axis=-1)[..., :n]
    exps = per_elem.astype(np.int64) - E8M0_BIAS
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ldexp(moved, exps)
    out = np.where(per_elem == E8M0_NAN, np.nan, out)
    return np.moveaxis(out, -1, t.axis)


def quantize_dequantize(x, fmt: str = "e2m1", *, block_size: int = 32, axis: int = -1,
                        scale_rule: str = "floor", saturate_scale: bool = False, pad: bool = False,
                        backend: str = "auto") -> np.ndarray:
    """Fake quantization: dequantize(quantize(x)) in x's float type (MX-5.7).

    float32 / float64 input returns the same dtype (every MX value with a finite scale below 0xFE
    is exact in float32); float16 input returns float64.
    """
    a = as_float_array(x)
    if (backend in ("auto", "numba") and a.dtype in (np.float32, np.float64) and get_format(fmt).name == "e2m1"
            and _numba_kernels.available() and a.ndim >= 1):
        ax = normalize_axis(axis, a.ndim)
        if ax == a.ndim - 1 and a.shape[-1] % _check_block_size(block_size) == 0:
            blocks = np.ascontiguousarray(a).reshape(a.shape[:-1] + (-1, block_size))
            out = _numba_kernels.fake_quant_e2m1(blocks, check_scale_rule(scale_rule), saturate_scale)
            return out.reshape(a.shape)
    t = quantize(a, fmt, block_size=block_size, axis=axis, scale_rule=scale_rule,
                 saturate_scale=saturate_scale, pad=pad, backend=backend)
    out = dequantize(t)
    if a.dtype in (np.float32, np.float64):
        with np.errstate(over="ignore"):
            return out.astype(a.dtype)
    return out
