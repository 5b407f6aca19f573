"""Shared pytest configuration: hypothesis profiles and optional-package helpers."""
from __future__ import annotations

import os

# numba's default OpenMP threads do not survive a fork; the tests of the fork pool (spec/TQ.md
# TQ-6.6) run after other tests have started numba's threads, so the suite uses the fork-safe
# workqueue layer (numba's kernels give the same bits on any layer and thread count, ME-4.3)
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from hypothesis import HealthCheck, settings

# "ci" is the default (bounded, derandomized so CI is reproducible); "thorough" on request:
#   HYPOTHESIS_PROFILE=thorough pytest
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
