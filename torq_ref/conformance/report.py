"""Conformance reports and copy-paste reproductions (spec/CF.md section 4)."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from dataclasses import field as dc_field

from torq_ref.golden.flags import FLAGS

STATUSES = ("pass", "acceptable", "fail")



@dataclass
class CaseResult:
    """One case: where it comes from, its flags, how it went, and if it failed why."""

    source: str                 # "mx_quantize.json#17" or "bulk/quantize_e2m1_floor[3,1]"
    flags: list
    status: str                 # pass | acceptable | fail
    clause: str = ""            # the clause a failure breaks
    output: str = ""            # the output that differs
    detail: str = ""
    repro: str = ""
    matched: list = dc_field(default_factory=list)   # acceptable / invalid flags matched
    count: int = 1              # bulk passes are aggregated into one result
    cause: str = ""             # what differs, by name (causes.CAUSES; CF-3.7)
    rule: str = ""              # the other scale rule the cause is reported against, if any


@dataclass
class Report:
    kind: str
    profile: str
    level: str
    fmt: str
    results: list = dc_field(default_factory=list)
    max_failures: int = 10

    @property
    def passed(self) -> bool:
        """CF-4.1: at least one case and none failed (results whose counts add up to no case, a
        bulk result of count 0 included, are not a pass: a report never passes about nothing, ST-4.2)."""
        return sum(r.count for r in self.results) > 0 and all(r.status != "fail" for r in self.results)

    @property
    def counts(self) -> dict:
        c: Counter = Counter()
        for r in self.results:
            c[r.status] += r.count
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def per_flag(self) -> dict:
        """flag -> {pass, acceptable, fail} counts (a case counts under each of its flags)."""
        out: dict = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
        for r in self.results:
            for f in r.flags:
                out[f][r.status] += r.count
        return dict(sorted(out.items()))

    @property
    def per_clause(self) -> dict:
        """clause -> {pass, acceptable, fail}; a case counts under the clauses of its flags and,
        when it fails, under the clause it breaks."""
        out: dict = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
        for r in self.results:
            clauses = {FLAGS[f].clause for f in r.flags if f in FLAGS}
            if r.status == "fail" and r.clause:
                clauses = {r.clause}
            for c in clauses:
                out[c][r.status] += r.count
        return dict(sorted(out.items(), key=lambda kv: [int(p) if p.isdigit() else p for p in
                                                        kv[0].replace("-", ".").split(".")]))

    @property
    def failures(self) -> list:
        return [r for r in self.results if r.status == "fail"]

    @property
    def known_defects(self) -> dict:
        """KnownDefect* flag -> number of failing cases whose output matched that defect."""
        c: Counter = Counter()
        for r in self.failures:
            for m in r.matched:
                if m.startswith("KnownDefect"):
                    c[m] += r.count
        return dict(c)

    @property
    def per_cause(self) -> dict:
        """cause -> {"fail": n, "acceptable": n, "first": source of the first case} for every
        failing or acceptable case that carries a cause, however many (CF-3.7)."""
        out: dict = {}
        for r in self.results:
            if r.status == "pass" or not r.cause:
                continue
            key = f"{r.cause}[{r.rule}]" if r.rule else r.cause
            d = out.setdefault(key, {"fail": 0, "acceptable": 0, "first": r.source, "clause": r.clause})
            d[r.status] += r.count
        return dict(sorted(out.items(), key=lambda kv: (-kv[1]["fail"], kv[0])))

    def failing_causes(self) -> set:
        return {r.cause for r in self.failures}

    def failing_flags(self) -> set:
        return {f for r in self.failures for f in r.flags}

    def failing_clauses(self) -> set:
        return {r.clause for r in self.failures}

    def summary(self) -> str:
        c = self.counts
        head = (f"conformance {self.kind} ({self.fmt}), profile {self.profile}, level {self.level}: "
                f"{'PASSED' if self.passed else 'FAILED'}  pass {c['pass']}  acceptable "
                f"{c['acceptable']}  fail {c['fail']}")
        lines = [head]
        for clause, cc in self.per_clause.items():
            lines.append(f"  {clause:8s} pass {cc['pass']:6d}  acceptable {cc['acceptable']:5d}  "
                         f"fail {cc['fail']:6d}")
        bad = {f: v for f, v in self.per_flag.items() if v["fail"]}
        if bad:
            lines.append("  failing flags: " + ", ".join(f"{f} ({v['fail']})" for f, v in bad.items()))
        causes = self.per_cause
        if causes:
            lines.append("  causes: " + ", ".join(
                f"{c} ({v['clause']}) fail {v['fail']}" + (f" acceptable {v['acceptable']}" if v["acceptable"] else "")
                + f", first {v['first']}" for c, v in causes.items()))
        if self.known_defects:
            lines.append("  outputs matching known defects: " +
                         ", ".join(f"{k} ({v})" for k, v in self.known_defects.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self.summary()]
        for r in self.failures[: self.max_failures]:
            parts.append(f"\n--- FAIL {r.source} flags={r.flags} breaks {r.clause} "
                         f"({r.output}, cause {r.cause or '-'}"
                         f"{' under ' + r.rule if r.rule else ''}): {r.detail}\n{r.repro}")
        more = sum(r.count for r in self.failures) - min(self.max_failures, len(self.failures))
        if more > 0:
            parts.append(f"\n... and {more} more failing cases")
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "profile": self.profile, "level": self.level, "fmt": self.fmt,
                "passed": self.passed, "counts": self.counts, "perFlag": self.per_flag,
                "perClause": self.per_clause, "knownDefects": self.known_defects,
                "perCause": self.per_cause,
                "failures": [{"source": r.source, "flags": r.flags, "clause": r.clause,
                              "cause": r.cause, "rule": r.rule,
                              "output": r.output, "detail": r.detail, "repro": r.repro}
                             for r in self.failures[: self.max_failures]]}


def hexwords(arr) -> str:
    from torq_ref.golden.hexio import to_hex
    return to_hex(arr)


def repro_snippet(call: str, inputs: dict, expected: dict, got: dict, clause: str) -> str:
    """CF-4.2: copy-paste Python that rebuilds the inputs from hex and shows expected vs got."""
    lines = ["import numpy as np",
             "def H(s, dt, shape):  # hex words -> array (float32: 8 digits, uint8: 2, float64: 16)",
             "    v = {'float32': np.uint32, 'uint8': np.uint8, 'float64': np.uint64}[dt]",
             "    return np.array([int(w, 16) for w in s.split()], v).view(dt).reshape(shape)"]
    for name, arr in inputs.items():
        lines.append(f"{name} = H({hexwords(arr)!r}, {arr.dtype.name!r}, {tuple(arr.shape)})")
    lines.append(call if "=" in call else f"out = {call}")
    for name, arr in expected.items():
        lines.append(f"# expected {name}: {hexwords(arr) if arr is not None else 'any'}")
    for name, arr in got.items():
        lines.append(f"# got      {name}: {hexwords(arr) if arr is not None else '?'}")
    lines.append(f"# breaks {clause}: {FLAG_CLAUSE_TEXT.get(clause, '')}")
    return "\n".join(lines)


#: One-line gist of the clauses failures cite (spec/MX.md and spec/CF.md hold the full text).
FLAG_CLAUSE_TEXT = {
    "MX-3.1": "elements round to nearest, ties to even",
    "MX-3.2": "overflow saturates to +-max",
    "MX-3.3": "negative values that round to zero keep the sign",
    "MX-3.4": "Inf saturates, NaN gives the NaN code",
    "MX-4.1": "scale code s means 2^(s-127); s = 0 is 2^-127, not zero",
    "MX-4.2": "FLOOR: s = 127 + floor(log2 amax) - emax",
    "MX-4.3": "RCEIL: s = 127 + ceil(log2 fp32(amax / max_elem))",
    "MX-4.4": "CEIL: s = 127 + E - emax + [m > 1]",
    "MX-4.5": "EVEN: s = 127 + E - emax + [m >= 2 - 2^-(mbits+1)]",
    "MX-4.6": "range: amax 0 -> 0, clamp at 0, Inf -> 0xFF (0xFE satfinite)",
    "MX-4.7": "E from the exponent bits, never a float log2",
    "MX-5.2": "a NaN element makes the scale 0xFF",
    "MX-5.3": "element i = encode(x_i / 2^(s-127)), the division exact",
    "MX-5.4": "NaN-scale block element codes",
    "MX-5.6": "dequantize = value(code) * 2^(s-127); 0xFF -> NaN",
    "MX-8.1": "element 2i in the low nibble",
    "MX-8.2": "cuBLAS 128x4 scale swizzle, zero padded",
    "MX-8.4": "triton_kernels HopperMXScaleLayout (num_warps w)",
    "MX-8.5": "triton_kernels BlackwellMXScaleLayout: 128x4 tiles, K padded to 8",
    "MX-8.6": "triton_kernels CDNA4MXScaleLayout (gfx950 preshuffle)",
    "MX-8.7": "every padding byte of a scale layout is 0x00",
    "MX-8.9": "aiter shuffle_scale / e8m0_shuffle: the CDNA4 map, rows padded to 256",
    "MX-8.10": "aiter MoE a16w4 scale shuffle (experts, gate/up pairing)",
    "MX-8.3": "ggml block_mxfp4: the E8M0 byte, then qs[j] = code j | code j+16 << 4",
    "MX-9.2": "NVFP4 float32 RNE steps",
    "MX-9.4": "NVFP4 reciprocal convention: sb = amax/6 * g_enc, denom = S / g_enc",
    "CF-1.2": "kind calling convention (shapes, dtypes)",
    "CF-3.6": "dot_scaled within the accumulation tolerance",
}
