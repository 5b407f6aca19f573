"""README.md as executable documentation (spec/ST.md section 2): the two commands at the top,
the same test command as CI, and Python examples that run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _commands(lines):
    return [x.strip() for x in lines if x.startswith("    ") and "pip install" in x]


@pytest.mark.clause("ST-3.1")
def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 110, f"README.md has {len(lines)} lines (at most 110)"
    run, tests = _commands(lines[:20])
    assert run.endswith("&& python -m torq_ref run"), run
    assert tests.endswith("&& python -m pytest -q"), tests


@pytest.mark.clause("ST-3.1")
def test_readme_test_command_is_what_ci_runs():
    ci = ROOT / ".ci" / "run"
    if not ci.is_file():
        pytest.skip("no .ci/run here: the mutation check's scratch copy holds only runner.COPY, not .ci/")
    last = [x for x in ci.read_text(encoding="utf-8").splitlines() if x.strip()][-1].strip()
    tests = _commands(README.read_text(encoding="utf-8").splitlines()[:20])[1]
    # the README's command creates and activates the venv that .ci/run sets up on lines of its own
    assert tests.endswith(last), (tests, last)


@pytest.mark.clause("ST-3.2")
def test_readme_python_examples_run():
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) >= 2, "the codec and the check() examples"
    namespace: dict = {}
    for k, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {k + 1}", "exec"), namespace)
    assert namespace["check"]("quantize", namespace["my_quantize"], profile="nvidia").passed
