"""The library's exception hierarchy (each class also subclasses the matching built-in), its
warning categories, :func:`warn`, which points a warning at the user's own line, and the error
context: :func:`caller` names, once per call, the explainer or metric that messages raised inside
it speak for (:func:`current_caller`), so that no function has to pass that name along."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from types import FrameType
from typing import Any

import torch

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
    "NumericalError",
    "SalienceWarning",
    "FinalActivationWarning",
    "TrainingModeWarning",
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


class NumericalError(SalienceError, ValueError):
    """A computation overflowed the input's dtype: the result would hold NaN or inf."""


class ModelCallError(SalienceError, RuntimeError):
    """Calling the model failed; the message adds the explainer, chunk and device context."""


class NotFittedError(SalienceError, RuntimeError):
    """A learned domain was used before ``fit``."""


class CompositionError(SalienceError, TypeError):
    """Two components cannot be combined (e.g. a layer method inside a domain)."""


class LayerError(SalienceError, ValueError):
    """A layer name or module was not found in the model, or has no usable output."""


class SalienceWarning(UserWarning):
    """Base class of the warnings salience issues (filter them all with this category)."""


class FinalActivationWarning(SalienceWarning):
    """The model ends in a Softmax/LogSoftmax/Sigmoid, so a probability is explained."""


class TrainingModeWarning(SalienceWarning):
    """The model is in training mode (BatchNorm/dropout make attributions batch-dependent)."""


_INTERNAL = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,  # salience itself
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,  # module hooks, autograd
    os.path.abspath(contextlib.__file__),  # pass contexts
)


def warn(message: str, category: type[Warning] = SalienceWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside salience, torch and contextlib:
    the user's line that called into the library (so filters by module and the default
    once-per-location rule see the user's code, not a hook deep inside a call)."""
    level = 2
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


# the explainer or metric running in this thread (each thread and task has its own context)
_CALLER: ContextVar[str] = ContextVar("salience_caller", default="salience")


@contextlib.contextmanager
def caller(name: str) -> Iterator[None]:
    """Name ``name`` in the messages of the errors raised inside the block.

    Entered once per public call (``Explainer.explain`` enters it with the explainer's name);
    code underneath reads it with :func:`current_caller` instead of receiving the name as an
    argument. Nested blocks restore the outer name when they end; threads do not share it.

    Examples
    --------
    >>> with caller("MyMethod"):
    ...     current_caller()
    'MyMethod'
    >>> current_caller()
    'salience'
    """
    token = _CALLER.set(name)
    try:
        yield
    finally:
        _CALLER.reset(token)


def current_caller() -> str:
    """The name given to the innermost :func:`caller` block running, else ``"salience"``."""
    return _CALLER.get()


def _named(method: Any) -> Any:
    """``method`` run inside ``caller(type(self).__name__)``."""

    @functools.wraps(method)
    def named(self: Any, *args: Any, **kwargs: Any) -> Any:
        with caller(type(self).__name__):
            return method(self, *args, **kwargs)

    named._salience_named = True  # type: ignore[attr-defined]
    return named


def named_init(cls: type) -> None:
    """Make the constructor of ``cls`` (its ``__init__``, or a dataclass's ``__post_init__``)
    run inside ``caller(type(self).__name__)``: the errors its validation raises name the class,
    with no name passed along. Only methods ``cls`` defines itself are wrapped, once."""
    for name in ("__init__", "__post_init__"):
        method = cls.__dict__.get(name)
        if method is not None and not getattr(method, "_salience_named", False):
            setattr(cls, name, _named(method))


class NamedInit:
    """Base of the public classes users configure (explainers, domains, metrics, maskers,
    substrates, LRP rules): every subclass's constructor runs inside the error context of its
    class (:func:`named_init`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        named_init(cls)
