"""GivensSequence: representation, apply, validation, IO, back ends (spec/SH.md section 1)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torq_ref.rotations.givens import GivensFileError, GivensSequence


def random_sequence(n: int, k: int, seed: int) -> GivensSequence:
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, k)
    j = (i + 1 + rng.integers(0, max(n - 1, 1), k)) % n
    theta = rng.uniform(-np.pi, np.pi, k)
    return GivensSequence(n, i, j, np.cos(theta), np.sin(theta))


def explicit_matrix(seq: GivensSequence) -> np.ndarray:
    q = np.eye(seq.n)
    for i, j, c, s in zip(seq.i, seq.j, seq.c, seq.s):
        g = np.eye(seq.n)
        g[i, i] = c
        g[i, j] = s
        g[j, i] = -s
        g[j, j] = c
        q = q @ g
    return q


@pytest.mark.clause("SH-1.1", "SH-1.4")
@given(n=st.integers(2, 12), k=st.integers(0, 30), seed=st.integers(0, 2**31))
def test_matrix_is_product_of_plane_rotations(n, k, seed):
    seq = random_sequence(n, k, seed)
    assert len(seq) == k
    np.testing.assert_allclose(seq.matrix(), explicit_matrix(seq), rtol=0, atol=1e-13)
    assert np.allclose(seq.inverse().matrix(), seq.matrix().T, atol=1e-13)
    other = random_sequence(n, 3, seed + 1)
    np.testing.assert_allclose(seq.then(other).matrix(), seq.matrix() @ other.matrix(), atol=1e-13)


@pytest.mark.clause("SH-1.1")
def test_identity_and_single_rotation_convention():
    assert np.array_equal(GivensSequence(3).matrix(), np.eye(3))
    seq = GivensSequence(2, [0], [1], [0.6], [0.8])
    # X @ Q: the pair (x0, x1) becomes (c x0 - s x1, s x0 + c x1)
    np.testing.assert_allclose(seq.apply(np.array([1.0, 2.0])), [0.6 - 1.6, 0.8 + 1.2], atol=1e-15)


@pytest.mark.clause("SH-1.2")
@given(n=st.integers(1, 10), k=st.integers(0, 20), seed=st.integers(0, 2**31),
       axis=st.integers(0, 2))
def test_apply_is_x_times_q_along_axis(n, k, seed, axis):
    seq = random_sequence(n, k, seed) if n > 1 else GivensSequence(1)
    shape = [3, 4, 5]
    shape[axis] = n
    x = np.random.default_rng(seed).standard_normal(shape)
    x0 = x.copy()
    y = seq.apply(x, axis=axis)
    ref = np.moveaxis(np.moveaxis(x, axis, -1) @ seq.matrix(), -1, axis)
    np.testing.assert_allclose(y, ref, atol=1e-12)
    np.testing.assert_allclose(seq.apply_transpose(y, axis=axis), x, atol=1e-12)
    np.testing.assert_allclose(seq.apply_transpose(x, axis=axis - 3),
                               np.moveaxis(np.moveaxis(x, axis, -1) @ seq.matrix().T, -1, axis),
                               atol=1e-12)
    assert np.array_equal(x, x0) and y.dtype == np.float64


@pytest.mark.clause("SH-1.2")
def test_apply_rejects_bad_input():
    seq = random_sequence(4, 3, 0)
    with pytest.raises(ValueError, match="length 5"):
        seq.apply(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="axis"):
        seq.apply(np.zeros((2, 4)), axis=2)
    with pytest.raises(TypeError):
        seq.apply(np.zeros((2, 4), dtype=complex))
    with pytest.raises(TypeError):
        seq.apply(np.zeros((2, 4), dtype=bool))
    np.testing.assert_allclose(seq.apply(np.ones((2, 4), dtype=np.float32)),
                               np.ones((2, 4)) @ seq.matrix(), atol=1e-12)


@pytest.mark.clause("SH-1.3")
@pytest.mark.parametrize("args, msg", [
    ((3, [0], [3], [1.0], [0.0]), "outside"),
    ((3, [-1], [1], [1.0], [0.0]), "outside"),
    ((3, [1], [1], [1.0], [0.0]), "i == j"),
    ((3, [0], [1], [np.nan], [0.0]), "finite"),
    ((3, [0], [1], [0.6], [0.6]), "not a rotation"),
    ((3, [0, 1], [1], [1.0], [0.0]), "length"),
    ((0,), "positive"),
])
def test_construction_validates(args, msg):
    with pytest.raises(ValueError, match=msg):
        GivensSequence(*args)


@pytest.mark.clause("SH-1.5")
def test_safetensors_round_trip(tmp_path):
    seq = random_sequence(7, 25, 3)
    p = tmp_path / "q.safetensors"
    seq.save(p)
    back = GivensSequence.load(p)
    assert back == seq and back.n == 7
    assert np.array_equal(back.matrix(), seq.matrix())


def _write(path, tensors, meta):
    from safetensors.numpy import save_file
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.clause("SH-1.5")
def test_load_rejects_corrupt_files(tmp_path):
    good = {"i": np.array([0], np.int64), "j": np.array([1], np.int64),
            "c": np.array([1.0]), "s": np.array([0.0])}
    meta = {"format": "torq_ref.GivensSequence", "version": "1", "n": "2"}
    cases = {
        "garbage": None,
        "missing": ({k: v for k, v in good.items() if k != "s"}, meta, "missing"),
        "dtype": ({**good, "c": np.array([1.0], np.float32)}, meta, "float64"),
        "format": (good, {**meta, "format": "other"}, "format"),
        "version": (good, {**meta, "version": "9"}, "version"),
        "n": (good, {**meta, "n": "two"}, "not an integer"),
        "range": (good, {**meta, "n": "1"}, "outside"),
        "unit": ({**good, "s": np.array([0.5])}, meta, "not a rotation"),
    }
    for name, case in cases.items():
        p = tmp_path / f"{name}.safetensors"
        if case is None:
            p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
            msg = "not a readable safetensors"
        else:
            _write(p, case[0], case[1])
            msg = case[2]
        with pytest.raises(GivensFileError, match=msg):
            GivensSequence.load(p)
    assert issubclass(GivensFileError, ValueError)


@pytest.mark.clause("SH-1.6")
@pytest.mark.parametrize("transpose", [False, True])
def test_numba_and_numpy_apply_identical(transpose):
    pytest.importorskip("numba", reason="numba (the `fast` extra) not installed")
    seq = random_sequence(64, 500, 11)
    x = np.random.default_rng(1).standard_t(3, size=(37, 64)) * 1e3
    f = seq.apply_transpose if transpose else seq.apply
    a = f(x, backend="numpy")
    b = f(x, backend="numba")
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))
