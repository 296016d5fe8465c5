"""Faithfulness by ordered perturbation: IROF, Selectivity, region perturbation (MoRF/LeRF),
Sensitivity-n, Monotonicity (Arya et al.), monotonicity correlation (Nguyen and Martinez) and
Sufficiency (Dasgupta et al.), as functions (values per sample) and metric classes.

The model is only called through the engine's :class:`~salience.engine.ScoreFunction`: the
perturbed rows are built chunk by chunk (``batch_size`` rows per model call) on the input's
device, so memory does not grow with the number of regions, steps or runs. With ``domain=`` the
perturbations act on the domain's coefficients (IROF's segments become frequency bands in a
Fourier domain). Sensitivity-n, the monotonicity metrics and Sufficiency are implemented in
:mod:`~salience.metrics._feature_order`, the classes in :mod:`~salience.metrics._perturbation_classes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._validation import check_bool, check_int
from ..attribution import Attribution
from ..engine._forward import OutputLike
from ..errors import caller
from ..layout import LayoutLike
from ..targets import TargetLike
from . import _regions as R
from ._checks import check_count


@caller("irof")
def irof(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    segments: torch.Tensor | None = None,
    n_segments: int = 16,
    substrate: Any = "mean",
    normalize: bool = True,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Iterative Removal Of Features: the area over the curve of the relative score as segments are
    removed in decreasing order of their mean attribution (higher is better).

    With ``p_k = f(x_k) / f(x)`` after removing the ``k`` most relevant of ``L`` segments,
    ``normalize=True`` gives ``1 - trapz(p_0, ..., p_L) / L`` (the area over the curve on
    [0, 1]; ``p_0 = 1``); ``normalize=False`` gives Quantus' ``L - trapz(p_1, ..., p_L)``
    (unit spacing, so it grows with ``L``; a sample with fewer segments than the batch's largest
    has its curve padded with zeros, as Quantus does).

    Parameters
    ----------
    segments : integer Tensor broadcastable to ``x`` (or to the domain's coefficients), optional
        Segment labels (0, 1, ...; per sample or shared). Default: superpixels of images (a
        batched, dependency-free SLIC-like clustering of about ``n_segments`` cells); for
        signals ``n_segments`` contiguous segments per spatial axis; in a domain, contiguous
        bands of coefficients (frequency bands in a Fourier domain).
    n_segments : int, default 16
    substrate : default "mean"
        What removed segments become (each channel's mean; any substrate of
        :mod:`salience.masking`). Quantus replaces them by the mean too.
    normalize : bool, default True
    domain, layout, batch_size, progress, output, forward_args, forward_kwargs : optional
        As in :func:`~salience.metrics.deletion_curve`: ``domain`` perturbs a domain's
        coefficients (frequency bins, components) instead of samples, ``batch_size`` bounds the
        rows per model call (not the number of perturbations), ``output``/``forward_args``/
        ``forward_kwargs`` select a structured output and pass extra model inputs.
    Returns
    -------
    Tensor of shape (B,)
        NaN where ``f(x) = 0``.

    References
    ----------
    Rieger and Hansen, "IROF: a low resource evaluation metric for explanation methods", 2020.
    """
    n_segments = check_int(n_segments, "n_segments", low=1)
    normalize = check_bool(normalize, "normalize")
    kw = dict(batch_size=batch_size, layout=layout, output=output, forward_args=forward_args,
              forward_kwargs=forward_kwargs, progress=progress)  # fmt: skip
    f0, curve, present = R.curve_scores(
        model, x, attribution, target, segments=segments, patch_size=None, n_segments=n_segments,
        how="mean", order="morf", n_regions=None, substrate=substrate, domain=domain, kw=kw,
    )  # fmt: skip
    safe = torch.where(f0 != 0, f0, torch.ones_like(f0))
    p = curve / safe[:, None]
    if normalize:
        full = torch.cat([torch.ones_like(p[:, :1]), p], 1)
        out = 1 - R.trapezoid(full, present) / present.to(p.dtype)
    else:
        k = torch.arange(p.shape[1], device=p.device)
        q = torch.where(k[None] < present[:, None], p, torch.zeros_like(p))
        last = torch.full_like(present, p.shape[1] - 1)
        out = present.to(p.dtype) - R.trapezoid(q, last)
    return torch.where(f0 != 0, out, torch.full_like(out, torch.nan))


