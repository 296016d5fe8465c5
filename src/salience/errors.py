"""The library's exception hierarchy; each class also subclasses the matching built-in."""

from __future__ import annotations

__all__ = [
    "SalienceError",
    "ParameterError",
    "InputError",
    "ShapeError",
    "DTypeError",
    "TargetError",
    "ModelOutputError",
    "ModelCallError",
    "NotFittedError",
    "CompositionError",
    "LayerError",
]


class SalienceError(Exception):
    """Base class of every error raised by salience."""


class ParameterError(SalienceError, ValueError):
    """A hyperparameter has a value outside its documented range or options."""


class InputError(SalienceError, ValueError):
    """The input tensor has invalid values (NaN, inf) or is not a tensor."""


class ShapeError(SalienceError, ValueError):
    """A tensor does not have the shape its layout or the method requires."""


class DTypeError(SalienceError, TypeError):
    """A tensor has an unsupported dtype (integer, boolean or complex input)."""


class TargetError(SalienceError, ValueError):
    """The target does not fit the batch or the model's output."""


class ModelOutputError(SalienceError, ValueError):
    """The model returned something the method cannot explain (NaN, wrong shape)."""


class ModelCallError(SalienceError, RuntimeError):
    """Calling the model failed; the message adds the explainer, chunk and device context."""


class NotFittedError(SalienceError, RuntimeError):
    """A learned domain was used before ``fit``."""


class CompositionError(SalienceError, TypeError):
    """Two components cannot be combined (e.g. a layer method inside a domain)."""


class LayerError(SalienceError, ValueError):
    """A layer name or module was not found in the model, or has no usable output."""
