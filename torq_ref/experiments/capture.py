"""Layer inputs of the real model for the rotation experiments (spec/SH.md SH-5.4, spec/ME.md ME-5.2).

The experiments sit above both layers they use: torq_ref.model (the forward pass that captures
the inputs) and torq_ref.rotations (the transforms they measure); rotations/ never imports model/.
"""
from __future__ import annotations

import numpy as np


def capture_inputs(model_dir, layers, sites, calib_windows: int, heldout_windows: int,
                   progress: bool = False):
    """Inputs of ``sites`` of ``layers`` on calibration windows N_EVAL.. and the held-out windows
    after them: ({(layer, site): (calib rows, held-out rows)} float64, a one-line source note)."""
    from torq_ref import model as tm
    from torq_ref.model.data import N_EVAL as start

    path = tm.ensure_model(model_dir, progress=progress)
    mdl = tm.load(path)
    ids = tm.tokenize_text(path)
    calib = tm.calibration_windows(ids, calib_windows, start=start)
    held = tm.calibration_windows(ids, heldout_windows, start=start + calib_windows)
    caps = []
    for wins in (calib, held):
        cap = tm.ActivationCapture(list(layers), list(sites), moments=False, inputs=True)
        for k in range(wins.shape[0]):
            mdl.forward(wins[k:k + 1], capture=cap)      # (1, 512) window -> inputs recorded
        caps.append(cap)
    out = {(layer, site): (caps[0].inputs(layer, site).astype(np.float64),
                           caps[1].inputs(layer, site).astype(np.float64))
           for layer in layers for site in sites}
    note = (f"SmolLM2-135M-Instruct imported from GGUF ({path}); calibration windows "
            f"{start}..{start + calib_windows - 1}, held-out windows {start + calib_windows}.."
            f"{start + calib_windows + heldout_windows - 1} (512 tokens each) of the pydoc topics "
            f"text; inputs captured by torq_ref.model.ActivationCapture (float32 forward pass)")
    return out, note


def run_calibration(model_name, calib_windows: int = 4, micro_rows: int = 1024, progress: bool = False):
    """The calibration of ``run`` for the experiments of spec/TQ.md TQ-2.20 and TQ-2.21: the
    ``calib_windows`` windows after the 8 evaluation ones (``split_windows`` with the model's BOS
    rule), one whole-model pass (``torq.oracle.calibrate``) keeping the second moments of all
    calibration tokens and the first ``2 * micro_rows`` input rows of every site. Returns
    (model, capture, a one-line source note)."""
    from torq_ref import model as tm
    from torq_ref.model.data import bos_token_id
    from torq_ref.torq.oracle import calibrate
    from torq_ref.torq.pipeline import RunSpec

    spec = RunSpec(calib_windows=calib_windows)
    path = tm.ensure_model(model_name, progress=progress)
    ids = tm.tokenize_text(path)
    bos = bos_token_id(path)
    _, calib = tm.split_windows(ids, spec.eval_windows, calib_windows, spec.window, bos)
    mdl = tm.load(path)
    cap = calibrate(mdl, calib, 2 * micro_rows, progress)
    note = (f"{model_name} ({path}), float32 forward pass; {calib_windows} calibration windows of "
            f"{spec.window} tokens after the {spec.eval_windows} evaluation windows of the pydoc topics "
            f"text (as `run`); second moments over all calibration tokens, the first {2 * micro_rows} "
            f"input rows of every site kept")
    return mdl, cap, note
