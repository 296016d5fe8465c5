"""MNE-Python in, MNE-Python out: Epochs as inputs, MNE's ICA as a domain, names and montages kept.

``explainer.explain(epochs, target)`` accepts ``mne.Epochs``/``mne.EpochsArray``/``mne.Evoked``
(through :func:`from_mne`); the explanation's ``info`` then carries ``channel_names``,
``sfreq``, ``units``, ``positions``/``montage``/``mne_info`` and, for Epochs with several event
types, ``class_names``: the plots, :func:`salience.viz.plot_topomap` and the report read them.
A continuous ``Raw`` is cut with :func:`windows` first. :func:`ica_domain` (also
``ICA.from_mne``) builds the ICA domain of a fitted ``mne.preprocessing.ICA``.

Units: the tensor is in MNE's SI units (volts for EEG, what ``get_data()`` returns) unless
``units=`` says otherwise (``"uV"`` for models trained on microvolts); a domain from
:func:`ica_domain` must be built with the same ``units``.

MNE is an optional dependency (``pip install 'salience[mne]'``), imported when used.
"""

from ._convert import describe, from_mne, labels, positions, unit_factors, windows
from ._ica import ica_domain, ica_matrices

__all__ = [
    "from_mne",
    "describe",
    "labels",
    "windows",
    "positions",
    "unit_factors",
    "ica_domain",
    "ica_matrices",
]
