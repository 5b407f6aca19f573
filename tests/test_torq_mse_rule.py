"""`run --scale-rule mse`: the pipeline takes every codec scale rule, MSE (spec/MX.md MX-4.8)
included (spec/TQ.md TQ-4.2: settings checked against torq_ref.mx.SCALE_RULES)."""
from __future__ import annotations

import numpy as np
import pytest

from torq_ref.model.tiny import tiny_model
from torq_ref.torq import RunSpec, TorqConfig, evaluate_methods


@pytest.mark.clause("TQ-4.2", "MX-4.8")
def test_run_accepts_the_mse_rule_and_it_changes_the_rtn_row():
    from torq_ref.cli import build_parser
    from torq_ref.torq.cli import settings_from_args

    _, cfg = settings_from_args(build_parser().parse_args(["run", "--quick", "--scale-rule", "mse"]))
    assert cfg.scale_rule == "mse"
    tiny = tiny_model("llama", seed=3)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 96, size=4 * 48)
    ev, ca = ids[:96].reshape(2, 48), ids[96:].reshape(2, 48)
    spec = RunSpec(methods=("rtn",), eval_windows=2, calib_windows=2, window=48, progress=False)
    rows = {}
    for rule in ("floor", "mse"):
        out = evaluate_methods(tiny, ev, ca, spec, TorqConfig(micro_rows=64, max_sweeps=1, scale_rule=rule))
        rows[rule] = out["results"][0]
    assert rows["mse"]["method"] == "rtn"
    assert rows["mse"]["kld"] != rows["floor"]["kld"]     # the activations are quantized differently
