"""Name the cause of a failing case from what differs (spec/CF.md CF-3.3, CF-3.7).

A failing block (or element) is classified by comparing the kernel's output with the valid
output and with the outputs of named defects, all computed from the input by the oracle
(:mod:`torq_ref.mx`) with one step changed. Each cause maps to the spec clause it breaks
(``CAUSES``); the flags of a case play no part, so a FLOOR kernel is never told that it
breaks an RCEIL clause.

Block causes (the full table is CAUSES; spec/CF.md CF-3.7 says how one is chosen):

- the block holds a NaN / an Inf and the scale differs: ``NaNHandling`` / ``InfHandling``;
- scale wrong: ``ScaleNotClamped`` (a code below 0x00 wrapped), ``ZeroBlockScale`` (amax 0
  with a nonzero scale), ``ScaleByteOnly`` (codes right), ``OtherScaleRule`` (another rule's
  scale and codes; with wrong codes, the element causes against that rule), ``FloatLog2`` (the
  exponent through a float32 log2), ``RceilQuotientFlushed`` (a subnormal RCEIL quotient
  flushed), ``WrongScale`` (codes follow the wrong scale), ``WrongScaleAndCodes``; a scale cause
  whose codes do not follow its own scale is joined with their element causes
  (``FloatLog2+TieDirection``);
- scale right, codes wrong: ``DivisorClampedAt2^-126``, ``FlushedScaleCodeZero``,
  ``DivisorFlushedToZero`` for scale code 0x00, else the element causes of the differing elements, joined with ``+``:
  ``NonFiniteCode`` (a NaN / Inf code for a finite quotient), ``SignedZero`` (the sign of a
  zero lost), ``SubnormalFlush`` (a float32 subnormal input flushed), ``TieDirection`` (an exact
  tie to the odd neighbour), ``TieNeighbour`` (a quotient within 2^-20 of a tie sent across it),
  ``Saturation`` (beyond the largest element, not saturated), ``ElementRounding`` (otherwise).

NVFP4, fake-quant and gguf-block add their own (CAUSES). A block gets every candidate that fits
(:func:`block_candidates`); :func:`resolve` picks one per block for the whole call.
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx
from torq_ref.golden.defects import codes_for_scale, float_log2_scale, unclamped_scale

#: cause -> (clause, one-line description)
CAUSES: dict[str, tuple[str, str]] = {
    "NonFiniteCode": ("MX-3.2", "a finite quotient written as a NaN or Inf code (a division by a "
                                "flushed scale, or no saturation)"),
    "SignedZero": ("MX-3.3", "the sign of a zero lost: +0 for a negative value that rounds to "
                             "zero (or for -0.0)"),
    "NegativeZero": ("MX-3.3", "-0 written where +0 is expected (for +0.0 or a positive value "
                               "that rounds to zero); never acceptable, not even under "
                               "+unsigned-zero"),
    "SubnormalFlush": ("MX-5.3", "a float32 subnormal input flushed to zero (FTZ / DAZ)"),
    "TieDirection": ("MX-3.1", "an exact tie rounded to the odd neighbour (ties away / toward zero)"),
    "TieNeighbour": ("MX-3.1", "a quotient within 2^-20 of a tie sent across it (x + 0.5 rounded "
                               "in float32 before the floor, or the error compared in float32)"),
    "Saturation": ("MX-3.2", "a quotient beyond the largest element not saturated to +-max"),
    "ElementRounding": ("MX-5.3", "element codes differ from RNE of x / 2^(s-127) otherwise"),
    "NaNHandling": ("MX-5.2", "a block with a NaN does not get scale 0xFF"),
    "InfHandling": ("MX-4.6", "a block with an Inf gets neither 0xFF nor the satfinite 0xFE"),
    "FloatLog2": ("MX-4.7", "the block exponent from a float32 log2: one off next to 2^k"),
    "ScaleNotClamped": ("MX-4.6", "a scale code below 0x00 wrapped instead of clamped to 0x00"),
    "OtherScaleRule": ("", "the scale and codes of another scale rule (named in rule)"),
    "ZeroBlockScale": ("MX-4.6", "an all-zero block given a nonzero scale (amax 0 gives 0x00)"),
    "RceilQuotientFlushed": ("MX-4.3", "RCEIL: a subnormal fp32(amax / max) flushed to zero, so "
                                       "scale 0x00 where the quotient gives 0x01 or more"),
    "ScaleByteOnly": ("", "the codes are right, the scale byte is wrong"),
    "WrongScale": ("", "a wrong scale, codes consistent with it"),
    "WrongScaleAndCodes": ("", "a wrong scale and codes that follow no scale"),
    "DivisorClampedAt2^-126": ("MX-4.1", "scale code 0x00 divided by 2^-126 instead of 2^-127"),
    "FlushedScaleCodeZero": ("MX-4.1", "a scale-code-0x00 block flushed to zero"),
    "DivisorFlushedToZero": ("MX-4.1", "scale code 0x00: the divisor 2^-127 flushed to 0 (FTZ), "
                                       "so x / 0 saturates or gives NaN codes"),
    "NonPowerOfTwoScale": ("MX-4.1", "fake-quant values on a grid whose scale is not 2^k"),
    "ValueMismatch": ("MX-5.6", "fake-quant values that fit no block scale"),
    "ScaleOffsetPowerOfTwo": ("MX-5.6", "dequantized values all off by one power of two 2^k "
                                        "(the E8M0 exponent offset applied twice; CF-3.11)"),
    "Nvfp4ReciprocalScaleConvention": ("MX-9.2", "NVFP4 computed with g_enc = 1 / g (multiply), "
                                       "the reciprocal convention, where the decode g was given"),
    "Nvfp4DecodeScaleConvention": ("MX-9.4", "NVFP4 computed with the decode scale 1 / g_enc "
                                   "where the reciprocal convention was asked for"),
    "Nvfp4DivideByTensorScaleFirst": ("MX-9.2", "NVFP4 with x / g first, then an E4M3 block "
                                      "scale of amax / 6 (JAX's order)"),
    "Nvfp4NoTensorScale": ("MX-9.5", "NVFP4 computed without the tensor scale (g = 1, rule "
                                     "'none') where the amax rule's g was given"),
    "Nvfp4AmaxTensorScale": ("MX-9.5", "NVFP4 computed with the amax rule's tensor scale where "
                                       "no tensor scale (g = 1) was asked for"),
    "Nvfp4ZeroDenominator": ("MX-9.2", "NVFP4: value(S) * g is 0 in float32 (a flushed subnormal "
                                       "tensor scale), x / 0 saturated instead of q = +-0"),
    "GgufNibbleOrder": ("MX-8.3", "ggml block bytes with OCP pair order (2j, 2j+1) nibbles"),
    "OtherCastRounding": ("MX-4.10", "an E8M0 cast code of another named rounding mode (in rule)"),
    "CastCode": ("MX-4.10", "an E8M0 cast code that no named rounding mode gives"),
    "ConventionError": ("CF-1.2", "the kernel raised or broke the calling convention"),
}
RULE_CLAUSE = {"floor": "MX-4.2", "rceil": "MX-4.3", "ceil": "MX-4.4", "even": "MX-4.5", "mse": "MX-4.8",
               "cutlass": "MX-4.9"}
_ELEMENT_ORDER = ("NonFiniteCode", "SignedZero", "NegativeZero", "SubnormalFlush", "TieDirection", "TieNeighbour",
                  "Saturation", "ElementRounding")


def clause_of(cause: str, rule: str = "floor", nvfp4: bool = False) -> str:
    """The clause a cause breaks; scale causes without their own clause break the rule's."""
    c = CAUSES[cause.split("+")[0]][0]
    if c:
        return c
    return "MX-9.2" if nvfp4 else RULE_CLAUSE[rule]


