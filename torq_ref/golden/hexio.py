"""Arrays <-> hex text, the encoding of every array in the golden JSON files (spec/GV.md GV-2.4).

An array is written as its elements' raw bit patterns, big-endian hex words of fixed width
(2 digits for uint8, 8 for float32, 16 for float64) separated by single spaces, in C order.
The reader needs the dtype and the shape, which the schema stores next to the array.
"""
from __future__ import annotations

import numpy as np

from torq_ref.errors import UserError

#: dtype name -> (unsigned view dtype, hex digits per element)
_WIDTH = {"uint8": (np.uint8, 2), "float32": (np.uint32, 8), "float64": (np.uint64, 16)}


class HexFormatError(UserError, ValueError):
    """A hex array string does not match its declared dtype or shape."""


def to_hex(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    name = arr.dtype.name
    if name not in _WIDTH:
        raise TypeError(f"golden arrays are uint8, float32 or float64, not {name}")
    view, width = _WIDTH[name]
    return " ".join(f"{int(w):0{width}x}" for w in arr.view(view).ravel())


def from_hex(text: str, dtype: str, shape=None) -> np.ndarray:
    if dtype not in _WIDTH:
        raise TypeError(f"golden arrays are uint8, float32 or float64, not {dtype}")
    view, width = _WIDTH[dtype]
    words = text.split(" ") if text else []
    if any(len(w) != width for w in words):
        raise HexFormatError(f"{dtype} hex words must have {width} digits")
    bits = np.array([int(w, 16) for w in words], dtype=view)
    out = bits.view(np.dtype(dtype))
    if shape is not None:
        if int(np.prod(shape)) != out.size:
            raise HexFormatError(f"{out.size} words do not fill shape {tuple(shape)}")
        out = out.reshape(shape)
    return out


def f32(bits) -> np.ndarray:
    """float32 array from integer bit patterns (a readable way to write exact inputs)."""
    return np.asarray(bits, dtype=np.uint32).view(np.float32)
