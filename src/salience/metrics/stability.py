"""Stability metrics: how much an explanation changes when the input barely does.

Local Lipschitz estimate (Alvarez-Melis and Jaakkola 2018), Continuity (Montavon et al. 2018),
Consistency (Dasgupta et al. 2022) and Relative Input/Output/Representation Stability (Agarwal
et al. 2022). All but Consistency re-run the explainer on perturbed copies of each sample with
the target bound at ``x`` (:func:`~salience.metrics._reexplain.reexplainer`, as Max- and
Avg-Sensitivity), chunk by chunk: memory is bounded by ``batch_size`` rows, not by the number of
perturbations. Noise is drawn from a ``generator`` (never the global RNG), row after row, so
the values do not depend on ``batch_size``; with ``domain=`` it is added to the domain's
coefficients (frequency bins, components) and the explainer sees the inverse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from .._validation import check_batch_size, check_bool, check_generator, check_int
from ..errors import ParameterError, caller
from ..targets import TargetLike
from . import _stability as core
from ._checks import check_count
from ._consistency import Consistency, consistency
from ._continuity import continuity, continuity_shifts
from .base import Metric

__all__ = [
    "local_lipschitz_estimate",
    "continuity",
    "consistency",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "LocalLipschitzEstimate",
    "Continuity",
    "Consistency",
    "RelativeInputStability",
    "RelativeOutputStability",
    "RelativeRepresentationStability",
    "continuity_shifts",
]


@caller("local_lipschitz_estimate")
def local_lipschitz_estimate(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_perturbations: int = 200,
    noise: str = "gaussian",
    scale: float = 0.1,
    perturbation: torch.Tensor | None = None,
    keep_prediction: bool = False,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    domain: Any = None,
    layout: str | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Local Lipschitz estimate: ``max_j ||e(x) - e(x_j)||_2 / ||x - x_j||_2`` over noisy copies.

    A copy equal to ``x`` (distance 0) is skipped.

    Parameters
    ----------
    explainer : Explainer or callable ``(x, target) -> Tensor | Attribution``
        Re-run on every perturbed copy, with ``target`` bound at ``x``.
    x : Tensor of shape (B, *S)
    target : int, Tensor (B,), Target or None
        None: the class the explainer records at ``x`` is kept for every copy.
    n_perturbations : int
    noise : {"gaussian", "uniform"}
        ``x' = x + scale * N(0, 1)`` or ``x + U(-scale, scale)`` (element-wise, i.i.d.).
    scale : float > 0
    perturbation : Tensor (B, n_perturbations, *S), optional
        Additive noise given explicitly (in the domain's coefficients with ``domain=``).
    keep_prediction : bool
        Drop the copies whose predicted class (argmax of the model's output) differs from the
        one at ``x``; a sample with none left is NaN.
    attribution : Tensor or Attribution, optional
        The explanation at ``x`` if already computed.
    model : callable, optional
        For the metric's own model calls (outputs, layer, predicted class); default: the
        Explainer's model.
    output : str, int or callable, optional
        The tensor of a structured output those calls read; default: the Explainer's ``output``.
    domain : Domain, optional
        Perturb the domain's coefficients ``z = forward(x)`` (the explainer sees
        ``inverse(z')``, plus the residual of a lossy domain); input distances are measured on
        the coefficients.
    layout : str, optional
        Axis names of ``x`` (for ``domain``).
    batch_size : int, optional
        Rows per explainer and model call (default: the Explainer's ``batch_size``).
    generator : torch.Generator, optional
        Source of the noise; copy ``j`` of sample ``i`` is row ``i * n + j`` and rows draw in order.
    progress : bool, default True
    forward_args, forward_kwargs : optional
        Extra model inputs; per-sample tensors follow each copy's sample.

    Returns
    -------
    Tensor of shape (B,)
        The maximum over the kept copies (lower is more stable); NaN where none is kept.

    Raises
    ------
    ParameterError
        An option out of range (the message names it), a model or a class as ``explainer``, no
        model where one is needed.
    ShapeError
        Explanations of the copies whose shape differs from the one at ``x``; a perturbation
        tensor of the wrong shape.

    References
    ----------
    Alvarez-Melis and Jaakkola, "On the Robustness of Interpretability Methods", 2018.
    """
    kw = dict(locals())

    def ratio(r: core.Rows) -> torch.Tensor:
        den = core.distance(r.z, r.zp).to(r.ref.device, r.ref.dtype)
        num = core.distance(r.ref, r.expl)
        return torch.where(den > 0, num / torch.where(den > 0, den, 1), torch.nan)

    return core.noisy(explainer, x, target, ratio, kw)


