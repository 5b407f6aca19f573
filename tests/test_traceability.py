"""Traceability: every spec clause has a test, and every test names real clauses (spec/README.md)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLAUSE_DEF = re.compile(r"^\s*(?:[-*]\s*)?\*\*([A-Z]{2,3}-\d+(?:\.\d+)*)\*\*", re.M)
CLAUSE_REF = re.compile(r"clause\(([^)]*)\)")
CLAUSE_ID = re.compile(r"[A-Z]{2,3}-\d+(?:\.\d+)*")


def spec_clauses() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "spec").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for cid in CLAUSE_DEF.findall(text):
            if cid in found:
                raise AssertionError(f"clause {cid} defined twice ({found[cid]} and {path.name})")
            found[cid] = path.name
    return found


def referenced_clauses() -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for args in CLAUSE_REF.findall(path.read_text(encoding="utf-8")):
            for cid in CLAUSE_ID.findall(args):
                refs.setdefault(cid, []).append(path.name)
    return refs


def test_spec_has_clauses():
    assert len(spec_clauses()) > 0


def test_every_clause_has_a_test():
    untested = sorted(set(spec_clauses()) - set(referenced_clauses()))
    assert not untested, f"spec clauses with no test naming them: {untested}"


def test_every_named_clause_exists():
    clauses = spec_clauses()
    unknown = {c: files for c, files in referenced_clauses().items() if c not in clauses}
    assert not unknown, f"tests name clauses that spec/ does not define: {unknown}"


@pytest.mark.parametrize("text, expected", [("**MX-1.2** x", ["MX-1.2"]), ("- **SH-3** y", ["SH-3"]), ("MX-1.2 no bold", [])])
def test_clause_pattern(text, expected):
    assert CLAUSE_DEF.findall(text) == expected
