"""The rotation kinds and their runners (spec/CF.md section 5): ``hadamard``
(:mod:`.hadamard_kind`), ``rotate-quantize`` (:mod:`.rotate_quantize_kind`), ``schur-horn`` and
``maxent`` (:mod:`.builder_kinds`)."""
from __future__ import annotations

from .builder_kinds import run_maxent, run_schur_horn
from .hadamard_kind import run_hadamard
from .rotate_quantize_kind import run_rotate_quantize

ROTATION_RUNNERS = {"hadamard": run_hadamard, "rotate-quantize": run_rotate_quantize,
                    "schur-horn": run_schur_horn, "maxent": run_maxent}

#: cause -> (clause, description) of the rotation kinds
from .builder_kinds import CAUSES as _B  # noqa: E402
from .hadamard_kind import CAUSES as _H  # noqa: E402
from .rotate_quantize_kind import CAUSES as _R  # noqa: E402

ROTATION_CAUSES = {**_H, **_R, **_B}
