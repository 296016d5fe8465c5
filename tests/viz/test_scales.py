"""Honest colour scales, read from the rendered pixels: each plot chooses its scale from the map
(signed maps on a symmetric diverging scale with white at zero, maps without negative values on a
sequential scale from zero, RISE min-max as its paper shows it); shape checks; titles with
method, class and score; a time scale bar in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
from matplotlib.colors import Normalize  # noqa: E402

import salience as sl  # noqa: E402
from salience import viz  # noqa: E402


def pixels(ax):
    """The RGB pixels (0-255) inside ``ax``'s plot area, rendered with the Agg canvas."""
    fig = ax.figure
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    x0, y0, x1, y1 = ax.get_window_extent().extents
    H = rgb.shape[0]
    # inset by 2 px so the frame (spines) is left out; buffer rows run top to bottom
    return rgb[int(H - y1) + 2 : int(H - y0) - 2, int(x0) + 2 : int(x1) - 2]


def positions(rgb, cmap):
    """Where on ``cmap`` (0 to 1) each rendered colour lies: its nearest entry of the colour map."""
    lut = (np.asarray(cmap(np.linspace(0, 1, 256)))[:, :3] * 255).astype(int)
    flat = np.unique(rgb.reshape(-1, 3), axis=0)  # each rendered colour once
    d = ((flat[:, None, :] - lut[None, :, :]) ** 2).sum(-1)
    return d.argmin(1) / 255.0, np.sqrt(d.min(1))


def ramp_map(lo, hi, C=4, T=200):
    return np.tile(np.linspace(lo, hi, T), (C, 1))


# ------------------------------------------------------------------ the scale chosen from the map
def test_auto_resolves_from_the_sign_of_the_map():
    assert viz.resolve_norm(np.array([0.0, 0.2, 1.0])) == "sequential"
    assert viz.resolve_norm(np.array([-0.1, 0.2, 1.0])) == "symmetric"
    assert viz.resolve_norm(np.zeros(4)) == "symmetric"  # nothing to show: white everywhere
    assert viz.resolve_norm(np.array([-1e-12, 0.5, 1.0])) == "sequential"  # round-off is not a sign
    assert viz.resolve_norm(np.array([0.1, 0.12]), method="RISE") == "minmax"  # as the paper shows it
    assert viz.resolve_norm(np.array([-0.3, -0.2]), method="RISE") == "minmax"  # logits: an offset too
    assert viz.resolve_norm(np.array([-0.3, -0.2]), method="Gradient") == "symmetric"
    assert viz.limits(np.array([0.5, 2.0])) == (0.0, 2.0)  # a sequential scale starts at zero
    assert viz.limits(np.array([-0.5, 2.0])) == (-2.0, 2.0)
    sc = viz.scale_for(np.array([0.5, 2.0]))
    assert (sc.norm, sc.cmap, sc.vmin, sc.vmax) == ("sequential", viz.SEQUENTIAL_CMAP, 0.0, 2.0)
    sc = viz.scale_for(np.array([-0.5, 2.0]))
    assert (sc.norm, sc.cmap, sc.diverging) == ("symmetric", viz.DEFAULT_CMAP, True)


def test_vmin_vmax_and_matplotlib_norms_are_honoured():
    a = np.array([-1.0, 0.0, 3.0])
    sc = viz.scale_for(a, vmax=2.0)  # one limit of a symmetric scale sets both
    assert (sc.vmin, sc.vmax) == (-2.0, 2.0)
    sc = viz.scale_for(a, vmin=-1.0, vmax=4.0)  # unequal signed limits: two slopes, zero in the middle
    np.testing.assert_allclose(sc.fraction(np.array([-1.0, 0.0, 4.0])), [0.0, 0.5, 1.0])
    assert sc.mpl_norm()(0.0) == pytest.approx(0.5)
    sc = viz.scale_for(np.array([1.0, 2.0]), norm=Normalize(1.0, 3.0), cmap="viridis")
    assert (sc.norm, sc.cmap, sc.vmin, sc.vmax) == ("custom", "viridis", 1.0, 3.0)
    with pytest.raises(sl.ParameterError, match="vmin < vmax"):
        viz.scale_for(a, vmin=2.0, vmax=1.0)
    with pytest.raises(sl.ParameterError, match="'vmax'"):
        viz.scale_for(a, vmax=float("nan"))
    with pytest.raises(sl.ParameterError, match="'norm'"):
        viz.scale_for(a, norm="log")


# ------------------------------------------------------------------ pixels
def test_all_positive_map_spans_its_colour_scale():
    """A Grad-CAM-like map from 0 to 1 uses the whole sequential scale (white to dark), not the
    upper half of a diverging one; the old default drew it from the middle (white) of RdBu_r
    up only, and an offset map as a block of one red."""
    ax = viz.plot_signal_map(np.zeros((4, 200)), ramp_map(0.0, 1.0), traces=False, colorbar=False)
    cmap = ax.images[0].get_cmap()
    pos, dist = positions(pixels(ax), cmap)
    assert np.percentile(dist, 99) < 6  # the pixels are colours of the map's own colour map
    assert dist.max() < 30  # (edges between rendered pixels are blended)
    assert pos.min() < 0.03 and pos.max() > 0.97  # both ends of the scale are drawn
    assert len(np.unique(np.round(pos, 2))) > 50  # a ramp, not a block
    # a signed map of the same magnitudes still uses the diverging map, centred on white
    ax = viz.plot_signal_map(np.zeros((4, 200)), ramp_map(-1.0, 1.0), traces=False, colorbar=False)
    assert ax.images[0].get_cmap().name == viz.DEFAULT_CMAP


def test_forced_symmetric_scale_on_a_positive_map_uses_half_the_colour_map():
    """The check above can fail: the old default (symmetric) leaves half the scale unused."""
    ax = viz.plot_signal_map(
        np.zeros((4, 200)), ramp_map(0.0, 1.0), traces=False, colorbar=False, norm="symmetric"
    )
    pos, _ = positions(pixels(ax), ax.images[0].get_cmap())
    assert pos.min() > 0.45


def test_signed_map_zero_is_white_even_with_unequal_limits():
    a = np.concatenate([np.full((3, 60), -1.0), np.zeros((3, 80)), np.full((3, 60), 3.0)], axis=1)
    for kw in ({}, {"vmin": -1.0, "vmax": 3.0}):
        ax = viz.plot_signal_map(np.zeros((3, 200)), a, traces=False, colorbar=False, **kw)
        rgb = pixels(ax)
        W = rgb.shape[1]
        middle = rgb[:, int(0.35 * W) : int(0.65 * W)]
        centre = (np.asarray(ax.images[0].get_cmap()(0.5))[:3] * 255).round()
        assert np.abs(middle - centre).max() <= 2, kw  # zero is the colour map's middle...
        assert middle.min() >= 245 and np.ptp(middle, axis=-1).max() <= 2  # ...a neutral white
        left, right = rgb[:, : int(0.25 * W)].mean((0, 1)), rgb[:, int(0.75 * W) :].mean((0, 1))
        assert left[2] > left[0] + 40 and right[0] > right[2] + 40  # blue below zero, red above


def test_plot_image_positive_map_is_not_a_uniform_block():
    img = np.full((3, 32, 32), 0.5)
    yy, xx = np.mgrid[0:32, 0:32]
    cam = np.exp(-((yy - 16.0) ** 2 + (xx - 16.0) ** 2) / 60.0)[None]  # non-negative blob
    ax = viz.plot_image(img, cam, alpha=1.0, weighted_alpha=False, colorbar=False, percentile=100)
    pos, dist = positions(pixels(ax), ax.images[1].get_cmap())
    assert ax.images[1].get_cmap().name == viz.SEQUENTIAL_CMAP
    assert pos.min() < 0.05 and pos.max() > 0.9 and dist.max() < 20


