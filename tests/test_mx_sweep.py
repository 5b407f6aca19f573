"""Exhaustive float32 sweep of the E2M1 element encoder (spec/MX.md MX-11.1). Slow: run with

    pytest -m slow tests/test_mx_sweep.py            # the default backend (numba when installed)
    TORQ_SWEEP_BACKEND=numpy pytest -m slow tests/test_mx_sweep.py   # the NumPy reference path
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from torq_ref import mx

from mx_oracle import e2m1_from_float32_bits

CHUNK = 1 << 24


@pytest.mark.slow
@pytest.mark.clause("MX-11.1")
def test_e2m1_encoder_on_every_float32():
    backend = os.environ.get("TORQ_SWEEP_BACKEND", "auto")
    start = time.perf_counter()
    mismatches = 0
    first = None
    for lo in range(0, 1 << 32, CHUNK):
        bits = np.arange(lo, lo + CHUNK, dtype=np.uint64).astype(np.uint32)
        with np.errstate(invalid="ignore"):
            got = mx.encode(bits.view(np.float32), "e2m1", backend=backend)
        want = e2m1_from_float32_bits(bits)
        bad = np.flatnonzero(got != want)
        if bad.size and first is None:
            first = (hex(int(bits[bad[0]])), int(got[bad[0]]), int(want[bad[0]]))
        mismatches += bad.size
    elapsed = time.perf_counter() - start
    print(f"\nMX-11.1 sweep: 2^32 float32 patterns, backend={backend}, {elapsed:.1f} s, mismatches={mismatches}")
    assert mismatches == 0, f"first mismatch (bits, got, want): {first}"


@pytest.mark.clause("MX-11.1")
def test_sweep_oracle_spot_checks():
    # the sweep's oracle agrees with the codec on a strided sample (fast, default suite)
    bits = np.arange(0, 1 << 32, 65521, dtype=np.uint64).astype(np.uint32)
    with np.errstate(invalid="ignore"):
        x = bits.view(np.float32)
        assert np.array_equal(mx.encode(x, "e2m1"), e2m1_from_float32_bits(bits))
        assert np.array_equal(mx.encode(x, "e2m1", backend="numpy"), e2m1_from_float32_bits(bits))
