"""Localisation metrics: does the attribution fall on a ground-truth region?

All functions take an attribution (B, C or 1, *spatial) and a ground-truth mask of the same ndim,
broadcastable to it (boolean, or 0/1 values: 1 = inside; NaN, soft masks and label maps are
refused), and return one value per sample, shape (B,), NaN where the mask of a sample is empty. Axis 0 is the batch, axis 1 the channel, the rest are spatial
(samples, pixels, voxels), whatever the layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .._validation import check_bool, check_float
from ..attribution import Attribution
from ..errors import ParameterError, caller
from ._checks import check_mask, unpack
from ._stats import rescaled
from .base import Metric

__all__ = [
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass",
    "relevance_rank_accuracy",
    "top_q_iou",
    "PointingGame",
    "EnergyPointingGame",
    "RelevanceMass",
    "RelevanceRankAccuracy",
    "TopQIoU",
]


def _prep(attribution: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, _, _ = unpack(attribution, None, None)
    m = check_mask(mask, a)
    a = a.expand(m.shape)
    return a, m


def _nan_if_empty(value: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    empty = ~m.flatten(1).any(1)
    return torch.where(empty, torch.full_like(value, float("nan")), value)


def _dilate(m: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Grow a boolean mask (B, C, *spatial) by a Euclidean ball of radius ``tolerance`` (channel-wise)."""
    d = m.ndim - 2
    if d not in (1, 2, 3):
        raise ParameterError(
            f"pointing_game: tolerance > 0 supports 1 to 3 spatial axes; got {d}. Use tolerance=0."
        )
    # a ball wider than the spatial extent covers every position: larger radii change nothing
    tolerance = min(tolerance, math.hypot(*m.shape[2:]))
    r = int(math.floor(tolerance))
    grid = torch.stack(torch.meshgrid(*[torch.arange(-r, r + 1, dtype=torch.float64)] * d, indexing="ij"))
    ball = (grid.square().sum(0) <= tolerance**2 + 1e-9).to(torch.float32)
    b, c = m.shape[:2]
    flat = m.reshape(b * c, 1, *m.shape[2:]).to(torch.float32)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[d]
    out = conv(flat, ball.to(flat.device)[None, None], padding=r)
    return (out > 0.5).reshape(m.shape)


@caller("pointing_game")
def pointing_game(
    attribution: torch.Tensor | Attribution, mask: torch.Tensor, *, tolerance: float = 0.0
) -> torch.Tensor:
    """Pointing game: 1 if a maximum of the attribution lies on (or near) the mask, else 0.

    A hit is scored when any element holding the sample's maximum attribution is within
    Euclidean distance ``tolerance`` (in samples/pixels, along the spatial axes, same channel) of
    a mask element. With ``tolerance=0`` this is Quantus' ``PointingGame`` (ties: any maximum
    counts); Zhang et al. used a 15-pixel tolerance.

    Parameters
    ----------
    attribution : Tensor of shape (B, C, *spatial) or Attribution
    mask : Tensor broadcastable to the attribution, same ndim
        Ground truth: boolean, or 0/1 values (1 = inside).
    tolerance : float, default 0.0
        Radius in samples/pixels (1 to 3 spatial axes when > 0).

    Returns
    -------
    Tensor of shape (B,)
        1.0 (hit), 0.0 (miss) or NaN (empty mask).

    References
    ----------
    Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016.
    """
    tolerance = check_float(tolerance, "tolerance", low=0.0)
    a, m = _prep(attribution, mask)
    flat = a.flatten(1)
    is_max = (flat == flat.amax(1, keepdim=True)).reshape(a.shape)
    region = _dilate(m, tolerance) if tolerance > 0 else m
    hit = (is_max & region).flatten(1).any(1).to(a.dtype)
    return _nan_if_empty(hit, m)


