"""Command line of the max-entropy optimizer (spec/ME.md section 5)."""
from __future__ import annotations

import pytest

from torq_ref.cli import main


@pytest.mark.clause("ME-5.2")
def test_maxent_synthetic_prints_the_table(capsys):
    rc = main(["experiment", "maxent-synthetic", "--tokens", "96", "--eval-tokens", "48", "--channels", "64",
               "--max-sweeps", "1", "--beta", "100"])
    out = capsys.readouterr().out
    assert rc == 0
    for row in ("| identity |", "| hadamard |", "| maxent shared |", "| maxent per-block (2 R) |"):
        assert row in out
    assert "beta = 100" in out


@pytest.mark.clause("ME-5.2")
def test_bench_maxent_runs_and_compares_backends(capsys):
    rc = main(["bench", "maxent", "--tokens", "64", "--channels", "64", "--sweeps", "1",
               "--numpy-tokens", "32"])
    out = capsys.readouterr().out
    assert rc == 0 and "| 64 | 64 |" in out
    if "backend numba" in out:
        assert "identical R: yes" in out


@pytest.mark.clause("ME-5.2")
def test_maxent_real_is_registered():
    from torq_ref.cli import build_parser

    args = build_parser().parse_args(["experiment", "maxent-real", "--layers", "3", "--sites", "o"])
    assert args.layers == [3] and args.sites == ["o"] and callable(args.func)
