"""Images (N, C, H, W): heatmap overlays and the methods x samples grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from . import _meta, _mpl
from .color import _squeeze_to, resolve_norm, scale_for, to_numpy

__all__ = ["plot_image", "plot_grid", "scale_note"]


def _image_hwc(image: Any) -> np.ndarray:
    """(H, W, 3) or (H, W) floats in [0, 1] for display (min-max scaled per image)."""
    im = to_numpy(image, "image")
    if im.ndim == 4 and im.shape[0] == 1:
        im = im[0]
    if im.ndim == 3:
        if im.shape[0] in (1, 3):
            im = np.moveaxis(im, 0, -1)  # channels-first, the library's layout
        elif im.shape[-1] not in (1, 3, 4):
            raise ShapeError(
                f"The 'image' argument must have 1 or 3 channels (C, H, W); got shape {im.shape}."
            )
        im = im[..., 0] if im.shape[-1] == 1 else im[..., :3]
    elif im.ndim != 2:
        raise ShapeError(
            f"The 'image' argument must be (C, H, W), (H, W, 3) or (H, W); got shape {im.shape}."
        )
    lo, hi = float(np.nanmin(im)), float(np.nanmax(im))
    return (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)


def check_stretch(map_shape: tuple[int, ...], image_shape: tuple[int, ...], what: str = "image") -> None:
    """Refuse to stretch a map over an image of another aspect ratio.

    A map at another resolution with (about) the image's aspect ratio, such as a CAM at layer
    resolution, is upsampled for display; a map whose height/width ratio differs from the
    image's by more than a factor 1.5 (an (8, 256) signal map over a 64 x 64 image) belongs to
    other data, and drawing it would invent a picture: ShapeError naming both shapes.
    """
    (h, w), (H, W) = map_shape[-2:], image_shape[-2:]
    if min(h, w, H, W) < 1:
        raise ShapeError(f"The 'attr' map {tuple(map_shape)} or the {what} {tuple(image_shape)} is empty.")
    if (h, w) == (H, W):
        return
    ratio = (h / w) / (H / W)
    if not 1 / 1.5 <= ratio <= 1.5:
        raise ShapeError(
            f"The 'attr' map has shape {tuple(map_shape)} (height x width {h} x {w}) but the {what} is "
            f"{H} x {W} (shape {tuple(image_shape)}): their aspect ratios differ ({h / w:.3g} vs "
            f"{H / W:.3g}), so the map would be stretched over an image it does not belong to. Pass "
            f"this {what}'s own map (a map at another resolution must keep the {what}'s aspect ratio)."
        )


#: how plot_image reduces a (C, H, W) attribution to one map
CHANNEL_REDUCE = ("sum", "mean", "absmax", "abssum")


def _map_hw(attr: Any, channel_reduce: str) -> np.ndarray:
    if channel_reduce not in CHANNEL_REDUCE:
        raise ParameterError(
            f"The 'channel_reduce' parameter must be one of {list(CHANNEL_REDUCE)}. Got {channel_reduce!r} instead."
        )
    a = to_numpy(attr, "attr")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if channel_reduce == "sum":
            a = a.sum(0)
        elif channel_reduce == "mean":
            a = a.mean(0)
        elif channel_reduce == "abssum":
            a = np.abs(a).sum(0)
        else:
            a = np.take_along_axis(a, np.abs(a).argmax(0)[None], 0)[0]
    return _squeeze_to(a, 2, "attr", "an attribution of shape (H, W), (C, H, W) or (1, C, H, W)")


def _gaussian_smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur of a 2-D map (reflecting edges), for display only; returns a new
    array (the attribution passed in is never changed)."""
    if sigma <= 0:
        return a
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.asarray(a, dtype=float)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="symmetric" if out.shape[axis] > r else "edge")
        # every window of the padded axis against the (symmetric) kernel, all rows at once
        out = np.lib.stride_tricks.sliding_window_view(p, k.size, axis=axis) @ k
    return out


