"""Feature groups: which input elements are removed, kept or permuted together.

A grouping labels every element of a sample with an integer group id, like Captum's
``feature_mask``: a tensor broadcastable to the sample (``(1, T)`` shares a time segment across
channels, ``(C, 1)`` makes each channel one group). The perturbation methods over groups
(:class:`~salience.FeatureAblation`, :class:`~salience.FeaturePermutation`,
:class:`~salience.ShapleyValueSampling`, :class:`~salience.KernelShap`, :class:`~salience.Lime`
and :class:`~salience.Occlusion` with ``groups=``) take one as ``groups=``: an integer tensor,
or one of the constructors here, resolved against the explained tensor's shape and
:class:`~salience.layout.Layout` when the method runs. Inside
``InDomain(explainer, domain)`` they resolve against the domain's coefficients, so
:func:`component_groups` makes one group per independent component and :func:`band_groups`
one group per frequency band.

Examples
--------
>>> import torch
>>> from salience.layout import Layout
>>> time_segments(3).resolve((2, 6), Layout("b c t")).ids
tensor([[[0, 0, 1, 1, 2, 2]]])
>>> channel_groups().resolve((2, 6), Layout("b c t")).ids.shape
torch.Size([1, 2, 1])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_bool, check_int
from ..errors import NamedInit, ParameterError, ShapeError, current_caller
from ..layout import LayoutLike, as_layout
from .maskers import AxisSizes, Segments, _check_axis_spec, _per_axis, _sizes

__all__ = [
    "Groups",
    "GroupIds",
    "GroupMask",
    "GroupsLike",
    "as_groups",
    "element_groups",
    "axis_groups",
    "channel_groups",
    "component_groups",
    "time_segments",
    "patch_groups",
    "superpixel_groups",
    "band_groups",
    "cross_groups",
]


@dataclass
class GroupIds:
    """A resolved grouping.

    Attributes
    ----------
    ids : LongTensor of shape (1, *M) or (B, *M)
        The group of every element, ``M`` broadcastable to a sample's shape (1 along the axes a
        group spans whole); one row shared by every sample, or one row per sample.
    n_groups : int
        ``ids.max() + 1`` (ids absent from a sample make groups that change nothing there).
    names : list of str, optional
        A name per group (bands, channels), recorded in ``Attribution.info["group_names"]``.
    """

    ids: torch.Tensor
    n_groups: int
    names: list[str] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample's ids, ``M``."""
        return tuple(self.ids.shape[1:])


class Groups(NamedInit):
    """Base class of the group constructors: ``resolve(shape, layout) -> GroupIds``.

    ``shape`` is one sample's shape (without the batch axis), ``layout`` the layout of the
    explained tensor (with its batch axis ``b``).
    """

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_INTEGER = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_ids(ids: Any, name: str = "groups") -> torch.Tensor:
    owner = current_caller()
    if isinstance(ids, np.ndarray):
        ids = torch.from_numpy(ids)
    if not isinstance(ids, torch.Tensor) or ids.dtype not in _INTEGER:
        got = f"a {ids.dtype} tensor" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be an integer tensor of group ids (0 .. G-1) "
            f"broadcastable to the input, or a grouping from salience.masking.groups. Got {got} instead."
        )
    if ids.numel() == 0:
        raise ParameterError(f"The {name!r} parameter of {owner} is empty; it must label every element.")
    if int(ids.min()) < 0:
        raise ParameterError(
            f"The {name!r} parameter of {owner} must hold group ids >= 0. Got a minimum of {int(ids.min())}."
        )
    return ids.detach().to(torch.long)


class GroupMask(Groups):
    """An explicit grouping: an integer tensor of group ids, as Captum's ``feature_mask``.

    Parameters
    ----------
    ids : integer Tensor or ndarray
        Of a sample's rank (shared by every sample) or with a leading batch axis of 1 or B (one
        grouping per sample), broadcastable to the input; ids ``0 .. G-1``.
    names : sequence of str, optional
        One name per group id.
    """

    def __init__(self, ids: Any, names: Sequence[str] | None = None) -> None:
        self.ids = _check_ids(ids, "ids")
        n = int(self.ids.max()) + 1
        if names is not None:
            names = [str(v) for v in names]
            if len(names) != n:
                raise ParameterError(
                    f"The 'names' parameter of {current_caller()} must name the {n} group(s) of ids. "
                    f"Got {len(names)} name(s)."
                )
        self.names = names

    def __repr__(self) -> str:
        return f"GroupMask(<ids of shape {tuple(self.ids.shape)}>, n_groups={int(self.ids.max()) + 1})"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        shape = tuple(int(s) for s in shape)
        ids = self.ids
        if ids.ndim == len(shape):
            ids = ids.unsqueeze(0)
        if ids.ndim != len(shape) + 1 or any(
            m not in (1, s) for m, s in zip(ids.shape[1:], shape, strict=True)
        ):
            raise ShapeError(
                f"{current_caller()}: group ids of shape {tuple(self.ids.shape)} do not broadcast to "
                f"samples of shape {shape} (layout {as_layout(layout)}); give one id per element, "
                "with size 1 along the axes a group spans whole, and optionally a leading batch axis."
            )
        return GroupIds(ids, int(self.ids.max()) + 1, self.names)


