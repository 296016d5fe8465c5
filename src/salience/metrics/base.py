"""The ``Metric`` base class and the argument handling shared by the functional metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from .._validation import all_finite, check_batch_size, check_input, check_int
from ..attribution import Attribution
from ..domains.base import into
from ..engine import Explainer, ScoreFunction, make_score
from ..errors import (
    DTypeError,
    InputError,
    ModelCallError,
    NumericalError,
    ParameterError,
    SalienceError,
    ShapeError,
    current_caller,
    named_init,
)
from ..layout import Layout, LayoutLike
from ..targets import TargetLike

__all__ = ["Metric"]

AttributionLike = "torch.Tensor | Attribution"

#: the largest count (steps, runs, perturbations, classes) a metric accepts: rows are numbered
#: with int64 indices, so ``B * n`` rows must fit in one (a larger count could never run)
MAX_COUNT = 2**63 - 1


class Metric:
    """Base class of the metric classes: a bundle of configuration around a functional metric.

    A metric class only stores validated keyword-only parameters in ``__init__`` and calls its
    functional counterpart in ``__call__``. Every class has the same call signature, so
    :func:`~salience.metrics.evaluate` can run any of them:

    ``metric(model, x, attribution, target=None, *, explainer=None, mask=None, domain=None)``
    returns one value per sample, shape (B,) (NaN where the metric is undefined for a sample).

    Class attributes declare what a metric needs and how to read it (torchmetrics-style).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        named_init(cls)  # the constructor's errors name the class (errors.caller)

    #: True if larger values are better, False if smaller are, None if neither (e.g. sanity curves)
    higher_is_better: ClassVar[bool | None] = None
    #: the metric calls the model
    requires_model: ClassVar[bool] = False
    #: the metric re-explains perturbed inputs or models (robustness, randomisation)
    requires_explainer: ClassVar[bool] = False
    #: the metric needs a ground-truth mask (localisation)
    requires_mask: ClassVar[bool] = False
    #: the metric draws random numbers (through its ``generator``)
    is_stochastic: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_param_repr(v)}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{self.name}({params})"

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: torch.Tensor | Attribution,
        target: TargetLike = None,
        *,
        explainer: Any = None,
        mask: torch.Tensor | None = None,
        domain: Any = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    # helpers for subclasses ------------------------------------------------------------
    def _need(self, value: Any, what: str) -> Any:
        if value is None:
            raise ParameterError(f"{self.name} needs {what}; got None.")
        return value


def _param_repr(value: Any) -> str:
    """A parameter in a metric's repr; generators without their memory address (the repr labels
    rows of :func:`~salience.metrics.evaluate`'s table and must not change from run to run)."""
    if isinstance(value, torch.Generator):
        return f"torch.Generator(device={str(value.device)!r})"
    return repr(value)


# ---------------------------------------------------------------------------- shared helpers
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
        hint = ("complex coefficients need a domain with a real/imaginary axis" if t.is_complex()
                else f"cast with {name}.float() if these are attribution values")
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
    if not all_finite(t):
        n_bad = int((~torch.isfinite(t)).sum())
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


def check_x(x: Any) -> torch.Tensor:
    """The explained input, as :func:`~salience._validation.check_input`, also without an empty
    axis (a metric of a zero-length signal is undefined); returned detached."""
    x = check_input(x)
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


