"""Provenance of a results file: what made it, when, where (spec/EV.md section 6, EV-6.1).

``provenance()`` returns the record every results.json carries at its top level:

    {"version": package version, "git": `git describe --always --dirty` of the checkout the
     package was imported from (None when it is not in one, or git is missing),
     "utc": ISO 8601 UTC time, seconds, "argv": the process's command line (list),
     "cpu": the CPU model (from /proc/cpuinfo, else the platform module)}

The record differs between runs by design, so readers that compare runs (the seed spread,
EV-5.1) never look at it (EV-6.2): it lives beside ``settings``, not inside.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

#: the top-level key of a results file that holds the record
KEY = "provenance"
#: its fields, in this order
FIELDS = ("version", "git", "utc", "argv", "cpu")


def git_describe(package_dir: str | Path | None = None) -> str | None:
    """``git describe --always --dirty`` of the checkout whose top level holds the package,
    None when the package is not imported from a checkout (an installed wheel, a copy) or git
    cannot be run. ``package_dir``: the ``torq_ref`` directory (default: this package's)."""
    pkg = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent.parent
    root = pkg.parent

    def git(*args):
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=20, check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        top = git("rev-parse", "--show-toplevel")
        # a package installed inside some other work tree (a venv in a repository) is no checkout
        if top is None or Path(top).resolve() != root.resolve():
            return None
        return git("describe", "--always", "--dirty")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU model: the first "model name" (x86) or "Processor" / "cpu model" line of
    ``cpuinfo``, else ``platform.processor()``, else ``platform.machine()``."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("model name", "processor", "cpu model") and value.strip() \
                and not value.strip().isdigit():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second, e.g. ``2026-12-03T13:16:29Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance(argv=None) -> dict:
    """The provenance record of EV-6.1; ``argv`` defaults to ``sys.argv``."""
    import torq_ref

    return {"version": torq_ref.__version__, "git": git_describe(),
            "utc": utc_now(), "argv": [str(a) for a in (sys.argv if argv is None else argv)],
            "cpu": cpu_model()}


def stamp(results: dict, argv=None) -> dict:
    """A shallow copy of a results dict with its provenance record at the top level (EV-6.1)."""
    return {**results, KEY: provenance(argv)}
