"""A fixed BLAS thread count for every command (spec/FW.md FW-1.8)."""
from __future__ import annotations

import numpy  # noqa: F401  (load the BLAS libraries that threadpoolctl controls)
import scipy.linalg  # noqa: F401
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from torq_ref.blas_threads import ENV, configured_threads, fixed_blas_threads  # noqa: E402


def _blas_threads() -> list[int]:
    return [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]


@pytest.mark.clause("FW-1.8")
def test_configured_thread_count(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert configured_threads() == 1
    monkeypatch.setenv(ENV, "3")
    assert configured_threads() == 3
    monkeypatch.setenv(ENV, "0")
    assert configured_threads() is None
    for bad in ("-1", "two", "1.5"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=ENV):
            configured_threads()


@pytest.mark.clause("FW-1.8")
def test_commands_run_blas_on_the_fixed_count(monkeypatch, capsys):
    if not _blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can control")
    from torq_ref import cli

    seen = []
    monkeypatch.setattr(cli, "build_parser", _parser_with(lambda args: seen.append(_blas_threads()) or 0))
    monkeypatch.delenv(ENV, raising=False)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outside = _blas_threads()
        assert cli.main(["probe"]) == 0
        assert _blas_threads() == outside                    # restored afterwards
        monkeypatch.setenv(ENV, "0")
        assert cli.main(["probe"]) == 0                       # 0: left as it is
        monkeypatch.setenv(ENV, "x")
        assert cli.main(["probe"]) == 2
        assert ENV in capsys.readouterr().err
    assert seen[0] == [1] * len(seen[0]) and seen[1] == outside
    with fixed_blas_threads(None):
        pass


def _parser_with(func):
    import argparse

    def build():
        p = argparse.ArgumentParser()
        sub = p.add_subparsers()
        sub.add_parser("probe").set_defaults(func=func)
        return p
    return build


@pytest.mark.clause("FW-1.8")
def test_the_limit_reaches_a_blas_loaded_after_the_command_starts(tmp_path):
    """A fresh interpreter that has not imported numpy when the command starts (as
    ``python -m torq_ref`` has not) still computes on one BLAS thread."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, argparse\n"
        "from torq_ref import cli\n"
        "assert 'numpy' not in sys.modules\n"
        "def probe(args):\n"
        "    import numpy, threadpoolctl\n"
        "    print(sorted({d['num_threads'] for d in threadpoolctl.threadpool_info() if d['user_api'] == 'blas'}))\n"
        "def build():\n"
        "    p = argparse.ArgumentParser(); s = p.add_subparsers()\n"
        "    s.add_parser('probe').set_defaults(func=probe); return p\n"
        "cli.build_parser = build\n"
        "sys.exit(cli.main(['probe']))\n")
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1]"
