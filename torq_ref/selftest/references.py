"""Every document the repository refers to is in the repository (spec/ST.md ST-2.1).

The scan reads the spec, the package, the tests, docs/ and the top-level markdown files
(``SCANNED``) line by line and collects three kinds of reference:

- markdown links ``[text](target)`` (any target that is not a URL);
- names ending in ``.md``, bare (``RESULTS.md``), relative (``../docs/x.md``) or with folders,
  optionally with a ``#anchor``;
- paths into the repository's own top-level folders (``TOP_DIRS``), e.g. ``results/x.json``,
  ``golden/bulk/``, ``tests/test_mx_*.py``.

A reference resolves when the target exists relative to the referring file's folder or to the
repository root, inside the checkout (a path that leaves it, such as ``../../elsewhere.md``, never
resolves, even when that file exists on this machine); a glob needs at least one match; an
``.md`` target's ``#anchor`` must be the GitHub slug of one of its headings. URLs are ignored,
and so are the entries of ``ALLOWED`` (generated outputs), placeholder patterns such as
``out/<model>/results.json``, and paths at a commit in git's revision syntax (``5b27a95:RESULTS.md``,
the way docs/history/ points at files as they were; in a git checkout git confirms that the
file existed at that commit). Any mention of the folder of
outside notes (the workspace's shared reference folder) is reported as well.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: what is scanned: folders (recursively: their .py and .md files) and top-level files
SCANNED = ("spec", "torq_ref", "tests", "docs", "README.md", "RESULTS.md", "CONFORMANCE.md",
           "BENCHMARKS.md")
#: files that hold broken references on purpose, and why
EXCLUDED = {
    "torq_ref/selftest/plants.py": "planted-bug texts: their `new` side names missing files on purpose",
    "torq_ref/selftest/references.py": "this module: its docstring shows the patterns with examples",
    "tests/test_traceability.py": "its pattern tests and tables name example files on purpose",
}
#: the repository's top-level folders; a path starting with one of them is checked
TOP_DIRS = ("spec", "docs", "results", "golden", "benchmarks", "tests", "torq_ref")
#: targets that are not repository files, with the reason (a first path component, or a name)
ALLOWED = {
    "out": "generated outputs: `run` and `report` write under out/ (ignored by git)",
    "report.md": "written by `report` into its output folder (spec/EV.md EV-4.4)",
    "table.md": "written by benchmarks/conformance/run_table.py (`--out`, CONFORMANCE.md)",
    "details.md": "written by benchmarks/conformance/run_table.py (`--details`, CONFORMANCE.md)",
}
#: a string joined onto a temporary folder in a test (``tmp_path / "r.md"``) is a file the test
#: writes, not a reference
_TMP_JOIN = re.compile(r"\b\w*tmp\w*\s*/\s*(?:[rbf]?\"[^\"]*\"|[rbf]?'[^']*')")
#: text of the outside notes that must never be cited from the repository
OUTSIDE = re.compile("shared" + "/" + "reference")   # spelt in parts: this file is not a reference to it

_URL = re.compile(r"(?:https?|ftp|file)://[^\s)>\]`'\"]*|www\.[^\s)>\]`'\"]*")
_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_PART = r"[\w.*<>{}+-]"
_AT_COMMIT = re.compile(r"(?<![\w./-])([0-9a-f]{7,40}):((?:[\w.+-]+/)*[\w.+-]+\.\w+)")
_MD = re.compile(rf"(?<![\w./\\-])(?<![0-9a-f]{{7}}:)"
                 rf"((?:\.\.?/)*{_PART}+(?:/{_PART}+)*?\.md)(#[\w-]+)?(?![\w/-])")
_PATH = re.compile(rf"(?<![\w./\\-])(?<![0-9a-f]{{7}}:)((?:{'|'.join(TOP_DIRS)})/(?:{_PART}|/)*)(#[\w-]+)?")
_PLACEHOLDER = re.compile(r"<[^>]*>|\{[^}]*\}")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Broken:
    """One reference that does not resolve: where it is and what it names."""

    file: str          # relative to the repository root
    line: int          # 1-based
    target: str        # as written (anchor included)
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.target} ({self.problem})"


def scanned_files(root: Path) -> list[Path]:
    """The files of ``SCANNED`` under ``root`` (.py and .md inside folders), sorted, without
    ``EXCLUDED``."""
    out = []
    for name in SCANNED:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in p.rglob("*") if f.suffix in (".py", ".md") and f.is_file()
                    and "__pycache__" not in f.parts]
    return sorted(f for f in set(out) if f.relative_to(root).as_posix() not in EXCLUDED)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    """The anchors of a markdown file's headings (outside code fences), with GitHub's -1, -2
    suffixes for repeated ones."""
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            s = slug(m.group(1))
            seen[s if s not in seen else f"{s}-{seen[s]}"] = 0
            seen[s] = seen.get(s, 0) + 1
    return frozenset(seen)


def _candidates(root: Path, base: Path, target: str) -> list[Path]:
    """Existing paths that ``target`` names relative to ``base`` or ``root`` (a module path such
    as ``golden/io.py`` also relative to the package, as the spec files write them), inside
    ``root``."""
    inside = root.resolve()
    found = []
    bases = (base, root, root / "torq_ref") if target.endswith(".py") else (base, root)
    for b in bases:
        if any(c in target for c in "*?["):
            hits = sorted(b.glob(target)) if not target.startswith("/") else []
        else:
            hits = [b / target] if (b / target).exists() else []
        found += [h for h in hits if h.resolve().is_relative_to(inside)]
    return found


def _references(line: str) -> list[tuple[str, str | None]]:
    """(path, anchor or None) of every reference on one line (URLs blanked out first)."""
    text = _URL.sub(lambda m: " " * len(m.group(0)), line)
    text = _TMP_JOIN.sub(lambda m: " " * len(m.group(0)), text)
    refs: list[tuple[str, str | None]] = []
    for m in _LINK.finditer(text):
        path, _, anchor = m.group(1).partition("#")
        refs.append((path, anchor or None))
    for rx in (_MD, _PATH):
        for m in rx.finditer(text):
            path = m.group(1).rstrip(".")
            if path:
                refs.append((path, m.group(2)[1:] if m.group(2) else None))
    return list(dict.fromkeys(refs))


def _missing_at_commit(root: Path, commit: str, path: str) -> bool | None:
    """True when git says ``commit:path`` does not exist; None when there is no git checkout
    (the mutation check's scratch copy) or git is not available."""
    if not (root / ".git").exists():
        return None
    try:
        r = subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{commit}:{path}"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.returncode != 0


def _allowed(path: str) -> bool:
    first = path.split("/", 1)[0]
    return first in ALLOWED or path in ALLOWED or bool(_PLACEHOLDER.search(path))


def check_file(root: Path, path: Path) -> list[Broken]:
    """The broken references of one file of the checkout at ``root``."""
    rel = path.relative_to(root).as_posix()
    broken = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if OUTSIDE.search(line):
            broken.append(Broken(rel, n, OUTSIDE.search(line).group(0),
                                 "the outside reference notes: cite docs/ or a primary source"))
        for m in _AT_COMMIT.finditer(_URL.sub(lambda u: " " * len(u.group(0)), line)):
            if _missing_at_commit(root, m.group(1), m.group(2)):
                broken.append(Broken(rel, n, m.group(0), "git has no such file at that commit"))
        for target, anchor in _references(line):
            shown = target + (f"#{anchor}" if anchor else "")
            if not target:                                   # "#anchor" of this very file
                hits = [path] if path.suffix == ".md" else []
            elif _allowed(target):
                continue
            else:
                hits = _candidates(root, path.parent, target)
            if not hits:
                if target:
                    broken.append(Broken(rel, n, shown, "no such file in the repository"))
                continue
            md = [h for h in hits if h.suffix == ".md" and h.is_file()]
            if anchor and md and not any(anchor in _anchors(h.resolve()) for h in md):
                broken.append(Broken(rel, n, shown, f"{md[0].relative_to(root).as_posix()} has no "
                                                    f"heading with anchor #{anchor}"))
    return broken


def broken_references(root: Path) -> list[Broken]:
    """Every reference of ``scanned_files(root)`` that does not resolve (ST-2.1)."""
    root = Path(root)
    return [b for f in scanned_files(root) for b in check_file(root, f)]
