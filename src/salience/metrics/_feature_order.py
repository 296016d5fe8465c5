"""Sensitivity-n, Monotonicity, monotonicity correlation and Sufficiency: the functions of
:mod:`~salience.metrics.perturbation_curves` that perturb attribution units in an order or at
random rather than regions."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .._progress import progress_bar
from .._validation import check_float, check_int, check_option, make_generator
from ..attribution import Attribution
from ..engine._forward import OutputLike
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..layout import LayoutLike
from ..masking import Filler
from ..targets import TargetLike
from . import _regions as R
from ._checks import call_user, check_count, check_rows, unpack
from ._setup import prepare
from ._stats import similarity as _similarity


@caller("sensitivity_n")
def sensitivity_n(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    n: int,
    n_runs: int = 100,
    substrate: Any = 0.0,
    similarity: str | Callable = "pearson",
    generator: torch.Generator | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Sensitivity-n: the correlation, over ``n_runs`` random subsets of ``n`` attribution units,
    between the subset's attribution sum and the score drop ``f(x) - f(x_subset removed)``.

    Ancona et al.'s definition, per sample (an attribution satisfies sensitivity-n when the
    correlation is 1; gradient x input does for every n on a linear model with a zero
    substrate). Quantus 0.6 computes something else (see docs/metrics.md).

    Parameters
    ----------
    n : int
        Units removed per run, ``1 <= n < number of units``.
    n_runs : int, default 100
    substrate : default 0.0
    similarity : {"pearson", "spearman"} or callable, default "pearson"
    generator : torch.Generator, optional
        Run ``j`` of sample ``i`` removes ``torch.rand(n_units, generator=g).argsort()[:n]``,
        drawn row after row (the draws of :func:`faithfulness_correlation` with
        ``subset_size=n``), so results do not depend on ``batch_size``.
    domain, layout, batch_size, progress, output, forward_args, forward_kwargs : optional
        As in :func:`~salience.metrics.deletion_curve`: ``domain`` perturbs a domain's
        coefficients (frequency bins, components) instead of samples, ``batch_size`` bounds the
        rows per model call (not the number of perturbations), ``output``/``forward_args``/
        ``forward_kwargs`` select a structured output and pass extra model inputs.
    Returns
    -------
    Tensor of shape (B,)
        NaN where the sums or the drops do not vary.

    References
    ----------
    Ancona et al., "Towards better understanding of gradient-based attribution methods for deep
    neural networks", ICLR 2018.
    """
    n_runs = check_count(n_runs, "n_runs", low=2)
    if not callable(similarity):
        similarity = check_option(similarity, "similarity", options=("pearson", "spearman"))
    kw = dict(batch_size=batch_size, layout=layout, output=output, forward_args=forward_args,
              forward_kwargs=forward_kwargs, progress=progress)  # fmt: skip
    a, space, lay, score, progress = R.setup_metric(model, x, attribution, target, domain, kw)
    flat = a.flatten(1)
    n_units = flat.shape[1]
    n = check_int(n, "n", low=1)
    if n >= n_units:
        raise ParameterError(
            f"The 'n' parameter of {current_caller()} must be smaller than the number of attribution units, "
            f"{n_units} here (removing them all gives the same sum on every run). Got {n}."
        )
    b = space.shape[0]
    check_rows(b, n_runs, "n_runs")
    gen = make_generator(generator)
    sums = torch.empty(b * n_runs, dtype=flat.dtype, device=space.device)
    filler = Filler(space, substrate, lay)
    bar = progress_bar(b * n_runs, current_caller(), progress)

    def make(start: int, stop: int) -> torch.Tensor:
        bar.update(stop - start)
        s = torch.arange(start, stop, device=space.device) // n_runs
        draws = torch.rand((stop - start, n_units), generator=gen, device=gen.device)
        idx = torch.topk(draws, n, dim=-1, largest=False, sorted=False).indices  # the set argsort()[:n] picks
        idx = idx.to(space.device)
        sums[start:stop] = flat[s].gather(1, idx).sum(-1)
        removed = torch.zeros((stop - start, n_units), dtype=torch.bool, device=space.device)
        removed.scatter_(1, idx, True)
        return filler(s, ~removed.reshape(-1, *a.shape[1:]))

    with bar:
        drops = score.input_values()[:, None] - score.values(make, n=n_runs)
    return _similarity(sums.reshape(b, n_runs), drops, similarity)


def _ascending_ranks(a: torch.Tensor) -> torch.Tensor:
    """Rank of each attribution unit in ascending order (0 = least relevant), ties by position."""
    flat = a.flatten(1)
    order = torch.sort(flat, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=a.device).expand_as(order))
    return ranks.reshape(a.shape)


