"""Evaluation text and token windows (spec/FW.md section 6, model-and-data.md "Evaluation text").

The text is Python's own documentation topics, joined in sorted key order with blank lines. It is
tokenised once, without special tokens, and cut into consecutive windows of ``window`` tokens:
the first ``n_eval`` are evaluation windows, the next ``n_calib`` calibration windows.
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
                  window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(eval (n_eval, window), calib (n_calib, window)): consecutive windows, calibration after
    evaluation (FW-6.2). Raises TextTooShortError when the text is too short."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ModelError("ids must be one token sequence")
    if n_eval < 0 or n_calib < 0 or window < 2:
        raise ModelError("window counts must be >= 0 and the window >= 2 tokens")
    need = (n_eval + n_calib) * window
    if need > ids.size:
        raise TextTooShortError(
            f"{n_eval} eval + {n_calib} calibration windows of {window} tokens need {need} tokens; "
            f"the text has {ids.size} ({ids.size // window} windows)")
    w = ids[:need].reshape(n_eval + n_calib, window)           # (n_eval + n_calib, window)
    return w[:n_eval].copy(), w[n_eval:].copy()


def eval_windows(ids: np.ndarray, n: int = N_EVAL, window: int = WINDOW) -> np.ndarray:
    """Windows 0..n-1 of the token stream, (n, window)."""
    return split_windows(ids, n, 0, window)[0]


def calibration_windows(ids: np.ndarray, n: int = N_CALIB, start: int = N_EVAL,
                        window: int = WINDOW) -> np.ndarray:
    """Windows start..start+n-1 (default 8..11), (n, window)."""
    return split_windows(ids, start + n, 0, window)[0][start:]


def text_windows(tokenizer, n_eval: int = N_EVAL, n_calib: int = N_CALIB, window: int = WINDOW,
                 text: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``split_windows(tokenize_text(tokenizer, text), n_eval, n_calib, window)`` in one call:
    the evaluation and calibration windows of the protocol (FW-6.2); ``tokenizer`` as in
    :func:`tokenize_text` (a Model, a tokenizers.Tokenizer, tokenizer.json or a model dir)."""
    return split_windows(tokenize_text(tokenizer, text), n_eval, n_calib, window)
