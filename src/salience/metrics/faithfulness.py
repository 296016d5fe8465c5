"""Faithfulness correlation and infidelity: do attributions predict the score changes of random
perturbations (random subsets replaced by a substrate; additive noise)?

The model is only called through the engine's :class:`~salience.engine.ScoreFunction`; subsets
and perturbations are drawn and scored chunk by chunk (``batch_size`` rows per model call), so
memory does not grow with the number of runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from .._progress import progress_bar
from .._validation import (
    check_batch_size,
    check_bool,
    check_float,
    check_generator,
    check_int,
    check_option,
    make_generator,
)
from ..attribution import Attribution
from ..engine._forward import OutputLike, check_output
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..layout import LayoutLike
from ..masking import Filler, as_substrate
from ..targets import TargetLike
from ._checks import call_user, check_count, check_finite_result, check_rows, check_values
from ._setup import setup
from ._stats import rescaled
from ._stats import similarity as _similarity
from .base import _Perturbation

__all__ = ["faithfulness_correlation", "infidelity", "FaithfulnessCorrelation", "Infidelity"]


# ---------------------------------------------------------------------------- faithfulness correlation
def _check_similarity(similarity: Any) -> str | Callable:
    if callable(similarity):
        return similarity
    return check_option(similarity, "similarity", options=("pearson", "spearman"))


@caller("faithfulness_correlation")
def faithfulness_correlation(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    n_runs: int = 100,
    subset_size: int | None = None,
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
    """Faithfulness correlation: do attribution sums predict the score drop of random subsets?

    For each of ``n_runs`` random subsets of ``subset_size`` units (attribution elements; drawn
    per sample without replacement), the units are replaced by the substrate; the metric is the
    correlation over runs between ``sum(attribution over the subset)`` and ``f(x) - f(x_subset)``.

    Parameters
    ----------
    n_runs : int, default 100
    subset_size : int, optional
        Units removed per run. Must be smaller than the number of units ``n`` (removing them
        all gives the same sum on every run). None: ``min(224, max(1, n // 4))``, i.e.
        Quantus' default of 224 (an image row) on inputs of at least 896 units, a quarter of
        the units on shorter ones (a (3, 100) signal: 75), so short signals work by default.
    substrate : float, tensor or substrate object, default 0.0
    similarity : {"pearson", "spearman"} or callable, default "pearson"
        Pearson as Bhatt et al. and Quantus; Xplique's MuFidelity uses Spearman.
    generator : torch.Generator, optional
        Run ``j`` of sample ``i`` (row ``i * n_runs + j``) removes the units
        ``torch.rand(n_units, generator=generator).argsort()[:subset_size]``, drawn row after row
        as the rows are scored (at most ``batch_size`` rows at a time, so memory does not grow
        with ``n_runs``); on a CPU generator this equals drawing ``torch.rand((n_runs, n_units))``
        per sample, sample after sample, and does not depend on ``batch_size``.
    progress : bool, default True
        Show a tqdm bar over the scored rows (if tqdm is installed).
    output : str, int or callable, optional
        The tensor to score when the model returns a tuple, a dict or a Hugging Face
        ``ModelOutput``: a key, an index or a callable ``output -> tensor``. None: a tensor as it
        is, a mapping's or ``ModelOutput``'s ``"logits"``, a one-element tuple's element.
    forward_args : sequence, optional
        Extra positional inputs of every model call: ``model(rows, *forward_args)``.
    forward_kwargs : dict, optional
        Extra keyword inputs of every model call (an attention mask, a padding mask, flags).
        Tensors whose first axis has length B are per-sample: every perturbed copy of sample
        ``i`` is scored with sample ``i``'s entries, whatever ``batch_size``; wrap a tensor in
        :func:`salience.engine.shared` to pass it unchanged.

    Returns
    -------
    Tensor of shape (B,)
        NaN where the score or the attribution sums do not vary. A ``similarity`` callable's
        values are returned as they are (NaN included); one that raises gives a ParameterError.
        The built-in correlations are computed on each sample's attributions rescaled exactly
        by a power of two (the correlation does not change), so values near the dtype's limits
        neither overflow nor underflow.

    References
    ----------
    Bhatt et al., "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020.
    """
    n_runs = check_count(n_runs, "n_runs", low=2)
    similarity = _check_similarity(similarity)
    progress = check_bool(progress, "progress")
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
    flat = a.flatten(1)
    n_units = flat.shape[1]
    if subset_size is None:  # always smaller than n_units >= 2
        subset_size = _default_subset(n_units)
    subset_size = check_int(subset_size, "subset_size", low=1)
    if n_units < 2:
        raise ShapeError(
            f"{current_caller()} needs at least 2 attribution units per sample (random subsets of one unit "
            f"all have the same sum). Got attributions of shape {tuple(a.shape)}."
        )
    if subset_size >= n_units:
        raise ParameterError(
            f"The 'subset_size' parameter of {current_caller()} must be smaller than the number of "
            f"attribution units, {n_units} here (shape {tuple(a.shape[1:])}): a subset of all units "
            f"has the same sum on every run. Got {subset_size}; pass a smaller subset_size, e.g. "
            f"subset_size={_default_subset(n_units)} (what the default None picks here)."
        )
    gen = make_generator(generator)
    b = space.shape[0]
    check_rows(b, n_runs, "n_runs")
    if isinstance(similarity, str):
        # the correlations are invariant to each sample's scale: rescaled exactly by a power of
        # two, sums of values near the dtype's maximum cannot overflow
        flat = rescaled(flat)
    sums = torch.empty(b * n_runs, dtype=flat.dtype, device=space.device)
    filler = Filler(space, substrate, lay)
    unit_shape = a.shape[1:]
    bar = progress_bar(b * n_runs, current_caller(), progress)

    def make(start: int, stop: int) -> torch.Tensor:
        """Rows ``start..stop``: their subsets are drawn here, in row order (bounded memory)."""
        bar.update(stop - start)
        s = torch.arange(start, stop, device=space.device) // n_runs
        # the subset_size smallest of one torch.rand(n_units) per row: the set argsort()[:k] picks,
        # found by topk (~5x faster than a full sort of 4096 units)
        draws = torch.rand((stop - start, n_units), generator=gen, device=gen.device)
        idx = torch.topk(draws, subset_size, dim=-1, largest=False, sorted=False).indices
        idx = idx.to(space.device)
        sums[start:stop] = flat[s].gather(1, idx).sum(-1)
        removed = torch.zeros((stop - start, n_units), dtype=torch.bool, device=space.device)
        removed.scatter_(1, idx, True)
        return filler(s, ~removed.reshape(-1, *unit_shape))

    with bar:
        drops = score.input_values()[:, None] - score.values(make, n=n_runs)
    return _similarity(sums.reshape(b, n_runs), drops, similarity)


def _default_subset(n_units: int) -> int:
    """The default subset size: Quantus' 224 (an image row), at most a quarter of the units."""
    return min(224, max(1, n_units // 4))


# ---------------------------------------------------------------------------- infidelity
def _check_perturbation(perturbation: Any) -> Any:
    if perturbation is None or callable(perturbation) or isinstance(perturbation, torch.Tensor):
        return perturbation
    raise ParameterError(
        f"The 'perturbation' parameter of {current_caller()} must be None, a callable (x, k, generator) -> "
        f"perturbations or a tensor (B, n_perturbations, *S). Got {type(perturbation).__name__} instead."
    )


@caller("infidelity")
def infidelity(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    n_perturbations: int = 10,
    std: float = 0.1,
    perturbation: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor] | torch.Tensor | None = None,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Infidelity: ``E_I[(I . attribution - (f(x) - f(x - I)))^2]``.

    Parameters
    ----------
    n_perturbations : int, default 10
    std : float, default 0.1
        Standard deviation of the default perturbation ``I ~ N(0, std^2)`` (input units).
    perturbation : callable or Tensor, optional
        Custom perturbations (Yeh et al.'s square-removal or baseline-difference perturbations):
        a callable ``perturbation(x, k, generator) -> I`` of shape (len(x), k, *S), or a tensor
        (B, n_perturbations, *S) of precomputed perturbations (read chunk by chunk). The callable
        is called chunk by chunk, sample by sample: ``perturbation(x[i:i+1], k, generator)`` for
        the ``k <= batch_size`` next perturbations of sample ``i``, in row order; for results
        that do not depend on ``batch_size``, let it draw perturbation after perturbation.
    normalize : bool, default False
        Scale the attribution by the optimal ``beta = E[I.a * df] / E[(I.a)^2]`` first (Captum's
        ``normalize=True``).
    generator : torch.Generator, optional
        Source of the default perturbations: perturbation ``j`` of sample ``i`` (row
        ``i * n + j``) is ``std * torch.randn(S, generator=generator)``, drawn row after row,
        so the result does not depend on ``batch_size``.
    domain, layout : optional
        As in :func:`deletion_curve`.
    batch_size : int, optional
        Maximum rows per model call; perturbations are drawn and evaluated chunk by chunk, so
        memory is bounded by ``batch_size`` rows, not by ``B * n_perturbations``.
    output : str, int or callable, optional
        The tensor to score when the model returns a tuple, a dict or a Hugging Face
        ``ModelOutput``: a key, an index or a callable ``output -> tensor``. None: a tensor as it
        is, a mapping's or ``ModelOutput``'s ``"logits"``, a one-element tuple's element.
    forward_args : sequence, optional
        Extra positional inputs of every model call: ``model(rows, *forward_args)``.
    forward_kwargs : dict, optional
        Extra keyword inputs of every model call (an attention mask, a padding mask, flags).
        Tensors whose first axis has length B are per-sample: every perturbed copy of sample
        ``i`` is scored with sample ``i``'s entries, whatever ``batch_size``; wrap a tensor in
        :func:`salience.engine.shared` to pass it unchanged.

    Returns
    -------
    Tensor of shape (B,)

    Raises
    ------
    ParameterError
        ``n_perturbations`` outside ``[1, 2**63 - 1]``, a negative or non-finite ``std``, or a
        ``perturbation`` callable that raised (the original exception is the cause).
    NumericalError
        The squared errors overflowed the dtype (attributions or perturbations near its largest
        value).

    References
    ----------
    Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
    """
    n = check_count(n_perturbations, "n_perturbations")
    std = check_float(std, "std", low=0.0)
    perturbation = _check_perturbation(perturbation)
    normalize = check_bool(normalize, "normalize")
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
    gen = make_generator(generator)
    b, shape = space.shape[0], tuple(space.shape[1:])
    check_rows(b, n, "n_perturbations")
    given: torch.Tensor | None = None
    if isinstance(perturbation, torch.Tensor):
        if tuple(perturbation.shape) != (b, n, *shape):
            raise ShapeError(
                f"{current_caller()}: a perturbation tensor must have shape {(b, n, *shape)} (B, n_perturbations, *S). "
                f"Got {tuple(perturbation.shape)} instead."
            )
        given = check_values(perturbation, "the perturbation tensor").reshape(b * n, *shape)
    dots = torch.empty(b * n, dtype=space.dtype, device=space.device)
    perturb = None if isinstance(perturbation, torch.Tensor) else perturbation  # the callable, if any

    def draw(start: int, stop: int) -> torch.Tensor:
        """Perturbations of rows ``start..stop`` (row ``i * n + j``: perturbation j of sample i)."""
        if given is not None:
            return given[start:stop].to(device=space.device, dtype=space.dtype)
        if perturb is None:
            noise = torch.stack(
                [
                    torch.randn(shape, generator=gen, device=gen.device, dtype=space.dtype)
                    for _ in range(stop - start)
                ]
            )
            return noise.to(space.device) * std
        pieces = []
        for s0 in range(start // n, (stop - 1) // n + 1):  # per sample, the rows of this chunk
            lo, hi = max(start, s0 * n), min(stop, (s0 + 1) * n)
            p = call_user(perturb, (space[s0 : s0 + 1], hi - lo, gen), "perturbation")
            if not isinstance(p, torch.Tensor) or tuple(p.shape) != (1, hi - lo, *shape):
                got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise ShapeError(
                    f"{current_caller()}: perturbation(x, k, generator) must return a tensor of shape (len(x), k, *S) = "
                    f"{(1, hi - lo, *shape)}. Got {got} instead."
                )
            pieces.append(
                check_values(p, "perturbation(x, k, generator)")[0].to(device=space.device, dtype=space.dtype)
            )
        return torch.cat(pieces)

    def make(start: int, stop: int) -> torch.Tensor:
        samples = torch.arange(start, stop, device=space.device) // n
        pert = draw(start, stop)
        dots[start:stop] = (pert * a[samples]).flatten(1).sum(-1)
        return space[samples] - pert

    f0 = score.input_values()
    diffs = f0[:, None] - score.values(make, n=n)
    dots = dots.reshape(b, n)
    if normalize:
        num = (dots * diffs).mean(1, keepdim=True)
        den = (dots * dots).mean(1, keepdim=True)
        beta = torch.where(
            den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den)
        )
        dots = beta * dots
    return check_finite_result(
        (dots - diffs).square().mean(1),
        "the attribution or the perturbations are too large for the squared errors in this dtype.",
    )


# ---------------------------------------------------------------------------- classes
class FaithfulnessCorrelation(_Perturbation):
    """:func:`faithfulness_correlation` as a metric class (higher is better); ``output=`` selects
    the scored tensor of a structured model output."""

    higher_is_better: ClassVar[bool | None] = True
    is_stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_runs: int = 100,
        subset_size: int | None = None,
        substrate: Any = 0.0,
        similarity: str | Callable = "pearson",
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.n_runs = check_count(n_runs, "n_runs", low=2)
        self.subset_size = None if subset_size is None else check_int(subset_size, "subset_size", low=1)
        self.substrate = as_substrate(substrate)
        self.similarity = _check_similarity(similarity)
        self.generator = check_generator(generator)
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")
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
        return faithfulness_correlation(
            model,
            x,
            attribution,
            target,
            n_runs=self.n_runs,
            subset_size=self.subset_size,
            substrate=self.substrate,
            similarity=self.similarity,
            generator=self.generator,
            domain=domain,
            batch_size=self.batch_size,
            progress=self.progress,
            output=self.output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )


class Infidelity(_Perturbation):
    """:func:`infidelity` as a metric class (lower is better); ``output=`` selects the scored
    tensor of a structured model output."""

    higher_is_better: ClassVar[bool | None] = False
    is_stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_perturbations: int = 10,
        std: float = 0.1,
        perturbation: Any = None,
        normalize: bool = False,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        output: OutputLike = None,
    ) -> None:
        self.n_perturbations = check_count(n_perturbations, "n_perturbations")
        self.std = check_float(std, "std", low=0.0)
        self.perturbation = _check_perturbation(perturbation)
        self.normalize = check_bool(normalize, "normalize")
        self.generator = check_generator(generator)
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
        return infidelity(
            model,
            x,
            attribution,
            target,
            n_perturbations=self.n_perturbations,
            std=self.std,
            perturbation=self.perturbation,
            normalize=self.normalize,
            generator=self.generator,
            domain=domain,
            batch_size=self.batch_size,
            output=self.output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
