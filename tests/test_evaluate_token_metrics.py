"""Per-window NLL, KL divergence and top-1 agreement against FP32 (spec/EV.md section 1)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from torq_ref.evaluate import ref_logprobs, window_metrics
from torq_ref.model.metrics import window_nll


def _window(seed=0, S=150, V=40, noise=0.3):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((S, V)).astype(np.float32) * 3
    row = (ref + noise * rng.standard_normal((S, V))).astype(np.float32)
    ids = rng.integers(0, V, size=S)
    return ref, row, ids


@pytest.mark.clause("EV-1.1")
def test_whole_window_or_scored_positions_give_the_same():
    ref, row, ids = _window()
    full = window_metrics(ref, row, ids[1:])
    sliced = window_metrics(ref[:-1], row[:-1], ids[1:])
    assert full == sliced and full["n"] == len(ids) - 1


@pytest.mark.clause("EV-1.1")
@pytest.mark.parametrize("bad, match", [
    (lambda r, q, t: (r, q, t[:-5]), "positions"),
    (lambda r, q, t: (r, q[:, :-1], t), "vocab"),
    (lambda r, q, t: (r, q[0], t), "logits must be"),
    (lambda r, q, t: (r, q, t.astype(float)), "integer"),
    (lambda r, q, t: (r, q, t + 100), "targets must lie"),
    (lambda r, q, t: (r, np.where(q > 2, np.inf, q), t), "logits contains non-finite"),
    (lambda r, q, t: (np.where(r > 2, np.nan, r), q, t), "ref_logits contains non-finite"),
    (lambda r, q, t: (r[:, :1], q[:, :1], t * 0), "vocab >= 2"),
])
def test_bad_input_is_named(bad, match):
    ref, row, ids = _window(S=20)
    with pytest.raises(ValueError, match=match):
        window_metrics(*bad(ref, row, ids[1:]))


@pytest.mark.clause("EV-1.2")
def test_nll_is_the_window_score_of_fw_6_3():
    ref, row, ids = _window(1)
    m = window_metrics(ref, row, ids[1:])
    assert m["nll"] == pytest.approx(window_nll(row, ids), rel=1e-13)
    lq = log_softmax(row[:-1].astype(np.float64), axis=-1)
    assert m["nll"] == pytest.approx(-lq[np.arange(len(ids) - 1), ids[1:]].mean(), rel=1e-13)


@pytest.mark.clause("EV-1.3")
def test_kld_closed_form_on_two_tokens():
    # P = (1/4, 3/4) from logits (0, log 3); Q uniform: KL = 1/4 log(1/2) + 3/4 log(3/2)
    ref = np.array([[0.0, np.log(3.0)]] * 3)
    row = np.zeros((3, 2))
    m = window_metrics(ref, row, np.array([0, 1, 1]))
    assert m["kld"] == pytest.approx(0.25 * np.log(0.5) + 0.75 * np.log(1.5), rel=1e-14)
    assert window_metrics(ref, ref, np.array([0, 1, 1]))["kld"] == 0.0


@pytest.mark.clause("EV-1.3")
def test_kld_matches_an_independent_float64_computation():
    ref, row, ids = _window(2, S=200, V=300)
    lp = log_softmax(ref[:-1].astype(np.float64), axis=-1)
    lq = log_softmax(row[:-1].astype(np.float64), axis=-1)
    want = np.sum(np.exp(lp) * (lp - lq), axis=-1)            # (S-1,)
    m = window_metrics(ref, row, ids[1:], per_position=True)
    assert np.allclose(m["kld_pos"], want, rtol=1e-12, atol=1e-15)
    assert m["kld"] == pytest.approx(want.mean(), rel=1e-12)
    assert (want > 0).all()
    # direction matters: KL(P_fp32 || Q_row), not KL(Q || P)
    reverse = np.sum(np.exp(lq) * (lq - lp), axis=-1).mean()
    assert abs(m["kld"] - reverse) > 1e-3 * reverse


@pytest.mark.clause("EV-1.4")
def test_top1_agreement_and_ties_to_the_lowest_id():
    ref = np.array([[1.0, 1.0, 0.0],      # tie: FP32 argmax is token 0
                    [0.0, 2.0, 1.0],
                    [3.0, 0.0, 0.0],
                    [0.0, 0.0, 5.0]])
    row = np.array([[1.0, 1.0, 1.0],      # three-way tie -> 0: same
                    [0.0, 1.0, 1.0],      # tie 1 / 2 -> 1: same
                    [0.0, 3.0, 0.0],      # differs
                    [0.0, 0.0, 4.0]])     # same
    m = window_metrics(ref, row, np.zeros(4, dtype=int))
    assert m["top1"] == 0.75
    assert window_metrics(ref, ref, np.zeros(4, dtype=int))["top1"] == 1.0


@pytest.mark.clause("EV-1.5")
def test_precomputed_reference_and_chunks_agree():
    ref, row, ids = _window(3, S=200, V=64)        # 199 positions: four chunks of 64
    lp = ref_logprobs(ref)
    assert lp.dtype == np.float64 and lp.shape == ref.shape
    assert np.allclose(lp, log_softmax(ref.astype(np.float64), axis=-1), rtol=0, atol=1e-12)
    a = window_metrics(ref, row, ids[1:])
    b = window_metrics(None, row, ids[1:], ref_logp=lp)
    assert a == b
    with pytest.raises(ValueError, match="ref_logits or ref_logp"):
        window_metrics(None, row, ids[1:])
    # chunked per-position values equal a one-shot computation
    m = window_metrics(ref, row, ids[1:], per_position=True)
    lq = log_softmax(row[:-1].astype(np.float64), axis=-1)
    assert np.allclose(m["kld_pos"], np.sum(np.exp(lp[:-1]) * (lp[:-1] - lq), axis=-1), rtol=1e-12)
    assert m["kld_pos"].shape == (199,) and m["kld"] == pytest.approx(m["kld_pos"].mean(), rel=1e-15)


@pytest.mark.clause("TQ-6.9")
def test_ref_terms_give_the_bits_of_the_per_row_computation():
    """TQ-6.9: P and its argmax computed once per window (RefTerms) give every row exactly the
    numbers of the per-row computation, per-position KLDs included; a RefTerms of another
    length is refused."""
    from torq_ref.evaluate.token_metrics import RefTerms

    ref, row, ids = _window(4, S=200, V=64)
    lp = ref_logprobs(ref[:-1])
    terms = RefTerms(lp, 199)
    for noise_row in (row, ref, row * 2):
        a = window_metrics(None, noise_row[:-1], ids[1:], ref_logp=lp, per_position=True)
        b = window_metrics(None, noise_row[:-1], ids[1:], ref_terms=terms, per_position=True)
        assert a.pop("kld_pos").tobytes() == b.pop("kld_pos").tobytes() and a == b
    with pytest.raises(ValueError, match="ref_terms cover"):
        window_metrics(None, row[:-2], ids[1:-1], ref_terms=terms)
