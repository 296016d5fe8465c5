"""The ``Metric`` base class and the argument handling shared by the functional metrics."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch

from .._engine import ScoreFunction, make_score
from .._validation import check_batch_size, check_input
from ..attribution import Attribution
from ..domains.base import into
from ..errors import InputError, ParameterError, ShapeError
from ..layout import Layout, LayoutLike
from ..targets import TargetLike

__all__ = ["Metric"]

AttributionLike = "torch.Tensor | Attribution"


class Metric:
    """Base class of the metric classes: a bundle of configuration around a functional metric.

    A metric class only stores validated keyword-only parameters in ``__init__`` and calls its
    functional counterpart in ``__call__``. Every class has the same call signature, so
    :func:`~salience.metrics.evaluate` can run any of them:

    ``metric(model, x, attribution, target=None, *, explainer=None, mask=None, domain=None)``
    returns one value per sample, shape (B,) (NaN where the metric is undefined for a sample).

    Class attributes declare what a metric needs and how to read it (torchmetrics-style).
    """

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
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{self.name}({params})"

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: "torch.Tensor | Attribution",
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


# ---------------------------------------------------------------------------- shared helpers
def unpack(
    attribution: "torch.Tensor | Attribution", target: TargetLike, domain: Any
) -> tuple[torch.Tensor, TargetLike, Any]:
    """Values, target and domain from a tensor or an :class:`Attribution`.

    An Attribution supplies its recorded target and domain when the caller passes None.
    """
    if isinstance(attribution, Attribution):
        values = attribution.values
        if target is None:
            target = attribution.target
        if domain is None:
            domain = attribution.domain
    else:
        values = attribution
    if not isinstance(values, torch.Tensor):
        raise InputError(
            f"attribution must be a torch.Tensor or a salience.Attribution. Got "
            f"{type(values).__name__} instead."
        )
    return values.detach(), target, domain


def check_attribution(a: torch.Tensor, x: torch.Tensor, owner: str, name: str = "attribution") -> torch.Tensor:
    """``a`` must have x's ndim and batch and broadcast to x; returned as x's dtype/device."""
    if a.ndim != x.ndim or a.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{owner}: {name} must have the input's number of dims and batch size, i.e. "
            f"broadcastable to {tuple(x.shape)}. Got shape {tuple(a.shape)} instead."
        )
    try:
        torch.broadcast_shapes(a.shape, x.shape)
    except RuntimeError as err:
        raise ShapeError(
            f"{owner}: {name} of shape {tuple(a.shape)} does not broadcast to the input's shape "
            f"{tuple(x.shape)}."
        ) from err
    return a.to(device=x.device, dtype=x.dtype)


def check_mask(mask: Any, a: torch.Tensor, owner: str) -> torch.Tensor:
    """A ground-truth mask broadcastable to ``a`` (same ndim), as a bool tensor of a's shape."""
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{owner} needs a ground-truth mask tensor. Got {type(mask).__name__} instead.")
    if mask.ndim != a.ndim or mask.shape[0] != a.shape[0]:
        raise ShapeError(
            f"{owner}: the mask must have the attribution's number of dims and batch size "
            f"(broadcastable to {tuple(a.shape)}). Got shape {tuple(mask.shape)} instead."
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, a.shape)
    except RuntimeError as err:
        raise ShapeError(
            f"{owner}: a mask of shape {tuple(mask.shape)} does not broadcast with attributions "
            f"of shape {tuple(a.shape)}."
        ) from err
    return (mask.to(a.device) != 0).expand(shape)


def prepare(
    owner: str,
    model: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None,
    layout: LayoutLike | None,
) -> tuple[torch.Tensor, Layout, ScoreFunction]:
    """Check ``x`` and build the engine's score function with ``target`` bound at ``x``."""
    if not callable(model):
        raise ParameterError(
            f"The 'model' parameter of {owner} must be callable (an nn.Module or a function of a "
            f"batch). Got {type(model).__name__} instead."
        )
    x = check_input(x, owner).detach()
    lay = Layout.infer(x, layout)
    score = make_score(model, x, target, batch_size=check_batch_size(batch_size, owner), layout=lay, owner=owner)
    return x, lay, score


def align(a: torch.Tensor, a_layout: Layout | None, space: torch.Tensor, layout: Layout, owner: str) -> torch.Tensor:
    """Attributions with fewer axes than ``space`` (a domain's reduced report, e.g. Fourier bins
    without the re/im axis) get singleton axes where ``layout`` has names they lack."""
    if a.ndim == space.ndim or a_layout is None:
        return a
    names = [n for n in layout.names if n in a_layout.names]
    if names != list(a_layout.names):
        raise ShapeError(
            f"{owner}: attributions with layout {a_layout} cannot be placed in the domain's "
            f"coefficients {layout}; compute them with InDomain(..., reduce=False)."
        )
    shape = [a.shape[a_layout.names.index(n)] if n in a_layout.names else 1 for n in layout.names]
    return a.reshape(shape)


def setup(
    owner: str,
    model: Any,
    x: torch.Tensor,
    attribution: "torch.Tensor | Attribution",
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
    x, lay, score = prepare(owner, model, x, target, batch_size=batch_size, layout=layout)
    space = x
    if domain is not None:
        space, lay, score, d = into(score, x, domain, lay)
        a, a_layout = to_coefficients(a, a_layout, d, space, lay)
    a = check_attribution(align(a, a_layout, space, lay, owner), space, owner)
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


def similarity(a: torch.Tensor, b: torch.Tensor, kind: "str | Callable") -> torch.Tensor:
    """Per-row similarity of two (B, F) tensors: 'spearman', 'pearson', 'cosine' or a callable."""
    if callable(kind):
        return kind(a, b)
    if kind == "spearman":
        return pearson(rankdata(a), rankdata(b))
    if kind == "pearson":
        return pearson(a, b)
    if kind == "cosine":
        return torch.nn.functional.cosine_similarity(a, b, dim=1)
    raise ParameterError(
        f"similarity must be 'spearman', 'pearson', 'cosine' or a callable (a, b) -> (B,). Got {kind!r}."
    )


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis; NaN where either row is constant."""
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
