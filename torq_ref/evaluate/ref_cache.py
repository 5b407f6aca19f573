"""The FP32 reference of a run's evaluation windows, kept on disk (spec/TQ.md TQ-6.8).

What is stored: the FP32 model's final hidden states (Ne, W, D) of the evaluation windows, in the
compute dtype, before the final norm, not the log-probabilities. The scores need the full
reference distribution at every position (the KL divergence sums over the V tokens), and
(Ne, W - 1, V) float32 log-probabilities are 800 MB for SmolLM2 (8 windows, V = 49152); the
hidden states are 9.4 MB, and ``Model.head`` turns them into exactly the logits the engine would
compute (the head is the same code on the same numbers), at the cost of one head matmul per row
that the scoring pays anyway.

The file is safetensors (no pickle) with one tensor ``hidden`` and a JSON header in the metadata
(key ``torq_ref_reference``), as llama.cpp's ``--kl-divergence-base`` file carries its own
identification: the format, the sha256 of the model (its config and every weight array), of the
window token ids, the dtype, the sha256 of the forward's source code, the numpy version and BLAS
build, and the sha256 of the tensor's bytes. The file name holds the first three; a file whose
header disagrees with the run on any field is refused with a :class:`RefCacheError` that names
the file and the field.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from torq_ref.errors import UserError

#: the format string of the header (a change of the layout changes it)
FORMAT = "torq-ref fp32 final hidden states v1"
#: the metadata key of the JSON header
HEADER_KEY = "torq_ref_reference"
#: the source files whose code computes the FP32 hidden states (the forward of spec/FW.md)
FORWARD_SOURCES = ("model/model.py", "model/layers.py", "model/hooks.py", "model/capture.py",
                   "model/config.py", "model/weights.py")


class RefCacheError(UserError, ValueError):
    """A reference file that does not belong to this run (stale or mismatched), or is corrupt."""


def model_digest(model) -> str:
    """sha256 of a model's config and every weight array (name, dtype, shape, bytes), in a
    fixed order: two models with the same digest compute the same forward."""
    h = hashlib.sha256()
    h.update(json.dumps(dataclasses.asdict(model.config), sort_keys=True, default=str).encode())

    def add(name, a):
        a = np.ascontiguousarray(a)
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))

    for name in sorted(vars(model)):
        value = getattr(model, name)
        if isinstance(value, np.ndarray):
            add(name, value)
        elif name == "layers":
            for i, lw in enumerate(value):
                for f in dataclasses.fields(lw):
                    a = getattr(lw, f.name)
                    if a is not None:
                        add(f"layers.{i}.{f.name}", a)
    return h.hexdigest()


def forward_digest() -> str:
    """sha256 of the forward's source files (FORWARD_SOURCES) and the engine's window batch."""
    import torq_ref
    from torq_ref.model.model import WINDOW_BATCH

    root = Path(torq_ref.__file__).parent
    h = hashlib.sha256(f"WINDOW_BATCH={WINDOW_BATCH};".encode())
    for rel in FORWARD_SOURCES:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()


def blas_build() -> str:
    """The BLAS libraries numpy and scipy use (name, version, CPU kernel), for the header."""
    from threadpoolctl import threadpool_info

    libs = sorted({f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                   for i in threadpool_info() if i.get("user_api") == "blas"})
    return "; ".join(libs)


class RefCache:
    """The reference files of one directory (default: ``<model cache>/references``)."""

    def __init__(self, directory: str | Path | None = None, *, log=None):
        if directory is None:
            from torq_ref.model.registry import cache_dir

            directory = cache_dir() / "references"
        self.directory = Path(directory)
        self._log = log
        self._digests: dict = {}

    def _model_sha(self, model) -> str:
        key = id(model)
        if key not in self._digests or self._digests[key][0] is not model:
            self._digests[key] = (model, model_digest(model))
        return self._digests[key][1]

    def header(self, model, eval_w: np.ndarray) -> dict:
        """What identifies the reference of ``model`` on the windows ``eval_w`` (Ne, W)."""
        w = np.ascontiguousarray(eval_w, dtype=np.int64)
        return {"format": FORMAT, "model_sha256": self._model_sha(model),
                "windows_sha256": hashlib.sha256(memoryview(w).cast("B")).hexdigest(),
                "windows": list(w.shape), "dtype": np.dtype(model.dtype).name,
                "forward_sha256": forward_digest(), "numpy": np.__version__, "blas": blas_build()}

    def path(self, header: dict) -> Path:
        return self.directory / (f"{header['model_sha256'][:16]}-{header['windows_sha256'][:16]}-"
                                 f"{header['dtype']}.safetensors")

    def read(self, path: Path, want: dict) -> np.ndarray:
        """The hidden states of the file ``path``, checked against the header ``want``: a field
        that differs (or a corrupt tensor) raises RefCacheError naming the file and the field."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                hidden = f.get_tensor("hidden")
        except Exception as err:            # a truncated or foreign file
            raise RefCacheError(f"reference file {path} is unreadable ({err})") from None
        if HEADER_KEY not in meta:
            raise RefCacheError(f"reference file {path} has no {HEADER_KEY} header")
        got = json.loads(meta[HEADER_KEY])
        for field, value in want.items():
            if got.get(field) != value:
                raise RefCacheError(f"reference file {path} is stale or mismatched: {field} is "
                                    f"{got.get(field)!r}, this run has {value!r}")
        digest = hashlib.sha256(memoryview(np.ascontiguousarray(hidden)).cast("B")).hexdigest()
        if got.get("hidden_sha256") != digest:
            raise RefCacheError(f"reference file {path} is corrupt: hidden_sha256 does not match its tensor")
        Ne, W = want["windows"]
        if hidden.shape[:2] != (Ne, W) or hidden.dtype != np.dtype(want["dtype"]):
            raise RefCacheError(f"reference file {path}: tensor {hidden.dtype} {hidden.shape} does not fit "
                                f"{Ne} windows of {W} tokens in {want['dtype']}")
        return hidden

    def load(self, model, eval_w: np.ndarray) -> np.ndarray | None:
        """The cached FP32 final hidden states (Ne, W, D) of ``eval_w``, or None when there is no
        file; a file that does not match is refused (logged), and None returned so the run
        computes the reference again and replaces it."""
        want = self.header(model, eval_w)
        path = self.path(want)
        if not path.is_file():
            return None
        try:
            hidden = self.read(path, want)
        except RefCacheError as err:
            self._note(f"refusing {err}; computing the FP32 reference again")
            return None
        self._note(f"FP32 reference from {path}")
        return hidden

    def store(self, model, eval_w: np.ndarray, hidden: np.ndarray) -> Path:
        """Write the FP32 final hidden states of ``eval_w`` with their header (atomically)."""
        from safetensors.numpy import save_file

        hidden = np.ascontiguousarray(hidden)
        header = self.header(model, eval_w)
        header["hidden_sha256"] = hashlib.sha256(memoryview(hidden).cast("B")).hexdigest()
        path = self.path(header)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"hidden": hidden}, str(tmp), metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})
        os.replace(tmp, path)
        self._note(f"FP32 reference stored in {path}")
        return path

    def _note(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)
