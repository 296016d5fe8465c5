"""Named-axis layouts ("b c t", "b c h w", "b c t h w"): the only place input rank is interpreted."""

from __future__ import annotations

import torch

from .errors import ParameterError, ShapeError, warn

__all__ = ["Layout", "as_layout"]

_DEFAULTS = {3: "b c t", 4: "b c h w", 5: "b c t h w"}

#: an inferred "b c t" input with at least this many times more channels than time steps is
#: probably channels-last (N, T, C): a warning names layout="b t c"
CHANNELS_LAST_RATIO = 8


#: axes that are not positions: batch, channel, real/imaginary part of a complex coefficient
_COMPONENT = ("b", "c", "r")


class Layout:
    """An ordered tuple of axis names, the first two being batch ``b`` and channel ``c``.

    Parameters
    ----------
    spec : str
        Space-separated single-word axis names, e.g. ``"b c t"`` for signals of shape (N, C, T),
        ``"b c h w"`` for images, ``"b c t h w"`` for video or volumes. Domains produce others,
        e.g. ``"b c f r"`` (frequency bin, real/imaginary part).

    Examples
    --------
    >>> Layout("b c h w").axes("h", "w")
    (2, 3)
    >>> Layout("b c t").spatial
    ('t',)
    """

    __slots__ = ("names",)

    def __init__(self, spec: str) -> None:
        if not isinstance(spec, str):
            raise ParameterError(f"A layout must be a string such as 'b c t'. Got {spec!r} instead.")
        names = tuple(spec.split())
        if len(names) < 2 or names[0] != "b" or len(set(names)) != len(names):
            raise ParameterError(
                "A layout must start with the batch axis 'b', name every axis once and have at "
                f"least two axes, e.g. 'b c t' or 'b c h w'. Got {spec!r} instead."
            )
        self.names = names

    @classmethod
    def infer(cls, x: torch.Tensor, layout: LayoutLike | None = None) -> Layout:
        """Return ``layout`` (checked against ``x``) or the default layout for ``x.ndim``.

        An inferred ``"b c t"`` for an input with at least ``CHANNELS_LAST_RATIO`` (8) times
        more channels than time steps (``C >= 8 * T``, e.g. (N, 256, 3)) warns that the array
        is probably channels-last and names ``layout="b t c"``; an explicit ``layout`` never
        warns.
        """
        if layout is not None:
            out = as_layout(layout)
            out.check(x)
            return out
        if x.ndim not in _DEFAULTS:
            raise ShapeError(
                f"Cannot infer a layout for an input of shape {tuple(x.shape)}: expected 3 dims "
                "(N, C, T) signals, 4 dims (N, C, H, W) images or 5 dims (N, C, T, H, W) video; "
                "pass layout='...' to name the axes."
            )
        if x.ndim == 3 and x.shape[1] >= CHANNELS_LAST_RATIO * x.shape[2] > 0:
            n, c, t = x.shape
            warn(
                f"An input of shape {tuple(x.shape)} is read as (N, C, T): {c} channels of {t} time "
                f"step{'s' if t != 1 else ''} each, at least {CHANNELS_LAST_RATIO} times more channels "
                'than steps. If the array is channels-last (N, T, C), pass layout="b t c" (or '
                'x.transpose(1, 2)); pass layout="b c t" to keep this reading without the warning.'
            )
        return cls(_DEFAULTS[x.ndim])

    @property
    def ndim(self) -> int:
        return len(self.names)

    @property
    def spatial(self) -> tuple[str, ...]:
        """Names of the axes masks, CAMs, blurs and plots act on: all but the component axes.

        The component axes are the batch ``b``, the channel ``c`` and ``r``, the real/imaginary
        pair a domain gives complex coefficients (``"b c f r"`` for :class:`~salience.Fourier`):
        a mask, a window or a blur moves along a frequency bin, never between its real and
        imaginary parts.
        """
        return tuple(n for n in self.names if n not in _COMPONENT)

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        return self.axes(*self.spatial)

    @property
    def has_channels(self) -> bool:
        return "c" in self.names

    @property
    def is_image_like(self) -> bool:
        """True for layouts with both ``h`` and ``w`` axes (images, video, volumes)."""
        return "h" in self.names and "w" in self.names

    def axes(self, *names: str) -> tuple[int, ...]:
        """Positions of the named axes."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ParameterError(
                f"Axis name(s) {missing} are not in layout {self}; its axes are {list(self.names)}."
            )
        return tuple(self.names.index(n) for n in names)

    def check(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ShapeError if ``x`` does not have one dim per axis name."""
        if x.ndim != self.ndim:
            raise ShapeError(f"{name} must have {self.ndim} dims for {self!r}; got shape {tuple(x.shape)}.")

    def sizes(self, x: torch.Tensor) -> dict[str, int]:
        self.check(x)
        return dict(zip(self.names, x.shape, strict=True))

    def replace(self, old: str, *new: str) -> Layout:
        """A new layout with axis ``old`` replaced by ``new`` axes (used by domains)."""
        i = self.axes(old)[0]
        return Layout(" ".join(self.names[:i] + tuple(new) + self.names[i + 1 :]))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.names == tuple(other.split())
        return isinstance(other, Layout) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __str__(self) -> str:
        return " ".join(self.names)

    def __repr__(self) -> str:
        return f"Layout({str(self)!r})"


LayoutLike = str | Layout


def as_layout(layout: LayoutLike) -> Layout:
    """Coerce a string or Layout to a Layout."""
    return layout if isinstance(layout, Layout) else Layout(layout)
