"""The seed spread (spec/EV.md section 5) and what the seed changes (spec/TQ.md TQ-4.8)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from torq_ref.cli import main
from torq_ref.evaluate.cross_model import ReportError
from torq_ref.evaluate.seed_spread import (load_seed_runs, seed_head_to_head, seed_head_to_head_table,
                                           seed_table)
from torq_ref.torq import TorqConfig, site_transform
from torq_ref.torq.methods import METHODS, SEED_FREE_METHODS

W = 6
SETTINGS = {"model": "tiny", "eval_windows": W, "calib_windows": 2, "scale_rule": "floor",
            "model_dir": "/somewhere", "progress": True}


def _row(method, setting, kld):
    kld = np.asarray(kld, dtype=float)
    return {"method": method, "setting": setting, "ppl": 10.0, "window_nll": (2.3 + kld).tolist(),
            "window_kld": kld.tolist(), "window_top1": (1 - kld).tolist(), "window_n": [511] * W}


def _write(tmp_path, seed, rows, **settings):
    p = tmp_path / f"s{seed}" / "results.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    st = dict(SETTINGS, seed=seed, methods=sorted({r["method"] for r in rows}), **settings)
    p.write_text(json.dumps({"results": rows, "seed": seed, "settings": st}))
    return p


def _hard(seed):
    return 0.2 + 0.05 * np.random.default_rng(seed).standard_normal(W)


def _study(tmp_path, torq_offsets=(-0.05, -0.04)):
    """Seed 0 has every row; seed 1 only the seeded ones (smoothrot is seed-free, TQ-4.8)."""
    base = _hard(0)
    noise = [0.002 * np.random.default_rng(10 + k).standard_normal(W) for k in range(4)]
    s0 = [_row("fp32", "FP32", np.zeros(W)), _row("smoothrot", "W16A4", base),
          _row("duquant", "W16A4", base + 0.01 + noise[0]),
          _row("torq", "W16A4", base + torq_offsets[0] + noise[1])]
    s1 = [_row("fp32", "FP32", np.zeros(W)), _row("duquant", "W16A4", base - 0.01 + noise[2]),
          _row("torq", "W16A4", base + torq_offsets[1] + noise[3])]
    return _write(tmp_path, 0, s0), _write(tmp_path, 1, s1)


@pytest.mark.clause("EV-5.1")
def test_load_seed_runs_checks_the_study(tmp_path):
    p0, p1 = _study(tmp_path)
    runs = load_seed_runs([p0, p1])
    assert [r["seed"] for r in runs] == [0, 1] and len(runs[1]["rows"]) == 3
    with pytest.raises(ReportError, match="at least two"):
        load_seed_runs([p0])
    with pytest.raises(ReportError, match="seed 0 appears twice"):
        load_seed_runs([p0, p0])
    with pytest.raises(ReportError, match="no results file"):
        load_seed_runs([p0, tmp_path / "none.json"])
    other = _write(tmp_path / "x", 2, [_row("torq", "W16A4", _hard(0))], scale_rule="mse")
    with pytest.raises(ReportError, match="differ in setting 'scale_rule'"):
        load_seed_runs([p0, other])
    # the machine's model path and the row list may differ
    moved = _write(tmp_path / "y", 3, [_row("torq", "W16A4", _hard(0))], model_dir="/elsewhere")
    assert len(load_seed_runs([p0, moved])) == 2
    # a run from before the exploration knobs left the core carries them at the core's values
    old = _write(tmp_path / "o", 4, [_row("torq", "W16A4", _hard(0))], order="macro-micro",
                 per_block=False, full_macro_strategy="block_hadamard", alpha_grid=None)
    assert len(load_seed_runs([p0, old])) == 2 and len(load_seed_runs([old, p0])) == 2
    other_order = _write(tmp_path / "oo", 5, [_row("torq", "W16A4", _hard(0))], order="micro-macro")
    with pytest.raises(ReportError, match="differ in setting 'order'"):
        load_seed_runs([p0, other_order])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not JSON"):
        load_seed_runs([p0, bad])
    bad.write_text(json.dumps({"results": [{"method": "torq", "setting": "W16A4", "ppl": 1}],
                               "settings": SETTINGS}))
    with pytest.raises(ReportError, match="without window_kld"):
        load_seed_runs([p0, bad])


@pytest.mark.clause("EV-5.2")
def test_seed_table_lists_every_seed_mean_and_range(tmp_path):
    runs = load_seed_runs(list(_study(tmp_path)))
    lines = seed_table(runs).splitlines()
    assert lines[0] == "| method | setting | seed 0 KLD | seed 1 KLD | mean | range |"
    torq = next(line for line in lines if line.startswith("| torq |"))
    k0 = np.mean(runs[0]["rows"][3]["window_kld"])
    k1 = np.mean(runs[1]["rows"][2]["window_kld"])
    assert f"{k0:.4f}" in torq and f"{(k0 + k1) / 2:.4f}" in torq and f"{abs(k0 - k1):.4f}" in torq
    smooth = next(line for line in lines if line.startswith("| smoothrot |"))
    assert smooth.split(" | ")[3] == "-" and smooth.rstrip(" |").endswith("-")    # one seed: no range


@pytest.mark.clause("EV-5.3")
def test_verdict_needs_every_seed(tmp_path):
    runs = load_seed_runs(list(_study(tmp_path, torq_offsets=(-0.05, -0.04))))
    got = {h["peer"]: h for h in seed_head_to_head(runs, "torq")}
    # smoothrot is seed-free: seed 1 borrows seed 0's row; both seeds separate below 0
    sm = got["smoothrot"]
    assert [p["borrowed"] for p in sm["per_seed"]] == [False, True] and sm["verdict"] == "better"
    assert sm["per_seed"][1]["dkld"] == pytest.approx(-0.04, abs=0.01)
    # duquant is seeded: each seed is paired with its own run's duquant row
    assert [p["borrowed"] for p in got["duquant"]["per_seed"]] == [False, False]
    # a seed on which the difference vanishes turns "better" into "mixed"
    runs = load_seed_runs(list(_study(tmp_path / "m", torq_offsets=(-0.05, 0.0))))
    assert {h["peer"]: h["verdict"] for h in seed_head_to_head(runs, "torq")}["smoothrot"] == "mixed"
    runs = load_seed_runs(list(_study(tmp_path / "t", torq_offsets=(0.0, 0.0))))
    assert {h["peer"]: h["verdict"] for h in seed_head_to_head(runs, "torq")}["smoothrot"] == "tie"
    runs = load_seed_runs(list(_study(tmp_path / "w", torq_offsets=(0.05, 0.04))))
    assert {h["peer"]: h["verdict"] for h in seed_head_to_head(runs, "torq")}["smoothrot"] == "worse"
    # a seeded peer missing from a run is not borrowed: that seed is left out
    h = {h["peer"]: h for h in seed_head_to_head(runs, "torq", seed_free=())}["smoothrot"]
    assert [p["seed"] for p in h["per_seed"]] == [0]
    table = seed_head_to_head_table(seed_head_to_head(runs, "torq"))
    assert "| W16A4 | torq - smoothrot | s0 +0.05" in table and "s1* " in table


@pytest.mark.clause("EV-5.4")
def test_seeds_command(tmp_path, capsys):
    p0, p1 = _study(tmp_path)
    out = tmp_path / "spread.md"
    assert main(["report", "--seeds", f"{p0},{p1}", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "seed 1 KLD" in text and "torq - smoothrot" in text and "better" in text
    assert out.read_text() in text
    assert main(["report", "--seeds", str(p0)]) == 2
    assert "at least two" in capsys.readouterr().err


@pytest.mark.clause("TQ-4.8")
def test_seed_free_methods_ignore_the_seed_and_the_others_do_not():
    rng = np.random.default_rng(5)
    n = 64
    X = rng.standard_normal((512, n)) * np.linspace(0.2, 3.0, n)
    X[:, 7] *= 12
    C = X.T @ X / len(X)
    Wt = rng.standard_normal((16, n))
    cfg = TorqConfig(micro_rows=256, max_sweeps=1)

    def dense(method, seed):
        t, _ = site_transform(method, 1, "qkv", C, X, replace(cfg, seed=seed), weight=Wt)
        return None if t is None else t.materialize(n).apply(np.eye(n))

    seeded = ("random-orthogonal", "duquant", "torq-micro", "torq", "torq-maxent")
    # torq-learned: the seed splits its rows (TQ-2.18); on these rows no step is taken for either
    # seed (both return the Hadamard start), so the split is seen in its report, not its matrix
    reports = [site_transform("torq-learned", 1, "qkv", C, X, replace(cfg, seed=s), weight=Wt)[1]["learned"]
               for s in (0, 1)]
    assert reports[0]["initial"]["holdout_L"] != reports[1]["initial"]["holdout_L"]
    assert set(SEED_FREE_METHODS) | set(seeded) | {"torq-macro", "torq-learned"} == set(METHODS)
    for method in SEED_FREE_METHODS:
        a, b = dense(method, 0), dense(method, 1)
        assert (a is None and b is None) or np.array_equal(a, b), method
    for method in seeded:
        assert not np.array_equal(dense(method, 0), dense(method, 1)), method


@pytest.mark.clause("EV-5.1")
def test_load_seed_runs_reads_added_settings_as_their_default(tmp_path):
    """A run recorded before fit_guard / quant_sites / scale_sites existed pairs with a new run
    at those knobs' defaults, and only there."""
    rows = [_row("torq", "W16A4", _hard(0))]
    old = _write(tmp_path / "old", 0, rows)
    new = _write(tmp_path / "new", 1, rows, fit_guard="off", quant_sites=["qkv", "o", "gate_up", "down"],
                 scale_sites=["qkv", "gate_up"])
    assert len(load_seed_runs([old, new])) == 2 and len(load_seed_runs([new, old])) == 2
    for key, value in (("fit_guard", "output"), ("quant_sites", ["down"]), ("scale_sites", ["qkv", "gate_up", "down"])):
        other = _write(tmp_path / key, 2, rows, **{key: value})
        with pytest.raises(ReportError, match=f"differ in setting '{key}'"):
            load_seed_runs([old, other])
