"""More localisation metrics: Focus on mosaics, localisation AUC, top-k intersection and
attribution localisation (Quantus' ``Focus``, ``AUC``, ``TopKIntersection`` and
``AttributionLocalisation``).

As in :mod:`~salience.metrics.localisation`, the attribution is (B, C or 1, *spatial) and the
ground-truth mask has the same ndim, broadcastable to it (boolean, or 0/1 values); every function
returns one value per sample, shape (B,), NaN where the mask of a sample is empty.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_bool
from ..attribution import Attribution
from ..errors import ParameterError, ShapeError, caller, current_caller
from ._checks import check_mask_values, unpack
from ._stats import rankdata
from .grid import Grid
from .localisation import _Localisation, _nan_if_empty, _prep, energy_pointing_game, relevance_mass
from .similarity import _top_k_count

__all__ = [
    "focus",
    "localisation_auc",
    "top_k_intersection",
    "attribution_localisation",
    "Focus",
    "LocalisationAUC",
    "TopKIntersection",
    "AttributionLocalisation",
]


def _cells_region(a: torch.Tensor, positions: Any, grid: Grid | torch.Tensor) -> torch.Tensor:
    """The union of the cells flagged in ``positions`` (M, n_cells), as a mask (M, 1, *S)."""
    masks = grid.masks if isinstance(grid, Grid) else grid
    if not isinstance(masks, torch.Tensor) or masks.ndim < 2:
        raise ParameterError(
            f"The 'grid' parameter of {current_caller()} must be a Grid or cell masks (n_cells, *S). Got "
            f"{type(grid).__name__}."
        )
    masks = check_mask_values(masks, "cell masks") != 0
    p = check_mask_values(positions, "mask (the cells of the explained class)") != 0
    n_cells = masks.shape[0]
    if p.shape != (a.shape[0], n_cells):
        raise ShapeError(
            f"{current_caller()}: with grid=..., the mask flags the cells of the explained class, shape "
            f"({a.shape[0]}, {n_cells}) (one row per map). Got {tuple(p.shape)}."
        )
    if tuple(masks.shape[1:]) != tuple(a.shape[2:]):
        raise ShapeError(
            f"{current_caller()}: maps of spatial shape {tuple(a.shape[2:])} do not match cells of shape "
            f"{tuple(masks.shape[1:])}."
        )
    region = (p.to(masks.device).to(torch.float64) @ masks.flatten(1).to(torch.float64)) > 0
    return region.reshape(a.shape[0], 1, *masks.shape[1:]).to(a.device)


@caller("focus")
def focus(
    attribution: torch.Tensor | Attribution, mask: torch.Tensor, *, grid: Grid | torch.Tensor | None = None
) -> torch.Tensor:
    """Focus: the share of the positive attribution that falls on the cells of the explained class.

    ``sum(relu(a) in the class's cells) / sum(relu(a))`` on a mosaic (Arias-Duart et al.: a 2 x 2
    mosaic holding two images of the explained class and two of others; any grid of
    :func:`~salience.metrics.make_grid` works, ``make_grid(..., distinct=False)`` to repeat classes).
    The positive part is taken per element, channels included, then summed (Quantus).

    Parameters
    ----------
    attribution : Tensor of shape (M, C, *S) or Attribution
    mask : Tensor
        Without ``grid``: the region of the explained class, same ndim as the attribution,
        broadcastable to it. With ``grid``: which cells hold the explained class, shape
        (M, n_cells), boolean or 0/1 (Quantus' ``custom_batch`` of
        (top_left, top_right, bottom_left, bottom_right) flags;
        ``grid.labels[composite] == target[:, None]`` for a :class:`~salience.metrics.Grid`).
    grid : Grid or BoolTensor of shape (n_cells, *S), optional
        The cells (their masks, row-major over the grid axes).

    Returns
    -------
    Tensor of shape (M,)
        In [0, 1]; NaN where the map has no positive attribution or no cell holds the class.
        (Quantus adds 1e-9 to the denominator and scores such a map 0.)

    References
    ----------
    Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos, "Focus! Rating XAI Methods and Finding
    Biases", FUZZ-IEEE 2022.
    """
    if grid is not None:
        a, _, _ = unpack(attribution, None, None)
        mask = _cells_region(a, mask, grid)
        attribution = a
    a, m = _prep(attribution, mask)  # errors name focus; then the ratio of energy_pointing_game
    return energy_pointing_game(a, m)


@caller("localisation_auc")
def localisation_auc(attribution: torch.Tensor | Attribution, mask: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of the attribution as a detector of the mask's elements.

    The probability that an element inside the mask has a larger attribution than one outside,
    ties counting 1/2 (the Mann-Whitney statistic, computed from average ranks: exactly
    ``sklearn.metrics.roc_auc_score(mask, attribution)``, Quantus' ``AUC``). Signed values.

    Returns
    -------
    Tensor of shape (B,)
        In [0, 1], 0.5 for an uninformative map; NaN where the mask is empty or covers
        everything.

    References
    ----------
    Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 2006.
    """
    a, m = _prep(attribution, mask)
    flat, mf = a.flatten(1), m.flatten(1)
    ranks = rankdata(flat.to(torch.float64))
    pos = mf.sum(1).to(torch.float64)
    neg = mf.shape[1] - pos
    u = (ranks * mf).sum(1) - pos * (pos + 1) / 2
    defined = (pos > 0) & (neg > 0)
    value = torch.where(defined, u / torch.where(defined, pos * neg, torch.ones_like(pos)), float("nan"))
    return value.to(a.dtype)


