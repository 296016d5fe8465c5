"""An ICA domain from a fitted ``mne.preprocessing.ICA``: sources and mixing as MNE defines them."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..domains.ica import ICA
from ..errors import NotFittedError, ParameterError
from ..layout import LayoutLike
from ._convert import _mne, unit_factors


def _projector(info: Any) -> np.ndarray | None:
    """The active SSP projector of ``info`` (C, C), None without active projections."""
    mne = _mne()
    if not any(p["active"] for p in info["projs"]):
        return None
    eye = mne.EvokedArray(np.eye(len(info["ch_names"])), info, verbose="error")
    return np.asarray(eye.apply_proj(verbose="error").data, dtype=np.float64)


def ica_matrices(ica: Any, units: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mixing (C, K), unmixing (K, C), mean (C,))`` of a fitted MNE ICA, in ``units``.

    MNE computes the sources of data ``x`` (C, T) as
    ``U P_K (Wpre x - pca_mean)``: ``Wpre`` is the pre-whitener (a per-channel scale
    ``1 / pre_whitener_`` after the active projections, or the noise-covariance whitener),
    ``P_K`` the first ``n_components_`` rows of ``pca_components_`` and ``U`` the
    ``unmixing_matrix_``. It maps sources back as ``Wpre^+ (P_K^T M s + pca_mean)`` with
    ``M = mixing_matrix_`` (``ica.apply``'s back projection). Here that is
    ``unmixing = U P_K Wpre``, ``mixing = Wpre^+ P_K^T M`` and ``mean = Wpre^+ pca_mean``, so
    that ``unmixing @ (x - mean)`` are MNE's sources.

    Parameters
    ----------
    ica : mne.preprocessing.ICA
        Fitted.
    units : None, str or dict
        The units of the data the domain will see (see :func:`salience.mne.from_mne`); the
        matrices are rescaled from MNE's SI units.
    """
    if getattr(ica, "unmixing_matrix_", None) is None or getattr(ica, "pca_components_", None) is None:
        raise NotFittedError(
            "ICA.from_mne: the mne.preprocessing.ICA is not fitted; call ica.fit(epochs) first."
        )
    k = int(ica.n_components_)
    pk = np.asarray(ica.pca_components_[:k], dtype=np.float64)  # (K, C)
    u = np.asarray(ica.unmixing_matrix_, dtype=np.float64)  # (K, K)
    m = np.asarray(ica.mixing_matrix_, dtype=np.float64)  # (K, K)
    n_ch = pk.shape[1]
    pca_mean = np.zeros(n_ch) if ica.pca_mean_ is None else np.asarray(ica.pca_mean_, dtype=np.float64)
    pre = np.asarray(ica.pre_whitener_, dtype=np.float64)
    if ica.noise_cov is None:  # a per-channel scale after the active projections
        scale = pre.reshape(-1)
        proj = _projector(ica.info)
        w_pre = np.diag(1.0 / scale) if proj is None else np.diag(1.0 / scale) @ proj
        back = np.diag(scale)  # MNE multiplies back; projections are not undone
    else:
        w_pre = pre
        back = np.asarray(np.linalg.pinv(pre, rcond=1e-14), dtype=np.float64)
    unmixing = u @ pk @ w_pre
    mixing = back @ pk.T @ m
    mean = back @ pca_mean
    factors, _ = unit_factors(ica.info, units)
    return factors[:, None] * mixing, unmixing / factors[None, :], factors * mean


def ica_domain(ica: Any, *, units: Any = None, axis: str = "c", layout: LayoutLike | None = None) -> ICA:
    """An :class:`~salience.ICA` domain (``mode="dataset"``) from a fitted MNE ICA.

    Its ``forward`` gives MNE's ``ica.get_sources(inst).get_data()`` and ``inverse`` MNE's
    back projection of the ``n_components_`` sources (``ica.apply(inst, exclude=[],
    n_pca_components=ica.n_components_)``). With fewer components than channels the domain is
    lossy, and :class:`~salience.InDomain` adds the residual ``x - inverse(forward(x))``, which
    is what ``ica.apply`` keeps with its default ``n_pca_components`` (all PCA components): so a
    zeroed component in the domain removes exactly what ``ica.apply(exclude=[k])`` removes.
    ``ica.exclude`` is not applied (every component is explained).

    Parameters
    ----------
    ica : mne.preprocessing.ICA
        Fitted (on Raw or Epochs); its channels (``ica.ch_names``) must be the data's channels,
        in that order (:func:`salience.mne.from_mne` with ``picks=ica.ch_names``).
    units : None, str or dict, default None
        The units of the tensors the domain sees; None: MNE's SI units (``get_data()``).
    axis : str, default "c"
    layout : str or Layout, optional

    Returns
    -------
    ICA
        With ``channel_names``, ``component_names`` and ``mne_info`` attributes (the topomap
        of :func:`salience.viz.plot_topomap` draws each component's mixing pattern).

    References
    ----------
    Gramfort et al., "MEG and EEG data analysis with MNE-Python", Front. Neurosci. 2013;
    Kechris, Dan & Atienza, arXiv 2505.13100 (ICA-IG).
    """
    mne = _mne()
    if not isinstance(ica, mne.preprocessing.ICA):
        raise ParameterError(
            f"ICA.from_mne expects a fitted mne.preprocessing.ICA. Got {type(ica).__name__} instead."
        )
    mixing, unmixing, mean = ica_matrices(ica, units)
    d = ICA.from_matrices(mixing, mean, unmixing, axis=axis, layout=layout)
    d.channel_names = list(ica.ch_names)  # type: ignore[attr-defined]
    d.component_names = [f"ICA{i:03d}" for i in range(int(ica.n_components_))]  # type: ignore[attr-defined]
    d.mne_info = ica.info  # type: ignore[attr-defined]
    return d
