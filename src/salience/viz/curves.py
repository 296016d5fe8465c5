"""Deletion / insertion curves and their areas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from . import _mpl
from .color import to_numpy

__all__ = ["plot_curves"]


def plot_curves(
    curves: Mapping[str, Any],
    *,
    fractions: Any = None,
    kind: str = "deletion",
    ylabel: str = "score",
    spread: bool = False,
    legend: str = "right",
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Deletion or insertion curves of several methods, with the area under each in the legend.

    Parameters
    ----------
    curves : mapping of str to array or Tensor of shape (S,) or (B, S)
        One curve per method (a batch of curves is averaged).
    fractions : array of shape (S,), optional
        Fraction of the input removed (deletion) or revealed (insertion) at each step;
        ``linspace(0, 1, S)`` by default.
    kind : {"deletion", "insertion"}
        Only sets the labels (lower area is better for deletion, higher for insertion).
    spread : bool
        Shade +-1 standard deviation around each mean curve.
    legend : {"right", "below", "best", "none"}
        Where the legend goes: outside the axes on the right (default) or below them, so it
        never hides a curve; ``"best"`` lets matplotlib pick a spot inside; ``"none"`` omits it.

    Returns
    -------
    matplotlib Axes
    """
    if legend not in ("right", "below", "best", "none"):
        raise ParameterError(
            f"The 'legend' parameter must be 'right', 'below', 'best' or 'none'. Got {legend!r} instead."
        )
    if kind not in ("deletion", "insertion"):
        raise ParameterError(f"The 'kind' parameter must be 'deletion' or 'insertion'. Got {kind!r} instead.")
    if not isinstance(curves, Mapping) or not curves:
        raise ParameterError("The 'curves' argument must be a non-empty mapping {method: curve}.")
    ax = _mpl.axes_or_new(ax, (5, 3.4))
    for name, c in curves.items():
        y = to_numpy(c, f"curves[{name!r}]")
        y = y[None] if y.ndim == 1 else y
        if y.ndim != 2:
            raise ShapeError(f"curves[{name!r}] must be (S,) or (B, S); got shape {y.shape}.")
        x = np.linspace(0, 1, y.shape[1]) if fractions is None else to_numpy(fractions, "fractions").ravel()
        if x.shape[0] != y.shape[1]:
            raise ShapeError(f"fractions has {x.shape[0]} steps but curves[{name!r}] has {y.shape[1]}.")
        mean = y.mean(0)
        auc = float(np.sum((mean[1:] + mean[:-1]) * np.diff(x)) / 2)
        (line,) = ax.plot(x, mean, label=f"{name} (AUC {auc:.3f})", linewidth=1.6)
        if spread and y.shape[0] > 1:
            sd = y.std(0)
            ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.15, linewidth=0)
    what = "removed" if kind == "deletion" else "revealed"
    ax.set_xlabel(f"fraction of input {what} (most important first)")
    ax.set_ylabel(ylabel, **_mpl.PLAIN)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    if legend != "none":
        places: dict[str, dict[str, Any]] = {
            "right": {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0},
            "below": {"loc": "upper center", "bbox_to_anchor": (0.5, -0.28), "ncol": 2},
            "best": {"loc": "best"},
        }
        place = places[legend]
        leg = ax.legend(
            fontsize=8,
            title=f"{kind} ({'lower' if kind == 'deletion' else 'higher'} AUC is better)",
            title_fontsize=8,
            **place,
        )
        _mpl.plain([*leg.get_texts(), leg.get_title()])
    if title:
        ax.set_title(title, **_mpl.PLAIN)
    return ax
