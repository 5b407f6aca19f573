"""Baselines (spec/SH.md section 3) and metrics (section 4)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import mx
from torq_ref.rotations.baselines import (
    DenseOrthogonal, HadamardOrderError, block_hadamard, hadamard, hadamard_construction,
    paley_hadamard, random_orthogonal, random_sign_hadamard, sylvester_hadamard)
from torq_ref.rotations.metrics import (
    block_energies, block_energy_imbalance, mxfp4_nmse, scale_exponent_spread, second_moment)


def assert_hadamard(h, n):
    assert h.shape == (n, n)
    np.testing.assert_allclose(np.abs(h) * np.sqrt(n), 1.0, rtol=0, atol=1e-14)
    assert np.max(np.abs(h.T @ h - np.eye(n))) <= 1e-12


@pytest.mark.clause("SH-3.1")
@pytest.mark.parametrize("n", [1, 2, 4, 32, 256])
def test_sylvester(n):
    h = sylvester_hadamard(n)
    assert_hadamard(h, n)
    if n >= 2:
        k = n // 2
        hu = sylvester_hadamard(n, normalized=False)
        small = sylvester_hadamard(k, normalized=False)
        assert np.array_equal(hu, np.block([[small, small], [small, -small]]))
    assert np.array_equal(sylvester_hadamard(4, normalized=False)[0], np.ones(4))


@pytest.mark.clause("SH-3.1")
@pytest.mark.parametrize("n", [3, 12, 576, 0])
def test_sylvester_refuses_other_orders(n):
    with pytest.raises(ValueError):
        sylvester_hadamard(n)


@pytest.mark.clause("SH-3.2")
@pytest.mark.parametrize("n, kind, m", [(12, "paley", 12), (20, "paley", 20), (36, "paley", 36),
                                        (576, "paley", 36), (1536, "paley", 12),
                                        (1152, "paley", 36), (64, "sylvester", 1),
                                        (96, "paley", 12)])
def test_hadamard_any_constructible_order(n, kind, m):
    assert hadamard_construction(n) == (kind, m)
    assert_hadamard(hadamard(n), n)


@pytest.mark.clause("SH-3.2")
@pytest.mark.parametrize("m", [12, 20, 28, 36, 44, 60])
def test_paley_matrices_are_hadamard(m):
    h = paley_hadamard(m)
    assert set(np.unique(h)) == {-1.0, 1.0}
    assert np.array_equal(h @ h.T, m * np.eye(m))


@pytest.mark.clause("SH-3.2")
@pytest.mark.parametrize("n", [3, 6, 10, 92, 100])
def test_hadamard_unavailable_orders(n):
    with pytest.raises(HadamardOrderError):
        hadamard(n)
    assert issubclass(HadamardOrderError, ValueError)


@pytest.mark.clause("SH-3.3")
def test_block_hadamard():
    b = block_hadamard(576, 32)
    assert np.array_equal(b[:32, :32], hadamard(32))
    assert np.array_equal(b[32:64, 32:64], hadamard(32)) and not b[:32, 32:].any()
    assert np.max(np.abs(b.T @ b - np.eye(576))) <= 1e-12
    assert_hadamard(block_hadamard(48, 12)[:12, :12] * 1.0, 12)
    with pytest.raises(ValueError, match="multiple"):
        block_hadamard(100, 32)


@pytest.mark.clause("SH-3.4")
@pytest.mark.parametrize("n", [8, 576])
def test_random_baselines_seeded_and_orthogonal(n):
    for f in (random_sign_hadamard, random_orthogonal):
        a, b, c = f(n, 1), f(n, 1), f(n, 2)
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert np.max(np.abs(a.T @ a - np.eye(n))) <= 1e-12
    r = random_sign_hadamard(n, 3)
    signs = r[:, 0] / hadamard(n)[:, 0]
    np.testing.assert_allclose(np.abs(signs), 1.0)
    np.testing.assert_allclose(r, signs[:, None] * hadamard(n), atol=1e-15)


@pytest.mark.clause("SH-3.5")
def test_dense_orthogonal_wrapper():
    m = random_orthogonal(16, 0)
    d = DenseOrthogonal(m, "r")
    x = np.random.default_rng(0).standard_normal((3, 16, 2))
    np.testing.assert_allclose(d.apply(x, axis=1), np.einsum("anb,nm->amb", x, m), atol=1e-13)
    np.testing.assert_allclose(d.apply_transpose(d.apply(x, axis=1), axis=1), x, atol=1e-13)
    assert np.array_equal(d.matrix(), m)
    with pytest.raises(ValueError, match="not orthogonal"):
        DenseOrthogonal(m * 1.01)
    with pytest.raises(ValueError, match="square"):
        DenseOrthogonal(np.ones((2, 3)))
    with pytest.raises(ValueError, match="length"):
        d.apply(np.ones((2, 15)))


@pytest.mark.clause("SH-4.1")
def test_second_moment_and_block_energy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 64)) * np.r_[np.full(32, 3.0), np.ones(32)]
    c = second_moment(x)
    assert np.array_equal(c, c.T)
    np.testing.assert_allclose(c, x.T @ x / 100, rtol=1e-13)
    e = block_energies(c, 32)
    np.testing.assert_allclose(e, [np.sum(x[:, :32] ** 2) / 100, np.sum(x[:, 32:] ** 2) / 100])
    assert block_energy_imbalance(c, 32) == pytest.approx(e.max() / e.mean())
    assert block_energy_imbalance(np.eye(64), 32) == 1.0
    assert np.isnan(block_energy_imbalance(np.zeros((64, 64)), 32))
    with pytest.raises(ValueError, match="multiple"):
        block_energies(np.eye(48), 32)


@pytest.mark.clause("SH-4.2")
def test_scale_exponent_spread():
    x = np.zeros((3, 96))
    x[0, :32] = 1.0          # exponent 0 - 2 in E8M0 terms; spread counts differences only
    x[0, 32:64] = 8.0        # +3
    x[0, 64:] = 0.25         # -2  -> spread 5
    x[1, :32] = 5.0          # one non-zero block -> spread 0
    out = scale_exponent_spread(x, 32)
    assert out == {"mean": 5 / 3, "max": 5, "global": 5}
    # agrees with the codec's scales
    rng = np.random.default_rng(1)
    y = rng.standard_t(3, size=(20, 64))
    e = mx.quantize(y).scales.astype(int).reshape(20, 2)
    assert scale_exponent_spread(y)["mean"] == pytest.approx(np.abs(e[:, 0] - e[:, 1]).mean())


@pytest.mark.clause("SH-4.3")
def test_mxfp4_nmse():
    rng = np.random.default_rng(2)
    x = rng.standard_t(3, size=(64, 64))
    q = mx.quantize_dequantize(x)
    ref = np.sum((q - x) ** 2) / np.sum(x ** 2)
    assert mxfp4_nmse(x) == pytest.approx(ref, rel=1e-12)
    m = random_orthogonal(64, 0)
    y = x @ m
    ref_m = np.sum((mx.quantize_dequantize(y) - y) ** 2) / np.sum(y ** 2)
    assert mxfp4_nmse(x, m) == pytest.approx(ref_m, rel=1e-12)
    assert mxfp4_nmse(x, DenseOrthogonal(m)) == pytest.approx(ref_m, rel=1e-12)
    assert mxfp4_nmse(np.zeros((2, 32))) == 0.0
    exact = np.tile([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -6.0], 4)[None]
    assert mxfp4_nmse(exact) == 0.0


@pytest.mark.clause("SH-3.4")
@pytest.mark.parametrize("seed", [None, -1, 1.5, "0", True])
def test_seed_must_be_an_int(seed):
    from torq_ref.rotations.baselines import random_orthogonal, random_sign_hadamard

    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        random_orthogonal(8, seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        random_sign_hadamard(8, seed=seed)
