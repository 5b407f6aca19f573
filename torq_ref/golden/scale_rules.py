"""``mx_scale_rules.json``: every element format under every amax scale rule, on the blocks
where the rules part (spec/GV.md GV-2.7; spec/MX.md MX-4.2 .. MX-4.5, MX-4.9).

The rules differ only in where the block exponent goes up by one:

- FLOOR and CEIL at m = 1 (amax a power of two or just above);
- EVEN at m = 2 - 2^-(mbits+1), CUTLASS at m = 1.75 (for E2M1 the same point);
- RCEIL at amax / max_elem crossing a power of two: m = max_elem / 2^emax, which is 1.5 for
  E2M1 (6), 1.875 for E2M3 (7.5), 1.75 for E3M2 (28) and E4M3 (448): an ``amax / max`` rule
  and a ``floor(log2 amax) - emax`` rule part wherever max_elem is not a power of two.

Each boundary m is written at three block exponents (2^0, 2^-20, 2^30) with its float32
neighbours, in a block [amax, -0.3 amax, 0.55 amax, 0.1 amax, 0, ...]; then the 32 values of
Triton issue 6054 ("6, 0, 0.24, 0.25, 0.75, 0.99, 1.2, 1.3" four times), whose answer differs
between implementations of different rules. The groups of one format share their inputs in
order (GV-2.5), so a harness can compare a block with the same block under another rule.
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx

from .cases import InputCase

#: the scale rules of the file: the shared amax rules and CUTLASS (MX-4.9)
RULES = mx.AMAX_RULES + ("cutlass",)
TRITON_6054 = np.tile(np.array([6, 0, 0.24, 0.25, 0.75, 0.99, 1.2, 1.3], np.float32), 4)


def boundary_significands(fmt: str) -> list:
    """(m, why) of the significands where some rule's exponent steps up, for one format."""
    f = mx.get_format(fmt)
    out = {1.0: "FLOOR / CEIL step (a power of two)",
           1.75: "CUTLASS step (fp32 mantissa bit 21)",
           2.0 - 2.0 ** -(f.mbits + 1): "EVEN step",
           f.max_value / 2.0 ** f.emax: "RCEIL step (amax / max a power of two)",
           1.5: "1.5 x 2^k (E2M1's max significand)"}
    return sorted(out.items())


def cases(fmt: str) -> list:
    """The inputs of one format's groups, in order."""
    out = []
    for m, why in boundary_significands(fmt):
        for k in (0, -20, 30):
            a = np.float32(np.ldexp(m, k + mx.get_format(fmt).emax))
            for v, tag in ((np.nextafter(a, np.float32(0)), "one ulp below"), (a, "at"),
                           (np.nextafter(a, np.float32(np.inf)), "one ulp above")):
                x = np.zeros(32, np.float32)
                x[:4] = [v, -0.3 * v, 0.55 * v, 0.1 * v]
                if not np.isfinite(x).all():
                    continue
                out.append(InputCase(f"amax {tag} {m!r} x 2^{k + mx.get_format(fmt).emax} ({why})",
                                     ["ScaleRuleBoundary"], x.astype(np.float32)))
    out.append(InputCase("Triton issue 6054: 6, 0, 0.24, 0.25, 0.75, 0.99, 1.2, 1.3 x 4",
                         ["Triton6054"], TRITON_6054.copy()))
    return out


def scale_rules_doc(quantize_tests, doc) -> dict:
    """The document: one MxQuantize group per (format, rule); ``quantize_tests`` writes the
    tests of one input under one rule (build._quantize_tests, without defect variants)."""
    from .cases import ELEMENT_FORMATS, CaseIds as _Ids

    ids = _Ids()
    groups = []
    for fmt in ELEMENT_FORMATS:
        inputs = cases(fmt)
        for rule in RULES:
            tests = [t for c in inputs for t in quantize_tests(c, fmt, rule, ids, defects=False)]
            groups.append({"type": "MxQuantize", "format": fmt, "blockSize": 32, "scaleRule": rule,
                           "layout": "unpacked", "tests": tests})
    header = ["Block quantize under every amax scale rule, every element format: the blocks",
              "where the rules part (the significand of amax at each rule's step and one float32",
              "ulp either side, at three block exponents) and the 32 values of Triton issue 6054.",
              "Groups of one format share their inputs in order."]
    return doc("MX scale rules", header, groups)


def e8m0_cast_inputs() -> list:
    """(x float32, comment, flags) of the cast vectors: every power of two 2^-149 .. 2^127, the
    significands where the modes part (1 + ulp, 1.25, 1.5 - ulp, 1.5, 1.5 + ulp, 1.75, 2 - ulp)
    at a few exponents, FLT_MAX, +Inf and NaN."""
    f32 = np.float32
    out = [(f32(np.ldexp(1.0, k)), f"2^{k}", ["PowerOfTwo"]) for k in range(-149, 128)]
    one = f32(1.0)
    sig = [(np.nextafter(one, f32(2)), "1 + ulp"), (f32(1.25), "1.25"),
           (np.nextafter(f32(1.5), one), "1.5 - ulp"), (f32(1.5), "1.5 (the nearest mode's tie)"),
           (np.nextafter(f32(1.5), f32(2)), "1.5 + ulp"), (f32(1.75), "1.75"),
           (np.nextafter(f32(2.0), one), "2 - ulp")]
    for k in (-140, -127, -126, -20, 0, 1, 20, 126, 127):
        for m, why in sig:
            out.append((f32(np.ldexp(np.float64(m), k)), f"{why} x 2^{k}", ["ScaleRuleBoundary"]))
    out += [(np.finfo(np.float32).max, "FLT_MAX", ["ExtremeMagnitude"]),
            (f32(np.inf), "+Inf", ["NonFinite"]), (f32(np.nan), "NaN", ["NonFinite"])]
    return out


def e8m0_cast_doc(doc) -> dict:
    """``mx_e8m0_cast.json``: one E8m0Cast group per rounding mode (GV-2.8, MX-4.10)."""
    from .cases import CaseIds as _Ids
    from .hexio import to_hex

    ids = _Ids()
    inputs = e8m0_cast_inputs()
    groups = []
    for mode in mx.E8M0_CAST_MODES:
        tests = []
        for x, comment, flags in inputs:
            xa = np.array([x], np.float32)
            tests.append({"tcId": ids(), "comment": comment, "flags": list(flags), "x": to_hex(xa),
                          "code": to_hex(mx.e8m0_cast(xa, mode)), "result": "valid"})
        groups.append({"type": "E8m0Cast", "rounding": mode, "tests": tests})
    header = ["The scalar float32 -> E8M0 cast under each named rounding mode: one positive",
              "float32 (or +Inf, NaN), its E8M0 code. Zero and negative inputs have no E8M0 value",
              "and are not tested (implementations differ: torch writes 0x00 for 0, ml_dtypes 0xFF)."]
    return doc("E8M0 cast", header, groups)