@caller("relative_input_stability")
def relative_input_stability(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_perturbations: int = 200,
    noise: str = "gaussian",
    scale: float = 0.1,
    perturbation: torch.Tensor | None = None,
    keep_prediction: bool = True,
    eps_min: float = 1e-6,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    domain: Any = None,
    layout: str | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Relative Input Stability: ``max ||(e_x - e_x')/e_x|| / max(||(x - x')/x||, eps_min)``.

    Relative changes are element-wise (an element that is 0 at ``x`` is divided by ``eps_min``),
    norms are L2 over the flattened maps.

    Parameters
    ----------
    eps_min : float
        The smallest denominator (and the divisor of elements that are 0 at ``x``).
    explainer, x, target, n_perturbations, noise, scale, perturbation, keep_prediction, attribution, model, output, domain, layout, batch_size, generator, progress, forward_args, forward_kwargs
        As in :func:`local_lipschitz_estimate` (``keep_prediction`` defaults to True here, as
        Agarwal et al. define the metric). Returns and raises likewise.

    References
    ----------
    Agarwal et al., "Rethinking Stability for Attribution-based Explanations", 2022.
    """
    kw = dict(locals())
    eps = core.check_eps(eps_min)

    def ratio(r: core.Rows) -> torch.Tensor:
        den = core.relative(r.z, r.zp, eps).clamp_min(eps).to(r.ref.device, r.ref.dtype)
        return core.relative(r.ref, r.expl, eps) / den

    return core.noisy(explainer, x, target, ratio, kw)


@caller("relative_output_stability")
def relative_output_stability(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_perturbations: int = 200,
    noise: str = "gaussian",
    scale: float = 0.1,
    perturbation: torch.Tensor | None = None,
    keep_prediction: bool = True,
    eps_min: float = 1e-6,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    domain: Any = None,
    layout: str | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Relative Output Stability: ``max ||(e_x - e_x')/e_x|| / max(||h(x) - h(x')||, eps_min)``,
    ``h`` the model's output (the logits; pass ``output=`` for another tensor).

    Parameters
    ----------
    eps_min : float
        The smallest denominator (and the divisor of elements that are 0 at ``x``).
    explainer, x, target, n_perturbations, noise, scale, perturbation, keep_prediction, attribution, model, output, domain, layout, batch_size, generator, progress, forward_args, forward_kwargs
        As in :func:`local_lipschitz_estimate` (``keep_prediction`` defaults to True here, as
        Agarwal et al. define the metric). Returns and raises likewise.

    References
    ----------
    Agarwal et al., "Rethinking Stability for Attribution-based Explanations", 2022.
    """
    kw = dict(locals())
    eps = core.check_eps(eps_min)

    def ratio(r: core.Rows) -> torch.Tensor:
        den = core.distance(core.present(r.out), core.present(r.outp))
        return core.relative(r.ref, r.expl, eps) / den.clamp_min(eps).to(r.ref.device, r.ref.dtype)

    return core.noisy(explainer, x, target, ratio, kw, outputs=True)


