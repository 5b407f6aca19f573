"""Evaluate an exported plan with the torch path (spec/TQ.md TQ-9.3, TQ-9.4).

Same windows and metrics as the NumPy engine (spec/EV.md, TQ-6.4): the plan's evaluation windows
of the model's text (``torq_ref.model.data``), per window the FP32 transformers model's
log-probabilities, then each row's NLL, KLD and top-1 (``torq_ref.evaluate.token_metrics``) in
chunks of positions. Rows are applied and removed per window (the weights are restored), so
only one copy of the model is ever on the device.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from torq_ref.torq.plan import Plan, PlanError

#: positions per chunk of the metrics (bounds the float64 (positions, vocabulary) temporaries)
HEAD_CHUNK = 128

#: TQ-9.4: the torch path's numbers agree with the NumPy engine's within these, per row, as means
#: over BOUND_WINDOWS windows; over n windows every part is widened by sqrt(BOUND_WINDOWS / n)
BOUND = {"kld_rel": 0.10, "kld_abs": 2e-4, "top1_abs": 0.03, "ppl_rel": 0.02}
BOUND_WINDOWS = 8


def bound_for(n_windows: int, bound: dict = BOUND) -> dict:
    """TQ-9.4: the bound of a mean over ``n_windows`` windows (the per-window differences are
    zero-mean rounding noise, so their mean shrinks as 1 / sqrt(n))."""
    f = max(1.0, (BOUND_WINDOWS / max(1, n_windows)) ** 0.5)
    return {k: v * f for k, v in bound.items()}


def within(diff: dict, numpy: dict, bound: dict) -> bool:
    """TQ-9.4: whether one row's differences (torch - numpy) lie within ``bound``."""
    return (abs(diff["kld"]) <= bound["kld_rel"] * numpy["kld"] + bound["kld_abs"]
            and abs(diff["top1"]) <= bound["top1_abs"] and abs(diff["ppl"]) <= bound["ppl_rel"] * numpy["ppl"])


def load_hf_model(model_dir, device: str = "cpu", device_map=None):
    """The transformers model of ``model_dir`` in float32, eval mode, as a user loads it:
    ``device_map`` (e.g. "auto", accelerate) when given, else the whole model on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    kw = {"dtype": torch.float32}
    if device_map is not None:
        kw["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kw)
    if device_map is None:
        model = model.to(device)
    return model.eval()


def plan_windows(plan: Plan, model_dir, n_eval: int | None = None) -> np.ndarray:
    """The evaluation windows the plan's run used (its window count, length and BOS id), or the
    first ``n_eval`` of them (FW-6.2, FW-6.5)."""
    from torq_ref.model.data import bos_token_id, split_windows, tokenize_text

    w = plan.manifest["provenance"]["windows"]
    if not w.get("eval_windows") or not w.get("window"):
        raise PlanError("the plan records no evaluation windows (written without a run); give --eval-windows")
    n = int(w["eval_windows"] if n_eval is None else n_eval)
    bos = bos_token_id(model_dir)
    if bos != w.get("bos_id"):
        raise PlanError(f"the model directory's BOS id {bos} differs from the plan run's {w.get('bos_id')}")
    return split_windows(tokenize_text(model_dir), n, 0, int(w["window"]), bos)[0]


def _logits(model, ids: np.ndarray):
    import torch

    dev = model.get_input_embeddings().weight.device
    with torch.no_grad():
        out = model(torch.from_numpy(ids[None]).to(dev), use_cache=False).logits[0]
    return out.float().cpu().numpy()


def _score(ref: np.ndarray, got: np.ndarray, targets: np.ndarray) -> dict:
    from torq_ref.evaluate.token_metrics import ref_logprobs, window_metrics

    parts = []
    for a in range(0, len(targets), HEAD_CHUNK):
        b = min(a + HEAD_CHUNK, len(targets))
        parts.append(window_metrics(None, got[a:b], targets[a:b], ref_logp=ref_logprobs(ref[a:b])))
    n = np.array([p["n"] for p in parts], dtype=np.float64)
    return {"n": int(n.sum()), **{k: float(np.dot(n, [p[k] for p in parts]) / n.sum()) for k in ("nll", "kld", "top1")}}


def evaluate_plan(plan: Plan, model, windows: np.ndarray, rows=None, *, digest: bool = True,
                  progress=None) -> list[dict]:
    """Per row (method, setting) of ``rows`` (default: all of the plan's), the per-window NLL,
    KLD, top-1 and the PPL on ``windows`` (Ne, S) against the unmodified ``model`` (TQ-9.3)."""
    from .apply import apply_plan, check_hf_model

    rows = list(plan.rows if rows is None else rows)
    check_hf_model(plan, model, digest=digest)
    acc = {r: {"window_nll": [], "window_kld": [], "window_top1": [], "window_n": []} for r in rows}
    seconds = {r: 0.0 for r in rows}
    for j, ids in enumerate(windows):
        ref = _logits(model, ids)[:-1]
        targets = ids[1:]
        for r in rows:
            t0 = time.perf_counter()
            if r[0] == "fp32":
                got = ref
            else:
                with apply_plan(model, plan, *r, digest=False):
                    got = _logits(model, ids)[:-1]
            m = _score(ref, got, targets)
            for k in ("nll", "kld", "top1", "n"):
                acc[r][f"window_{k}"].append(m[k])
            seconds[r] += time.perf_counter() - t0
        if progress is not None:
            progress(j + 1, len(windows))
    out = []
    for r in rows:
        d = acc[r]
        out.append({"method": r[0], "setting": r[1], "ppl": float(np.exp(np.mean(d["window_nll"]))),
                    "kld": float(np.mean(d["window_kld"])), "top1": float(np.mean(d["window_top1"])),
                    **d, "eval_s": seconds[r]})
    return out


def compare(torch_rows: list[dict], engine_rows: list[dict], bound: dict | None = None) -> list[dict]:
    """TQ-9.4: per row, both engines' PPL / KLD / top-1 (means over the same windows), the
    differences and whether they lie within ``bound`` (default: :func:`bound_for` the window count)."""
    eng = {(r["method"], r["setting"]): r for r in engine_rows}
    out = []
    for t in torch_rows:
        key = (t["method"], t["setting"])
        if key not in eng:
            continue
        e = eng[key]
        n = len(t["window_kld"])
        if len(e.get("window_kld", [])) < n:
            raise PlanError(f"the engine has {len(e.get('window_kld', []))} windows of {key}, torch {n}")
        ek = float(np.mean(e["window_kld"][:n]))
        et = float(np.mean(e["window_top1"][:n]))
        ep = float(np.exp(np.mean(e["window_nll"][:n])))
        diff = {"ppl": t["ppl"] - ep, "kld": t["kld"] - ek, "top1": t["top1"] - et}
        b = bound_for(n) if bound is None else bound
        ok = within(diff, {"ppl": ep, "kld": ek, "top1": et}, b)
        out.append({"method": key[0], "setting": key[1], "windows": n,
                    "torch": {"ppl": t["ppl"], "kld": t["kld"], "top1": t["top1"]},
                    "numpy": {"ppl": ep, "kld": ek, "top1": et},
                    "diff": diff, "bound": b, "within_bound": bool(ok)})
    return out


def write_json(obj, path) -> Path:
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return p