@caller("top_k_intersection")
def top_k_intersection(
    attribution: torch.Tensor | Attribution,
    mask: torch.Tensor,
    *,
    k: int | float = 0.1,
    concept_influence: bool = False,
) -> torch.Tensor:
    """Share of the ``k`` largest attribution elements that lie inside the mask.

    Ties are broken by position (earlier first). With ``k = |mask|`` this is
    :func:`~salience.metrics.relevance_rank_accuracy`.

    Parameters
    ----------
    attribution : Tensor of shape (B, C, *S) or Attribution
    mask : Tensor broadcastable to the attribution, same ndim
    k : int or float, default 0.1
        A count in [1, n], or a fraction in (0, 1] of the n elements (``max(1, round(k * n))``).
        Quantus' default is 1000 (an image).
    concept_influence : bool, default False
        Divide by the mask's share of the map, ``|mask| / n`` (Theiner et al.): 1 means the top
        elements hit the mask no more often than chance.

    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Theiner, Müller-Budack & Ewerth, "Interpretable Semantic Photo Geolocation", WACV 2022.
    """
    concept_influence = check_bool(concept_influence, "concept_influence")
    a, m = _prep(attribution, mask)
    flat, mf = a.flatten(1), m.flatten(1)
    n = flat.shape[1]
    kk = _top_k_count(k, n)
    top = flat.sort(dim=1, descending=True, stable=True).indices[:, :kk]
    value = mf.gather(1, top).sum(1).to(a.dtype) / kk
    if concept_influence:
        value = value * n / mf.sum(1).clamp_min(1).to(a.dtype)
    return _nan_if_empty(value, m)


@caller("attribution_localisation")
def attribution_localisation(
    attribution: torch.Tensor | Attribution,
    mask: torch.Tensor,
    *,
    positive: bool = True,
    weighted: bool = False,
) -> torch.Tensor:
    """Attribution localisation: the share of the (positive) attribution inside the mask.

    ``mu = sum(a+ in mask) / sum(a+)`` (Kohlbrenner et al.); ``weighted`` multiplies by
    ``n / |mask|`` (the map's size over the mask's), so a map spread evenly scores 1 whatever
    the object's size. With ``positive=True`` this is
    :func:`~salience.metrics.energy_pointing_game`, with ``positive=False`` the signed ratio of
    :func:`~salience.metrics.relevance_mass` except that a ratio above 1 (negative attribution
    outside the mask) is NaN, as in Quantus.

    Parameters
    ----------
    positive : bool, default True
        Use ``max(a, 0)`` (the definition); False keeps the sign. Quantus' default takes ``|a|``
        instead (``abs=True``): pass ``attribution.abs()`` for that.
    weighted : bool, default False

    Returns
    -------
    Tensor of shape (B,)
        NaN for an empty mask, a zero total, or (signed) a ratio above 1.

    References
    ----------
    Kohlbrenner et al., "Towards Best Practice in Explaining Neural Network Decisions with LRP",
    IJCNN 2020.
    """
    positive = check_bool(positive, "positive")
    weighted = check_bool(weighted, "weighted")
    a, m = _prep(attribution, mask)
    value = relevance_mass(a, m, positive=positive)
    value = torch.where(value > 1, torch.full_like(value, float("nan")), value)
    if weighted:
        mf = m.flatten(1)
        value = value * mf.shape[1] / mf.sum(1).clamp_min(1).to(value.dtype)
    return value


# ---------------------------------------------------------------------------- classes
class Focus(_Localisation):
    """:func:`focus` as a metric class (higher is better). Without ``grid`` the ``mask`` is the
    explained class's region; with ``grid`` it flags the cells holding the class, (M, n_cells)."""

    def __init__(self, *, grid: Grid | torch.Tensor | None = None) -> None:
        if grid is not None and not isinstance(grid, (Grid, torch.Tensor)):
            raise ParameterError(
                f"The 'grid' parameter of Focus must be None, a Grid or cell masks (n_cells, *S). Got "
                f"{type(grid).__name__}."
            )
        self.grid = grid

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return focus(attribution, mask, grid=self.grid)


class LocalisationAUC(_Localisation):
    """:func:`localisation_auc` as a metric class (higher is better; 0.5 is chance)."""

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return localisation_auc(attribution, mask)


class TopKIntersection(_Localisation):
    """:func:`top_k_intersection` as a metric class (higher is better)."""

    def __init__(self, *, k: int | float = 0.1, concept_influence: bool = False) -> None:
        with caller(self.name):
            if isinstance(k, bool) or not isinstance(k, (int, float)):
                raise ParameterError(
                    f"The 'k' parameter of {self.name} must be an int or a float. Got {k!r}."
                )
            _top_k_count(k, 2**62)  # range checks (k <= n is checked per call)
        self.k = k
        self.concept_influence = check_bool(concept_influence, "concept_influence", self.name)

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return top_k_intersection(attribution, mask, k=self.k, concept_influence=self.concept_influence)


class AttributionLocalisation(_Localisation):
    """:func:`attribution_localisation` as a metric class (higher is better)."""

    def __init__(self, *, positive: bool = True, weighted: bool = False) -> None:
        self.positive = check_bool(positive, "positive", self.name)
        self.weighted = check_bool(weighted, "weighted", self.name)

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        return attribution_localisation(attribution, mask, positive=self.positive, weighted=self.weighted)
