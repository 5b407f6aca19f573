"""summarize(): run-level metrics, paired comparisons with the baseline, the table (spec/EV.md 3)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from torq_ref.evaluate import IntervalError, metrics_table, paired_ci, summarize

W = 10


def _row(method, setting, nll, kld, top1, n=None):
    return {"method": method, "setting": setting, "ppl": float(np.exp(np.mean(nll))),
            "window_nll": list(map(float, nll)), "window_kld": list(map(float, kld)),
            "window_top1": list(map(float, top1)), "window_n": n or [511] * len(nll)}


def _rows(seed=0):
    rng = np.random.default_rng(seed)
    hard = rng.standard_normal(W)                                 # per-window difficulty, shared
    def nll(shift, noise):
        return 2.7 + 0.3 * hard + shift + noise * rng.standard_normal(W)
    def kld(level, noise):
        return np.abs(level + 0.02 * hard + noise * rng.standard_normal(W))
    top = lambda p: np.clip(p + 0.01 * rng.standard_normal(W), 0, 1)   # noqa: E731
    return [
        _row("fp32", "FP32", nll(0, 0), np.zeros(W), np.ones(W)),
        _row("hadamard32", "W16A4", nll(0.25, 0.01), kld(0.20, 0.005), top(0.80)),
        _row("torq", "W16A4", nll(0.15, 0.01), kld(0.12, 0.005), top(0.85)),
        _row("smoothrot", "W16A4", nll(0.25, 0.01), kld(0.20, 0.005), top(0.80)),   # same as baseline
        _row("hadamard32", "W4A4", nll(1.0, 0.01), kld(0.90, 0.005), top(0.60)),
        _row("torq", "W4A4", nll(0.6, 0.01), kld(0.50, 0.005), top(0.70)),
    ]


@pytest.mark.clause("EV-3.1")
def test_summary_adds_means_and_standard_errors_without_touching_the_input():
    rows = _rows()
    before = copy.deepcopy(rows)
    out = summarize(rows)
    assert rows == before
    for r, s in zip(rows, out):
        assert s["kld"] == pytest.approx(np.mean(r["window_kld"]), rel=1e-14)
        assert s["kld_se"] == pytest.approx(np.std(r["window_kld"], ddof=1) / np.sqrt(W), rel=1e-12)
        assert s["top1"] == pytest.approx(np.mean(r["window_top1"]), rel=1e-14)
        assert s["nll"] == pytest.approx(np.log(r["ppl"]), rel=1e-12)
    assert out[0]["kld"] == 0 and out[0]["top1"] == 1
    # rows of an older run (no kld / top1 lists) still get nll statistics
    old = [{k: v for k, v in r.items() if k not in ("window_kld", "window_top1")} for r in rows]
    s = summarize(old)
    assert "kld" not in s[2] and "dkld" not in s[2]["vs_hadamard32"] and "dnll" in s[2]["vs_hadamard32"]


@pytest.mark.clause("EV-3.2")
def test_comparisons_pair_with_the_baseline_of_the_same_setting():
    rows = _rows()
    out = summarize(rows)
    by = {(r["method"], r["setting"]): r for r in out}
    assert "vs_hadamard32" not in by[("fp32", "FP32")]
    assert "vs_hadamard32" not in by[("hadamard32", "W16A4")]
    for setting in ("W16A4", "W4A4"):
        r, b = by[("torq", setting)], by[("hadamard32", setting)]
        cmp = r["vs_hadamard32"]
        for key, col in (("dnll", "window_nll"), ("dkld", "window_kld")):
            d, lo, hi = paired_ci(r[col], b[col], r["window_n"])
            assert cmp[key] == d and cmp[f"{key}_ci"] == [lo, hi]
        assert cmp["windows"] == W and cmp["ci_method"] == "t" and cmp["level"] == 0.95
    assert by[("torq", "W4A4")]["vs_hadamard32"]["dnll"] == pytest.approx(-0.4, abs=0.02)
    assert by[("torq", "W16A4")]["vs_hadamard32"]["dnll"] == pytest.approx(-0.1, abs=0.02)
    # another baseline name gives another key
    assert "vs_torq" in summarize(rows, baseline="torq")[1]
    # bootstrap intervals are seeded
    a = summarize(rows, method="bootstrap", seed=1)
    assert a == summarize(rows, method="bootstrap", seed=1) != summarize(rows, method="bootstrap", seed=2)


@pytest.mark.clause("EV-3.2")
def test_rows_on_other_windows_are_refused():
    rows = _rows()
    rows[2]["window_n"] = [511] * (W - 1) + [300]
    with pytest.raises(IntervalError, match="same windows"):
        summarize(rows)
    rows = _rows()
    rows.append(copy.deepcopy(rows[1]))
    with pytest.raises(IntervalError, match="two baseline rows"):
        summarize(rows)
    rows = _rows()
    del rows[3]["window_nll"]
    with pytest.raises(IntervalError, match="'smoothrot', 'W16A4'.*window_nll"):
        summarize(rows)


@pytest.mark.clause("EV-3.3")
def test_ties_are_intervals_containing_zero():
    out = {(r["method"], r["setting"]): r for r in summarize(_rows())}
    same = out[("smoothrot", "W16A4")]["vs_hadamard32"]
    better = out[("torq", "W16A4")]["vs_hadamard32"]
    assert same["dnll_tie"] and same["dkld_tie"]
    assert same["dkld_ci"][0] <= 0 <= same["dkld_ci"][1]
    assert not better["dnll_tie"] and not better["dkld_tie"] and better["dkld_ci"][1] < 0
    one = summarize([_row("hadamard32", "W16A4", [2.0], [0.1], [0.8]), _row("torq", "W16A4", [1.0], [0.05], [0.9])])
    assert one[1]["vs_hadamard32"]["dkld_tie"] and one[1]["vs_hadamard32"]["dkld_ci"] == [None, None]
    assert one[1]["kld_se"] is None and one[1]["nll_se"] is None        # strict JSON: null, not NaN
    import json

    json.dumps(one, allow_nan=False)
    assert "| 0.0500 | 90.0 | -0.0500 tie | -1.0000 tie |" in metrics_table(one)


@pytest.mark.clause("EV-3.4")
def test_table_shows_metrics_intervals_and_ties():
    rows = _rows()
    rows.insert(2, rows.pop())                          # a W4A4 row in the middle: the table sorts
    text = metrics_table(summarize(rows))
    lines = text.splitlines()
    assert lines[0].startswith("| method | setting | PPL | KLD (nats) +- se | top-1 % | dKLD vs hadamard32")
    body = [line.split(" | ") for line in lines[2:]]
    assert [b[1] for b in body] == ["FP32", "W16A4", "W16A4", "W16A4", "W4A4", "W4A4"]
    assert [b[0].strip("| ") for b in body][1:4] == ["hadamard32", "torq", "smoothrot"]
    smooth = next(line for line in lines if line.startswith("| smoothrot"))
    torq = next(line for line in lines if line.startswith("| torq | W16A4"))
    assert smooth.count(" tie") == 2 and " tie" not in torq
    assert "+- " in torq and "[-" in torq
    assert lines[2].endswith("| - | - |")               # fp32: no comparison
