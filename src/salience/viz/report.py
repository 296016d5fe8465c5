"""A self-contained HTML report: every image embedded, every user string escaped."""

from __future__ import annotations

import base64
import datetime
import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, overload

from .._validation import check_int
from ..errors import ParameterError
from . import _mpl

__all__ = ["Report", "completeness_metrics", "completeness_summary"]

#: the smallest text height, in CSS pixels, a report lets a figure's text shrink to
MIN_TEXT_PX = 9.0

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:1.2em 2em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{margin-bottom:.3em}.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure.salience-figure{display:inline-block;margin:.4em .6em .8em 0;vertical-align:top;max-width:100%;
overflow-x:auto}
figure.salience-figure img{display:block;max-width:100%;height:auto;outline:1px solid #eee;cursor:zoom-in}
figure.salience-figure img:focus{max-width:none;cursor:zoom-out;outline:2px solid #8ab}
figcaption{font-size:.85em;color:#444;max-width:60em}
.sample{border-left:4px solid #8ab;padding-left:1em;margin:1.2em 0}
.kv{font-size:.95em}.kv b{color:#333}nav ul{columns:2;font-size:.92em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


#: image types a report embeds, by MIME type
MIME_TYPES = ("image/png", "image/gif", "image/jpeg", "image/webp", "image/bmp", "image/svg+xml")


def _sniff(data: bytes) -> str | None:
    """The MIME type of image bytes from their signature, or None when they are no image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and len(data) > 26:
        return "image/bmp"
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    return None


@overload
def _check_text(value: Any, name: str, owner: str, optional: Literal[False] = False) -> str: ...
@overload
def _check_text(value: Any, name: str, owner: str, optional: bool) -> str | None: ...
def _check_text(value: Any, name: str, owner: str, optional: bool = False) -> str | None:
    """``value`` if it is a str (or None when ``optional``), else ParameterError."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a str{' or None' if optional else ''}. "
            f"Got {type(value).__name__} {value!r} instead."
        )
    return value


def _fmt(v: Any) -> str:
    """Numbers for tables and metrics: floats in [1e-3, 1e4) with 4 decimals, more where 4
    would round a value that is not a whole number onto one (0.99997 stays 0.99997, not 1.0000);
    others in scientific notation; exact integers as integers."""
    if isinstance(v, (bool, int)):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0.0:
            return "0.0000"
        if not 1e-3 <= abs(v) < 1e4:
            return f"{v:.4g}"
        for decimals in range(4, 10):
            text = f"{v:.{decimals}f}"
            if float(text) != round(v) or v == round(v):
                return text
        return text
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return _fmt(v.item())
    return str(v)


def completeness_metrics(attribution: Any, index: int) -> dict[str, float]:
    """The completeness gap of sample ``index`` of an attribution that has one (``delta``: IG,
    the domain IGs, DeepLift, the layer attributions), as report metrics; ``{}`` when it has none.

    ``delta`` is ``sum(values) - (f(x) - f(x'))``; the relative gap divides it by
    ``|f(x) - f(x')|`` (``sum(values) - delta``), the change the attributions account for.

    Examples
    --------
    >>> import torch, salience as sl
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3), torch.nn.Tanh())
    >>> attr = sl.IntegratedGradients(model, n_steps=32).explain(torch.ones(2, 2, 4), target=0)
    >>> sorted(completeness_metrics(attr, 0))
    ['completeness gap', 'relative completeness gap']
    """
    delta = getattr(attribution, "delta", None)
    if delta is None:
        return {}
    d = float(delta.reshape(-1)[index])
    change = float(attribution.values[index].sum()) - d  # f(x) - f(x')
    rel = abs(d) / abs(change) if change != 0 else float("inf") if d else 0.0
    return {"completeness gap": d, "relative completeness gap": rel}


def completeness_summary(attribution: Any) -> str | None:
    """One sentence on the completeness gaps of every sample of an attribution with ``delta``
    (largest and median relative gap); None without ``delta``."""
    delta = getattr(attribution, "delta", None)
    if delta is None:
        return None
    n = int(delta.reshape(-1).shape[0])
    rel = sorted(completeness_metrics(attribution, i)["relative completeness gap"] for i in range(n))
    worst = max(range(n), key=lambda i: abs(float(delta.reshape(-1)[i])))
    return (
        f"Completeness: sum(attributions) - (f(x) - f(x')) is at most {_fmt(rel[-1])} of "
        f"|f(x) - f(x')| (median {_fmt(rel[n // 2])}, {n} samples; largest absolute gap "
        f"{_fmt(float(delta.reshape(-1)[worst]))}, sample {worst}). More steps shrink it."
    )


class Report:
    """Collect text, tables and figures, then write one HTML file with everything embedded.

    Figures (matplotlib figures, PNG/GIF bytes or image files) are stored as base64 data URIs, so
    the file can be mailed or archived alone. Every string given to the report (titles, class
    names, captions, metric names) is HTML-escaped.

    Every argument is checked when it is given: wrong types, data that is no image, and paths
    that cannot be read or written raise a :class:`~salience.errors.ParameterError` naming the
    parameter, what was expected and what was received.

    Parameters
    ----------
    title : str
        The page title.
    dpi : int
        Resolution used for matplotlib figures, in [1, 2400]. At the default, 100, one image
        pixel is one CSS pixel at natural size.
    min_text_px : float
        The smallest text height, in CSS pixels, a figure's text may have as displayed. A
        figure whose smallest text is known (matplotlib figures, and PNGs written by the CLI
        and the demo, which record it) is never shrunk below that: narrower pages scroll it
        sideways instead of making its labels illegible. Default 9.

    Examples
    --------
    >>> report = Report("my model")
    >>> _ = report.section("GunPoint", "a 1-D CNN").table([{"method": "IG", "deletion AUC": 0.12}])
    >>> "<td>IG</td>" in report.to_html()
    True
    >>> report.save("report.html")  # doctest: +SKIP
    """

    def __init__(
        self, title: str = "salience report", *, dpi: int = _mpl.DPI, min_text_px: float = MIN_TEXT_PX
    ) -> None:
        self.title = _check_text(title, "title", "Report")
        self.dpi = check_int(dpi, "dpi", "Report", low=1, high=2400)
        if (
            isinstance(min_text_px, bool)
            or not isinstance(min_text_px, (int, float))
            or not 0 <= min_text_px < 1000
        ):
            raise ParameterError(
                "The 'min_text_px' parameter of Report must be a number of CSS pixels in [0, 1000). "
                f"Got {min_text_px!r} instead."
            )
        self.min_text_px = float(min_text_px)
        self._blocks: list[str] = []
        self._toc: list[tuple[str, str]] = []
        self.n_figures = 0

    # -- content ---------------------------------------------------------------------------
    def section(self, title: str, text: str | None = None) -> Report:
        """Start a section (listed in the table of contents), with an optional paragraph."""
        _check_text(title, "title", "Report.section")
        _check_text(text, "text", "Report.section", optional=True)
        anchor = f"s{len(self._toc)}"
        self._toc.append((anchor, title))
        self._blocks.append(f'<h2 id="{_e(anchor)}">{_e(title)}</h2>')
        if text:
            self.text(text)
        return self

    def text(self, text: str) -> Report:
        """A paragraph of plain text (escaped; blank lines separate paragraphs)."""
        for para in _check_text(text, "text", "Report.text").split("\n\n"):
            self._blocks.append(f"<p>{_e(para)}</p>")
        return self

    def table(self, rows: Sequence[Mapping[str, Any]], *, caption: str | None = None) -> Report:
        """A table from a list of dicts (columns in first-seen order)."""
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise ParameterError(
                "The 'rows' parameter of Report.table must be a list of dicts {column: value}. "
                f"Got {type(rows).__name__} instead."
            )
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise ParameterError(
                    f"The 'rows' parameter of Report.table must be a list of dicts {{column: value}}; "
                    f"row {i} is a {type(r).__name__} ({r!r})."
                )
        _check_text(caption, "caption", "Report.table", optional=True)
        if not rows:
            return self
        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_e(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
        )
        cap = f"<caption>{_e(caption)}</caption>" if caption else ""
        self._blocks.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def figure(self, fig: Any, caption: str | None = None, *, mime: str | None = None) -> Report:
        """Embed a figure.

        Parameters
        ----------
        fig : matplotlib Figure or Axes, bytes, or path
            A figure (rendered to PNG at the report's ``dpi``), or the bytes or file of an image
            (PNG, GIF, JPEG, WebP, BMP or SVG, recognised from its content).
        caption : str, optional
        mime : str, optional
            The image type of bytes or a file (one of :data:`MIME_TYPES`); it must agree with
            the content. Default: recognised from the content.

        Returns
        -------
        Report
            ``self``, for chaining.
        """
        _check_text(caption, "caption", "Report.figure", optional=True)
        data, mime = self._image_bytes(fig, mime)
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        alt = caption or "figure"
        cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        # tabindex: clicking focuses the image, and the :focus rule shows it at full size
        self._blocks.append(
            f'<figure class="salience-figure"><img src="{_e(uri)}" alt="{_e(alt)}" tabindex="0"'
            f"{self._legible(data)}>{cap}</figure>"
        )
        self.n_figures += 1
        return self

    def sample(
        self,
        name: str,
        *,
        prediction: Any = None,
        target: Any = None,
        metrics: Mapping[str, Any] | None = None,
        figures: Iterable[tuple[str, Any]] = (),
    ) -> Report:
        """One explained sample: its prediction, target, metrics and figures (caption, figure)."""
        _check_text(name, "name", "Report.sample")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise ParameterError(
                "The 'metrics' parameter of Report.sample must be a dict {name: value} or None. "
                f"Got {type(metrics).__name__} instead."
            )
        if isinstance(figures, (str, bytes, Mapping)) or not isinstance(figures, Iterable):
            raise ParameterError(
                "The 'figures' parameter of Report.sample must be a list of (caption, figure) "
                f"pairs. Got {type(figures).__name__} instead."
            )
        figures = list(figures)
        for i, pair in enumerate(figures):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ParameterError(
                    "The 'figures' parameter of Report.sample must be a list of (caption, figure) "
                    f"pairs; entry {i} is a {type(pair).__name__}."
                )
            _check_text(pair[0], f"figures[{i}] caption", "Report.sample", optional=True)
        # render every figure before writing anything, so a bad one leaves the report unchanged
        images = [(caption, self._image_bytes(fig, None)) for caption, fig in figures]
        self._blocks.append('<div class="sample">')
        self._blocks.append(f"<h3>{_e(name)}</h3>")
        kv = []
        if prediction is not None:
            kv.append(f"<b>prediction</b>: {_e(prediction)}")
        if target is not None:
            kv.append(f"<b>target</b>: {_e(target)}")
        if metrics:
            kv.append(" &middot; ".join(f"<b>{_e(k)}</b>: {_e(_fmt(v))}" for k, v in metrics.items()))
        if kv:
            self._blocks.append('<p class="kv">' + "<br>".join(kv) + "</p>")
        for caption, (data, mime) in images:
            self.figure(data, caption, mime=mime)
        self._blocks.append("</div>")
        return self

    # -- output ----------------------------------------------------------------------------
    def to_html(self) -> str:
        """The report as one HTML string."""
        toc = ""
        if len(self._toc) > 1:
            toc = (
                "<nav><ul>"
                + "".join(f'<li><a href="#{_e(a)}">{_e(t)}</a></li>' for a, t in self._toc)
                + "</ul></nav>"
            )
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        from .. import __version__

        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(self.title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{_e(self.title)}</h1>"
            f'<p class="meta">salience {_e(__version__)} &middot; {stamp} &middot; {self.n_figures} figures. '
            "Signed attributions use a diverging colour map: red pushes the explained score up, "
            "blue pushes it down, white is zero; maps without negative values use a sequential "
            "map from white (zero) to dark red. Each map has its own colour scale; how it is "
            "scaled (symmetric, magnitude, min-max, clipping, smoothing) is stated in the figure "
            "or its caption. Figures are never shrunk below the size at which their smallest "
            f"text is {self.min_text_px:g} px tall (wider ones scroll sideways); click a figure to "
            "see it at full size.</p>"
            f"{toc}{''.join(self._blocks)}</body></html>\n"
        )

    def save(self, path: str | os.PathLike) -> str:
        """Write the report (creating missing folders); returns the path.

        Raises
        ------
        ParameterError
            ``path`` is not a path, is a folder, or cannot be written (the reason is given).
        """
        if not isinstance(path, (str, os.PathLike)):
            raise ParameterError(
                f"The 'path' parameter of Report.save must be a file path (str or os.PathLike). "
                f"Got {type(path).__name__} instead."
            )
        path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise ParameterError(
                f"The 'path' parameter of Report.save must be a non-empty text path. Got {path!r} instead."
            )
        if os.path.isdir(path):
            raise ParameterError(
                f"The 'path' parameter of Report.save must name a file; {path!r} is a folder."
            )
        text = self.to_html()
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise ParameterError(
                f"The 'path' parameter of Report.save must be a writable file path. Writing "
                f"{path!r} failed: {exc.strerror or exc}."
            ) from exc
        return path

    # -- helpers ---------------------------------------------------------------------------
    def _legible(self, data: bytes) -> str:
        """The <img> attributes that keep a PNG's smallest recorded text at least
        ``min_text_px`` CSS pixels tall: ``min-width`` = natural width x min_text_px / text px
        (the image scrolls sideways rather than shrink below it; a figure whose text is
        smaller than that at natural size is enlarged). Nothing for other images."""
        text_px = _mpl.png_text_px(data)
        if text_px is None or len(data) < 24:
            return ""
        width = int.from_bytes(data[16:20], "big")  # IHDR: the image's natural width in pixels
        least = math.ceil(width * self.min_text_px / text_px)
        return f' data-text-px="{text_px:g}" style="min-width:{least}px"'

    def _image_bytes(self, fig: Any, mime: Any) -> tuple[bytes, str]:
        """The image bytes of ``fig`` and their MIME type, checked against ``mime``."""
        if mime is not None and mime not in MIME_TYPES:
            raise ParameterError(
                f"The 'mime' parameter of Report.figure must be None or one of "
                f"{', '.join(repr(m) for m in MIME_TYPES)}. Got {mime!r} instead."
            )
        if hasattr(fig, "savefig") or (hasattr(fig, "figure") and hasattr(fig.figure, "savefig")):
            if mime not in (None, "image/png"):
                raise ParameterError(
                    f"The 'mime' parameter of Report.figure: matplotlib figures are embedded as "
                    f"'image/png'. Got {mime!r} instead."
                )
            return _mpl.to_png(fig if hasattr(fig, "savefig") else fig.figure, self.dpi), "image/png"
        if isinstance(fig, (bytes, bytearray, memoryview)):
            data, what = bytes(fig), f"{len(fig)} bytes"
        elif isinstance(fig, (str, os.PathLike)):
            try:
                with open(fig, "rb") as fh:
                    data = fh.read()
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                raise ParameterError(
                    f"The 'fig' parameter of Report.figure must be a figure, image bytes or the "
                    f"path of a readable image file. Reading {os.fspath(fig)!r} failed: {reason}."
                ) from exc
            what = f"the file {os.fspath(fig)!r}"
        else:
            raise ParameterError(
                "The 'fig' parameter of Report.figure must be a matplotlib Figure or Axes, image "
                f"bytes or the path of an image file. Got {type(fig).__name__} instead."
            )
        found = _sniff(data)
        if found is None:
            raise ParameterError(
                f"The 'fig' parameter of Report.figure must hold an image (PNG, GIF, JPEG, WebP, "
                f"BMP or SVG). Got {what} with no image signature (first bytes {data[:8]!r})."
            )
        if mime is not None and mime != found:
            raise ParameterError(
                f"The 'mime' parameter of Report.figure says {mime!r}, but the content of {what} "
                f"is {found!r}."
            )
        return data, found