@caller("selectivity")
def selectivity(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    patch_size: int | Sequence[int] = 8,
    segments: torch.Tensor | None = None,
    substrate: Any = 0.0,
    normalize: bool = True,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Selectivity: the area under the score as patches are removed in decreasing order of their
    attribution sum (lower is better).

    With ``s_k`` the score after removing the ``k`` most relevant of ``L`` patches,
    ``normalize=True`` gives ``trapz(s_0, ..., s_L) / L`` (the area on [0, 1], ``s_0 = f(x)``);
    ``normalize=False`` gives Quantus' ``get_auc_score`` per sample, ``trapz(s_1, ..., s_L)``
    with unit spacing.

    Parameters
    ----------
    patch_size : int or one int per spatial axis, default 8
        Patches on Quantus' grid: an axis not divisible by the size is padded evenly, so border
        patches are smaller; every patch holds all channels.
    segments : integer Tensor broadcastable to ``x``, optional
        Region labels instead of patches.
    substrate : default 0.0
    normalize : bool, default True
    domain, layout, batch_size, progress, output, forward_args, forward_kwargs : optional
        As in :func:`~salience.metrics.deletion_curve`: ``domain`` perturbs a domain's
        coefficients (frequency bins, components) instead of samples, ``batch_size`` bounds the
        rows per model call (not the number of perturbations), ``output``/``forward_args``/
        ``forward_kwargs`` select a structured output and pass extra model inputs.
    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Montavon, Samek and Mueller, "Methods for interpreting and understanding deep neural
    networks", Digital Signal Processing 73, 2018.
    """
    normalize = check_bool(normalize, "normalize")
    kw = dict(batch_size=batch_size, layout=layout, output=output, forward_args=forward_args,
              forward_kwargs=forward_kwargs, progress=progress)  # fmt: skip
    f0, curve, present = R.curve_scores(
        model, x, attribution, target, segments=segments, patch_size=patch_size, n_segments=None,
        how="sum", order="morf", n_regions=None, substrate=substrate, domain=domain, kw=kw,
    )  # fmt: skip
    if normalize:
        full = torch.cat([f0[:, None], curve], 1)
        return R.trapezoid(full, present) / present.to(curve.dtype)
    return R.trapezoid(curve, present - 1)


def _region_perturbation_curve(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    patch_size: int | Sequence[int] = 8,
    segments: torch.Tensor | None = None,
    order: str = "morf",
    n_regions: int = 100,
    substrate: Any = 0.0,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Region perturbation curve: ``f(x) - f(x_k)`` after removing the first ``k = 1..L``
    regions, most relevant first (``order="morf"``), least relevant first (``"lerf"``) or in a
    random order (``"random"``, the baseline curve Samek et al. compare against).

    Parameters
    ----------
    patch_size : int or one int per spatial axis, default 8
        Patches on Quantus' grid (see :func:`selectivity`), ranked by their attribution sum.
    segments : integer Tensor broadcastable to ``x``, optional
        Region labels instead of patches.
    order : {"morf", "lerf", "random"}, default "morf"
        ``"random"``: a uniform random permutation of each sample's regions, drawn from
        ``generator`` (one ``torch.rand(L)`` per sample, in sample order), as Quantus'
        ``order="random"`` (which draws from NumPy's global RNG).
    n_regions : int, default 100
        ``L``, at most the number of regions (Quantus' ``regions_evaluation``).
    substrate : default 0.0
    generator : torch.Generator, optional
        Source of the random order (only with ``order="random"``).
    domain, layout, batch_size, progress, output, forward_args, forward_kwargs : optional
        As in :func:`~salience.metrics.deletion_curve`: ``domain`` perturbs a domain's
        coefficients (frequency bins, components) instead of samples, ``batch_size`` bounds the
        rows per model call (not the number of perturbations), ``output``/``forward_args``/
        ``forward_kwargs`` select a structured output and pass extra model inputs.
    Returns
    -------
    Tensor of shape (B, L)
        Quantus' per-sample result.

    References
    ----------
    Samek et al., "Evaluating the visualization of what a deep neural network has learned",
    IEEE TNNLS 28(11), 2017.
    """
    n_regions = check_count(n_regions, "n_regions")
    kw = dict(batch_size=batch_size, layout=layout, output=output, forward_args=forward_args,
              forward_kwargs=forward_kwargs, progress=progress)  # fmt: skip
    f0, curve, _ = R.curve_scores(
        model, x, attribution, target, segments=segments, patch_size=patch_size, n_segments=None,
        how="sum", order=order, n_regions=n_regions, substrate=substrate, domain=domain, kw=kw,
        generator=generator,
    )  # fmt: skip
    return f0[:, None] - curve


region_perturbation_curve = caller("region_perturbation_curve")(_region_perturbation_curve)


@caller("region_perturbation")
def region_perturbation(
    model: Any, x: torch.Tensor, attribution: Any, target: TargetLike = None, **kw: Any
) -> torch.Tensor:
    """AOPC of :func:`region_perturbation_curve` (same parameters): the mean score drop over the
    ``L + 1`` states ``k = 0..L`` (``k = 0`` drops nothing), Samek et al.'s area over the
    perturbation curve. Higher is better for MoRF, lower for LeRF; ``order="random"`` gives the
    baseline a faithful map should beat.

    Returns
    -------
    Tensor of shape (B,)
    """
    curve = _region_perturbation_curve(model, x, attribution, target, **kw)
    return curve.sum(1) / (curve.shape[1] + 1)


from ._feature_order import monotonicity, monotonicity_correlation, sensitivity_n, sufficiency  # noqa: E402
from ._perturbation_classes import (  # noqa: E402
    IROF,
    Monotonicity,
    MonotonicityCorrelation,
    RegionPerturbation,
    Selectivity,
    SensitivityN,
    Sufficiency,
)

__all__ = [
    "irof",
    "selectivity",
    "region_perturbation",
    "region_perturbation_curve",
    "sensitivity_n",
    "monotonicity",
    "monotonicity_correlation",
    "sufficiency",
    "IROF",
    "Selectivity",
    "RegionPerturbation",
    "SensitivityN",
    "Monotonicity",
    "MonotonicityCorrelation",
    "Sufficiency",
]