def _ties(fmt: str) -> np.ndarray:
    v = np.unique(np.abs(mx.VALUE_TABLES[fmt][np.isfinite(mx.VALUE_TABLES[fmt])]))
    return (v[:-1] + v[1:]) / 2


def element_causes(x, q, exp, got, fmt: str) -> list:
    """Per differing element (C order), its cause. ``x`` the float32 inputs, ``q`` the exact
    float64 quotients x / 2^(s-127), ``exp`` / ``got`` the element codes (same shape)."""
    x = np.asarray(x).ravel()
    q = np.asarray(q, np.float64).ravel()
    exp = np.asarray(exp).ravel()
    got = np.asarray(got).ravel()
    idx = np.flatnonzero(exp != got)
    f = mx.get_format(fmt)
    dv_e = mx.decode(exp[idx] & ((1 << f.bits) - 1), fmt)
    dv_g = mx.decode(got[idx] & ((1 << f.bits) - 1), fmt)
    xi, qi = x[idx].astype(np.float64), q[idx]
    with np.errstate(invalid="ignore"):
        zero_both = (dv_e == 0) & (dv_g == 0)
        # which zero: +0 for -0 (SignedZero, acceptable under +unsigned-zero) or -0 for +0
        plus_for_minus = zero_both & np.signbit(dv_e) & ~np.signbit(dv_g)
        finite_q = np.isfinite(qi)       # an Inf quotient is never near a tie (Inf - m is Inf)
        sub = (xi != 0) & (np.abs(xi) < 2.0 ** -126) & (dv_g == 0) & (dv_e != 0)
        tie = finite_q & np.isin(np.abs(qi), _ties(fmt)) & ~np.isnan(dv_g) & (np.abs(dv_g - qi) == np.abs(dv_e - qi))
        # within 2^-20 of a tie and sent across it: the two codes are the tie's two neighbours
        vals = np.unique(np.abs(mx.VALUE_TABLES[fmt][np.isfinite(mx.VALUE_TABLES[fmt])]))
        mids = (vals[:-1] + vals[1:]) / 2
        k = np.clip(np.searchsorted(mids, np.abs(qi)), 1, mids.size) - 1
        k = np.where((k + 1 < mids.size) & (np.abs(np.abs(qi) - mids[np.minimum(k + 1, mids.size - 1)])
                                             < np.abs(np.abs(qi) - mids[k])), k + 1, k)
        lo, hi = vals[k], vals[k + 1]
        pair = ((np.abs(dv_e) == lo) & (np.abs(dv_g) == hi)) | ((np.abs(dv_e) == hi) & (np.abs(dv_g) == lo))
        neighbour = finite_q & ~tie & pair & (np.abs(np.abs(qi) - mids[k]) <= np.abs(qi) * 2.0 ** -20)
        sat = np.abs(qi) > f.max_value
        nonfinite = ~np.isfinite(dv_g) & np.isfinite(qi)
    out = []
    for k in range(idx.size):
        out.append("NonFiniteCode" if nonfinite[k] else "SignedZero" if plus_for_minus[k] else
                   "NegativeZero" if zero_both[k] else
                   "SubnormalFlush" if sub[k] else "TieDirection" if tie[k] else
                   "TieNeighbour" if neighbour[k] else "Saturation" if sat[k] else "ElementRounding")
    return out


