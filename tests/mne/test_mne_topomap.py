"""Topomaps of channel importance, per band and per ICA component (mne.viz.plot_topomap)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from mne_fixtures import NAMES, SFREQ, epochs, fitted_ica, model, need_mne

import salience as sl
from salience.domains.bands import resolve_bands
from salience.mne import from_mne, ica_domain
from salience.viz import SEQUENTIAL_CMAP
from salience.viz.topomap import plot_topomap, topomap_values

mne = need_mne()
pytest.importorskip("matplotlib")


def _explained(explainer, ep, target=1):
    """explain() on the tensor, then the MNE metadata in info (what explain(epochs) records)."""
    x, meta = from_mne(ep, dtype=torch.float64)
    a = explainer.explain(x, target)
    return dataclasses.replace(a, info={**meta, **a.info})


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


def test_channel_view_sums_all_but_channels():
    ep = epochs(n_epochs=4)
    a = _explained(sl.Gradient(model()), ep)
    values, labels = topomap_values(a)
    np.testing.assert_allclose(values[0], a.values.sum(-1).mean(0).numpy())
    one, _ = topomap_values(a, sample=2, absolute=True)
    np.testing.assert_allclose(one[0], a.values[2].abs().sum(-1).numpy())
    fig = plot_topomap(a)
    img = fig.axes[0].images[0]
    assert img.norm(0.0) == pytest.approx(0.5)  # signed: zero in the middle of the diverging map (white)
    texts = _texts(fig)
    assert any("Gradient: left, mean of 4 samples" in t for t in texts), texts
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    assert len(np.unique(rgba.reshape(-1, 4), axis=0)) > 50  # a drawn map, not a blank figure


def test_absolute_map_is_sequential_from_zero():
    a = _explained(sl.Gradient(model()), epochs(n_epochs=2))
    fig = plot_topomap(a, absolute=True)
    img = fig.axes[0].images[0]
    values, _ = topomap_values(a, absolute=True)
    assert img.cmap.name == SEQUENTIAL_CMAP and img.norm.vmin == 0.0
    assert img.norm.vmax == pytest.approx(values.max())  # from zero to the largest channel
    data = np.ma.filled(img.get_array(), np.nan)
    shown = np.clip(img.norm(data[np.isfinite(data)]), 0, 1)
    assert shown.max() > 0.95 and shown.std() > 0.03  # reaches the top of the scale, not one block
    assert any("|a|" in t for t in _texts(fig))


def test_band_view_per_band():
    ep = epochs(n_epochs=3)
    a = _explained(sl.InDomain(sl.IntegratedGradients(model(), n_steps=16), sl.Fourier(fs=SFREQ)), ep)
    values, labels = topomap_values(a, bands="eeg")
    freqs = np.fft.rfftfreq(200, 1 / SFREQ)
    table = resolve_bands("eeg", SFREQ)
    v = a.values.numpy().mean(0)  # (C, F)
    for row, (lo, hi) in zip(values, table.values(), strict=False):
        inside = (freqs >= lo) & ((freqs < hi) | ((hi >= SFREQ / 2) & (freqs == SFREQ / 2)))
        np.testing.assert_allclose(row, v[:, inside].sum(1), atol=1e-12 * np.abs(v).max())
    assert labels[2] == "alpha (8-12 Hz)" and labels[-1] == "outside every band"
    np.testing.assert_allclose(values.sum(0), v.sum(1), atol=1e-10 * np.abs(v).max())  # nothing lost
    fig = plot_topomap(a, bands="eeg")
    texts = _texts(fig)
    assert "alpha (8-12 Hz)" in texts and "outside every band" in texts


def test_component_view_is_pattern_times_importance():
    ep = epochs(n_epochs=4, times=300)
    ica = fitted_ica(ep, 6)
    a = _explained(sl.InDomain(sl.IntegratedGradients(model(), n_steps=8), ica_domain(ica)), ep)
    values, labels = topomap_values(a)
    importance = a.values.sum(-1).mean(0).numpy()
    patterns = ica.get_components() * ica.pre_whitener_ if False else None  # noqa: F841
    mixing = a.domain.mixing_.numpy()
    np.testing.assert_allclose(values, (mixing * importance[None, :]).T)
    assert labels[0].startswith("ICA000: ")
    # MNE's own component maps (get_components, whitened units) are the mixing columns up to the
    # per-channel pre-whitener scale
    np.testing.assert_allclose(mixing, ica.get_components() * ica.pre_whitener_, rtol=1e-8, atol=1e-20)
    fig = plot_topomap(a, n_components=3)
    titled = [t for t in _texts(fig) if t.startswith("ICA0")]
    top = np.argsort(-np.abs(values).sum(1))[:3]
    assert sorted(titled) == sorted(labels[k] for k in top)
    fig = plot_topomap(a, components=[1, 5])
    assert sorted(t for t in _texts(fig) if t.startswith("ICA0")) == [labels[1], labels[5]]
    with pytest.raises(sl.ParameterError, match="components"):
        plot_topomap(a, components=[9])


def test_positions_without_mne_objects():
    a = sl.Gradient(model()).explain(torch.as_tensor(epochs(n_epochs=2).get_data()), 0)
    with pytest.raises(sl.ParameterError, match="channel positions"):
        plot_topomap(a)
    flat = np.random.default_rng(3).uniform(-0.07, 0.07, (len(NAMES), 2))
    assert plot_topomap(a, positions=flat) is not None
    head = np.concatenate([flat, np.full((len(NAMES), 1), 0.03)], 1)
    named = dataclasses.replace(a, info={"channel_names": NAMES})
    assert plot_topomap(named, positions=head, show_names=True) is not None
    with pytest.raises(sl.ShapeError, match="positions"):
        plot_topomap(a, positions=flat[:3])
    ep = epochs(n_epochs=2, montage=False)
    with pytest.raises(sl.ParameterError, match="montage"):
        plot_topomap(_explained(sl.Gradient(model()), ep))


def test_refusals():
    a = _explained(sl.Gradient(model()), epochs(n_epochs=2))
    with pytest.raises(sl.ParameterError, match="by"):
        plot_topomap(a, by="time")
    with pytest.raises(sl.ParameterError, match="frequency axis"):
        plot_topomap(a, by="band")
    with pytest.raises(sl.ParameterError, match="ICA domain"):
        plot_topomap(a, by="component")
    with pytest.raises(sl.ParameterError, match="Attribution"):
        plot_topomap(np.zeros((2, 10, 5)))
    with pytest.raises(sl.ParameterError, match="sample"):
        plot_topomap(a, sample=5)
