"""The torch path on a GPU (spec/TQ.md TQ-9.1, TQ-9.4): the fake quantizer under the harness on
CUDA, then plans of tiny Llama / Qwen2 / Gemma3 models (exported by the NumPy engine here) and,
for every ``--plan DIR`` given, a real plan evaluated with ``--device cuda`` against the NumPy
engine's numbers in the plan. Prints one markdown line per check; exit 1 when one fails.

    python benchmarks/torch_path/gpu_check.py [--device cuda] [--plan DIR --model MODEL_DIR ...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def fake_quant_line(device: str) -> tuple[str, bool]:
    from torq_ref.conformance import check
    from torq_ref.torch.fake_quant import mx_fake_quant

    rep = check("fake-quant", lambda x: mx_fake_quant(torch.from_numpy(x).to(device)).cpu().numpy(), profile="ocp")
    c = rep.counts
    return f"| fake-quant e2m1 floor | {device} | pass {c['pass']} acceptable {c['acceptable']} fail {c['fail']} |", rep.passed


def tiny_lines(device: str, tmp: Path) -> list[tuple[str, bool]]:
    import transformers

    from torq_ref.model import load
    from torq_ref.model.tiny import TINY_CONFIGS, random_tensors
    from torq_ref.torch.evaluate import compare, evaluate_plan, load_hf_model
    from torq_ref.torq import RunSpec, TorqConfig, evaluate_methods
    from torq_ref.torq.plan import PlanRecorder, load_plan

    out = []
    classes = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
               "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
               "gemma3_text": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM)}
    cfg_run = TorqConfig(micro_rows=48, max_sweeps=1)
    methods, settings = ("fp32", "hadamard32", "smoothrot", "random-orthogonal", "torq"), ("W16A4", "W4A4")
    for name in ("llama", "qwen2", "gemma3"):
        cfg = dict(TINY_CONFIGS[name])
        c_cls, m_cls = classes[cfg["model_type"]]
        hf = m_cls(c_cls(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}))
        hf.load_state_dict({k: torch.from_numpy(v) for k, v in random_tensors(cfg, 7).items()}, strict=False)
        d = tmp / name
        hf.float().save_pretrained(d, safe_serialization=True)
        model = load(d)
        ids = np.random.default_rng(11).integers(0, model.config.vocab_size, size=200)
        ev, ca = ids[:120].reshape(3, 40), ids[120:].reshape(2, 40)
        rec = PlanRecorder(tmp / f"plan-{name}", methods, settings, cfg_run)
        res = evaluate_methods(model, ev, ca, RunSpec(methods=methods, settings=settings, progress=False), cfg_run,
                               on_layer=rec)
        rec.finish(model, str(d), res)
        plan = load_plan(tmp / f"plan-{name}")
        cmp = compare(evaluate_plan(plan, load_hf_model(d, device), ev), plan.manifest["engine_results"])
        for c in cmp:
            out.append((_line(f"tiny {name}", device, c), c["within_bound"]))
    return out


def _line(what, device, c) -> str:
    t, n, dd = c["torch"], c["numpy"], c["diff"]
    return (f"| {what} | {device} | {c['method']} {c['setting']} | {c['windows']} | {t['ppl']:.4f} | {n['ppl']:.4f} | "
            f"{t['kld']:.5f} | {n['kld']:.5f} | {dd['kld']:+.2e} | {t['top1']:.4f} | {n['top1']:.4f} | "
            f"{'yes' if c['within_bound'] else 'NO'} |")


def plan_lines(device: str, plan_dir: str, model_dir: str) -> list[tuple[str, bool]]:
    from torq_ref.torch.evaluate import compare, evaluate_plan, load_hf_model, plan_windows
    from torq_ref.torq.plan import load_plan

    plan = load_plan(plan_dir)
    res = evaluate_plan(plan, load_hf_model(model_dir, device), plan_windows(plan, model_dir))
    return [(_line(Path(plan_dir).name, device, c), c["within_bound"])
            for c in compare(res, plan.manifest["engine_results"])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--plan", action="append", default=[])
    ap.add_argument("--model", action="append", default=[])
    a = ap.parse_args(argv)
    if len(a.plan) != len(a.model):
        ap.error("give one --model per --plan")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    line, ok = fake_quant_line(a.device)
    print("| check | device | result |\n|---|---|---|\n" + line + "\n")
    print("| model | device | row | windows | PPL torch | PPL numpy | KLD torch | KLD numpy | dKLD | top-1 torch "
          "| top-1 numpy | within bound |\n" + "|---" * 12 + "|")
    results = [ok]
    with tempfile.TemporaryDirectory() as t:
        for line, ok in tiny_lines(a.device, Path(t)):
            print(line, flush=True)
            results.append(ok)
    for p, m in zip(a.plan, a.model):
        for line, ok in plan_lines(a.device, p, m):
            print(line, flush=True)
            results.append(ok)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
