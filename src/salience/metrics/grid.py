"""Grids for the grid pointing game: compose inputs of different classes into one input whose cells
have known labels (:func:`~salience.metrics.grid_pointing_game` scores the attribution mass per cell).

Images become an n x n mosaic (VAR, Böhle et al., Rao et al.); signals become a "time grid" of k
inputs one after another along time; any layout works by naming the grid axes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .._validation import (
    check_batch_size,
    check_bool,
    check_float,
    check_generator,
    check_input,
    check_int,
    check_option,
)
from ..engine import make_score
from ..engine._forward import OutputLike, check_output
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..layout import Layout, LayoutLike
from ..targets import Output

__all__ = ["Grid", "GridBatch", "make_grid"]

#: torch's name of linear interpolation for 1, 2 and 3 interpolated axes
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _int_tensor(value: Any, name: str, expected: str) -> torch.Tensor:
    """``value`` (a sequence or tensor of ints) as a LongTensor, or ParameterError."""
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise ParameterError(
            f"The {name!r} parameter of {current_caller()} must hold {expected} (int64 values). Got {value!r} "
            f"instead ({err})."
        ) from err
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or t.device.type == "meta":
        raise ParameterError(
            f"The {name!r} parameter of {current_caller()} must hold {expected}. Got a tensor of dtype "
            f"{t.dtype} on {t.device.type} instead."
        )
    return t.long()


class GridBatch(NamedTuple):
    """Every (grid, cell) pair as one row: explain ``inputs`` for ``targets`` and score ``cells``."""

    inputs: torch.Tensor  # (G * n_cells, C, *S), each composite repeated once per cell
    targets: torch.Tensor  # (G * n_cells,), the label of the cell
    cells: torch.Tensor  # (G * n_cells,), the cell index
    classes: torch.Tensor  # (G * n_cells, n_cells), the grid's labels (ClassRelevant's class sets)


@dataclass(frozen=True, eq=False)
class Grid:
    """Composite inputs with per-cell labels and masks.

    Attributes
    ----------
    inputs : Tensor of shape (G, C, *S)
        The composites.
    labels : LongTensor of shape (G, n_cells)
        The class of each cell, cells numbered row-major over the grid axes.
    masks : BoolTensor of shape (n_cells, *S)
        Cell ``i`` covers ``masks[i]`` (the same in every composite).
    sources : LongTensor of shape (G, n_cells)
        Index into the pool given to :func:`make_grid` of the input in each cell.
    layout : Layout
    axes : tuple of str
        The grid axes, e.g. ``("h", "w")`` or ``("t",)``.
    cells : tuple of int
        Cells per grid axis.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    sources: torch.Tensor
    layout: Layout
    axes: tuple[str, ...]
    cells: tuple[int, ...]

    @property
    def n_cells(self) -> int:
        return int(self.masks.shape[0])

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def expand(self) -> GridBatch:
        """One row per (grid, cell): the composite, the cell's label as target, the cell index and
        the grid's labels (pass ``classes=batch.classes`` to ClassRelevant to compare the cells)."""
        n = self.n_cells
        g = len(self)
        return GridBatch(
            inputs=self.inputs.repeat_interleave(n, dim=0),
            targets=self.labels.reshape(-1),
            cells=torch.arange(n, device=self.labels.device).repeat(g),
            classes=self.labels.repeat_interleave(n, dim=0),
        )

    def __repr__(self) -> str:
        return (
            f"Grid({len(self)} composites of shape {tuple(self.inputs.shape[1:])}, cells "
            f"{'x'.join(map(str, self.cells))} over {self.axes})"
        )


