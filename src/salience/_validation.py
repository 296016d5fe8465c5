"""Parameter and input checks shared by every component, with scikit-learn style messages."""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import torch

from .errors import DTypeError, InputError, ParameterError, ShapeError, current_caller


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element of a tensor is finite (no NaN, no +-inf).

    One reduction: ``aminmax`` propagates NaN and reaches an infinite element, so both extremes
    are finite exactly when every element is; on a CPU this is about 25x faster than
    ``isfinite(t).all()``, which materialises a boolean mask (noticeable on every call of a
    fast explainer on images). Non-floating tensors and empty ones are finite.
    """
    if t.numel() == 0 or not t.is_floating_point():
        return True
    lo, hi = torch.aminmax(t.detach())
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def non_finite(t: torch.Tensor) -> int:
    """How many elements of ``t`` are NaN or +-inf: 0 after one fast reduction (see
    :func:`all_finite`) when every element is finite, the count otherwise (for the message)."""
    return 0 if all_finite(t) else int((~torch.isfinite(t)).sum())


def _range(low: float | None, high: float | None, closed: str) -> str:
    left = "[" if closed in ("both", "left") and low is not None else "("
    right = "]" if closed in ("both", "right") and high is not None else ")"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def _inside(v: float, low: float | None, high: float | None, closed: str) -> bool:
    if low is not None:
        if v < low or (v == low and closed not in ("both", "left")):
            return False
    if high is not None:
        if v > high or (v == high and closed not in ("both", "right")):
            return False
    return True


def check_int(
    value: Any, name: str, owner: str | None = None, low: int | None = None, high: int | None = None
) -> int:
    """Return ``value`` as an int, or raise ParameterError naming the parameter and the range."""
    owner = owner or current_caller()
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or not _inside(int(value), low, high, "both")
    ):
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be an int in the range "
            f"{_range(low, high, 'both')}. Got {value!r} instead."
        )
    return int(value)


def check_float(
    value: Any,
    name: str,
    owner: str | None = None,
    low: float | None = None,
    high: float | None = None,
    closed: str = "both",
) -> float:
    """Return ``value`` as a finite float inside the interval, or raise ParameterError."""
    owner = owner or current_caller()
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(float(value))
        or not _inside(float(value), low, high, closed)
    ):
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a float in the range "
            f"{_range(low, high, closed)}. Got {value!r} instead."
        )
    return float(value)


def check_option(value: Any, name: str, owner: str | None = None, options: Iterable[Any] = ()) -> Any:
    """Return ``value`` if it is one of ``options``, else raise ParameterError listing them."""
    owner = owner or current_caller()
    options = tuple(options)
    if isinstance(value, str) or value is None or isinstance(value, bool):
        if value in options:
            return value
    raise ParameterError(
        f"The {name!r} parameter of {owner} must be one of "
        f"{', '.join(repr(o) for o in options)}. Got {value!r} instead."
    )


def check_batch_size(value: Any, owner: str | None = None) -> int | None:
    """``batch_size`` is None (automatic) or a positive int: the maximum rows per model call."""
    if value is None:
        return None
    return check_int(value, "batch_size", owner, low=1)


def check_input(x: Any, owner: str | None = None, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a finite floating-point tensor with a batch axis."""
    owner = owner or current_caller()
    if not isinstance(x, torch.Tensor):
        raise InputError(
            f"{owner} expects {name} to be a torch.Tensor (channels-first, batch axis first). "
            f"Got {type(x).__name__} instead; use torch.as_tensor(...) first."
        )
    if x.is_complex() or not x.is_floating_point():
        raise DTypeError(
            f"{owner} expects {name} to have a floating-point dtype (float16/32/64, bfloat16). "
            f"Got {x.dtype} instead; cast with {name}.float() (complex data: use a domain)."
        )
    if x.ndim < 2:
        raise ShapeError(
            f"{owner} expects {name} to have a batch axis and a channel axis "
            f"(at least 2 dims). Got shape {tuple(x.shape)} instead."
        )
    if x.shape[0] == 0:
        raise ShapeError(f"{owner} got an empty batch: {name} has shape {tuple(x.shape)}.")
    if 0 in x.shape:
        axis = list(x.shape).index(0)
        raise ShapeError(
            f"{owner} expects every axis of {name} to have at least one element; axis {axis} of "
            f"shape {tuple(x.shape)} is empty (a zero-length signal or image has nothing to explain)."
        )
    if x.device.type == "meta":
        raise InputError(
            f"{owner} expects {name} to hold data; got a tensor on the 'meta' device (shape "
            f"{tuple(x.shape)}). Move it to a real device (cpu, cuda, ...) first."
        )
    if x.is_inference():
        # made under torch.inference_mode(): autograd cannot record it; a normal copy can be
        x = x.clone()
    n_bad = non_finite(x)
    if n_bad:
        raise InputError(
            f"{owner} expects {name} to be finite. Got {n_bad} NaN/inf value(s) in a tensor of "
            f"shape {tuple(x.shape)}."
        )
    return x


def check_bool(value: Any, name: str, owner: str | None = None) -> bool:
    """Return ``value`` if it is a bool, else raise ParameterError naming the parameter."""
    owner = owner or current_caller()
    if not isinstance(value, bool):
        raise ParameterError(f"The {name!r} parameter of {owner} must be a bool. Got {value!r} instead.")
    return value


def check_generator(
    generator: Any, owner: str | None = None, name: str = "generator"
) -> torch.Generator | None:
    """Return ``generator`` if it is a torch.Generator or None, else raise ParameterError."""
    owner = owner or current_caller()
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a torch.Generator or None. "
            f"Got {type(generator).__name__} instead."
        )
    return generator


def make_generator(generator: torch.Generator | None, owner: str | None = None) -> torch.Generator:
    """The caller's generator, or a fresh randomly seeded one (the global RNG is never used)."""
    if generator is None:
        g = torch.Generator()
        g.seed()
        return g
    check_generator(generator, owner)
    return generator
