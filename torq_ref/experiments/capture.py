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
