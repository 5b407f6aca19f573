"""Mutation check: plant each bug of the registry in a scratch copy, run its tests, report.

For every :class:`~torq_ref.selftest.plants.Plant` the runner

1. checks that the plant's ``old`` text occurs exactly once in its file (else the plant is
   "stale": the code moved on and the registry entry must be updated; that is a failure too);
2. writes the planted file into a scratch copy of the checkout (never the working tree);
3. runs ``python -m pytest -x <the plant's tests>`` there in a subprocess;
4. restores the file (content and timestamps, so numba's on-disk cache stays valid).

A plant is "caught" when pytest exits with status 1 (some test failed). Exit 0 is "escaped" (the
tests cannot see the bug); any other status (a collection error, no test selected, a timeout) is
"broken": the plant itself is wrong, which also fails the check. Before the plants the runner
runs every selected test once unplanted: a test that fails anyway would catch everything.
Plants whose ``requires`` (e.g. numba) are not installed are listed as skipped and not counted.

The last line printed is ``N plants: C caught, E escaped`` (plus ``, B broken`` / ``, S stale``
when there are any); the exit status is 0 exactly when every plant was caught.

Clauses: ST-1.2 (scratch copy, baseline, caught / escaped / broken), ST-1.3 (the report).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .plants import PLANTS, Plant

#: Paths of the checkout that the tests read (everything else is left out of the scratch copy).
COPY = ("torq_ref", "tests", "spec", "docs", "golden", "benchmarks", "results", "pyproject.toml")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", "out")


@dataclass
class Outcome:
    plant: Plant
    status: str          # caught | escaped | broken | stale
    detail: str
    seconds: float


def source_root() -> Path:
    """The checkout this package was imported from; the mutation check needs its tests/."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "tests").is_dir() or not (root / "spec").is_dir():
        raise SystemExit(f"selftest --mutations needs a source checkout with tests/ and spec/ "
                         f"(looked in {root})")
    return root


def make_scratch(root: Path, dest: Path) -> Path:
    for name in COPY:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_SKIP)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    for md in root.glob("*.md"):                       # the traceability test reads them
        shutil.copy2(md, dest / md.name)
    return dest


def _pytest(cwd: Path, tests, timeout: float) -> tuple[int, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-W", "ignore", *tests]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    summary = next((ln for ln in reversed(lines) if " in " in ln and ("passed" in ln or "failed" in ln
                                                                     or "error" in ln or "no tests" in ln)),
                   lines[-1] if lines else "")
    return proc.returncode, summary.strip("= ")


def check_stale(root: Path, plant: Plant) -> str | None:
    path = root / plant.path
    if not path.is_file():
        return f"{plant.path} does not exist"
    n = path.read_text(encoding="utf-8").count(plant.old)
    if n != 1:
        return f"the text to replace occurs {n} times in {plant.path} (must be exactly once)"
    return None


def run_plant(scratch: Path, plant: Plant, timeout: float) -> Outcome:
    t0 = time.perf_counter()
    stale = check_stale(scratch, plant)
    if stale:
        return Outcome(plant, "stale", stale, 0.0)
    path = scratch / plant.path
    original = path.read_text(encoding="utf-8")
    st = path.stat()
    try:
        path.write_text(original.replace(plant.old, plant.new, 1), encoding="utf-8")
        rc, summary = _pytest(scratch, plant.tests, timeout)
    finally:
        path.write_text(original, encoding="utf-8")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    status = {1: "caught", 0: "escaped"}.get(rc, "broken")
    return Outcome(plant, status, summary if rc in (0, 1) else f"pytest status {rc}: {summary}",
                   time.perf_counter() - t0)


def select(plants, names=None, areas=None):
    out = list(plants)
    if names:
        out = [p for p in out if p.name in set(names)]
        missing = set(names) - {p.name for p in out}
        if missing:
            raise SystemExit(f"unknown plant(s): {', '.join(sorted(missing))}")
    if areas:
        out = [p for p in out if p.area in set(areas)]
    return out


def run(plants=None, *, timeout: float = 600.0, keep: bool = False, out=sys.stdout) -> int:
    """Run the mutation check over ``plants`` (default: the whole registry); returns the exit code."""
    plants = PLANTS if plants is None else plants
    names = [p.name for p in plants]
    skipped = [p for p in plants if any(importlib.util.find_spec(m) is None for m in p.requires)]
    plants = [p for p in plants if p not in skipped]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"plant names must be unique; repeated: {dup}")
    root = source_root()
    tmp = Path(tempfile.mkdtemp(prefix="torq_ref_mutations_"))
    try:
        scratch = make_scratch(root, tmp)
        selected = sorted({t for p in plants for t in p.tests})
        print(f"scratch copy: {scratch}; baseline: the {len(selected)} test selections unplanted",
              file=out, flush=True)
        rc, summary = _pytest(scratch, selected, timeout * 3)
        if rc != 0:
            print(f"baseline FAILED ({summary}): fix the suite before judging plants", file=out)
            return 2
        print(f"baseline passed: {summary}", file=out, flush=True)
        for p in skipped:
            print(f"skipped {p.name}: needs {', '.join(p.requires)} (not installed)", file=out)
        results = []
        for k, plant in enumerate(plants, 1):
            res = run_plant(scratch, plant, timeout)
            results.append(res)
            print(f"[{k:>2}/{len(plants)}] {res.status:<7} {plant.area:<12} {plant.name:<34} "
                  f"{res.seconds:5.1f} s  {res.detail}", file=out, flush=True)
        counts = {s: sum(r.status == s for r in results) for s in ("caught", "escaped", "broken", "stale")}
        tail = "".join(f", {counts[s]} {s}" for s in ("broken", "stale") if counts[s])
        if keep:
            print(f"scratch copy kept: {tmp}", file=out)
        print(f"{len(results)} plants: {counts['caught']} caught, {counts['escaped']} escaped{tail}",
              file=out, flush=True)
        return 0 if counts["caught"] == len(results) else 1
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
