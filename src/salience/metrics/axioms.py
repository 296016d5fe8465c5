"""Axiomatic and complexity checks: effective complexity, non-sensitivity and input invariance
(Quantus' ``EffectiveComplexity``, ``NonSensitivity`` and ``InputInvariance``).

Completeness is :func:`~salience.metrics.completeness_gap` (signed gap, not a boolean).
Symmetry (Sundararajan et al.: variables the model treats symmetrically get equal attributions
when their values are equal) is not a per-sample metric without the pairs of symmetric
variables, which a trained model does not declare; it is left out (Quantus has none either).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import torch
from torch import nn

from .._validation import check_batch_size, check_bool, check_float, check_int
from ..attribution import Attribution
from ..engine._forward import OutputLike, check_output
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..layout import LayoutLike
from ..masking import Filler, as_substrate
from ..targets import TargetLike
from ._checks import check_explainer, check_forward, check_rows, check_x, unpack
from ._randomisation import _with_model
from ._reexplain import explain_with
from ._setup import setup
from .base import Metric, _Perturbation

__all__ = [
    "effective_complexity",
    "non_sensitivity",
    "input_invariance",
    "shift_first_layer",
    "EffectiveComplexity",
    "NonSensitivity",
    "InputInvariance",
]


def _negligible(a: torch.Tensor, eps: float, relative: bool) -> torch.Tensor:
    """``|a| < eps`` (times the sample's largest ``|a|`` when ``relative``), shape (B, n)."""
    v = a.flatten(1).abs()
    if relative:
        peak = v.amax(1, keepdim=True)
        # an all-zero map: every element negligible (Quantus leaves it as it is, then a < eps)
        return (v < eps * peak) | (peak == 0)
    return v < eps


@caller("effective_complexity")
def effective_complexity(
    attribution: torch.Tensor | Attribution, *, eps: float = 1e-5, relative: bool = True
) -> torch.Tensor:
    """Effective complexity: the number of attribution elements whose magnitude exceeds ``eps``.

    ``#{i : |a_i| > eps * max_j |a_j|}`` (``relative=True``: Quantus' default ``abs=True,
    normalise=True`` divides by the sample's largest magnitude first), or ``#{i : |a_i| > eps}``.
    The magnitude is part of the definition. An all-zero map counts 0.

    Parameters
    ----------
    attribution : Tensor of shape (B, ...) or Attribution
    eps : float >= 0, default 1e-5
    relative : bool, default True

    Returns
    -------
    Tensor of shape (B,)
        Counts (lower is simpler), in the attribution's dtype.

    References
    ----------
    Nguyen & Martinez, "On quantitative aspects of model interpretability", arXiv:2007.07584, 2020.
    """
    eps = check_float(eps, "eps", low=0.0)
    relative = check_bool(relative, "relative")
    a, _, _ = unpack(attribution, None, None)
    v = a.flatten(1).abs()
    limit = eps * v.amax(1, keepdim=True) if relative else eps
    return (v > limit).sum(1).to(a.dtype)


@caller("non_sensitivity")
def non_sensitivity(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    eps: float = 1e-5,
    atol: float = 1e-5,
    features_in_step: int = 1,
    substrate: Any = 0.0,
    relative: bool = True,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Non-sensitivity: how many features violate "zero attribution iff the model ignores it".

    The attribution units (elements of the attribution, over the input or a domain's
    coefficients) are taken in order in groups of ``features_in_step``; each group is replaced
    by the substrate in its own copy of the input. A group is *ignored by the model* if
    ``|f(x_group removed) - f(x)| < atol``, and *unattributed* if every unit in it has
    ``|a| < eps`` (times the sample's largest ``|a|`` when ``relative``; every unit of an
    all-zero map is unattributed). The score is the
    number of groups where exactly one of the two holds (the symmetric difference of the two
    sets of Nguyen & Martinez): 0 is best.

    The copies are scored through the engine, ``batch_size`` rows per model call, built chunk by
    chunk: memory does not grow with the number of features.

    Parameters
    ----------
    eps : float >= 0, default 1e-5
        Attribution threshold.
    atol : float >= 0, default 1e-5
        Output-change threshold (Quantus uses its ``eps`` for both).
    features_in_step : int, default 1
        Units per group (Quantus' parameter); the last group may be smaller.
    substrate : float, tensor, str or Substrate, default 0.0
        What a removed unit becomes (see :func:`salience.masking.as_substrate`).
    relative : bool, default True
        ``eps`` relative to the sample's largest ``|a|`` (Quantus normalises by the maximum).
    domain : optional
        Remove a domain's coefficients (frequency bins, components) instead of input elements.
    output, forward_args, forward_kwargs, layout, batch_size
        As in :func:`~salience.metrics.deletion_curve`.

    Returns
    -------
    Tensor of shape (B,)
        Counts of violating groups, in the input's dtype.

    References
    ----------
    Nguyen & Martinez, "On quantitative aspects of model interpretability", arXiv:2007.07584, 2020.
    """
    eps = check_float(eps, "eps", low=0.0)
    atol = check_float(atol, "atol", low=0.0)
    step = check_int(features_in_step, "features_in_step", low=1)
    relative = check_bool(relative, "relative")
    a, space, lay, score = setup(
        model,
        x,
        attribution,
        target,
        domain,
        batch_size=batch_size,
        layout=layout,
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )
    unit_shape = a.shape[1:]
    n_units = a[0].numel()
    step = min(step, n_units)  # a larger step is one group of every unit
    n_groups = -(-n_units // step)
    b = space.shape[0]
    check_rows(b, n_groups, "features_in_step")
    flat_neg = _negligible(a, eps, relative)  # (B, n_units)
    pad = n_groups * step - n_units
    padded = torch.cat([flat_neg, flat_neg.new_ones((b, pad))], 1) if pad else flat_neg
    unattributed = padded.reshape(b, n_groups, step).all(2)
    filler = Filler(space, as_substrate(substrate), lay)
    units = torch.arange(n_units, device=space.device)

    def make(start: int, stop: int) -> torch.Tensor:
        rows = torch.arange(start, stop, device=space.device)
        s, g = rows // n_groups, rows % n_groups
        removed = (units[None] >= g[:, None] * step) & (units[None] < (g[:, None] + 1) * step)
        return filler(s, ~removed.reshape(-1, *unit_shape))

    changes = (score.values(make, n=n_groups) - score.input_values()[:, None]).abs()
    ignored = changes < atol
    return (ignored ^ unattributed.to(ignored.device)).sum(1).to(space.dtype)


# ---------------------------------------------------------------------------- input invariance
def _first_layer(model: nn.Module) -> tuple[str, nn.Module]:
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and not isinstance(
                module, nn.modules.conv._ConvTransposeNd
            ):
                return name, module
            raise ParameterError(
                f"{current_caller()} absorbs the input shift in the bias of the model's first layer, which must be "
                f"nn.Linear or nn.ConvNd. The first module with parameters is {name!r} ({type(module).__name__})."
            )
    raise ParameterError(f"{current_caller()}: the model has no layer with parameters to absorb the shift.")


def shift_first_layer(model: nn.Module, shift: float) -> nn.Module:
    """A copy of ``model`` whose first layer expects inputs shifted by ``shift``.

    The first module with parameters (registration order; it must be the first operation on
    the input) gets ``b' = b - shift * sum(W)`` per output unit (sum over its inputs and kernel
    taps), so ``model'(x + shift) == model(x)``. Exact for ``nn.Linear`` and for convolutions
    without zero padding (``padding=0``, or a ``padding_mode`` other than ``"zeros"``); with
    zero padding the border outputs differ, since the padded zeros are not shifted (Quantus
    uses the smallest output of the layer on a constant input as its correction, exact nowhere
    in particular then). The user's model is not modified.
    """
    if not isinstance(model, nn.Module):
        raise ParameterError(f"{current_caller()} needs an nn.Module model. Got {type(model).__name__}.")
    shift = check_float(shift, "shift")
    clone = copy.deepcopy(model)
    _, layer = _first_layer(clone)
    param = cast(torch.Tensor, layer.weight)
    weight = param.detach()
    correction = shift * weight.flatten(1).sum(1)
    bias = layer.bias
    with torch.no_grad():
        if not isinstance(bias, torch.Tensor):
            layer.bias = nn.Parameter(-correction.clone(), requires_grad=param.requires_grad)
        else:
            bias.sub_(correction.to(bias.dtype))
    return clone


@caller("input_invariance")
def input_invariance(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    shift: float = -1.0,
    atol: float = 1e-4,
    rtol: float = 1e-5,
    attribution: Any = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Input invariance: is the map unchanged by a constant input shift the model absorbs?

    Kindermans et al.: ``x' = x + shift`` and a model ``f'`` whose first layer's bias absorbs
    the shift (:func:`shift_first_layer`), so ``f'(x') = f(x)`` everywhere; an input-invariant
    explainer gives ``A(f', x') = A(f, x)``. Gradients are invariant, gradient x input is not.
    The explainer is re-bound to ``f'`` on a copy (the user's model and explainer are not
    modified) and re-run on ``x'``.

    Parameters
    ----------
    explainer : Explainer
        Its model must be an ``nn.Module`` whose first layer is Linear or ConvNd.
    x : Tensor of shape (B, *S)
    target : optional
        None uses the class the explainer records at ``x`` for the shifted run too.
    shift : float, default -1.0
        Quantus' ``input_shift``.
    atol, rtol : float
        Sample ``i`` is invariant if ``|A' - A| <= atol + rtol |A'|`` everywhere (``np.isclose``,
        Quantus' test with ``atol=1e-4``).
    attribution : Tensor or Attribution, optional
        The map at ``x``, if already computed.
    forward_args, forward_kwargs
        Extra inputs of every model call, handed to both runs of the explainer.

    Returns
    -------
    Tensor of shape (B,)
        1.0 (invariant) or 0.0, in x's dtype.

    References
    ----------
    Kindermans et al., "The (Un)reliability of Saliency Methods", in Explainable AI, Springer 2019.
    """
    check_explainer(explainer)
    model = getattr(explainer, "model", None)
    if not isinstance(model, nn.Module):
        raise ParameterError(
            f"{current_caller()} needs a salience Explainer whose model is an nn.Module. Got "
            f"{type(explainer).__name__} with model {type(model).__name__}."
        )
    atol = check_float(atol, "atol", low=0.0)
    rtol = check_float(rtol, "rtol", low=0.0)
    x = check_x(x, model)
    check_forward(forward_args, forward_kwargs, x.shape[0])
    shifted = shift_first_layer(model, shift)
    if attribution is None:
        ref, explained = explain_with(explainer, x, target, forward_args, forward_kwargs)
    else:
        ref, explained, _ = unpack(attribution, target, None)
    target = explained if target is None else target
    bound = _with_model(explainer, model, shifted)
    vals, _ = explain_with(bound, x + shift, target, forward_args, forward_kwargs)
    if vals.shape != ref.shape:
        raise ShapeError(
            f"{current_caller()}: the map of the shifted model has shape {tuple(vals.shape)}, the original "
            f"{tuple(ref.shape)}."
        )
    vals = vals.to(ref.dtype)
    close = (vals - ref).abs() <= atol + rtol * vals.abs()
    return close.flatten(1).all(1).to(x.dtype)


# ---------------------------------------------------------------------------- classes
class EffectiveComplexity(Metric):
    """:func:`effective_complexity` as a metric class (lower is better)."""

    higher_is_better: ClassVar[bool | None] = False

    def __init__(self, *, eps: float = 1e-5, relative: bool = True) -> None:
        self.eps = check_float(eps, "eps", self.name, low=0.0)
        self.relative = check_bool(relative, "relative", self.name)

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: Any = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return effective_complexity(attribution, eps=self.eps, relative=self.relative)


class NonSensitivity(_Perturbation):
    """:func:`non_sensitivity` as a metric class (lower is better: 0 violations)."""

    higher_is_better: ClassVar[bool | None] = False

    def __init__(
        self,
        *,
        eps: float = 1e-5,
        atol: float = 1e-5,
        features_in_step: int = 1,
        substrate: Any = 0.0,
        relative: bool = True,
        layout: LayoutLike | None = None,
        batch_size: int | None = None,
        output: OutputLike = None,
    ) -> None:
        self.eps = check_float(eps, "eps", self.name, low=0.0)
        self.atol = check_float(atol, "atol", self.name, low=0.0)
        self.features_in_step = check_int(features_in_step, "features_in_step", self.name, low=1)
        self.substrate = as_substrate(substrate, self.name)
        self.relative = check_bool(relative, "relative", self.name)
        self.layout = layout
        self.batch_size = check_batch_size(batch_size, self.name)
        self.output = check_output(output, self.name)

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: Any = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return non_sensitivity(
            model,
            x,
            attribution,
            target,
            eps=self.eps,
            atol=self.atol,
            features_in_step=self.features_in_step,
            substrate=self.substrate,
            relative=self.relative,
            domain=domain,
            layout=self.layout,
            batch_size=self.batch_size,
            output=self.output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )


class InputInvariance(Metric):
    """:func:`input_invariance` as a metric class (higher is better: 1 = invariant)."""

    higher_is_better: ClassVar[bool | None] = True
    requires_explainer: ClassVar[bool] = True

    def __init__(self, *, shift: float = -1.0, atol: float = 1e-4, rtol: float = 1e-5) -> None:
        self.shift = check_float(shift, "shift", self.name)
        self.atol = check_float(atol, "atol", self.name, low=0.0)
        self.rtol = check_float(rtol, "rtol", self.name, low=0.0)

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: Any = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        explainer = self._need(explainer, "the explainer to re-run (explainer=...)")
        return input_invariance(
            explainer,
            x,
            target,
            shift=self.shift,
            atol=self.atol,
            rtol=self.rtol,
            attribution=attribution,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
