"""The judging rules of the conformance harness at their exact boundaries, and the empty run
(spec/ST.md ST-4.2): each threshold is met exactly (inclusive side), then missed by one ulp on
either side; a report about no case is never PASSED."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.conformance import builder_kinds as bk
from torq_ref.conformance import hadamard_kind as hk
from torq_ref.conformance.profiles import PROFILES
from torq_ref.conformance.report import CaseResult, Report

UP, DOWN = np.inf, -np.inf


def _sh(monkeypatch, oe, t):
    monkeypatch.setattr(bk, "orth_error", lambda Q: oe)
    lam = np.array([1.0, 0.0])
    return bk.judge_schur_horn("s", [], lam, np.asarray(t, np.float64), "accept", lambda: np.eye(2))


@pytest.mark.clause("ST-4.2", "CF-5.10")
def test_schur_horn_orthogonality_bound_is_inclusive(monkeypatch):
    bound = bk.ORTH_RTOL * 2
    assert _sh(monkeypatch, bound, [1.0, 0.0]).status == "pass"
    assert _sh(monkeypatch, np.nextafter(bound, DOWN), [1.0, 0.0]).status == "pass"
    r = _sh(monkeypatch, np.nextafter(bound, UP), [1.0, 0.0])
    assert (r.status, r.cause) == ("fail", "NotOrthogonal")


@pytest.mark.clause("ST-4.2", "CF-5.10")
def test_schur_horn_diagonal_bound_is_inclusive(monkeypatch):
    """With Q = I and eigvals (1, 0) the diagonal error is the target's second entry itself; the
    bound is DIAG_RTOL n max|.| = DIAG_RTOL * 2."""
    tol = bk.DIAG_RTOL * 2 * 1.0
    assert _sh(monkeypatch, 0.0, [1.0, tol]).status == "pass"
    assert _sh(monkeypatch, 0.0, [1.0, np.nextafter(tol, DOWN)]).status == "pass"
    r = _sh(monkeypatch, 0.0, [1.0, np.nextafter(tol, UP)])
    assert (r.status, r.cause) == ("fail", "DiagonalMismatch")


def _me(monkeypatch, oe, j, j_ref_min=1.0):
    monkeypatch.setattr(bk, "orth_error", lambda R: oe)
    monkeypatch.setattr(bk, "heldout_objective", lambda x, R, beta, b: j)
    return bk.judge_maxent("m", [], None, np.eye(32), 1.0, j_ref_min, 32)


@pytest.mark.clause("ST-4.2", "CF-5.11")
def test_maxent_floor_and_orthogonality_bounds_are_inclusive(monkeypatch):
    floor = 1.0 - bk.MAXENT_MARGIN
    assert _me(monkeypatch, 0.0, floor).status == "pass"
    assert _me(monkeypatch, 0.0, np.nextafter(floor, UP)).status == "pass"
    r = _me(monkeypatch, 0.0, np.nextafter(floor, DOWN))
    assert (r.status, r.cause) == ("fail", "HeldoutBelowReference")
    assert _me(monkeypatch, bk.MAXENT_ORTH, floor).status == "pass"
    assert _me(monkeypatch, np.nextafter(bk.MAXENT_ORTH, DOWN), floor).status == "pass"
    r = _me(monkeypatch, np.nextafter(bk.MAXENT_ORTH, UP), floor)
    assert (r.status, r.cause) == ("fail", "NotOrthogonal")


def _hd(monkeypatch, ratio_of):
    """judge_case with the ratio of each convention given by ``ratio_of(conv)``."""
    shape = (1, 32)
    monkeypatch.setattr(hk, "_ratio", lambda x, g, block, conv: (ratio_of(conv), np.zeros(shape), np.ones(shape)))
    return hk.judge_case("h", [], np.zeros(shape), np.zeros(shape), 32, PROFILES["ocp"], repro=False)


@pytest.mark.clause("ST-4.2", "CF-5.3", "CF-5.5")
def test_hadamard_bounds_are_inclusive(monkeypatch):
    own = hk.profile_convention(PROFILES["ocp"])
    assert _hd(monkeypatch, lambda c: 1.0).status == "pass"
    assert _hd(monkeypatch, lambda c: np.nextafter(1.0, DOWN)).status == "pass"
    over = np.nextafter(1.0, UP)
    r = _hd(monkeypatch, lambda c: over if c == own else 1.0)           # another convention fits exactly
    assert (r.status, r.cause) == ("fail", "HadamardConvention")
    r = _hd(monkeypatch, lambda c: over if c == own else np.nextafter(1.0, UP) * 2)
    assert (r.status, r.cause) == ("fail", "ExceedsButterflyBound")
    near = hk.NEAR_FACTOR
    r = _hd(monkeypatch, lambda c: near if c == own else np.inf)
    assert r.cause == "ExceedsButterflyBound"
    r = _hd(monkeypatch, lambda c: np.nextafter(near, UP) if c == own else np.inf)
    assert r.cause == "NotHadamard"


@pytest.mark.clause("ST-4.2", "CF-4.1")
def test_a_report_about_nothing_never_passes():
    """No results, or results that count no case, is FAILED; one passing case is PASSED."""
    for results in ([], [CaseResult("bulk", [], "pass", count=0)]):
        rep = Report("quantize", "ocp", "default", "e2m1", results)
        assert not rep.passed and "FAILED" in rep.summary()
    rep = Report("quantize", "ocp", "default", "e2m1", [CaseResult("a", [], "pass")])
    assert rep.passed and "PASSED" in rep.summary()


def _followed(n_blocks, agree):
    """rules_followed on n_blocks blocks of amax 3 (CEIL's scale is FLOOR's + 1 on each) where
    the kernel gives CEIL's scale on ``agree`` of them and FLOOR's on the rest."""
    from torq_ref import mx
    from torq_ref.conformance.causes import rules_followed

    x = np.zeros((1, 32 * n_blocks))
    x[0, ::32] = 3.0
    amax = np.full((1, n_blocks), 3.0)
    floor, ceil = mx.scale_codes(amax, "e2m1", "floor"), mx.scale_codes(amax, "e2m1", "ceil")
    assert (ceil != floor).all()
    got = floor.copy()
    got[0, :agree] = ceil[0, :agree]
    return [r for name in rules_followed(x, got, "e2m1", "floor") for r in name.split("/")]


@pytest.mark.clause("ST-4.2", "CF-3.7")
def test_rule_evidence_thresholds_are_inclusive():
    """A rule is followed on at least MIN_EVIDENCE blocks and at least half of those where it
    differs from the profile's: exactly on each threshold it is, one block short it is not."""
    from torq_ref.conformance.causes import MIN_EVIDENCE

    assert "ceil" in _followed(2 * MIN_EVIDENCE, MIN_EVIDENCE)               # both thresholds met exactly
    assert "ceil" not in _followed(2 * MIN_EVIDENCE, MIN_EVIDENCE - 1)       # half and evidence short
    assert "ceil" not in _followed(2 * MIN_EVIDENCE + 2, MIN_EVIDENCE)       # evidence met, half short by one
    assert "ceil" in _followed(2 * MIN_EVIDENCE + 2, MIN_EVIDENCE + 1)       # exactly half
    assert "ceil" not in _followed(MIN_EVIDENCE - 1, MIN_EVIDENCE - 1)       # all blocks, evidence short


