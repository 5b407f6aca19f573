"""MX element formats and the E8M0 scale format (spec/MX.md sections 1-2).

OCP Microscaling Formats (MX) v1.0 defines six element types that share one E8M0 scale per block:
FP4 E2M1, FP6 E2M3, FP6 E3M2, FP8 E4M3, FP8 E5M2 and INT8. This module is the single table of their
parameters; every other module reads it instead of repeating constants.

Clauses: MX-2.1 the table ``FORMATS``, MX-2.2 ``VALUE_TABLES``, MX-2.3 ``E2M1_VALUES``, MX-2.6
``default_nan_code``, MX-3.1 the E2M1 decision table ``E2M1_THRESHOLDS`` / ``E2M1_TIE_UP``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torq_ref.errors import UserError


@dataclass(frozen=True)
class ElementFormat:
    """One MX element type.

    A float format has ``ebits`` exponent bits with ``bias``, ``mbits`` mantissa bits, subnormals,
    and a sign bit at position ``ebits + mbits``. ``emax`` is the exponent of the largest normal
    (the ``emax_elem`` of the OCP scale formula). INT8 is the two's-complement scaled integer
    ``code * 2**-6`` (``mbits = 6``, ``ebits = 0``).
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    emax: int
    max_value: float        # largest finite magnitude
    has_inf: bool
    has_nan: bool
    default_nan_code: int   # code that encode() gives NaN input (MX-2.6)

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits if not self.is_int else 8

    @property
    def is_int(self) -> bool:
        return self.name == "int8"

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal (1 - bias)."""
        return 1 - self.bias

    @property
    def min_normal(self) -> float:
        return float(np.ldexp(1.0, self.emin))

    @property
    def sign_bit(self) -> int:
        return 1 << (self.bits - 1)

    @property
    def max_code(self) -> int:
        """Positive code of ``max_value``."""
        if self.is_int:
            return 0x7F
        return int(np.round(_code_of_positive(self, self.max_value)))


def _code_of_positive(fmt: ElementFormat, value: float) -> int:
    m, e = np.frexp(value)
    e = int(e) - 1
    if value < fmt.min_normal:
        return int(np.ldexp(value, fmt.mbits - fmt.emin))
    return ((e + fmt.bias) << fmt.mbits) | int(np.ldexp(value, fmt.mbits - e) - (1 << fmt.mbits))


#: The OCP MX v1.0 element formats (table of spec/MX.md MX-2.1).
FORMATS: dict[str, ElementFormat] = {
    "e2m1": ElementFormat("e2m1", 2, 1, 1, 2, 6.0, False, False, 0x7),
    "e2m3": ElementFormat("e2m3", 2, 3, 1, 2, 7.5, False, False, 0x1F),
    "e3m2": ElementFormat("e3m2", 3, 2, 3, 4, 28.0, False, False, 0x1F),
    "e4m3": ElementFormat("e4m3", 4, 3, 7, 8, 448.0, False, True, 0x7F),
    "e5m2": ElementFormat("e5m2", 5, 2, 15, 15, 57344.0, True, True, 0x7E),
    "int8": ElementFormat("int8", 0, 6, 0, 0, 127.0 / 64.0, False, False, 0x7F),
}

#: The rules that compute a block's scale from its amax alone (MX-4.2 .. MX-4.5), in the order
#: reports and golden groups list them; SCALE_RULES adds MSE (MX-4.8), which needs the values.
AMAX_RULES = ("floor", "rceil", "ceil", "even")
#: CUTLASS (MX-4.9): an amax rule of one vendor kernel, judged on its own golden groups (GV-2.7)
#: and not among the rules the cause classifier compares (for E2M1 it equals EVEN)
SCALE_RULES = AMAX_RULES + ("cutlass", "mse")

E8M0_BIAS = 127
E8M0_NAN = 0xFF
E8M0_MAX_FINITE = 0xFE


class FormatError(UserError, ValueError):
    """An unknown element format or scale rule name (the message lists the known ones)."""


def get_format(fmt: str | ElementFormat) -> ElementFormat:
    """Return the format named ``fmt`` (case-insensitive) or raise FormatError (a ValueError) listing the known ones."""
    if isinstance(fmt, ElementFormat):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be a format name string, got {type(fmt).__name__}")
    try:
        return FORMATS[fmt.lower()]
    except KeyError:
        raise FormatError(f"unknown format {fmt}; known: {', '.join(FORMATS)}") from None


def check_scale_rule(rule: str) -> str:
    if not isinstance(rule, str) or rule.lower() not in SCALE_RULES:
        raise FormatError(f"unknown scale rule {rule}; known: {', '.join(SCALE_RULES)}")
    return rule.lower()


def _value_table(fmt: ElementFormat) -> np.ndarray:
    """float64 value of every code of ``fmt`` (index = code); NaN / Inf codes included."""
    n = 1 << fmt.bits
    codes = np.arange(n, dtype=np.int64)
    if fmt.is_int:
        return np.where(codes >= 128, codes - 256, codes).astype(np.float64) / 64.0
    sign = np.where(codes & fmt.sign_bit, -1.0, 1.0)
    exp_field = (codes >> fmt.mbits) & ((1 << fmt.ebits) - 1)
    mant = (codes & ((1 << fmt.mbits) - 1)).astype(np.float64)
    normal = np.ldexp(1.0 + mant / (1 << fmt.mbits), exp_field - fmt.bias)
    subnormal = np.ldexp(mant / (1 << fmt.mbits), fmt.emin)
    values = sign * np.where(exp_field == 0, subnormal, normal)
    top = (1 << fmt.ebits) - 1
    if fmt.name == "e4m3":          # S.1111.111 is NaN, no Inf
        values[(exp_field == top) & (mant == (1 << fmt.mbits) - 1)] = np.nan
    elif fmt.name == "e5m2":        # IEEE-style: exponent all ones is Inf (m = 0) or NaN
        values[(exp_field == top) & (mant == 0)] = sign[(exp_field == top) & (mant == 0)] * np.inf
        values[(exp_field == top) & (mant != 0)] = np.nan
    return values


#: float64 value of every code, per format (read-only).
VALUE_TABLES: dict[str, np.ndarray] = {}
for _name, _fmt in FORMATS.items():
    _t = _value_table(_fmt)
    _t.setflags(write=False)
    VALUE_TABLES[_name] = _t

#: Values of the 16 E2M1 codes; code 0x8 is -0.0.
E2M1_VALUES = VALUE_TABLES["e2m1"]


def _e2m1_decisions() -> tuple[np.ndarray, np.ndarray]:
    """The seven E2M1 round-to-nearest-even decision points (MX-3.1), derived from the table.

    Magnitude code k (0..7) is ``sum_t [|x| > T_t or (TIE_UP_t and |x| == T_t)]``: T_t is the
    midpoint of values t and t+1, and a tie goes up exactly when code t+1 is even.
    """
    mags = E2M1_VALUES[:8]
    mid = (mags[:-1] + mags[1:]) / 2.0                 # exact: halves of small dyadic values
    up = (np.arange(1, 8) % 2) == 0                    # code t+1 even -> a tie rounds up
    mid.setflags(write=False)
    up.setflags(write=False)
    return mid, up


#: E2M1 decision thresholds 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5 and whether a tie at each goes up
#: (False, True, False, True, False, True, False). Every E2M1 encoder in torq_ref reads these.
E2M1_THRESHOLDS, E2M1_TIE_UP = _e2m1_decisions()


def e2m1_magnitude_code(t: np.ndarray) -> np.ndarray:
    """int64 magnitude code (0..7) of non-negative, already-scaled values ``t`` (NumPy, exact).

    Values above 5 give 7 (saturation); NaN gives 0 (callers handle NaN themselves).
    """
    m = np.zeros(np.shape(t), dtype=np.int64)
    for thr, up in zip(E2M1_THRESHOLDS, E2M1_TIE_UP):
        m += (t >= thr) if up else (t > thr)
    return m