def test_rise_is_min_max_scaled_and_says_so():
    """RISE's scores sit close to the mean probability (0.10 to 0.14 here): the grid and the
    layout-driven view draw them min-max, as the RISE paper shows them, and state it."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    x = torch.randn(2, 2, 64, generator=g)
    rise = sl.RISE(model, n_masks=40, generator=g, progress=False).explain(x, target=sl.Probability(1))
    assert float(rise.values.min()) > 0
    fig = viz.plot_grid(x, {"RISE": rise}, scale_notes=True)
    note = " ".join(c.get_xlabel() for c in fig.axes[0].child_axes)
    assert note == "min to max"
    ax = viz.plot_attribution(x, rise, 0)  # one channel-less map over two channels: a signal map
    pos, _ = positions(pixels(ax), ax.images[0].get_cmap())
    assert pos.min() < 0.05 and pos.max() > 0.95
    assert "min to max" in ax.figure.axes[-1].get_ylabel()  # the colour bar says how


# ------------------------------------------------------------------ shapes
def test_a_map_of_another_aspect_ratio_is_never_stretched_over_an_image():
    with pytest.raises(sl.ShapeError, match=r"\(8, 256\).*64 x 64"):
        viz.plot_image(np.zeros((3, 64, 64)), np.ones((8, 256)))
    with pytest.raises(sl.ShapeError, match=r"\(8, 256\).*64 x 64"):
        viz.plot_image(np.zeros((3, 64, 64)), np.ones((1, 8, 256)))
    ax = viz.plot_image(np.zeros((3, 64, 64)), np.ones((7, 7)))  # a CAM at layer resolution is fine
    assert len(ax.images) == 2
    with pytest.raises(sl.ShapeError, match="frame"):
        viz.video_frames(np.zeros((3, 2, 16, 16)), np.ones((2, 4, 64)))
    with pytest.raises(sl.ShapeError, match="frame"):
        viz.plot_volume_slices(np.zeros((1, 2, 16, 16)), np.ones((2, 2, 16)))


# ------------------------------------------------------------------ titles, names and units
def _classifier():
    return torch.nn.Sequential(
        torch.nn.Conv1d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()


def test_titles_carry_method_class_name_and_score():
    x = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(1))
    attr = sl.IntegratedGradients(_classifier(), n_steps=4).explain(x, target=2)
    score = float(attr.scores[1])
    ax = viz.plot_attribution(x, attr, 1, class_names=["rest", "left", "right"])
    assert ax.get_title() == f"IntegratedGradients: right, score {score:.3g}"
    ax = viz.plot_attribution(x, attr, 1)
    assert "class 2" in ax.get_title()
    assert viz.plot_attribution(x, attr, 1, title="").get_title() == ""
    one = sl.IntegratedGradients(_classifier(), n_steps=4).explain(x[:1], target=0)
    ax = viz.plot_signal_map(x[0], one, class_names=["rest", "left", "right"])
    assert ax.get_title().startswith("IntegratedGradients: rest, score ")
    fig = viz.plot_grid(x, {"IG": attr}, class_names=["rest", "left", "right"])
    assert [a.get_ylabel() for a in fig.axes[:2]] == ["#0: right", "#1: right"]
    with pytest.raises(sl.ParameterError, match="class_names"):
        viz.plot_attribution(x, attr, 0, class_names="right")


def test_names_carried_by_an_attribution_are_drawn():
    """Channel names, class names and the sampling rate an Attribution carries in ``info``
    reach the plot without being passed again."""
    x = torch.randn(1, 3, 64, generator=torch.Generator().manual_seed(2))
    attr = sl.Gradient(_classifier()).explain(x, target=1)
    attr.info.update(channel_names=["Fz", "Cz", "Pz"], class_names=["a", "b", "c"], sfreq=32.0)
    ax = viz.plot_attribution(x, attr, 0)
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Fz", "Cz", "Pz"]
    assert ax.get_title().startswith("Gradient: b, score") and ax.get_xlabel() == "time (s)"


def test_time_scale_bar_in_seconds():
    def bars(ax):
        return [a for a in ax.artists if a.get_gid() == "salience-scale-bar"]

    ax = viz.plot_signal(np.zeros(640), np.ones(640), fs=128.0)  # 5 s
    (bar,) = bars(ax)
    assert bar.txt_label.get_text() == "1 s"
    ax = viz.plot_signal_map(np.zeros((2, 100)), np.ones((2, 100)), fs=1000.0)  # 0.1 s
    assert bars(ax)[0].txt_label.get_text() == "20 ms"
    assert not bars(viz.plot_signal(np.zeros(64), np.ones(64)))  # no rate, no physical unit
    assert not bars(viz.plot_signal(np.zeros(64), np.ones(64), fs=32.0, scale_bar=False))
    ax = viz.plot_signal(np.zeros(64), np.ones(64), fs=32.0, units="uV", channel_names=["O1"])
    assert ax.get_ylabel() == "O1 (uV)"


@pytest.mark.parametrize(
    "draw",
    [
        lambda kw: viz.plot_signal(np.zeros((2, 50)), np.abs(np.random.default_rng(0).random((2, 50))), **kw),
        lambda kw: viz.plot_signal_map(np.zeros((2, 50)), np.random.default_rng(0).random((2, 50)), **kw),
        lambda kw: viz.plot_image(np.zeros((3, 8, 8)), np.random.default_rng(0).random((8, 8)), **kw),
        lambda kw: viz.plot_time_frequency(
            np.random.default_rng(0).random((5, 4)), np.arange(4), np.arange(5), **kw
        ),
        lambda kw: viz.plot_spectrum(np.random.default_rng(0).random(9), **kw),
        lambda kw: viz.plot_bands(
            np.random.default_rng(0).random((2, 40)), np.arange(40.0), per_channel=True, **kw
        ),
        lambda kw: viz.plot_components(np.random.default_rng(0).random((3, 20)), np.zeros((3, 20)), **kw),
        lambda kw: viz.plot_volume_slices(
            np.zeros((1, 2, 8, 8)), np.random.default_rng(0).random((2, 8, 8)), **kw
        ),
    ],
    ids=["signal", "signal_map", "image", "time_frequency", "spectrum", "bands", "components", "volume"],
)
def test_every_plot_takes_cmap_norm_vmin_vmax(draw):
    out = draw({"cmap": "viridis", "norm": "symmetric", "vmin": -2.0, "vmax": 2.0})
    assert out is not None
    with pytest.raises(sl.ParameterError):
        draw({"vmin": 3.0, "vmax": 1.0})


# ------------------------------------------------------------------ ground truth
def test_ground_truth_runs_are_outlined_where_they_are():
    truth = np.zeros((3, 100), bool)
    truth[2, 10:20] = truth[2, 50:55] = truth[0, 90:] = True
    ax = viz.plot_signal_map(np.zeros((3, 100)), np.ones((3, 100)), fs=10.0, truth=truth)
    boxes = sorted(
        (round(p.get_x(), 6), round(p.get_width(), 6), p.get_y())
        for p in ax.patches
        if p.get_gid() == "salience-truth"
    )
    # rows top down: channel c spans (c - 0.5, c + 0.5); one box per run, in seconds
    assert boxes == [(0.95, 1.0, 1.5), (4.95, 0.5, 1.5), (8.95, 1.0, -0.5)]
    ax = viz.plot_signal(np.zeros((3, 100)), np.ones((3, 100)), truth=truth[2])  # (T,): every channel
    assert sum(p.get_gid() == "salience-truth" for p in ax.patches) == 6
    with pytest.raises(sl.ShapeError, match=r"'truth'.*\(3, 100\)"):
        viz.plot_signal_map(np.zeros((3, 100)), np.ones((3, 100)), truth=np.ones((2, 100)))
    img_truth = np.zeros((16, 16))
    img_truth[4:8, 4:8] = 1
    ax = viz.plot_image(np.zeros((3, 16, 16)), np.ones((16, 16)), truth=img_truth)
    assert any(getattr(c, "get_gid", lambda: None)() == "salience-truth" for c in ax.collections)
    with pytest.raises(sl.ShapeError, match="truth"):
        viz.plot_image(np.zeros((3, 16, 16)), np.ones((16, 16)), truth=np.ones((8, 8)))
