"""Frequency, time-frequency and component views of attributions computed in a domain.

These functions take plain arrays and coordinates (frequencies in Hz, frame times, component
traces), so they do not depend on how the domain attributions were computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..domains.bands import EEG_BANDS, OTHER, BandsLike, aggregate_bands, resolve_bands
from ..errors import ParameterError, ShapeError
from . import _meta, _mpl
from .color import _squeeze_to, scale_for, to_numpy

__all__ = ["EEG_BANDS", "band_sums", "plot_spectrum", "plot_bands", "plot_time_frequency", "plot_components"]


def _per_bin(attr: Any, channel: int | None) -> np.ndarray:
    a = to_numpy(attr, "attr")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        if channel is None:
            a = a.sum(0)
        elif not (isinstance(channel, (int, np.integer)) and -a.shape[0] <= channel < a.shape[0]):
            raise ParameterError(
                f"The 'channel' parameter must be an index in [0, {a.shape[0]}). Got {channel!r}."
            )
        else:
            a = a[channel]
    if a.ndim != 1:
        raise ShapeError(f"The 'attr' argument must be per-bin values (F,) or (C, F); got shape {a.shape}.")
    return a


def _freqs(freqs: Any, F: int, fs: float | None) -> np.ndarray:
    if freqs is not None:
        f = to_numpy(freqs, "freqs").ravel()
        if f.shape[0] != F:
            raise ShapeError(f"The 'freqs' argument has {f.shape[0]} entries but there are {F} bins.")
        return f
    if fs is None:
        return np.arange(F, dtype=float)
    return np.linspace(0, fs / 2, F)


OUTSIDE_LABEL = "outside every band"
"""How plots label the ``"other"`` entry: the attribution of bins outside every band."""


def _band_table(bands: BandsLike, f: np.ndarray, fs: float | None) -> dict[str, tuple[float, float]]:
    """:func:`~salience.domains.resolve_bands` for bins ``f``: Nyquist is ``fs / 2``, or without
    ``fs`` the highest bin (as :func:`~salience.domains.aggregate_bands` does on a tensor)."""
    u = np.unique(np.abs(f))
    res = float(np.diff(u).min()) if u.size > 1 else None
    rate = fs if fs is not None else 2 * float(u.max() if u.size else 0.0)
    if not rate > 0:
        raise ParameterError(
            f"The bin frequencies are all 0 and no fs was given; pass freqs in Hz or fs=. Got {f!r}."
        )
    return resolve_bands(bands, rate, resolution=res)


def _sums(attr: Any, freqs: Any, bands: BandsLike, fs: float | None) -> tuple[list[str], np.ndarray, dict]:
    a = to_numpy(attr, "attr")
    f = to_numpy(freqs, "freqs").ravel()
    if a.shape[-1] != f.shape[0]:
        raise ShapeError(f"attr has {a.shape[-1]} bins on its last axis but freqs has {f.shape[0]}.")
    table = _band_table(bands, f, fs)
    t = torch.as_tensor(np.ascontiguousarray(a))
    out = aggregate_bands(t, table, fs=fs, freqs=torch.as_tensor(f))
    names = list(table) + ([OTHER] if out.shape[-1] > len(table) else [])
    return names, out.numpy(), table


def band_sums(
    attr: Any, freqs: Any, bands: BandsLike = None, *, fs: float | None = None
) -> tuple[list[str], np.ndarray]:
    """Sum per-bin attributions into named bands, as :func:`~salience.domains.aggregate_bands` does.

    Parameters
    ----------
    attr : array or Tensor of shape (..., F)
        Per-frequency-bin attributions (signed; sums keep the sign).
    freqs : array of shape (F,)
        Bin centre frequencies in Hz (``|f|`` is used, so full spectra fold).
    bands : None, str, dict name -> (low, high), or increasing edges, default None
        See :func:`~salience.domains.resolve_bands`. None: octave bands from 0 Hz to Nyquist;
        EEG band names only with ``bands="eeg"``. A bin belongs to ``[low, high)`` (a band
        reaching Nyquist also takes the Nyquist bin).
    fs : float, optional
        Sampling rate in Hz; Nyquist is ``fs / 2`` (else the highest bin). A band at or above it
        raises ParameterError.

    Returns
    -------
    names : list of str
        The band names, then ``"other"`` when some bin (e.g. DC for ``"eeg"``) lies outside
        every band, so the sums add up to the total attribution.
    sums : ndarray of shape (..., n_bands)
    """
    names, sums, _ = _sums(attr, freqs, bands, fs)
    return names, sums


def _label(name: str, table: Mapping[str, Sequence[float]], hz: bool = False) -> str:
    """A band's axis label: ``"outside every band"`` for the ``"other"`` entry, with its edges."""
    if name not in table:
        return OUTSIDE_LABEL
    lo, hi = table[name]
    edges = f"{lo:g}-{hi:g} Hz"
    return name if not hz else (edges if name == f"{lo:g}-{hi:g}" else f"{name}\n{edges}")


