"""Maskers: draw masks with values in [0, 1] (1 = keep) over *named* axes, rendered lazily.

A masker turns ``(sample shape, layout)`` into a :class:`MaskPlan`: ``plan(start, stop)`` renders
masks ``start..stop`` of ``plan.n``, each of shape ``plan.shape`` (one entry per non-batch axis of
the layout; 1 on the axes the masker does not act on, so a mask broadcasts over them, e.g. over
channels). Random draws happen once, when the plan is made (small low-resolution grids and
shifts); rendering is deterministic, so the masks do not depend on how they are sliced, and memory
stays bounded by the slice.

One class serves every modality: cells, windows and segments are given per axis *name*
(``{"t": 16}``, ``{"h": 7, "w": 7}``, ``{"t": 4, "h": 7, "w": 7}``, ``{"f": 32}``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

import torch

from .._validation import check_bool, check_float, check_int, make_generator
from ..errors import NamedInit, ParameterError, ShapeError, caller, current_caller
from ..layout import Layout, LayoutLike, as_layout

__all__ = ["Masker", "MaskPlan", "GridMasker", "SlidingWindow", "Segments"]

AxisSizes = int | Mapping[str, int]

_M = TypeVar("_M", bound="Masker")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _named(method: Callable[Concatenate[_M, _P], _R]) -> Callable[Concatenate[_M, _P], _R]:
    """Run a masker's method inside ``caller(type(self).__name__)``: the errors it raises while
    an explainer uses it name the masker, as its constructor's do."""

    @functools.wraps(method)
    def wrapper(self: _M, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with caller(type(self).__name__):
            return method(self, *args, **kwargs)

    return wrapper


class MaskPlan:
    """``n`` masks of shape ``shape`` rendered on demand: ``plan(start, stop) -> (stop-start, *shape)``."""

    def __init__(self, n: int, shape: tuple[int, ...], render: Callable[[int, int], torch.Tensor]) -> None:
        self.n = int(n)
        self.shape = tuple(int(s) for s in shape)
        self._render = render

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        start, stop = max(0, start), min(self.n, stop)
        return self._render(start, stop)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"MaskPlan(n={self.n}, shape={self.shape})"


class Masker(NamedInit):
    """Base class: ``plan(shape, layout, n, generator=..., device=..., dtype=...) -> MaskPlan``.

    ``is_random`` tells whether masks are drawn at random (then ``n`` is required) or are a fixed
    set (sliding windows, segments; ``n`` is ignored and ``plan.n`` says how many).
    """

    is_random: ClassVar[bool] = False

    def plan(
        self,
        shape: Sequence[int],
        layout: LayoutLike,
        n: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> MaskPlan:
        """Prepare the masks for samples of ``shape`` (without the batch axis) in ``layout``."""
        raise NotImplementedError

    def sample(
        self,
        shape: Sequence[int],
        layout: LayoutLike,
        n: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """All masks at once, shape (n, *mask_shape) (for inspection; explainers use :meth:`plan`)."""
        p = self.plan(shape, layout, n, generator=generator, device=device, dtype=dtype)
        return p(0, p.n)


def _sizes(shape: Sequence[int], layout: LayoutLike) -> tuple[Layout, dict[str, int]]:
    lay = as_layout(layout)
    shape = tuple(int(s) for s in shape)
    if len(shape) != lay.ndim - 1:
        raise ShapeError(
            f"{current_caller()}: a sample of layout {lay} has {lay.ndim - 1} dims (no batch axis); got shape {shape}."
        )
    return lay, dict(zip(lay.names[1:], shape, strict=True))


def _per_axis(value: Any, name: str, lay: Layout, sizes: dict[str, int]) -> dict[str, int]:
    """An int for every spatial axis, or a dict of axis name -> positive int (any non-batch axis)."""
    owner = current_caller()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if k not in sizes:
                raise ParameterError(
                    f"The {name!r} parameter of {owner} names axis {k!r}, which is not a non-batch "
                    f"axis of layout {lay} (axes {list(lay.names[1:])})."
                )
            out[k] = check_int(v, f"{name}[{k!r}]", low=1)
        if not out:
            raise ParameterError(f"The {name!r} parameter of {owner} must name at least one axis.")
        return out
    if isinstance(value, Integral) and not isinstance(value, bool):
        v = check_int(value, name, low=1)
        if not lay.spatial:
            raise ParameterError(f"{owner}: layout {lay} has no spatial axis; pass {name} as a dict.")
        return {a: v for a in lay.spatial}
    raise ParameterError(
        f"The {name!r} parameter of {owner} must be a positive int (for every spatial axis) or a "
        f"dict of axis name -> int such as {{'t': 16}} or {{'h': 7, 'w': 7}}. Got {value!r} instead."
    )


def _check_axis_spec(value: Any, name: str, allow_none: bool = True) -> Any:
    """Early (layout-free) validation of an int-or-dict hyperparameter."""
    if value is None and allow_none:
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ParameterError(
                    f"The {name!r} parameter of {current_caller()} must have axis names as keys. Got {k!r}."
                )
            check_int(v, f"{name}[{k!r}]", low=1)
        return dict(value)
    return check_int(value, name, low=1)


class GridMasker(Masker):
    """RISE masks: a low-resolution Bernoulli grid per named axis, upsampled and randomly shifted.

    For an axis of length ``L`` with ``s`` cells the grid is linearly upsampled to
    ``(s + 1) * ceil(L / s)`` exactly as RISE's ``skimage.transform.resize(order=1,
    mode='reflect', anti_aliasing=False)`` (half-pixel centres; beyond the outer cell centres the
    grid is mirrored, not clamped as in ``F.interpolate``) and cropped to ``L`` at a random offset in ``[0, ceil(L / s))``, as in
    RISE. With ``shift=False`` the grid is resized to exactly ``L`` (no crop; ``s == L`` then gives
    element-sized binary cells). Axes without cells get size 1 (the mask is shared along them).

    Parameters
    ----------
    cells : int or dict of str to int, optional
        Cells per axis name, e.g. ``{"t": 16}``, ``{"h": 7, "w": 7}``, ``{"t": 4, "h": 7, "w": 7}``,
        ``{"f": 32}``; an int applies to every spatial axis. Default: 8 per spatial axis (capped
        at the axis length).
    p_keep : float, default 0.5
        Probability that a cell is kept (1).
    shift : bool, default True

    References
    ----------
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018.
    """

    is_random = True

    def __init__(self, cells: AxisSizes | None = None, *, p_keep: float = 0.5, shift: bool = True) -> None:
        self.cells = _check_axis_spec(cells, "cells")
        self.p_keep = check_float(p_keep, "p_keep", low=0.0, high=1.0, closed="right")
        self.shift = check_bool(shift, "shift")

    def __repr__(self) -> str:
        return f"GridMasker(cells={self.cells!r}, p_keep={self.p_keep!r}, shift={self.shift!r})"

    # -- geometry -----------------------------------------------------------------------------
    @_named
    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> _Grid:
        """The grid geometry for samples of ``shape`` in ``layout`` (used by MaskUpdate too)."""
        lay, sizes = _sizes(shape, layout)
        if self.cells is None:
            cells = {a: min(8, sizes[a]) for a in lay.spatial}
            if not cells:
                raise ParameterError(
                    f"{current_caller()}: layout {lay} has no spatial axis; pass cells as a dict."
                )
        else:
            cells = _per_axis(self.cells, "cells", lay, sizes)
        return _Grid(lay, sizes, cells, self.shift)

    @_named
    def plan(
        self,
        shape: Sequence[int],
        layout: LayoutLike,
        n: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> MaskPlan:
        n = check_int(n, "n", low=1)
        gen = _generator(generator)
        grid = self.resolve(shape, layout)
        keep = grid.bernoulli(n, self.p_keep, gen, dtype)
        shifts = grid.shifts(n, gen)
        keep, shifts = keep.to(device), shifts.to(device)
        return MaskPlan(n, grid.mask_shape, lambda a, z: grid.render(keep[a:z], shifts[a:z]))


class _Grid:
    """Geometry of a GridMasker for one sample shape: cell counts and rendering."""

    def __init__(self, lay: Layout, sizes: dict[str, int], cells: dict[str, int], shift: bool) -> None:
        self.layout = lay
        names = lay.names[1:]
        self.axes = [(i, name, sizes[name], cells[name]) for i, name in enumerate(names) if name in cells]
        self.grid_shape = tuple(cells.get(n, 1) for n in names)
        self.mask_shape = tuple(sizes[n] if n in cells else 1 for n in names)
        self.shift = shift
        # cell size per axis: the range of the random offset
        self.cell = [math.ceil(size / s) for _, _, size, s in self.axes]
        self._cache: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def bernoulli(self, n: int, p: float, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
        u = torch.rand((n, *self.grid_shape), generator=gen, device=gen.device, dtype=torch.float64)
        return (u < p).to(dtype)

    def shifts(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Random offsets (n, n_cell_axes) in [0, cell); zeros when ``shift=False``."""
        if not self.shift:
            return torch.zeros((n, len(self.axes)), dtype=torch.long)
        cols = [torch.randint(0, c, (n,), generator=gen, device=gen.device) for c in self.cell]
        return torch.stack(cols, 1) if cols else torch.zeros((n, 0), dtype=torch.long)

    def render(self, grids: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Upsample grids (n, *grid_shape) with offsets (n, n_cell_axes) to masks (n, *mask_shape)."""
        out = grids
        for j, (i, _name, _size, _s) in enumerate(self.axes):
            out = self._axis(out, i + 1, j, shifts[:, j])
        return out

    def _tables(self, j: int, device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two source cells and the weight of every position of the upsampled axis, 1-D.

        With ``shift`` the upsampled axis is only needed up to ``cell - 1 + size`` (the largest
        offset plus the crop), so the tables hold ``size + cell - 1`` entries; a mask shifted by
        ``k`` reads positions ``k .. k + size - 1``. Without ``shift`` they hold ``size`` entries.
        Memory is linear in the axis length (no offsets x positions table).
        """
        key = (j, str(device))
        if key not in self._cache:
            _, _, size, s = self.axes[j]
            cell = self.cell[j]
            if self.shift:
                up = (s + 1) * cell
                o = torch.arange(size + cell - 1)
            else:
                up = size
                o = torch.arange(size)
            src = (o.to(torch.float64) + 0.5) * (s / up) - 0.5
            # beyond the outer cell centres: mirror about them (skimage's mode='reflect', RISE)
            src = torch.where(src < 0, -src, src)
            src = torch.where(src > s - 1, 2 * (s - 1) - src, src).clamp(0, s - 1)
            i0 = src.floor().long().clamp(max=s - 1)
            i1 = (i0 + 1).clamp(max=s - 1)
            w = src - i0.to(torch.float64)
            self._cache[key] = (i0.to(device), i1.to(device), w.to(device))
        return self._cache[key]

    def _axis(self, g: torch.Tensor, dim: int, j: int, shift: torch.Tensor) -> torch.Tensor:
        n = g.shape[0]
        size = self.axes[j][2]
        t0, t1, tw = self._tables(j, g.device)
        if self.shift:
            # positions read by each mask: its own offset only, (n, size)
            pos = shift.to(g.device).reshape(n, 1) + torch.arange(size, device=g.device).reshape(1, size)
            i0, i1, w = t0[pos], t1[pos], tw[pos].to(g.dtype)
        else:
            i0, i1, w = t0.expand(n, size), t1.expand(n, size), tw.to(g.dtype).expand(n, size)
        moved = g.movedim(dim, -1)
        lead = moved.shape[1:-1]
        view = (n,) + (1,) * len(lead) + (size,)
        idx0 = i0.reshape(view).expand(n, *lead, size)
        idx1 = i1.reshape(view).expand(n, *lead, size)
        w = w.reshape(view)
        a = moved.gather(-1, idx0)
        out = torch.addcmul(a, moved.gather(-1, idx1) - a, w)
        return out.movedim(-1, dim)


class SlidingWindow(Masker):
    """Occlusion masks: one box per window position, 0 inside the box and 1 elsewhere.

    Windows start at ``k * stride`` for ``k = 0 .. ceil((L - window) / stride)`` along each
    windowed axis (the last one is cut at the end of the axis, as in Captum), so every position is
    covered when ``stride <= window``. Axes without a window are occluded as a whole (e.g. all
    channels together); name ``"c"`` in ``window`` to occlude channels separately.

    Parameters
    ----------
    window : int or dict of str to int
        Window length per axis name (an int applies to every spatial axis).
    stride : int or dict of str to int, optional
        Step per axis; default the window (disjoint windows that tile the input).
    """

    def __init__(self, window: AxisSizes, stride: AxisSizes | None = None) -> None:
        self.window = _check_axis_spec(window, "window", allow_none=False)
        self.stride = _check_axis_spec(stride, "stride")

    def __repr__(self) -> str:
        return f"SlidingWindow(window={self.window!r}, stride={self.stride!r})"

    @_named
    def plan(
        self,
        shape: Sequence[int],
        layout: LayoutLike,
        n: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> MaskPlan:
        owner = current_caller()
        lay, sizes = _sizes(shape, layout)
        window = _per_axis(self.window, "window", lay, sizes)
        if self.stride is None:
            stride = dict(window)
        elif isinstance(self.stride, Mapping):
            stride = dict(window)
            stride.update(_per_axis(self.stride, "stride", lay, sizes))
        else:
            stride = {a: check_int(self.stride, "stride", low=1) for a in window}
        extra = set(stride) - set(window)
        if extra:
            raise ParameterError(f"{owner}: stride names axes {sorted(extra)} that have no window.")
        names = lay.names[1:]
        # one 1-D occlusion indicator per windowed axis: (count, L)
        axes, boxes = [], []
        for i, name in enumerate(names):
            if name not in window:
                continue
            size, w, st = sizes[name], window[name], stride[name]
            if w > size:
                raise ParameterError(
                    f"{owner}: the window along {name!r} ({w}) is longer than the axis ({size})."
                )
            count = math.ceil((size - w) / st) + 1
            start = torch.arange(count, device=device).reshape(-1, 1) * st
            pos = torch.arange(size, device=device).reshape(1, -1)
            boxes.append(((pos >= start) & (pos < start + w)).to(dtype))
            axes.append(i)
        counts = [b.shape[0] for b in boxes]
        total = math.prod(counts)
        mask_shape = tuple(sizes[n] if n in window else 1 for n in names)

        def render(a: int, z: int) -> torch.Tensor:
            k = torch.arange(a, z, device=device)
            box = torch.ones((z - a, *mask_shape), dtype=dtype, device=device)
            for j in reversed(range(len(boxes))):  # row-major window order
                kj = k % counts[j]
                k = k // counts[j]
                view = [z - a] + [1] * len(mask_shape)
                view[axes[j] + 1] = mask_shape[axes[j]]
                box = box * boxes[j][kj].reshape(view)
            return 1 - box

        return MaskPlan(total, mask_shape, render)


class Segments(Masker):
    """Segments of one axis (long time series): equal windows or user-given boundaries.

    Deterministic by default: one mask per segment, 0 on that segment and 1 elsewhere (occlusion of
    segments). With ``p_keep`` it is random: every mask keeps each segment independently with
    probability ``p_keep`` (RISE over segments).

    Parameters
    ----------
    n_segments : int, optional
        Number of (nearly) equal segments; boundaries at ``round(k * L / n_segments)``.
    boundaries : sequence of int, optional
        Interior cut points ``0 < b_1 < ... < b_k < L`` (instead of ``n_segments``).
    axis : str, default "t"
    p_keep : float, optional
        Make random masks (then the explainer passes ``n``).
    """

    def __init__(
        self,
        n_segments: int | None = None,
        *,
        boundaries: Sequence[int] | None = None,
        axis: str = "t",
        p_keep: float | None = None,
    ) -> None:
        owner = current_caller()
        if (n_segments is None) == (boundaries is None):
            raise ParameterError(f"{owner} needs exactly one of n_segments=... or boundaries=[...].")
        self.n_segments = None if n_segments is None else check_int(n_segments, "n_segments", low=1)
        if boundaries is not None:
            b = [check_int(v, "boundaries[i]", low=1) for v in boundaries]
            if any(x >= y for x, y in zip(b, b[1:], strict=False)):
                raise ParameterError(
                    f"The 'boundaries' parameter of {owner} must be strictly increasing. Got {b}."
                )
            boundaries = tuple(b)
        self.boundaries = boundaries
        if not isinstance(axis, str):
            raise ParameterError(
                f"The 'axis' parameter of {owner} must be an axis name. Got {axis!r} instead."
            )
        self.axis = axis
        self.p_keep = (
            None if p_keep is None else check_float(p_keep, "p_keep", low=0.0, high=1.0, closed="right")
        )

    @property
    def is_random(self) -> bool:  # type: ignore[override]
        return self.p_keep is not None

    def __repr__(self) -> str:
        what = (
            f"n_segments={self.n_segments}"
            if self.boundaries is None
            else f"boundaries={list(self.boundaries)}"
        )
        return f"Segments({what}, axis={self.axis!r}, p_keep={self.p_keep!r})"

    def segment_ids(self, size: int) -> torch.Tensor:
        """The segment index of every position along an axis of length ``size``."""
        if self.boundaries is not None:
            if self.boundaries[-1] >= size:
                raise ParameterError(
                    f"Segments: boundary {self.boundaries[-1]} is outside the axis of length {size}."
                )
            cuts = torch.tensor(self.boundaries)
        else:
            k = min(int(self.n_segments), size)  # type: ignore[arg-type]
            cuts = torch.tensor([round(i * size / k) for i in range(1, k)], dtype=torch.long)
        return torch.bucketize(torch.arange(size), cuts, right=True)

    @_named
    def plan(
        self,
        shape: Sequence[int],
        layout: LayoutLike,
        n: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> MaskPlan:
        lay, sizes = _sizes(shape, layout)
        if self.axis not in sizes:
            raise ParameterError(f"{current_caller()}: axis {self.axis!r} is not in layout {lay}.")
        names = lay.names[1:]
        dim = names.index(self.axis)
        ids = self.segment_ids(sizes[self.axis]).to(device)
        n_seg = int(ids.max()) + 1
        mask_shape = tuple(sizes[a] if a == self.axis else 1 for a in names)
        view = [1] * len(names)
        view[dim] = sizes[self.axis]

        if self.p_keep is None:

            def render(a: int, z: int) -> torch.Tensor:
                k = torch.arange(a, z, device=device).reshape(-1, 1)
                return (ids.reshape(1, -1) != k).to(dtype).reshape(z - a, *mask_shape)

            return MaskPlan(n_seg, mask_shape, render)

        n = check_int(n, "n", low=1)
        gen = _generator(generator)
        u = torch.rand((n, n_seg), generator=gen, device=gen.device, dtype=torch.float64)
        keep = (u < self.p_keep).to(dtype).to(device)
        return MaskPlan(n, mask_shape, lambda a, z: keep[a:z][:, ids].reshape(z - a, *mask_shape))


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return make_generator(generator)
