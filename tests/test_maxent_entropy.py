"""Code entropy (spec/ME.md section 1)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from torq_ref import mx
from torq_ref.rotations.entropy import (MAX_ENTROPY_BITS, EntropyInputError, code_entropy,
                                        code_histogram, entropy_from_counts)
from torq_ref.rotations.synthetic import heavy_tailed_activations


def _entropy_by_values(x, block_size=32):
    """Independent recomputation: histogram of the decoded E2M1 values (+0 == -0) by np.unique."""
    t = mx.quantize(x, "e2m1", block_size=block_size, scale_rule="floor")
    vals = mx.E2M1_VALUES[np.asarray(t.codes)].ravel() + 0.0      # -0.0 + 0.0 -> +0.0
    _, counts = np.unique(vals, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()), len(counts)


@pytest.mark.clause("ME-1.1")
def test_code_entropy_matches_an_independent_histogram():
    x = heavy_tailed_activations(64, 128, seed=2)
    h, nvals = _entropy_by_values(x)
    assert nvals <= 15
    assert code_entropy(x) == pytest.approx(h, rel=1e-12, abs=1e-12)
    assert 0.0 <= code_entropy(x) <= MAX_ENTROPY_BITS


@pytest.mark.clause("ME-1.1")
def test_code_entropy_hand_block():
    # amax 6 -> scale 2^0; codes: 6, 4, 3, -0.5, and 28 zeros of both signs (one bin)
    x = np.zeros((1, 32))
    x[0, :4] = [6.0, 4.0, 3.0, -0.5]
    x[0, 4:18] = -0.0
    counts = np.array([28, 1, 1, 1, 1])
    p = counts / 32
    assert code_entropy(x) == pytest.approx(float(-(p * np.log2(p)).sum()), rel=1e-15)
    assert code_entropy(np.zeros((3, 32))) == 0.0            # one value used: exactly 0
    assert math.isclose(MAX_ENTROPY_BITS, math.log2(15))


@pytest.mark.clause("ME-1.1")
def test_maximum_reached_by_uniform_use():
    assert entropy_from_counts(np.r_[np.ones(8, np.int64), 0, np.ones(7, np.int64)] * 5) == \
        pytest.approx(math.log2(15), rel=1e-15)


@pytest.mark.clause("ME-1.1")
def test_scale_rule_is_passed_to_the_codec():
    # amax 7: FLOOR scale 2^0 (0.3 -> 0.5, 0.2 -> 0), RCEIL scale 2^1 (both -> 0)
    x = np.full((1, 32), 0.3)
    x[0, 16:] = 0.2
    x[0, 0] = 7.0
    assert code_entropy(x, scale_rule="floor") != code_entropy(x, scale_rule="rceil")


@pytest.mark.clause("ME-1.2")
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(2, 40), nb=st.integers(1, 3))
def test_entropy_invariances_are_exact(seed, T, nb):
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(T, 32 * nb)) * np.exp(rng.standard_normal(32 * nb))
    h = code_entropy(x)
    assert code_entropy(x[rng.permutation(T)]) == h                      # tokens
    assert code_entropy(-x) == h                                          # global sign flip
    blocks = x.reshape(T, nb, 32)
    assert code_entropy(blocks[:, rng.permutation(nb)].reshape(T, -1)) == h   # blocks
    assert code_entropy(blocks[:, :, rng.permutation(32)].reshape(T, -1)) == h  # inside a block


@pytest.mark.clause("ME-1.2")
def test_single_token_sign_flip_is_not_an_invariance():
    # documented limit: flipping one token changes the histogram unless its codes are symmetric
    x = np.zeros((2, 32))
    x[0, :3] = [6.0, 4.0, 0.5]
    x[1, :3] = [6.0, 1.0, 2.0]
    y = x.copy()
    y[1] *= -1
    assert code_entropy(y) != code_entropy(x)
    sym = np.zeros((2, 32))
    sym[:, :4] = [6.0, -6.0, 1.0, -1.0]
    flip = sym.copy()
    flip[0] *= -1
    assert code_entropy(flip) == code_entropy(sym)


@pytest.mark.clause("ME-1.2")
def test_entropy_from_counts_ignores_bin_order():
    c = np.array([5, 0, 17, 3, 1, 0, 9, 2, 0, 11, 4, 6, 8, 1, 0, 2], np.int64)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert entropy_from_counts(c[rng.permutation(16)]) == entropy_from_counts(c)


@pytest.mark.clause("ME-1.3")
def test_code_histogram_merges_negative_zero():
    codes = np.array([0, 8, 8, 1, 9, 15, 7], np.uint8)
    h = code_histogram(codes)
    assert h.dtype == np.int64 and h.shape == (16,)
    assert h[0] == 3 and h[8] == 0 and h[1] == 1 and h[9] == 1 and h[15] == 1 and h[7] == 1


@pytest.mark.clause("ME-1.3")
def test_bad_input():
    with pytest.raises(TypeError):
        code_entropy(np.ones((2, 32), np.int32))
    with pytest.raises(EntropyInputError, match="divisible"):
        code_entropy(np.ones((2, 33)))
    with pytest.raises(EntropyInputError, match="finite"):
        code_entropy(np.full((2, 32), np.nan))
    with pytest.raises(EntropyInputError):
        code_entropy(np.ones((0, 32)))
    with pytest.raises(TypeError):
        code_histogram(np.array([1, 2], np.int64))
    with pytest.raises(EntropyInputError):
        code_histogram(np.array([16], np.uint8))
    with pytest.raises(EntropyInputError):
        entropy_from_counts(np.zeros(16, np.int64))
    with pytest.raises(EntropyInputError):
        entropy_from_counts(np.array([-1, 2]))
    with pytest.raises(TypeError):
        entropy_from_counts(np.array([0.5, 0.5]))


@pytest.mark.clause("ME-1.2")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**6), min_size=16, max_size=16), min_size=1, max_size=8)
       .filter(lambda rows: all(any(r) for r in rows)))
def test_entropies_of_many_histograms_are_the_single_ones(rows):
    from torq_ref.rotations.entropy import entropies_from_counts

    hists = np.array(rows, dtype=np.int64)
    got = entropies_from_counts(hists)
    want = [entropy_from_counts(h) for h in hists]
    assert [float(v).hex() for v in got] == [float(v).hex() for v in want]


@pytest.mark.clause("ME-1.2")
def test_entropies_of_many_histograms_refuse_bad_input():
    from torq_ref.rotations.entropy import EntropyInputError, entropies_from_counts

    with pytest.raises(EntropyInputError, match="non-negative"):
        entropies_from_counts(np.array([[1, -1, 3]]))
    with pytest.raises(TypeError, match="integer"):
        entropies_from_counts(np.array([[1.0, 2.0]]))
    with pytest.raises(EntropyInputError, match="empty"):
        entropies_from_counts(np.zeros((2, 16), dtype=np.int64))
