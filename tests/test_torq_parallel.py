"""The engine's work units on other executors (spec/TQ.md TQ-6.6, TQ-6.7): the same bytes of
results.json (apart from timings) inline, on a fork pool and on a Dask cluster."""
from __future__ import annotations

import json
import os

import pytest

from torq_ref.blas_threads import fixed_blas_threads
from torq_ref.torq import RunSpec, SettingsError, evaluate_methods
from torq_ref.torq import engine, parallel
from torq_ref.torq.report import _jsonable

from torq_fixtures import CFG, W, tiny, windows  # noqa: F401  (shared fixtures)

SETTINGS = ("W16A4", "W4A4")


#: the methods whose units hold the risks: Haar draws, seeded fits sharing a memo, DuQuant's
#: seeded steps, GPTQ's moments, the reference row
METHODS_UNDER_TEST = ("fp32", "random-orthogonal", "torq-micro", "torq", "duquant", "mr-gptq")


def _bytes(tiny, windows, executor, methods=METHODS_UNDER_TEST) -> str:
    ev, ca = windows
    spec = RunSpec(methods=methods, settings=SETTINGS, eval_windows=len(ev), calib_windows=len(ca),
                   window=W, progress=False)
    with fixed_blas_threads():            # as the command runs (FW-1.8), and as the workers do
        out = evaluate_methods(tiny, ev, ca, spec, CFG, executor=executor)
    return json.dumps(_jsonable(parallel.without_timings(out)), indent=1, sort_keys=True)


@pytest.fixture(scope="module")
def inline_bytes(tiny, windows):
    return _bytes(tiny, windows, parallel.Inline())


@pytest.mark.clause("TQ-6.6")
def test_fork_pool_gives_the_same_bytes(tiny, windows, inline_bytes):
    """Both settings: --jobs 2 writes the results.json of --jobs 1 (timings aside)."""
    got = _bytes(tiny, windows, parallel.ForkPool(2))
    assert got == inline_bytes
    assert '"per_site"' in got and '"torq-micro"' in got


@pytest.mark.clause("TQ-6.6")
def test_work_units_and_executor_choice():
    units = engine.fit_units(("rtn", "torq", "duquant", "torq-micro"), sites=("qkv", "down"))
    # torq and torq-micro share the micro fit's memo: one unit per site for the two
    assert units == [("qkv", ("rtn",)), ("qkv", ("torq-micro", "torq")), ("qkv", ("duquant",)),
                     ("down", ("rtn",)), ("down", ("torq-micro", "torq")), ("down", ("duquant",))]
    assert isinstance(parallel.make_executor(1), parallel.Inline)
    assert parallel.make_executor(3).jobs == 3
    assert parallel.make_executor(None).jobs == len(os.sched_getaffinity(0))
    with pytest.raises(SettingsError, match="--jobs"):
        parallel.make_executor(0)
    with pytest.raises(ValueError, match="at least 2"):
        parallel.ForkPool(1)
    assert parallel.without_timings({"a": [{"eval_s": 1, "b": 2}], "timings": {}, "m": {"seconds": 3}}) == \
        {"a": [{"b": 2}], "m": {}}


@pytest.mark.clause("TQ-6.6")
def test_parallel_fit_units_are_submitted_longest_first():
    """Units with an optimized fit first, each class by decreasing site width."""
    widths = {"qkv": 64, "down": 256}
    units = engine.fit_units(("rtn", "torq", "random-orthogonal", "torq-micro"), sites=("qkv", "down"))
    got = sorted(units, key=lambda u: engine.unit_cost_rank(u, widths[u[0]]))
    assert got == [("down", ("torq-micro", "torq")), ("qkv", ("torq-micro", "torq")),
                   ("down", ("rtn",)), ("down", ("random-orthogonal",)),
                   ("qkv", ("rtn",)), ("qkv", ("random-orthogonal",))]


@pytest.mark.clause("TQ-6.6")
def test_workers_pin_blas_to_the_fixed_count():
    """A forked worker runs BLAS on the count of FW-1.8 and numba on one thread."""
    out = parallel.ForkPool(2).map(_probe, None, None, [0, 1])
    assert all(blas == {1} and nb == 1 for blas, nb in out), out


def _probe(model, shared, item):
    from threadpoolctl import threadpool_info

    import numba
    return ({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}, numba.get_num_threads())


@pytest.mark.clause("TQ-6.6")
def test_run_has_the_performance_options(capsys):
    from torq_ref.cli import build_parser, main

    args = build_parser().parse_args(["run"])
    assert args.jobs is None and args.scheduler is None and args.ref_cache is None
    args = build_parser().parse_args(["run", "--jobs", "2", "--scheduler", "tcp://h:8786", "--ref-cache", "off"])
    assert (args.jobs, args.scheduler, args.ref_cache) == (2, "tcp://h:8786", "off")
    assert main(["run", "--jobs", "0", "--model", "no-such-model"]) == 2
    assert "--jobs" in capsys.readouterr().err


@pytest.mark.clause("TQ-6.7")
def test_dask_local_cluster_gives_the_same_bytes(tiny, windows, inline_bytes):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        ex = parallel.make_executor(scheduler=cluster.scheduler_address)
        try:
            assert isinstance(ex, parallel.DaskExecutor) and ex.jobs == 2
            got = _bytes(tiny, windows, ex)
        finally:
            ex.close()
    assert got == inline_bytes


@pytest.mark.clause("TQ-6.6")
def test_warm_up_compiles_the_kernels_numba_cannot_cache():
    """The parent's warm-up before the first fork compiles the Schur-Horn kernels (built per
    process, not cached on disk), so the workers forked for every layer do not compile them
    again (measured: about 1.3 s per worker and step). In a fresh process, as a run has."""
    pytest.importorskip("numba")
    import subprocess
    import sys

    code = ("from torq_ref.torq.parallel import _warm_kernels\n"
            "from torq_ref.rotations import _numba_givens as g\n"
            "_warm_kernels()\n"
            "k = g.load()\n"
            "print(len(k.build_diagonal.signatures), len(k.apply_rows.signatures))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) > 0 for v in out] == [True, True], out
