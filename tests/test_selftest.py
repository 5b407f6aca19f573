"""The planted-bug registry stays usable (spec/ST.md); the full check is slow (README)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from torq_ref.selftest import runner
from torq_ref.selftest.plants import PLANTS, Plant

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.clause("ST-1.1")
def test_registry_is_consistent_with_the_checkout():
    names = [p.name for p in PLANTS]
    assert len(names) == len(set(names)) and len(PLANTS) >= 30
    stale = {p.name: runner.check_stale(ROOT, p) for p in PLANTS if runner.check_stale(ROOT, p)}
    assert not stale, f"plants whose text moved (update plants.py): {stale}"
    for p in PLANTS:
        assert p.old != p.new and p.tests and p.area, p.name
        for t in p.tests:
            assert (ROOT / t.split("::")[0]).is_file(), (p.name, t)


@pytest.mark.clause("ST-1.2", "ST-1.3")
def test_runner_reports_caught_escaped_and_stale(tmp_path, monkeypatch):
    """Three toy plants on the traceability test (fast): one caught, one escaped, one stale."""
    caught = next(p for p in PLANTS if p.name == "trace-unknown-id-in-code")
    escaped = Plant("toy-escape", "toy", "README.md", "# torq-ref", "# torq-ref ", (caught.tests[0],))
    stale = Plant("toy-stale", "toy", "README.md", "no such text anywhere", "x", (caught.tests[0],))
    out = io.StringIO()
    rc = runner.run([caught, escaped, stale], timeout=120, out=out)
    lines = out.getvalue().strip().splitlines()
    assert rc == 1
    assert any(" caught " in ln and caught.name in ln for ln in lines)
    assert any(" escaped " in ln and "toy-escape" in ln for ln in lines)
    assert any(" stale " in ln and "toy-stale" in ln for ln in lines)
    assert lines[-1] == "3 plants: 1 caught, 1 escaped, 1 stale"
    assert (ROOT / "README.md").read_text(encoding="utf-8").startswith("# torq-ref\n")
