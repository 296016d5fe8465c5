"""Grid pointing game: the share of an attribution map's positive mass inside the cell it
explains, on the composites of :func:`~salience.metrics.make_grid` (Böhle et al., Rao et al.)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .._validation import check_option
from ..attribution import Attribution
from ..errors import ParameterError, ShapeError, caller, current_caller
from ._checks import check_mask_values, check_values
from ._stats import rescaled
from .grid import _LINEAR, Grid, _int_tensor
from .localisation import _Localisation

__all__ = ["grid_pointing_game", "GridPointingGame"]

#: a total positive mass at or below this scores 0 (Rao et al.)
EPS = 1e-7


@caller("grid_pointing_game")
def grid_pointing_game(
    attributions: torch.Tensor | Attribution,
    grid: Grid | torch.Tensor,
    cells: torch.Tensor | Sequence[int] | None = None,
    *,
    reduce: str = "sum",
) -> torch.Tensor:
    """Share of the positive attribution mass inside the explained cell (Rao et al.'s GridPG).

    For each attribution map ``A`` (explaining the class of cell ``i``):

    1. channels are reduced (``reduce``), giving one map (1, *S');
    2. the map is upsampled to the composite's size with (bi/tri)linear interpolation
       (``align_corners=False``) when its size differs (CAMs, reduced layers);
    3. ``A+ = max(A, 0)``;
    4. score = ``sum(A+ in cell i) / sum(A+)``, or 0 when ``sum(A+) <= 1e-7``.

    Chance level is ``1 / n_cells`` for a map spread evenly (0.25 on a 2 x 2 grid).

    Parameters
    ----------
    attributions : Tensor of shape (M, C', *S') or Attribution
        Input-space attributions of the composites (C' may be 1, S' may be coarser than S).
    grid : Grid or BoolTensor of shape (n_cells, *S)
        The grid (its masks) or the cell masks themselves.
    cells : LongTensor of shape (M,), optional
        The cell each map explains. Default: the order of :meth:`Grid.expand`
        (``arange(n_cells)`` repeated), which needs ``M`` to be a multiple of ``n_cells``.
    reduce : {"sum", "positive", "abs"}, default "sum"
        Channel reduction before the positive part: the signed sum over channels (Rao et al.'s
        choice for pixel-wise maps; positive and negative channel contributions cancel), the sum
        of each channel's positive part, or the sum of absolute values (VAR's display uses the
        channel mean of ``|A|``; the score is invariant to the 1/C factor).

    Returns
    -------
    Tensor of shape (M,)
        Scores in [0, 1].
    """
    if isinstance(attributions, Attribution):
        if attributions.domain is not None:
            raise ShapeError(
                f"{current_caller()} needs input-space attributions; got attributions in {attributions.domain!r}."
            )
        attributions = attributions.values
    if not isinstance(attributions, torch.Tensor) or attributions.ndim < 3:
        raise ShapeError(
            f"{current_caller()}: attributions must be a tensor (M, C, *S). Got {type(attributions).__name__}."
        )
    attributions = check_values(attributions, "attributions", min_ndim=3)
    masks = grid.masks if isinstance(grid, Grid) else grid
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool:
        got = f"a tensor of dtype {masks.dtype}" if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ParameterError(
            f"The 'grid' parameter of {current_caller()} must be a Grid or a boolean mask tensor (n_cells, *S). "
            f"Got {got} instead."
        )
    check_mask_values(masks, "cell masks")  # data on a real device
    if masks.ndim < 2 or 0 in masks.shape:
        raise ShapeError(
            f"{current_caller()}: the cell masks must have shape (n_cells, *S) with at least one cell and one "
            f"element along every axis. Got shape {tuple(masks.shape)} instead."
        )
    reduce = check_option(reduce, "reduce", options=("sum", "positive", "abs"))
    a = attributions
    m = a.shape[0]
    n_cells = masks.shape[0]
    if cells is None:
        if m % n_cells:
            raise ShapeError(
                f"{current_caller()}: {m} maps for {n_cells} cells; pass cells=... (the cell of each map)."
            )
        cells_t = torch.arange(n_cells).repeat(m // n_cells)
    else:
        expected = f"one cell index in [0, {n_cells}) per map, shape ({m},)"
        cells_t = _int_tensor(cells, "cells", expected).reshape(-1)
        if cells_t.shape != (m,):
            raise ParameterError(
                f"The 'cells' parameter of {current_caller()} must hold {expected}. Got {cells_t.numel()} indices instead."
            )
        outside = (cells_t < 0) | (cells_t >= n_cells)
        if bool(outside.any()):
            raise ParameterError(
                f"The 'cells' parameter of {current_caller()} must hold {expected}. Got {int(outside.sum())} index(es) "
                f"outside, e.g. {int(cells_t[outside][0])}."
            )
    if a.ndim - 2 != masks.ndim - 1:
        raise ShapeError(
            f"{current_caller()}: maps of shape {tuple(a.shape)} do not match cell masks of shape {tuple(masks.shape)}."
        )
    a = a.to(torch.promote_types(a.dtype, torch.float32))
    if reduce == "sum":
        a = a.sum(1, keepdim=True)
    elif reduce == "positive":
        a = a.clamp(min=0).sum(1, keepdim=True)
    else:
        a = a.abs().sum(1, keepdim=True)
    size = tuple(masks.shape[1:])
    if tuple(a.shape[2:]) != size:
        if len(size) not in _LINEAR:
            raise ShapeError(f"{current_caller()}: cannot upsample maps with {len(size)} spatial axes.")
        a = F.interpolate(a, size=size, mode=_LINEAR[len(size)], align_corners=False)
    pos = a[:, 0].clamp(min=0)
    total = pos.flatten(1).sum(1)  # compared with EPS in the maps' own units (may reach inf)
    # the share is scale-invariant: computed on maps rescaled exactly by a power of two, its
    # sums cannot overflow
    scaled = rescaled(pos)
    inside = (scaled * masks[cells_t.to(masks.device)].to(pos.device, pos.dtype)).flatten(1).sum(1)
    whole = scaled.flatten(1).sum(1)
    safe = torch.where(total > EPS, whole, torch.ones_like(whole))
    return torch.where(total > EPS, inside / safe, torch.zeros_like(total))


class GridPointingGame(_Localisation):
    """:func:`grid_pointing_game` as a metric class (higher is better; chance is ``1 / n_cells``).

    The ground-truth ``mask`` is the explained cell of each map: a boolean (or 0/1) tensor of
    shape (M, *S) or (M, 1, *S), ``grid.masks[batch.cells]`` for the rows of
    :meth:`Grid.expand`. Each map scores ``sum(A+ in its cell) / sum(A+)``, 0 when
    ``sum(A+) <= 1e-7`` (Rao et al.); maps coarser than the composite are upsampled first.

    Parameters
    ----------
    reduce : {"sum", "positive", "abs"}, default "sum"
        Channel reduction (see :func:`grid_pointing_game`).

    Examples
    --------
    >>> grid = make_grid(signals, labels, cells=4)  # doctest: +SKIP
    >>> batch = grid.expand()  # doctest: +SKIP
    >>> evaluate({"IG": ig}, [GridPointingGame()], model,
    ...          (batch.inputs, batch.targets, grid.masks[batch.cells]))  # doctest: +SKIP
    """

    higher_is_better: ClassVar[bool | None] = True

    def __init__(self, *, reduce: str = "sum") -> None:
        self.reduce = check_option(reduce, "reduce", options=("sum", "positive", "abs"))

    def _compute(self, attribution: Any, mask: torch.Tensor) -> torch.Tensor:
        with caller(self.name):
            mask, cells = self._cells(attribution, mask)
        return grid_pointing_game(attribution, mask != 0, cells, reduce=self.reduce)

    def _cells(self, attribution: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The cell masks (M, *S), checked against the maps, and each map's cell index."""
        if not isinstance(mask, torch.Tensor):
            raise ParameterError(
                f"The 'mask' parameter of {current_caller()} must be a tensor of cell masks (M, *S) or (M, 1, *S). "
                f"Got {type(mask).__name__} instead."
            )
        mask = check_mask_values(mask)
        values = attribution.values if isinstance(attribution, Attribution) else attribution
        values = check_values(values, "attributions", min_ndim=3)
        if isinstance(values, torch.Tensor) and mask.ndim == values.ndim and mask.ndim >= 3:
            if mask.shape[1] != 1:
                raise ShapeError(
                    f"{current_caller()}: a mask with the maps' number of dims must have one channel, shape (M, 1, *S). "
                    f"Got {tuple(mask.shape)} instead."
                )
            mask = mask[:, 0]
        if isinstance(values, torch.Tensor) and mask.shape[0] != values.shape[0]:
            raise ShapeError(
                f"{current_caller()}: one cell mask per map is needed, shape ({values.shape[0]}, *S). "
                f"Got {tuple(mask.shape)} instead."
            )
        return mask, torch.arange(mask.shape[0])