def run_explainer(explainer: Any, x: torch.Tensor, target: Any) -> Any:
    """``explainer(x, target)``, with the exceptions of a plain callable typed.

    Parameters
    ----------
    explainer : Explainer or callable
        Checked by :func:`check_explainer` beforehand.
    x : Tensor
    target : Any

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
    if isinstance(explainer, Explainer):
        return explainer(x, target)
    try:
        return explainer(x, target)
    except SalienceError:
        raise
    except Exception as err:
        name = getattr(explainer, "__name__", type(explainer).__name__)
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ModelCallError(
            f"{current_caller()}: the explainer {name} raised {type(err).__name__}: {err} (called as "
            f"explainer(x, target) on x of shape {shape})."
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


def rescaled(a: torch.Tensor) -> torch.Tensor:
    """Each row of ``a`` (axis 0) times the power of two that brings its largest magnitude into
    [0.5, 1).

    Multiplying by a power of two is exact, so a scale-invariant quantity (a ratio of sums, a
    correlation, a Gini index) computed on the result equals the one computed on ``a`` bit for
    bit, except that sums no longer overflow (values near the dtype's maximum) and squares no
    longer underflow (tiny values). An all-zero row is left as it is.

    Parameters
    ----------
    a : Tensor of shape (B, ...)
        Real floating point, finite.

    Returns
    -------
    Tensor of shape (B, ...)
    """
    if a.ndim == 0 or a.numel() == 0:
        return a
    peak = a.detach().abs().reshape(a.shape[0], -1).amax(1)
    _, exponent = torch.frexp(peak)
    # 2 ** -exponent in two factors: for subnormal rows the whole factor would overflow the dtype
    half = torch.div(-exponent, 2, rounding_mode="floor")
    shape = (-1,) + (1,) * (a.ndim - 1)
    one = torch.ones_like(peak)
    first = torch.ldexp(one, half).reshape(shape)
    second = torch.ldexp(one, -exponent - half).reshape(shape)
    return a * first * second


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
        raise InputError(f"{current_caller()} needs a ground-truth {name} tensor. Got {type(mask).__name__} instead.")
    if mask.is_complex():
        raise DTypeError(f"{current_caller()} expects the {name} to be boolean or hold 0/1 values. Got dtype {mask.dtype} instead.")
    _check_data(mask, f"the {name}")
    if mask.dtype == torch.bool:
        return mask
    if not all_finite(mask):
        n_bad = int((~torch.isfinite(mask)).sum())
        raise InputError(f"{current_caller()} expects the {name} to be finite. Got {n_bad} NaN/inf value(s) in a {name} of "
                         f"shape {tuple(mask.shape)}.")
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


def prepare(
    model: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None,
    layout: LayoutLike | None,
) -> tuple[torch.Tensor, Layout, ScoreFunction]:
    """Check ``x`` and build the engine's score function with ``target`` bound at ``x``."""
    if not callable(model) or isinstance(model, Explainer):
        got = f"the explainer {model!r}" if isinstance(model, Explainer) else type(model).__name__
        raise ParameterError(
            f"The 'model' parameter of {current_caller()} must be the model, callable (an nn.Module or a "
            f"function of a batch). Got {got} instead."
        )
    x = check_x(x)
    lay = Layout.infer(x, layout)
    score = make_score(model, x, target, batch_size=check_batch_size(batch_size), layout=lay)
    return x, lay, score


def align(a: torch.Tensor, a_layout: Layout | None, space: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Attributions with fewer axes than ``space`` (a domain's reduced report, e.g. Fourier bins
    without the re/im axis) get singleton axes where ``layout`` has names they lack."""
    if a.ndim == space.ndim or a_layout is None:
        return a
    names = [n for n in layout.names if n in a_layout.names]
    if names != list(a_layout.names):
        raise ShapeError(
            f"{current_caller()}: attributions with layout {a_layout} cannot be placed in the domain's "
            f"coefficients {layout}; compute them with InDomain(..., reduce=False)."
        )
    shape = [a.shape[a_layout.names.index(n)] if n in a_layout.names else 1 for n in layout.names]
    return a.reshape(shape)


def setup(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike,
    domain: Any,
    *,
    batch_size: int | None,
    layout: LayoutLike | None,
) -> tuple[torch.Tensor, torch.Tensor, Layout, ScoreFunction]:
    """Shared preamble of the model-based metrics: ``(attribution, space, layout, score)``.

    ``space`` is ``x``, or ``domain.forward(x)`` with the score composed through the inverse.
    """
    a, target, domain = unpack(attribution, target, domain)
    a_layout = attribution.layout if isinstance(attribution, Attribution) else None
    x, lay, score = prepare(model, x, target, batch_size=batch_size, layout=layout)
    space = x
    if domain is not None:
        space, lay, score, d = into(score, x, domain, lay)
        a, a_layout = to_coefficients(a, a_layout, d, space, lay)
    a = check_attribution(align(a, a_layout, space, lay), space)
    return a, space, lay, score


def to_coefficients(
    a: torch.Tensor, a_layout: Layout | None, domain: Any, z: torch.Tensor, z_layout: Layout
) -> tuple[torch.Tensor, Layout | None]:
    """Attributions in a domain's reported units (``InDomain``'s default: Fourier bins, wavelet
    bands) mapped back onto the coefficients ``z`` with the bound domain's ``expand``.

    A plain tensor with fewer axes than ``z`` is taken to be in the reported units (its layout
    is that of ``domain.reduce``). Domains without ``reduce``/``expand`` are left to :func:`align`.
    """
    reduce, expand = getattr(domain, "reduce", None), getattr(domain, "expand", None)
    if a_layout is None and a.ndim < z.ndim and callable(reduce):
        a_layout = Layout(str(reduce(torch.zeros_like(z), z_layout)[1]))
    if a_layout is not None and a_layout != z_layout and callable(expand):
        a, a_layout = expand(a, a_layout)
        a_layout = Layout(str(a_layout))
    return a, a_layout


def reduce_channels(a: torch.Tensor, how: str | None) -> torch.Tensor:
    """Reduce the channel axis (axis 1) of an attribution, keeping it as size 1; None keeps it."""
    if how is None or a.shape[1] == 1:
        return a
    if how == "sum":
        return a.sum(1, keepdim=True)
    if how == "mean":
        return a.mean(1, keepdim=True)
    if how == "max":
        return a.amax(1, keepdim=True)
    if how == "absmax":
        return a.abs().amax(1, keepdim=True)
    raise ParameterError(f"channel_reduction must be None, 'sum', 'mean', 'max' or 'absmax'. Got {how!r}.")


def similarity(a: torch.Tensor, b: torch.Tensor, kind: str | Callable) -> torch.Tensor:
    """Per-row similarity of two (B, F) tensors: 'spearman', 'pearson', 'cosine' or a callable.

    A callable must return one real floating-point value per row, shape (B,) (ShapeError,
    DTypeError or ParameterError otherwise: a constant such as ``1.0`` is not a per-sample
    score); its values are returned as they are (NaN included), and an exception it raises
    becomes a ParameterError. A correlation needs at least 2 values per row (ShapeError
    otherwise). The built-in similarities are scale-invariant and computed on rows rescaled
    exactly by powers of two (:func:`rescaled`).
    """
    if callable(kind):
        out = call_user(kind, (a, b), "similarity")
        if not isinstance(out, torch.Tensor):
            raise ParameterError(
                f"The 'similarity' callable of {current_caller()} must return a tensor of shape ({a.shape[0]},), "
                f"one value per sample. Got {type(out).__name__} {out!r} instead."
            )
        if out.shape != (a.shape[0],):
            raise ShapeError(
                f"The 'similarity' callable of {current_caller()} must return a tensor of shape ({a.shape[0]},), "
                f"one value per sample. Got shape {tuple(out.shape)} instead."
            )
        if out.is_complex() or not out.is_floating_point():
            raise DTypeError(
                f"The 'similarity' callable of {current_caller()} must return real floating-point values. Got "
                f"dtype {out.dtype} instead."
            )
        return out
    if kind in ("spearman", "pearson") and a.shape[-1] < 2:
        raise ShapeError(
            f"{current_caller()}: a {kind} correlation needs at least 2 values per sample. Got "
            f"{a.shape[-1]} (the compared tensors have shape {tuple(a.shape)}); use "
            f"similarity='cosine' or more elements."
        )
    if kind == "spearman":
        return pearson(rankdata(a), rankdata(b))
    if kind == "pearson":
        return pearson(a, b)
    if kind == "cosine":
        # scale-invariant: rows rescaled exactly, so huge values do not overflow the norms and
        # subnormal ones do not underflow them
        return torch.nn.functional.cosine_similarity(rescaled(a), rescaled(b), dim=1)
    raise ParameterError(
        f"similarity must be 'spearman', 'pearson', 'cosine' or a callable (a, b) -> (B,). Got {kind!r}."
    )


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis of (B, F) tensors; NaN where either row is constant.

    The rows are first rescaled by powers of two (:func:`rescaled`, exact), so values near the
    dtype's limits neither overflow nor underflow the sums of squares.
    """
    a = rescaled(a)
    b = rescaled(b)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    num = (a * b).sum(-1)
    den = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, float("nan")))


def rankdata(a: torch.Tensor) -> torch.Tensor:
    """Ranks along the last axis with ties given their average rank (scipy's ``rankdata``)."""
    n = a.shape[-1]
    flat = a.reshape(-1, n)
    sorted_, order = flat.sort(dim=-1, stable=True)
    # average ranks over runs of equal values
    new = torch.ones_like(sorted_, dtype=torch.bool)
    new[:, 1:] = sorted_[:, 1:] != sorted_[:, :-1]
    group = new.cumsum(-1) - 1  # group id of each sorted position
    pos = torch.arange(1, n + 1, device=a.device, dtype=a.dtype).expand_as(sorted_)
    total = torch.zeros_like(sorted_).scatter_add_(1, group, pos)
    count = torch.zeros_like(sorted_).scatter_add_(1, group, torch.ones_like(sorted_))
    avg = (total / count.clamp_min(1)).gather(1, group)
    ranks = torch.empty_like(sorted_).scatter_(1, order, avg)
    return ranks.reshape(a.shape)
