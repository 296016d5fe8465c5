"""Lazy matplotlib access without pyplot: figures are plain ``Figure`` objects on an Agg canvas.

No global state is touched (no pyplot figure manager, no backend switch), so plotting works in
headless jobs, threads and notebooks alike; with pyplot, pass ``ax=`` from ``plt.subplots()``.
"""

from __future__ import annotations

import io
import math
import zlib
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


#: the dpi figures are rendered at for the report, the CLI and the demo: one image pixel per CSS
#: pixel at natural size, so a 7-pt label is 9.7 px tall there
DPI = 100

#: the PNG text chunk (keyword) in which :func:`to_png` records the height in pixels of the
#: smallest text it drew, read back by the report (:func:`png_text_px`)
TEXT_PX_KEY = b"salience:text-px"


def to_png(fig: Any, dpi: int = DPI) -> bytes:
    """Render a figure to PNG bytes, recording the smallest text drawn (in pixels of the image)
    in a ``tEXt`` chunk, so that whoever shows the image can keep that text legible."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = buf.getvalue()
    pt = smallest_text_pt(fig)  # after savefig: the tick labels exist once drawn
    if pt is None or not data.startswith(_PNG):
        return data
    chunk = TEXT_PX_KEY + b"\0" + f"{pt * dpi / 72:.3f}".encode("latin-1")
    end = 8 + 8 + int.from_bytes(data[8:12], "big") + 4  # after the IHDR chunk
    packed = len(chunk).to_bytes(4, "big") + b"tEXt" + chunk
    packed += zlib.crc32(b"tEXt" + chunk).to_bytes(4, "big")
    return data[:end] + packed + data[end:]


_PNG = b"\x89PNG\r\n\x1a\n"


def png_text_px(data: bytes) -> float | None:
    """The smallest text height in image pixels that :func:`to_png` recorded in PNG ``data``;
    None for other images."""
    if not data.startswith(_PNG):
        return None
    pos = 8
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if kind in (b"IDAT", b"IEND"):
            return None
        body = data[pos + 8 : pos + 8 + size]
        if kind == b"tEXt" and body.startswith(TEXT_PX_KEY + b"\0"):
            try:
                value = float(body[len(TEXT_PX_KEY) + 1 :].decode("latin-1"))
            except ValueError:
                return None
            return value if math.isfinite(value) and value > 0 else None
        pos += 12 + size
    return None


def smallest_text_pt(fig: Any) -> float | None:
    """The font size in points of the smallest non-empty text a drawn figure shows, or None.

    Walks the artists as ``Figure.draw`` does: invisible artists and their children are
    skipped, and so are the axis (ticks, tick labels, axis label) of an Axes drawn with its
    axis off.
    """
    from matplotlib.axes import Axes
    from matplotlib.text import Text

    sizes: list[float] = []
    stack = [fig]
    seen: set[int] = set()
    while stack:
        artist = stack.pop()
        if id(artist) in seen or not artist.get_visible():
            continue
        seen.add(id(artist))
        if isinstance(artist, Text):
            if artist.get_text().strip():
                sizes.append(float(artist.get_fontsize()))
            continue
        children = list(artist.get_children())
        if isinstance(artist, Axes) and not artist.axison:
            hidden = {id(a) for a in artist._axis_map.values()}
            children = [c for c in children if id(c) not in hidden]
        stack.extend(children)
    return min(sizes) if sizes else None
