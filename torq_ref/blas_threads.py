"""One BLAS thread for every number torq-ref computes with BLAS (spec/FW.md FW-1.8).

OpenBLAS gives different float32 roundings of the same matrix product for different thread
counts (measured: the SmolLM2 logits of one window differ in their last bits between 1 and 2
threads), and the MXFP4 quantizers turn a last-bit difference into a different code now and then,
so a perplexity would depend on the machine's core count by up to the +-2 % float32 noise floor
(results/forward.md). The command line therefore runs BLAS on a fixed number of threads, 1 by
default; ``TORQ_REF_BLAS_THREADS=N`` chooses another fixed N, and ``0`` leaves BLAS as it is (results
may then depend on the machine). numba's kernels do not depend on their thread count (spec/MX.md,
spec/ME.md) and are not limited. Library callers wrap their work in :func:`fixed_blas_threads`.
"""
from __future__ import annotations

import contextlib
import os

from torq_ref.errors import UserError

#: the environment variable that overrides the fixed BLAS thread count (0: do not fix it)
ENV = "TORQ_REF_BLAS_THREADS"


class ThreadCountError(UserError, ValueError):
    """``$TORQ_REF_BLAS_THREADS`` is not a whole number of at least 0."""


def configured_threads() -> int | None:
    """The fixed BLAS thread count: ``$TORQ_REF_BLAS_THREADS`` or 1; None for 0 (not fixed)."""
    text = os.environ.get(ENV, "1").strip()
    try:
        n = int(text)
    except ValueError:
        raise ThreadCountError(f"{ENV}={text!r}: give a whole number of threads (0: leave BLAS alone)") from None
    if n < 0:
        raise ThreadCountError(f"{ENV}={text!r}: the thread count cannot be negative")
    return None if n == 0 else n


@contextlib.contextmanager
def fixed_blas_threads(n: int | None = -1):
    """Run the body with BLAS on ``n`` threads (default: :func:`configured_threads`; None: as it
    is). Needs threadpoolctl (a dependency of torq-ref)."""
    if n == -1:
        n = configured_threads()
    if n is None:
        yield
        return
    # threadpoolctl limits the BLAS libraries loaded when it is called: load numpy's and scipy's
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield
