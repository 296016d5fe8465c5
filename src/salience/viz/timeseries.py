"""Signals (N, C, T): channels drawn as importance-coloured lines, over shaded importance, or as
an image-like map of every channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from . import _meta, _mpl
from .color import _squeeze_to, scale_for, to_numpy

__all__ = ["plot_signal", "plot_signal_map"]


def _signal_pair(x: Any, attr: Any) -> tuple[np.ndarray, np.ndarray]:
    """(C, T) signal and (C, T) attribution; attributions of shape (1, T) are broadcast over the
    channels and a different length (a CAM at layer resolution) is linearly resampled."""
    xs = to_numpy(x, "x")
    xs = xs[None] if xs.ndim == 1 else _squeeze_to(xs, 2, "x", "a signal of shape (T,), (C, T) or (1, C, T)")
    a = to_numpy(attr, "attr")
    a = (
        a[None]
        if a.ndim == 1
        else _squeeze_to(a, 2, "attr", "an attribution of shape (T,), (C, T) or (1, C, T)")
    )
    if a.shape[0] not in (1, xs.shape[0]):
        raise ShapeError(
            f"The 'attr' argument has {a.shape[0]} channels but the signal has {xs.shape[0]}; pass "
            "one attribution row per channel or a single row (a channel-reduced map)."
        )
    if a.shape[1] != xs.shape[1]:
        if a.shape[1] < 1:
            raise ShapeError(f"The 'attr' argument is empty (shape {a.shape}).")
        src = (np.arange(a.shape[1]) + 0.5) / a.shape[1]
        dst = (np.arange(xs.shape[1]) + 0.5) / xs.shape[1]
        a = np.stack([np.interp(dst, src, row) for row in a])
    return xs, np.broadcast_to(a, xs.shape).copy()


def _time_axis(T: int, fs: float | None) -> tuple[np.ndarray, str]:
    if fs is None:
        return np.arange(T, dtype=float), "sample"
    if not isinstance(fs, (int, float)) or isinstance(fs, bool) or not fs > 0:
        raise ParameterError(
            f"The 'fs' parameter must be a positive sampling rate in Hz. Got {fs!r} instead."
        )
    return np.arange(T) / float(fs), "time (s)"


def _truth_mask(truth: Any, C: int, T: int) -> np.ndarray:
    """A (C, T) boolean ground-truth mask from (T,), (1, T), (C, T) or (1, C, T)."""
    m = to_numpy(truth, "truth")
    m = m[None] if m.ndim == 1 else _squeeze_to(m, 2, "truth", "a mask of shape (T,), (C, T) or (1, C, T)")
    if m.shape[1] != T or m.shape[0] not in (1, C):
        raise ShapeError(
            f"The 'truth' mask has shape {m.shape} but the signal is (C, T) = ({C}, {T}); pass a "
            "(C, T) mask or a (1, T) mask for all channels."
        )
    return np.broadcast_to(m != 0, (C, T))


def _draw_truth(ax: Any, mask: np.ndarray, t: np.ndarray, dt: float, rows: list[tuple[float, float]]) -> None:
    """Dashed boxes around each run of True in each row of ``mask``; ``rows`` gives each row's
    (bottom, top) on the y axis. The boxes have gid ``"salience-truth"``."""
    from matplotlib.patches import Rectangle

    for c, (lo, hi) in enumerate(rows):
        m = np.r_[False, mask[c], False].astype(int)
        starts, ends = np.flatnonzero(np.diff(m) == 1), np.flatnonzero(np.diff(m) == -1)
        for s, e in zip(starts, ends, strict=True):
            box = Rectangle(
                (t[s] - dt / 2, lo),
                (e - s) * dt,
                hi - lo,
                fill=False,
                edgecolor="black",
                linewidth=1.5,
                linestyle="--",
                zorder=5,
            )
            box.set_gid("salience-truth")
            ax.add_patch(box)


def _nice_length(span: float) -> float:
    """The longest 1, 2 or 5 x 10^k not over a fifth of ``span``."""
    target = span / 5.0
    k = 10.0 ** np.floor(np.log10(target))
    return float(next(m * k for m in (5, 2, 1) if m * k <= target * (1 + 1e-9)))


def time_scale_bar(ax: Any, duration: float) -> Any:
    """A horizontal scale bar in seconds (``"0.5 s"``, ``"20 ms"``) in the lower right corner of
    ``ax``, about a fifth of ``duration`` (s) long; its artist has gid ``"salience-scale-bar"``."""
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar  # type: ignore[import-untyped]

    if not duration > 0:
        return None
    length = _nice_length(duration)
    label = f"{length:g} s" if length >= 1 else f"{length * 1000:.3g} ms"
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        label,
        loc="lower right",
        pad=0.25,
        borderpad=0.3,
        sep=2,
        frameon=True,
        size_vertical=0,
        fontproperties=FontProperties(size=7),
    )
    bar.patch.set_alpha(0.75)
    bar.patch.set_edgecolor("none")
    bar.set_gid("salience-scale-bar")
    ax.add_artist(bar)
    return bar


def _select(channels: Sequence[int] | None, C: int) -> list[int]:
    if channels is None:
        return list(range(C))
    out = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -C <= c < C:
            raise ParameterError(
                f"The 'channels' parameter must list channel indices in [0, {C}). Got {list(channels)!r}."
            )
        out.append(int(c) % C)
    if not out:
        raise ParameterError("The 'channels' parameter must select at least one channel.")
    return out


def _names(channel_names: Sequence[str] | None, C: int) -> list[str]:
    if channel_names is None:
        return [f"ch {i}" for i in range(C)]
    if len(channel_names) != C:
        raise ParameterError(
            f"The 'channel_names' parameter must name all {C} channels. Got {len(channel_names)} names."
        )
    return [str(n) for n in channel_names]


def plot_signal(
    x: Any,
    attr: Any,
    *,
    fs: float | None = None,
    channels: Sequence[int] | None = None,
    channel_names: Sequence[str] | None = None,
    style: str = "line",
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    percentile: float = 100.0,
    linewidth: float = 2.0,
    colorbar: bool = True,
    scale_bar: bool = True,
    units: str | None = None,
    truth: Any = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """Draw a signal with its attribution, one band per channel.

    Parameters
    ----------
    x : array or Tensor of shape (T,), (C, T) or (1, C, T)
        One signal (CPU or GPU tensors and numpy arrays alike).
    attr : array, Tensor or Attribution of shape (T,), (C, T), (1, T) or (1, C, T)
        Its attribution; one row is broadcast over the channels, another length is resampled.
    fs : float, optional
        Sampling rate in Hz: the time axis is in seconds; samples otherwise. Default: the
        ``sfreq`` an :class:`~salience.Attribution` carries.
    channels : sequence of int, optional
        Channels to draw (default all), top to bottom.
    channel_names : sequence of str, optional
        A name per channel of ``x`` (default: the names an Attribution carries, else
        ``"ch 0"``, ...).
    style : {"line", "background"}
        ``"line"``: each trace coloured by its attribution at every sample (SignalGrad-CAM's
        single-channel display). ``"background"``: a black trace over a shaded attribution band.
    cmap, norm, vmin, vmax, percentile
        Colour scale (:func:`~salience.viz.scale_for`): ``"auto"`` draws a signed map on a
        symmetric diverging scale (white at zero) and a map without negative values on a
        sequential scale from zero; one scale is shared by all channels so they are comparable.
    colorbar : bool
        Add a colour bar labelled ``attribution``.
    scale_bar : bool
        With a sampling rate: a time scale bar in seconds in the lower right corner.
    units : str, optional
        Amplitude units of ``x`` (``"uV"``), written on the y axis of a single channel.
    truth : array or Tensor of shape (T,), (C, T) or (1, C, T), optional
        A ground-truth mask: each run of nonzero samples is outlined with a dashed box in its
        channel's band.
    title : str, optional
        Default for an :class:`~salience.Attribution` of one sample: its method, class and
        score; ``""`` for none.
    class_names : sequence of str, optional
        Names of the classes, for the default title.
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.

    Returns
    -------
    matplotlib Axes
        With several channels each trace is scaled to its band (the y axis names the channels);
        a single channel keeps its amplitude units.
    """
    if style not in ("line", "background"):
        raise ParameterError(f"The 'style' parameter must be 'line' or 'background'. Got {style!r} instead.")
    fs = _meta.sampling_rate(attr, fs)
    xs, a = _signal_pair(x, attr)
    C, T = xs.shape
    sel = _select(channels, C)
    names = _names(_meta.channel_names(attr, channel_names), C)
    t, tlabel = _time_axis(T, fs)
    sc = scale_for(a[sel], norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile, method=_meta.method(attr))
    _mpl.matplotlib()
    from matplotlib.collections import LineCollection

    ax = _mpl.axes_or_new(ax, (9, 1.2 + 0.9 * len(sel)) if len(sel) > 1 else (9, 2.8))
    cnorm, cm = sc.mpl_norm(), sc.colormap()
    dt = (t[1] - t[0]) if T > 1 else 1.0
    single = len(sel) == 1
    mask = _truth_mask(truth, C, T) if truth is not None else None
    bands: list[tuple[float, float]] = []
    for row, c in enumerate(sel):
        y = xs[c]
        v = sc.shown(a[c])
        if single:
            lo, hi = float(np.min(y)), float(np.max(y))
            pad = 0.08 * (hi - lo if hi > lo else 1.0)
            yb, band = y, (lo - pad, hi + pad)
        else:
            centre = len(sel) - 1 - row
            m = float(np.max(np.abs(y - y.mean()))) or 1.0
            yb, band = centre + 0.42 * (y - y.mean()) / m, (centre - 0.5, centre + 0.5)
        bands.append(band)
        if style == "line":
            pts = np.stack([t, yb], axis=1)
            segs = np.stack([pts[:-1], pts[1:]], axis=1)
            lc = LineCollection(
                list(segs), cmap=cm, norm=cnorm, linewidth=linewidth * 2.5, zorder=1, capstyle="round"
            )
            lc.set_array(0.5 * (v[:-1] + v[1:]))
            ax.add_collection(lc)
            # a thin dark trace on top keeps the shape readable where the attribution is ~0 (white)
            ax.plot(t, yb, color="0.2", linewidth=0.6, zorder=2)
        else:
            ax.imshow(
                v[None, :],
                cmap=cm,
                norm=cnorm,
                aspect="auto",
                interpolation="nearest",
                extent=(t[0] - dt / 2, t[-1] + dt / 2, band[0], band[1]),
                zorder=1,
            )
            ax.plot(t, yb, color="black", linewidth=0.9, zorder=2)
    if mask is not None:
        _draw_truth(ax, mask[sel], t, dt, bands)
    ax.set_xlim(t[0] - dt / 2, t[-1] + dt / 2)
    if single:
        ax.set_ylim(*band)
        ax.set_ylabel(names[sel[0]] + (f" ({units})" if units else ""), **_mpl.PLAIN)
    else:
        ax.set_ylim(-0.5, len(sel) - 0.5)
        ax.set_yticks(range(len(sel)))
        ax.set_yticklabels([names[c] for c in reversed(sel)], **_mpl.PLAIN)
    _finish(ax, attr, tlabel, title, class_names, scale_bar and fs is not None, T / fs if fs else 0.0)
    if colorbar:
        _mpl.scale_colorbar(ax, sc)
    return ax


def _finish(
    ax: Any,
    attr: Any,
    tlabel: str,
    title: str | None,
    class_names: Sequence[str] | None,
    bar: bool,
    duration: float,
) -> None:
    """Time label, time scale bar, and the title (by default an Attribution's own)."""
    ax.set_xlabel(tlabel)
    if bar:
        time_scale_bar(ax, duration)
    if title is None and _meta.is_attribution(attr) and len(attr) == 1:
        title = _meta.title(attr, 0, class_names)
    if title:
        ax.set_title(title, **_mpl.PLAIN)


def plot_signal_map(
    x: Any,
    attr: Any,
    *,
    fs: float | None = None,
    channel_names: Sequence[str] | None = None,
    traces: bool = True,
    truth: Any = None,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    percentile: float = 100.0,
    colorbar: bool = True,
    scale_bar: bool = True,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """All channels as one image-like attribution map (rows = channels), traces overlaid.

    SignalGrad-CAM's overlapped display: ``attr`` of shape (C, T) (or (1, T), broadcast) drawn as
    an image over time, with each channel's trace scaled into its row when ``traces`` is True;
    ``truth`` (a (C, T) or (1, T) ground-truth mask) is outlined with dashed boxes. Parameters as
    in :func:`plot_signal`.

    Returns
    -------
    matplotlib Axes
    """
    fs = _meta.sampling_rate(attr, fs)
    xs, a = _signal_pair(x, attr)
    C, T = xs.shape
    names = _names(_meta.channel_names(attr, channel_names), C)
    t, tlabel = _time_axis(T, fs)
    sc = scale_for(a, norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile, method=_meta.method(attr))
    ax = _mpl.axes_or_new(ax, (9, 1.5 + 0.45 * C))
    dt = (t[1] - t[0]) if T > 1 else 1.0
    ax.imshow(
        sc.shown(a),
        cmap=sc.colormap(),
        norm=sc.mpl_norm(),
        aspect="auto",
        interpolation="nearest",
        extent=(t[0] - dt / 2, t[-1] + dt / 2, C - 0.5, -0.5),
    )
    if traces:
        for c in range(C):
            y = xs[c] - xs[c].mean()
            m = float(np.max(np.abs(y))) or 1.0
            ax.plot(t, c - 0.4 * y / m, color="black", linewidth=0.7)
    if truth is not None:
        _draw_truth(ax, _truth_mask(truth, C, T), t, dt, [(c - 0.5, c + 0.5) for c in range(C)])
    ax.set_yticks(range(C))
    ax.set_yticklabels(names, **_mpl.PLAIN)
    _finish(ax, attr, tlabel, title, class_names, scale_bar and fs is not None, T / fs if fs else 0.0)
    if colorbar:
        _mpl.scale_colorbar(ax, sc)
    return ax
