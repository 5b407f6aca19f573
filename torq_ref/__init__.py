"""torq-ref: reference implementation and conformance oracle for MXFP4 with TORQ rotations.

Layout (one job per subpackage; the spec clause prefix is in brackets):

- ``torq_ref.mx``          the bit-exact MX / NVFP4 codec              [MX]  spec/MX.md
- ``torq_ref.golden``      golden-vector generation and reading        [GV]  spec/GV.md
- ``torq_ref.conformance`` the harness that checks other kernels       [CF]  spec/CF.md
- ``torq_ref.rotations``   Schur-Horn (inter-block) and max-entropy
                           (intra-block) rotations, baselines, metrics [SH, ME] spec/SH.md, spec/ME.md
- ``torq_ref.model``       minimal NumPy Llama/Qwen3 forward pass,
                           GGUF import, perplexity                     [FW]  spec/FW.md
- ``torq_ref.torq``        the end-to-end TORQ pipeline                [TQ]  spec/TQ.md
- ``torq_ref.cli``         the command line, ``torq_ref.errors`` its
                           user-facing errors                          [CL]  spec/CL.md

Each subpackage is a room that imports only the rooms below it (spec/CL.md CL-4.1, the order:
errors, blas_threads, mx, quant, rotations, golden, conformance, model, evaluate, torq,
experiments, torch, selftest, cli); the tests collect with the ``test`` extra alone (CL-5.1).

README.md's two commands and examples use exactly these entry points (spec/ST.md ST-3.1, ST-3.2,
checked by tests/test_readme.py): ``python -m torq_ref run``, ``torq_ref.mx`` and
``torq_ref.conformance.check``.
"""

import os as _os

# numba's parallel kernels (max-entropy optimizer, codec) run on its OpenMP threading layer, whose
# threads spin between the many short parallel regions. On a loaded machine that spinning starves
# everything else: the micro optimizer measured 106 s instead of 3-13 s next to other busy
# processes on 2 cores (benchmarks/maxent.md). Passive waiting costs nothing measurable when the
# machine is idle, and results do not depend on it. A value set by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