def _edges(length: int, n: int) -> list[int]:
    return [(i * length) // n for i in range(n + 1)]


def _confident(
    x: torch.Tensor,
    labels: torch.Tensor,
    models: Sequence[Any],
    threshold: float,
    layout: Layout,
    batch_size: int | None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Rao et al.'s filter: every model predicts the label with softmax confidence >= threshold
    (on the tensor ``output`` selects, with the extra inputs of the pool's samples)."""
    keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for model in models:
        if not callable(model):
            raise ParameterError(
                f"The 'model' parameter of {current_caller()} must be callable. Got {type(model).__name__}."
            )
        # only the raw outputs are read: Output() binds without a model call
        score = make_score(
            model,
            x,
            Output(),
            batch_size=batch_size,
            layout=layout,
            output=output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
        out = score.reference_output()
        if out.ndim != 2 or out.shape[1] < 2:
            raise ShapeError(
                f"{current_caller()}: the confidence filter needs classifier outputs (N, K) with K >= 2; got "
                f"shape {tuple(out.shape)}."
            )
        if int(labels.max()) >= out.shape[1]:
            raise ParameterError(
                f"{current_caller()}: label {int(labels.max())} is out of range for a model with {out.shape[1]} outputs."
            )
        p = torch.softmax(out.to(torch.promote_types(out.dtype, torch.float32)), dim=1)
        conf = p.gather(1, labels[:, None].to(p.device))[:, 0]
        keep &= ((p.argmax(1) == labels.to(p.device)) & (conf >= threshold)).to(keep.device)
    return keep


def _group(order: list[int], labels: list[int], n: int, distinct: bool) -> list[list[int]]:
    """Consecutive groups of n (``distinct=False``, VAR), or greedy groups of n distinct classes:
    each input joins the first open group that lacks its class; a group is emitted when full."""
    if not distinct:
        return [order[i : i + n] for i in range(0, len(order) - n + 1, n)]
    open_groups: list[list[int]] = []
    done: list[list[int]] = []
    for i in order:
        for grp in open_groups:
            if all(labels[j] != labels[i] for j in grp):
                grp.append(i)
                if len(grp) == n:
                    open_groups.remove(grp)
                    done.append(grp)
                break
        else:
            if n == 1:
                done.append([i])
            else:
                open_groups.append([i])
    return done


@caller("make_grid")
def make_grid(
    x: torch.Tensor,
    labels: Any,
    cells: int | Sequence[int] | None = None,
    *,
    axes: Sequence[str] | None = None,
    layout: LayoutLike | None = None,
    resize: bool | None = None,
    mode: str = "area",
    distinct: bool = True,
    model: Any = None,
    min_confidence: float | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Grid:
    """Compose a pool of inputs into grids whose cells hold inputs of different classes.

    Parameters
    ----------
    x : Tensor of shape (N, C, *S)
        The pool of inputs.
    labels : sequence or Tensor of shape (N,)
        The class of each input.
    cells : int or sequence of ints, optional
        Cells per grid axis; an int is used for every grid axis. Default: 2 x 2 for two grid axes
        (VAR's and Böhle/Rao's image grid), 4 for one (a time grid of 4 segments).
    axes : sequence of str, optional
        The axes along which cells are placed. Default ``("h", "w")`` for layouts with h and w
        (images, video frames), else ``("t",)``.
    layout : str or Layout, optional
        Axis names of ``x`` (inferred from its rank when None).
    resize : bool, optional
        True: each input is resized to its cell so the composite has the size of one input (VAR
        resizes 224-pixel images to 112 for a 224-pixel 2 x 2 mosaic); cells differ by at most one
        element when a size does not divide. False: inputs are placed at full size (the
        composite is ``cells`` times larger along each grid axis). Default: True for image grids,
        False for time grids (resampling a signal would change its frequency content).
    mode : {"area", "nearest", "linear"}, default "area"
        Resampling when ``resize``: area averaging (antialiased, any rank; VAR resizes the raw
        images with PIL's antialiased bilinear filter, which a pre-sized tensor cannot repeat),
        nearest, or torch's (bi/tri)linear interpolation.
    distinct : bool, default True
        Every grid holds different classes (Böhle/Rao): inputs are taken in pool order and each
        joins the first incomplete grid that lacks its class; inputs left in incomplete grids are
        dropped. False: consecutive groups, classes may repeat (VAR's ImageNet grids).
    model : callable or sequence of callables, optional
        With ``min_confidence``: keep only inputs that every model classifies as their label with
        softmax confidence >= ``min_confidence`` (Rao et al.'s filter; VAR's demo has none).
    min_confidence : float in [0, 1], optional
    batch_size : int, optional
        Rows per model call of the confidence filter.
    generator : torch.Generator, optional
        Shuffle the pool first (VAR shuffles with a fixed seed); the global RNG is never used.
    output : str, int or callable, optional
        For the confidence filter: the tensor of a structured model output (a tuple, a dict, a
        ``ModelOutput``) holding the class scores; a key, an index or a callable. None: a tensor
        as it is, a mapping's ``"logits"``.
    forward_args, forward_kwargs : sequence, dict, optional
        For the confidence filter: extra inputs of every model call, ``model(rows,
        *forward_args, **forward_kwargs)``; tensors whose first axis has length N are
        per-sample (each input of the pool is classified with its own entries).

    Returns
    -------
    Grid

    References
    ----------
    Böhle, Fritz & Schiele, "Convolutional Dynamic Alignment Networks", CVPR 2021 (grid pointing
    game); Rao, Böhle & Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022;
    Walter, Vreeken & Fischer, arXiv:2503.07346, 2025 (VAR's 2 x 2 ImageNet grids).

    Examples
    --------
    >>> import torch
    >>> signals = torch.randn(8, 2, 100)  # a pool of 8 signals, 4 classes
    >>> grid = make_grid(signals, [0, 1, 2, 3, 0, 1, 2, 3], cells=4)  # time grids of 4 segments
    >>> grid.inputs.shape, grid.labels.tolist(), grid.masks.shape
    (torch.Size([2, 2, 400]), [[0, 1, 2, 3], [0, 1, 2, 3]], torch.Size([4, 400]))
    """
    x = check_input(x)
    lay = Layout.infer(x, layout)
    if lay.names[1] != "c":
        raise ShapeError(f"{current_caller()} needs a channels-first layout 'b c ...'. Got {lay}.")
    lab = _int_tensor(labels, "labels", f"one integer class per input, shape ({x.shape[0]},)")
    if lab.shape != (x.shape[0],):
        raise ParameterError(
            f"The 'labels' parameter of {current_caller()} must hold one integer class per input, shape "
            f"({x.shape[0]},). Got {tuple(lab.shape)} of dtype {lab.dtype} instead."
        )
    if axes is None:
        axes = ("h", "w") if lay.is_image_like else ("t",)
    axes = tuple(axes)
    pos = lay.axes(*axes)
    if "b" in axes or "c" in axes or len(set(axes)) != len(axes):
        raise ParameterError(
            f"The 'axes' parameter of {current_caller()} must name distinct spatial axes of {lay}. Got {axes}."
        )
    if cells is None:
        cells = (2, 2) if len(axes) == 2 else (4,) * len(axes)
    elif isinstance(cells, int) and not isinstance(cells, bool):
        cells = (cells,) * len(axes)
    elif (
        isinstance(cells, (str, bytes, bool))
        or not hasattr(cells, "__iter__")
        or getattr(cells, "ndim", 1) == 0
    ):
        raise ParameterError(
            f"The 'cells' parameter of {current_caller()} must be None, an int or a sequence of ints (cells "
            f"per grid axis {axes}). Got {cells!r} instead."
        )
    cells = tuple(check_int(c, "cells", low=1) for c in cells)
    if len(cells) != len(axes):
        raise ParameterError(
            f"The 'cells' parameter of {current_caller()} needs one count per grid axis {axes}. Got {cells}."
        )
    if resize is None:
        resize = set(axes) >= {"h", "w"}
    resize = check_bool(resize, "resize")
    mode = check_option(mode, "mode", options=("area", "nearest", "linear"))
    distinct = check_bool(distinct, "distinct")
    batch_size = check_batch_size(batch_size)
    output = check_output(output, current_caller())
    if (model is None) != (min_confidence is None):
        raise ParameterError(
            f"{current_caller()}: the confidence filter needs both model=... and min_confidence=... ."
        )
    if model is None and (output is not None or forward_args or forward_kwargs):
        raise ParameterError(
            f"{current_caller()}: output=, forward_args= and forward_kwargs= are inputs of the confidence "
            "filter's model calls; pass model=... and min_confidence=... with them."
        )

    keep = torch.ones(x.shape[0], dtype=torch.bool)
    if min_confidence is not None:
        thr = check_float(min_confidence, "min_confidence", low=0.0, high=1.0)
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        keep = _confident(
            x.detach(), lab.to(x.device), models, thr, lay, batch_size, output, forward_args, forward_kwargs
        ).cpu()
    order = torch.arange(x.shape[0])
    if generator is not None:
        check_generator(generator)
        order = order[torch.randperm(x.shape[0], generator=generator, device=generator.device).cpu()]
    order_list = [int(i) for i in order.tolist() if keep[i]]
    n_cells = math.prod(cells)
    groups = _group(order_list, lab.tolist(), n_cells, distinct)
    if not groups:
        raise ShapeError(
            f"{current_caller()}: {len(order_list)} usable inputs (of {x.shape[0]}) do not fill one grid of "
            f"{n_cells} cells{' with different classes' if distinct else ''}."
        )

    spatial = list(x.shape[2:])
    out_size = list(spatial)
    bounds = []  # per grid axis: cell edges in the composite
    for p, n in zip(pos, cells, strict=True):
        length = x.shape[p]
        if resize:
            if length < n:
                raise ShapeError(
                    f"{current_caller()}: axis {lay.names[p]!r} of size {length} cannot hold {n} cells."
                )
            bounds.append(_edges(length, n))
        else:
            bounds.append([i * length for i in range(n + 1)])
            out_size[p - 2] = n * length
    src = torch.tensor(groups, dtype=torch.long)  # (G, n_cells)
    g = src.shape[0]
    composite = x.new_zeros((g, x.shape[1], *out_size))
    masks = torch.zeros((n_cells, *out_size), dtype=torch.bool, device=x.device)
    for cell, index in enumerate(itertools.product(*(range(n) for n in cells))):
        region: list[Any] = [slice(None)] * (len(spatial))
        size = list(spatial)
        for a, (p, i) in enumerate(zip(pos, index, strict=True)):
            lo, hi = bounds[a][i], bounds[a][i + 1]
            region[p - 2] = slice(lo, hi)
            size[p - 2] = hi - lo
        part = x.detach()[src[:, cell].to(x.device)]
        if size != spatial:
            kw = (
                {"mode": _LINEAR[len(spatial)], "align_corners": False}
                if mode == "linear"
                else {"mode": mode}
            )
            if mode == "linear" and len(spatial) not in _LINEAR:
                raise ParameterError(f"{current_caller()}: mode='linear' supports 1 to 3 spatial axes.")
            part = F.interpolate(part, size=size, **kw)
        # (index tuples built first: mypy reads a starred subscript as 3.11-only syntax)
        into_composite = (slice(None), slice(None), *region)
        into_masks = (cell, *region)
        composite[into_composite] = part
        masks[into_masks] = True
    return Grid(
        inputs=composite,
        labels=lab[src].to(x.device),
        masks=masks,
        sources=src,
        layout=lay,
        axes=axes,
        cells=cells,
    )
