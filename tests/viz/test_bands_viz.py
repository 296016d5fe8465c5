"""Band views follow the band sets of ``salience.domains.bands`` (issue 16): no band shading and no
EEG band names unless asked for (``bands="eeg"``), octave bands from 0 Hz to Nyquist by default,
a band above Nyquist refused, and band sums that add up to the total (DC and Nyquist bins
included), read from the drawn labels and pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
from matplotlib.text import Text  # noqa: E402
from torch import nn  # noqa: E402

import salience as sl  # noqa: E402
from salience import viz  # noqa: E402
from salience.errors import ParameterError  # noqa: E402

EEG = ("delta", "theta", "alpha", "beta", "gamma")


def texts(obj):
    """Every string drawn in the figure of ``obj`` (titles, labels, tick labels, annotations)."""
    fig = obj if hasattr(obj, "canvas") else obj.figure
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def eeg_names_in(obj):
    return sorted({n for s in texts(obj) for n in EEG if n in s.lower()})


def shaded_pixels(ax):
    """Plot-area pixels in the band shading greys (0.96 and 0.9 of white); antialiased lines add a
    few dozen, shaded bands tens of thousands."""
    fig = ax.figure
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    x0, y0, x1, y1 = ax.get_window_extent().extents
    H = rgb.shape[0]
    area = rgb[int(H - y1) + 2 : int(H - y0) - 2, int(x0) + 2 : int(x1) - 2]
    grey = (area[..., 0] == area[..., 1]) & (area[..., 1] == area[..., 2])
    return int((grey & np.isin(area[..., 0], (229, 230, 244, 245))).sum())


def fourier_attribution(fs, C, T, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv1d(C, 3, 5, padding=2), nn.Tanh(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2)
    ).eval()
    t = torch.arange(T) / fs
    x = torch.sin(2 * np.pi * 1.3 * t)[None, None] + 0.3 * torch.randn(1, C, T)  # gait-like 1.3 Hz
    return x, sl.FourierIG(model, n_steps=4, fs=fs).explain(x, 0)


@pytest.fixture(scope="module")
def accel():  # 10 Hz tri-axial accelerometer-like data
    return fourier_attribution(10.0, 3, 100)


@pytest.fixture(scope="module")
def eeg():  # 250 Hz, 4 channels
    return fourier_attribution(250.0, 4, 250, seed=1)


# ------------------------------------------------------------------ defaults: no EEG names
def test_non_eeg_data_shows_no_eeg_band_names_by_default(accel):
    x, att = accel
    ax = viz.plot_attribution(x, att, fs=10.0)
    assert eeg_names_in(ax) == [] and shaded_pixels(ax) < 500  # nothing shaded, nothing named
    freqs = np.fft.rfftfreq(100, 1 / 10)
    ax = viz.plot_spectrum(att.values[0], freqs, fs=10.0)
    assert eeg_names_in(ax) == [] and shaded_pixels(ax) < 500
    names, _ = viz.band_sums(att.values[0], freqs, fs=10.0)
    assert names == list(sl.octave_bands(10.0, resolution=0.1))  # octave bands, no "other"
    for drawn in (viz.plot_bands(att), viz.plot_bands(att.values[0], freqs, fs=10.0, per_channel=True)):
        labels = texts(drawn)
        assert eeg_names_in(drawn) == [] and "outside every band" not in labels
        assert any("4-5" in s for s in labels)  # the top octave ends at Nyquist, 5 Hz


def test_octave_bands_are_shaded_only_when_asked(accel):
    x, att = accel
    ax = viz.plot_attribution(x, att, fs=10.0, bands="octave")
    assert shaded_pixels(ax) > 20000 and eeg_names_in(ax) == []
    assert set(sl.octave_bands(10.0, resolution=0.1)) <= set(texts(ax))


# ------------------------------------------------------------------ EEG bands when asked for
def test_eeg_bands_on_250_hz_data_when_asked(eeg):
    x, att = eeg
    ax = viz.plot_attribution(x, att, bands="eeg")
    assert eeg_names_in(ax) == sorted(EEG) and shaded_pixels(ax) > 20000
    default = viz.plot_attribution(x, att)
    assert eeg_names_in(default) == [] and shaded_pixels(default) < 500
    with pytest.warns(sl.SalienceWarning, match="outside every band"):  # DC and 0-0.5 Hz, above 100 Hz
        ax = viz.plot_bands(att, bands="eeg")
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert [s.split("\n")[0] for s in labels] == [*EEG, "outside every band"]
    assert labels[-2] == "gamma\n30-100 Hz"


def test_plot_bands_draws_a_banded_attribution_as_it_is(eeg):
    _, att = eeg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sl.SalienceWarning)
        banded = sl.aggregate_bands(att, {"slow": (0.5, 4), "fast": (4, 40)})
    ax = viz.plot_bands(banded)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, banded.values[0].sum(0).numpy(), rtol=1e-6, atol=1e-12)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["slow\n0.5-4 Hz", "fast\n4-40 Hz", "outside every band"]
    ax = viz.plot_bands(banded, per_channel=True)
    assert ax.images[0].get_array().shape == (4, 3)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["slow", "fast", "outside every band"]


# ------------------------------------------------------------------ Nyquist
def test_a_band_above_nyquist_is_refused(accel):
    x, att = accel
    freqs = np.fft.rfftfreq(100, 1 / 10)
    with pytest.raises(ParameterError, match="Nyquist"):
        viz.plot_attribution(x, att, fs=10.0, bands="eeg")  # beta and gamma lie above 5 Hz
    with pytest.raises(ParameterError, match="Nyquist"):
        viz.band_sums(att.values[0], freqs, {"hi": (6.0, 8.0)}, fs=10.0)
    with pytest.raises(ParameterError, match="Nyquist"):
        viz.plot_bands(att.values[0], freqs, bands={"hi": (6.0, 8.0)})  # highest bin 5 Hz stands in
    with pytest.raises(ParameterError, match="Nyquist"):
        viz.plot_spectrum(att.values[0], freqs, fs=10.0, bands="eeg")
    with pytest.raises(ParameterError, match="Nyquist"):
        viz.plot_bands(att, bands="eeg")


# ------------------------------------------------------------------ sums
def direct_sums(a, freqs, table, nyq):
    """Reference: bin k in [low, high), a band reaching Nyquist also holds the Nyquist bin; the
    rest in a last column."""
    cols = [a[..., (freqs >= lo) & ((freqs < hi) | (hi >= nyq))].sum(-1) for lo, hi in table.values()]
    inside = np.zeros(freqs.shape, bool)
    for lo, hi in table.values():
        inside |= (freqs >= lo) & ((freqs < hi) | (hi >= nyq))
    return np.stack([*cols, a[..., ~inside].sum(-1)], -1), bool((~inside).any())


@pytest.mark.parametrize(
    "bands, fs, T",
    [(None, 10.0, 100), ("linear:3", 10.0, 100), ({"mid": (1.0, 2.0)}, 10.0, 100), ("eeg", 250.0, 250)],
)
def test_band_sums_add_up_to_the_total_dc_and_nyquist_included(bands, fs, T):
    freqs = np.fft.rfftfreq(T, 1 / fs)
    a = np.random.default_rng(0).standard_normal((2, 3, freqs.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sl.SalienceWarning)
        names, sums = viz.band_sums(a, freqs, bands, fs=fs)
        ref = sl.aggregate_bands(torch.as_tensor(a), bands, fs=fs, freqs=torch.as_tensor(freqs))
    np.testing.assert_allclose(sums.sum(-1), a.sum(-1), rtol=0, atol=1e-12)  # DC counted
    np.testing.assert_allclose(sums, ref.numpy(), rtol=0, atol=1e-12)  # aggregate_bands' membership
    table = sl.resolve_bands(bands, fs, resolution=fs / T)
    expected, outside = direct_sums(a, freqs, table, fs / 2)
    assert names == list(table) + (["other"] if outside else [])
    np.testing.assert_allclose(sums, expected if outside else expected[..., :-1], rtol=0, atol=1e-12)
    if bands is None:  # octave: DC in the lowest band, the Nyquist bin in the highest
        one = np.zeros(freqs.size)
        one[0], one[-1] = 1.0, 10.0
        _, s = viz.band_sums(one, freqs, fs=fs)
        assert s[0] == 1.0 and s[-1] == 10.0 and s.sum() == 11.0
