"""TestFloat-style input generation for the golden vectors (spec/GV.md section 3).

Only INPUTS are made here; the expected outputs come from the oracle (torq_ref.mx) in
:mod:`torq_ref.golden.build`. Following Berkeley TestFloat, cases are

1. named tricky cases (docs/mx-format.md section 8: ties, saturation, signed zero, scale boundaries,
   powers of two, scale code 0, extremes, NaN / Inf),
2. a grid: block-max exponent pattern x block-max mantissa pattern x position of the max in the
   block, the other elements at fixed fractions of the max,
3. weighted random draws (exponents biased toward the boundaries), from a seeded generator.

``level`` is the coverage knob: ``"default"`` (CI sized) or ``"thorough"`` (larger grid, more
random draws). Every function is deterministic in (level, seed).

Clauses: GV-3.1 the three input sources, GV-3.2 the coverage levels and determinism.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from torq_ref.errors import UserError

LEVELS = ("default", "thorough")
FLT_MAX = float(np.finfo(np.float32).max)
ULP1 = 2.0 ** -23          # float32 ulp of 1.0


@dataclass
class InputCase:
    """One test input: ``x`` float32 (a scalar for element cases, one block for block cases)."""

    comment: str
    flags: list
    x: np.ndarray
    params: dict = field(default_factory=dict)


class LevelError(UserError, ValueError):
    """Unknown coverage level."""


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise LevelError(f"level must be one of {LEVELS}, not {level!r}")
    return level


def _f32(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float64).astype(np.float32)


def _next_up(v: float) -> float:
    return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def _next_down(v: float) -> float:
    return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def _exact(v: float) -> bool:
    return float(np.float32(v)) == v


# ----------------------------------------------------------------------------------- elements
def element_cases(values: np.ndarray, max_value: float, level: str, seed: int) -> list:
    """Element-encode inputs for a format whose positive finite values are ``values`` (sorted).

    Values are exact element values, the midpoints between neighbours and one float32 ulp either
    side of each midpoint, saturation, signed zero, subnormals, non-finite, random draws.
    """
    check_level(level)
    out: list[InputCase] = []
    for v in values:
        for s in (1.0, -1.0):
            flags = ["ExactValue"] + (["SignedZero"] if s < 0 and v == 0 else [])
            out.append(InputCase(f"{s * v:g} is an element value", flags, _f32([s * v])))
    for lo, hi in zip(values[:-1], values[1:]):
        mid = (lo + hi) / 2
        for s in (1.0, -1.0):
            out.append(InputCase(f"tie {s * mid:g} between {s * lo:g} and {s * hi:g}", ["Tie"],
                                 _f32([s * mid])))
            for nb, side in ((_next_down(mid), "below"), (_next_up(mid), "above")):
                out.append(InputCase(f"one ulp {side} tie {s * mid:g}", ["TieNeighbour"],
                                     _f32([s * nb])))
    sat = [max_value, _next_up(max_value), (max_value + values[-2]) / 2 * 1.25,
           2 * max_value - _next_up(0), 2 * max_value, 1e30, FLT_MAX]
    for v in sat:
        if not _exact(v):
            v = float(np.float32(v))
        for s in (1.0, -1.0):
            out.append(InputCase(f"saturation {s * v:.9g}", ["Saturation"], _f32([s * v])))
    for v in (-0.1 * values[1], -values[1] / 2, -1e-30, -2.0 ** -149):
        out.append(InputCase(f"negative {v:.9g} rounds to -0", ["SignedZero"], _f32([v])))
    for v in (2.0 ** -149, 2.0 ** -140, 2.0 ** -127, 2.0 ** -126 - 2.0 ** -149):
        out.append(InputCase(f"float32 subnormal {v:.9g}", ["Subnormal"], _f32([v])))
    for v in (np.inf, -np.inf):
        out.append(InputCase(f"{v} saturates", ["NonFinite", "Saturation"], _f32([v])))
    out.append(InputCase("NaN", ["NonFinite"], _f32([np.nan])))
    rng = np.random.default_rng(seed)
    n = 128 if level == "default" else 4096
    for x in _weighted_random(rng, n, lo=int(np.log2(values[1])) - 3,
                              hi=int(np.log2(max_value)) + 3):
        out.append(InputCase("random", ["Random"], _f32([x])))
    return out


def _weighted_random(rng, n: int, lo: int, hi: int) -> np.ndarray:
    """n float32 values: 80% exponents in [lo, hi], 20% anywhere; mantissas random or patterned."""
    exps = np.where(rng.random(n) < 0.8, rng.integers(lo, hi + 1, n), rng.integers(-149, 128, n))
    kind = rng.integers(0, 3, n)
    mant = rng.integers(0, 1 << 23, n)
    ones = (1 << 23) - (1 << rng.integers(0, 23, n))      # run of ones from the top
    zeros = 1 << rng.integers(0, 23, n)                     # a single low bit
    m = np.where(kind == 0, mant, np.where(kind == 1, ones, zeros))
    vals = np.ldexp(1.0 + m / 2.0 ** 23, exps) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return vals.astype(np.float32)


# ----------------------------------------------------------------------------------- blocks
#: Fractions of the block max used for the other elements of grid blocks (signs alternate).
_FILL = np.array([0.5, 0.75, 0.25, 0.625, 0.375, 0.3125, 0.0625, 0.875, 0.125, 0.5625,
                  0.8125, 0.1875, 0.0, 0.9375, 0.4375, 0.6875])


def _fill_block(amax: float, pos: int, block: int, neg_max: bool = False) -> np.ndarray:
    """A block whose max |x| is ``amax`` at ``pos``; others at fixed fractions, mixed signs."""
    idx = np.arange(block)
    others = amax * _FILL[idx % len(_FILL)] * np.where(idx % 3 == 1, -1.0, 1.0)
    x = np.clip(others, -amax, amax).astype(np.float32)
    x[pos] = -amax if neg_max else amax
    return x


def block_cases(values: np.ndarray, max_value: float, emax: int, level: str, seed: int,
                block: int = 32) -> list:
    """Block-quantize inputs (each one block of ``block`` float32) for an element format.

    ``values`` are the format's positive finite values, ``emax`` its largest exponent. Under the
    FLOOR rule a block whose max lies in [2^emax, 2^(emax+1)) gets scale 2^0.
    """
    check_level(level)
    out: list[InputCase] = []

    def add(comment, flags, x):
        x = np.asarray(x, dtype=np.float32)
        if x.size < block:      # pad with zeros to a full block
            x = np.concatenate([x, np.zeros(block - x.size, np.float32)])
        out.append(InputCase(comment, flags, x[:block].copy()))

    mids = (values[:-1] + values[1:]) / 2
    # Ties under a scale of 2^k (the block max is max_value * 2^k); k=-127 puts them under code 0.
    for k in (0, -20, 30, -127):
        sc = 2.0 ** k
        flags = ["Tie"] + (["ScaleCodeZero"] if k == -127 else [])
        for start in range(0, len(mids), block - 1):
            chunk = mids[start:start + block - 1]
            signs = np.where(np.arange(chunk.size) % 2 == 0, 1.0, -1.0)
            add(f"ties under scale 2^{k}", flags, np.concatenate([[max_value * sc], chunk * signs * sc]))
            nb = np.array([_next_up(m * sc) if i % 2 == 0 else _next_down(m * sc)
                           for i, m in enumerate(chunk)])
            add(f"one ulp beside ties under scale 2^{k}", ["TieNeighbour"] + flags[1:],
                np.concatenate([[max_value * sc], nb * -signs]))
            # ... and the other side of each tie (0.25 - ulp: x + 0.5 rounds up in float32)
            nb = np.array([_next_down(m * sc) if i % 2 == 0 else _next_up(m * sc)
                           for i, m in enumerate(chunk)])
            add(f"one ulp on the other side of ties under scale 2^{k}", ["TieNeighbour"] + flags[1:],
                np.concatenate([[max_value * sc], nb * signs]))
    # Exact element values (a round trip) under scale 1 and under code 0.
    for k in (0, -127):
        vals = np.concatenate([values, -values])[: block]
        add(f"exact element values x 2^{k}", ["ExactValue"] + (["ScaleCodeZero"] if k else []),
            vals * 2.0 ** k)
    # Saturation: block max beyond max_value but under the FLOOR boundary 2^(emax+1).
    top = 2.0 ** (emax + 1)
    sat = [_next_up(max_value), (max_value + top) / 2, _next_down(top), max_value,
           (max_value + values[-2]) / 2, _next_up((max_value + values[-2]) / 2),
           _next_down((max_value + values[-2]) / 2)]
    add("saturation inside one block", ["Saturation"], [_next_down(top)] + sat + [-v for v in sat])
    # Signed zero.
    add("all -0.0", ["ZeroBlock", "SignedZero"], -np.zeros(block))
    add("all +0.0", ["ZeroBlock"], np.zeros(block))
    add("negative values that round to -0", ["SignedZero"],
        [max_value, -0.1 * values[1], -values[1] / 2, -1e-30, -0.0, -2.0 ** -149])
    # Scale boundaries (for e2m1: 6, 6+ulp, 7, 8-ulp, 8, 3+ulp, 1.5 ...).
    bounds = [max_value, _next_up(max_value), (max_value + top) / 2, _next_down(top), top,
              _next_up(max_value / 2), max_value / 2, 1.75 * 2.0 ** emax,
              _next_down(1.75 * 2.0 ** emax), _next_up(2.0 ** emax), 2.0 ** emax]
    for v in bounds:
        add(f"block max {v:.9g}", ["ScaleBoundary"], _fill_block(v, 5, block))
    # Powers of two and one ulp below (float log2 traps).
    for k in (-126, -100, -64, 3, 10, 64, 100, 127):
        for v, what in ((2.0 ** k, f"2^{k}"), (_next_down(2.0 ** k), f"2^{k} - ulp")):
            add(f"block max {what}", ["PowerOfTwo"], _fill_block(v, 7, block))
    # Scale code 0 region: smallest normal, 2^-125..2^-127, subnormals, RCEIL's quotient.
    tiny = [2.0 ** -126, 2.0 ** -125, 2.0 ** -127, 2.0 ** -149, 6 * 2.0 ** -127,
            _next_up(6 * 2.0 ** -127), 3 * 2.0 ** -127, max_value * 2.0 ** -127]
    for v in tiny:
        flags = ["ScaleCodeZero", "Subnormal"] if v < 2.0 ** -126 else ["ScaleCodeZero"]
        if abs(v - _next_up(6 * 2.0 ** -127)) == 0:
            flags = flags + ["RcdSubnormalQuotient"]
        add(f"block max {v:.9g}", flags, _fill_block(v, 11, block))
    add("all float32 subnormals", ["ScaleCodeZero", "Subnormal"],
        np.ldexp(1.0, -149 + np.arange(block) % 23) * np.where(np.arange(block) % 2, -1, 1))
    # Extremes and mixed magnitudes.
    for v in (2.0 ** 127, FLT_MAX):
        add(f"block max {v:.9g}", ["ExtremeMagnitude"], _fill_block(v, 3, block))
        add(f"block max -{v:.9g}", ["ExtremeMagnitude"], _fill_block(v, 3, block, neg_max=True))
    add("[FLT_MAX, 1, -1, ...]: the small ones flush", ["MixedMagnitude", "SignedZero"],
        [FLT_MAX] + [1.0, -1.0] * (block // 2))
    # bf16 narrowing traps and torchao's inexact ceil(log2).
    for bits in (0x40600001, 0x43FFFFFF, 0x42C00001):
        v = float(np.uint32(bits).view(np.float32))
        add(f"block max {v:.9g} (0x{bits:08X})", ["Bf16Trap"], _fill_block(v, 2, block))
    # NaN and Inf.
    for name, v, flag in (("NaN", np.nan, "NaNBlock"), ("+Inf", np.inf, "InfBlock"),
                          ("-Inf", -np.inf, "InfBlock")):
        x = _fill_block(3.0, 0, block)
        x[9] = v
        add(f"{name} in a block", [flag], x)

    # TestFloat grid: exponent pattern x mantissa pattern x position.
    if level == "default":
        exps = [-149, -128, -127, -126, -125, -64, 0, 1, 2, 3, 64, 127]
        positions = [0, block - 1]
    else:
        exps = list(range(-149, -120)) + list(range(-8, 9)) + [-100, -64, 32, 64, 100] + \
            list(range(120, 128))
        positions = [0, block // 2 - 3, block - 1]
    mants = [1.0, 1.0 + ULP1, 1.25, 1.5 - ULP1, 1.5, 1.5 + ULP1, 1.75 - ULP1, 1.75, 1.75 + ULP1,
             2.0 - ULP1]
    for e in exps:
        for m in mants:
            v = float(np.ldexp(m, e))
            if not _exact(v) or v > FLT_MAX:
                continue
            for p in positions:
                add(f"grid: max {m!r} x 2^{e} at {p}", ["Grid"], _fill_block(v, p, block))

    rng = np.random.default_rng(seed)
    n = 48 if level == "default" else 2048
    for x in random_blocks(rng, n, block, values, emax):
        add("random block", ["Random"], x)
    return out


def random_blocks(rng, n: int, block: int, values: np.ndarray, emax: int) -> np.ndarray:
    """n weighted random blocks, float32 (n, block).

    Block exponent: 70% in [-10, 10], 20% near the scale-code-0 region [-150, -118], 10% anywhere.
    Elements: Gaussian times 2^E; in a quarter of the blocks, elements snapped to exact midpoints
    between element values under the block's FLOOR scale (ties); 5% of elements are zero.
    """
    u = rng.random(n)
    e = np.where(u < 0.7, rng.integers(-10, 11, n),
                 np.where(u < 0.9, rng.integers(-150, -117, n), rng.integers(-140, 126, n)))
    x = rng.standard_normal((n, block)) * np.ldexp(1.0, e)[:, None]
    x = x.astype(np.float32).astype(np.float64)
    ties = rng.random(n) < 0.25
    mids = (values[:-1] + values[1:]) / 2
    amax = np.abs(x).max(axis=1)
    _, ex = np.frexp(amax)
    scale = np.ldexp(1.0, np.clip(ex - 1 - emax, -127, 127))
    pick = mids[rng.integers(0, mids.size, (n, block))] * np.sign(x)
    snapped = pick * scale[:, None]
    x = np.where(ties[:, None] & (np.arange(block) > 0), snapped, x)
    x[rng.random((n, block)) < 0.05] = 0.0
    return x.astype(np.float32)


def random_rows(seed: int, rows: int, k: int, values: np.ndarray, emax: int,
                block: int = 32) -> np.ndarray:
    """float32 (rows, k): rows of k // block random blocks each (bulk quantize cases)."""
    rng = np.random.default_rng(seed)
    blocks = random_blocks(rng, rows * (k // block), block, values, emax)
    return blocks.reshape(rows, k)          # (rows * k/block, block) -> (rows, k)


#: the element formats whose golden groups the generator writes (MX-2)
ELEMENT_FORMATS = ("e2m1", "e2m3", "e3m2", "e4m3", "e5m2", "int8")


class CaseIds:
    """Consecutive tcId numbers of one golden file, 1, 2, 3, ... (GV-1.2)."""

    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n
