"""Axioms and sanity checks: completeness gap, model-parameter randomisation, random logit."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from .._validation import check_batch_size, check_bool, check_generator, check_option, make_generator
from ..attribution import Attribution
from ..engine._forward import OutputLike, check_output
from ..errors import ParameterError, caller, current_caller
from ..explainers.integrated_gradients import BaselineLike, _check_baseline, resolve_baseline
from ..layout import LayoutLike
from ..targets import ClassTarget, Target, TargetLike, as_target
from ._checks import (
    call_user,
    check_count,
    check_explainer,
    check_finite_result,
    check_forward,
    check_same_shape,
    check_x,
    unpack,
)
from ._randomisation import _check_layers, _reinitialise, _with_model, randomisation_layers
from ._reexplain import explain_with
from ._setup import prepare, setup
from ._stats import similarity as _similarity
from .base import Metric

__all__ = [
    "completeness_gap",
    "randomisation_layers",
    "model_randomisation",
    "random_logit",
    "CompletenessGap",
    "ModelRandomisation",
    "RandomLogit",
]

_SIMILARITIES = ("spearman", "pearson", "cosine")


def _check_similarity(similarity: Any) -> str | Callable:
    if callable(similarity):
        return similarity
    return check_option(similarity, "similarity", options=_SIMILARITIES)


@caller("completeness_gap")
def completeness_gap(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    baseline: BaselineLike = 0.0,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Completeness gap ``sum(attribution) - (f(x) - f(baseline))`` per sample (signed).

    Zero for methods satisfying completeness (IG with an exact quadrature, DeepLIFT-Rescale on
    piecewise-linear models, Shapley values). Equal to Captum's convergence delta.

    Parameters
    ----------
    baseline : "zeros", "mean", float, Tensor or callable, default 0.0
        As in :class:`~salience.IntegratedGradients`: a tensor broadcastable to ``x`` (or to
        ``domain.forward(x)``), a callable of it, or ``"mean"`` (per-sample, per-channel mean).
    domain : optional
        The attribution lives in this domain; ``f(baseline)`` is ``f(inverse(baseline) + r)``.
    output : str, int or callable, optional
        The tensor to score in a structured model output (a tuple, a dict, a ``ModelOutput``): a
        key, an index or a callable. None: a tensor as it is, a mapping's ``"logits"``.
    forward_args, forward_kwargs : sequence, dict, optional
        Extra inputs of every model call, ``model(rows, *forward_args, **forward_kwargs)``;
        tensors whose first axis has length B are per-sample (``f(x_i)`` and ``f(baseline_i)``
        both get sample ``i``'s entries); :func:`salience.engine.shared` passes one unchanged.

    Returns
    -------
    Tensor of shape (B,)

    Raises
    ------
    ParameterError
        A baseline callable that raised (the original exception is the cause).
    NumericalError
        The attribution's sum overflowed the dtype.

    References
    ----------
    Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017.
    """
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
    baseline = _check_baseline(baseline)
    base = call_user(resolve_baseline, (baseline, space, score), "baseline")
    rows = torch.stack([space, base], 1)
    vals = score.values(rows)
    gap = a.expand(space.shape).flatten(1).sum(1) - (vals[:, 0] - vals[:, 1])
    return check_finite_result(gap, "the attribution's sum is too large for this dtype.")


