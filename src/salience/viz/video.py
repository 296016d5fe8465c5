"""Video and volumes (N, C, T, H, W): animated GIFs with one map per frame, and volume slices."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from . import _meta, _mpl
from .color import Scale, _squeeze_to, scale_for, to_numpy
from .image import check_stretch

__all__ = ["video_frames", "save_gif", "plot_volume_slices"]


def _clip(video: Any, attr: Any) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) display frames in [0, 1] and (T, H', W') signed maps (channels summed)."""
    v = to_numpy(video, "video")
    if v.ndim == 5 and v.shape[0] == 1:
        v = v[0]
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4 or v.shape[0] not in (1, 3):
        raise ShapeError(
            f"The 'video' argument must be (C, T, H, W) with 1 or 3 channels, or (T, H, W); got shape {v.shape}."
        )
    lo, hi = float(v.min()), float(v.max())
    v = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    frames = np.repeat(v, 3, axis=0) if v.shape[0] == 1 else v
    frames = np.moveaxis(frames, 0, -1)  # (T, H, W, 3)
    a = to_numpy(attr, "attr")
    if a.ndim == 5 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 4:
        a = a.sum(0)
    a = _squeeze_to(a, 3, "attr", "per-frame maps of shape (T, H, W), (C, T, H, W) or (1, C, T, H, W)")
    if a.shape[0] != frames.shape[0]:
        raise ShapeError(
            f"attr has {a.shape[0]} frames but the video has {frames.shape[0]}; pass one map per frame "
            "(upsample CAMs along time first)."
        )
    check_stretch(a.shape, frames.shape[:3], "frame")
    return frames, a


def _opacity(scale: Scale, a: np.ndarray) -> np.ndarray:
    """Per-pixel weight in [0, 1]: the distance from the scale's neutral point (zero)."""
    t = scale.fraction(a)
    return np.clip(np.abs(2 * t - 1) if scale.diverging else t, 0.0, 1.0) ** 0.75