def scale_note(
    norm: Any = "auto",
    percentile: float = 100.0,
    *,
    channel_reduce: str | None = None,
    smooth: float = 0.0,
    vmin: float | None = None,
    vmax: float | None = None,
) -> str:
    """A short statement of how a map was scaled for display (written under plot_grid's column
    titles), e.g. ``"sum |a| over channels, smoothed (sigma 2 px)\n0 to p99 of |a|"``: the
    channel reduction and smoothing on one line, the colour limits (``pN``: the N-th
    percentile; fixed ``vmin``/``vmax`` when given) on the next. ``norm`` is the resolved mode
    (``"auto"`` reads as "scale from the map"; a matplotlib Normalize as the caller's)."""
    parts = []
    if channel_reduce is not None:
        parts.append(
            {
                "sum": "sum over channels",
                "mean": "mean over channels",
                "absmax": "largest |a| of the channels",
                "abssum": "sum |a| over channels",
            }[channel_reduce]
        )
    if smooth and smooth > 0:
        parts.append(f"smoothed (sigma {smooth:g} px)")
    p = "max" if percentile >= 100 else f"p{percentile:g}"
    key = norm if isinstance(norm, str) else "custom"
    scale = {
        "auto": f"scale from the map (signed: \u00b1{p} of |a|; else 0 to {p})",
        "custom": "caller's normalisation",
        "symmetric": f"signed, \u00b1{p} of |a|",
        "sequential": f"non-negative, 0 to {p}",
        "absmax": f"magnitude, 0 to {p} of |a|",
        "minmax": "min to max" if percentile >= 100 else f"p{100 - percentile:g} to p{percentile:g}",
        "none": "values as they are (-1 to 1)",
    }[key]
    if vmin is not None or vmax is not None:
        scale += (
            f", limits {'auto' if vmin is None else f'{vmin:g}'} to {'auto' if vmax is None else f'{vmax:g}'}"
        )
    return ", ".join(parts) + ("\n" if parts else "") + scale


def plot_image(
    image: Any,
    attr: Any = None,
    *,
    alpha: float = 0.8,
    weighted_alpha: bool = True,
    background: str = "gray",
    channel_reduce: str = "sum",
    smooth: float = 0.0,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    percentile: float = 99.5,
    colorbar: bool = True,
    truth: Any = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
) -> Any:
    """An image with its attribution as a translucent heatmap.

    Parameters
    ----------
    image : array or Tensor of shape (C, H, W), (1, C, H, W), (H, W) or (H, W, 3)
        Shown min-max scaled (so normalised model inputs display correctly).
    attr : array, Tensor or Attribution of shape (H', W'), (C, H', W') or (1, C, H', W'), optional
        Channels are reduced with ``channel_reduce``; another resolution with the image's aspect
        ratio (a CAM at layer size) is stretched over the image with bilinear interpolation; a
        map of another aspect ratio (an (8, 256) map over a 64 x 64 image) raises ShapeError
        naming both shapes. None shows the image alone. The attribution is never changed;
        reduction and smoothing apply to the drawn copy.
    alpha : float in [0, 1]
        Opacity of the heatmap (its maximum with ``weighted_alpha``).
    weighted_alpha : bool
        Scale each pixel's opacity by its distance from the scale's neutral point (zero), so
        unimportant regions show the image itself rather than a veil.
    background : {"gray", "rgb"}
        Show the image in grey (the heatmap reads better) or in colour.
    channel_reduce : {"sum", "mean", "absmax", "abssum"}
        ``"sum"`` keeps the sign and the total; ``"abssum"`` sums the magnitudes (for
        pixel-level gradient maps, whose sign flips from one colour channel and pixel to the
        next); ``"absmax"`` keeps the channel value of largest magnitude.
    smooth : float
        Standard deviation in pixels of a Gaussian blur applied to the displayed map (0: none).
        Pixel-level maps (gradients, IG, SmoothGrad) are speckle at full resolution; light
        smoothing makes their regions visible. State it with the figure (:func:`scale_note`).
    cmap, norm, vmin, vmax, percentile
        Colour scale (:func:`~salience.viz.scale_for`). ``"auto"``: a signed map on a symmetric
        diverging scale (white at zero), a map without negative values (Grad-CAM, RISE, an
        ``"abssum"`` reduction) on a sequential scale from zero. By default the limit is the
        99.5th percentile of the magnitudes so one hot pixel does not wash the map out.
    truth : array or Tensor of shape (H, W) or (1, H, W), optional
        A ground-truth mask of the image's size, outlined with a dashed contour.
    title : str, optional
        Default for an :class:`~salience.Attribution` of one sample: its method, class and
        score; ``""`` for none.
    class_names : sequence of str, optional
        Names of the classes, for the default title.

    Returns
    -------
    matplotlib Axes
    """
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise ParameterError(f"The 'alpha' parameter must be in [0, 1]. Got {alpha!r} instead.")
    if background not in ("gray", "rgb"):
        raise ParameterError(
            f"The 'background' parameter must be 'gray' or 'rgb'. Got {background!r} instead."
        )
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
        raise ParameterError(
            f"The 'smooth' parameter must be a standard deviation >= 0 in pixels. Got {smooth!r} instead."
        )
    im = _image_hwc(image)
    H, W = im.shape[:2]
    a = None
    if attr is not None:
        a = _map_hw(attr, channel_reduce)
        check_stretch(a.shape, (H, W))
        a = _gaussian_smooth(a, float(smooth))
    ax = _mpl.axes_or_new(ax, (4.2, 4.2 * H / W if W else 4.2))
    shown = im.mean(-1) if (background == "gray" and im.ndim == 3) else im
    ax.imshow(
        shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, extent=(-0.5, W - 0.5, H - 0.5, -0.5)
    )
    if a is not None:
        sc = scale_for(a, norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile, method=_meta.method(attr))
        v = sc.shown(a)
        if weighted_alpha:
            t = sc.fraction(a)
            w = np.abs(2 * t - 1) if sc.diverging else t
            opacity = alpha * np.clip(w, 0.0, 1.0) ** 0.75
        else:
            opacity = alpha
        ax.imshow(
            v,
            cmap=sc.colormap(),
            norm=sc.mpl_norm(),
            alpha=opacity,
            interpolation="bilinear",
            extent=(-0.5, W - 0.5, H - 0.5, -0.5),
        )
        if colorbar:
            _mpl.scale_colorbar(ax, sc)
    if truth is not None:
        m = _squeeze_to(to_numpy(truth, "truth"), 2, "truth", "a mask of shape (H, W) or (1, H, W)")
        if m.shape != (H, W):
            raise ShapeError(f"The 'truth' mask has shape {m.shape} but the image is {H} x {W}.")
        if (m != 0).any() and not (m != 0).all():
            cs = ax.contour(
                np.arange(W),
                np.arange(H),
                (m != 0).astype(float),
                levels=[0.5],
                colors="black",
                linestyles="--",
                linewidths=1.5,
            )
            cs.set_gid("salience-truth")
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is None and attr is not None and _meta.is_attribution(attr) and len(attr) == 1:
        title = _meta.title(attr, 0, class_names)
    if title:
        ax.set_title(title, **_mpl.PLAIN)
    return ax


