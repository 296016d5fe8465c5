"""One call that picks the view matching an attribution's layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError, SalienceError
from . import _meta, _mpl
from .color import resolve_norm, scale_for, to_numpy

__all__ = ["plot_attribution"]


def plot_attribution(
    x: Any,
    attribution: Any,
    index: int = 0,
    *,
    fs: float | None = None,
    bands: Any = None,
    channel_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    ax: Any = None,
) -> Any:
    """Draw sample ``index`` of an :class:`~salience.Attribution` with the view its layout calls for.

    ``b c t`` signals: :func:`plot_signal` (one channel) or :func:`plot_signal_map`;
    ``b c h w`` images: :func:`plot_image`; ``b c t h w`` clips and volumes:
    :func:`plot_volume_slices`; a frequency axis ``f`` (Fourier domain): :func:`plot_spectrum`
    against the signal's spectrum; ``f`` and a frame axis (STFT): :func:`plot_time_frequency`;
    ICA components (``b k`` per sample, ``b k t`` dataset mode): :func:`plot_components`, the
    component bars beside their time courses (coloured by the attribution over time for
    ``b k t``); any other domain layout: the values as a signed image (seconds on a time axis
    with ``fs``).

    Parameters
    ----------
    x : array or Tensor of shape (N, C, ...)
        The explained inputs.
    attribution : Attribution
        Its ``layout``, ``domain`` and values choose the view.
    index : int
        Which sample to draw.
    fs : float, optional
        Sampling rate (time axes in seconds, frequencies in Hz); default: the ``sfreq`` the
        attribution carries.
    bands : None, str, dict name -> (low, high), or edges, optional
        Bands shaded and named on a spectrum view (:func:`~salience.domains.resolve_bands`):
        none by default; ``"octave"`` for octave bands from 0 Hz to Nyquist; EEG band names only
        when asked for with ``bands="eeg"``. A band at or above Nyquist raises ParameterError.
    channel_names : sequence of str, optional
        Default: the names the attribution carries.
    class_names : sequence of str, optional
        Names of the classes: the title names the explained class (default: the names the
        attribution carries, else ``"class k"``).
    title : str, optional
        Default: the method, the explained class and its score (``""`` for none).
    cmap, norm, vmin, vmax
        Colour scale (:func:`~salience.viz.scale_for`): ``"auto"`` draws signed maps on a
        symmetric diverging scale (white at zero), maps without negative values on a
        sequential scale from zero.
    ax : matplotlib Axes, optional
        Ignored by the multi-panel volume and component views.

    Returns
    -------
    matplotlib Axes or Figure
    """
    from .image import plot_image
    from .spectrum import plot_spectrum, plot_time_frequency
    from .timeseries import plot_signal, plot_signal_map
    from .video import plot_volume_slices

    layout = getattr(attribution, "layout", None)
    if layout is None:
        raise ParameterError(
            "plot_attribution needs an Attribution (with a layout); use plot_signal/plot_image for arrays."
        )
    xs = to_numpy(x, "x")
    a_all = to_numpy(attribution, "attribution")
    if not -a_all.shape[0] <= index < a_all.shape[0] or xs.shape[0] != a_all.shape[0]:
        raise ParameterError(
            f"index {index} must address one of the {a_all.shape[0]} samples of x and the attribution."
        )
    xi, a = xs[index], a_all[index]
    fs = _meta.sampling_rate(attribution, fs)
    channel_names = _meta.channel_names(attribution, channel_names)
    if title is None:
        title = _meta.title(attribution, index % a_all.shape[0], class_names)
    if isinstance(norm, str) and norm == "auto":  # the method is known here, not in the views below
        norm = resolve_norm(a, norm, _meta.method(attribution))
    scale = {"cmap": cmap, "norm": norm, "vmin": vmin, "vmax": vmax}
    names = tuple(n for n in layout.names if n != "b")
    domain = getattr(attribution, "domain", None)
    coords: dict[str, np.ndarray] = {}
    if domain is not None and hasattr(domain, "coordinates"):
        try:
            coords = {k: to_numpy(v) for k, v in (domain.coordinates(fs=fs) or {}).items()}
        except SalienceError:  # a domain without coordinates for this input
            coords = {}
    if domain is None:
        if names == ("c", "t"):
            draw = plot_signal if xi.shape[0] == 1 else plot_signal_map
            return draw(xi, a, fs=fs, channel_names=channel_names, title=title, ax=ax, **scale)
        if names == ("c", "h", "w"):
            return plot_image(xi, a, title=title, ax=ax, **scale)
        if len(names) == 4 and names[0] == "c" and names[-2:] == ("h", "w"):
            fig = plot_volume_slices(xi, a, axis_name=names[1], **scale)
            if title:
                fig.suptitle(title, **_mpl.PLAIN)
            return fig
    if "f" in names and "f" in coords and coords["f"].shape[0] == a.shape[names.index("f")]:
        rest = [n for n in names if n not in ("c", "f")]
        if not rest:
            sig = xi if xi.ndim == 2 else None
            return plot_spectrum(a, coords["f"], signal=sig, fs=fs, bands=bands, title=title, ax=ax, **scale)
        if len(rest) == 1 and rest[0] in coords and a.ndim == 3:
            return plot_time_frequency(a, coords[rest[0]], coords["f"], title=title, ax=ax, **scale)
    if domain is not None and names in (("k",), ("k", "t")):  # ICA: components and their traces
        sources = _component_traces(domain, xs, index, a.shape[0])
        if sources is not None:
            from .spectrum import plot_components

            what = "per component and time step" if a.ndim == 2 else "per component"
            head = f"{title}\n" if title else ""
            return plot_components(
                a, sources, fs=fs, title=f"{head}attribution {what} (independent components)", **scale
            )
    ax = _mpl.axes_or_new(ax, (8, 3))
    if a.ndim == 1:
        ax.bar(
            range(a.shape[0]),
            a,
            color=scale_for(a, norm, cmap, vmin=vmin, vmax=vmax).colours(a),
            edgecolor="0.3",
            linewidth=0.5,
        )
        ax.axhline(0, color="0.3", linewidth=0.6)
        ax.set_xlabel(names[0], **_mpl.PLAIN)
        ax.set_ylabel("attribution")
        if title:
            ax.set_title(title, fontsize=10, **_mpl.PLAIN)
        return ax
    v = a.reshape(a.shape[0], -1)
    sc = scale_for(v, norm, cmap, vmin=vmin, vmax=vmax)
    seconds = len(names) == 2 and names[1] == "t" and fs is not None
    extent = (
        (-0.5 / fs, (v.shape[1] - 0.5) / fs, v.shape[0] - 0.5, -0.5) if seconds and fs is not None else None
    )
    ax.imshow(
        sc.shown(v),
        aspect="auto",
        cmap=sc.colormap(),
        norm=sc.mpl_norm(),
        interpolation="nearest",
        extent=extent,
    )
    if v.shape[0] <= 32:
        ax.set_yticks(range(v.shape[0]))
        rows = (
            list(channel_names)
            if names[0] == "c" and channel_names is not None and len(channel_names) == v.shape[0]
            else [f"{names[0]} {i}" for i in range(v.shape[0])]
        )
        ax.set_yticklabels(rows, **_mpl.PLAIN)
    ax.set_ylabel(names[0], **_mpl.PLAIN)
    ax.set_xlabel("time (s)" if seconds else " x ".join(names[1:]), **_mpl.PLAIN)
    wavelet = _wavelet_bands(domain, names, v.shape[1], fs)
    if wavelet is not None:  # a wavelet's bands: named by level and frequency range
        ax.set_xticks(range(v.shape[1]))
        ax.set_xticklabels(wavelet, fontsize=8, **_mpl.PLAIN)
        ax.set_xlabel("wavelet band: level" + (", frequency range" if fs else ""))
    what = f"attribution over ({', '.join(names)})"
    ax.set_title(f"{title}\n{what}" if title else what, fontsize=10, **_mpl.PLAIN)
    _mpl.scale_colorbar(ax, sc)
    return ax


def _wavelet_bands(domain: Any, names: tuple[str, ...], n: int, fs: float | None) -> list[str] | None:
    """Labels of a wavelet domain's reported bands ``[A_L, D_1, ..., D_L]`` (``"A3"``, ``"D1"``),
    with the frequency range each covers when ``fs`` is known (``D_j``: fs/2^(j+1) to fs/2^j,
    ``A_L``: 0 to fs/2^(L+1)); None for other domains and layouts."""
    from ..domains.wavelet import Wavelet

    if not isinstance(domain, Wavelet) or names[-1:] != ("band",) or n != domain.levels + 1:
        return None
    levels = domain.levels

    def hz(v: float) -> str:
        return f"{v:.3g}"

    out = []
    for i in range(n):
        level = levels if i == 0 else i
        name = f"{'A' if i == 0 else 'D'}{level}"
        if fs:
            low = 0.0 if i == 0 else fs / 2 ** (level + 1)
            high = fs / 2 ** (level + 1) if i == 0 else fs / 2**level
            name += f"\n{hz(low)}-{hz(high)} Hz"
        out.append(name)
    return out


def _component_traces(domain: Any, xs: np.ndarray, index: int, K: int) -> np.ndarray | None:
    """The (K, T) component time courses of sample ``index`` in an ICA-like domain: the sources
    of a dataset-mode domain (``forward`` of the sample) or the bound per-sample sources; None
    when the domain has none."""
    import torch

    try:
        if getattr(domain, "mode", "dataset") == "sample":
            src = getattr(domain, "sources_", None)  # (B, T, K)
            if src is None or src.ndim != 3:
                return None
            s = to_numpy(src[index]).T
        else:
            ref = getattr(domain, "components_", None)
            dtype = ref.dtype if isinstance(ref, torch.Tensor) else torch.float64
            s = to_numpy(domain.forward(torch.as_tensor(xs[index : index + 1], dtype=dtype))[0])
    except (SalienceError, RuntimeError, AttributeError, IndexError, TypeError, ValueError):
        return None
    if s.ndim != 2 or s.shape[0] != K:
        return None
    return s
