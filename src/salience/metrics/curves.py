"""Deletion and insertion curves (RISE, Xplique and ROAD conventions) and their area.

The model is only called through the engine's :class:`~salience.engine.ScoreFunction`: the
perturbed rows are generated lazily chunk by chunk (``batch_size`` rows per model call), on the
input's device, so memory stays bounded whatever the number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from .._progress import progress_bar
from .._validation import check_batch_size, check_bool, check_float, check_int, check_option
from ..attribution import Attribution
from ..engine._forward import OutputLike, check_output
from ..errors import InputError, ParameterError, ShapeError, caller, current_caller
from ..layout import LayoutLike
from ..masking import Filler, as_substrate
from ..targets import TargetLike
from ._checks import check_count, check_finite_result, check_rows, check_values
from ._setup import reduce_channels as _reduce_channels
from ._setup import setup
from .base import _Perturbation
from .substrates import RiseBlur

__all__ = ["deletion_curve", "insertion_curve", "auc", "Deletion", "Insertion"]


def _schedule(n_units: int, step: int | None, steps: int | None, max_fraction: float) -> torch.Tensor:
    """Number of units changed at each recorded state (RISE ``step`` or Xplique ``steps``)."""
    if step is not None and steps is not None:
        raise ParameterError(f"{current_caller()}: pass step=... (RISE) or steps=... (Xplique), not both.")
    if step is not None:
        # a step of n_units or more changes every unit at once: the same two states
        step = min(check_int(step, "step", low=1), n_units)
        n_steps = math.ceil(n_units / step)
        return torch.clamp(torch.arange(n_steps + 1) * step, max=n_units)
    steps = min(100, n_units) if steps is None else check_count(steps, "steps")
    max_n = int(math.floor(n_units * max_fraction))
    if max_n == 0:
        raise ParameterError(
            f"The 'max_fraction' parameter of {current_caller()} must change at least one of the {n_units} "
            f"attribution units (floor(n_units * max_fraction) >= 1, i.e. max_fraction >= "
            f"{1 / n_units:.3g} here). Got {max_fraction!r}: every state would be the input itself."
        )
    # Xplique: np.linspace(0, max_n, steps + 1, dtype=np.int32), i.e. truncated toward zero
    grid = torch.linspace(0, max_n, steps + 1, dtype=torch.float64)
    return grid.floor().long()


def _ranks(units: torch.Tensor) -> torch.Tensor:
    """Rank of each unit (0 = most relevant), descending, ties broken by position."""
    order = torch.sort(units, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(units.shape[1], device=units.device).expand_as(order))
    return ranks


def _curve(
    mode: str,
    model: Any,
    x: torch.Tensor,
    attribution: Any,
    target: TargetLike,
    *,
    step: int | None,
    steps: int | None,
    max_fraction: float,
    substrate: Any,
    reduce: str | None,
    domain: Any,
    layout: LayoutLike | None,
    batch_size: int | None,
    progress: bool,
    output: OutputLike,
    forward_args: Sequence[Any],
    forward_kwargs: Mapping[str, Any] | None,
) -> torch.Tensor:
    max_fraction = check_float(max_fraction, "max_fraction", low=0.0, high=1.0, closed="right")
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
    units = _reduce_channels(a, reduce)
    unit_shape = units.shape[1:]
    ranks = _ranks(units.flatten(1))
    n_units = ranks.shape[1]
    if steps is not None:
        check_rows(space.shape[0], check_count(steps, "steps") + 1, "steps")
    counts = _schedule(n_units, step, steps, max_fraction).to(space.device)
    k = counts.shape[0]
    filler = Filler(space, substrate, lay)
    deletion = mode == "deletion"
    bar = progress_bar(space.shape[0] * k, mode, progress)

    def make(start: int, stop: int) -> torch.Tensor:
        bar.update(stop - start)
        r = torch.arange(start, stop, device=space.device)
        b, i = r // k, r % k
        changed = (ranks[b] < counts[i, None]).reshape(-1, *unit_shape)
        return filler(b, ~changed if deletion else changed)

    with bar:
        return score.values(make, n=k)


_CURVE_DOC = """
    Parameters
    ----------
    model : callable
        Maps (R, *S) to outputs (R, *O); never modified.
    x : Tensor of shape (B, *S)
    attribution : Tensor broadcastable to ``x`` (or to ``domain.forward(x)``), or Attribution
        Its elements are the units removed/inserted together: an attribution of shape
        (B, 1, *spatial) moves whole time steps/pixels (all channels, as RISE), a full-shape
        one moves single cells (as Xplique on time series). Ranked in descending order, ties by
        position.
    target : int, Tensor (B,), Target or None
        The tracked score, bound at ``x`` (None: each sample's predicted class at ``x``; an
        Attribution's recorded target when an Attribution is passed).
    step : int, optional
        RISE: units changed per step; ``ceil(n / step) + 1`` states are scored, from the start
        state to the end state.
    steps : int, optional
        Xplique: score ``steps + 1`` states changing ``floor(linspace(0, floor(n *
        max_fraction), steps + 1))`` units. Default when neither is given: ``min(100, n)``.
    max_fraction : float in (0, 1], default 1.0
        Xplique's ``max_percentage_perturbed`` (with ``steps``).
    substrate : float, Tensor, str or substrate object
        What removed units become. A float or tensor; ``"zeros"``, ``"mean"``, ``"blur"``,
        ``"interpolate"`` and the objects of :mod:`salience.masking` (``Blur``, ``Interpolate``,
        ...); :class:`RiseBlur` (RISE's insertion start); :class:`NoisyLinearImputation` (ROAD).
        In a domain, the substrate is in coefficient space (0: zero coefficients).
    channel_reduction : {None, "sum", "mean", "max", "absmax"}, default None
        Reduce a channel-wise attribution to one value per position first (Xplique averages the
        channels of images: ``"mean"``).
    domain : object with ``forward(x) -> z`` and ``inverse(z) -> x``, optional
        Remove/insert coefficients of this domain (frequency bins, ICA components, wavelet
        bands): the model sees ``inverse(z_perturbed) + (x - inverse(forward(x)))``.
    layout : str or Layout, optional
    batch_size : int, optional
        Maximum rows per model call.
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
        Tensors whose first axis has length B are per-sample: each state of sample ``i`` is
        scored with sample ``i``'s entries, whatever ``batch_size``; wrap a tensor in
        :func:`salience.engine.shared` to pass it unchanged.

    Returns
    -------
    Tensor of shape (B, K)
        The score at each of the K states; ``auc(curve)`` gives the area.
"""


@caller("deletion_curve")
def deletion_curve(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    step: int | None = None,
    steps: int | None = None,
    max_fraction: float = 1.0,
    substrate: Any = 0.0,
    channel_reduction: str | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Deletion curve: the score as the most relevant units are replaced by the substrate.

    RISE: ``step=...`` with a zero substrate; Xplique: ``steps=10`` with a zero substrate.
    ROAD (MoRF): ``substrate=NoisyLinearImputation()``.
    """
    return _curve(
        "deletion",
        model,
        x,
        attribution,
        target,
        step=step,
        steps=steps,
        max_fraction=max_fraction,
        substrate=substrate,
        reduce=channel_reduction,
        domain=domain,
        layout=layout,
        batch_size=batch_size,
        progress=progress,
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )


@caller("insertion_curve")
def insertion_curve(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    step: int | None = None,
    steps: int | None = None,
    max_fraction: float = 1.0,
    substrate: Any = None,
    channel_reduction: str | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Insertion curve: the score as the most relevant units of ``x`` are put into the substrate.

    The default substrate is RISE's blurred input (:class:`RiseBlur`) in input space and zero
    coefficients in a domain. Xplique's insertion starts from ``substrate=0.0``.
    """
    if substrate is None:
        substrate = (
            0.0 if (domain is not None or getattr(attribution, "domain", None) is not None) else RiseBlur()
        )
    return _curve(
        "insertion",
        model,
        x,
        attribution,
        target,
        step=step,
        steps=steps,
        max_fraction=max_fraction,
        substrate=substrate,
        reduce=channel_reduction,
        domain=domain,
        layout=layout,
        batch_size=batch_size,
        progress=progress,
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )


deletion_curve.__doc__ = (
    (deletion_curve.__doc__ or "")
    + _CURVE_DOC
    + """
    References
    ----------
    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC
    2018; Rong et al., ROAD, ICML 2022.
"""
)
insertion_curve.__doc__ = (
    (insertion_curve.__doc__ or "")
    + _CURVE_DOC
    + """
    References
    ----------
    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018.
"""
)


@caller("auc")
def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at equally spaced points of [0, 1] (trapezoid rule).

    ``(sum(s) - s[0]/2 - s[-1]/2) / (K - 1)``: RISE's formula, equal to Xplique's mean of the
    trapezoids ``mean((s[:-1] + s[1:]) / 2)``. With RISE's ``step`` the last step may change
    fewer units; like RISE, the area still counts it as a full step.

    Parameters
    ----------
    curve : Tensor of shape (..., K), K >= 2
        Real floating-point and finite (the scores of :func:`deletion_curve` or
        :func:`insertion_curve`).

    Returns
    -------
    Tensor of shape (...)

    Raises
    ------
    InputError
        ``curve`` is not a tensor (an Attribution is not a curve), or holds NaN or inf.
    DTypeError
        ``curve`` is complex, integer or boolean.
    ShapeError
        ``curve`` has no axis, an empty axis or fewer than 2 points.
    NumericalError
        The area overflows the dtype (scores near its largest value).
    """
    if not isinstance(curve, torch.Tensor):
        raise InputError(
            "auc expects curve to be a torch.Tensor of shape (..., K), e.g. the output of "
            f"deletion_curve. Got {type(curve).__name__} instead."
        )
    curve = check_values(curve, "curve", min_ndim=1)
    if curve.shape[-1] < 2:
        raise ShapeError(f"auc needs at least 2 points per curve. Got shape {tuple(curve.shape)}.")
    area = (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / (curve.shape[-1] - 1)
    return check_finite_result(area, "the curve's values are too large for a sum in this dtype.")


# ---------------------------------------------------------------------------- classes
class Deletion(_Perturbation):
    """Deletion AUC (lower is better); ``curve(...)`` gives the curve. See :func:`deletion_curve`.

    RISE: ``Deletion(step=224)`` (pixels per step; zero substrate). Xplique:
    ``Deletion(steps=10)``. ROAD: ``Deletion(substrate=NoisyLinearImputation())``.
    ``output=`` selects the scored tensor of a structured model output (as in
    :func:`deletion_curve`); extra model inputs are passed to the call
    (``forward_args=``/``forward_kwargs=``).
    """

    higher_is_better: ClassVar[bool | None] = False
    _mode = "deletion"

    def __init__(
        self,
        *,
        step: int | None = None,
        steps: int | None = None,
        max_fraction: float = 1.0,
        substrate: Any = 0.0,
        channel_reduction: str | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        if step is not None and steps is not None:
            raise ParameterError(
                f"{current_caller()}: pass step=... (RISE) or steps=... (Xplique), not both."
            )
        self.step = None if step is None else check_int(step, "step", low=1)
        self.steps = None if steps is None else check_count(steps, "steps")
        self.max_fraction = check_float(max_fraction, "max_fraction", low=0.0, high=1.0, closed="right")
        # None: the insertion default (RiseBlur in input space, zero coefficients in a domain)
        self.substrate = None if substrate is None else as_substrate(substrate)
        self.channel_reduction = check_option(
            channel_reduction, "channel_reduction", options=(None, "sum", "mean", "max", "absmax")
        )
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")
        self.output = check_output(output, type(self).__name__)

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.substrate, "is_random", False))

    def curve(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: TargetLike = None,
        *,
        domain: Any = None,
        layout: LayoutLike | None = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        fn = deletion_curve if self._mode == "deletion" else insertion_curve
        return fn(
            model,
            x,
            attribution,
            target,
            step=self.step,
            steps=self.steps,
            max_fraction=self.max_fraction,
            substrate=self.substrate,
            channel_reduction=self.channel_reduction,
            domain=domain,
            layout=layout,
            batch_size=self.batch_size,
            progress=self.progress,
            output=self.output,
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
        curve = self.curve(
            model,
            x,
            attribution,
            target,
            domain=domain,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
        return auc(curve)


class Insertion(Deletion):
    """Insertion AUC (higher is better). RISE: ``Insertion(step=224)`` (blurred start,
    :class:`RiseBlur`); Xplique: ``Insertion(steps=10, substrate=0.0)``. See :func:`insertion_curve`."""

    higher_is_better: ClassVar[bool | None] = True
    _mode = "insertion"

    def __init__(
        self,
        *,
        step: int | None = None,
        steps: int | None = None,
        max_fraction: float = 1.0,
        substrate: Any = None,
        channel_reduction: str | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            step=step,
            steps=steps,
            max_fraction=max_fraction,
            substrate=substrate,
            channel_reduction=channel_reduction,
            batch_size=batch_size,
            progress=progress,
            output=output,
        )