def join(causes) -> str:
    s = set(causes)
    return "+".join(c for c in CAUSES if c in s) or "ElementRounding"


def rceil_quotient_is_subnormal(amax: float, fmt: str) -> bool:
    """RCEIL: fp32(amax / max_elem) is a float32 subnormal (FTZ hardware makes it 0, code 0)."""
    with np.errstate(under="ignore"):
        d = np.float32(amax) / np.float32(mx.get_format(fmt).max_value)
    return bool(0 < d < np.float32(2.0 ** -126))


def quotients(x, s: int) -> np.ndarray:
    return np.ldexp(np.asarray(x, np.float64), 127 - int(s))


def block_candidates(x, exp_s: int, exp_c, got_s: int, got_c, fmt: str, rule: str,
                     follows=(), rules=mx.AMAX_RULES) -> list:
    """Every (cause, rule) that explains a failing MX block, most specific first (CF-3.7).

    ``rule`` is the profile's rule; ``follows`` the other rules whose scales the kernel gives on
    most blocks where they differ from the profile's (:func:`rules_followed`): only those are
    candidates for a block whose scale another rule gives, so that a float-log2 kernel is not
    called a CEIL kernel on the blocks where the two agree."""
    x = np.asarray(x, np.float32).ravel()
    exp_c = np.asarray(exp_c).ravel()
    got_c = np.asarray(got_c).ravel()
    exp_s, got_s = int(exp_s), int(got_s)
    with np.errstate(invalid="ignore"):
        amax = float(np.max(np.abs(x.astype(np.float64))))
    if exp_s != got_s:
        if np.isnan(x).any():
            return [("NaNHandling", rule)]
        if np.isinf(x).any():
            return [("InfHandling", rule)]
        out = []
        rc = codes_for_scale(x, got_s, fmt) if got_s <= 254 else None
        if np.array_equal(got_c, exp_c) and not np.array_equal(rc, got_c):
            # the codes are those of the right scale, not of the kernel's byte: the defect is
            # in the byte alone, so only scale causes explain it (no element causes)
            return _scale_byte_causes(amax, exp_s, got_s, fmt, rule)

        def with_codes(scale_cause):
            """The scale cause, joined with the element causes of codes that do not follow the
            kernel's own scale (measured against the oracle's codes under that scale)."""
            if rc is None or np.array_equal(rc, got_c):
                return scale_cause
            return scale_cause + "+" + join(element_causes(x, quotients(x, got_s), rc, got_c, fmt))
        if exp_s == 0 and got_s == unclamped_scale(amax, fmt):
            out.append((with_codes("ScaleNotClamped"), rule))
        if amax == 0:
            out.append((with_codes("ZeroBlockScale"), rule))
        if np.array_equal(got_c, exp_c):
            out.append(("ScaleByteOnly", rule))
        rule_scale = {r: int(mx.scale_codes(np.array([amax]), fmt, r)[0]) for r in rules if r != rule}
        for r in follows:
            if rule_scale.get(rule_parts(r)[0]) == got_s:
                out.append(("OtherScaleRule", r) if np.array_equal(rc, got_c) else
                           (join(element_causes(x, quotients(x, got_s), rc, got_c, fmt)), r))
        if got_s == float_log2_scale(amax, fmt, rule):
            out.append((with_codes("FloatLog2"), rule))
        if rule == "rceil" and got_s == 0 and rceil_quotient_is_subnormal(amax, fmt):
            out.append((with_codes("RceilQuotientFlushed"), rule))
        if rc is not None and np.array_equal(got_c, rc):
            followed = {p for f in follows for p in rule_parts(f)}
            out += [("OtherScaleRule", r) for r, sc in rule_scale.items()
                    if sc == got_s and r not in followed]
        if rc is not None:
            out.append((with_codes("WrongScale"), rule))
        return out or [("WrongScaleAndCodes", rule)]
    out = []
    if exp_s == 0:
        x64 = x.astype(np.float64)
        if np.array_equal(got_c, mx.encode(np.ldexp(x64, 126), fmt)):
            out.append(("DivisorClampedAt2^-126", rule))
        bits = (1 << mx.get_format(fmt).bits) - 1
        if (mx.decode(got_c & bits, fmt) == 0).all() and (mx.decode(exp_c, fmt) != 0).any():
            out.append(("FlushedScaleCodeZero", rule))
        d = got_c != exp_c
        dv = mx.decode(got_c[d] & bits, fmt)
        with np.errstate(invalid="ignore"):
            by_zero = (np.abs(dv) == mx.get_format(fmt).max_value) | ~np.isfinite(dv) | \
                ((x[d] == 0) & (dv == 0))
        if d.any() and by_zero.all() and (np.abs(dv) == mx.get_format(fmt).max_value).any() | \
                (~np.isfinite(dv)).any():
            out.append(("DivisorFlushedToZero", rule))
    if exp_s == 255:
        return out + [("NaNHandling" if np.isnan(x).any() else "InfHandling", rule)]
    return out + [(join(element_causes(x, quotients(x, exp_s), exp_c, got_c, fmt)), rule)]


