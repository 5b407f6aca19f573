"""The FP32 reference of the evaluation windows cached on disk (spec/TQ.md TQ-6.8)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from torq_ref.blas_threads import fixed_blas_threads
from torq_ref.evaluate import ref_cache as RC
from torq_ref.model.tiny import tiny_model
from torq_ref.torq import engine

from torq_fixtures import CFG, tiny, windows  # noqa: F401  (shared fixtures)


def _run(tiny, windows, methods, cache):
    ev, ca = windows
    with fixed_blas_threads():
        rows, _, _ = engine.stream_evaluate(tiny, ev, ca, methods, ("W16A4",), CFG, progress=False,
                                            ref_cache=cache)
    return {(r["method"], r["setting"]): {k: v for k, v in r.items() if k != "eval_s"} for r in rows}


@pytest.mark.clause("TQ-6.8")
def test_cached_reference_gives_the_same_rows(tiny, windows, tmp_path, monkeypatch):
    cache = RC.RefCache(tmp_path)
    cold = _run(tiny, windows, ("fp32", "rtn"), cache)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    # a hit: the reference is read, not recomputed, and the fp32 row is not run again
    calls = []
    real = engine._row_unit
    monkeypatch.setattr(engine, "_row_unit", lambda m, s, item: calls.append(item[0]) or real(m, s, item))
    warm = _run(tiny, windows, ("fp32", "rtn"), cache)
    assert warm == cold
    assert "fp32" not in calls and "rtn" in calls
    # a table without an fp32 row scores against the cached reference: same numbers
    assert _run(tiny, windows, ("rtn",), cache)[("rtn", "W16A4")] == cold[("rtn", "W16A4")]


@pytest.mark.clause("TQ-6.8")
def test_header_identifies_the_reference(tiny, windows, tmp_path):
    ev, _ = windows
    cache = RC.RefCache(tmp_path)
    hidden = np.arange(np.prod(ev.shape) * tiny.config.hidden_size, dtype=np.float32).reshape(*ev.shape, -1)
    path = cache.store(tiny, ev, hidden)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        head = json.loads(f.metadata()[RC.HEADER_KEY])
    assert head["format"] == RC.FORMAT and head["windows"] == list(ev.shape) and head["dtype"] == "float32"
    assert head["model_sha256"] == RC.model_digest(tiny) and len(head["forward_sha256"]) == 64
    np.testing.assert_array_equal(cache.load(tiny, ev), hidden)
    # another model, other windows: another file, never this one
    other = tiny_model("llama", seed=4)
    assert RC.model_digest(other) != head["model_sha256"]
    assert cache.load(other, ev) is None and cache.load(tiny, ev[:, ::-1]) is None


@pytest.mark.clause("TQ-6.8")
def test_stale_or_corrupt_reference_is_refused_by_name(tiny, windows, tmp_path, monkeypatch):
    ev, _ = windows
    notes = []
    cache = RC.RefCache(tmp_path, log=notes.append)
    hidden = np.ones((*ev.shape, tiny.config.hidden_size), dtype=np.float32)
    path = cache.store(tiny, ev, hidden)
    want = cache.header(tiny, ev)
    monkeypatch.setattr(RC, "forward_digest", lambda: "0" * 64)          # the forward's code changed
    with pytest.raises(RC.RefCacheError, match=r"stale or mismatched: forward_sha256"):
        cache.read(path, cache.header(tiny, ev))
    assert cache.load(tiny, ev) is None and "refusing" in notes[-1] and str(path) in notes[-1]
    monkeypatch.undo()
    # a tensor that is not the one the header describes
    from safetensors.numpy import save_file

    meta = {RC.HEADER_KEY: json.dumps({**want, "hidden_sha256": "f" * 64})}
    save_file({"hidden": hidden}, str(path), metadata=meta)
    with pytest.raises(RC.RefCacheError, match="corrupt"):
        cache.read(path, want)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(RC.RefCacheError, match="unreadable"):
        cache.read(path, want)