@caller("monotonicity")
def monotonicity(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    features_in_step: int = 1,
    substrate: Any = 0.0,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Monotonicity (Arya et al.): starting from the substrate, the input's units are put back
    ``features_in_step`` at a time in increasing order of attribution; 1.0 if the score never
    decreases from one state to the next (the ``ceil(n / features_in_step)`` states with at
    least one unit back, as Quantus), else 0.0 (higher is better).

    Parameters
    ----------
    features_in_step : int, default 1
    substrate : default 0.0
        The starting point (Quantus' default "black" is each sample's minimum).
    domain, layout, batch_size, progress, output, forward_args, forward_kwargs : optional
        As in :func:`~salience.metrics.deletion_curve`: ``domain`` perturbs a domain's
        coefficients (frequency bins, components) instead of samples, ``batch_size`` bounds the
        rows per model call (not the number of perturbations), ``output``/``forward_args``/
        ``forward_kwargs`` select a structured output and pass extra model inputs.
    Returns
    -------
    Tensor of shape (B,)
        1.0 or 0.0.

    References
    ----------
    Arya et al., "One explanation does not fit all: a toolkit and taxonomy of AI explainability
    techniques", 2019.
    """
    step = check_int(features_in_step, "features_in_step", low=1)
    kw = dict(batch_size=batch_size, layout=layout, output=output, forward_args=forward_args,
              forward_kwargs=forward_kwargs, progress=progress)  # fmt: skip
    a, space, lay, score, progress = R.setup_metric(model, x, attribution, target, domain, kw)
    ranks = _ascending_ranks(a)
    step = min(step, ranks[0].numel())  # a step of every unit or more: one state
    k = math.ceil(ranks[0].numel() / step)
    check_rows(space.shape[0], k, "features_in_step")
    filler = Filler(space, substrate, lay)
    bar = progress_bar(space.shape[0] * k, current_caller(), progress)

    def make(start: int, stop: int) -> torch.Tensor:
        bar.update(stop - start)
        r = torch.arange(start, stop, device=space.device)
        s, j = r // k, r % k + 1
        return filler(s, ranks[s] < (j * step).reshape(-1, *([1] * (ranks.ndim - 1))))

    with bar:
        curve = score.values(make, n=k)
    return (curve.diff(dim=1) >= 0).all(1).to(space.dtype)


@caller("monotonicity_correlation")
def monotonicity_correlation(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    n_samples: int = 100,
    features_in_step: int = 1,
    substrate: Any = "uniform",
    low: float = 0.0,
    high: float = 1.0,
    eps: float = 1e-5,
    similarity: str | Callable = "spearman",
    generator: torch.Generator | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Monotonicity correlation (Nguyen and Martinez): the correlation, over groups of
    ``features_in_step`` units taken in increasing order of attribution, between a group's
    attribution sum and the mean squared score change when only that group is perturbed
    (``n_samples`` draws), divided by ``f(x)^2`` where ``|f(x)| >= eps`` (higher is better).

    Parameters
    ----------
    n_samples : int, default 100
    features_in_step : int, default 1
    substrate : "uniform" or any substrate, default "uniform"
        ``"uniform"``: each perturbed row draws its values from ``U(low, high)`` (Quantus'
        default); any other substrate of :mod:`salience.masking` replaces the group
        deterministically (one draw is then enough: ``n_samples=1``).
    low, high : float, default 0.0 and 1.0
    eps : float, default 1e-5
    similarity : {"spearman", "pearson"} or callable, default "spearman"
    generator : torch.Generator, optional
        The uniform draws: row ``j`` of sample ``i`` (group ``j // n_samples``) draws
        ``torch.rand(S, generator=g)``, row after row, independently of ``batch_size`` on a
        CPU generator.
    domain, layout, batch_size, progress, output, forward_args, forward_kwargs : optional
        As in :func:`~salience.metrics.deletion_curve`: ``domain`` perturbs a domain's
        coefficients (frequency bins, components) instead of samples, ``batch_size`` bounds the
        rows per model call (not the number of perturbations), ``output``/``forward_args``/
        ``forward_kwargs`` select a structured output and pass extra model inputs.
    Returns
    -------
    Tensor of shape (B,)
        NaN where the sums or the changes do not vary.

    References
    ----------
    Nguyen and Martinez, "On quantitative aspects of model interpretability", 2020.
    """
    n_samples = check_count(n_samples, "n_samples")
    step = check_int(features_in_step, "features_in_step", low=1)
    eps = check_float(eps, "eps", low=0.0)
    low, high = check_float(low, "low"), check_float(high, "high")
    if not callable(similarity):
        similarity = check_option(similarity, "similarity", options=("pearson", "spearman"))
    uniform = isinstance(substrate, str) and substrate == "uniform"
    kw = dict(batch_size=batch_size, layout=layout, output=output, forward_args=forward_args,
              forward_kwargs=forward_kwargs, progress=progress)  # fmt: skip
    a, space, lay, score, progress = R.setup_metric(model, x, attribution, target, domain, kw)
    b = space.shape[0]
    group = _ascending_ranks(a) // min(step, a[0].numel())
    k = int(group.max()) + 1
    check_rows(b, k * n_samples, "n_samples")
    filler = None if uniform else Filler(space, substrate, lay)
    gen = make_generator(generator)
    bar = progress_bar(b * k * n_samples, current_caller(), progress)
    per = k * n_samples

    def make(start: int, stop: int) -> torch.Tensor:
        bar.update(stop - start)
        r = torch.arange(start, stop, device=space.device)
        s, g = r // per, (r % per) // n_samples
        keep = group[s] != g.reshape(-1, *([1] * (group.ndim - 1)))
        if filler is not None:
            return filler(s, keep)
        noise = torch.rand(
            (stop - start, *space.shape[1:]), generator=gen, device=gen.device, dtype=space.dtype
        )
        noise = low + (high - low) * noise.to(space.device)
        return torch.where(keep, space[s], noise)

    with bar:
        values = score.values(make, n=per).reshape(b, k, n_samples)
    f0 = score.input_values()
    inv = torch.where(
        f0.abs() >= eps, 1 / torch.where(f0 != 0, f0, torch.ones_like(f0)).square(), torch.ones_like(f0)
    )
    change = (values - f0[:, None, None]).square().mean(2) * inv[:, None]
    flat_group = group.expand(a.shape).reshape(b, -1)
    sums = torch.zeros((b, k), dtype=a.dtype, device=a.device).scatter_add_(1, flat_group, a.reshape(b, -1))
    return _similarity(sums, change, similarity)


def _check_distance(distance: Any) -> str | Callable:
    if callable(distance):
        return distance
    return check_option(distance, "distance", options=("seuclidean", "euclidean"))


@caller("sufficiency")
def sufficiency(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    threshold: float = 0.6,
    distance: str | Callable = "seuclidean",
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Sufficiency (Dasgupta et al., as Quantus): among the other samples of the batch whose
    attributions lie within ``threshold`` of sample ``i``'s (distances divided by the batch's
    largest), the fraction predicted in ``i``'s class (higher is better).

    The batch is the data set: values depend on which samples are evaluated together (not on
    ``batch_size``). The prediction is the argmax of the model's output at ``x``; ``target`` is
    not used. The input is not perturbed, so there is no ``domain``.

    Parameters
    ----------
    threshold : float >= 0, default 0.6
    distance : {"seuclidean", "euclidean"} or callable, default "seuclidean"
        "seuclidean": Euclidean distance with each feature divided by its variance over the
        batch (scipy's, ``ddof=1``; features that do not vary are left out). A callable maps
        the flattened attributions (B, F) to a (B, B) distance matrix.
    layout, batch_size, output, forward_args, forward_kwargs : optional
        As in :func:`selectivity`.

    Returns
    -------
    Tensor of shape (B,)
        NaN where no other sample is within the threshold (Quantus gives 0).

    References
    ----------
    Dasgupta, Frost and Moshkovitz, "Framework for Evaluating Faithfulness of Local
    Explanations", ICML 2022.
    """
    threshold = check_float(threshold, "threshold", low=0.0)
    distance = _check_distance(distance)
    a, _, _ = unpack(attribution, None, None)
    x, _, score = prepare(model, x, target, batch_size=batch_size, layout=layout, output=output,
                          forward_args=forward_args, forward_kwargs=forward_kwargs)  # fmt: skip
    if a.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{current_caller()}: the attribution has {a.shape[0]} samples, x has {x.shape[0]}; they must match."
        )
    flat = a.flatten(1).to(x.dtype)
    b = flat.shape[0]
    if callable(distance):
        d = call_user(distance, (flat,), "distance")
        if not isinstance(d, torch.Tensor) or d.shape != (b, b):
            raise ShapeError(f"{current_caller()}: distance(a) must return a ({b}, {b}) tensor.")
        d = d.to(flat)
    else:
        top = flat.abs().max()
        # one exact power-of-two scale for the whole batch: the max-normalised distances do not
        # change, and values near the dtype's largest no longer overflow the squares
        e = -int(torch.frexp(top).exponent) if top > 0 else 0
        w = flat * 2.0 ** (e // 2) * 2.0 ** (e - e // 2)  # in two factors: 2**e may not be a float
        if distance == "seuclidean":
            var = w.var(0) if b > 1 else torch.zeros_like(w[0])
            w = torch.where(var > 0, w / var.clamp_min(torch.finfo(w.dtype).tiny).sqrt(), 0.0)
        d = torch.cdist(w, w)
    top = d.abs().max()
    if top > 0:
        d = d / top
    near = (d <= threshold) & ~torch.eye(b, dtype=torch.bool, device=d.device)
    pred = score.reference_output().flatten(1).argmax(1)
    same = pred[:, None] == pred[None, :]
    count = near.sum(1)
    agree = (near & same).sum(1).to(flat.dtype)
    return torch.where(count > 0, agree / count.clamp_min(1), torch.full_like(agree, torch.nan))
