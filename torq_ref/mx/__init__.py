"""The bit-exact MX codec (spec/MX.md): element formats, E8M0 scales, block quantization,
FP4 packing, the cuBLAS scale swizzle, and NVFP4.

Public API (stable):
    encode, decode                      element codes <-> float64            (element.py)
    quantize, dequantize, MXTensor      block quantization                    (block.py)
    quantize_dequantize                 fake quantization                     (block.py)
    scale_codes, scale_values           E8M0 scale rules                      (scale.py)
    block_scale_codes                   scale codes from block values (MSE)   (scale.py)
    pack_fp4, unpack_fp4                nibble packing                        (layout.py)
    swizzle_scales, unswizzle_scales    128x4 block-scale layout              (layout.py)
    quantize_nvfp4, dequantize_nvfp4    NVFP4                                 (nvfp4.py)
    FORMATS, E2M1_VALUES, AMAX_RULES,   format tables, scale rule names       (formats.py)
    SCALE_RULES
    numba_available                     whether the optional numba paths exist (the one check)
"""
from ._numba_kernels import available as numba_available
from .block import BACKENDS, MXTensor, quantize, quantize_dequantize
from .block import dequantize as _dequantize_mx
from .element import decode, encode
from .formats import AMAX_RULES, E2M1_VALUES, FORMATS, SCALE_RULES, VALUE_TABLES, ElementFormat, get_format
from .layout import pack_fp4, swizzle_scales, swizzled_offset, unpack_fp4, unswizzle_scales
from .nvfp4 import (GLOBAL_SCALE_RULES, NVFP4Tensor, default_global_scale, dequantize_nvfp4,
                    global_scale_for, quantize_nvfp4)
from .scale import E8M0_CAST_MODES, block_scale_codes, e8m0_cast, scale_codes, scale_values


def dequantize(t):
    """float64 values of an :class:`MXTensor` or :class:`NVFP4Tensor`."""
    if isinstance(t, NVFP4Tensor):
        return dequantize_nvfp4(t)
    return _dequantize_mx(t)


__all__ = [
    "AMAX_RULES", "BACKENDS", "GLOBAL_SCALE_RULES", "global_scale_for", "E8M0_CAST_MODES", "e8m0_cast", "E2M1_VALUES", "block_scale_codes", "ElementFormat", "FORMATS", "MXTensor", "NVFP4Tensor", "SCALE_RULES",
    "VALUE_TABLES", "decode", "default_global_scale", "dequantize", "dequantize_nvfp4", "encode",
    "get_format", "numba_available", "pack_fp4", "quantize", "quantize_dequantize", "quantize_nvfp4", "scale_codes",
    "scale_values", "swizzle_scales", "swizzled_offset", "unpack_fp4", "unswizzle_scales",
]