def _scale_byte_causes(amax: float, exp_s: int, got_s: int, fmt: str, rule: str) -> list:
    """The causes of a wrong scale byte written beside the right scale's codes: a code below
    0x00 wrapped in the byte alone (ScaleNotClamped), else ScaleByteOnly. The scale models
    whose codes follow their own scale (FloatLog2, another rule) do not fit such a block."""
    out = []
    if exp_s == 0 and got_s == unclamped_scale(amax, fmt):
        out.append(("ScaleNotClamped", rule))
    return out + [("ScaleByteOnly", rule)]


def classify_block(x, exp_s: int, exp_c, got_s: int, got_c, fmt: str, rule: str,
                   follows=(), rules=mx.AMAX_RULES):
    """(cause, rule) of one failing block on its own: the first candidate."""
    return block_candidates(x, exp_s, exp_c, got_s, got_c, fmt, rule, follows, rules)[0]


#: a rule is followed only on at least this many blocks of a call that separate it from the
#: profile's rule: a few coincidences are no evidence
MIN_EVIDENCE = 4


def rules_followed(x, got_s, fmt: str, rule: str, block: int = 32,
                   rules=mx.AMAX_RULES) -> tuple:
    """The other rules the kernel's scales follow as a whole, best first. x (rows, K), got_s
    (rows, K / block).

    A rule r is followed when, on the blocks where r's scale differs from the profile rule's,
    the kernel gives r's scale on at least half of them and on at least MIN_EVIDENCE. Of two
    followed rules, one is dropped when on the blocks where the two differ the kernel gives
    the other's scale more often; two that no block of the call separates are named together,
    "ceil/even" (the evidence does not say which)."""
    b = np.asarray(x, np.float64).reshape(got_s.shape + (block,))
    with np.errstate(invalid="ignore"):
        amax = np.abs(b).max(-1)
    # MSE (MX-4.8) needs the block values; the amax rules need only amax
    base = mx.block_scale_codes(b, fmt, rule) if rule == "mse" else mx.scale_codes(amax, fmt, rule)
    scales = {r: mx.scale_codes(amax, fmt, r) for r in rules if r != rule}
    support = {}
    for r, sr in scales.items():
        d = sr != base
        agree = int((got_s[d] == sr[d]).sum())
        if agree >= MIN_EVIDENCE and 2 * agree >= int(d.sum()):
            support[r] = int((got_s == sr).sum())
    kept = [r for r in support if not any(_beats(got_s, scales[o], scales[r]) for o in support if o != r)]
    kept.sort(key=lambda r: -support[r])
    return tuple(_join_inseparable(kept, lambda r: scales[r]))


