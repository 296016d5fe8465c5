"""Every plot function: a figure is produced with the expected axes/artists, for torch tensors
(CPU and, when present, CUDA) and numpy arrays alike; bad input raises a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

mpl = pytest.importorskip("matplotlib")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection, QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import salience as sl  # noqa: E402
from salience import viz  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rng(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def as_kind(a, kind, device="cpu"):
    return torch.tensor(a, device=device) if kind == "torch" else np.asarray(a)


KINDS = ["numpy", "torch"]


# ------------------------------------------------------------------ colours
def test_limits_and_normalize_modes():
    a = np.array([-2.0, 0.5, 1.0])
    assert viz.limits(a) == (-2.0, 2.0)
    assert viz.limits(a, "absmax") == (0.0, 2.0)
    assert viz.limits(a, "minmax") == (-2.0, 1.0)
    np.testing.assert_allclose(viz.normalize(a), [-1.0, 0.25, 0.5])
    np.testing.assert_allclose(viz.normalize(a, "minmax"), [0.0, 2.5 / 3, 1.0])
    np.testing.assert_allclose(viz.normalize(a, "absmax"), [1.0, 0.25, 0.5])
    # percentile clipping keeps one outlier from washing out the rest
    b = np.r_[np.ones(99), 100.0]
    assert viz.limits(b, percentile=95)[1] == pytest.approx(1.0)
    assert viz.limits(np.zeros(3)) == (-1.0, 1.0)  # all-zero maps do not divide by zero


def test_to_rgba_zero_is_white_and_sign_kept():
    c = viz.to_rgba(np.array([-1.0, 0.0, 1.0]))
    assert c.shape == (3, 4)
    assert np.allclose(c[1, :3], c[1, :3].mean(), atol=0.03) and c[1, :3].min() > 0.9  # ~white
    assert c[0, 2] > c[0, 0] and c[2, 0] > c[2, 2]  # blue negative, red positive


def test_to_numpy_accepts_attribution_and_grad_tensors():
    x = torch.randn(2, 3, 10, requires_grad=True)
    assert viz.to_numpy(x * 2).shape == (2, 3, 10)
    attr = sl.Gradient(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(30, 2)).eval()).explain(
        x.detach(), 0
    )
    assert viz.to_numpy(attr).shape == (2, 3, 10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_tensors_and_attributions_plot(dtype):
    x = torch.randn(2, 2, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    np.testing.assert_array_equal(viz.to_numpy(x), x.double().numpy())  # exact upcast
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128, 2)).to(dtype).eval()
    attr = sl.Gradient(model).explain(x, 1)
    assert attr.values.dtype == dtype
    np.testing.assert_array_equal(viz.to_numpy(attr), attr.values.double().numpy())
    ax = viz.plot_signal(x[0], attr.values[0])
    assert isinstance(ax, Axes)
    ax = viz.plot_attribution(x, attr, 1, fs=32.0)
    assert isinstance(ax, Axes) and len(ax.images) == 1


@pytest.mark.parametrize("bad", [dict(norm="rank"), dict(percentile=0)])
def test_limits_bad_parameters(bad):
    with pytest.raises(sl.ParameterError, match="norm|percentile"):
        viz.limits(np.ones(3), **bad)


# ------------------------------------------------------------------ signals
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", DEVICES)
def test_plot_signal_line_colours_follow_attribution(kind, device):
    T = 50
    x = as_kind(np.sin(np.linspace(0, 6, T))[None].repeat(2, 0), kind, device)
    a = np.zeros((2, T))
    a[0, 10] = a[0, 11] = 1.0
    ax = viz.plot_signal(x, as_kind(a, kind, device), fs=25.0, channel_names=["a", "b"])
    assert isinstance(ax, Axes)
    lcs = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lcs) == 2  # one coloured line per channel
    assert lcs[0].get_array().max() == pytest.approx(1.0)  # the segment values are the attribution
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_xlim()[1] == pytest.approx((T - 1) / 25 + 0.02)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]  # top to bottom
    assert len(ax.figure.axes) == 2  # the colour bar


@pytest.mark.parametrize("kind", KINDS)
def test_plot_signal_background_and_channel_selection(kind):
    x, a = as_kind(rng(4, 30), kind), as_kind(rng(4, 30, seed=1), kind)
    ax = viz.plot_signal(x, a, style="background", channels=[3, 1], colorbar=False)
    assert len(ax.images) == 2 and len(ax.lines) == 2
    assert ax.get_xlabel() == "sample"
    assert len(ax.figure.axes) == 1


def test_plot_signal_broadcasts_a_cam_row_and_resamples_length():
    ax = viz.plot_signal(rng(3, 40), rng(1, 10), colorbar=False)  # (1, T') layer-resolution CAM
    assert len([c for c in ax.collections if isinstance(c, LineCollection)]) == 3


def test_plot_signal_on_given_axes_returns_them():
    from salience.viz._mpl import new_figure

    fig = new_figure((4, 3))
    ax = fig.add_subplot()
    assert viz.plot_signal(rng(50), rng(50), ax=ax) is ax


@pytest.mark.parametrize("kind", KINDS)
def test_plot_signal_map_image_of_all_channels(kind):
    ax = viz.plot_signal_map(as_kind(rng(5, 64), kind), as_kind(rng(5, 64, seed=2), kind), fs=32.0)
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (5, 64)
    assert len(ax.lines) == 5
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi  # symmetric by default


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: viz.plot_signal(rng(2, 10), rng(3, 10)), "channels"),
        (lambda: viz.plot_signal(rng(2, 10), rng(2, 10), style="dots"), "style"),
        (lambda: viz.plot_signal(rng(2, 10), rng(2, 10), fs=-1), "fs"),
        (lambda: viz.plot_signal(rng(2, 10), rng(2, 10), channels=[5]), "channels"),
        (lambda: viz.plot_signal(rng(2, 2, 10), rng(2, 2, 10)), "shape"),
        (lambda: viz.plot_signal(rng(10), rng(10), ax="left"), "ax"),
        (lambda: viz.plot_signal(rng(10), None), "attr"),
    ],
)
def test_plot_signal_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ images
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", DEVICES)
def test_plot_image_overlay(kind, device):
    img = as_kind(rng(3, 16, 20), kind, device)
    a = as_kind(rng(3, 16, 20, seed=3), kind, device)
    ax = viz.plot_image(img, a, alpha=0.7)
    assert len(ax.images) == 2
    heat = ax.images[1]
    assert heat.get_array().shape == (16, 20)  # channels summed
    assert np.asarray(heat.get_alpha()).max() <= 0.7 + 1e-9  # opacity follows |attribution|
    assert ax.get_xlim() == (-0.5, 19.5)


def test_plot_image_low_resolution_cam_is_stretched_and_hwc_accepted():
    ax = viz.plot_image(rng(32, 32, 3), rng(1, 4, 4), weighted_alpha=False, colorbar=False)
    assert ax.images[1].get_extent() == [-0.5, 31.5, 31.5, -0.5]
    assert viz.plot_image(rng(1, 8, 8)).images[0].get_array().shape == (8, 8)  # image alone


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: viz.plot_image(rng(5, 8, 8), rng(8, 8)), "channels"),
        (lambda: viz.plot_image(rng(3, 8, 8), rng(8, 8), alpha=2), "alpha"),
        (lambda: viz.plot_image(rng(3, 8, 8), rng(3, 8, 8), channel_reduce="max"), "channel_reduce"),
        (lambda: viz.plot_image(rng(8), rng(8)), "image"),
    ],
)
def test_plot_image_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kind", KINDS)
def test_plot_grid_images_and_signals(kind):
    imgs = as_kind(rng(2, 3, 8, 8), kind)
    fig = viz.plot_grid(
        imgs, {"A": as_kind(rng(2, 3, 8, 8), kind), "B": rng(2, 1, 8, 8)}, row_titles=["x", "y"]
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 3  # input column + 2 methods
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "A", "B"]
    sig = viz.plot_grid(as_kind(rng(3, 1, 30), kind), {"A": rng(3, 1, 30)}, fs=10.0)
    assert len(sig.axes) == 3
    multi = viz.plot_grid(rng(2, 4, 30), {"A": rng(2, 4, 30), "B": rng(2, 4, 30)})
    assert all(len(ax.images) == 1 for ax in multi.axes)  # multichannel cells are maps


def test_plot_grid_bad_input():
    with pytest.raises(ValueError, match="samples"):
        viz.plot_grid(rng(2, 3, 8, 8), {"A": rng(3, 3, 8, 8)})
    with pytest.raises(ValueError, match="mapping"):
        viz.plot_grid(rng(2, 3, 8, 8), {})
    with pytest.raises(ValueError, match="row_titles"):
        viz.plot_grid(rng(2, 3, 8, 8), {"A": rng(2, 3, 8, 8)}, row_titles=["one"])


# ------------------------------------------------------------------ spectra, components
@pytest.mark.parametrize("kind", KINDS)
def test_plot_spectrum_bars_signal_and_bands(kind):
    fs, T = 128.0, 256
    freqs = np.fft.rfftfreq(T, 1 / fs)
    a = np.zeros((2, freqs.size))
    a[0, 20] = 1.0  # 10 Hz
    a[1, 40] = -0.5  # 20 Hz
    sig = np.sin(2 * np.pi * 10 * np.arange(T) / fs)[None].repeat(2, 0)
    ax = viz.plot_spectrum(
        as_kind(a, kind), as_kind(freqs, kind), signal=as_kind(sig, kind), fs=fs, bands=viz.EEG_BANDS
    )
    heights = np.array([p.get_height() for p in ax.patches if hasattr(p, "get_height") and p.get_width() < 1])
    assert heights.size == freqs.size and heights[20] == 1.0 and heights[40] == -0.5  # channels summed
    twin = ax.right_ax
    line = twin.lines[0]
    assert np.argmax(line.get_ydata()) == 20  # the signal's spectrum peaks at 10 Hz
    assert {t.get_text() for t in ax.texts} == set(viz.EEG_BANDS)


def test_band_sums_half_open_convention():
    freqs = np.array([3.0, 4.0, 7.9, 8.0, 12.0, 13.0])
    with pytest.warns(sl.SalienceWarning, match="outside every band"):
        names, s = viz.band_sums(np.ones((2, 6)), freqs, {"theta": (4, 8), "alpha": (8, 13)})
    assert names == ["theta", "alpha", "other"]
    # 4, 7.9 in theta; 8, 12, 13 (the highest bin stands in for Nyquist) in alpha; 3 outside
    np.testing.assert_array_equal(s, [[2, 3, 1], [2, 3, 1]])
    with pytest.raises(ValueError, match="bins"):
        viz.band_sums(np.ones(5), freqs)
    with pytest.raises(ValueError, match="low < high"):
        viz.band_sums(np.ones(6), freqs, {"x": (5, 1)})


@pytest.mark.parametrize("per_channel", [False, True])
def test_plot_bands(per_channel):
    freqs = np.linspace(0, 64, 129)
    ax = viz.plot_bands(torch.randn(3, 129), freqs, per_channel=per_channel)
    if per_channel:
        # octave bands by default: 0-1, 1-2, ..., 32-64 Hz
        assert ax.images[0].get_array().shape == (3, 7) and len(ax.texts) == 21
    else:
        assert len(ax.patches) == 7


@pytest.mark.parametrize("kind", KINDS)
def test_plot_time_frequency(kind):
    a = as_kind(rng(2, 9, 12), kind)
    ax = viz.plot_time_frequency(a, np.arange(12) * 0.1, np.linspace(0, 64, 9))
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(mesh) == 1 and mesh[0].get_array().size == 9 * 12
    assert ax.get_ylabel() == "frequency (Hz)"
    with pytest.raises(ValueError, match="freqs x times"):
        viz.plot_time_frequency(rng(9, 12), np.arange(5), np.arange(9))


@pytest.mark.parametrize("kind", KINDS)
def test_plot_components(kind):
    w = as_kind(np.array([0.5, -1.0, 0.1]), kind)
    fig = viz.plot_components(w, as_kind(rng(3, 100), kind), fs=50.0)
    bars, traces = fig.axes[:2]
    assert [p.get_width() for p in bars.patches] == [0.5, -1.0, 0.1]
    assert len(traces.lines) == 3 and traces.get_xlabel() == "time (s)"
    with pytest.raises(ValueError, match="components"):
        viz.plot_components(np.ones(2), rng(3, 10))


# ------------------------------------------------------------------ curves
@pytest.mark.parametrize("kind", KINDS)
def test_plot_curves_auc_in_legend(kind):
    c = as_kind(np.linspace(1, 0, 11), kind)  # AUC 0.5
    ax = viz.plot_curves({"IG": c, "Grad": as_kind(np.ones((4, 11)), kind)}, kind="deletion", spread=True)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["IG (AUC 0.500)", "Grad (AUC 1.000)"]
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="kind"):
        viz.plot_curves({"a": c}, kind="both")
    with pytest.raises(ValueError, match="steps"):
        viz.plot_curves({"a": c}, fractions=np.arange(3))


# ------------------------------------------------------------------ headless and pure
def test_no_pyplot_state_and_no_show(monkeypatch):
    import sys

    import matplotlib.figure

    def boom(*a, **k):
        raise AssertionError("show() called")

    monkeypatch.setattr(matplotlib.figure.Figure, "show", boom)
    before = set(sys.modules)
    ax = viz.plot_signal(rng(20), rng(20))
    fig = viz.plot_grid(rng(1, 3, 8, 8), {"a": rng(1, 3, 8, 8)})
    assert ax.figure.canvas.get_renderer() is not None and fig is not None
    if "matplotlib.pyplot" not in before:
        assert "matplotlib.pyplot" not in sys.modules  # figures are made without pyplot


def test_inputs_are_not_modified():
    x = torch.randn(2, 30)
    a = torch.randn(2, 30)
    x0, a0 = x.clone(), a.clone()
    viz.plot_signal(x, a, norm="absmax")
    viz.plot_signal_map(x, a, norm="minmax")
    assert torch.equal(x, x0) and torch.equal(a, a0)


def test_plot_grid_per_method_norm_and_cmap():
    a = np.abs(rng(1, 3, 8, 8)) + 5.0  # all positive with an offset, like RISE
    fig = viz.plot_grid(
        rng(1, 3, 8, 8), {"IG": rng(1, 3, 8, 8), "RISE": a}, norm={"RISE": "minmax"}, cmap={"RISE": "Reds"}
    )
    heat_ig, heat_rise = fig.axes[1].images[1], fig.axes[2].images[1]
    assert heat_rise.get_cmap().name == "Reds" and heat_ig.get_cmap().name == "RdBu_r"
    lo, hi = heat_rise.get_clim()
    assert lo > 5.0  # min-max, not (-m, m)
    alpha = np.asarray(heat_rise.get_alpha())
    assert alpha.min() < 0.05 and alpha.max() > 0.5  # the offset does not make the whole map opaque


def test_plot_attribution_picks_the_view_from_the_layout():
    from torch import nn

    torch.manual_seed(0)
    sig = nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2)
    ).eval()
    img = nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)
    ).eval()
    x1, x2 = torch.randn(2, 2, 64), torch.randn(1, 3, 8, 8)
    ax = viz.plot_attribution(x1, sl.Gradient(sig).explain(x1, 0), 1, fs=32.0)
    assert len(ax.images) == 1 and ax.get_xlabel() == "time (s)"  # all channels as a map
    ax = viz.plot_attribution(x2, sl.Gradient(img).explain(x2, 0))
    assert len(ax.images) == 2  # image + overlay
    if hasattr(sl, "FourierIG"):
        att = sl.FourierIG(sig, n_steps=4, fs=32.0).explain(x1, 0)
        ax = viz.plot_attribution(x1, att, fs=32.0)
        assert ax.get_xlabel() == "frequency (Hz)" and len(ax.patches) >= 33
    with pytest.raises(ValueError, match="Attribution"):
        viz.plot_attribution(x1, np.zeros((2, 2, 64)))
    with pytest.raises(ValueError, match="index"):
        viz.plot_attribution(x1, sl.Gradient(sig).explain(x1, 0), 5)


# ------------------------------------------------------------------ readability (issue 8 review)
def test_plot_image_pixel_level_view_is_display_only():
    """abssum + smoothing + percentile clipping change the drawn map, never the attribution."""
    a = torch.zeros(3, 16, 16)
    a[0, 8, 8], a[1, 8, 8] = 1.0, -1.0  # signs cancel in a plain sum
    a0 = a.clone()
    ax = viz.plot_image(rng(3, 16, 16), a, colorbar=False)
    assert np.allclose(ax.images[1].get_array(), 0)  # "sum": the opposite signs cancel
    ax = viz.plot_image(
        rng(3, 16, 16),
        a,
        channel_reduce="abssum",
        smooth=1.5,
        norm="absmax",
        percentile=99,
        cmap="inferno",
        colorbar=False,
    )
    shown = np.asarray(ax.images[1].get_array())
    assert shown[8, 8] == shown.max() and shown[8, 10] > 0 and shown.sum() == pytest.approx(2.0, rel=0.05)
    assert torch.equal(a, a0)
    with pytest.raises(sl.ParameterError, match="smooth"):
        viz.plot_image(rng(3, 8, 8), rng(3, 8, 8), smooth=-1)
    with pytest.raises(sl.ParameterError, match="channel_reduce"):
        viz.plot_image(rng(3, 8, 8), rng(3, 8, 8), channel_reduce="max")


def test_plot_grid_colour_input_and_stated_scales():
    imgs = np.random.default_rng(0).random((1, 3, 8, 8))
    fig = viz.plot_grid(
        imgs,
        {"IG": rng(1, 3, 8, 8), "RISE": np.abs(rng(1, 1, 8, 8))},
        norm={"RISE": "minmax"},
        channel_reduce={"IG": "abssum"},
        smooth={"IG": 1.0},
        percentile={"IG": 99.0},
        cmap={"IG": "inferno", "RISE": "Reds"},
    )
    assert fig.axes[0].images[0].get_array().ndim == 3  # the input column in colour (RGB), not grey

    def note(ax):  # the scale note is the label of a tick-less secondary top axis
        return " ".join(c.get_xlabel() for c in ax.child_axes)

    # "abssum" leaves no negative values: "auto" draws the column on a sequential scale from 0
    assert note(fig.axes[1]) == viz.scale_note("sequential", 99.0, channel_reduce="abssum", smooth=1.0)
    assert "sum |a| over channels" in note(fig.axes[1]) and "smoothed (sigma 1 px)" in note(fig.axes[1])
    assert "0 to p99" in note(fig.axes[1]) and note(fig.axes[2]) == "p0.5 to p99.5"
    assert fig.axes[1].images[1].get_cmap().name == "inferno"
    sig = viz.plot_grid(rng(2, 1, 30), {"A": rng(2, 1, 30)})
    assert note(sig.axes[0]) == "signed, \u00b1max of |a|" and note(sig.axes[1]) == ""  # first row only
    assert viz.scale_note("absmax", 99) == "magnitude, 0 to p99 of |a|"


def test_spectrum_band_labels_sit_above_the_bars():
    freqs = np.fft.rfftfreq(256, 1 / 128)
    a = np.zeros(freqs.size)
    a[20] = 5.0  # a tall bar in the alpha band
    ax = viz.plot_spectrum(a, freqs, bands=viz.EEG_BANDS, fmax=45, title="t")
    ax.figure.canvas.draw()
    top = ax.get_window_extent().y1
    for t in ax.texts:
        assert t.get_position()[1] >= 1.0 and t.get_window_extent().y0 >= top - 1  # outside the plot area
    assert ax.title.get_window_extent().y0 >= max(t.get_window_extent().y1 for t in ax.texts) - 1


@pytest.mark.parametrize("where", ["right", "below"])
def test_curve_legend_outside_the_axes(where):
    ax = viz.plot_curves({"IG": np.linspace(1, 0, 11), "G": np.ones(11)}, legend=where)
    ax.figure.canvas.draw()
    box, leg = ax.get_window_extent(), ax.get_legend().get_window_extent()
    assert leg.x0 >= box.x1 - 1 if where == "right" else leg.y1 <= box.y0 + 1
    assert viz.plot_curves({"IG": np.ones(3)}, legend="none").get_legend() is None
    with pytest.raises(sl.ParameterError, match="legend"):
        viz.plot_curves({"IG": np.ones(3)}, legend="top")


def test_plot_components_time_resolved_weights():
    w = np.zeros((3, 40))
    w[1, 10:20] = 1.0
    fig = viz.plot_components(w, rng(3, 40), fs=20.0)
    bars, traces = fig.axes[:2]
    assert [p.get_width() for p in bars.patches] == [0.0, 10.0, 0.0]  # sums over time
    lcs = [c for c in traces.collections if isinstance(c, LineCollection)]
    assert len(lcs) == 3 and lcs[1].get_array().max() == pytest.approx(1.0)  # traces coloured over time
    assert traces.get_xlabel() == "time (s)"


def test_plot_attribution_ica_domain_shows_components_in_seconds():
    pytest.importorskip("sklearn")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2)
    ).eval()
    x = torch.randn(3, 2, 64)
    dom = sl.ICA(random_state=0)
    dom.fit(x)
    att = sl.InDomain(sl.Gradient(model), dom).explain(x, 0)
    assert str(att.layout) == "b k t"
    fig = viz.plot_attribution(x, att, 1, fs=32.0)
    assert isinstance(fig, Figure)
    bars, traces = fig.axes[:2]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["IC 0", "IC 1"]
    assert traces.get_xlabel() == "time (s)" and traces.get_xlim()[1] == pytest.approx(63 / 32)
    title = fig.get_suptitle()
    assert "b k t" not in title and "independent components" in title
