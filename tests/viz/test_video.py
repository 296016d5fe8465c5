"""GIFs have one frame per time step showing that frame's own map; volume slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from salience import viz  # noqa: E402


def moving_square(T=5, size=12):
    video = np.zeros((1, T, size, size))
    attr = np.zeros((1, T, size, size))
    for t in range(T):
        video[0, t, 2:5, t + 1 : t + 4] = 1.0
        attr[0, t, 2:5, t + 1 : t + 4] = 1.0  # the map follows the object
    return video, attr


def red_columns(frame: np.ndarray) -> set:
    """Columns of the overlay panel (right half) where the heatmap is red."""
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    hot = (r - b > 60) & (r - g > 60)
    return set(np.flatnonzero(hot.any(0)).tolist())


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_gif_one_frame_per_step_with_frame_specific_maps(tmp_path, kind):
    video, attr = moving_square()
    if kind == "torch":
        video, attr = torch.tensor(video), torch.tensor(attr)
    path = tmp_path / "clip.gif"
    frames = viz.save_gif(
        video, attr, path, fps=5, png_dir=tmp_path / "frames", label=False, side_by_side=False, size=12
    )
    with Image.open(path) as im:
        assert im.n_frames == 5
        decoded = []
        for i in range(im.n_frames):
            im.seek(i)
            decoded.append(np.asarray(im.convert("RGB")))
    assert len(frames) == 5 and sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        f"frame_{i:03d}.png" for i in range(5)
    ]
    cols = [red_columns(f) for f in decoded]
    for t in range(5):
        assert cols[t] == {t + 1, t + 2, t + 3}, (
            f"frame {t} shows {sorted(cols[t])}"
        )  # its own map, not frame 0's
    assert len({tuple(sorted(c)) for c in cols}) == 5


def test_video_frames_shape_and_shared_scale():
    video, attr = moving_square(T=3, size=8)
    attr[0, 2] *= 0.5  # a weaker last frame must look weaker (one scale for the clip)
    frames = viz.video_frames(video, attr, size=8, side_by_side=False)
    assert [f.shape for f in frames] == [(8, 8, 3)] * 3 and frames[0].dtype == np.uint8
    # under the square the frame is white; the map tints it: less green = more strongly tinted
    g0 = frames[0][2:5, 1:4, 1].astype(int).mean()
    g2 = frames[2][2:5, 3:6, 1].astype(int).mean()
    assert g0 < g2 < 250


@pytest.mark.parametrize(
    "video, attr, match",
    [
        (np.zeros((1, 4, 8, 8)), np.zeros((1, 3, 8, 8)), "frames"),
        (np.zeros((2, 4, 8, 8)), np.zeros((2, 4, 8, 8)), "channels"),
        (np.zeros((8, 8)), np.zeros((8, 8)), "video"),
    ],
)
def test_gif_bad_input(tmp_path, video, attr, match):
    with pytest.raises(ValueError, match=match):
        viz.save_gif(video, attr, tmp_path / "x.gif")


def test_gif_bad_fps(tmp_path):
    v, a = moving_square()
    with pytest.raises(ValueError, match="fps"):
        viz.save_gif(v, a, tmp_path / "x.gif", fps=0)


def test_plot_volume_slices():
    v, a = moving_square(T=6)
    fig = viz.plot_volume_slices(torch.tensor(v), a, n_slices=3, axis_name="z")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["z = 0", "z = 2", "z = 5"]
    assert all(len(ax.images) == 2 for ax in panels)
    fig = viz.plot_volume_slices(v, a, indices=[1, 4])
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2
    with pytest.raises(ValueError, match="outside"):
        viz.plot_volume_slices(v, a, indices=[9])