@caller("energy_pointing_game")
def energy_pointing_game(attribution: torch.Tensor | Attribution, mask: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game: share of the positive attribution inside the mask.

    ``sum(relu(a) * m) / sum(relu(a))`` (Score-CAM's metric, defined there on non-negative
    maps; negative evidence is not "energy"). NaN for an empty mask or no positive attribution.

    References
    ----------
    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for CNNs", CVPRW 2020.
    """
    a, m = _prep(attribution, mask)
    pos = rescaled(a.clamp_min(0).flatten(1))  # exact: a ratio, and its sums cannot overflow
    total = pos.sum(1)
    inside = (pos * m.flatten(1)).sum(1)
    value = torch.where(
        total > 0,
        inside / torch.where(total > 0, total, torch.ones_like(total)),
        torch.full_like(total, float("nan")),
    )
    return _nan_if_empty(value, m)


@caller("relevance_mass")
def relevance_mass(
    attribution: torch.Tensor | Attribution, mask: torch.Tensor, *, positive: bool = False
) -> torch.Tensor:
    """Relevance mass accuracy: ``sum(a inside mask) / sum(a)``.

    Signed, as Quantus' ``RelevanceMassAccuracy`` (its ``normalise`` by the maximum does not
    change a ratio); ``positive=True`` uses the positive part only (then equal to
    :func:`energy_pointing_game`).

    Parameters
    ----------
    attribution : Tensor of shape (B, C, *spatial) or Attribution
    mask : Tensor broadcastable to the attribution, same ndim
        Ground truth: boolean, or 0/1 values (1 = inside).
    positive : bool, default False
        Use ``max(a, 0)`` instead of the signed attribution.

    Returns
    -------
    Tensor of shape (B,)
        NaN for an empty mask, and NaN where ``sum(a) == 0`` (an all-zero map, or with
        ``positive=True`` no positive attribution): the ratio is undefined there, as in
        :func:`energy_pointing_game`, and :func:`evaluate` leaves NaN out of its means. (The
        grid pointing game scores 0 instead, Rao et al.'s convention for its positive mass.)

    References
    ----------
    Arras et al., "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural
    network explanations", Information Fusion 2022.
    """
    positive = check_bool(positive, "positive")
    a, m = _prep(attribution, mask)
    if positive:
        a = a.clamp_min(0)
    flat = rescaled(a.flatten(1))  # exact: a ratio, and its sums cannot overflow
    total = flat.sum(1)
    defined = total != 0
    inside = (flat * m.flatten(1)).sum(1)
    value = torch.where(
        defined,
        inside / torch.where(defined, total, torch.ones_like(total)),
        torch.full_like(total, float("nan")),
    )
    return _nan_if_empty(value, m)


@caller("relevance_rank_accuracy")
def relevance_rank_accuracy(attribution: torch.Tensor | Attribution, mask: torch.Tensor) -> torch.Tensor:
    """Relevance rank accuracy: fraction of the K highest attributions inside the mask, K = |mask|.

    Ties at the K-th value are broken by position (earlier first).

    References
    ----------
    Arras et al., Information Fusion 2022.
    """
    a, m = _prep(attribution, mask)
    flat, mf = a.flatten(1), m.flatten(1)
    k = mf.sum(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    inside = mf.gather(1, order)
    top = torch.arange(flat.shape[1], device=a.device)[None, :] < k[:, None]
    value = (inside & top).sum(1).to(a.dtype) / k.clamp_min(1).to(a.dtype)
    return _nan_if_empty(value, m)


@caller("top_q_iou")
def top_q_iou(attribution: torch.Tensor | Attribution, mask: torch.Tensor, *, q: float = 0.1) -> torch.Tensor:
    """IoU between the top-``q`` fraction of the attribution and the mask (a box or a segmentation).

    The region holds the ``max(1, round(q * n))`` largest attribution elements (ties broken by
    position); the score is ``|region & mask| / |region | mask|``.

    Parameters
    ----------
    q : float in (0, 1], default 0.1
    """
    q = check_float(q, "q", low=0.0, high=1.0, closed="right")
    a, m = _prep(attribution, mask)
    flat, mf = a.flatten(1), m.flatten(1)
    n = flat.shape[1]
    k = max(1, int(round(q * n)))
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    region = torch.zeros_like(mf).scatter_(1, order, True)
    inter = (region & mf).sum(1).to(a.dtype)
    union = (region | mf).sum(1).to(a.dtype)
    return _nan_if_empty(inter / union, m)


# ---------------------------------------------------------------------------- classes
class _Localisation(Metric):
    higher_is_better: ClassVar[bool | None] = True
    requires_mask: ClassVar[bool] = True

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: Any = None,
        *,
        explainer: Any = None,
        mask: torch.Tensor | None = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return self._compute(attribution, self._need(mask, "a ground-truth mask (mask=...)"))

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PointingGame(_Localisation):
    """:func:`pointing_game` as a metric class (``tolerance`` in samples/pixels)."""

    def __init__(self, *, tolerance: float = 0.0) -> None:
        self.tolerance = check_float(tolerance, "tolerance", low=0.0)

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return pointing_game(attribution, mask, tolerance=self.tolerance)


class EnergyPointingGame(_Localisation):
    """:func:`energy_pointing_game` as a metric class."""

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return energy_pointing_game(attribution, mask)


class RelevanceMass(_Localisation):
    """:func:`relevance_mass` as a metric class."""

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = check_bool(positive, "positive")

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return relevance_mass(attribution, mask, positive=self.positive)


class RelevanceRankAccuracy(_Localisation):
    """:func:`relevance_rank_accuracy` as a metric class."""

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return relevance_rank_accuracy(attribution, mask)


class TopQIoU(_Localisation):
    """:func:`top_q_iou` as a metric class."""

    def __init__(self, *, q: float = 0.1) -> None:
        self.q = check_float(q, "q", low=0.0, high=1.0, closed="right")

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return top_q_iou(attribution, mask, q=self.q)
