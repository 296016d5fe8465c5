"""The preamble of the model-based metrics: the checked input, the engine's score function with
the target bound at ``x``, and attributions placed in the input space or a domain's coefficients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._validation import check_batch_size
from ..attribution import Attribution
from ..domains.base import into
from ..engine import Explainer, ScoreFunction, make_score
from ..engine._forward import OutputLike, check_output
from ..errors import ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike
from ..targets import TargetLike
from ._checks import check_attribution, check_x, unpack


def prepare(
    model: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None,
    layout: LayoutLike | None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, Layout, ScoreFunction]:
    """Check ``x`` and build the engine's score function with ``target`` bound at ``x``.

    ``output`` selects the tensor scored in a structured model output; ``forward_args`` and
    ``forward_kwargs`` are extra inputs of every model call, per-sample tensors cut to the rows
    of each chunk (see :func:`~salience.engine.make_score`). Their errors name the metric.
    """
    if not callable(model) or isinstance(model, Explainer):
        got = f"the explainer {model!r}" if isinstance(model, Explainer) else type(model).__name__
        raise ParameterError(
            f"The 'model' parameter of {current_caller()} must be the model, callable (an nn.Module or a "
            f"function of a batch). Got {got} instead."
        )
    output = check_output(output, current_caller())
    x = check_x(x, model)
    lay = Layout.infer(x, layout)
    score = make_score(
        model,
        x,
        target,
        batch_size=check_batch_size(batch_size),
        layout=lay,
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )
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
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Layout, ScoreFunction]:
    """Shared preamble of the model-based metrics: ``(attribution, space, layout, score)``.

    ``space`` is ``x``, or ``domain.forward(x)`` with the score composed through the inverse;
    ``output``, ``forward_args`` and ``forward_kwargs`` as in :func:`prepare` (a domain's rows
    keep their sample, so per-sample inputs follow them).
    """
    a, target, domain = unpack(attribution, target, domain)
    a_layout = attribution.layout if isinstance(attribution, Attribution) else None
    x, lay, score = prepare(
        model,
        x,
        target,
        batch_size=batch_size,
        layout=layout,
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )
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