@pytest.mark.clause("ST-4.2", "CF-3.6")
def test_dot_tolerance_is_inclusive(monkeypatch):
    """An MX dot product whose error equals its tolerance passes; one ulp less tolerance fails."""
    from pathlib import Path

    from torq_ref.conformance import kinds
    from torq_ref.golden.io import read_tree

    vs = read_tree(Path(__file__).resolve().parents[1] / "golden")

    def zeros(a_s, a_c, b_s, b_c):
        return np.zeros((a_c.shape[0], b_c.shape[0]))

    def run(shift):
        monkeypatch.setattr(kinds, "dot_tolerance", lambda c, *a: np.nextafter(np.abs(c), shift))
        return kinds.run_dot_scaled(zeros, vs, PROFILES["ocp"], "e2m1", False)

    monkeypatch.setattr(kinds, "dot_tolerance", lambda c, *a: np.abs(c))
    exact = kinds.run_dot_scaled(zeros, vs, PROFILES["ocp"], "e2m1", False)
    assert exact and all(r.status == "pass" for r in exact)
    assert all(r.status == "pass" for r in run(UP))
    assert all(r.status == "fail" for r in run(DOWN))


@pytest.mark.clause("ST-4.2", "CF-5.10", "CF-5.11", "CF-1.2")
def test_builders_bad_outputs_are_named():
    """The rarely taken branches of the builder judges: a refused valid target, a non-finite or
    misshapen Q, a non-finite R."""
    lam = np.array([1.0, 0.0])
    t = np.array([0.5, 0.5])

    def boom():
        raise ValueError("no")

    r = bk.judge_schur_horn("s", [], lam, t, "accept", boom)
    assert (r.status, r.cause) == ("fail", "RefusedMajorized")
    assert bk.judge_schur_horn("s", [], lam, t, "refuse", boom).status == "pass"
    r = bk.judge_schur_horn("s", [], lam, t, "refuse", lambda: np.eye(2))
    assert r.cause == "AcceptedNonMajorized"
    for bad in (np.full((2, 2), np.nan), np.eye(3), "Q"):
        r = bk.judge_schur_horn("s", [], lam, t, "accept", lambda bad=bad: bad)
        assert (r.status, r.cause) == ("fail", "BadOutput"), bad
    for bad in (np.full((32, 32), np.inf), np.eye(16)):
        r = bk.judge_maxent("m", [], None, bad, 1.0, 1.0, 32)
        assert (r.status, r.cause) == ("fail", "BadOutput")
