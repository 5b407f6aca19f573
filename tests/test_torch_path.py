"""The torch path (spec/TQ.md section 9): MX fake quantization in torch, a plan applied to tiny
transformers models of the three registry families, checked against the NumPy engine."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torq_ref.model import load  # noqa: E402
from torq_ref.model.tiny import TINY_CONFIGS, random_tensors  # noqa: E402
from torq_ref.torq import RunSpec, TorqConfig, evaluate_methods  # noqa: E402
from torq_ref.torq.plan import PlanMismatch, PlanRecorder, load_plan  # noqa: E402

pytestmark = pytest.mark.crosscheck

CFG = TorqConfig(micro_rows=48, max_sweeps=1)
#: the scale step with its norm fold and a block rotation (smoothrot), a dense matrix (random-orthogonal)
METHODS = ("fp32", "smoothrot", "random-orthogonal")
SETTINGS = ("W4A4",)
#: the tiny models' torch-vs-NumPy agreement: float32 rounding of two forward passes only
TINY_REL = 1e-5


def _hf_dir(name, tmp):
    cfg = dict(TINY_CONFIGS[name])
    cls_cfg = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
               "gemma3_text": transformers.Gemma3TextConfig}[cfg["model_type"]]
    cls_model = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM,
                 "gemma3_text": transformers.Gemma3ForCausalLM}[cfg["model_type"]]
    hf = cls_model(cls_cfg(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}))
    hf.load_state_dict({k: torch.from_numpy(v) for k, v in random_tensors(cfg, 7).items()}, strict=False)
    d = tmp / name
    hf.float().save_pretrained(d, safe_serialization=True)
    return d


def _windows(vocab):
    ids = np.random.default_rng(11).integers(0, vocab, size=5 * 40)
    return ids[:120].reshape(3, 40), ids[120:].reshape(2, 40)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def case(request, tmp_path_factory):
    """(plan, HF model dir, eval windows) of one family: the plan exported by the NumPy engine
    from the model directory that transformers loads."""
    tmp = tmp_path_factory.mktemp(request.param)
    d = _hf_dir(request.param, tmp)
    model = load(d)
    ev, ca = _windows(model.config.vocab_size)
    rec = PlanRecorder(tmp / "plan", METHODS, SETTINGS, CFG)
    out = evaluate_methods(model, ev, ca, RunSpec(methods=METHODS, settings=SETTINGS, progress=False), CFG,
                           on_layer=rec)
    rec.finish(model, str(d), out)
    return load_plan(tmp / "plan"), d, ev


def _fq(x):
    from torq_ref.torch.fake_quant import mx_fake_quant

    return mx_fake_quant(torch.from_numpy(x)).numpy()


@pytest.mark.clause("TQ-9.1")
def test_torch_fake_quant_is_bit_exact_under_the_harness():
    from torq_ref.conformance import check

    report = check("fake-quant", _fq, profile="ocp")
    assert report.passed and report.counts["fail"] == 0 and report.counts["pass"] > 500, str(report)


@pytest.mark.clause("TQ-9.1")
def test_torch_fake_quant_refuses_what_it_does_not_implement():
    from torq_ref.torch.fake_quant import FakeQuantError, mx_fake_quant

    x = torch.zeros(2, 64)
    with pytest.raises(FakeQuantError, match="scale rule 'rceil'"):
        mx_fake_quant(x, scale_rule="rceil")
    with pytest.raises(FakeQuantError, match="element format 'e4m3'"):
        mx_fake_quant(x, element="e4m3")
    with pytest.raises(FakeQuantError, match="not a multiple of the MX block size 32"):
        mx_fake_quant(torch.zeros(2, 40))
    y = torch.tensor([[-0.0] + [1e-30] * 31], dtype=torch.float32)
    assert torch.signbit(mx_fake_quant(y)[0, 0])                 # -0 survives (MX-3.3)
    b = torch.randn(3, 64, dtype=torch.bfloat16)
    assert mx_fake_quant(b).dtype == torch.bfloat16


@pytest.mark.clause("TQ-9.2", "TQ-9.3")
def test_torch_path_reproduces_the_engine_on_tiny_models(case):
    from torq_ref.torch.evaluate import compare, evaluate_plan, load_hf_model

    plan, d, ev = case
    res = evaluate_plan(plan, load_hf_model(d), ev)
    assert [(r["method"], r["setting"]) for r in res] == plan.rows
    cmp = compare(res, plan.manifest["engine_results"])
    assert len(cmp) == len(plan.rows)
    for c in cmp:
        assert c["within_bound"], c
        t, n = c["torch"], c["numpy"]
        assert abs(t["kld"] - n["kld"]) <= TINY_REL * n["kld"] + 1e-12, c
        assert t["top1"] == n["top1"], c
        assert abs(t["ppl"] / n["ppl"] - 1) < TINY_REL, c
        if c["method"] != "fp32":
            assert n["kld"] > 0


@pytest.mark.clause("TQ-9.2")
def test_remove_restores_the_model_and_the_qkv_input_is_transformed_once(case):
    from torq_ref.torch.apply import apply_plan
    from torq_ref.torch.evaluate import load_hf_model

    plan, d, ev = case
    hf = load_hf_model(d)
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    ids = torch.from_numpy(ev[:1])
    with torch.no_grad():
        ref = hf(ids, use_cache=False).logits
    applied = apply_plan(hf, plan, "smoothrot", "W4A4")
    calls = []
    fm = torq_fake_quant_counter(calls)
    with torch.no_grad(), fm:
        q = hf(ids, use_cache=False).logits
    n_layers = hf.config.num_hidden_layers
    assert len(calls) == 4 * n_layers                      # one per site, not one per module
    assert not torch.equal(q, ref)
    other = torch.from_numpy(ev[1:2])
    with torch.no_grad():
        q_other = hf(other, use_cache=False).logits        # a second forward under the same application
    applied.remove()
    with torch.no_grad(), apply_plan(hf, plan, "smoothrot", "W4A4"):
        assert torch.equal(hf(other, use_cache=False).logits, q_other)
    assert all(torch.equal(before[k], v) for k, v in hf.state_dict().items())
    with torch.no_grad():
        assert torch.equal(hf(ids, use_cache=False).logits, ref)


class torq_fake_quant_counter:
    """Counts the activation fake-quant calls of the pre-hooks (patching apply's import)."""

    def __init__(self, calls):
        self.calls = calls

    def __enter__(self):
        import torq_ref.torch.apply as ap

        self.ap, self.real = ap, ap.mx_fake_quant

        def counted(x, *a, **k):
            self.calls.append(tuple(x.shape))
            return self.real(x, *a, **k)

        ap.mx_fake_quant = counted
        return self

    def __exit__(self, *exc):
        self.ap.mx_fake_quant = self.real


@pytest.mark.clause("TQ-9.2")
def test_torch_path_refuses_another_model(case, tmp_path):
    from torq_ref.torch.apply import apply_plan
    from torq_ref.torch.evaluate import load_hf_model

    plan, d, _ = case
    hf = load_hf_model(d)
    with torch.no_grad():
        w = hf.get_submodule("model.layers.1.mlp.up_proj").weight
        w[3, 5] += 1e-3
    with pytest.raises(PlanMismatch, match="layer 1 site gate_up: weight sha256"):
        apply_plan(hf, plan, "smoothrot", "W4A4")
    apply_plan(hf, plan, "smoothrot", "W4A4", digest=False).remove()     # shapes only: accepted


@pytest.mark.clause("TQ-9.3")
def test_eval_plan_command_errors(tmp_path, capsys):
    from torq_ref.cli import main

    assert main(["eval-plan", "--plan", str(tmp_path)]) == 2
    assert "no plan.json" in capsys.readouterr().err


@pytest.mark.clause("TQ-9.4")
def test_bound_widens_as_one_over_sqrt_n_and_flags_a_row_outside():
    from torq_ref.torch.evaluate import BOUND, bound_for, compare

    assert bound_for(8) == BOUND and bound_for(20) == BOUND
    assert bound_for(2)["top1_abs"] == pytest.approx(2 * BOUND["top1_abs"])
    eng = [{"method": "torq", "setting": "W16A4", "window_kld": [0.2] * 8, "window_top1": [0.8] * 8,
            "window_nll": [np.log(10.0)] * 8}]

    def row(kld, top1, ppl, n=8):
        return [{"method": "torq", "setting": "W16A4", "kld": kld, "top1": top1, "ppl": ppl, "window_kld": [kld] * n}]

    assert compare(row(0.215, 0.82, 10.1), eng)[0]["within_bound"]
    assert not compare(row(0.25, 0.8, 10.0), eng)[0]["within_bound"]        # KLD 25 % off
    assert not compare(row(0.2, 0.84, 10.0), eng)[0]["within_bound"]        # top-1 0.04 off
    assert not compare(row(0.2, 0.8, 10.3), eng)[0]["within_bound"]         # PPL 3 % off
    assert compare(row(0.2, 0.84, 10.0, n=2), eng)[0]["within_bound"]       # 2 windows: twice as wide