GroupsLike = Groups | torch.Tensor | np.ndarray | None
"""What a ``groups=`` parameter accepts: a :class:`Groups`, an integer tensor or array of group
ids (:class:`GroupMask`), or None (every element its own group)."""


def as_groups(groups: Any) -> Groups:
    """Coerce ``groups=``: a :class:`Groups`, an integer tensor or ndarray, or None (one group
    per element, Captum's default)."""
    if groups is None:
        return element_groups()
    if isinstance(groups, Groups):
        return groups
    return GroupMask(groups)


class _Elements(Groups):
    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        shape = tuple(int(s) for s in shape)
        n = math.prod(shape)
        return GroupIds(torch.arange(n).reshape(1, *shape), n)

    def __repr__(self) -> str:
        return "element_groups()"


def element_groups() -> Groups:
    """Every element its own group (the default of ``groups=None``, as Captum's)."""
    return _Elements()


class _Axis(Groups):
    def __init__(self, axis: str, size: int) -> None:
        if not isinstance(axis, str):
            raise ParameterError(
                f"The 'axis' parameter of {current_caller()} must be an axis name. Got {axis!r}."
            )
        self.axis = axis
        self.size = check_int(size, "size", low=1)

    def __repr__(self) -> str:
        return f"axis_groups({self.axis!r}, size={self.size})"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        lay, sizes = _sizes(shape, layout)
        if self.axis not in sizes:
            raise ParameterError(
                f"{current_caller()}: groups along axis {self.axis!r}, which is not a non-batch axis of "
                f"layout {lay} (axes {list(lay.names[1:])})."
            )
        names = lay.names[1:]
        n = sizes[self.axis]
        ids = torch.arange(n) // self.size
        view = [1] * (len(names) + 1)
        view[names.index(self.axis) + 1] = n
        labels = [
            str(i) if self.size == 1 else f"{i * self.size}-{min(n, (i + 1) * self.size) - 1}"
            for i in range(int(ids.max()) + 1)
        ]
        return GroupIds(ids.reshape(view), int(ids.max()) + 1, [f"{self.axis}{v}" for v in labels])


def axis_groups(axis: str, size: int = 1) -> Groups:
    """One group per index (or per run of ``size`` consecutive indices) along ``axis``, shared
    along every other axis (e.g. ``axis_groups("c")``: one group per channel)."""
    return _Axis(axis, size)


def channel_groups(size: int = 1) -> Groups:
    """One group per channel (axis ``"c"``), all time points / pixels of it together."""
    return _Axis("c", size)


def component_groups(axis: str = "k") -> Groups:
    """One group per independent component: inside ``InDomain(..., ICA(...))`` the sources
    live on axis ``"k"`` (``"b k t"``), so each source, over all its time points, is a group."""
    return _Axis(axis, 1)


class _Segments(Groups):
    def __init__(self, segments: Segments) -> None:
        self.segments = segments

    def __repr__(self) -> str:
        return f"time_segments({self.segments!r})"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        lay, sizes = _sizes(shape, layout)
        axis = self.segments.axis
        if axis not in sizes:
            raise ParameterError(f"{current_caller()}: axis {axis!r} is not in layout {lay}.")
        names = lay.names[1:]
        ids = self.segments.segment_ids(sizes[axis])
        view = [1] * (len(names) + 1)
        view[names.index(axis) + 1] = sizes[axis]
        return GroupIds(ids.reshape(view), int(ids.max()) + 1)


def time_segments(
    n_segments: int | None = None, *, boundaries: Sequence[int] | None = None, axis: str = "t"
) -> Groups:
    """Segments of one axis, shared across channels: ``n_segments`` (nearly) equal ones
    (boundaries at ``round(k * L / n_segments)``) or cut at interior ``boundaries`` (beats,
    sleep epochs), as :class:`~salience.masking.Segments`."""
    return _Segments(Segments(n_segments, boundaries=boundaries, axis=axis))


