"""Substrates: what a masked-out value is replaced by (the fill itself is in
:mod:`salience.masking.filling`).

A substrate maps rows ``x`` of shape (R, *S) (with their :class:`~salience.layout.Layout`, whose
first axis ``b`` numbers the rows) to a tensor of the same shape. Mask-aware substrates
(``needs_mask = True``, e.g. :class:`Interpolate`) also read the mask. Perturbation explainers
(RISE, MaskUpdate, Occlusion) and the deletion/insertion metrics share these objects, so a map and
its faithfulness score use the same notion of "removed".

Examples
--------
>>> import torch
>>> x = torch.arange(6.0).reshape(1, 1, 6)
>>> m = torch.tensor([[[1.0, 0, 0, 0, 0, 1]]])
>>> Interpolate()(x, "b c t", m)
tensor([[[0., 1., 2., 3., 4., 5.]]])
>>> as_substrate(0.5)(x, "b c t")
tensor([[[0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000]]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any, ClassVar

import torch

from .._validation import (
    check_float,
    check_generator,
    check_int,
    check_option,
    make_generator,
    non_finite,
)
from ..errors import NamedInit, ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike, as_layout

__all__ = [
    "Substrate",
    "Constant",
    "ChannelMean",
    "Blur",
    "Noise",
    "Interpolate",
    "Reference",
    "as_substrate",
    "SubstrateLike",
]


class Substrate(NamedInit):
    """Base class: ``substrate(x, layout, mask=None) -> Tensor`` of ``x``'s shape, dtype and device.

    Subclasses implement ``__call__``. ``needs_mask`` declares that the result depends on the
    mask (then callers must pass it, broadcastable to ``x``, 1 = keep); ``is_random`` that it
    draws random numbers (from its own generator, never the global RNG).
    """

    needs_mask: ClassVar[bool] = False
    is_random: ClassVar[bool] = False

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Constant(Substrate):
    """Every removed value becomes ``value`` (0 by default: in normalised space, the mean input).

    Parameters
    ----------
    value : float, default 0.0
    """

    def __init__(self, value: float = 0.0) -> None:
        self.value = check_float(value, "value")

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full_like(x, self.value)

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


class Reference(Substrate):
    """A fixed reference input: removed values become ``values`` (broadcast to the rows).

    A dataset mean of shape (1, *S) or (*S) serves any rows; a per-sample reference of shape
    (B, *S) fits when the whole batch is filled at once (what explainers and metrics do, through
    :class:`Filler`). A tensor passed as ``substrate=`` becomes this.

    Parameters
    ----------
    values : Tensor broadcastable to the filled rows
    """

    def __init__(self, values: torch.Tensor) -> None:
        if not isinstance(values, torch.Tensor) or values.is_complex() or not values.is_floating_point():
            raise ParameterError(
                f"The 'values' parameter of Reference must be a floating-point tensor. Got "
                f"{type(values).__name__ if not isinstance(values, torch.Tensor) else values.dtype} instead."
            )
        if values.device.type == "meta":
            raise ParameterError(
                f"The 'values' parameter of Reference must hold data; got a tensor on the 'meta' device "
                f"(shape {tuple(values.shape)})."
            )
        n_bad = non_finite(values)
        if n_bad:
            raise ParameterError(
                f"The 'values' parameter of Reference must be finite. Got {n_bad} NaN/inf value(s) in a "
                f"tensor of shape {tuple(values.shape)}."
            )
        self.values = values.detach()

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        v = self.values.to(device=x.device, dtype=x.dtype)
        try:
            return v.expand(x.shape).clone()
        except RuntimeError as err:
            raise ShapeError(
                f"A substrate tensor of shape {tuple(v.shape)} does not broadcast to rows of shape "
                f"{tuple(x.shape)}."
            ) from err

    def __repr__(self) -> str:
        return f"Reference(<tensor of shape {tuple(self.values.shape)}>)"


class ChannelMean(Substrate):
    """Each row's per-channel mean over all other axes (the overall mean if there is no ``c`` axis)."""

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        lay = _checked(layout, x)
        dims = tuple(i for i, n in enumerate(lay.names) if n not in ("b", "c"))
        if not dims:
            return x.clone()
        return x.mean(dim=dims, keepdim=True).expand_as(x).clone()


