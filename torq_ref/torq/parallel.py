"""Executors of the engine's work units: inline, a fork process pool, or Dask distributed
(spec/TQ.md TQ-6.6, TQ-6.7).

The engine hands an executor a function ``fn(model, shared, item)`` (a module-level function, so
it pickles by name), the model, what every unit of one step reads (``shared``) and the units'
items; ``map`` returns the results in the order of the items, whoever computed them. The three
executors differ only in where ``fn`` runs:

=========================  ==================================================================
``Inline``                 here, one item after the other (``--jobs 1``)
``ForkPool(jobs)``         ``jobs`` processes forked for each step: the model, ``shared`` and
                           everything else the parent holds are shared copy-on-write, never
                           copied; only the items and the results are pickled
``DaskExecutor(address)``  the workers of a running ``dask.distributed`` scheduler; the model is
                           scattered once to every worker, ``shared`` once per step
=========================  ==================================================================

Every worker runs BLAS on the fixed thread count of the parent (spec/FW.md FW-1.8) and numba on
one thread, so a unit computes the same bits wherever it runs.
"""
from __future__ import annotations

import os

#: what ForkPool workers read: (fn, model, shared) of the step being mapped, set before the fork
_STEP = None


def usable_cores() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``), the default ``--jobs``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                     # platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _pin_threads() -> None:
    """BLAS on the fixed count of FW-1.8 and numba on one thread, in a worker process."""
    from torq_ref.blas_threads import configured_threads

    n = configured_threads()
    if n is not None:
        from threadpoolctl import threadpool_limits

        import numpy  # noqa: F401  (load numpy's and scipy's BLAS before limiting them)
        import scipy.linalg  # noqa: F401
        threadpool_limits(limits=n, user_api="blas")
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:
        pass


def fork_safe_numba() -> None:
    """Make numba's threads survive a fork: GNU OpenMP (numba's ``omp`` layer, its default here)
    aborts or hangs in a forked child once the parent has used it, while the ``workqueue`` layer
    is rebuilt after a fork. Chooses workqueue while numba has not started its threads; raises
    a SettingsError when the omp layer already runs in this process."""
    try:
        import numba
        from numba.np.ufunc import parallel as npp
    except ImportError:
        return
    if not npp._is_initialized and str(numba.config.THREADING_LAYER) != "omp":
        if str(numba.config.THREADING_LAYER) == "default":
            numba.config.THREADING_LAYER = "workqueue"
        return
    if not npp._is_initialized or numba.threading_layer() == "omp":
        from .methods import SettingsError

        raise SettingsError("numba's OpenMP threads already run in this process, and a forked worker "
                            "would hang: set NUMBA_THREADING_LAYER=workqueue, or use --jobs 1")


class Inline:
    """Every unit here, in item order (``--jobs 1``)."""

    jobs = 1

    def map(self, fn, model, shared, items) -> list:
        return [fn(model, shared, item) for item in items]

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "Inline()"


def _warm_kernels() -> None:
    """Compile (or load from numba's disk cache) the kernels of the fits, the transforms and the
    codec once in the parent, so the workers forked for every step inherit them instead of
    loading (or, for the kernels numba cannot cache, compiling) them each time. Runs on a small
    synthetic site; its results are discarded (no number of a run depends on it)."""
    try:
        import numpy as np

        from torq_ref import mx

        from .methods import TorqConfig, site_transform

        X = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)
        C = X.T.astype(np.float64) @ X / len(X)
        cfg = TorqConfig(micro_rows=48, max_sweeps=1)
        # torq-macro: the Schur-Horn kernels (rotations/_numba_givens.py, compiled per process,
        # not cached on disk) of its build and of the materialization of its Givens sequence
        for method in ("torq-micro", "duquant", "torq-macro"):
            t, _ = site_transform(method, 0, "qkv", C, X, cfg, {})
            t.materialize(X.shape[1])
        for dtype in (np.float32, np.float64):
            mx.quantize_dequantize(X.astype(dtype), "e2m1", block_size=32, scale_rule="floor")
    except Exception:              # a warm-up only saves time; the units work without it
        pass


def _fork_call(item):
    fn, model, shared = _STEP
    return fn(model, shared, item)


class ForkPool:
    """``jobs`` forked worker processes per step (Linux fork start method): the parent's arrays
    (the model's weights, the rows' hidden states, the layer's capture) are read by the workers
    through copy-on-write pages; a step with one item runs inline."""

    def __init__(self, jobs: int):
        import multiprocessing as mp

        if jobs < 2:
            raise ValueError(f"a ForkPool needs at least 2 jobs, got {jobs}")
        if "fork" not in mp.get_all_start_methods():
            raise ValueError("--jobs > 1 needs the fork start method (Linux); use --jobs 1 or --scheduler")
        fork_safe_numba()
        self.jobs = int(jobs)
        self._mp = mp.get_context("fork")
        self._warm = False

    def map(self, fn, model, shared, items) -> list:
        global _STEP
        items = list(items)
        if len(items) <= 1:
            return [fn(model, shared, item) for item in items]
        if not self._warm:
            _warm_kernels()
            self._warm = True
        _STEP = (fn, model, shared)
        try:
            with self._mp.Pool(min(self.jobs, len(items)), initializer=_pin_threads) as pool:
                return pool.map(_fork_call, items, chunksize=1)
        finally:
            _STEP = None

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"ForkPool({self.jobs})"


def _dask_call(fn, model, shared, item):
    _pin_threads()
    return fn(model, shared, item)


class DaskExecutor:
    """The workers of the Dask distributed scheduler at ``address`` (``--scheduler``; the
    ``dask`` extra). The model is scattered to every worker once; each step scatters ``shared``."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            from .methods import SettingsError

            raise SettingsError("--scheduler needs Dask distributed: pip install 'torq-ref[dask]'") from None
        self.client = Client(address)
        self.jobs = max(1, len(self.client.scheduler_info().get("workers", {})))
        self._model = None                   # (model, its future on the workers)

    def _model_future(self, model):
        if self._model is None or self._model[0] is not model:
            self._model = (model, self.client.scatter(model, broadcast=True, hash=False))
        return self._model[1]

    def map(self, fn, model, shared, items) -> list:
        items = list(items)
        if not items:
            return []
        m = self._model_future(model)
        s = self.client.scatter(shared, broadcast=True, hash=False)
        n = len(items)
        futures = self.client.map(_dask_call, [fn] * n, [m] * n, [s] * n, items, pure=False)
        return self.client.gather(futures)

    def close(self) -> None:
        self._model = None
        self.client.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client.scheduler.address})"


def make_executor(jobs: int | None = None, scheduler: str | None = None):
    """The executor of ``--jobs`` / ``--scheduler`` (TQ-6.6): Dask when a scheduler address is
    given, else Inline for one job and a ForkPool for more; ``jobs`` None: the usable cores."""
    from .methods import SettingsError

    if scheduler:
        return DaskExecutor(scheduler)
    jobs = usable_cores() if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise SettingsError(f"--jobs must be a positive whole number, got {jobs!r}")
    return Inline() if jobs == 1 else ForkPool(jobs)


#: the keys of results.json that hold wall-clock times or the machine's provenance: the only
#: ones that may differ between executors (TQ-6.6)
TIMING_KEYS = ("timings", "provenance", "eval_s", "seconds")


def without_timings(obj):
    """``obj`` (a results dict) with every TIMING_KEYS entry removed, at any depth: what must be
    the same bytes for every executor (TQ-6.6)."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, (list, tuple)):
        return [without_timings(v) for v in obj]
    return obj