class _Patches(Groups):
    def __init__(self, size: AxisSizes) -> None:
        self.size = _check_axis_spec(size, "size", allow_none=False)

    def __repr__(self) -> str:
        return f"patch_groups({self.size!r})"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        lay, sizes = _sizes(shape, layout)
        size = _per_axis(self.size, "size", lay, sizes)
        names = lay.names[1:]
        ids = torch.zeros((1,) * (len(names) + 1), dtype=torch.long)
        for i, name in enumerate(names):
            if name not in size:
                continue
            cells = torch.arange(sizes[name]) // size[name]
            count = int(cells.max()) + 1
            view = [1] * (len(names) + 1)
            view[i + 1] = sizes[name]
            ids = ids * count + cells.reshape(view)  # row-major over the patched axes
        return GroupIds(ids, int(ids.max()) + 1)


def patch_groups(size: AxisSizes) -> Groups:
    """Non-overlapping patches (tiles) of ``size`` per named axis, row-major ids: an int for
    every spatial axis (``8``: 8x8 image patches, 8-sample time segments), or a dict such as
    ``{"t": 2, "h": 16, "w": 16}`` for video tubes. Axes not named are shared (channels)."""
    return _Patches(size)


class _Superpixels(Groups):
    def __init__(self, labels: Any, axes: Sequence[str] | None) -> None:
        self.labels = _check_ids(labels, "labels")
        self.axes = None if axes is None else tuple(axes)

    def __repr__(self) -> str:
        return f"superpixel_groups(<labels of shape {tuple(self.labels.shape)}>)"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        lay, sizes = _sizes(shape, layout)
        axes = self.axes if self.axes is not None else lay.spatial
        spatial = tuple(sizes[a] for a in axes)
        lab = self.labels
        if tuple(lab.shape) == spatial:
            lab = lab.unsqueeze(0)
        if lab.ndim != len(spatial) + 1 or tuple(lab.shape[1:]) != spatial:
            raise ShapeError(
                f"{current_caller()}: superpixel labels of shape {tuple(self.labels.shape)} must have the "
                f"shape {spatial} of axes {list(axes)} (layout {lay}), optionally with a leading batch axis."
            )
        # consecutive ids per sample (SLIC labels may start at 1 or skip values)
        flat = lab.reshape(lab.shape[0], -1)
        ids = torch.stack([torch.unique(row, return_inverse=True)[1] for row in flat]).reshape(lab.shape)
        names = lay.names[1:]
        view = [lab.shape[0]] + [sizes[a] if a in axes else 1 for a in names]
        order = [a for a in names if a in axes]
        if list(order) != list(axes):
            raise ParameterError(
                f"{current_caller()}: the superpixel axes {list(axes)} must be in the layout's order {order}."
            )
        return GroupIds(ids.reshape(view), int(ids.max()) + 1)


def superpixel_groups(labels: Any, *, axes: Sequence[str] | None = None) -> Groups:
    """Superpixels from a label image: ``labels`` of shape (H, W) (one segmentation for every
    sample) or (B, H, W) (one per sample), any integer labels (relabelled 0 .. G-1 per
    sample), shared across channels. For a segmentation, e.g. SLIC from scikit-image::

        from skimage.segmentation import slic
        labels = slic(image.permute(1, 2, 0).numpy(), n_segments=50, start_label=0)
        groups = superpixel_groups(labels)

    ``axes`` names the labelled axes (default: the layout's spatial axes, e.g. ``h, w``)."""
    return _Superpixels(labels, axes)


class _Cross(Groups):
    def __init__(self, first: Groups, second: Groups) -> None:
        self.first, self.second = as_groups(first), as_groups(second)

    def __repr__(self) -> str:
        return f"cross_groups({self.first!r}, {self.second!r})"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        a, b = self.first.resolve(shape, layout), self.second.resolve(shape, layout)
        ids = a.ids * b.n_groups + b.ids
        # drop the combinations that label no element
        flat = ids.reshape(ids.shape[0], -1) if ids.shape[0] > 1 else ids.reshape(1, -1)
        used, inverse = torch.unique(flat, return_inverse=True)
        names = None
        if a.names is not None or b.names is not None:
            na = a.names or [str(i) for i in range(a.n_groups)]
            nb = b.names or [str(i) for i in range(b.n_groups)]
            names = [f"{na[int(u) // b.n_groups]}/{nb[int(u) % b.n_groups]}" for u in used]
        return GroupIds(inverse.reshape(ids.shape), len(used), names)


