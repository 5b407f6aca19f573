"""The e8m0-cast kind (spec/CF.md CF-1.2, CF-3.12; spec/MX.md MX-4.10):

    fn(x float32 (n,)) -> uint8 (n,)    the E8M0 code of each positive float32, +Inf or NaN

judged bit for bit against the group of mx_e8m0_cast.json whose rounding mode the profile
names (Profile.e8m0_cast). A wrong code that another named mode gives is OtherCastRounding
(its rule naming the mode), any other CastCode.
"""
from __future__ import annotations

import numpy as np

from torq_ref import mx
from torq_ref.golden.hexio import from_hex

from .causes import clause_of
from .common import as_u8
from .judge import call_kernel
from .report import CaseResult, hexwords, repro_snippet


def run_e8m0_cast(fn, vs, profile, fmt, use_bulk):
    mode = profile.e8m0_cast
    groups = [g for g in vs.docs["mx_e8m0_cast.json"]["testGroups"]
              if g["type"] == "E8m0Cast" and g["rounding"] == mode]
    if not groups:
        raise ValueError(f"no e8m0-cast vectors for rounding mode {mode!r}")
    tests = groups[0]["tests"]
    x = np.concatenate([from_hex(t["x"], "float32") for t in tests])            # (n,)
    got, failed = call_kernel(lambda: as_u8("codes", fn(x.copy()), x.shape), "mx_e8m0_cast.json",
                              ["Convention"], len(tests))
    if failed:
        return [failed]
    others = {m: mx.e8m0_cast(x, m) for m in mx.E8M0_CAST_MODES if m != mode}
    out = []
    for i, t in enumerate(tests):
        src = f"mx_e8m0_cast.json#{t['tcId']}"
        exp = from_hex(t["code"], "uint8")
        g = got[i:i + 1]
        if (g == exp).all():
            out.append(CaseResult(src, t["flags"], "pass"))
            continue
        alt = [m for m, c in others.items() if c[i] == g[0]]
        cause, rule = ("OtherCastRounding", alt[0]) if alt else ("CastCode", "")
        clause = clause_of(cause)
        out.append(CaseResult(src, t["flags"], "fail", clause, "code",
                              f"x={hexwords(x[i:i + 1])} ({float(x[i]):.9g}) expected {hexwords(exp)} "
                              f"got {hexwords(g)} ({mode})" + (f"; the {rule} mode's code" if rule else ""),
                              repro_snippet("fn(x)", {"x": x[i:i + 1]}, {"code": exp}, {"code": g}, clause),
                              cause=cause, rule=rule))
    return out