@caller("relative_representation_stability")
def relative_representation_stability(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    layer: str | nn.Module,
    n_perturbations: int = 200,
    noise: str = "gaussian",
    scale: float = 0.1,
    perturbation: torch.Tensor | None = None,
    keep_prediction: bool = True,
    eps_min: float = 1e-6,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    domain: Any = None,
    layout: str | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Relative Representation Stability: ``max ||(e_x - e_x')/e_x|| / max(||(L_x - L_x')/L_x||,
    eps_min)``, ``L`` the activations of ``layer`` (a dotted name or a module of the model),
    captured by the engine for the explained input and every copy.

    Parameters
    ----------
    eps_min : float
        The smallest denominator (and the divisor of elements that are 0 at ``x``).
    layer : str or nn.Module
        The layer whose activations are compared.
    explainer, x, target, n_perturbations, noise, scale, perturbation, keep_prediction, attribution, model, output, domain, layout, batch_size, generator, progress, forward_args, forward_kwargs
        As in :func:`local_lipschitz_estimate` (``keep_prediction`` defaults to True here, as
        Agarwal et al. define the metric). Returns and raises likewise.

    References
    ----------
    Agarwal et al., "Rethinking Stability for Attribution-based Explanations", 2022.
    """
    kw = dict(locals())
    eps = core.check_eps(eps_min)
    layer = core.check_layer(layer)

    def ratio(r: core.Rows) -> torch.Tensor:
        den = core.relative(core.present(r.act), core.present(r.actp), eps)
        return core.relative(r.ref, r.expl, eps) / den.clamp_min(eps).to(r.ref.device, r.ref.dtype)

    return core.noisy(explainer, x, target, ratio, kw, layer=layer)


# ---------------------------------------------------------------------------------- classes
class _Stability(Metric):
    """A metric that re-runs the explainer on noisy copies; constructor = the function's options."""

    higher_is_better: ClassVar[bool | None] = False
    requires_explainer: ClassVar[bool] = True
    is_stochastic: ClassVar[bool] = True
    _fn: ClassVar[Callable[..., torch.Tensor]]
    _defaults: ClassVar[tuple[bool, bool]] = (False, False)  # (keep_prediction default, has eps_min)

    def _init(
        self,
        n_perturbations: Any,
        noise: Any,
        scale: Any,
        keep_prediction: Any,
        batch_size: Any,
        generator: Any,
        progress: Any,
        output: Any,
    ) -> None:
        n, noise, scale, keep, progress, batch_size = core.noise_args(
            n_perturbations, noise, scale, keep_prediction, progress, batch_size
        )
        self.n_perturbations, self.noise, self.scale, self.keep_prediction = n, noise, scale, keep
        self.batch_size, self.generator, self.progress = batch_size, check_generator(generator), progress
        self.output = output

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: TargetLike = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        explainer = self._need(explainer, "the explainer to re-run (explainer=...)")
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        extra = {} if type(self) is Continuity else {"domain": domain}
        if type(self) is Continuity and domain is not None:
            raise ParameterError(
                "Continuity translates the input itself; it takes no domain (got domain=...)."
            )
        return type(self)._fn(
            explainer,
            x,
            target,
            attribution=attribution,
            model=model,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
            **extra,
            **params,
        )


class LocalLipschitzEstimate(_Stability):
    """:func:`local_lipschitz_estimate` as a metric class (lower is better)."""

    _fn = staticmethod(local_lipschitz_estimate)

    def __init__(
        self,
        *,
        n_perturbations: int = 200,
        noise: str = "gaussian",
        scale: float = 0.1,
        keep_prediction: bool = False,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        output: Any = None,
    ) -> None:
        self._init(n_perturbations, noise, scale, keep_prediction, batch_size, generator, progress, output)


class RelativeInputStability(_Stability):
    """:func:`relative_input_stability` as a metric class (lower is better)."""

    _fn = staticmethod(relative_input_stability)

    def __init__(
        self,
        *,
        n_perturbations: int = 200,
        noise: str = "gaussian",
        scale: float = 0.1,
        keep_prediction: bool = True,
        eps_min: float = 1e-6,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        output: Any = None,
    ) -> None:
        self._init(n_perturbations, noise, scale, keep_prediction, batch_size, generator, progress, output)
        self.eps_min = core.check_eps(eps_min)


class RelativeOutputStability(RelativeInputStability):
    """:func:`relative_output_stability` as a metric class (lower is better)."""

    _fn = staticmethod(relative_output_stability)


class RelativeRepresentationStability(_Stability):
    """:func:`relative_representation_stability` as a metric class (lower is better)."""

    _fn = staticmethod(relative_representation_stability)

    def __init__(
        self,
        *,
        layer: str | nn.Module,
        n_perturbations: int = 200,
        noise: str = "gaussian",
        scale: float = 0.1,
        keep_prediction: bool = True,
        eps_min: float = 1e-6,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        output: Any = None,
    ) -> None:
        self.layer = core.check_layer(layer)
        self._init(n_perturbations, noise, scale, keep_prediction, batch_size, generator, progress, output)
        self.eps_min = core.check_eps(eps_min)


class Continuity(_Stability):
    """:func:`continuity` as a metric class (lower is better; deterministic)."""

    is_stochastic: ClassVar[bool] = False
    _fn = staticmethod(continuity)

    def __init__(
        self,
        *,
        n_steps: int = 28,
        axis: int = -1,
        fill: float | str = "min",
        keep_prediction: bool = False,
        batch_size: int | None = None,
        progress: bool = True,
        output: Any = None,
    ) -> None:
        self.n_steps = check_count(n_steps, "n_steps")
        self.axis = check_int(axis, "axis")
        if not (fill == "min" or (isinstance(fill, (int, float)) and not isinstance(fill, bool))):
            raise ParameterError(
                f"The 'fill' parameter of Continuity must be a float or 'min'. Got {fill!r}."
            )
        self.fill = fill
        self.keep_prediction = check_bool(keep_prediction, "keep_prediction")
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")
        self.output = output