def cross_groups(first: Groups, second: Groups) -> Groups:
    """Every combination of two groupings, e.g. ``cross_groups(channel_groups(),
    time_segments(8))``: one group per channel and segment; or per channel and band inside a
    domain. Combinations that label no element are dropped."""
    return _Cross(first, second)


class _Bands(Groups):
    def __init__(
        self,
        freqs: torch.Tensor,
        table: dict[str, tuple[float, float]],
        axis: str,
        other: bool,
        nyquist: float,
    ) -> None:
        self.freqs, self.table, self.axis, self.other, self.nyquist = freqs, table, axis, other, nyquist

    def __repr__(self) -> str:
        return f"band_groups(bands={list(self.table)}, n_bins={self.freqs.numel()})"

    def resolve(self, shape: Sequence[int], layout: LayoutLike) -> GroupIds:
        lay, sizes = _sizes(shape, layout)
        if self.axis not in sizes or sizes[self.axis] != self.freqs.numel():
            raise ShapeError(
                f"{current_caller()}: band groups of {self.freqs.numel()} frequency bins need an axis "
                f"{self.axis!r} of that length; the explained coefficients have layout {lay} and shape "
                f"{tuple(shape)}. Use them inside InDomain(..., domain) with the domain they were built from."
            )
        f = self.freqs.abs()
        ids = torch.full(f.shape, -1, dtype=torch.long)
        for i, (lo, hi) in enumerate(self.table.values()):
            inside = (f >= lo) & ((f < hi) | ((f == hi) & (hi >= self.nyquist)))
            ids = torch.where((ids < 0) & inside, torch.full_like(ids, i), ids)
        names = list(self.table)
        if bool((ids < 0).any()):
            if not self.other:
                raise ParameterError(
                    f"{current_caller()}: some frequency bins lie outside every band; pass other=True to "
                    "group them as 'other', or bands that cover 0 Hz to Nyquist."
                )
            ids = torch.where(ids < 0, torch.full_like(ids, len(names)), ids)
            names.append("other")
        used, ids = torch.unique(ids, return_inverse=True)
        names = [names[int(u)] for u in used]
        view = [1] * (len(lay.names))
        view[lay.names.index(self.axis)] = f.numel()
        return GroupIds(ids.reshape(view), len(names), names)


def band_groups(
    domain: Any,
    bands: Any = None,
    *,
    x: torch.Tensor | None = None,
    fs: float | None = None,
    axis: str = "f",
    other: bool = True,
) -> Groups:
    """One group per frequency band over a domain's frequency bins (``"which band mattered"``).

    Use it inside ``InDomain(explainer, domain)``: the explainer sees the coefficients, and
    every bin of a band (its real and imaginary parts, in every channel) is one group::

        fourier = sl.Fourier(fs=250.0)
        groups = band_groups(fourier, "eeg", x=x)
        attr = sl.InDomain(sl.FeatureAblation(model, groups=groups), fourier).explain(x, target)
        attr.info["group_values"]  # (B, n_bands): one value per band

    Parameters
    ----------
    domain : Domain
        A domain whose ``coordinates()`` give the bin frequencies on axis ``axis`` (Fourier,
        STFT); it is bound to ``x`` on a copy (the object is not modified).
    bands : None, str, dict or edges
        As :func:`~salience.domains.resolve_bands` (None: octave bands).
    x : Tensor, optional
        A batch of the signals to explain (for the signal length), unless the domain knows it.
    fs : float, optional
        Sampling rate in Hz, unless the domain has one.
    axis : str, default "f"
    other : bool, default True
        Group the bins outside every band as ``"other"`` (False: raise if there are any).
    """
    from ..domains.bands import resolve_bands

    bound = domain.bind(x) if x is not None else domain
    rate = fs if fs is not None else getattr(bound, "fs", None)
    coords = bound.coordinates(fs=rate) if rate is not None else bound.coordinates()
    if axis not in coords:
        raise ParameterError(
            f"{current_caller()}: the domain {bound!r} has no coordinates along {axis!r} (it has {sorted(coords)})."
        )
    freqs = coords[axis].detach().to(torch.float64).cpu()
    rate = 1.0 if rate is None else float(rate)  # without fs: cycles per sample
    table = resolve_bands(bands, rate)
    return _Bands(freqs, table, axis, check_bool(other, "other"), rate / 2)
