"""The end-to-end TORQ pipeline on a tiny seeded model (spec/TQ.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from torq_ref import model as M
from torq_ref.model.tiny import tiny_model
from torq_ref.rotations.baselines import sylvester_hadamard
from torq_ref.torq.methods import DEFAULT_METHODS
from torq_ref.torq import METHODS, RunSpec, SettingsError, TorqConfig, evaluate_methods, site_transform
from torq_ref.torq.oracle import plan_for
from torq_ref.torq.pipeline import check_windows
from torq_ref.torq.site_metrics import site_metrics
from torq_ref.torq.report import table, write_figures, write_json

CFG = TorqConfig(micro_rows=64, max_sweeps=1)   # 2 x 48 calibration rows: 32 held out


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=3)


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 96, size=6 * 48)
    return ids[: 2 * 48].reshape(2, 48), ids[2 * 48: 4 * 48].reshape(2, 48)


@pytest.fixture(scope="module")
def results(tiny, windows):
    ev, ca = windows
    spec = RunSpec(methods=METHODS, eval_windows=2, calib_windows=2, window=48, progress=False)
    return evaluate_methods(tiny, ev, ca, spec, CFG)


@pytest.mark.clause("TQ-1.1")
def test_calibration_windows_follow_evaluation_windows():
    ids = np.arange(12 * 512)
    ev = M.eval_windows(ids, 8)
    ca = M.calibration_windows(ids, 4, start=8)
    assert ev[-1, -1] < ca[0, 0] and ca.shape == (4, 512)
    assert not set(ev.ravel()) & set(ca.ravel())


def _moment_and_rows(n=64, rows=128, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, size=(rows, n)) * np.linspace(0.1, 5, n)
    return X.T @ X / rows, X


def _dense(t, n):
    return t.materialize(n).apply(np.eye(n))


@pytest.mark.clause("TQ-2.1", "TQ-2.2")
def test_baseline_transforms():
    C, X = _moment_and_rows()
    assert site_transform("rtn", 0, "qkv", C, X, CFG)[0] is None
    assert site_transform("fp32", 0, "qkv", C, X, CFG)[0] is None
    h, _ = site_transform("hadamard32", 0, "qkv", C, X, CFG)
    D = _dense(h, 64)
    H = sylvester_hadamard(32)
    assert np.allclose(D, np.kron(np.eye(2), H), atol=1e-15)
    r1, _ = site_transform("random-orthogonal", 0, "qkv", C, X, CFG)
    r2, _ = site_transform("random-orthogonal", 1, "qkv", C, X, CFG)
    D1, D2 = _dense(r1, 64), _dense(r2, 64)
    assert np.allclose(D1.T @ D1, np.eye(64), atol=1e-12)
    assert not np.allclose(D1, D2)          # seeded per site
    # --quick shares one Haar matrix per site kind across layers (TQ-2.2), and caches it
    from dataclasses import replace

    quick, cache = replace(CFG, random_per_layer=False), {}
    q1, _ = site_transform("random-orthogonal", 0, "qkv", C, X, quick, cache)
    q2, _ = site_transform("random-orthogonal", 1, "qkv", C, X, quick, cache)
    q3, _ = site_transform("random-orthogonal", 1, "o", C, X, quick, cache)
    assert q1.matrix is q2.matrix and not np.allclose(q1.matrix, q3.matrix)
    c1, _ = site_transform("random-orthogonal", 1, "qkv", C, X, CFG, {})
    assert np.array_equal(_dense(c1, 64), D2)   # the cache does not change the per-layer draw


@pytest.mark.clause("TQ-2.3", "TQ-2.4", "TQ-2.5")
def test_torq_transforms_compose_macro_and_micro():
    from torq_ref.torq.methods import macro_transform

    C, X = _moment_and_rows()
    mac, _ = site_transform("torq-macro", 0, "o", C, X, CFG)
    Dm = _dense(mac, 64)
    assert np.allclose(Dm, macro_transform(C, CFG).apply(np.eye(64)), atol=1e-13)
    cache = {}
    mic, info = site_transform("torq-micro", 0, "o", C, X, CFG, cache)
    assert mic.matrix is None and mic.block.shape == (32, 32) and "micro" in info
    # default: macro = 32-block Hadamard, then R' from the identity; B (I (x) R') = I (x) R_micro
    full, _ = site_transform("torq", 0, "o", C, X, CFG, cache)
    assert full.matrix is None and np.array_equal(full.block, mic.block)
    # torq-micro is torq by construction (TQ-2.5): one fit, the same transform
    alone, _ = site_transform("torq", 0, "o", C, X, CFG)                    # no cache
    assert np.array_equal(alone.block, mic.block)
    with pytest.raises(SettingsError, match="unknown method"):
        site_transform("quarot", 0, "o", C, X, CFG)


@pytest.mark.clause("TQ-2.6")
def test_settings_plans():
    assert plan_for("fp32", "W16A4", {}, CFG) is None
    p16 = plan_for("rtn", "W16A4", {}, CFG)
    p4 = plan_for("rtn", "W4A4", {}, CFG)
    assert p16.default.act_fmt == "e2m1" and p16.default.weight_fmt is None
    assert p4.default.weight_fmt == "e2m1" and p4.mode == "folded"


@pytest.mark.clause("TQ-3.1")
def test_calibration_keeps_moments_and_rows(tiny, windows):
    from torq_ref.torq.oracle import calibrate

    _, ca = windows
    cap = calibrate(tiny, ca, 50, progress=False)
    X = cap.inputs(1, "down")
    assert X.shape == (50, 96)
    C = cap.moment(1, "down")
    assert C.shape == (96, 96) and np.allclose(C, C.T)


@pytest.mark.clause("TQ-3.2")
def test_folded_transforms_keep_fp32_logits(tiny, windows):
    ev, ca = windows
    from torq_ref.torq.oracle import calibrate

    cap = calibrate(tiny, ca, 96, progress=False)
    transforms = {(i, s): site_transform("torq", i, s, cap.moment(i, s), cap.inputs(i, s), CFG)[0]
                  for i in range(tiny.config.num_layers) for s in M.SITES}
    plan = M.QuantPlan.uniform(None, transforms=transforms)           # transforms, no quantization
    ref = tiny.forward(ev[:1])
    got = tiny.forward(ev[:1], quant=plan)
    assert np.max(np.abs(got - ref)) < 1e-4
    rtn = tiny.forward(ev[:1], quant=M.QuantPlan.uniform("e2m1", transforms=transforms))
    assert np.max(np.abs(rtn - ref)) > 1e-3                        # and quantization does act


@pytest.mark.clause("TQ-3.3")
def test_site_metrics_identity():
    from torq_ref.rotations.entropy import code_entropy
    from torq_ref.rotations.metrics import block_energy_imbalance

    C, X = _moment_and_rows()
    m = site_metrics(C, X, None, CFG)
    assert m["imbalance"] == pytest.approx(block_energy_imbalance(C, 32))
    assert m["entropy"] == pytest.approx(code_entropy(X.astype(np.float32)))
    assert sum(m["codes"]) == X.size


@pytest.mark.clause("TQ-4.1", "TQ-4.3")
def test_results_structure_and_table(results, tmp_path):
    rows = results["results"]
    assert {(r["method"], r["setting"]) for r in rows} >= {("fp32", "FP32"), ("torq", "W16A4"), ("rtn", "W4A4")}
    for r in rows:
        assert set(r) >= {"method", "setting", "ppl", "window_nll", "imbalance", "entropy"}
        assert np.isfinite(r["ppl"]) and r["ppl"] > 1
    assert set(results) >= {"results", "per_site", "settings", "seed", "versions", "timings"}
    text = table(results)
    assert "| torq |" in text and "PPL W4A4" in text
    path = write_json(results, tmp_path)
    back = json.loads(path.read_text())
    assert back["results"][0]["method"] == rows[0]["method"]


@pytest.mark.clause("TQ-4.4")
def test_figures(results, tmp_path):
    pytest.importorskip("matplotlib", reason="plot extra not installed")
    paths = write_figures(results, tmp_path)
    assert [p.name for p in paths] == ["imbalance.png", "entropy.png", "code_histogram.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.clause("TQ-4.2")
def test_bad_settings_fail_fast(tmp_path, capsys):
    from torq_ref.cli import main

    assert main(["run", "--methods", "rtn,quarot", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["run", "--settings", "W8A8"]) == 2
    assert main(["run", "--scale-rule", "nearest"]) == 2
    assert main(["run", "--model", str(tmp_path)]) == 2               # a directory without config.json
    assert "without config.json" in capsys.readouterr().err
    assert main(["run", "--scale-alpha", "-1"]) == 2
    assert "--scale-alpha" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="text has 5000"):
        check_windows(5000, RunSpec(eval_windows=8, calib_windows=4))
    with pytest.raises(SettingsError, match="at least 1"):
        check_windows(10**6, RunSpec(eval_windows=0))


@pytest.mark.clause("TQ-4.1")
def test_quick_settings():
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    spec, cfg = settings_from_args(build_parser().parse_args(["run", "--quick"]))
    assert (spec.eval_windows, spec.calib_windows) == (1, 1)
    assert (cfg.micro_rows, cfg.max_sweeps, cfg.random_per_layer) == (64, 1, False)
    spec, cfg = settings_from_args(build_parser().parse_args(["run"]))
    assert (spec.eval_windows, spec.calib_windows, cfg.micro_rows, cfg.random_per_layer) == (8, 4, 1024, True)
    assert cfg.scale_alpha == 0.5 and spec.methods == DEFAULT_METHODS
    assert "torq-maxent" in METHODS and "torq-maxent" not in DEFAULT_METHODS


@pytest.mark.clause("TQ-4.5")
def test_deterministic(tiny, windows, results):
    ev, ca = windows
    spec = RunSpec(methods=("torq", "random-orthogonal"), settings=("W16A4",), eval_windows=2,
                   calib_windows=2, window=48, progress=False)
    again = evaluate_methods(tiny, ev, ca, spec, CFG)
    first = {(r["method"], r["setting"]): r["ppl"] for r in results["results"]}
    for r in again["results"]:
        assert r["ppl"] == first[(r["method"], r["setting"])]


@pytest.mark.clause("TQ-4.6", "TQ-4.7")
def test_model_and_dtype_options(tmp_path, capsys):
    from torq_ref.cli import build_parser, main
    from torq_ref.torq.cli import model_label, model_list, settings_from_args

    parse = build_parser().parse_args
    spec, _ = settings_from_args(parse(["run", "--model", "gemma3-270m", "--dtype", "float64"]))
    assert (spec.model, spec.dtype) == ("gemma3-270m", "float64")
    spec, _ = settings_from_args(parse(["run"]))
    assert (spec.model, spec.dtype) == (None, "float32")
    args = parse(["run", "--model", "smollm2-135m, qwen2.5-coder-0.5b"])
    assert model_list(args) == ["smollm2-135m", "qwen2.5-coder-0.5b"]
    assert settings_from_args(args)[0].model == "smollm2-135m"
    assert model_list(parse(["run"])) == [None] and model_label(None) == "smollm2-135m"
    assert model_label(str(tmp_path / "My-Model.gguf")) == "My-Model"
    with pytest.raises(SettingsError, match="names no model"):
        settings_from_args(parse(["run", "--model", " , "]))
    # an unknown model: exit 2 with a message naming it, before any work
    assert main(["run", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "no-such-model" in capsys.readouterr().err
    # too few calibration rows for held-out site metrics (TQ-6.2): refused while parsing
    with pytest.raises(SettingsError, match="micro_rows"):
        settings_from_args(parse(["run", "--calib-windows", "1", "--micro-rows", "600"]))


@pytest.mark.clause("TQ-4.3", "TQ-4.6")
def test_results_metric_keys_and_float64(tiny, windows):
    ev, ca = windows
    spec = RunSpec(methods=("fp32", "hadamard32", "rtn"), settings=("W16A4",), eval_windows=2,
                   calib_windows=2, window=48, progress=False)
    out = evaluate_methods(tiny, ev, ca, spec, CFG)
    by = {r["method"]: r for r in out["results"]}
    for r in by.values():
        assert {"kld", "kld_se", "top1", "window_kld", "window_top1", "window_n"} <= set(r)
    assert set(by["rtn"]["vs_hadamard32"]) >= {"dnll", "dnll_ci", "dkld", "dkld_ci"}
    assert "vs_hadamard32" not in by["fp32"] and "vs_hadamard32" not in by["hadamard32"]
    t64 = tiny_model("llama", seed=3, dtype=np.float64)
    out64 = evaluate_methods(t64, ev, ca, spec, CFG)
    r32, r64 = by["rtn"], {r["method"]: r for r in out64["results"]}["rtn"]
    assert r64["ppl"] != r32["ppl"] and abs(np.log(r64["ppl"] / r32["ppl"])) < 0.05


@pytest.mark.clause("TQ-3.3")
def test_site_metrics_imbalance_of_a_composed_transform():
    """Block energies of x @ M (I (x) R): the block rotation leaves them to M (dense check)."""
    from torq_ref.rotations.baselines import random_orthogonal
    from torq_ref.rotations.metrics import block_energy_imbalance

    C, X = _moment_and_rows()
    M, R = random_orthogonal(64, seed=1), random_orthogonal(32, seed=2)
    from torq_ref.model import Transform

    t = Transform(matrix=M, block=R)
    D = _dense(t, 64)
    want = block_energy_imbalance(np.diag(D.T @ C @ D), 32)
    assert site_metrics(C, X, t, CFG)["imbalance"] == pytest.approx(want, rel=1e-12)
    assert site_metrics(C, X, Transform(block=R), CFG)["imbalance"] == pytest.approx(
        block_energy_imbalance(np.diag(C), 32), rel=1e-12)
