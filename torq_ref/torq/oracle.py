"""The whole-model test oracle of the layer-streaming engine (spec/TQ.md TQ-6.5).

The engine (:mod:`torq_ref.torq.engine`) computes the table one decoder layer at a time; the tests
hold it against the plain whole-model path built from these two functions and nothing of the
engine's streaming:

* :func:`calibrate`: the second moments and input rows of every site from one whole-model pass
  over the calibration windows (``Model.forward`` with an activation capture);
* :func:`plan_for`: the whole-model ``QuantPlan`` of a (method, setting), for a plain
  ``Model.forward`` / ``perplexity``.

Together with ``methods.site_transform`` on the captured statistics, they give each row's numbers
without the engine; the run itself never calls them.
"""
from __future__ import annotations

import numpy as np

from .methods import SettingsError, TorqConfig


def calibrate(model, calib: np.ndarray, max_rows: int, progress: bool):
    """Second moments (all tokens) and up to ``max_rows`` input rows of every site (TQ-3.1)."""
    from torq_ref.model import collect_moments

    return collect_moments(model, calib, inputs=True, max_rows=max_rows, progress=progress)


def plan_for(method: str, setting: str, transforms: dict, cfg: TorqConfig, num_layers: int | None = None):
    """The whole-model QuantPlan of (method, setting) (TQ-2.1, TQ-2.6): the engine's
    per-site rule (``engine.plan_site``) at every site, for a plain ``Model.forward``.
    With ``cfg.quant_sites`` short of all four kinds (TQ-2.15) every site is listed explicitly,
    which needs ``num_layers``."""
    from torq_ref.model import QuantPlan
    from torq_ref.model.hooks import SITES

    from .engine import plan_site

    base = plan_site(method, setting, None, cfg)
    if base is None:
        return None
    if set(cfg.quant_sites) != set(SITES):
        if num_layers is None:
            raise SettingsError(f"plan_for with quant_sites {cfg.quant_sites} needs num_layers")
        sites = {(i, s): plan_site(method, setting, transforms.get((i, s)), cfg, s)
                 for i in range(num_layers) for s in SITES}
        return QuantPlan(default=None, sites=sites, mode="folded")
    sites = {key: plan_site(method, setting, t, cfg, key[1]) for key, t in transforms.items()}
    return QuantPlan(default=base, sites=sites, mode="folded")
