"""Scalp maps of attributions (MNE-Python's ``plot_topomap``): channel importance overall, per
frequency band, and per independent component (its mixing pattern weighted by its importance)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from . import _meta, _mpl
from .color import scale_for, to_numpy

__all__ = ["plot_topomap", "topomap_values"]

_BY = ("auto", "channel", "band", "component")


def _mne() -> Any:
    try:
        import mne
    except ImportError as exc:  # pragma: no cover - exercised only without mne
        raise ImportError(
            "plot_topomap draws with MNE-Python: pip install 'salience[mne]' (or pip install mne)."
        ) from exc
    return mne


def _kind(attribution: Any, by: str) -> str:
    names = attribution.layout.names
    if by != "auto":
        return by
    if "k" in names and hasattr(attribution.domain, "mixing_"):
        return "component"
    if "c" in names and ("f" in names or "band" in names):
        return "band"
    return "channel"


def _pool(values: np.ndarray, sample: int | None) -> np.ndarray:
    """One sample (``sample``) or the mean over samples of (N, ...) values."""
    if sample is None:
        return values.mean(0)
    if (
        isinstance(sample, bool)
        or not isinstance(sample, (int, np.integer))
        or not -len(values) <= sample < len(values)
    ):
        raise ParameterError(
            f"The 'sample' parameter must be None or an index in [0, {len(values)}). Got {sample!r}."
        )
    return values[sample]


def _sum_but(values: np.ndarray, names: Sequence[str], keep: Sequence[str]) -> np.ndarray:
    """Sum every axis of ``values`` (named ``names``) not in ``keep``; the kept axes in that order."""
    drop = tuple(i for i, n in enumerate(names) if n not in keep)
    rest = [n for n in names if n in keep]
    out = values.sum(drop) if drop else values
    return np.moveaxis(out, [rest.index(k) for k in keep], list(range(len(keep))))


def topomap_values(
    attribution: Any,
    *,
    by: str = "auto",
    sample: int | None = None,
    bands: Any = None,
    absolute: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """The per-channel values the topomaps draw and their panel labels.

    Parameters
    ----------
    attribution : Attribution
        With a channel axis ``"c"`` (input space, Fourier/STFT domains) or, for
        ``by="component"``, in an ICA domain (axis ``"k"``) whose ``mixing_`` is known.
    by : {"auto", "channel", "band", "component"}
        ``"channel"``: one map, the attribution summed over every axis but the channels;
        ``"band"``: one map per frequency band (:func:`~salience.domains.aggregate_bands`; the
        map needs a frequency axis ``"f"`` or a band axis); ``"component"``: one map per ICA
        component, its mixing pattern ``mixing_[:, k]`` (the channels' weights of the
        component, in data units) times the component's attribution summed over time. ICA fixes
        a component's sign arbitrarily: flipping it flips the pattern and leaves the
        attribution unchanged, so a map's sign follows the pattern's convention (as in MNE's
        component plots) and its size is the importance times the spatial weights.
        ``"auto"``: component for ICA maps, band for spectral maps,
        else channel.
    sample : int, optional
        One sample; None (default) averages the samples.
    bands : optional
        The band set (:func:`~salience.domains.resolve_bands`; None: octave bands; ``"eeg"``).
    absolute : bool, default False
        Sum ``|attribution|`` instead of the signed attribution (a named choice: the default
        keeps the sign).

    Returns
    -------
    values : ndarray of shape (P, C)
        One row per panel.
    labels : list of str
        One per panel.
    """
    if not _meta.is_attribution(attribution):
        raise ParameterError(
            f"plot_topomap needs an Attribution (its layout names the channel axis). Got {type(attribution).__name__}."
        )
    if by not in _BY:
        raise ParameterError(
            f"The 'by' parameter of plot_topomap must be one of {list(_BY)}. Got {by!r} instead."
        )
    if not isinstance(absolute, bool):
        raise ParameterError(f"The 'absolute' parameter of plot_topomap must be a bool. Got {absolute!r}.")
    kind = _kind(attribution, by)
    layout = attribution.layout
    if kind == "component":
        mixing = getattr(attribution.domain, "mixing_", None)
        if "k" not in layout.names or mixing is None:
            raise ParameterError(
                "plot_topomap(by='component') needs an attribution in an ICA domain (axis 'k', a "
                f"domain with mixing_); got layout {str(layout)!r} and domain {attribution.domain!r}."
            )
        v = to_numpy(attribution.values)
        v = np.abs(v) if absolute else v
        importance = _pool(_sum_but(v, layout.names, ("b", "k")), sample)  # (K,)
        a = to_numpy(mixing).astype(np.float64)  # (C, K)
        names = getattr(attribution.domain, "component_names", None) or [f"IC {k}" for k in range(a.shape[1])]
        return (a * importance[None, :]).T, [f"{n}: {s:.3g}" for n, s in zip(names, importance, strict=True)]
    if "c" not in layout.names:
        raise ParameterError(
            f"plot_topomap draws channels; this attribution's layout {str(layout)!r} has no channel axis 'c'."
        )
    if kind == "band":
        from ..domains.bands import OTHER, aggregate_bands

        if "band" not in layout.names:
            if "f" not in layout.names:
                raise ParameterError(
                    f"plot_topomap(by='band') needs a frequency axis 'f' (a Fourier or STFT domain) or a "
                    f"band axis; this attribution's layout is {str(layout)!r}."
                )
            attribution = aggregate_bands(attribution, bands, fs=_meta.sampling_rate(attribution, None))
        v = to_numpy(attribution.values)
        v = np.abs(v) if absolute else v
        per = _pool(_sum_but(v, attribution.layout.names, ("b", "band", "c")), sample)  # (bands, C)
        band_names = [str(n) for n in attribution.info.get("band_names", range(per.shape[0]))]
        table = attribution.info.get("bands", {})
        labels = [
            "outside every band"
            if n == OTHER
            else (f"{n} ({table[n][0]:g}-{table[n][1]:g} Hz)" if n in table else n)
            for n in band_names
        ]
        return per, labels
    v = to_numpy(attribution.values)
    v = np.abs(v) if absolute else v
    return _pool(_sum_but(v, layout.names, ("b", "c")), sample)[None, :], ["all channels"]


def _positions(attribution: Any, info: Any, positions: Any, count: int) -> Any:
    """What mne.viz.plot_topomap takes as ``pos``: an mne.Info or a (C, 2) array."""
    mne = _mne()
    if info is not None:
        if not isinstance(info, mne.Info):
            raise ParameterError(
                f"The 'info' parameter of plot_topomap must be an mne.Info. Got {type(info).__name__}."
            )
        found = info
    elif positions is not None:
        found = None
    else:
        found = _meta._lookup(attribution, "mne_info") or getattr(attribution.domain, "mne_info", None)
        positions = _meta._lookup(attribution, "positions") if found is None else None
    if found is not None:
        if len(found["ch_names"]) != count or found.get_montage() is None:
            raise ParameterError(
                f"plot_topomap: the mne.Info has {len(found['ch_names'])} channels"
                f"{'' if found.get_montage() is not None else ' and no montage'} for a map of {count} "
                "channels. Set a montage (epochs.set_montage('standard_1020')) before explaining."
            )
        return found
    if positions is None:
        raise ParameterError(
            "plot_topomap needs channel positions: explain mne.Epochs that have a montage "
            "(epochs.set_montage('standard_1020')), or pass info=<mne.Info with a montage> or "
            "positions=<(C, 2) or (C, 3) array>."
        )
    pos = np.asarray(to_numpy(positions), dtype=np.float64)
    if pos.ndim != 2 or pos.shape[0] != count or pos.shape[1] not in (2, 3):
        raise ShapeError(
            f"plot_topomap: positions must have shape ({count}, 2) or ({count}, 3). Got {pos.shape}."
        )
    if pos.shape[1] == 2:
        return pos
    names = _meta.channel_names(attribution, None) or [f"ch{i}" for i in range(count)]
    made = mne.create_info([str(n) for n in names], 1.0, "eeg")
    made.set_montage(
        mne.channels.make_dig_montage(dict(zip(made["ch_names"], pos, strict=True)), coord_frame="head")
    )
    return made


def plot_topomap(
    attribution: Any,
    *,
    by: str = "auto",
    sample: int | None = None,
    bands: Any = None,
    components: Sequence[int] | None = None,
    n_components: int = 6,
    absolute: bool = False,
    info: Any = None,
    positions: Any = None,
    sensors: bool = True,
    show_names: bool = False,
    cmap: Any = "auto",
    norm: Any = "auto",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    fig: Any = None,
) -> Any:
    """Scalp maps of an attribution: per channel, per band or per ICA component.

    Parameters
    ----------
    attribution : Attribution
        See :func:`topomap_values` for what each view sums.
    by : {"auto", "channel", "band", "component"}
    sample : int, optional
        One sample; None averages the samples (stated in the title).
    bands : optional
        Band set for ``by="band"`` (None: octave bands; ``"eeg"`` for EEG names).
    components : sequence of int, optional
        The ICA components to draw (default: the ``n_components`` with the largest
        ``|importance|``).
    absolute : bool, default False
        Draw sums of ``|attribution|`` (stated on the colour bar).
    info : mne.Info, optional
        Channel positions (default: the attribution's ``info["mne_info"]``, from MNE Epochs
        with a montage, or an ICA domain's).
    positions : array of shape (C, 2) or (C, 3), optional
        Positions without MNE objects: 2-D sensor coordinates, or 3-D head coordinates (m).
    sensors, show_names : bool
        Mark the sensors; write the channel names.
    cmap, norm, vmin, vmax
        Colour scale shared by every panel (:func:`~salience.viz.scale_for`): signed maps on a
        symmetric diverging scale with white at zero, non-negative ones from zero.
    title, class_names
        Title (default: method, class and whether samples were averaged).
    fig : matplotlib Figure, optional

    Returns
    -------
    matplotlib Figure

    Raises
    ------
    ParameterError
        No channel positions (no montage), or a view the attribution cannot give.
    """
    mne = _mne()
    values, labels = topomap_values(attribution, by=by, sample=sample, bands=bands, absolute=absolute)
    if _kind(attribution, by) == "component":
        if components is None:
            if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
                raise ParameterError(
                    f"The 'n_components' parameter must be a positive int. Got {n_components!r}."
                )
            score = np.abs(values).sum(1)
            components = sorted(np.argsort(-score, kind="stable")[:n_components].tolist())
        picked = [int(k) for k in components]
        if not picked or any(not 0 <= k < len(values) for k in picked):
            raise ParameterError(
                f"The 'components' parameter must hold indices in [0, {len(values)}). Got {components!r}."
            )
        values, labels = values[picked], [labels[k] for k in picked]
    pos = _positions(attribution, info, positions, values.shape[1])
    sc = scale_for(values, norm, cmap, vmin=vmin, vmax=vmax, method=_meta.method(attribution))
    n = len(values)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    if fig is None:
        fig = _mpl.new_figure((2.3 * cols + 0.9, 2.4 * rows + 0.7))
    axes = fig.subplots(rows, cols, squeeze=False)
    names = _meta.channel_names(attribution, None) if show_names else None
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        mne.viz.plot_topomap(
            sc.shown(values[i]),
            pos,
            axes=ax,
            cmap=sc.colormap(),
            cnorm=sc.mpl_norm(),
            sensors=sensors,
            names=names,
            contours=0,
            show=False,
        )
        ax.set_title(labels[i], fontsize=9, **_mpl.PLAIN)
    head = "importance x pattern" if _kind(attribution, by) == "component" else "attribution"
    label = head + (" (|a| summed)" if absolute else "") + _mpl._SCALE_SUFFIX.get(sc.norm, "")
    cb = fig.colorbar(sc.mappable(), ax=list(axes.ravel()[:n]), fraction=0.03, pad=0.02)
    cb.set_label(label)
    fig.suptitle(_title(attribution, sample, title, class_names), **_mpl.PLAIN)
    return fig


def _title(attribution: Any, sample: int | None, title: str | None, class_names: Sequence[str] | None) -> str:
    if title is not None:
        return title
    n = len(attribution.values)
    if sample is not None or n == 1:
        return _meta.title(attribution, 0 if sample is None else int(sample) % n, class_names) or ""
    target = attribution.target
    t = target.detach().cpu() if isinstance(target, torch.Tensor) else None
    label = None
    if t is not None and t.numel() and bool((t == t.reshape(-1)[0]).all()):
        label = _meta.target_label(t, 0, _meta.class_names(attribution, class_names))
    return f"{attribution.method}: " + (f"{label}, " if label else "") + f"mean of {n} samples"