def _gaussian_kernel(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``radius`` on both sides, half-sample symmetric
    (scipy.ndimage ``mode='reflect'``: ``d c b a | a b c d | d c b a``), valid for any ``n``."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


class Blur(Substrate):
    """Gaussian blur along named axes (separable; RISE's insertion start, generalised to any rank).

    Parameters
    ----------
    sigma : float or dict of str to float
        Standard deviation in samples, one for all blurred axes or one per axis name.
    axes : sequence of str, optional
        Axis names to blur; default the layout's spatial axes (``t``; ``h, w``; ``t, h, w``; ``f``).
    truncate : float, default 4.0
        The kernel radius is ``ceil(truncate * sigma)`` unless ``radius`` is given (as scipy).
    radius : int, optional
        Kernel half-width; RISE's insertion kernel is 11 taps (``radius=5``) with ``sigma=5``.
    padding : {"reflect", "zeros"}, default "reflect"
        ``"reflect"`` as ``scipy.ndimage.gaussian_filter``; ``"zeros"`` as RISE's
        ``conv2d(..., padding=5)`` (darkens borders).

    Raises
    ------
    ParameterError
        A negative or non-finite ``sigma`` or ``truncate``, or a kernel radius (``radius``, or
        ``ceil(truncate * sigma)``) above ``Blur.MAX_RADIUS`` (4e6 samples: the kernel and the
        padded rows are materialised).
    """

    #: the largest kernel half-width, in samples
    MAX_RADIUS: ClassVar[int] = 4_000_000

    def __init__(
        self,
        sigma: float | Mapping[str, float] = 5.0,
        *,
        axes: tuple[str, ...] | list[str] | None = None,
        truncate: float = 4.0,
        radius: int | None = None,
        padding: str = "reflect",
    ) -> None:
        if isinstance(sigma, Mapping):
            self.sigma: float | dict[str, float] = {
                str(k): check_float(v, f"sigma[{k!r}]", low=0.0) for k, v in sigma.items()
            }
        else:
            self.sigma = check_float(sigma, "sigma", low=0.0)
        if axes is not None and (isinstance(axes, str) or not all(isinstance(a, str) for a in axes)):
            raise ParameterError(
                f"The 'axes' parameter of {current_caller()} must be a sequence of axis names such as ('h', 'w'). "
                f"Got {axes!r} instead."
            )
        self.axes = None if axes is None else tuple(axes)
        self.truncate = check_float(truncate, "truncate", low=0.0)
        self.radius = None if radius is None else check_int(radius, "radius", low=0, high=self.MAX_RADIUS)
        if self.radius is None:
            widest = max(self.sigma.values(), default=0.0) if isinstance(self.sigma, dict) else self.sigma
            if self.truncate * widest > self.MAX_RADIUS:
                raise ParameterError(
                    f"The kernel radius of {current_caller()}, ceil(truncate * sigma) = ceil({self.truncate:g} * "
                    f"{widest:g}), must be at most {self.MAX_RADIUS} samples; pass a smaller sigma "
                    f"(or truncate, or radius=...)."
                )
        self.padding = check_option(padding, "padding", options=("reflect", "zeros"))

    def _axes(self, lay: Layout) -> tuple[str, ...]:
        if self.axes is not None:
            lay.axes(*self.axes)
            return self.axes
        if isinstance(self.sigma, dict):
            return tuple(self.sigma)
        return lay.spatial

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        lay = _checked(layout, x)
        out = x
        for name in self._axes(lay):
            sigma = self.sigma.get(name, 0.0) if isinstance(self.sigma, dict) else self.sigma
            if sigma == 0.0:
                continue
            out = self._blur_axis(out, lay.axes(name)[0], sigma)
        return out.clone() if out is x else out

    def _blur_axis(self, x: torch.Tensor, dim: int, sigma: float) -> torch.Tensor:
        r = self.radius if self.radius is not None else int(math.ceil(self.truncate * sigma))
        if r == 0:
            return x
        n = x.shape[dim]
        k = _gaussian_kernel(sigma, r, x.dtype, x.device)
        moved = x.movedim(dim, -1)
        lead = moved.shape[:-1]
        flat = moved.reshape(-1, 1, n)
        if self.padding == "reflect":
            flat = flat.index_select(-1, _reflect_index(n, r, x.device))
        else:
            flat = torch.nn.functional.pad(flat, (r, r))
        out = torch.nn.functional.conv1d(flat, k.reshape(1, 1, -1))
        return out.reshape(*lead, n).movedim(-1, dim)

    def __repr__(self) -> str:
        return f"Blur(sigma={self.sigma!r}, axes={self.axes!r}, padding={self.padding!r})"


class Noise(Substrate):
    """Gaussian noise ``mean + std * eps``, drawn from ``generator`` (never the global RNG).

    Every call draws new noise; explainers call a substrate once per explained sample, so all
    masks of one sample share one noise image.

    Parameters
    ----------
    std : float, default 1.0
    mean : float, default 0.0
    generator : torch.Generator, optional
        A fresh randomly seeded generator is made when None (non-reproducible).
    """

    is_random = True

    def __init__(
        self, std: float = 1.0, *, mean: float = 0.0, generator: torch.Generator | None = None
    ) -> None:
        self.std = check_float(std, "std", low=0.0)
        self.mean = check_float(mean, "mean")
        self.generator = check_generator(generator)

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        gen = make_generator(self.generator)  # local: the substrate object is never changed
        eps = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
        return self.mean + self.std * eps

    def __repr__(self) -> str:
        return f"Noise(std={self.std!r}, mean={self.mean!r})"


class Interpolate(Substrate):
    """Linear interpolation across each masked span along one axis (time series), mask-aware.

    Positions whose mask is at least ``threshold`` are anchors; every other position gets the
    straight line between the nearest anchors on its left and right (of the same row and
    channel). Before the first or after the last anchor the nearest anchor's value is held; a line
    with no anchor at all gets its mean.

    Parameters
    ----------
    axis : str, optional
        Axis to interpolate along; default ``"t"``, or the only spatial axis of the layout.
    threshold : float, default 0.5
        Mask value from which a position counts as kept.
    """

    needs_mask = True

    def __init__(self, axis: str | None = None, *, threshold: float = 0.5) -> None:
        if axis is not None and not isinstance(axis, str):
            raise ParameterError(
                f"The 'axis' parameter of Interpolate must be an axis name. Got {axis!r} instead."
            )
        self.axis = axis
        self.threshold = check_float(threshold, "threshold", low=0.0, high=1.0, closed="right")

    def _axis(self, lay: Layout) -> int:
        if self.axis is not None:
            return lay.axes(self.axis)[0]
        if "t" in lay.names:
            return lay.axes("t")[0]
        if len(lay.spatial) == 1:
            return lay.axes(lay.spatial[0])[0]
        raise ParameterError(
            f"Interpolate needs axis=... for layout {lay} (no 't' axis and several spatial axes)."
        )

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        lay = _checked(layout, x)
        if mask is None:
            raise ParameterError("Interpolate is mask-aware: call it as substrate(x, layout, mask).")
        dim = self._axis(lay)
        keep = torch.broadcast_to(mask >= self.threshold, x.shape).movedim(dim, -1)
        v = x.movedim(dim, -1)
        n = v.shape[-1]
        pos = torch.arange(n, device=x.device).expand_as(v)
        prev = torch.where(keep, pos, torch.full_like(pos, -1)).cummax(-1).values
        nxt = torch.where(keep, pos, torch.full_like(pos, n)).flip(-1).cummin(-1).values.flip(-1)
        has_prev, has_next = prev >= 0, nxt < n
        v_prev = v.gather(-1, prev.clamp(min=0))
        v_next = v.gather(-1, nxt.clamp(max=n - 1))
        span = (nxt - prev).clamp(min=1).to(x.dtype)
        w = (pos - prev).to(x.dtype) / span
        out = v_prev + w * (v_next - v_prev)
        out = torch.where(has_prev & ~has_next, v_prev, out)
        out = torch.where(~has_prev & has_next, v_next, out)
        out = torch.where(~has_prev & ~has_next, v.mean(-1, keepdim=True).expand_as(v), out)
        return out.movedim(-1, dim).contiguous()

    def __repr__(self) -> str:
        return f"Interpolate(axis={self.axis!r}, threshold={self.threshold!r})"


SubstrateLike = str | float | torch.Tensor | Substrate
"""What a ``substrate=`` parameter accepts; :func:`as_substrate` turns it into a :class:`Substrate`."""

_NAMED = {
    "zeros": lambda: Constant(0.0),
    "mean": ChannelMean,
    "blur": Blur,
    "interpolate": Interpolate,
}


def as_substrate(obj: Any, owner: str | None = None, name: str = "substrate") -> Substrate:
    """Coerce ``"zeros"``, ``"mean"``, ``"blur"`` (sigma 5), ``"interpolate"``, a float, a tensor
    (:class:`Reference`) or a Substrate.

    An error names ``owner``, by default the explainer or metric being built or run
    (:func:`salience.errors.current_caller`)."""
    if isinstance(obj, Substrate):
        return obj
    if isinstance(obj, torch.Tensor):
        return Reference(obj)
    if isinstance(obj, str) and obj in _NAMED:
        return _NAMED[obj]()
    if isinstance(obj, Real) and not isinstance(obj, bool):
        return Constant(float(obj))
    raise ParameterError(
        f"The {name!r} parameter of {owner or current_caller()} must be 'zeros', 'mean', 'blur', "
        f"'interpolate', a float, a tensor or a salience.masking.Substrate (Constant, ChannelMean, Blur, Noise, Interpolate, "
        f"Reference). "
        f"Got {obj!r} instead."
    )


def _checked(layout: LayoutLike, x: torch.Tensor) -> Layout:
    lay = as_layout(layout)
    if x.ndim != lay.ndim:
        raise ShapeError(f"rows of shape {tuple(x.shape)} do not match layout {lay} ({lay.ndim} dims).")
    return lay
