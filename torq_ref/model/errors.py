"""Exceptions of torq_ref.model (spec/FW.md section 1: bad input gives a specific, named error)."""
from __future__ import annotations

from torq_ref.errors import UserError


class ModelError(UserError, ValueError):
    """Base class: a model directory, file or argument that torq_ref.model cannot use."""


class UnsupportedModelError(ModelError):
    """The configuration names an architecture or a feature this forward pass does not implement."""


class MissingTensorError(ModelError):
    """A tensor the architecture needs is absent from the checkpoint."""


class ShapeMismatchError(ModelError):
    """A tensor's shape disagrees with the configuration."""


class WeightsFormatError(ModelError):
    """Weights are not safetensors (pickle-based .bin / .pt / .pth files are refused, never opened)."""


class TextTooShortError(ModelError):
    """The evaluation text has fewer tokens than the requested windows need."""