def _resize_nearest(img: np.ndarray, H: int, W: int) -> np.ndarray:
    rows = (np.arange(H) * img.shape[0] // H).clip(0, img.shape[0] - 1)
    cols = (np.arange(W) * img.shape[1] // W).clip(0, img.shape[1] - 1)
    return img[rows][:, cols]


def video_frames(
    video: Any,
    attr: Any,
    *,
    alpha: float = 0.85,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    percentile: float = 99.5,
    size: int = 160,
    side_by_side: bool = True,
) -> list[np.ndarray]:
    """One RGB frame per time step: the frame with its own attribution map blended on top.

    Parameters
    ----------
    video : array or Tensor of shape (C, T, H, W), (1, C, T, H, W) or (T, H, W)
    attr : array, Tensor or Attribution of shape (T, H', W'), (C, T, H', W') or (1, C, T, H', W')
        One map per frame (channels summed); other spatial sizes with the frame's aspect ratio
        are resized (nearest), others raise ShapeError.
    alpha : float
        Maximum heatmap opacity; each pixel's opacity is scaled by its attribution magnitude.
    cmap, norm, vmin, vmax, percentile
        One colour scale for the whole clip (computed over all frames) so frames compare
        (:func:`~salience.viz.scale_for`; ``"auto"``: diverging for signed maps, sequential
        from zero otherwise).
    size : int
        Height in pixels of each rendered panel (nearest-neighbour upscaling keeps small clips
        legible).
    side_by_side : bool
        Put the bare frame left of the overlay.

    Returns
    -------
    list of ndarray of shape (H_out, W_out, 3), dtype uint8
    """
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise ParameterError(f"The 'alpha' parameter must be in [0, 1]. Got {alpha!r} instead.")
    frames, a = _clip(video, attr)
    T, H, W, _ = frames.shape
    sc = scale_for(a, norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile, method=_meta.method(attr))
    colours = sc.colours(a)[..., :3]
    strength = _opacity(sc, a)
    scale = max(1, int(round(size / H)))
    out = []
    for t in range(T):
        base = frames[t].mean(-1, keepdims=True).repeat(3, -1)  # grey frame under the map
        heat = _resize_nearest(colours[t], H, W)
        w = alpha * _resize_nearest(strength[t][..., None], H, W)  # opacity follows |attribution|
        blend = (1 - w) * base + w * heat
        panel = (
            blend
            if not side_by_side
            else np.concatenate([frames[t], np.ones((H, max(1, W // 16), 3)), blend], axis=1)
        )
        panel = np.kron(panel, np.ones((scale, scale, 1)))
        out.append((np.clip(panel, 0, 1) * 255).round().astype(np.uint8))
    return out


def save_gif(
    video: Any,
    attr: Any,
    path: str | os.PathLike,
    *,
    fps: float = 4.0,
    png_dir: str | os.PathLike | None = None,
    label: bool = True,
    **kwargs: Any,
) -> list[np.ndarray]:
    """Write an animated GIF of per-frame overlays (each frame shows its own map).

    Parameters
    ----------
    video, attr
        As in :func:`video_frames`.
    path : path
        The GIF file to write.
    fps : float
        Frames per second.
    png_dir : path, optional
        Also write each frame as ``frame_000.png``, ... in this folder.
    label : bool
        Write ``t = i`` in the corner of each frame.
    **kwargs
        Passed to :func:`video_frames`.

    Returns
    -------
    list of ndarray
        The frames written.
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:  # pragma: no cover
        raise ImportError("save_gif needs Pillow (installed with matplotlib): pip install pillow") from exc
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ParameterError(f"The 'fps' parameter must be positive. Got {fps!r} instead.")
    frames = video_frames(video, attr, **kwargs)
    images = []
    for t, f in enumerate(frames):
        im = Image.fromarray(f)
        if label:
            ImageDraw.Draw(im).text((3, 2), f"t={t}", fill=(255, 255, 0))
        images.append(im)
    frames = [np.asarray(im) for im in images]
    if png_dir is not None:
        os.makedirs(png_dir, exist_ok=True)
        for t, im in enumerate(images):
            im.save(os.path.join(png_dir, f"frame_{t:03d}.png"))
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=int(round(1000 / fps)),
        loop=0,
        optimize=False,
        disposal=1,
    )
    return frames


def plot_volume_slices(
    volume: Any,
    attr: Any,
    *,
    n_slices: int = 6,
    indices: Sequence[int] | None = None,
    axis_name: str = "t",
    alpha: float = 0.85,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    percentile: float = 99.5,
    fig: Any = None,
) -> Any:
    """A row of slices along the first spatial axis of a volume (or frames of a clip), each with
    its own slice of the attribution, on one shared colour scale.

    Parameters
    ----------
    volume : array or Tensor of shape (C, D, H, W), (1, C, D, H, W) or (D, H, W)
    attr : array, Tensor or Attribution of shape (D, H', W'), (C, D, H', W') or (1, C, D, H', W')
    n_slices : int
        Evenly spaced slices to show (ignored when ``indices`` is given).
    axis_name : str
        Label of the sliced axis (``"t"`` for frames, ``"z"`` or ``"d"`` for depth).
    cmap, norm, vmin, vmax, percentile
        One colour scale for all slices (:func:`~salience.viz.scale_for`).

    Returns
    -------
    matplotlib Figure
    """
    frames, a = _clip(volume, attr)
    D = frames.shape[0]
    if indices is None:
        if isinstance(n_slices, bool) or not isinstance(n_slices, int) or n_slices < 1:
            raise ParameterError(
                f"The 'n_slices' parameter must be a positive int. Got {n_slices!r} instead."
            )
        indices = sorted(set(np.linspace(0, D - 1, min(n_slices, D)).round().astype(int).tolist()))
    for i in indices:
        if not 0 <= int(i) < D:
            raise ParameterError(f"Slice index {i} is outside [0, {D}).")
    sc = scale_for(a, norm, cmap, vmin=vmin, vmax=vmax, percentile=percentile, method=_meta.method(attr))
    H, W = frames.shape[1:3]
    if fig is None:
        fig = _mpl.new_figure((1.9 * len(indices) + 0.6, 2.2))
    axes = np.atleast_1d(fig.subplots(1, len(indices), squeeze=False)[0])
    im = None
    for ax, i in zip(axes, indices, strict=True):
        ax.imshow(frames[i].mean(-1), cmap="gray", vmin=0, vmax=1, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
        im = ax.imshow(
            sc.shown(a[i]),
            cmap=sc.colormap(),
            norm=sc.mpl_norm(),
            alpha=alpha * _opacity(sc, a[i]),
            interpolation="nearest",
            extent=(-0.5, W - 0.5, H - 0.5, -0.5),
        )
        ax.set_title(f"{axis_name} = {int(i)}", fontsize=9, **_mpl.PLAIN)
        ax.set_xticks([])
        ax.set_yticks([])
    del im
    fig.colorbar(sc.mappable(), ax=list(axes), fraction=0.02, pad=0.01, label="attribution")
    return fig
