"""Evaluation text and token windows (spec/FW.md section 6, docs/model-and-data.md section 3).

The text is Python's own documentation topics, joined in sorted key order with blank lines. It is
tokenised once, without special tokens, and cut into consecutive windows of ``window`` tokens:
the first ``n_eval`` are evaluation windows, the next ``n_calib`` calibration windows. For a model
whose tokenizer adds BOS (GGUF ``tokenizer.ggml.add_bos_token``, e.g. Gemma3), every window is
BOS followed by the next ``window - 1`` text tokens (FW-6.5).
"""
from __future__ import annotations

import numpy as np

from .errors import ModelError, TextTooShortError

WINDOW = 512
N_EVAL = 8
N_CALIB = 4


def eval_text() -> str:
    """``"\\n\\n".join(topics[k] for k in sorted(topics))`` of ``pydoc_data.topics`` (FW-6.1)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def tokenize_text(tokenizer, text: str | None = None) -> np.ndarray:
    """int64 token ids of ``text`` (default: :func:`eval_text`), no special tokens added (FW-6.1).

    ``tokenizer``: a ``tokenizers.Tokenizer``, a path to tokenizer.json, or a model directory.
    """
    from pathlib import Path

    from tokenizers import Tokenizer

    if isinstance(tokenizer, (str, Path)):
        p = Path(tokenizer)
        tokenizer = Tokenizer.from_file(str(p / "tokenizer.json" if p.is_dir() else p))
    elif hasattr(tokenizer, "tokenizer") and callable(tokenizer.tokenizer):  # a Model
        tokenizer = tokenizer.tokenizer()
    ids = tokenizer.encode(eval_text() if text is None else text, add_special_tokens=False).ids
    return np.asarray(ids, dtype=np.int64)


def split_windows(ids: np.ndarray, n_eval: int = N_EVAL, n_calib: int = N_CALIB,
                  window: int = WINDOW, bos_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(eval (n_eval, window), calib (n_calib, window)): consecutive windows, calibration after
    evaluation (FW-6.2). With ``bos_id`` each window is BOS + the next ``window - 1`` text tokens
    (FW-6.5). Raises TextTooShortError when the text is too short."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ModelError("ids must be one token sequence")
    if n_eval < 0 or n_calib < 0 or window < 2:
        raise ModelError("window counts must be >= 0 and the window >= 2 tokens")
    if bos_id is not None and (isinstance(bos_id, bool) or not isinstance(bos_id, (int, np.integer)) or bos_id < 0):
        raise ModelError(f"bos_id must be a token id >= 0 or None; got {bos_id!r}")
    text = window - (bos_id is not None)                       # text tokens per window
    n = n_eval + n_calib
    need = n * text
    if need > ids.size:
        raise TextTooShortError(
            f"{n_eval} eval + {n_calib} calibration windows of {window} tokens need {need} tokens; "
            f"the text has {ids.size} ({ids.size // text} windows)")
    w = ids[:need].reshape(n, text)                            # (n_eval + n_calib, text)
    if bos_id is not None:
        w = np.concatenate([np.full((n, 1), bos_id, dtype=w.dtype), w], axis=1)   # (n, window)
    return w[:n_eval].copy(), w[n_eval:].copy()


def eval_windows(ids: np.ndarray, n: int = N_EVAL, window: int = WINDOW, bos_id: int | None = None) -> np.ndarray:
    """Windows 0..n-1 of the token stream, (n, window); BOS-led when ``bos_id`` is given."""
    return split_windows(ids, n, 0, window, bos_id)[0]


def calibration_windows(ids: np.ndarray, n: int = N_CALIB, start: int = N_EVAL,
                        window: int = WINDOW, bos_id: int | None = None) -> np.ndarray:
    """Windows start..start+n-1 (default 8..11), (n, window); BOS-led when ``bos_id`` is given."""
    return split_windows(ids, start + n, 0, window, bos_id)[0][start:]


def bos_token_id(model) -> int | None:
    """FW-6.5: the BOS id to put in front of every window, or None when the model adds no BOS.

    ``model``: a Model (its directory is read) or a model directory. The rule is recorded by the
    GGUF importer in import.json (``add_bos_token``, ``bos_token_id``); a directory without it
    falls back to tokenizer_config.json's ``add_bos_token`` with config.json's ``bos_token_id``;
    neither present means no BOS."""
    import json
    from pathlib import Path

    d = getattr(model, "path", model)
    if d is None:
        return None
    d = Path(d)

    def read(name):
        f = d / name
        if not f.is_file():
            return {}
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ModelError(f"{f} is not valid JSON: {err}") from None
        return data if isinstance(data, dict) else {}

    imp = read("import.json")
    if "add_bos_token" in imp:
        add, bos = imp["add_bos_token"], imp.get("bos_token_id")
    else:
        add, bos = read("tokenizer_config.json").get("add_bos_token", False), read("config.json").get("bos_token_id")
    if not add:
        return None
    if isinstance(bos, list):
        bos = bos[0] if bos else None
    if isinstance(bos, bool) or not isinstance(bos, int) or bos < 0:
        raise ModelError(f"{d}: add_bos_token is true but bos_token_id is {bos!r}")
    return bos


def text_windows(tokenizer, n_eval: int = N_EVAL, n_calib: int = N_CALIB, window: int = WINDOW,
                 text: str | None = None, bos_id="auto") -> tuple[np.ndarray, np.ndarray]:
    """``split_windows(tokenize_text(tokenizer, text), n_eval, n_calib, window, bos_id)`` in one
    call: the evaluation and calibration windows of the protocol (FW-6.2, FW-6.5); ``tokenizer``
    as in :func:`tokenize_text` (a Model, a tokenizers.Tokenizer, tokenizer.json or a model dir).
    ``bos_id="auto"`` applies the model's BOS rule (:func:`bos_token_id`) when ``tokenizer`` is a
    Model or a model directory, and no BOS for a bare tokenizer."""
    from pathlib import Path

    if isinstance(bos_id, str):
        if bos_id != "auto":
            raise ModelError(f"bos_id must be an int, None or 'auto'; got {bos_id!r}")
        is_dir = isinstance(tokenizer, (str, Path)) and Path(tokenizer).is_dir()
        bos_id = bos_token_id(tokenizer) if (is_dir or hasattr(tokenizer, "config")) else None
    return split_windows(tokenize_text(tokenizer, text), n_eval, n_calib, window, bos_id)
