"""The torch path against the NumPy engine on the three registry models (spec/TQ.md TQ-9.4), CPU
torch. Slow: each case fits a short plan (1 evaluation + 1 calibration window, 64 micro rows,
1 sweep) with the streaming engine, then evaluates it with transformers."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.crosscheck]


@pytest.mark.clause("TQ-9.4")
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"])
def test_torch_path_matches_the_engine_on_registry_models(name, tmp_path):
    from torq_ref.model.registry import REGISTRY, cache_dir
    from torq_ref.torch.evaluate import compare, evaluate_plan, load_hf_model, plan_windows
    from torq_ref.torq import RunSpec, TorqConfig
    from torq_ref.torq.plan import export_run, load_plan

    model_dir = cache_dir() / REGISTRY[name].dir_name
    if not (model_dir / "config.json").is_file():
        pytest.skip(f"{name} is not imported ({model_dir})")
    spec = RunSpec(methods=("fp32", "hadamard32", "torq"), settings=("W16A4",), eval_windows=1,
                   calib_windows=1, model=str(model_dir), progress=False)
    export_run(spec, TorqConfig(micro_rows=64, max_sweeps=1), tmp_path)
    plan = load_plan(tmp_path)
    res = evaluate_plan(plan, load_hf_model(model_dir), plan_windows(plan, model_dir))
    cmp = compare(res, plan.manifest["engine_results"])
    assert len(cmp) == 3 and all(c["within_bound"] for c in cmp), cmp
