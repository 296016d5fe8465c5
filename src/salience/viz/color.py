"""Array coercion, explicit normalisation and colour mapping (no matplotlib needed).

Normalisation belongs to plotting, never to the explainers: every plot function takes a ``norm``
argument naming one of the modes below, and the limits it used are reproducible with
:func:`limits`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError

__all__ = ["to_numpy", "limits", "normalize", "to_rgba", "NORMS", "DEFAULT_CMAP"]

NORMS = ("symmetric", "absmax", "minmax", "none")
"""The normalisation modes accepted by every plot function."""

DEFAULT_CMAP = "RdBu_r"
"""Signed diverging colour map: blue negative, white zero, red positive."""


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


def limits(values: Any, norm: str = "symmetric", percentile: float = 100.0) -> tuple[float, float]:
    """The colour limits ``(vmin, vmax)`` a plot uses for ``values``.

    Parameters
    ----------
    values : array or Tensor
        Attributions of any shape.
    norm : {"symmetric", "absmax", "minmax", "none"}
        ``"symmetric"``: ``(-m, m)`` with ``m`` the ``percentile`` of ``|values|`` (zero maps to
        the middle of a diverging colour map; the sign is kept). ``"absmax"``: ``(0, m)`` on
        ``|values|`` (for maps whose sign is meaningless). ``"minmax"``: the data range.
        ``"none"``: ``(-1, 1)``, values used as they are.
    percentile : float
        Clip outliers: the limit is this percentile of the magnitudes (100 = the maximum).

    Returns
    -------
    (float, float)
    """
    if norm not in NORMS:
        raise ParameterError(f"The 'norm' parameter must be one of {list(NORMS)}. Got {norm!r} instead.")
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
    m = float(np.percentile(np.abs(v), percentile))
    m = m if m > 0 else 1.0
    return (-m, m) if norm == "symmetric" else (0.0, m)


def normalize(values: Any, norm: str = "symmetric", percentile: float = 100.0) -> np.ndarray:
    """Scale ``values`` with :func:`limits`: to [-1, 1] (symmetric), [0, 1] (absmax, minmax).

    ``"absmax"`` takes the magnitude first; ``"none"`` returns the values unchanged. Values past
    the percentile limit are clipped.
    """
    v = to_numpy(values)
    if norm == "none":
        return v
    lo, hi = limits(v, norm, percentile)
    if norm == "symmetric":
        return np.clip(v / hi, -1.0, 1.0)
    if norm == "absmax":
        return np.clip(np.abs(v) / hi, 0.0, 1.0)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


def to_rgba(
    values: Any, cmap: Any = DEFAULT_CMAP, norm: str = "symmetric", percentile: float = 100.0
) -> np.ndarray:
    """Map attributions to RGBA colours, shape ``values.shape + (4,)``, floats in [0, 1].

    ``cmap`` is a matplotlib colour map name or object; without matplotlib the built-in
    blue-white-red ramp is used for the default.
    """
    v = to_numpy(values)
    lo, hi = limits(v, norm, percentile)
    if norm == "absmax":
        v = np.abs(v)
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    try:
        import matplotlib

        cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
        return np.asarray(cm(t), dtype=float)
    except ImportError:
        if cmap != DEFAULT_CMAP:
            raise
    # built-in blue (0) - white (0.5) - red (1) ramp
    blue, white, red = np.array([0.13, 0.4, 0.67]), np.ones(3), np.array([0.7, 0.09, 0.17])
    s = t[..., None]
    rgb = np.where(s < 0.5, blue + (white - blue) * (s / 0.5), white + (red - white) * ((s - 0.5) / 0.5))
    return np.concatenate([rgb, np.ones(t.shape + (1,))], axis=-1)


def _squeeze_to(a: np.ndarray, ndim: int, name: str, what: str) -> np.ndarray:
    """Drop leading size-1 axes until ``a`` has ``ndim`` dims, or raise ShapeError."""
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    if a.ndim != ndim:
        raise ShapeError(f"The {name!r} argument must be {what}; got shape {a.shape}.")
    return a
