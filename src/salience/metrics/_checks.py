"""Argument checks shared by the metrics: attributions, inputs, masks, explainers, counts.

Their messages name the metric running (:func:`~salience.errors.current_caller`): each public
metric function enters :func:`~salience.errors.caller` once, and the metric classes' constructors
run inside it (:func:`~salience.errors.named_init`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._inputs import as_input
from .._validation import all_finite, check_input, check_int, non_finite
from ..attribution import Attribution
from ..engine import Explainer
from ..engine._forward import Extras
from ..errors import (
    DTypeError,
    InputError,
    ModelCallError,
    NumericalError,
    ParameterError,
    SalienceError,
    ShapeError,
    current_caller,
)
from ..targets import TargetLike

#: the largest count (steps, runs, perturbations, classes) a metric accepts: rows are numbered
#: with int64 indices, so ``B * n`` rows must fit in one (a larger count could never run)
MAX_COUNT = 2**63 - 1


def check_values(t: Any, name: str = "attribution", min_ndim: int = 2) -> torch.Tensor:
    """Check that an attribution-like tensor can be scored; returned detached.

    It must be a tensor of a real floating-point dtype with a batch axis and at least
    ``min_ndim`` dims, no empty axis, and only finite values (one reduction).

    Parameters
    ----------
    t : Any
        The tensor to check.
    name : str, default "attribution"
        What ``t`` is, named in the messages.
    min_ndim : int, default 2
        The fewest dims accepted: a batch axis and at least one more.

    Returns
    -------
    Tensor
        ``t.detach()``.

    Raises
    ------
    InputError
        ``t`` is not a tensor, or holds NaN or inf.
    DTypeError
        ``t`` is complex, integer or boolean.
    ShapeError
        ``t`` has fewer than ``min_ndim`` dims or an axis of size 0.

    Notes
    -----
    A tensor on the ``meta`` device is refused with an InputError (it holds no values). The
    messages name the running metric (:func:`~salience.errors.current_caller`).
    """
    if not isinstance(t, torch.Tensor):
        raise InputError(
            f"{current_caller()} expects {name} to be a torch.Tensor or a salience.Attribution. Got "
            f"{type(t).__name__} instead."
        )
    if t.is_complex() or not t.is_floating_point():
        hint = (
            "complex coefficients need a domain with a real/imaginary axis"
            if t.is_complex()
            else f"cast with {name}.float() if these are attribution values"
        )
        raise DTypeError(
            f"{current_caller()} expects {name} to have a real floating-point dtype (float16/32/64, bfloat16). "
            f"Got {t.dtype} instead ({hint})."
        )
    if t.ndim < min_ndim:
        raise ShapeError(
            f"{current_caller()} expects {name} to have a batch axis and at least {min_ndim} dims, shape "
            f"(B, C, *spatial) or (B, ...). Got shape {tuple(t.shape)} instead."
        )
    if 0 in t.shape:
        raise ShapeError(
            f"{current_caller()} expects {name} to have at least one element along every axis. Got shape "
            f"{tuple(t.shape)} instead."
        )
    _check_data(t, name)
    n_bad = non_finite(t)
    if n_bad:
        raise InputError(
            f"{current_caller()} expects {name} to be finite. Got {n_bad} NaN/inf value(s) in a tensor of "
            f"shape {tuple(t.shape)}."
        )
    return t.detach()


def _check_data(t: torch.Tensor, name: str) -> None:
    """A tensor on the 'meta' device has a shape but no values to score (InputError)."""
    if t.device.type == "meta":
        raise InputError(
            f"{current_caller()} expects {name} to hold data; got a tensor on the 'meta' device (shape "
            f"{tuple(t.shape)}). Move it to a real device (cpu, cuda, ...) first."
        )


def check_x(x: Any, model: Any = None) -> torch.Tensor:
    """The explained input, as :func:`~salience._validation.check_input`, also without an empty
    axis (a metric of a zero-length signal is undefined); returned detached. An MNE object
    becomes its data in ``model``'s dtype (:func:`salience.mne.from_mne`)."""
    x = check_input(as_input(x, model)[0])
    if 0 in x.shape:
        raise ShapeError(
            f"{current_caller()} expects x to have at least one element along every axis. Got shape "
            f"{tuple(x.shape)} instead."
        )
    return x.detach()


def check_explainer(explainer: Any, name: str = "explainer") -> Any:
    """An explainer to re-run: a salience Explainer or a callable ``(x, target) -> attribution``.

    A bare ``nn.Module`` is refused: it is the model, and calling it as ``model(x, target)``
    would score its outputs as if they were attributions.
    """
    if isinstance(explainer, nn.Module) and not isinstance(explainer, Explainer):
        raise ParameterError(
            f"The {name!r} parameter of {current_caller()} must be a salience Explainer or a callable "
            f"(x, target) -> attribution. Got the model {type(explainer).__name__} (an nn.Module) "
            f"instead; wrap it, e.g. salience.Gradient(model)."
        )
    if isinstance(explainer, type):
        raise ParameterError(
            f"The {name!r} parameter of {current_caller()} must be a salience Explainer or a callable "
            f"(x, target) -> attribution. Got the class {explainer.__name__} instead; pass an "
            f"instance, e.g. {explainer.__name__}(model)."
        )
    if not callable(explainer):
        raise ParameterError(
            f"The {name!r} parameter of {current_caller()} must be a salience Explainer or a callable "
            f"(x, target) -> attribution. Got {type(explainer).__name__} instead."
        )
    return explainer


