"""The exported TORQ plan (spec/TQ.md section 8) on the tiny Llama of torq_fixtures."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from torq_ref.torq import RunSpec, evaluate_methods
from torq_ref.torq.plan import (SCHEMA_PATH, PlanError, PlanMismatch, PlanRecorder, check_model, load_plan,
                                validate_manifest)

from torq_fixtures import CFG, tiny, windows  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))
import plan_applier  # noqa: E402

METHODS = ("fp32", "hadamard32", "torq", "duquant", "mr-gptq")
SETTINGS = ("W16A4", "W4A4")


@pytest.fixture(scope="module")
def exported(tiny, windows, tmp_path_factory):  # noqa: F811
    ev, ca = windows
    d = tmp_path_factory.mktemp("plan")
    rec = PlanRecorder(d, METHODS, SETTINGS, CFG)
    out = evaluate_methods(tiny, ev, ca, RunSpec(methods=METHODS, settings=SETTINGS, progress=False), CFG,
                           on_layer=rec)
    rec.finish(tiny, None, out)
    return d, out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.clause("TQ-8.1")
def test_every_row_is_exported_and_gptq_rows_are_skipped(exported):
    d, out = exported
    plan = load_plan(d)
    want = [(m, s) for m in METHODS for s in (("FP32",) if m == "fp32" else SETTINGS)]
    assert plan.rows == [r for r in want if r != ("mr-gptq", "W4A4")]
    assert [(r["method"], r["setting"]) for r in plan.manifest["skipped"]] == [("mr-gptq", "W4A4")]
    assert "GPTQ" in plan.manifest["skipped"][0]["reason"]
    assert sorted(p.name for p in d.glob("layer-*.safetensors")) == ["layer-00000.safetensors", "layer-00001.safetensors"]
    eng = {(r["method"], r["setting"]): r["window_kld"] for r in plan.manifest["engine_results"]}
    got = {(r["method"], r["setting"]): r["window_kld"] for r in out["results"]}
    assert all(eng[k] == got[k] for k in plan.rows)


@pytest.mark.clause("TQ-8.1")
def test_exporting_leaves_the_table_unchanged(tiny, windows, tmp_path):  # noqa: F811
    ev, ca = windows
    spec = RunSpec(methods=("fp32", "hadamard32"), settings=("W16A4",), progress=False)
    plain = evaluate_methods(tiny, ev, ca, spec, CFG)
    rec = PlanRecorder(tmp_path, spec.methods, spec.settings, CFG)
    with_plan = evaluate_methods(tiny, ev, ca, spec, CFG, on_layer=rec)
    assert [r["window_kld"] for r in plain["results"]] == [r["window_kld"] for r in with_plan["results"]]
    assert all(isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
               for keys in rec.layers.values() for v in keys.values())   # keys only, no arrays kept


@pytest.mark.clause("TQ-8.2")
def test_manifest_follows_the_schema_and_every_property_is_described(exported):
    d, _ = exported
    manifest = json.loads((d / "plan.json").read_text())
    validate_manifest(manifest)
    assert (d / "plan.schema.json").read_bytes() == SCHEMA_PATH.read_bytes()

    def walk(node, path):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert isinstance(sub, dict) and sub.get("description"), f"{path}/{name} has no description"
                walk(sub, f"{path}/{name}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{path}[{key}]")

    walk(json.loads(SCHEMA_PATH.read_text()), "")
    torq = next(r for r in manifest["rows"] if (r["method"], r["setting"]) == ("torq", "W4A4"))
    qkv = torq["sites"][0]
    assert (qkv["site"], qkv["scale"], qkv["weight_quant"], qkv["act_quant"]) == ("qkv", "qkv.scale", "rtn", True)
    assert torq["sites"][1]["scale"] is None                       # o: not fed by an RMSNorm


@pytest.mark.clause("TQ-8.2")
def test_load_plan_refuses_damaged_plans(exported, tmp_path):
    d, _ = exported
    bad = _copy(d, tmp_path / "sha")
    with open(bad / "layer-00001.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(PlanError, match="layer-00001.safetensors: sha256 differs"):
        load_plan(bad)
    bad = _copy(d, tmp_path / "schema")
    m = json.loads((bad / "plan.json").read_text())
    m["rows"][1]["sites"][0]["weight_quant"] = "gptq"
    (bad / "plan.json").write_text(json.dumps(m))
    with pytest.raises(PlanError, match="does not follow plan.schema.json: at rows/1/sites/0/weight_quant"):
        load_plan(bad)
    bad = _copy(d, tmp_path / "shape")
    m = json.loads((bad / "plan.json").read_text())
    m["model"]["sites"][0]["width"] = 32
    (bad / "plan.json").write_text(json.dumps(m))
    with pytest.raises(PlanError, match="row torq W16A4, layer 0 site qkv: scale has shape"):
        load_plan(bad)
    with pytest.raises(PlanError, match="no plan.json"):
        load_plan(tmp_path)


@pytest.mark.clause("TQ-8.3")
def test_a_plan_refuses_another_model_naming_the_site(exported, tiny):  # noqa: F811
    import dataclasses

    plan = load_plan(exported[0])
    check_model(plan, tiny)
    layers = list(tiny.layers)
    w = layers[1].down.copy()
    w[0, 0] = np.nextafter(w[0, 0], np.float32(np.inf))           # one ulp in one weight
    layers[1] = dataclasses.replace(layers[1], down=w)
    with pytest.raises(PlanMismatch, match="layer 1 site down: weight sha256"):
        check_model(plan, tiny.with_layers(layers))
    from torq_ref.model.tiny import tiny_model

    with pytest.raises(PlanMismatch, match="layer 0 site qkv: weight shape"):
        check_model(plan, tiny_model("llama3_tied", seed=3))
    from torq_ref.torq.plan import check_identity

    with pytest.raises(PlanMismatch, match="of 2 layers; this model has 3"):
        check_identity(plan, 3, tiny.site_weight)


@pytest.mark.clause("TQ-8.4")
def test_the_spec_alone_reproduces_the_engine(exported, tiny, windows):  # noqa: F811
    """plan_applier.py applies every row from TQ-8.2 and gets the engine's KLD and top-1."""
    d, _ = exported
    manifest, layers = plan_applier.read(d)
    eng = {(r["method"], r["setting"]): r for r in manifest["engine_results"]}
    ev, _ = windows
    for r in manifest["rows"]:
        key = (r["method"], r["setting"])
        kld, top1 = plan_applier.window_scores(tiny, manifest, layers, *key, ev)
        np.testing.assert_allclose(kld, eng[key]["window_kld"], rtol=1e-6, atol=1e-12, err_msg=str(key))
        np.testing.assert_array_equal(top1, eng[key]["window_top1"], err_msg=str(key))
        if key[0] != "fp32":
            assert min(kld) > 0


@pytest.mark.clause("TQ-8.1")
def test_run_export_plan_calls_export_run(monkeypatch, tmp_path):
    """``run --export-plan DIR`` goes through export_run with DIR (and DIR/<model> for several)."""
    import torq_ref.torq.plan as plan_mod
    from torq_ref.cli import main

    seen = []

    def fake(spec, cfg, out_dir, label=None, dispatch=None, **run_kw):
        seen.append((spec.model, out_dir, label))
        raise plan_mod.SettingsError("stop here")

    monkeypatch.setattr(plan_mod, "export_run", fake)
    assert main(["run", "--model", "smollm2-135m", "--export-plan", str(tmp_path), "--no-figures"]) == 2
    assert seen == [("smollm2-135m", str(tmp_path), None)]
