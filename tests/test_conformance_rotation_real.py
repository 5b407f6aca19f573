"""Real Hadamard and rotate-quantize implementations through the rotation kinds (CONFORMANCE.md,
"Rotation kernels"; spec/CF.md CF-5.2, CF-5.3, CF-5.8): the verdicts the table documents stay
the verdicts found. Skipped where the library is missing."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from torq_ref.conformance import check

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "conformance"))
A = pytest.importorskip("rotation_adaptors")


@pytest.mark.clause("CF-5.2", "CF-5.3")
def test_scipy_hadamard():
    pytest.importorskip("scipy")
    assert check("hadamard", A.scipy_hadamard, level="quick").passed
    unn = check("hadamard", A.scipy_hadamard_unnormalized, level="quick")
    assert {(r.cause, r.rule) for r in unn.failures} == {("HadamardConvention", "unnormalized")}
    assert check("hadamard", A.scipy_hadamard_unnormalized, profile="ocp+unnormalized", level="quick").passed


@pytest.mark.clause("CF-5.3", "CF-5.4")
def test_torch_butterflies():
    pytest.importorskip("torch")
    pytest.importorskip("hadamard_transform")
    with np.errstate(all="ignore"):
        assert check("hadamard", A.hadamard_transform_pypi).passed
        assert check("hadamard", A.hadamard_transform_pypi_inplace, level="quick").passed


@pytest.mark.clause("CF-5.3")
def test_torchao_and_compressed_tensors():
    pytest.importorskip("torchao")
    assert check("hadamard", A.torchao_spinquant_hadamard).passed
    pytest.importorskip("compressed_tensors")
    assert check("hadamard", A.compressed_tensors_hadamard, level="quick").passed


@pytest.mark.clause("CF-5.8")
def test_torch_matmul_then_torchao_mx():
    pytest.importorskip("torchao")
    rep = check("rotate-quantize", A.torch_matmul_torchao_mx)
    assert rep.passed
    assert set(rep.per_cause) <= {"NearElementBoundary", "NearScaleBoundary"}