def _column_norm(
    maps: np.ndarray, norm: Any, image: bool, opts: Mapping[str, Any], method: str | None
) -> Any:
    """Resolve ``"auto"`` once per plot_grid column, on the maps as drawn (after the channel
    reduction), so every row of a method shares one kind of scale."""
    if not (isinstance(norm, str) and norm == "auto"):
        return norm
    if image:
        reduce = opts.get("channel_reduce", "sum")
        drawn = np.stack([_map_hw(m, reduce) for m in maps])
    else:
        drawn = maps
    return resolve_norm(drawn, "auto", method)


def plot_grid(
    inputs: Any,
    attributions: Mapping[str, Any],
    *,
    row_titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    fs: float | None = None,
    show_input: bool = True,
    cmap: Any = "auto",
    norm: Any = "auto",
    cell_size: float = 2.6,
    scale_notes: bool = True,
    **kwargs: Any,
) -> Any:
    """A samples x methods grid of attribution maps (images or signals).

    Parameters
    ----------
    inputs : array or Tensor of shape (N, C, H, W) or (N, C, T)
        The samples (rows).
    attributions : mapping of str to array/Tensor/Attribution, each of shape (N, ...)
        One entry per method (columns), in order. Each map gets its own colour limits (methods
        have different units); compare shapes, not colours, across columns. With ``norm="auto"``
        each column is drawn on a symmetric diverging scale when any of its maps is signed, on
        a sequential scale from zero otherwise (RISE, Grad-CAM).
    row_titles : sequence of str, optional
        A label per sample (e.g. ``"coffee: pred espresso"``). Default, when a column is an
        :class:`~salience.Attribution` with class targets: the explained class of each row
        (named with ``class_names``).
    class_names : sequence of str, optional
        Names of the classes, for the default row titles.
    fs : float, optional
        Sampling rate for signal grids (default: the one an Attribution carries).
    show_input : bool
        Add a first column with the bare input in colour (images only).
    cmap, norm : colour map and normalisation, or a mapping from method name to one
        Per-column choices, e.g. ``norm={"RISE": "minmax"}`` for a method whose paper shows its
        maps min-max scaled (methods not in a mapping get ``"auto"``).
    scale_notes : bool
        Write under each column title how its maps are scaled (:func:`scale_note`: sign,
        channel reduction, smoothing, colour limits), so the normalisation is stated in the
        figure itself.
    **kwargs
        Passed to :func:`plot_image` or :func:`~salience.viz.plot_signal` (``vmin``, ``vmax``,
        ``percentile``, ``channel_reduce``, ``smooth``, ``channel_names``, ...). Any of them may
        also be a mapping from method name to value for per-column choices, e.g.
        ``channel_reduce={"IG": "abssum"}, smooth={"IG": 2.0}``.

    Returns
    -------
    matplotlib Figure
    """
    from .timeseries import plot_signal, plot_signal_map

    x = to_numpy(inputs, "inputs")
    if x.ndim not in (3, 4):
        raise ShapeError(
            f"The 'inputs' argument must be (N, C, T) signals or (N, C, H, W) images; got shape {x.shape}."
        )
    if not isinstance(attributions, Mapping) or not attributions:
        raise ParameterError("The 'attributions' argument must be a non-empty mapping {method name: maps}.")
    maps = {str(k): to_numpy(v, f"attributions[{k!r}]") for k, v in attributions.items()}
    given = {str(k): v for k, v in attributions.items()}
    N = x.shape[0]
    for k, v in maps.items():
        if v.shape[0] != N:
            raise ShapeError(f"attributions[{k!r}] has {v.shape[0]} samples but inputs has {N}.")
    if row_titles is not None and len(row_titles) != N:
        raise ParameterError(f"The 'row_titles' parameter must have {N} entries. Got {len(row_titles)}.")
    first = next((v for v in attributions.values() if _meta.is_attribution(v)), None)
    if row_titles is None and first is not None:
        labels = [
            _meta.target_label(first.target, i, _meta.class_names(first, class_names)) for i in range(N)
        ]
        row_titles = [f"#{i}: {lab}" for i, lab in enumerate(labels)] if None not in labels else None
    fs = _meta.sampling_rate(first, fs)
    if first is not None and "channel_names" not in kwargs and x.ndim == 3:
        names = _meta.channel_names(first, None)
        if names is not None and len(names) == x.shape[1]:
            kwargs["channel_names"] = names

    def pick(option: Any, name: str, default: Any) -> Any:
        return option.get(name, default) if isinstance(option, Mapping) else option

    image = x.ndim == 4
    multichannel = not image and x.shape[1] > 1
    cols = list(maps) if not (image and show_input) else ["input"] + list(maps)
    w = cell_size if image else cell_size * 1.5
    h = cell_size if image else (cell_size * 0.6 if not multichannel else 0.55 + 0.17 * x.shape[1])
    fig = _mpl.new_figure((w * len(cols) + 0.4, h * N + 0.5 + 0.15 * scale_notes))
    if image:  # fixed-aspect cells: "compressed" keeps the titles and scale notes inside the figure
        fig.set_layout_engine("compressed")
    axes = np.atleast_2d(fig.subplots(N, len(cols), squeeze=False))
    draw_defaults = (
        {"percentile": 99.5, "channel_reduce": "sum", "smooth": 0.0} if image else {"percentile": 100.0}
    )
    for j, name in enumerate(cols):
        is_input = name == "input" and image and show_input
        col_kw = {} if is_input else {k: pick(v, name, None) for k, v in kwargs.items()}
        col_kw = {k: v for k, v in col_kw.items() if v is not None}
        c_map = pick(cmap, name, "auto")
        how = _meta.method(given.get(name)) or name
        c_norm = (
            "auto" if is_input else _column_norm(maps[name], pick(norm, name, "auto"), image, col_kw, how)
        )
        for i in range(N):
            ax = axes[i, j]
            if is_input:
                plot_image(x[i], None, background="rgb", ax=ax)
            elif image:
                plot_image(
                    x[i], maps[name][i], cmap=c_map, norm=c_norm, colorbar=False, title="", ax=ax, **col_kw
                )
            else:
                draw = plot_signal_map if multichannel else plot_signal
                draw(
                    x[i],
                    maps[name][i],
                    fs=fs,
                    cmap=c_map,
                    norm=c_norm,
                    colorbar=False,
                    scale_bar=False,
                    title="",
                    ax=ax,
                    **col_kw,
                )
                ax.tick_params(labelsize=7)
                if i < N - 1:
                    ax.set_xlabel("")
                    ax.set_xticklabels([])
                if j > 0:
                    ax.set_ylabel("")
                    if multichannel:
                        ax.set_yticklabels([])
            if i == 0:
                ax.set_title(name, fontsize=10, **_mpl.PLAIN)
                if scale_notes:
                    opts = {**draw_defaults, **col_kw}
                    several = image and not is_input and maps[name].ndim == 4 and maps[name].shape[1] > 1
                    note = (
                        "min-max scaled for display"
                        if is_input
                        else scale_note(
                            c_norm,
                            opts["percentile"],
                            channel_reduce=opts.get("channel_reduce") if several else None,
                            smooth=opts.get("smooth", 0.0),
                            vmin=opts.get("vmin"),
                            vmax=opts.get("vmax"),
                        )
                    )
                    # a label on a tick-less top axis: the layout makes room and the title sits above
                    top = ax.secondary_xaxis("top")
                    top.set_xticks([])
                    top.set_xlabel(note, fontsize=7, color="0.3", labelpad=2)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(str(row_titles[i]), fontsize=9, **_mpl.PLAIN)
    return fig
