"""Array coercion, explicit normalisation and colour mapping (no matplotlib needed).

Normalisation belongs to plotting, never to the explainers: every plot function takes a ``norm``
argument naming one of the modes below, and the limits it used are reproducible with
:func:`limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError

__all__ = [
    "to_numpy",
    "limits",
    "normalize",
    "to_rgba",
    "scale_for",
    "resolve_norm",
    "Scale",
    "MINMAX_METHODS",
    "NORMS",
    "DEFAULT_CMAP",
    "SEQUENTIAL_CMAP",
]

NORMS = ("auto", "symmetric", "sequential", "absmax", "minmax", "none")
"""The normalisation modes accepted by every plot function (``"auto"`` picks one from the map)."""

DEFAULT_CMAP = "RdBu_r"
"""Signed diverging colour map: blue negative, white zero, red positive."""

SEQUENTIAL_CMAP = "Reds"
"""Sequential colour map for maps without sign: white at zero (as on the diverging map), dark red
at the top of the scale."""


def to_numpy(a: Any, name: str = "values") -> np.ndarray:
    """Return ``a`` as a float numpy array on the CPU.

    Accepts numpy arrays, torch tensors on any device (detached, copied to the CPU),
    :class:`~salience.Attribution` objects (their values) and nested sequences.
    """
    if a is None:
        raise ParameterError(f"The {name!r} argument must be an array or a tensor. Got None instead.")
    values = getattr(a, "values", None)
    if values is not None and hasattr(a, "layout") and hasattr(a, "method"):
        a = values  # an Attribution
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
        if a.is_complex():
            raise ParameterError(f"The {name!r} argument must be real; got a complex tensor.")
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()  # numpy has no bfloat16; the upcast to float32 is exact
        a = a.numpy()
    try:
        arr = np.asarray(a, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"The {name!r} argument must be a real array or tensor. Got {type(a).__name__} instead."
        ) from exc
    return arr


MINMAX_METHODS = ("RISE",)
"""Methods whose paper shows their maps min-max scaled: ``"auto"`` draws them so when the method
is known (an :class:`~salience.Attribution`'s ``method``, a plot_grid column name), and the
figure says so. RISE's scores are mask-weighted mean scores, all close to the mean score (their
zero is not a neutral point): on a scale from zero, or around zero for logits, they would be one
uniform block."""


def _paper_minmax(method: Any) -> bool:
    return isinstance(method, str) and method.split("(")[0].strip().upper() in MINMAX_METHODS


def resolve_norm(values: Any, norm: str = "auto", method: str | None = None) -> str:
    """The normalisation mode a plot uses for ``values``: ``norm`` itself, or for ``"auto"``
    ``"minmax"`` for a (non-constant) map of a method in :data:`MINMAX_METHODS`, else
    ``"sequential"`` when the map has no negative values (and some positive ones) and
    ``"symmetric"`` otherwise (signed maps, all-zero maps).

    Negative values smaller than ``1e-6`` of the largest magnitude (round-off) do not make a map
    signed.
    """
    if not isinstance(norm, str) or norm not in NORMS:
        raise ParameterError(f"The 'norm' parameter must be one of {list(NORMS)}. Got {norm!r} instead.")
    if norm != "auto":
        return norm
    v = to_numpy(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "symmetric"
    lo, hi = float(v.min()), float(v.max())
    if _paper_minmax(method) and hi > lo:
        return "minmax"
    return "sequential" if hi > 0 and lo >= -1e-6 * hi else "symmetric"


def limits(values: Any, norm: str = "auto", percentile: float = 100.0) -> tuple[float, float]:
    """The colour limits ``(vmin, vmax)`` a plot uses for ``values``.

    Parameters
    ----------
    values : array or Tensor
        Attributions of any shape.
    norm : {"auto", "symmetric", "sequential", "absmax", "minmax", "none"}
        ``"auto"`` (default): ``"sequential"`` for maps without negative values, ``"symmetric"``
        otherwise (:func:`resolve_norm`). ``"symmetric"``: ``(-m, m)`` with ``m`` the
        ``percentile`` of ``|values|`` (zero maps to the white middle of a diverging colour map;
        the sign is kept). ``"sequential"``: ``(0, m)`` with ``m`` the ``percentile`` of the
        positive part (for non-negative maps: zero is the start of the scale). ``"absmax"``:
        ``(0, m)`` on ``|values|`` (for maps whose sign is meaningless). ``"minmax"``: the data
        range (as some papers show their maps; say so with the figure). ``"none"``: ``(-1, 1)``,
        values used as they are.
    percentile : float
        Clip outliers: the limit is this percentile of the magnitudes (100 = the maximum).

    Returns
    -------
    (float, float)
    """
    norm = resolve_norm(values, norm)
    if not (isinstance(percentile, (int, float)) and 0 < percentile <= 100):
        raise ParameterError(f"The 'percentile' parameter must be in (0, 100]. Got {percentile!r} instead.")
    v = to_numpy(values)
    v = v[np.isfinite(v)]
    if norm == "none":
        return -1.0, 1.0
    if v.size == 0:
        return (-1.0, 1.0) if norm == "symmetric" else (0.0, 1.0)
    if norm == "minmax":
        lo, hi = float(np.percentile(v, 100 - percentile)), float(np.percentile(v, percentile))
        return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)
    m = float(np.percentile(np.maximum(v, 0.0) if norm == "sequential" else np.abs(v), percentile))
    m = m if m > 0 else 1.0
    return (-m, m) if norm == "symmetric" else (0.0, m)


def normalize(values: Any, norm: str = "auto", percentile: float = 100.0) -> np.ndarray:
    """Scale ``values`` with :func:`limits`: to [-1, 1] (symmetric), [0, 1] (sequential, absmax,
    minmax).

    ``"absmax"`` takes the magnitude first; ``"none"`` returns the values unchanged. Values past
    the percentile limit are clipped.
    """
    v = to_numpy(values)
    norm = resolve_norm(v, norm)
    if norm == "none":
        return v
    lo, hi = limits(v, norm, percentile)
    if norm == "symmetric":
        return np.clip(v / hi, -1.0, 1.0)
    if norm == "absmax":
        return np.clip(np.abs(v) / hi, 0.0, 1.0)
    if norm == "sequential":
        return np.clip(v / hi, 0.0, 1.0)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


def _limit(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(
            f"The {name!r} parameter must be a finite number or None. Got {value!r} instead."
        )
    if not np.isfinite(value):
        raise ParameterError(
            f"The {name!r} parameter must be a finite number or None. Got {value!r} instead."
        )
    return float(value)


@dataclass(frozen=True)
class Scale:
    """The colour scale of one plotted map: its mode, colour map and limits.

    ``norm`` is the resolved mode (never ``"auto"``; ``"custom"`` for a matplotlib
    ``Normalize`` given by the caller). Signed limits around zero (``vmin < 0 < vmax``) on a
    diverging scale keep zero at the colour map's middle (white) even when they are not
    symmetric.
    """

    norm: str
    cmap: Any
    vmin: float
    vmax: float
    custom: Any = None

    @property
    def diverging(self) -> bool:
        """True when the scale is centred at zero (signed maps)."""
        if self.custom is not None:
            return self.vmin < 0 < self.vmax
        return self.norm in ("symmetric", "none")

    def shown(self, values: Any) -> np.ndarray:
        """The values as drawn: magnitudes for ``"absmax"``, the values otherwise."""
        v = to_numpy(values)
        return np.abs(v) if self.norm == "absmax" else v

    def fraction(self, values: Any) -> np.ndarray:
        """Position of each drawn value on the colour map, in [0, 1]."""
        v = self.shown(values)
        if self.custom is not None:
            return np.clip(np.ma.filled(np.ma.asarray(self.custom(v)), 0.5), 0.0, 1.0)
        lo, hi = self.vmin, self.vmax
        if self.diverging and lo < 0 < hi and lo != -hi:  # two slopes: zero stays in the middle
            t = np.where(v < 0, 0.5 - 0.5 * v / lo, 0.5 + 0.5 * v / hi)
        else:
            t = (v - lo) / (hi - lo)
        return np.clip(t, 0.0, 1.0)

    def mpl_norm(self) -> Any:
        """A matplotlib normalisation doing what :meth:`fraction` does."""
        if self.custom is not None:
            return self.custom
        import matplotlib.colors as mcolors

        if self.diverging and self.vmin < 0 < self.vmax and self.vmin != -self.vmax:
            return mcolors.TwoSlopeNorm(0.0, self.vmin, self.vmax)
        return mcolors.Normalize(self.vmin, self.vmax)

    def colormap(self) -> Any:
        """The matplotlib colour map object."""
        import matplotlib

        return matplotlib.colormaps[self.cmap] if isinstance(self.cmap, str) else self.cmap

    def colours(self, values: Any) -> np.ndarray:
        """RGBA colours of ``values``, shape ``values.shape + (4,)``."""
        return np.asarray(self.colormap()(self.fraction(values)), dtype=float)

    def mappable(self) -> Any:
        """A ScalarMappable for a colour bar."""
        import matplotlib

        return matplotlib.cm.ScalarMappable(norm=self.mpl_norm(), cmap=self.colormap())


def scale_for(
    values: Any,
    norm: Any = "auto",
    cmap: Any = "auto",
    *,
    vmin: Any = None,
    vmax: Any = None,
    percentile: float = 100.0,
    method: str | None = None,
) -> Scale:
    """Choose the colour scale of a map from its values.

    Parameters
    ----------
    values : array or Tensor
        The map (all of it: the scale is shared by everything drawn with it).
    norm : str or matplotlib.colors.Normalize
        One of :data:`NORMS` (see :func:`limits`), or a matplotlib normalisation used as given.
        ``"auto"``: signed maps on a symmetric diverging scale centred at zero (white), maps
        without negative values on a sequential scale from zero.
    cmap : str or Colormap
        ``"auto"``: :data:`DEFAULT_CMAP` (diverging) for signed scales, :data:`SEQUENTIAL_CMAP`
        otherwise.
    vmin, vmax : float, optional
        Fixed limits replacing the computed ones; on a symmetric scale one of them alone sets
        both (``vmax=2`` means ``(-2, 2)``). Unequal signed limits keep zero white (two slopes).
    percentile : float
        As in :func:`limits`.
    method : str, optional
        The method that made the map (see :data:`MINMAX_METHODS`).

    Returns
    -------
    Scale
    """
    lo_given, hi_given = _limit(vmin, "vmin"), _limit(vmax, "vmax")
    if not isinstance(norm, str):
        if not (callable(norm) and hasattr(norm, "vmin") and hasattr(norm, "vmax")):
            raise ParameterError(
                f"The 'norm' parameter must be one of {list(NORMS)} or a matplotlib Normalize. "
                f"Got {type(norm).__name__} instead."
            )
        if norm.vmin is None or norm.vmax is None:
            v = to_numpy(values)
            norm.autoscale_None(v[np.isfinite(v)] if np.isfinite(v).any() else np.zeros(1))
        lo, hi = float(norm.vmin), float(norm.vmax)
        div = lo < 0 < hi
        name = cmap if cmap != "auto" else (DEFAULT_CMAP if div else SEQUENTIAL_CMAP)
        return Scale("custom", name, lo, hi, custom=norm)
    mode = resolve_norm(values, norm, method)
    lo, hi = limits(values, mode, percentile)
    if mode == "symmetric" and (lo_given is None) != (hi_given is None):
        m = abs(lo_given if lo_given is not None else hi_given)  # type: ignore[arg-type]
        lo_given, hi_given = -m, m
    lo = lo if lo_given is None else lo_given
    hi = hi if hi_given is None else hi_given
    if not hi > lo:
        raise ParameterError(
            f"The colour limits must satisfy vmin < vmax. Got vmin={lo!r}, vmax={hi!r} "
            f"(vmin={vmin!r}, vmax={vmax!r} given, norm={mode!r})."
        )
    if cmap is None or (isinstance(cmap, str) and cmap == "auto"):
        cmap = DEFAULT_CMAP if mode in ("symmetric", "none") else SEQUENTIAL_CMAP
    elif not isinstance(cmap, str) and not callable(cmap):
        raise ParameterError(
            f"The 'cmap' parameter must be a colour map name, a Colormap or 'auto'. Got {type(cmap).__name__} instead."
        )
    return Scale(mode, cmap, float(lo), float(hi))


def to_rgba(
    values: Any,
    cmap: Any = "auto",
    norm: Any = "auto",
    percentile: float = 100.0,
    *,
    vmin: Any = None,
    vmax: Any = None,
) -> np.ndarray:
    """Map attributions to RGBA colours, shape ``values.shape + (4,)``, floats in [0, 1].

    The scale is :func:`scale_for`'s. ``cmap`` is a matplotlib colour map name or object;
    without matplotlib built-in ramps stand in for the defaults (blue-white-red, white-red).
    """
    v = to_numpy(values)
    sc = scale_for(v, norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile)
    t = sc.fraction(v)
    try:
        return sc.colours(v)
    except ImportError:
        if sc.cmap not in (DEFAULT_CMAP, SEQUENTIAL_CMAP):
            raise
    white, red = np.ones(3), np.array([0.4, 0.0, 0.05])
    s = t[..., None]
    if sc.cmap == SEQUENTIAL_CMAP:
        rgb = white + (red - white) * s
    else:  # blue (0) - white (0.5) - red (1)
        blue, red = np.array([0.13, 0.4, 0.67]), np.array([0.7, 0.09, 0.17])
        rgb = np.where(s < 0.5, blue + (white - blue) * (s / 0.5), white + (red - white) * ((s - 0.5) / 0.5))
    return np.concatenate([rgb, np.ones(t.shape + (1,))], axis=-1)


def _squeeze_to(a: np.ndarray, ndim: int, name: str, what: str) -> np.ndarray:
    """Drop leading size-1 axes until ``a`` has ``ndim`` dims, or raise ShapeError."""
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    if a.ndim != ndim:
        raise ShapeError(f"The {name!r} argument must be {what}; got shape {a.shape}.")
    return a
