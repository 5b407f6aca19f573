"""The harness against planted bugs and an independent correct kernel (spec/CF.md).

The kernels here do NOT use torq_ref.mx: they are a second formulation of OCP MX written from
docs/mx-format.md (float64 arithmetic, the exponent from frexp, RNE via np.round on a grid step), with
switches that plant one known bug each.
"""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.conformance import KindError, ProfileError, check
from torq_ref.conformance.kinds import dot_tolerance

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])


def _e2m1_codes(q, ties="even"):
    """float64 quotients -> E2M1 codes (saturating)."""
    a = np.minimum(np.abs(q), 6.0)
    step = np.where(a < 2, 0.5, np.where(a < 4, 1.0, 2.0))
    u = a / step
    r = np.round(u) if ties == "even" else np.floor(u + 0.5)
    v = np.minimum(r * step, 6.0)
    mag = np.searchsorted(E2M1, v)
    return (mag | np.where(np.signbit(q), 8, 0)).astype(np.uint8)


def make_quantize(rule="floor", ties="even", float_log2=False, divisor_floor=None,
                  flush_code0=False):
    def quantize(x):
        rows, k = x.shape
        b = x.astype(np.float64).reshape(rows, k // 32, 32)            # (rows, nb, 32)
        with np.errstate(invalid="ignore"):
            amax = np.abs(b).max(-1)
        finite = np.where(np.isfinite(amax), amax, 0.0)
        if rule == "floor":
            if float_log2:
                with np.errstate(divide="ignore"):
                    e = np.floor(np.log2(finite.astype(np.float32))).astype(np.float64)
                e = np.where(finite > 0, e, 0)
            else:
                e = np.frexp(finite)[1] - 1.0
            code = 127 + e - 2
        else:   # rceil: exponent of fp32(amax / 6), rounded up
            d = (finite.astype(np.float32) / np.float32(6)).astype(np.float64)
            m, ex = np.frexp(d)
            code = np.where(d > 0, 127 + np.where(m == 0.5, ex - 1, ex), 0)   # fp32 quotient underflow -> 0
        code = np.where(finite > 0, np.clip(code, 0, 254), 0)
        code = np.where(np.isnan(amax) | np.isinf(amax), 255, code).astype(np.uint8)
        div = np.ldexp(1.0, code.astype(np.int64) - 127)
        if divisor_floor is not None:
            div = np.maximum(div, divisor_floor)
        q = b / div[..., None]
        codes = _e2m1_codes(q, ties)
        if flush_code0:
            codes = np.where((code == 0)[..., None], 0, codes).astype(np.uint8)
        return code, codes.reshape(rows, k)
    return quantize


def make_dequantize(zero_as_zero=False):
    def dequantize(s, c):
        vals = np.where(c & 8, -1.0, 1.0) * E2M1[c & 7]
        sc = np.ldexp(1.0, s.astype(np.int64) - 127)
        if zero_as_zero:
            sc = np.where(s == 0, 0.0, sc)
        sc = np.where(s == 255, np.nan, sc)
        return (vals * np.repeat(sc, 32, axis=1)).astype(np.float32)
    return dequantize


def pack_low_first(c):
    return (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)


def pack_high_first(c):
    return ((c[:, 0::2] << 4) | c[:, 1::2]).astype(np.uint8)


def swizzle(s):
    rows, cols = s.shape
    pr, pc = -(-rows // 128) * 128, -(-cols // 4) * 4
    out = np.zeros(pr * pc, np.uint8)
    for r in range(rows):
        for c in range(cols):
            out[((r // 128) * (pc // 4) + c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4] = s[r, c]
    return out


def dot(a_s, a_c, b_s, b_c):
    deq = make_dequantize()
    a = deq(a_s, a_c).astype(np.float32)
    b = deq(b_s, b_c).astype(np.float32)
    return a @ b.T                                          # float32 accumulate


# --------------------------------------------------------------------- the correct kernel passes

@pytest.mark.clause("CF-1.1", "CF-3.1", "CF-4.1")
@pytest.mark.parametrize("profile, rule", [("ocp", "floor"), ("nvidia", "rceil")])
def test_independent_quantize_passes(profile, rule):
    rep = check("quantize", make_quantize(rule), profile=profile)
    assert rep.passed, str(rep)
    assert rep.counts["fail"] == 0 and rep.counts["pass"] > 800
    # NaN-block element codes differ from torq-ref's; they are acceptable, not failures
    assert rep.counts["acceptable"] >= 1 and rep.per_flag["NaNBlock"]["acceptable"] == 1


@pytest.mark.clause("CF-3.1", "CF-3.2", "CF-3.6", "CF-1.1")
def test_independent_other_kinds_pass():
    assert check("dequantize", make_dequantize()).passed
    assert check("pack", pack_low_first).passed
    assert check("swizzle", swizzle).passed
    rep = check("dot_scaled", dot)
    assert rep.passed, str(rep)
    assert check("encode", lambda x: _e2m1_codes(x.astype(np.float64))).passed


# --------------------------------------------------------------------- planted bugs

def _fail_clauses(rep):
    return {r.clause for r in rep.failures}


@pytest.mark.clause("CF-3.3", "CF-4.2")
def test_ties_away_fails_on_tie_with_rounding_clause():
    rep = check("quantize", make_quantize(ties="away"))
    assert not rep.passed
    assert rep.per_flag["Tie"]["fail"] > 0 and rep.per_flag["TieNeighbour"]["fail"] == 0
    tie = [r for r in rep.failures if "Tie" in r.flags]
    assert {r.clause for r in tie} == {"MX-3.1"} and {r.output for r in tie} == {"codes"}
    assert "breaks MX-3.1" in tie[0].repro and "H('" in tie[0].repro
    enc = check("encode", lambda x: _e2m1_codes(x.astype(np.float64), "away"))
    assert "Tie" in enc.failing_flags() and not enc.failing_flags() & {"TieNeighbour", "Saturation"}
    assert enc.known_defects.get("KnownDefectTiesAway", 0) > 0


@pytest.mark.clause("CF-3.3", "CF-3.4")
def test_high_nibble_first_fails_pack_order():
    rep = check("pack", pack_high_first)
    assert not rep.passed and _fail_clauses(rep) == {"MX-8.1"}
    assert rep.failing_flags() == {"PackOrder"}
    assert rep.known_defects == {"KnownDefectHighNibbleFirst": 2}


@pytest.mark.clause("CF-3.3")
def test_float_log2_fails_power_of_two():
    rep = check("quantize", make_quantize(float_log2=True))
    assert not rep.passed
    assert rep.per_flag["PowerOfTwo"]["fail"] > 0
    p2 = [r for r in rep.failures if "PowerOfTwo" in r.flags]
    assert {r.clause for r in p2} == {"MX-4.7"} and {r.output for r in p2} == {"scale"}


@pytest.mark.clause("CF-3.3", "CF-3.4", "CF-3.2")
def test_scale_zero_decoded_as_zero_fails():
    rep = check("dequantize", make_dequantize(zero_as_zero=True))
    assert not rep.passed
    assert rep.failing_flags() == {"ScaleCodeZero"} and _fail_clauses(rep) == {"MX-4.1"}
    assert rep.known_defects == {"KnownDefectScaleZeroAsZero": 1}


@pytest.mark.clause("CF-3.3")
@pytest.mark.parametrize("kernel", [make_quantize(divisor_floor=2.0 ** -126),
                                    make_quantize(flush_code0=True)],
                         ids=["divisor-clamped-at-2^-126", "flush-code-0-blocks"])
def test_scale_code_zero_bugs_fail(kernel):
    rep = check("quantize", kernel)
    assert not rep.passed
    assert rep.per_flag["ScaleCodeZero"]["fail"] > 0
    z = [r for r in rep.failures if "ScaleCodeZero" in r.flags]
    # a code-0 block whose expected codes are all signed zeros shows only the sign of zero
    assert z and {r.clause for r in z if r.cause != "SignedZero"} == {"MX-4.1"}
    assert {m for r in z for m in r.matched} & {"DivisorClampedAt2^-126", "FlushedScaleCodeZero"} and {r.output for r in z} == {"codes"}
    # blocks far from code 0 are untouched
    assert rep.per_flag["Saturation"]["fail"] == 0


# --------------------------------------------------------------------- profiles and reports

@pytest.mark.clause("CF-2.1", "CF-2.2")
def test_profiles_select_the_rule_and_accept_satfinite():
    rc = make_quantize("rceil")
    assert not check("quantize", rc, profile="ocp").passed       # RCEIL is not FLOOR
    def satfinite(x):
        s, c = rc(x)
        inf = np.isinf(x.reshape(x.shape[0], -1, 32)).any(-1) & ~np.isnan(
            x.reshape(x.shape[0], -1, 32)).any(-1)
        s = np.where(inf, 0xFE, s).astype(np.uint8)
        c = np.where(np.repeat(inf, 32, 1), _e2m1_codes(x / 2.0 ** 127), c).astype(np.uint8)
        return s, c
    rep = check("quantize", satfinite, profile="nvidia")
    assert rep.passed, str(rep)
    assert rep.per_flag["InfBlock"]["acceptable"] == 2
    with pytest.raises(ProfileError):
        check("quantize", rc, profile="amd")


@pytest.mark.clause("CF-2.3")
def test_any_rule_profile_accepts_other_rules():
    rep = check("quantize", make_quantize("rceil"), profile="any-rule")
    assert rep.passed and rep.counts["acceptable"] > 100


@pytest.mark.clause("CF-1.2")
def test_convention_errors_are_failures():
    rep = check("quantize", lambda x: make_quantize()(x)[1])          # forgot the scales
    assert not rep.passed and _fail_clauses(rep) == {"CF-1.2"}
    rep = check("pack", lambda c: c.astype(np.float32))
    assert "CF-1.2" in _fail_clauses(rep)
    with pytest.raises(KindError):
        check("transpose", pack_low_first)
    with pytest.raises(KindError):
        check("pack", pack_low_first, level="exhaustive")


@pytest.mark.clause("CF-3.5")
def test_bulk_failures_are_reported_per_block():
    def off_by_one_late(x):       # correct, except the last block of every row
        s, c = make_quantize()(x)
        if x.shape[1] > 32:
            s[:, -1] += 1
        return s, c
    rep = check("quantize", off_by_one_late)
    bulk = [r for r in rep.failures if r.source.startswith("bulk/")]
    assert bulk and "block 7" in bulk[0].source and sum(r.count for r in bulk) == 64
    assert check("quantize", off_by_one_late, level="quick").passed


@pytest.mark.clause("CF-3.6")
def test_dot_tolerance_bounds():
    c = np.array([[1.0]]); bound = np.array([[100.0]])
    tol = dot_tolerance(c, bound, 64, np.float32, 2.0 ** -24)
    assert tol[0, 0] == 65 * 2.0 ** -24 * 100 + 2.0 ** -24
    def bf16_sum(a_s, a_c, b_s, b_c):                   # 8-bit-mantissa accumulation: too coarse
        out = dot(a_s, a_c, b_s, b_c).astype(np.float64)
        return (out * (1 + 2.0 ** -7)).astype(np.float32)
    assert not check("dot_scaled", bf16_sum).passed
    def drops_code0(a_s, a_c, b_s, b_c):           # Triton software path: 0x00 read as 0.0
        deq = make_dequantize(zero_as_zero=True)
        return deq(a_s, a_c) @ deq(b_s, b_c).T
    rep = check("dot_scaled", drops_code0)
    assert not rep.passed and "ScaleCodeZero" in rep.failing_flags()


@pytest.mark.clause("CF-4.1", "CF-4.2")
def test_report_shapes_and_text():
    rep = check("pack", pack_high_first, max_failures=1)
    d = rep.to_dict()
    assert d["passed"] is False and d["counts"] == {"pass": 0, "acceptable": 0, "fail": 2}
    assert d["perClause"]["MX-8.1"]["fail"] == 2
    text = str(rep)
    assert "FAILED" in text and "expected packed: f2 59" in text and "got      packed: 2f 95" in text
    assert "and 1 more failing cases" in text
    ns = {}
    exec(rep.failures[0].repro.split("out =")[0], ns)      # the reproduction runs as written
    assert ns["codes"].tolist() == [[2, 15, 9, 5]]


@pytest.mark.clause("CF-1.3")
def test_cli(tmp_path, monkeypatch, capsys):
    import argparse
    import sys

    from torq_ref.conformance import cli
    mod = tmp_path / "kern_cf13.py"
    mod.write_text("import numpy as np\n"
                   "def good(c):\n    return (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)\n"
                   "def bad(c):\n    return ((c[:, 0::2] << 4) | c[:, 1::2]).astype(np.uint8)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    a = p.parse_args(["conformance", "--kernel", "kern_cf13:good", "--kind", "pack"])
    assert a.func(a) == 0
    a = p.parse_args(["conformance", "--kernel", "kern_cf13:bad", "--kind", "pack", "--json"])
    assert a.func(a) == 1
    assert '"passed": false' in capsys.readouterr().out


@pytest.mark.clause("CF-1.4")
def test_pytest_entry_point(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    mod = tmp_path / "kern_cf14.py"
    mod.write_text("import numpy as np\n"
                   "def bad(c):\n    return ((c[:, 0::2] << 4) | c[:, 1::2]).astype(np.uint8)\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{root}")
    cmd = [sys.executable, "-m", "pytest", "-p", "torq_ref.conformance.plugin", "--pyargs",
           "torq_ref.conformance", "--kernel", "kern_cf14:bad", "--kind", "pack", "-q",
           "-p", "no:cacheprovider", "--rootdir", str(tmp_path)]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 failed" in r.stdout and "breaks MX-8.1" in r.stdout


@pytest.mark.bulk
@pytest.mark.clause("CF-1.1", "CF-3.5")
def test_thorough_level_against_independent_kernels():
    """The bulk level: `pytest -m bulk tests/test_conformance_planted.py tests/test_golden_vectors.py`."""
    for profile, rule in (("ocp", "floor"), ("nvidia", "rceil")):
        rep = check("quantize", make_quantize(rule), profile=profile, level="thorough")
        assert rep.passed, str(rep)
    for kind, fn in (("dequantize", make_dequantize()), ("pack", pack_low_first),
                     ("swizzle", swizzle), ("dot_scaled", dot),
                     ("encode", lambda x: _e2m1_codes(x.astype(np.float64)))):
        rep = check(kind, fn, level="thorough")
        assert rep.passed, str(rep)