# ---------------------------------------------------------------------------- randomisation
@caller("model_randomisation")
def model_randomisation(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    layers: list[str] | None = None,
    similarity: str | Callable = "spearman",
    use_abs: bool = False,
    attribution: Any = None,
    generator: torch.Generator | None = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Cascading model-parameter randomisation: similarity to the original map, layer by layer.

    The model is deep-copied (the user's model is never modified); the layers are randomised
    cumulatively from the output side (:func:`randomisation_layers`) and the explainer is re-run
    on the copy after each step. A sane explainer's maps decorrelate quickly; a data-only
    "explainer" (an edge detector) keeps similarity 1.

    Parameters
    ----------
    explainer : Explainer
        Its model must be an ``nn.Module``; wrappers are re-bound recursively.
    x : Tensor of shape (B, *S)
    target : optional
        None keeps the class the explainer records at ``x`` for every randomised model.
    layers : list of str, optional
        Module names to randomise, in this order (default: all, output side first).
    similarity : {"spearman", "pearson", "cosine"} or callable, default "spearman"
        Spearman rank correlation as Adebayo et al.; a callable maps two (B, F) tensors to (B,).
    use_abs : bool, default False
        Compare ``|maps|`` (Adebayo et al. report both).
    attribution : Tensor or Attribution, optional
        The map of the trained model, if already computed.
    generator : torch.Generator, optional
        Seeds the re-initialisation; the global RNG is left untouched.
    forward_args, forward_kwargs : sequence, dict, optional
        Extra inputs of every model call, ``model(rows, *forward_args, **forward_kwargs)``,
        handed to every run of the explainer (which scores the tensor its own ``output=``
        selects); tensors whose first axis has length B are per-sample.

    Returns
    -------
    Tensor of shape (B, L)
        Similarity after randomising layers ``0..l`` of ``layers``.

    References
    ----------
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    check_explainer(explainer)
    model = getattr(explainer, "model", None)
    if not isinstance(model, nn.Module):
        raise ParameterError(
            "model_randomisation needs a salience Explainer whose model is an nn.Module. Got "
            f"{type(explainer).__name__} with model {type(model).__name__}."
        )
    similarity = _check_similarity(similarity)
    use_abs = check_bool(use_abs, "use_abs")
    layers = _check_layers(layers)
    names = randomisation_layers(model) if layers is None else layers
    if not names:
        raise ParameterError(
            f"{current_caller()}: the model {type(model).__name__} has no module with parameters to randomise."
        )
    mods = dict(model.named_modules())
    unknown = [n for n in names if n not in mods]
    if unknown:
        raise ParameterError(f"model_randomisation: layers {unknown} are not modules of the model.")
    empty = [n for n in names if not any(True for _ in mods[n].parameters(recurse=False))]
    if empty:
        raise ParameterError(
            f"The 'layers' parameter of {current_caller()} must name modules that hold parameters (see "
            f"randomisation_layers(model)); {empty} hold none, so randomising them would change nothing."
        )
    gen = make_generator(generator)
    x = check_x(x, model)
    check_forward(forward_args, forward_kwargs, x.shape[0])  # errors name the metric
    if attribution is None:
        ref, explained = explain_with(explainer, x, target, forward_args, forward_kwargs)
    else:
        ref, explained, _ = unpack(attribution, target, None)
    target = explained if target is None else target
    ref = ref.flatten(1)
    if use_abs:
        ref = ref.abs()
    clone = copy.deepcopy(model)
    clone_mods = dict(clone.named_modules())
    bound = _with_model(explainer, model, clone)
    out = []
    for name in names:
        _reinitialise(clone_mods[name], gen)
        vals, _ = explain_with(bound, x, target, forward_args, forward_kwargs)
        vals = vals.flatten(1)
        check_same_shape(ref, vals, "the maps of the randomised model")
        if use_abs:
            vals = vals.abs()
        out.append(_similarity(ref, vals.to(ref.dtype), similarity))
    return torch.stack(out, 1)


@caller("random_logit")
def random_logit(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_classes: int | None = None,
    similarity: str | Callable = "spearman",
    attribution: Any = None,
    generator: torch.Generator | None = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Random-logit check: similarity between the map of the class and that of a random other class.

    A class-sensitive explainer gives low similarity. The other class is drawn uniformly among
    the ``n_classes - 1`` others with ``generator``.

    Parameters
    ----------
    explainer : Explainer (or callable ``(x, target)``)
    target : int, Tensor (B,), Class, Probability, LogProbability or None
        The explained class; None: the predicted class recorded by the explainer. The random
        other class is explained with the same kind of target (``Probability(k)`` ->
        ``Probability(other)``).
    n_classes : int, optional
        Inferred from the model output at ``x`` when the explainer is a salience Explainer.
    similarity : {"spearman", "pearson", "cosine"} or callable, default "spearman"
        Quantus' RandomLogit uses SSIM on images.
    forward_args, forward_kwargs : sequence, dict, optional
        Extra inputs of every model call, ``model(rows, *forward_args, **forward_kwargs)``,
        handed to every run of the explainer (which scores the tensor its own ``output=``
        selects); tensors whose first axis has length B are per-sample.

    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Sixt et al., "When Explanations Lie: Why Many Modified BP Attributions Fail", ICML 2020.
    """
    check_explainer(explainer)
    similarity = _check_similarity(similarity)
    if n_classes is not None:
        n_classes = check_count(n_classes, "n_classes", low=2)
    x = check_x(x, getattr(explainer, "model", None))
    extras = check_forward(forward_args, forward_kwargs, x.shape[0])  # errors name the metric
    if attribution is None:
        ref, explained = explain_with(explainer, x, target, forward_args, forward_kwargs)
    else:
        ref, explained, _ = unpack(attribution, target, None)
    t = as_target(explained if target is None else target)
    if not isinstance(t, ClassTarget):
        raise ParameterError(
            "random_logit needs a class target: an int, one int per sample, Class, Probability or "
            f"LogProbability (the other class is scored the same way). Got {t!r} instead."
        )
    try:
        k = torch.as_tensor(t.explained())
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise ParameterError(
            f"random_logit needs class indices as target (int64, an int or one per sample, {x.shape[0]}). "
            f"Got {t!r} instead ({err})."
        ) from err
    if k.is_floating_point() or k.ndim > 1 or (k.ndim == 1 and k.shape[0] != x.shape[0]):
        raise ParameterError(
            f"random_logit needs class indices as target (an int or one per sample, {x.shape[0]}). "
            f"Got {t!r} instead."
        )
    k = k.long().to(x.device).expand(x.shape[0])
    if n_classes is None:
        model = getattr(explainer, "model", None)
        if model is None:
            raise ParameterError("random_logit: pass n_classes=... for a callable explainer.")
        args, kwargs = extras.rows(torch.zeros(1, dtype=torch.long))  # the first sample's inputs
        _, _, score = prepare(
            model,
            x[:1],
            0,
            batch_size=None,
            layout=getattr(explainer, "layout", None),
            output=getattr(explainer, "output", None),
            forward_args=args,
            forward_kwargs=kwargs,
        )
        n_classes = t.n_classes(score.reference_output())
    if n_classes < 2:
        raise ParameterError(f"random_logit needs at least 2 classes. Got n_classes={n_classes}.")
    gen = make_generator(generator)
    offset = torch.randint(1, n_classes, (x.shape[0],), generator=gen, device=gen.device).to(x.device)
    other = (k + offset) % n_classes
    # the other class is scored as the explained one (a probability stays a probability)
    other_target = t.with_index(other) if isinstance(target, Target) else other
    vals, _ = explain_with(explainer, x, other_target, forward_args, forward_kwargs)
    ref, vals = ref.flatten(1), vals.flatten(1)
    check_same_shape(ref, vals, "the maps of the other class")
    return _similarity(ref, vals.to(ref.dtype), similarity)


# ---------------------------------------------------------------------------- classes
class CompletenessGap(Metric):
    """:func:`completeness_gap` as a metric class (closer to zero is better; signed); ``output=``
    selects the scored tensor of a structured model output."""

    higher_is_better: ClassVar[bool | None] = None
    requires_model: ClassVar[bool] = True

    def __init__(
        self, *, baseline: BaselineLike = 0.0, batch_size: int | None = None, output: OutputLike = None
    ) -> None:
        self.baseline = _check_baseline(baseline)
        self.batch_size = check_batch_size(batch_size)
        self.output = check_output(output, type(self).__name__)

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
        return completeness_gap(
            model,
            x,
            attribution,
            target,
            baseline=self.baseline,
            domain=domain,
            batch_size=self.batch_size,
            output=self.output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )


class ModelRandomisation(Metric):
    """Similarity after randomising the whole cascade (lower is better); see :func:`model_randomisation`."""

    higher_is_better: ClassVar[bool | None] = False
    requires_explainer: ClassVar[bool] = True
    is_stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        layers: list[str] | None = None,
        similarity: str | Callable = "spearman",
        use_abs: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.layers = _check_layers(layers)
        self.similarity = _check_similarity(similarity)
        self.use_abs = check_bool(use_abs, "use_abs")
        self.generator = check_generator(generator)

    def curve(
        self,
        explainer: Any,
        x: torch.Tensor,
        target: TargetLike = None,
        *,
        attribution: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return model_randomisation(
            explainer,
            x,
            target,
            layers=self.layers,
            similarity=self.similarity,
            use_abs=self.use_abs,
            attribution=attribution,
            generator=self.generator,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )

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
        curve = self.curve(
            explainer,
            x,
            target,
            attribution=attribution,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
        return curve[:, -1]


class RandomLogit(Metric):
    """:func:`random_logit` as a metric class (lower is better)."""

    higher_is_better: ClassVar[bool | None] = False
    requires_explainer: ClassVar[bool] = True
    is_stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_classes: int | None = None,
        similarity: str | Callable = "spearman",
        generator: torch.Generator | None = None,
    ) -> None:
        self.n_classes = None if n_classes is None else check_count(n_classes, "n_classes", low=2)
        self.similarity = _check_similarity(similarity)
        self.generator = check_generator(generator)

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
        return random_logit(
            explainer,
            x,
            target,
            n_classes=self.n_classes,
            similarity=self.similarity,
            attribution=attribution,
            generator=self.generator,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
