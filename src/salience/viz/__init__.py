"""Plots and reports for attributions: signals, images, video/volumes, spectra, components, curves.

Every plot function takes ``ax=`` (or ``fig=`` for multi-panel plots), returns the Axes (or the
Figure), never calls ``show()``, accepts torch tensors on any device, numpy arrays and
:class:`~salience.Attribution` objects, and chooses its colour scale from the map
(:func:`scale_for`): signed maps on a symmetric diverging scale with white at zero, maps without
negative values on a sequential scale from zero; ``cmap=``, ``norm=``, ``vmin=``/``vmax=``
override it. matplotlib is imported only when a plot is made;
figures are created without pyplot, so they work headless (Agg).
"""

from .auto import plot_attribution
from .color import (
    DEFAULT_CMAP,
    MINMAX_METHODS,
    NORMS,
    SEQUENTIAL_CMAP,
    Scale,
    limits,
    normalize,
    resolve_norm,
    scale_for,
    to_numpy,
    to_rgba,
)
from .curves import plot_curves
from .image import plot_grid, plot_image, scale_note
from .report import Report
from .spectrum import EEG_BANDS, band_sums, plot_bands, plot_components, plot_spectrum, plot_time_frequency
from .timeseries import plot_signal, plot_signal_map
from .topomap import plot_topomap, topomap_values
from .video import plot_volume_slices, save_gif, video_frames

__all__ = [
    "DEFAULT_CMAP",
    "SEQUENTIAL_CMAP",
    "MINMAX_METHODS",
    "NORMS",
    "Scale",
    "scale_for",
    "resolve_norm",
    "EEG_BANDS",
    "limits",
    "normalize",
    "to_numpy",
    "to_rgba",
    "plot_attribution",
    "plot_signal",
    "plot_signal_map",
    "plot_image",
    "plot_grid",
    "scale_note",
    "plot_spectrum",
    "plot_bands",
    "band_sums",
    "plot_time_frequency",
    "plot_components",
    "plot_topomap",
    "topomap_values",
    "video_frames",
    "save_gif",
    "plot_volume_slices",
    "plot_curves",
    "Report",
]