def _beats(got, a, b) -> bool:
    """On the blocks where scales a and b differ, got equals a more often than b."""
    d = a != b
    return bool(d.any()) and int((got[d] == a[d]).sum()) > int((got[d] == b[d]).sum())


def _join_inseparable(names, key) -> list:
    """Names whose evidence (key(name), an array) is identical, joined with "/" in AMAX_RULES order."""
    out, used = [], set()
    for r in names:
        if r in used:
            continue
        same = [o for o in names if o not in used and np.array_equal(key(o), key(r))]
        used.update(same)
        out.append("/".join(sorted(same, key=_rule_order)))
    return out


def _rule_order(r: str) -> int:
    return mx.AMAX_RULES.index(r) if r in mx.AMAX_RULES else len(mx.AMAX_RULES)


def rule_parts(name: str) -> list:
    """The rules of a name from rules_followed or accepted_rule_namer ("ceil/even" -> both)."""
    return name.split("/") if name else []


def accepted_rule_namer(match: dict):
    """Names the accepted rule of a block from the evidence of its whole call. ``match`` is
    accepted rule -> bool array over the call's blocks (the kernel's block equals that rule's
    output). The returned function takes the rules one block matches and gives the one with
    the most blocks of the call, joined with any other it matches that no block of the call
    separates from it ("ceil/even"), not the first in a fixed order."""
    support = {r: int(np.count_nonzero(m)) for r, m in match.items()}

    def name(matching) -> str:
        best = max(matching, key=lambda r: (support.get(r, 0), -_rule_order(r)))
        same = [r for r in matching if r == best or np.array_equal(match[r], match[best])]
        return "/".join(sorted(same, key=_rule_order))
    return name


def resolve(candidate_lists) -> list:
    """One (cause, rule) per block: of a block's candidates, the one that explains the most
    failing blocks of the run (the earlier candidate on a tie); a named cause is
    preferred to a generic one (GENERIC). A kernel has few defects, so the cause that fits
    everywhere is the one it has."""
    support: dict = {}
    for c in candidate_lists:
        for k in set(c):
            support[k] = support.get(k, 0) + 1

    def rank(c, i):
        cause = c[i][0]
        # an exact explanation (one cause) beats a compound one, a named cause a generic one
        return ("+" not in cause, cause.split("+")[0] not in GENERIC, support[c[i]], -i)
    return [c[max(range(len(c)), key=lambda i: rank(c, i))] for c in candidate_lists]


#: causes that only say that something differs
GENERIC = ("WrongScale", "WrongScaleAndCodes", "ScaleByteOnly", "ElementRounding")
