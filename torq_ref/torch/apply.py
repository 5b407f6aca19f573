"""Apply one row of an exported plan to a transformers model with torch ops (spec/TQ.md TQ-9.2).

The model is taken as its user loaded it (``from_pretrained`` on one device, or sharded with
accelerate's ``device_map``): every array goes to the device of the parameter or the activation
it meets, and nothing of loading, placement or the forward pass is done here. Per site of the row
(TQ-8.2): the scale vector is folded into the norm weight and the modules' weight columns, the
dense matrix and block rotation into the weights; a forward pre-hook on each module fed by the site
applies x M, the block rotation and the MX fake quantizer (:mod:`.fake_quant`) to its input. The
three modules of a qkv site (two of gate_up) receive the same input tensor, which is transformed
once. ``AppliedPlan.remove()`` restores the weights and removes the hooks.
"""
from __future__ import annotations

import torch

from torq_ref.torq.plan import Plan, PlanError, check_identity

from .fake_quant import mx_fake_quant


def _blocks(a: torch.Tensor, R: torch.Tensor, b: int) -> torch.Tensor:
    """Block k of the last axis of a (rows, n) times R (b, b), or R[k] for R (n / b, b, b)."""
    rows, n = a.shape
    ab = a.reshape(rows, n // b, b)
    out = ab @ R if R.ndim == 2 else torch.einsum("rkb,kbc->rkc", ab, R)
    return out.reshape(rows, n)


def stacked_weight(model, site_entry: dict) -> torch.Tensor:
    """The site's modules' weights stacked by rows, float32 on the CPU (for TQ-8.3's digest)."""
    return torch.cat([model.get_submodule(m["name"]).weight.detach().to("cpu", torch.float32)
                      for m in site_entry["modules"]], dim=0)


class _Shape:
    def __init__(self, shape):
        self.shape = shape


def check_hf_model(plan: Plan, model, *, digest: bool = True) -> None:
    """TQ-8.3 for a transformers model: layer count, every site's stacked weight shape and (with
    ``digest``) its float32 sha256; PlanMismatch names the site that differs."""
    sites = {(s["layer"], s["site"]): s for s in plan.manifest["model"]["sites"]}

    def weight(i, site):
        s = sites[(i, site)]
        if digest:
            return stacked_weight(model, s).numpy()
        mods = [model.get_submodule(m["name"]).weight for m in s["modules"]]
        return _Shape((sum(w.shape[0] for w in mods), mods[0].shape[1]))

    check_identity(plan, int(model.config.num_hidden_layers), weight, digest=digest)


class _SiteInput:
    """The run-time input map of one site (TQ-8.2 step 4), shared by its modules' pre-hooks."""

    def __init__(self, M, R, act_quant: bool, mx: dict):
        self.M, self.R, self.act, self.mx = M, R, act_quant, mx
        self._cast: dict = {}
        self._last = None                     # (input tensor, output): the qkv / gate_up sharing

    def _on(self, device):
        if device not in self._cast:
            f = (lambda a: None if a is None else a.to(device=device, dtype=torch.float32))  # noqa: E731
            self._cast[device] = (f(self.M), f(self.R))
        return self._cast[device]

    def __call__(self, module, args):
        x = args[0]
        if self._last is not None and self._last[0] is x:
            return (self._last[1],) + tuple(args[1:])
        M, R = self._on(x.device)
        shape = x.shape
        y = x.reshape(-1, shape[-1]).to(torch.float32)
        if M is not None:
            y = y @ M
        if R is not None:
            y = _blocks(y, R, self.mx["block_size"])
        if self.act:
            y = mx_fake_quant(y, self.mx["element"], self.mx["scale_rule"], self.mx["block_size"])
        y = y.reshape(shape).to(x.dtype)
        self._last = (x, y)
        return (y,) + tuple(args[1:])


class AppliedPlan:
    """One row of a plan applied to a model; ``remove()`` undoes it."""

    def __init__(self, model, method: str, setting: str):
        self.model, self.method, self.setting = model, method, setting
        self._saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self._hooks = []

    def _save(self, p: torch.nn.Parameter) -> None:
        self._saved.append((p, p.detach().to("cpu", copy=True)))

    def remove(self) -> None:
        with torch.no_grad():
            for p, orig in reversed(self._saved):
                p.copy_(orig.to(p.device))
        for h in self._hooks:
            h.remove()
        self._saved, self._hooks = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def apply_plan(model, plan: Plan, method: str, setting: str, *, digest: bool = True) -> AppliedPlan:
    """Apply row (method, setting) of ``plan`` to the transformers ``model`` (TQ-9.2), after the
    identity check of TQ-8.3 (``digest=False``: shapes and layer count only)."""
    check_hf_model(plan, model, digest=digest)
    row = plan.row(method, setting)
    mx = plan.mx
    b = mx["block_size"]
    one_plus = plan.manifest["model"]["norm_form"] == "one_plus_weight"
    sites = {(s["layer"], s["site"]): s for s in plan.manifest["model"]["sites"]}
    out = AppliedPlan(model, method, setting)
    try:
        with torch.no_grad():
            for e in row["sites"]:
                _apply_site(model, plan, e, sites[(e["layer"], e["site"])], mx, b, one_plus, out)
    except Exception:
        out.remove()
        raise
    return out


def _apply_site(model, plan: Plan, e: dict, ident: dict, mx: dict, b: int, one_plus: bool, out: AppliedPlan):
    a = {k: (None if v is None else torch.from_numpy(v)) for k, v in plan.site_arrays(e).items()}
    s, M, R = a["scale"], a["matrix"], a["block"]
    if s is not None:                                                   # step 1: the norm
        if ident["norm"] is None:
            raise PlanError(f"layer {e['layer']} site {e['site']}: a scale vector but no norm to fold it into")
        p = model.get_submodule(ident["norm"]).weight
        out._save(p)
        g = p.detach().to(torch.float32)
        g = (g + 1) if one_plus else g
        g = (g.to(torch.float64) / s.to(p.device)).to(torch.float32)
        p.copy_((g - 1) if one_plus else g)
    quantized = e["act_quant"] or e["weight_quant"] is not None
    if M is None and R is None and s is None and not quantized:
        return                                                          # the site stays exact
    for mod in ident["modules"]:
        lin = model.get_submodule(mod["name"])
        p = lin.weight
        out._save(p)
        dev = p.device
        W = p.detach().to(torch.float32)
        if s is not None:                                               # step 1: the columns
            W = (W.to(torch.float64) * s.to(dev)[None, :]).to(torch.float32)
        V = W.to(torch.float64)                                         # step 2
        if M is not None:
            V = V @ M.to(dev)
        if R is not None:
            V = _blocks(V, R.to(dev), b)
        if e["weight_quant"] == "rtn":                                  # step 3
            V = mx_fake_quant(V, mx["element"], mx["scale_rule"], b)
        p.copy_(V.to(torch.float32).to(p.dtype))
    hook = _SiteInput(M, R, e["act_quant"], mx)                         # step 4
    for mod in ident["modules"]:
        out._hooks.append(model.get_submodule(mod["name"]).register_forward_pre_hook(hook))
