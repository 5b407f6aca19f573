"""Traceability (spec/README.md): the spec's clause ids, the code and the tests cannot drift apart.

- every clause has a test that names it with ``@pytest.mark.clause``;
- every clause that is not "(informative)" is cited by the code that implements it (torq_ref/);
- every id cited anywhere (code, tests, docs, golden notes) is a clause, or a section that has
  clauses; retired ids appear only in the retired list of spec/README.md;
- every path a spec file names as the implementation ("Implemented in", "Implementation:",
  section headings) exists;
- every document and repository path that the spec, code, tests, docs/ and the top-level
  markdown files refer to exists in the repository (ST-2.1, torq_ref/selftest/references.py;
  what is allowed or not scanned is listed there with its reason).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from torq_ref.selftest import references

ROOT = Path(__file__).resolve().parents[1]
# An id is <PREFIX>-<section>[.<item>...][letter], e.g. MX-4.2, SH-2.4a; a clause line starts with
# its id in bold (optionally as a list item).
ID = r"[A-Z]{2,3}-\d+(?:\.\d+)*[a-z]?"
CLAUSE_DEF = re.compile(rf"^[ \t]*(?:[-*][ \t]*)?\*\*({ID})(?: \(informative\))?\*\*", re.M)
CLAUSE_REF = re.compile(r"clause\(([^)]*)\)")
CLAUSE_ID = re.compile(rf"(?<![\w-])({ID})(?![\w.]*\d)(?!\w)")
PREFIX_ROW = re.compile(r"^\|\s*([A-Z]{2,3})\s*\|\s*\[\w+\.md\]", re.M)
RETIRED_LINE = re.compile(r"^- \*\*retired\*\* (.*)$", re.M)
HEADING = re.compile(r"^#{2,}\s.*$", re.M)
PATH_TOKEN = re.compile(r"`([\w.*-]+(?:/[\w.*-]*)*(?:\.py|/))`")


def _spec_files() -> list[Path]:
    return sorted(p for p in (ROOT / "spec").glob("*.md") if p.name != "README.md")


def prefixes() -> set[str]:
    return set(PREFIX_ROW.findall((ROOT / "spec" / "README.md").read_text(encoding="utf-8")))


def retired_ids() -> set[str]:
    text = (ROOT / "spec" / "README.md").read_text(encoding="utf-8")
    return {cid for line in RETIRED_LINE.findall(text) for cid in re.findall(ID, line.split(":")[0])}


def spec_clauses() -> dict[str, dict]:
    """id -> {"file", "informative"}; informative when the clause line or its heading says so."""
    found: dict[str, dict] = {}
    for path in _spec_files():
        text = path.read_text(encoding="utf-8")
        headings = [(m.start(), m.group(0)) for m in HEADING.finditer(text)]
        for m in CLAUSE_DEF.finditer(text):
            cid = m.group(1)
            if cid in found:
                raise AssertionError(f"clause {cid} defined twice ({found[cid]['file']} and {path.name})")
            start = text.rfind("\n", 0, m.start(1)) + 1
            line = text[start: text.find("\n", m.start(1))]
            heading = next((h for pos, h in reversed(headings) if pos < m.start()), "")
            found[cid] = {"file": path.name,
                          "informative": "(informative" in line or "(informative" in heading}
    return found


def test_marks() -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for args in CLAUSE_REF.findall(path.read_text(encoding="utf-8")):
            for cid in re.findall(ID, args):
                refs.setdefault(cid, []).append(path.name)
    return refs


test_marks.__test__ = False            # a helper, not a test


def code_citations() -> dict[str, set[str]]:
    """Clause ids cited by the implementation (torq_ref/, without the planted-bug texts)."""
    cites: dict[str, set[str]] = {}
    for path in sorted((ROOT / "torq_ref").rglob("*.py")):
        if path.parts[-2:] == ("selftest", "plants.py"):      # patch texts, not implementation
            continue
        for cid in CLAUSE_ID.findall(path.read_text(encoding="utf-8")):
            cites.setdefault(cid, set()).add(str(path.relative_to(ROOT)))
    return cites


def _citing_sources():
    """(name, text) of everything that may cite a clause id."""
    globs = ["torq_ref/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "spec/*.md", "*.md",
             "results/*.md", "benchmarks/**/*.md"]
    seen = set()
    for g in globs:
        for path in sorted(ROOT.glob(g)):
            if path in seen or path.name == Path(__file__).name:
                continue
            seen.add(path)
            yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "golden").glob("*.json")):
        if path.name == "MANIFEST.json":
            continue
        notes = json.loads(path.read_text("ascii")).get("notes", {})
        text = " ".join(str(n.get("clause", "")) for n in notes.values() if isinstance(n, dict))
        yield str(path.relative_to(ROOT)), text


def unknown_citations() -> dict[str, set[str]]:
    clauses = spec_clauses()
    sections = {cid.split(".")[0] for cid in clauses}
    known_prefixes = prefixes()
    retired = retired_ids()
    bad: dict[str, set[str]] = {}
    for name, text in _citing_sources():
        for cid in CLAUSE_ID.findall(text):
            if cid.split("-")[0] not in known_prefixes:
                continue                                   # e.g. "GPT-2"
            if cid in clauses or ("." not in cid and cid in sections):
                continue
            if cid in retired and name == "spec/README.md":
                continue
            if cid in PENDING_UNKNOWN and name == PENDING_UNKNOWN[cid].split()[0]:
                continue
            bad.setdefault(cid, set()).add(name)
    return bad


def test_spec_has_clauses():
    assert len(spec_clauses()) > 100
    assert prefixes() >= {"MX", "GV", "CF", "SH", "ME", "FW", "TQ", "ST"}


def test_every_clause_has_a_test():
    marks = test_marks()
    untested = sorted(c for c, info in spec_clauses().items() if not info["informative"] and c not in marks)
    assert not untested, f"spec clauses with no test naming them: {untested}"


def test_every_named_clause_exists():
    clauses = spec_clauses()
    unknown = {c: files for c, files in test_marks().items() if c not in clauses}
    assert not unknown, f"tests name clauses that spec/ does not define: {unknown}"


def test_every_cited_id_exists():
    bad = unknown_citations()
    assert not bad, f"ids cited that are neither clauses nor sections (or are retired): {bad}"


def test_retired_ids_are_not_defined():
    retired = retired_ids()
    assert {"MX-2.4", "MX-2.5"} <= retired
    assert not retired & set(spec_clauses()), "a retired id is defined again"


#: Clauses implemented in files that other branches are rewriting: their citations land
#: with those branches. Tolerated while missing; delete each entry once its file cites it.
PENDING_CODE_CITATIONS: set[str] = set()
#: Ids cited by files other branches own that spec/ does not define (yet); tolerated, listed so
#: that they are fixed there: define the clause or correct the citation, then delete the entry.
PENDING_UNKNOWN: dict[str, str] = {
    # "TQ-9.9": "torq_ref/torq/foo.py (what it names)",
}


def test_every_normative_clause_is_cited_by_code():
    cited = code_citations()
    missing = sorted(c for c, info in spec_clauses().items()
                     if not info["informative"] and c not in cited and c not in PENDING_CODE_CITATIONS)
    assert not missing, f"clauses no module of torq_ref/ cites (cite the id where it is implemented): {missing}"
    done = sorted(c for c in PENDING_CODE_CITATIONS if c in cited)
    assert not done, f"now cited by code, delete from PENDING_CODE_CITATIONS: {done}"


#: The package each spec file's bare module names (`block.py`, `mx/block.py`) are relative to.
PACKAGE_OF = {"MX.md": "mx", "GV.md": "golden", "CF.md": "conformance", "SH.md": "rotations",
              "ME.md": "rotations", "FW.md": "model", "TQ.md": "torq", "ST.md": "selftest"}


def _implementation_paths() -> list[tuple[str, str]]:
    """(spec file, path) for every backticked .py file or directory a spec file names (the
    "Implemented in" pointers, section headings and any other mention)."""
    return [(spec.name, p) for spec in _spec_files()
            for p in PATH_TOKEN.findall(spec.read_text(encoding="utf-8"))]


def _resolves(spec_name: str, path: str) -> bool:
    bases = [ROOT, ROOT / "torq_ref"]
    if spec_name in PACKAGE_OF:
        bases.append(ROOT / "torq_ref" / PACKAGE_OF[spec_name])
    return any(list(b.glob(path.rstrip("/"))) for b in bases)


def test_every_implementation_path_exists():
    pointers = _implementation_paths()
    assert len(pointers) > 20
    missing = [(s, p) for s, p in pointers if not _resolves(s, p)]
    assert not missing, f"spec files name implementation paths that do not exist: {missing}"


@pytest.mark.parametrize("text, expected", [
    ("**MX-1.2** x", ["MX-1.2"]), ("- **SH-3** y", ["SH-3"]), ("MX-1.2 no bold", []),
    ("**SH-2.4a** The bound", ["SH-2.4a"]), ("**ME-3.10** bad", ["ME-3.10"]),
    ("**EV-2.4 (informative)** Why", ["EV-2.4"])])
def test_clause_pattern(text, expected):
    assert CLAUSE_DEF.findall(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("see SH-2.4a and MX-4.2.", ["SH-2.4a", "MX-4.2"]), ("(ME-3.10)", ["ME-3.10"]),
    ("spec/SH.md SH-2", ["SH-2"]), ("GPT-2 tokenizer", ["GPT-2"]), ("x-MX-1.2", []),
    ("SH-2.4b,", ["SH-2.4b"])])
def test_citation_pattern(text, expected):
    assert CLAUSE_ID.findall(text) == expected


# ---------------------------------------------------------------- documents that exist (ST-2.1)

#: the notes that lived outside the repository; a reference to any of them by bare name must fail
#: (split literals, so that this file names none of them itself)
OUTSIDE_NOTES = ("torq-method" ".md", "mx-format" ".md", "model-and-data" ".md", "style" ".md")


@pytest.mark.clause("ST-2.1")
def test_every_referenced_document_exists():
    files = references.scanned_files(ROOT)
    assert len(files) > 100 and ROOT / "spec" / "TQ.md" in files
    broken = references.broken_references(ROOT)
    assert not broken, ("references to documents or paths that are not in the repository "
                        "(fix the reference, or add the file; see spec/ST.md ST-2.1):\n"
                        + "\n".join(f"  {b}" for b in broken))


def _fake_repo(tmp_path, lines: list[str], name="spec/X.md"):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / ("mx-format" ".md")).write_text(
        "# Notes\n\n## 1. Blocks\n\n```\n## not a heading\n```\n")
    (root / "results").mkdir()
    (root / "results" / "block_energy_smollm2.md").write_text("# x\n")
    (tmp_path / "elsewhere.md").write_text("# outside the checkout\n")
    f = root / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.clause("ST-2.1")
@pytest.mark.parametrize("line", [
    *[f"see {n} section 2" for n in OUTSIDE_NOTES],
    *[f"Background: `{n}`." for n in OUTSIDE_NOTES],
    "the notes of shared/" "reference/" + OUTSIDE_NOTES[0],
    "[notes](../../elsewhere.md)",              # exists on the machine, outside the checkout
    "[notes](../docs/" + OUTSIDE_NOTES[1] + "#9-no-such-section)",
    "docs/" + OUTSIDE_NOTES[1] + "#not-a-heading",   # a heading inside a code fence is no anchor
    "`results/missing.json`", "golden/bulk/none.safetensors", "[t](tests/test_nothing_*.py)",
])
def test_broken_references_are_found(tmp_path, line):
    root = _fake_repo(tmp_path, ["# X", "", line])
    broken = references.broken_references(root)
    assert broken and all((b.file, b.line) == ("spec/X.md", 3) for b in broken), broken
    assert str(broken[0]).startswith("spec/X.md:3: ")


@pytest.mark.clause("ST-2.1")
@pytest.mark.parametrize("line", [
    "[notes](../docs/" + OUTSIDE_NOTES[1] + "#1-blocks) and docs/" + OUTSIDE_NOTES[1] + ".",
    "https://example.org/" + OUTSIDE_NOTES[0] + " and www.example.org/" + OUTSIDE_NOTES[2],
    "`out/<model>/results.json`, out/report/report.md, `results/block_energy_<model>.md`",
    "`results/block_energy_*.md` and [same file](#x)",
    "as it was: `abc1234:results/gone.md` (no git here, so not looked up)",
])
def test_valid_and_allowed_references_pass(tmp_path, line):
    root = _fake_repo(tmp_path, ["# X", "", "## x", line])
    assert references.broken_references(root) == []


@pytest.mark.clause("ST-2.1")
def test_reference_failures_name_file_line_and_target(tmp_path):
    root = _fake_repo(tmp_path, ['"""Doc (' + OUTSIDE_NOTES[2] + ')."""', "x = 1"], "torq_ref/m.py")
    (broken,) = references.broken_references(root)
    assert (broken.file, broken.line, broken.target) == ("torq_ref/m.py", 1, OUTSIDE_NOTES[2])
    assert "no such file" in broken.problem


def test_heading_anchor_slugs():
    assert references.slug("7. Known defects in widely used implementations") == \
        "7-known-defects-in-widely-used-implementations"
    assert references.slug("2.1 Macro level: Schur-Horn") == "21-macro-level-schur-horn"
    assert references.slug("FW-1.7") == "fw-17"
    assert references.slug("`run` and the `--seed`") == "run-and-the---seed"
