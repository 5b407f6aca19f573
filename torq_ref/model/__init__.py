"""Minimal NumPy Llama / Qwen3 / Qwen2 / Gemma3 forward pass, GGUF import, model registry and
perplexity (spec/FW.md).

Public API (stable names):

- :func:`load` (path, dtype) -> :class:`Model`; ``Model.forward(ids, quant=None, capture=None)``
- hooks: :class:`QuantPlan`, :class:`SiteQuant`, :class:`Transform`, ``SITES``
- calibration: :class:`ActivationCapture`, :func:`collect_moments`
- the forward pass by parts (FW-2.8): ``Model.embed_tokens``, ``Model.rope_tables``, ``Model.block``,
  ``Model.head``
- real models: :func:`ensure_model` (registry name, GGUF or model dir; FW-10.4), ``REGISTRY``,
  :func:`import_gguf`, :func:`cache_dir`
- data and metric: :func:`eval_text`, :func:`tokenize_text`, :func:`split_windows`,
  :func:`eval_windows`, :func:`calibration_windows`, :func:`text_windows`, :func:`bos_token_id`,
  :func:`perplexity`
"""
from .capture import ActivationCapture
from .config import ModelConfig, RopeConfig, parse_config, read_config
from .errors import (MissingTensorError, ModelError, ShapeMismatchError, TextTooShortError,
                     UnsupportedModelError, WeightsFormatError)
from .hooks import SITES, QuantPlan, SiteQuant, Transform, TransformError
from .model import Model, load

__all__ = [
    "ActivationCapture", "ModelConfig", "RopeConfig", "parse_config", "read_config",
    "MissingTensorError", "ModelError", "ShapeMismatchError", "TextTooShortError",
    "UnsupportedModelError", "WeightsFormatError", "SITES", "QuantPlan", "SiteQuant", "Transform",
    "TransformError", "Model", "load", "import_gguf",
    "ensure_model", "cache_dir", "eval_text", "tokenize_text", "split_windows", "eval_windows",
    "calibration_windows", "text_windows", "perplexity", "window_nll", "collect_moments",
    "bos_token_id", "REGISTRY",
]

_LAZY = {
    "import_gguf": "gguf_import", "ensure_model": "registry", "cache_dir": "registry",
    "eval_text": "data", "tokenize_text": "data", "split_windows": "data", "eval_windows": "data",
    "calibration_windows": "data", "text_windows": "data", "bos_token_id": "data", "REGISTRY": "registry",
    "perplexity": "metrics", "window_nll": "metrics", "collect_moments": "metrics",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
