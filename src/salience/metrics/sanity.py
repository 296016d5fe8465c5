"""Axioms and sanity checks: completeness gap, model-parameter randomisation, random logit."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from .._validation import check_batch_size, check_bool, check_generator, check_option, make_generator
from ..attribution import Attribution
from ..errors import ParameterError, caller, current_caller
from ..explainers.integrated_gradients import BaselineLike, _check_baseline, resolve_baseline
from ..layout import LayoutLike
from ..targets import ClassTarget, Target, TargetLike, as_target
from ._checks import (
    call_user,
    check_count,
    check_explainer,
    check_finite_result,
    check_same_shape,
    check_x,
    unpack,
)
from ._setup import prepare, setup
from ._stats import similarity as _similarity
from .base import Metric
from .robustness import explain_with

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


def _check_layers(layers: Any) -> list[str] | None:
    if layers is None:
        return None
    if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(n, str) for n in layers):
        raise ParameterError(
            f"The 'layers' parameter of {current_caller()} must be None (every layer with parameters) or a "
            f"non-empty list of module names such as ['2', '0']. Got {layers!r} instead."
        )
    return list(layers)


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
    a, space, lay, score = setup(model, x, attribution, target, domain, batch_size=batch_size, layout=layout)
    baseline = _check_baseline(baseline)
    base = call_user(resolve_baseline, (baseline, space, score), "baseline")
    rows = torch.stack([space, base], 1)
    vals = score.values(rows)
    gap = a.expand(space.shape).flatten(1).sum(1) - (vals[:, 0] - vals[:, 1])
    return check_finite_result(gap, "the attribution's sum is too large for this dtype.")


# ---------------------------------------------------------------------------- randomisation
def randomisation_layers(model: nn.Module) -> list[str]:
    """Names of the modules holding parameters, from the output side to the input side.

    This is the cascading order of Adebayo et al. (the last module in registration order first).
    """
    if not isinstance(model, nn.Module):
        raise ParameterError(f"Model randomisation needs an nn.Module. Got {type(model).__name__} instead.")
    names = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Draw new parameters for ``module`` (in place, on a copy) without touching the global RNG.

    Modules with ``reset_parameters`` use their own default initialisation, run under a forked
    RNG seeded from ``generator``; other parameters get ``N(0, std(p)^2)`` draws.
    """
    params = list(module.parameters(recurse=False))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.no_grad():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                reset()
            return
        g = torch.Generator().manual_seed(seed)
        for p in params:
            std = float(p.std()) if p.numel() > 1 else 1.0
            p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) * std).to(p))


def _with_model(explainer: Any, original: nn.Module, new: nn.Module) -> Any:
    """A shallow copy of ``explainer`` (and of the explainers it wraps) bound to ``new``.

    Attributes that are modules of ``original`` (a CAM layer) are swapped for the module of the
    same name in ``new``.
    """
    names = {id(m): n for n, m in original.named_modules()}
    new_mods = dict(new.named_modules())
    out = copy.copy(explainer)
    for key, value in list(vars(out).items()):
        if value is original:
            setattr(out, key, new)
        elif isinstance(value, nn.Module) and id(value) in names:
            setattr(out, key, new_mods[names[id(value)]])
        elif key == "explainer" and hasattr(value, "model"):
            setattr(out, key, _with_model(value, original, new))
    return out


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
    x = check_x(x)
    if attribution is None:
        ref, explained = explain_with(explainer, x, target)
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
        vals, _ = explain_with(bound, x, target)
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
    x = check_x(x)
    if attribution is None:
        ref, explained = explain_with(explainer, x, target)
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
        _, _, score = prepare(model, x[:1], 0, batch_size=None, layout=getattr(explainer, "layout", None))
        n_classes = t.n_classes(score.reference_output())
    if n_classes < 2:
        raise ParameterError(f"random_logit needs at least 2 classes. Got n_classes={n_classes}.")
    gen = make_generator(generator)
    offset = torch.randint(1, n_classes, (x.shape[0],), generator=gen, device=gen.device).to(x.device)
    other = (k + offset) % n_classes
    # the other class is scored as the explained one (a probability stays a probability)
    vals, _ = explain_with(explainer, x, t.with_index(other) if isinstance(target, Target) else other)
    ref, vals = ref.flatten(1), vals.flatten(1)
    check_same_shape(ref, vals, "the maps of the other class")
    return _similarity(ref, vals.to(ref.dtype), similarity)


# ---------------------------------------------------------------------------- classes
class CompletenessGap(Metric):
    """:func:`completeness_gap` as a metric class (closer to zero is better; signed)."""

    higher_is_better: ClassVar[bool | None] = None
    requires_model: ClassVar[bool] = True

    def __init__(self, *, baseline: BaselineLike = 0.0, batch_size: int | None = None) -> None:
        self.baseline = _check_baseline(baseline)
        self.batch_size = check_batch_size(batch_size)

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
    ) -> torch.Tensor:
        return completeness_gap(
            model, x, attribution, target, baseline=self.baseline, domain=domain, batch_size=self.batch_size
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
        self, explainer: Any, x: torch.Tensor, target: TargetLike = None, *, attribution: Any = None
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
    ) -> torch.Tensor:
        explainer = self._need(explainer, "the explainer to re-run (explainer=...)")
        return self.curve(explainer, x, target, attribution=attribution)[:, -1]


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
        )
