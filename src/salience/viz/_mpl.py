"""Lazy matplotlib access without pyplot: figures are plain ``Figure`` objects on an Agg canvas.

No global state is touched (no pyplot figure manager, no backend switch), so plotting works in
headless jobs, threads and notebooks alike; with pyplot, pass ``ax=`` from ``plt.subplots()``.
"""

from __future__ import annotations

import io
from typing import Any

#: Text properties for every user string drawn in a plot (channel, class, method, band and layer
#: names, titles, labels): the text is drawn exactly as given. Without them matplotlib reads a
#: string with two ``$`` as mathtext ("$x_$" raises at draw time, "$a$" loses its dollars) and,
#: with ``text.usetex``, hands ``_``, ``^``, ``%``, ``\`` to LaTeX.
PLAIN: dict[str, Any] = {"parse_math": False, "usetex": False}


def plain(texts: Any) -> None:
    """Make matplotlib Text objects (one or an iterable) draw their strings literally."""
    for t in [texts] if hasattr(texts, "set_parse_math") else texts:
        t.set_parse_math(False)
        t.set_usetex(False)


def matplotlib() -> Any:
    try:
        import matplotlib as mpl
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            "salience.viz needs matplotlib: pip install 'salience[viz]' (or pip install matplotlib)."
        ) from exc
    return mpl


def new_figure(figsize: tuple[float, float]) -> Any:
    matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def axes_or_new(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        if not hasattr(ax, "figure") or not hasattr(ax, "plot"):
            from ..errors import ParameterError

            raise ParameterError(
                f"The 'ax' argument must be a matplotlib Axes or None. Got {type(ax).__name__} instead."
            )
        return ax
    return new_figure(figsize).add_subplot()


def colorbar(ax: Any, mappable: Any, label: str | None = None) -> Any:
    cb = ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    if label:
        cb.set_label(label)
    return cb


def scale_colorbar(ax: Any, scale: Any, label: str = "attribution") -> Any:
    """A colour bar for a :class:`~salience.viz.color.Scale`, its label naming how the map was
    scaled when that is not the signed default (``"attribution (0 to max)"``)."""
    cb = colorbar(ax, scale.mappable(), label + _SCALE_SUFFIX.get(scale.norm, ""))
    return cb


_SCALE_SUFFIX = {"sequential": " (from 0)", "absmax": " |a|", "minmax": " (min to max)"}


def to_png(fig: Any, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
