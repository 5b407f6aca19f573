"""The micro level's scale step: channel smoothing folded into RMSNorm and W (spec/TQ.md TQ-2.7)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref import model as M
from torq_ref.model.tiny import tiny_model
from torq_ref.torq.oracle import calibrate
from torq_ref.torq.scale_step import (NORM_OF_SITE, ScaledCalibration, channel_scales, scaled_model,
                                      site_scales)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=3)


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(5).integers(0, 96, size=(2, 48))


@pytest.mark.clause("TQ-2.7")
def test_channel_scales_formula():
    r = np.array([4.0, 1.0, 0.25, 0.0])
    s = channel_scales(np.diag(r ** 2), 0.5)
    g = np.exp(np.mean(np.log(r[:3])))                           # geometric mean of the live RMS
    assert np.allclose(s[:3], (r[:3] / g) ** 0.5, rtol=1e-15) and s[3] == 1.0
    assert np.array_equal(channel_scales(np.diag(r ** 2), 0.0), np.ones(4))   # alpha 0: identity
    assert np.array_equal(channel_scales(np.zeros((4, 4)), 0.5), np.ones(4))  # a dead site: unscaled
    for bad in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="alpha"):
            channel_scales(np.eye(3), bad)


@pytest.mark.clause("TQ-2.7")
def test_scaled_model_keeps_fp32_logits_and_flattens_channels(tiny, ids):
    cap = calibrate(tiny, ids, 96, progress=False)
    scales = site_scales(cap.moment, tiny.config.num_layers, 0.75)
    assert set(scales) == {(l, s) for l in range(tiny.config.num_layers) for s in NORM_OF_SITE}
    assert all(not np.allclose(s, 1.0) for s in scales.values())   # the step does act
    sm = scaled_model(tiny, scales)
    ref = tiny.forward(ids[:1])
    assert np.max(np.abs(sm.forward(ids[:1]) - ref)) < 1e-4         # folded: same function
    assert tiny.layers[0].qkv is not sm.layers[0].qkv                # the original is untouched
    assert np.array_equal(tiny.forward(ids[:1]), ref)
    # the view of the calibration data equals what the scaled model records
    view = ScaledCalibration(cap, scales)
    cap2 = calibrate(sm, ids, 96, progress=False)
    for key in [(0, "qkv"), (1, "gate_up"), (0, "o")]:
        assert np.allclose(view.moment(*key), cap2.moment(*key), rtol=1e-4, atol=1e-6)
        assert np.allclose(view.inputs(*key), cap2.inputs(*key), rtol=1e-4, atol=1e-5)
    # and the RMS of the scaled channels is flatter: r / s = g^alpha r^(1 - alpha)
    c0, c1 = np.diag(cap.moment(0, "qkv")), np.diag(view.moment(0, "qkv"))
    spread = lambda d: np.log(np.sqrt(d.max() / d.min()))           # noqa: E731
    assert spread(c1) == pytest.approx(0.25 * spread(c0), rel=1e-6)


@pytest.mark.clause("TQ-2.7")
def test_scaled_model_rejects_bad_scales(tiny):
    n = tiny.config.hidden_size
    with pytest.raises(ValueError, match="not fed by an RMSNorm"):
        scaled_model(tiny, {(0, "lm_head"): np.ones(tiny.config.intermediate_size)})
    with pytest.raises(ValueError, match="shape"):
        scaled_model(tiny, {(0, "qkv"): np.ones(n + 1)})
