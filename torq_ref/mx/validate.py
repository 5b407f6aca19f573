"""Input validation shared by the codec (spec/MX.md section 7: bad input is an error, never a guess).

Clauses: MX-3.6 accepted input dtypes (bfloat16 widened to float32), MX-7.1 bad input.
"""
from __future__ import annotations

import numpy as np

_ACCEPTED = (np.float16, np.float32, np.float64)


def as_float_array(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a float16/float32/float64 ndarray without changing any value.

    bfloat16 arrays (ml_dtypes) are widened to float32, which is exact. Booleans, integers,
    complex and object arrays raise TypeError naming the dtype: MX quantization of them has no
    defined meaning, and a silent cast would hide a caller's bug.
    """
    arr = np.asarray(x)
    if arr.dtype.name == "bfloat16":
        return arr.astype(np.float32)
    if arr.dtype.type in _ACCEPTED:
        return arr
    raise TypeError(
        f"{name} must be a float16, bfloat16, float32 or float64 array; got dtype {arr.dtype} "
        "(integers, booleans, complex and object arrays are rejected, cast explicitly if you mean it)"
    )


def as_code_array(codes, bits: int, name: str = "codes") -> np.ndarray:
    """Return ``codes`` as uint8, checking they are unsigned integers that fit in ``bits`` bits."""
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be an unsigned integer array of codes, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= (1 << bits)):
        raise ValueError(f"{name} holds values outside the {bits}-bit code range 0..{(1 << bits) - 1} "
                         f"(found {arr.min()}..{arr.max()})")
    return arr.astype(np.uint8, copy=False)


def normalize_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {ndim} dimension(s)")
    return int(axis) % ndim