def check_forward(forward_args: Any, forward_kwargs: Any, n_samples: int) -> Extras:
    """The extra forward inputs of a metric call, validated (the messages name the metric).

    Parameters
    ----------
    forward_args : sequence
        Extra positional inputs of every model call.
    forward_kwargs : mapping or None
        Extra keyword inputs of every model call.
    n_samples : int
        The number of samples of ``x``: tensors whose first axis has this length are per-sample.

    Returns
    -------
    Extras
        ``rows(samples)`` gives the inputs of rows derived from ``samples``.

    Raises
    ------
    ParameterError
        ``forward_args`` is not a tuple or list, or ``forward_kwargs`` not a dict with str keys.
    """
    return Extras(forward_args, forward_kwargs, n_samples, current_caller())


def run_explainer(
    explainer: Any,
    x: torch.Tensor,
    target: Any,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """``explainer(x, target)``, with the exceptions of a plain callable typed.

    Parameters
    ----------
    explainer : Explainer or callable
        Checked by :func:`check_explainer` beforehand.
    x : Tensor
    target : Any
    forward_args : sequence, optional
        Extra positional inputs of the model, for the rows of ``x``: a salience Explainer gets
        ``explain(x, target, forward_args=..., forward_kwargs=...)``, a plain callable
        ``explainer(x, target, *forward_args, **forward_kwargs)`` (as the model is called, with
        :func:`~salience.engine.shared` values unwrapped).
    forward_kwargs : mapping, optional
        Extra keyword inputs of the model, for the rows of ``x``.

    Returns
    -------
    Any
        What the explainer returned (checked by the caller).

    Raises
    ------
    ModelCallError
        A plain callable (not a salience Explainer) raised; its exception is the cause. Errors
        of salience itself pass through unchanged.
    """
    kwargs = dict(forward_kwargs or {})
    if isinstance(explainer, Explainer):
        if not (forward_args or kwargs):  # as before: a subclass may narrow explain's signature
            return explainer(x, target)
        return explainer.explain(x, target, forward_args=tuple(forward_args), forward_kwargs=kwargs)
    if forward_args or kwargs:  # as the model would receive them: shared(...) values unwrapped
        n = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim else 0
        forward_args, kwargs = check_forward(forward_args, kwargs, n).rows(torch.arange(n))
    try:
        return explainer(x, target, *forward_args, **kwargs)
    except SalienceError:
        raise
    except Exception as err:
        name = getattr(explainer, "__name__", type(explainer).__name__)
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        extra = " plus the extra forward inputs" if forward_args or kwargs else ""
        raise ModelCallError(
            f"{current_caller()}: the explainer {name} raised {type(err).__name__}: {err} (called as "
            f"explainer(x, target){extra} on x of shape {shape})."
        ) from err


def call_user(fn: Callable[..., Any], args: tuple, name: str) -> Any:
    """``fn(*args)`` for a callable hyperparameter (a similarity, a perturbation, a baseline).

    Parameters
    ----------
    fn : callable
    args : tuple
    name : str
        The parameter ``fn`` was passed as.

    Returns
    -------
    Any
        ``fn(*args)``.

    Raises
    ------
    ParameterError
        ``fn`` raised; its exception is the cause. Errors of salience pass through unchanged.
    """
    try:
        return fn(*args)
    except SalienceError:
        raise
    except Exception as err:
        raise ParameterError(
            f"The {name!r} callable of {current_caller()} raised {type(err).__name__}: {err}."
        ) from err


def check_count(value: Any, name: str, low: int = 1) -> int:
    """An int count in ``[low, MAX_COUNT]`` (steps, runs, perturbations, classes).

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        Not an int (bools, floats and strings included) or outside the range.
    """
    return check_int(value, name, low=low, high=MAX_COUNT)


def check_rows(b: int, n: int, name: str) -> None:
    """``b * n`` rows (``n`` per sample, ``b`` samples) must be indexable with int64.

    Raises
    ------
    ParameterError
        ``b * n`` exceeds ``MAX_COUNT``; the message names ``name``, the count asked for.
    """
    if b * n > MAX_COUNT:
        raise ParameterError(
            f"The {name!r} parameter of {current_caller()} asks for {b} x {n} rows, more than an int64 index "
            f"can number ({MAX_COUNT}); pass a smaller {name}."
        )


def check_finite_result(out: torch.Tensor, cause: str) -> torch.Tensor:
    """A result that must be finite, returned as it is.

    Parameters
    ----------
    out : Tensor of shape (B, ...) or ()
        One value (or row of values) per sample.
    cause : str
        What overflowed, for the message.

    Returns
    -------
    Tensor
        ``out``.

    Raises
    ------
    NumericalError
        ``out`` holds NaN or inf: the computation overflowed its dtype (the message lists the
        samples).
    """
    if not all_finite(out):
        rows = out.reshape(out.shape[0] if out.ndim else 1, -1)
        bad = (~torch.isfinite(rows)).any(1).nonzero().flatten().tolist()
        raise NumericalError(
            f"{current_caller()}: the result overflowed {out.dtype} (NaN/inf) for sample(s) {bad}; {cause}"
        )
    return out


def check_same_shape(ref: torch.Tensor, other: torch.Tensor, what: str) -> None:
    """``other`` (an explainer's new maps) must have the shape of ``ref`` (the maps at x)."""
    if other.shape != ref.shape:
        raise ShapeError(
            f"{current_caller()}: {what} have shape {tuple(other.shape)}, but the attribution at x has shape "
            f"{tuple(ref.shape)}; they must match element for element."
        )


def unpack(
    attribution: torch.Tensor | Attribution, target: TargetLike, domain: Any
) -> tuple[torch.Tensor, TargetLike, Any]:
    """Values, target and domain from a tensor or an :class:`Attribution`.

    An Attribution supplies its recorded target and domain when the caller passes None. The
    values are checked with :func:`check_values`.
    """
    if isinstance(attribution, Attribution):
        values = attribution.values
        if target is None:
            target = attribution.target
        if domain is None:
            domain = attribution.domain
    else:
        values = attribution
    return check_values(values), target, domain


def check_attribution(a: torch.Tensor, x: torch.Tensor, name: str = "attribution") -> torch.Tensor:
    """``a`` must have x's ndim and batch and broadcast to x; returned as x's dtype/device."""
    if a.ndim != x.ndim or a.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{current_caller()}: {name} must have the input's number of dims and batch size, i.e. "
            f"broadcastable to {tuple(x.shape)}. Got shape {tuple(a.shape)} instead."
        )
    try:
        torch.broadcast_shapes(a.shape, x.shape)
    except RuntimeError as err:
        raise ShapeError(
            f"{current_caller()}: {name} of shape {tuple(a.shape)} does not broadcast to the input's shape "
            f"{tuple(x.shape)}."
        ) from err
    return a.to(device=x.device, dtype=x.dtype)


