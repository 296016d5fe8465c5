"""The ICA domain of a fitted mne.preprocessing.ICA against MNE's own get_sources/apply."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from mne_fixtures import NAMES, epochs, fitted_ica, model, need_mne

import salience as sl
from salience.mne import from_mne, ica_domain, ica_matrices

mne = need_mne()


def _apply(ica, ep, **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ica.apply(ep.copy(), verbose="error", **kw).get_data()


@pytest.mark.parametrize("n_components", [None, 6])
def test_forward_is_get_sources_and_inverse_is_apply(n_components):
    ep = epochs(n_epochs=10, times=300)
    ica = fitted_ica(ep, n_components)
    d = ica_domain(ica)
    x, _ = from_mne(ep, dtype=torch.float64)
    z = d.forward(x)
    sources = ica.get_sources(ep).get_data()
    np.testing.assert_allclose(z.numpy(), sources, rtol=1e-9, atol=1e-9 * np.abs(sources).max())
    k = ica.n_components_
    assert z.shape == (10, k, 300)
    back = d.inverse(z).numpy()
    # the back projection of the n_components_ sources: MNE's apply without the residual PCA components
    direct = _apply(ica, ep, exclude=[], n_pca_components=k)
    np.testing.assert_allclose(back, direct, rtol=0, atol=1e-9 * np.abs(direct).max())
    full = _apply(ica, ep, exclude=[])  # all PCA components: the data itself
    np.testing.assert_allclose(full, ep.get_data(), rtol=0, atol=1e-12)
    if k == len(NAMES):
        assert d.exact
        np.testing.assert_allclose(back, ep.get_data(), rtol=0, atol=1e-12 * 1e5)
    else:  # lossy: InDomain keeps the residual, which apply's default n_pca_components keeps too
        assert not d.exact
        residual = x.numpy() - back
        assert np.abs(residual).max() > 1e-3 * np.abs(x.numpy()).max()
        np.testing.assert_allclose(back + residual, full, rtol=0, atol=1e-18)


def test_zeroing_a_component_is_apply_with_exclude():
    ep = epochs(n_epochs=10, times=300)
    ica = fitted_ica(ep, 6)
    d = ica_domain(ica)
    x, _ = from_mne(ep, dtype=torch.float64)
    z = d.forward(x)
    residual = x - d.inverse(z)
    for j in (0, 4):
        zj = z.clone()
        zj[:, j] = 0
        ours = (d.inverse(zj) + residual).numpy()
        direct = _apply(ica, ep, exclude=[j])
        np.testing.assert_allclose(ours, direct, rtol=0, atol=1e-9 * np.abs(direct).max())


def test_matrices_from_mne_attributes_directly():
    """unmixing = U P_K diag(1 / pre_whitener_), written out here from MNE's attributes."""
    ep = epochs(n_epochs=6, times=300)
    ica = fitted_ica(ep, 5)
    mixing, unmixing, mean = ica_matrices(ica)
    pk = ica.pca_components_[: ica.n_components_]
    pw = ica.pre_whitener_[:, 0]
    np.testing.assert_allclose(unmixing, ica.unmixing_matrix_ @ pk / pw[None, :], rtol=1e-12)
    np.testing.assert_allclose(mixing, pw[:, None] * (pk.T @ ica.mixing_matrix_), rtol=1e-12)
    np.testing.assert_allclose(mean, pw * ica.pca_mean_, rtol=1e-12)


def test_units_rescale_the_domain():
    ep = epochs(n_epochs=6, times=300)
    ica = fitted_ica(ep, 6)
    x_uv, _ = from_mne(ep, units="uV", dtype=torch.float64)
    d = ica_domain(ica, units="uV")
    sources = ica.get_sources(ep).get_data()
    np.testing.assert_allclose(d.forward(x_uv).numpy(), sources, rtol=1e-8, atol=1e-9 * np.abs(sources).max())
    back = d.inverse(d.forward(x_uv)).numpy()
    np.testing.assert_allclose(back, _apply(ica, ep, exclude=[], n_pca_components=6) * 1e6, atol=1e-6)


def test_average_reference_projection_is_part_of_the_unmixing():
    ep = epochs(n_epochs=8, times=300)
    ep.set_eeg_reference("average", projection=True, verbose="error")
    ep.apply_proj(verbose="error")
    ica = fitted_ica(ep, 6)
    d = ica_domain(ica)
    x, _ = from_mne(ep, dtype=torch.float64)
    sources = ica.get_sources(ep).get_data()
    np.testing.assert_allclose(d.forward(x).numpy(), sources, rtol=1e-8, atol=1e-9 * np.abs(sources).max())


def test_noise_covariance_whitening():
    ep = epochs(n_epochs=8, times=300)
    cov = mne.compute_covariance(ep, verbose="error")
    ica = fitted_ica(ep, 6, noise_cov=cov)
    d = ica_domain(ica)
    x, _ = from_mne(ep, dtype=torch.float64)
    sources = ica.get_sources(ep).get_data()
    np.testing.assert_allclose(d.forward(x).numpy(), sources, rtol=1e-8, atol=1e-8 * np.abs(sources).max())
    direct = _apply(ica, ep, exclude=[], n_pca_components=6)
    np.testing.assert_allclose(d.inverse(d.forward(x)).numpy(), direct, atol=1e-8 * np.abs(direct).max())


def test_ica_ig_completeness_and_metadata():
    ep = epochs(n_epochs=4, times=200)
    ica = fitted_ica(ep, 6)
    d = ica_domain(ica)
    assert d.channel_names == NAMES and d.component_names[0] == "ICA000" and d.mne_info is ica.info
    x, _ = from_mne(ep, dtype=torch.float64)
    net = model()
    a = sl.InDomain(sl.IntegratedGradients(net, n_steps=64), d).explain(x, 1)
    assert a.layout.names == ("b", "k", "t") and a.values.shape == (4, 6, 200)
    gap = a.delta.abs().max() / a.scores.abs().max()
    assert gap < 1e-3


def test_refusals():
    with pytest.raises(sl.ParameterError, match="mne.preprocessing.ICA"):
        ica_domain(object())
    with pytest.raises(sl.NotFittedError, match="not fitted"):
        ica_domain(mne.preprocessing.ICA(n_components=3))
