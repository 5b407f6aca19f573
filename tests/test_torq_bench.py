"""The main job's benchmarks (torq_ref/torq/bench.py, benchmarks/run.md) run from the CLI: the
commands are listed below ``bench`` (spec/CL.md CL-1.1) and ``bench fits`` builds every method's
transforms of one layer through the engine's own fit unit (TQ-6.6), so a change to the unit's
inputs cannot leave the benchmark broken. Timings are not asserted (no timed tests)."""
from __future__ import annotations

import contextlib
import io

import pytest


@pytest.mark.clause("CL-1.1")
def test_bench_group_lists_fits_and_speed(capsys):
    from torq_ref.cli import main

    try:
        main(["bench", "--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for name in ("codec", "schur-horn", "maxent", "forward", "fits", "speed"):
        assert f"    {name}" in out, name


@pytest.mark.clause("TQ-6.6")
def test_bench_fits_runs_every_method_on_a_tiny_model(tmp_path):
    pytest.importorskip("gguf")
    from test_model_gguf import write_tiny_gguf

    from torq_ref.cli import main
    from torq_ref.model.registry import ensure_model

    write_tiny_gguf(tmp_path / "t.gguf")
    model = ensure_model(str(tmp_path / "m"), gguf=tmp_path / "t.gguf", progress=False)
    methods = ["rtn", "random-orthogonal", "hadamard32", "torq-macro", "torq", "smoothrot", "duquant"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["bench", "fits", "--model", str(model), "--layer", "1", "--calib-windows", "1",
                     "--methods", ",".join(methods)]) == 0
    lines = buf.getvalue().splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    assert set(rows) == set(methods) | {"all"}, lines
    for m in methods:
        assert len(rows[m]) == 5 and all(float(v) >= 0 for v in rows[m]), rows[m]   # total + 4 sites


@pytest.mark.clause("TQ-6.6")
def test_bench_speed_runs_on_a_tiny_model(tmp_path):
    """``bench speed`` end to end without transformers: the forward table, then two whole
    ``run --quick`` processes (--jobs 1 and 2) whose results.json must be the same bytes."""
    pytest.importorskip("gguf")
    from test_model_gguf import write_tiny_gguf

    from torq_ref.cli import main
    from torq_ref.model.registry import ensure_model

    write_tiny_gguf(tmp_path / "t.gguf")
    model = ensure_model(str(tmp_path / "m"), gguf=tmp_path / "t.gguf", progress=False)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["bench", "speed", "--model", str(model), "--no-transformers", "--repeats", "1",
                     "--quick", "--jobs", "1,2", "--out", str(tmp_path / "bench"),
                     "--run-args", "--methods fp32,rtn,hadamard32 --settings W16A4"]) == 0
    out = buf.getvalue()
    for row in ("| fp32 (numpy) |", "| rtn W16A4 |", "| hadamard32 W16A4 |", "| rtn W4A4 |"):
        assert row in out, out
    assert "| 1 | 0 |" in out and "| 2 | 0 |" in out, out
    assert "the same bytes for --jobs 1, 2" in out, out