def check_mask_values(mask: Any, name: str = "mask") -> torch.Tensor:
    """A ground-truth mask's values: boolean, or 0/1 in a real dtype (1 = inside).

    Raises InputError for a non-tensor, a tensor on the ``meta`` device, NaN/inf or values
    other than 0 and 1 (a soft mask or a label map must be thresholded first), DTypeError for a
    complex mask.
    """
    if not isinstance(mask, torch.Tensor):
        raise InputError(
            f"{current_caller()} needs a ground-truth {name} tensor. Got {type(mask).__name__} instead."
        )
    if mask.is_complex():
        raise DTypeError(
            f"{current_caller()} expects the {name} to be boolean or hold 0/1 values. Got dtype {mask.dtype} instead."
        )
    _check_data(mask, f"the {name}")
    if mask.dtype == torch.bool:
        return mask
    n_bad = non_finite(mask)
    if n_bad:
        raise InputError(
            f"{current_caller()} expects the {name} to be finite. Got {n_bad} NaN/inf value(s) in a {name} of "
            f"shape {tuple(mask.shape)}."
        )
    bad = (mask != 0) & (mask != 1)
    if bool(bad.any()):
        raise InputError(
            f"{current_caller()} expects the {name} to be boolean or hold only 0 and 1 (1 = inside). Got "
            f"{int(bad.sum())} other value(s), e.g. {mask[bad][0].item()!r}; threshold a soft mask "
            f"or select a label first ({name} > 0.5, {name} == label)."
        )
    return mask


def check_mask(mask: Any, a: torch.Tensor) -> torch.Tensor:
    """A ground-truth mask broadcastable to ``a`` (same ndim), as a bool tensor of a's shape."""
    mask = check_mask_values(mask)
    if 0 in mask.shape:
        raise ShapeError(
            f"{current_caller()} expects the mask to have at least one element along every axis. Got shape "
            f"{tuple(mask.shape)} instead."
        )
    if mask.ndim != a.ndim or mask.shape[0] != a.shape[0]:
        raise ShapeError(
            f"{current_caller()}: the mask must have the attribution's number of dims and batch size "
            f"(broadcastable to {tuple(a.shape)}). Got shape {tuple(mask.shape)} instead."
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, a.shape)
    except RuntimeError as err:
        raise ShapeError(
            f"{current_caller()}: a mask of shape {tuple(mask.shape)} does not broadcast with attributions "
            f"of shape {tuple(a.shape)}."
        ) from err
    return (mask.to(a.device) != 0).expand(shape)
