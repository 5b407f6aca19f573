"""Every test module collects with the `test` extra alone (spec/CL.md CL-5.1): a module-level import
in tests/ is of the standard library, a package the project or its `test` extra installs, torq_ref,
or a helper module of tests/; an optional package (crosscheck, plot) is imported inside the test
that needs it, after ``pytest.importorskip``. .ci/run also collects the suite in a venv with
`.[test]` only."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def allowed_packages() -> set[str]:
    """Import names of the project's dependencies and its `test` extra (from pyproject.toml)."""
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return {re.split(r"[<>=!~\[ ;]", s, 1)[0].strip().lower().replace("-", "_") for s in specs}


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported by the statements of ``path`` that run at collection
    (module body, including ``if`` blocks; not functions, classes or ``try`` guards)."""
    found = set()

    def walk(stmts):
        for node in stmts:
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.If):
                walk(node.body)
                walk(node.orelse)

    walk(ast.parse(path.read_text(encoding="utf-8"), str(path)).body)
    return found


@pytest.mark.clause("CL-5.1")
def test_test_modules_import_only_what_the_test_extra_installs(tmp_path):
    allowed = allowed_packages() | set(sys.stdlib_module_names) | {"torq_ref", "__future__"}
    allowed |= {p.stem for p in (ROOT / "tests").glob("*.py")}
    bad = {p.name: sorted(module_level_imports(p) - allowed) for p in sorted((ROOT / "tests").glob("*.py"))}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"module-level imports outside the test extra (use pytest.importorskip): {bad}"
    # the check itself sees a module-level import of an optional package
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nif True:\n    import ml_dtypes\ndef f():\n    import torch\n")
    assert module_level_imports(probe) == {"numpy", "ml_dtypes"}
    assert "ml_dtypes" not in allowed and "torch" not in allowed and "pytest" in allowed