def plot_spectrum(
    attr: Any,
    freqs: Any = None,
    *,
    fs: float | None = None,
    signal: Any = None,
    channel: int | None = None,
    bands: BandsLike = None,
    fmax: float | None = None,
    xlabel: str | None = None,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """Per-frequency-bin attribution as signed bars, against the signal's amplitude spectrum.

    Parameters
    ----------
    attr : array, Tensor or Attribution of shape (F,) or (C, F)
        Per-bin attributions (e.g. from Fourier-domain IG); channels are summed unless
        ``channel`` picks one.
    freqs : array of shape (F,), optional
        Bin frequencies in Hz; by default ``F`` bins spread evenly on [0, fs/2] (the rfft bins
        of an even-length signal), or bin indices without ``fs``.
    signal : array or Tensor of shape (T,) or (C, T), optional
        The explained signal; its rfft amplitude (mean over the selected channels) is drawn as
        a grey line on a second y axis.
    bands : None, str, dict name -> (low, high), or edges, optional
        Bands to shade and label (:func:`~salience.domains.resolve_bands`: ``"octave"``,
        ``"eeg"``, a dict ...); none by default. The names are written just above the axes, so
        bars never cover them. A band at or above Nyquist (``fs / 2``, else the highest bin)
        raises ParameterError.
    fmax : float, optional
        Upper limit of the frequency axis.
    xlabel : str, optional
        Label of the frequency axis (default: Hz with ``fs`` or frequencies above 0.5, cycles
        per sample for normalised frequencies, bin indices otherwise).
    cmap, norm, vmin, vmax
        Colours of the bars (:func:`~salience.viz.scale_for`; ``"auto"``: diverging for signed
        values, sequential from zero otherwise).
    title : str, optional
        Default for an :class:`~salience.Attribution` of one sample: its method, class and
        score; ``""`` for none.

    Returns
    -------
    matplotlib Axes
        The attribution axes (the spectrum's twin axes is ``ax.right_ax`` when drawn).
    """
    a = _per_bin(attr, channel)
    fs = _meta.sampling_rate(attr, fs)
    f = _freqs(freqs, a.shape[0], fs)
    ax = _mpl.axes_or_new(ax, (8, 3))
    colours = scale_for(a, norm, cmap, vmin=vmin, vmax=vmax, method=_meta.method(attr)).colours(a)
    width = float(np.median(np.diff(f))) * 0.9 if f.shape[0] > 1 else 1.0
    ax.bar(f, a, width=width, color=colours, edgecolor="none", zorder=2)
    ax.axhline(0, color="0.3", linewidth=0.6, zorder=1)
    if xlabel is None:
        xlabel = (
            "frequency (Hz)"
            if fs is not None or (freqs is not None and float(np.max(f)) > 0.5)
            else ("frequency (cycles per sample)" if freqs is not None else "frequency bin")
        )
    ax.set_xlabel(xlabel, **_mpl.PLAIN)
    ax.set_ylabel("attribution")
    hi = fmax if fmax is not None else float(f[-1]) + width / 2
    ax.set_xlim(float(f[0]) - width / 2, hi)
    if bands is not None:
        for k, (name, (lo, bh)) in enumerate(_band_table(bands, f, fs).items()):
            if lo >= hi:
                continue
            ax.axvspan(lo, min(bh, hi), color=("0.96" if k % 2 == 0 else "0.9"), zorder=0)
            at = ((lo + min(bh, hi)) / 2, 1.0)  # above the axes, where no bar can cover it
            kw = {"ha": "center", "va": "bottom", "fontsize": 8, "color": "0.35", "clip_on": False}
            ax.text(*at, name, transform=ax.get_xaxis_transform(), **kw, **_mpl.PLAIN)
    if signal is not None:
        s = to_numpy(signal, "signal")
        s = s[None] if s.ndim == 1 else _squeeze_to(s, 2, "signal", "a signal of shape (T,) or (C, T)")
        if channel is not None:
            s = s[channel : channel + 1] if channel >= 0 else s[channel:][:1]
        amp = np.abs(np.fft.rfft(s, axis=-1)).mean(0)
        fa = np.linspace(0, fs / 2, amp.shape[0]) if fs is not None else np.arange(amp.shape[0], dtype=float)
        if fa.shape[0] == f.shape[0]:
            fa = f
        twin = ax.twinx()
        twin.plot(fa, amp, color="0.35", linewidth=1.0, label="signal amplitude")
        twin.set_ylabel("signal |FFT|", color="0.35")
        twin.set_ylim(bottom=0)
        twin.tick_params(axis="y", colors="0.35")
        ax.right_ax = twin
    title = _default_title(attr, title, class_names)
    if title:
        ax.set_title(title, pad=14 if bands is not None else 6, **_mpl.PLAIN)
    return ax


def _default_title(attr: Any, title: str | None, class_names: Sequence[str] | None) -> str | None:
    """``title``, or for an Attribution of one sample its method, class and score."""
    if title is None and _meta.is_attribution(attr) and len(attr) == 1:
        return _meta.title(attr, 0, class_names)
    return title


def plot_bands(
    attr: Any,
    freqs: Any = None,
    *,
    bands: BandsLike = None,
    fs: float | None = None,
    per_channel: bool = False,
    channel_names: Sequence[str] | None = None,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """Attribution summed into frequency bands (see :func:`band_sums` for the bin convention).

    Parameters
    ----------
    attr : array, Tensor or Attribution of shape (F,) or (C, F)
        Per-bin attributions, or an :class:`~salience.Attribution`: with a band axis (from
        :func:`~salience.domains.aggregate_bands`) its sums and ``info["bands"]`` are drawn as
        they are; with a frequency axis and no ``freqs`` it is summed with ``bands``.
    freqs : array of shape (F,), optional
        Bin frequencies in Hz; needed for arrays.
    bands : None, str, dict name -> (low, high), or edges, default None
        :func:`~salience.domains.resolve_bands`; None: octave bands from 0 Hz to Nyquist, EEG
        names only with ``bands="eeg"``. Bins outside every band are drawn as a last entry
        labelled "outside every band".
    fs : float, optional
        Sampling rate in Hz (Nyquist check; default: the one the attribution carries).
    per_channel : bool
        With (C, F) input: a channels x bands heat map with the values written in each cell;
        otherwise one bar per band (channels summed).
    channel_names : sequence of str, optional
        Row names (default: the names an Attribution carries).
    cmap, norm, vmin, vmax
        Colour scale (:func:`~salience.viz.scale_for`; ``"auto"``: diverging for signed sums,
        sequential from zero otherwise).

    Returns
    -------
    matplotlib Axes
    """
    fs = _meta.sampling_rate(attr, fs)
    if _meta.is_attribution(attr) and freqs is None:
        banded = attr if "band" in attr.layout.names else aggregate_bands(attr, bands, fs=fs)
        if not {"band_names", "bands"} <= set(banded.info):
            raise ParameterError("plot_bands: a band axis needs info['band_names'] and info['bands'].")
        names, table = [str(n) for n in banded.info["band_names"]], dict(banded.info["bands"])
        sums = np.moveaxis(to_numpy(banded.values, "attr"), banded.layout.axes("band")[0], -1)
    elif freqs is None:
        raise ParameterError(
            "plot_bands: pass freqs=... (bin frequencies in Hz) with an array, or an Attribution."
        )
    else:
        names, sums, table = _sums(attr, freqs, bands, fs)
    if sums.ndim == 3 and sums.shape[0] == 1:
        sums = sums[0]
    channel_names = _meta.channel_names(attr, channel_names)
    if per_channel and sums.ndim == 2:
        ax = _mpl.axes_or_new(ax, (1.2 + 0.9 * len(names), 1.0 + 0.35 * sums.shape[0]))
        sc = scale_for(sums, norm, cmap, vmin=vmin, vmax=vmax, method=_meta.method(attr))
        ax.imshow(sc.shown(sums), cmap=sc.colormap(), norm=sc.mpl_norm(), aspect="auto")
        t = sc.fraction(sums)
        dark = (np.abs(2 * t - 1) if sc.diverging else t) > 0.6
        for (i, j), v in np.ndenumerate(sums):
            colour = "white" if dark[i, j] else "black"
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(names)))
        labels = [_label(n, table) for n in names]
        slant = {"rotation": 30, "ha": "right"} if max(map(len, labels)) > 6 else {}  # no overlaps
        ax.set_xticklabels(labels, **slant, **_mpl.PLAIN)
        C = sums.shape[0]
        ax.set_yticks(range(C))
        ax.set_yticklabels(
            [str(n) for n in channel_names] if channel_names is not None else [f"ch {i}" for i in range(C)],
            **_mpl.PLAIN,
        )
        _mpl.scale_colorbar(ax, sc)
    else:
        s = sums.reshape(-1, len(names)).sum(0)
        ax = _mpl.axes_or_new(ax, (1.5 + 0.8 * len(names), 3))
        ax.bar(
            range(len(names)),
            s,
            color=scale_for(s, norm, cmap, vmin=vmin, vmax=vmax, method=_meta.method(attr)).colours(s),
            edgecolor="0.3",
            linewidth=0.5,
        )
        ax.axhline(0, color="0.3", linewidth=0.6)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([_label(n, table, hz=True) for n in names], fontsize=8, **_mpl.PLAIN)
        ax.set_ylabel("attribution")
    title = _default_title(attr, title, class_names)
    if title:
        ax.set_title(title, **_mpl.PLAIN)
    return ax


def plot_time_frequency(
    attr: Any,
    times: Any,
    freqs: Any,
    *,
    channel: int | None = None,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    percentile: float = 100.0,
    fmax: float | None = None,
    colorbar: bool = True,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """A time-frequency attribution map (e.g. STFT-domain IG) as a signed image.

    Parameters
    ----------
    attr : array, Tensor or Attribution of shape (F, M) or (C, F, M)
        Attribution per frequency bin and frame; channels are summed unless ``channel`` is given.
    times : array of shape (M,)
        Frame centre times (s).
    freqs : array of shape (F,)
        Bin frequencies (Hz).
    cmap, norm, vmin, vmax, percentile
        Colour scale (:func:`~salience.viz.scale_for`; ``"auto"``: diverging for signed maps,
        sequential from zero otherwise).

    Returns
    -------
    matplotlib Axes
    """
    a = to_numpy(attr, "attr")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        a = a.sum(0) if channel is None else a[channel]
    if a.ndim != 2:
        raise ShapeError(f"The 'attr' argument must be (F, M) or (C, F, M); got shape {a.shape}.")
    t = to_numpy(times, "times").ravel()
    f = to_numpy(freqs, "freqs").ravel()
    if a.shape != (f.shape[0], t.shape[0]):
        if a.shape == (t.shape[0], f.shape[0]):
            a = a.T
        else:
            raise ShapeError(f"attr has shape {a.shape} but freqs x times is ({f.shape[0]}, {t.shape[0]}).")
    ax = _mpl.axes_or_new(ax, (8, 3.2))
    sc = scale_for(a, norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile, method=_meta.method(attr))
    ax.pcolormesh(t, f, sc.shown(a), cmap=sc.colormap(), norm=sc.mpl_norm(), shading="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if fmax is not None:
        ax.set_ylim(top=fmax)
    if colorbar:
        _mpl.scale_colorbar(ax, sc)
    title = _default_title(attr, title, class_names)
    if title:
        ax.set_title(title, **_mpl.PLAIN)
    return ax


def plot_components(
    weights: Any,
    sources: Any,
    *,
    fs: float | None = None,
    names: Sequence[str] | None = None,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    fig: Any = None,
) -> Any:
    """Independent components: their attribution as bars beside their time courses.

    Parameters
    ----------
    weights : array or Tensor of shape (K,), (1, K), (K, T) or (1, K, T)
        One attribution per component (e.g. per-sample ICA-domain IG), or one per component and
        time step (dataset-mode ICA domain, layout ``k t``): the bars then show the sum over
        time and each trace is coloured by its attribution at every time step.
    sources : array or Tensor of shape (K, T)
        The components' time courses for the explained sample; with (K,) weights each is
        coloured by its weight.
    fs : float, optional
        Sampling rate for a time axis in seconds.
    cmap, norm, vmin, vmax
        Colour scale of the bars and traces (:func:`~salience.viz.scale_for`; ``"auto"``:
        diverging for signed weights, sequential from zero otherwise).
    title : str, optional
        Default for an :class:`~salience.Attribution` of one sample: its method, class and
        score; ``""`` for none.
    fig : matplotlib Figure, optional
        Figure to draw into (two axes are added); a new one otherwise.

    Returns
    -------
    matplotlib Figure
    """
    w = to_numpy(weights, "weights")
    s = _squeeze_to(to_numpy(sources, "sources"), 2, "sources", "component traces of shape (K, T)")
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    if w.ndim == 2 and w.shape[0] == 1 and s.shape[0] != 1:  # (1, K): a batch of one
        w = w[0]
    per_time = w.ndim == 2
    if w.ndim > 2:
        raise ShapeError(f"The 'weights' argument must be (K,) or (K, T); got shape {w.shape}.")
    K = w.shape[0]
    if s.shape[0] != K:
        raise ShapeError(f"weights has {K} components but sources has {s.shape[0]} traces.")
    if per_time and w.shape[1] != s.shape[1]:
        raise ShapeError(f"weights has {w.shape[1]} time steps but sources has {s.shape[1]}.")
    labels = list(names) if names is not None else [f"IC {k}" for k in range(K)]
    if len(labels) != K:
        raise ParameterError(f"The 'names' parameter must name all {K} components.")
    _mpl.matplotlib()
    if fig is None:
        fig = _mpl.new_figure((10, 0.9 + 0.55 * K))
    bar_ax, trace_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3.2]}, sharey=True)
    total = w.sum(1) if per_time else w
    how = _meta.method(weights)
    bar_scale = scale_for(
        total, norm, cmap, vmin=None if per_time else vmin, vmax=None if per_time else vmax, method=how
    )
    colours = bar_scale.colours(total)
    strong = np.abs(2 * bar_scale.fraction(total) - 1) if bar_scale.diverging else bar_scale.fraction(total)
    pos = np.arange(K)[::-1]
    bar_ax.barh(pos, total, color=colours, edgecolor="0.3", linewidth=0.5)
    bar_ax.axvline(0, color="0.3", linewidth=0.6)
    bar_ax.set_yticks(pos)
    bar_ax.set_yticklabels([str(n) for n in labels], **_mpl.PLAIN)
    bar_ax.set_xlabel("attribution (sum over time)" if per_time else "attribution")
    T = s.shape[1]
    if fs is not None and (isinstance(fs, bool) or not isinstance(fs, (int, float)) or not fs > 0):
        raise ParameterError(
            f"The 'fs' parameter must be a positive sampling rate in Hz. Got {fs!r} instead."
        )
    t = np.arange(T) / fs if fs else np.arange(T, dtype=float)
    if per_time:
        from matplotlib.collections import LineCollection

        time_scale = scale_for(w, norm, cmap, vmin=vmin, vmax=vmax, method=how)
        cnorm, cm = time_scale.mpl_norm(), time_scale.colormap()
    for k in range(K):
        y = s[k] - s[k].mean()
        m = float(np.max(np.abs(y))) or 1.0
        yk = pos[k] + 0.42 * y / m
        if per_time:
            pts = np.stack([t, yk], axis=1)
            segments = list(np.stack([pts[:-1], pts[1:]], axis=1))
            lc = LineCollection(segments, cmap=cm, norm=cnorm, linewidth=3.0, capstyle="round", zorder=1)
            lc.set_array(0.5 * (w[k, :-1] + w[k, 1:]))
            trace_ax.add_collection(lc)
            trace_ax.plot(t, yk, color="0.25", linewidth=0.5, zorder=2)
        else:
            trace_ax.plot(t, yk, color=colours[k] if strong[k] > 0.15 else "0.55", linewidth=1.0)
    trace_ax.set_xlim(t[0], t[-1] if T > 1 else t[0] + 1)
    trace_ax.set_xlabel("time (s)" if fs else "sample")
    trace_ax.set_ylim(-0.6, K - 0.4)
    trace_ax.tick_params(axis="y", left=False)
    if per_time:
        _mpl.scale_colorbar(trace_ax, time_scale)
        trace_ax.set_title("component time courses, coloured by attribution", fontsize=9)
    title = _default_title(weights, title, class_names)
    if title:
        fig.suptitle(title, **_mpl.PLAIN)
    return fig
