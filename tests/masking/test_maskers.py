"""Maskers: RISE grid geometry (vs F.interpolate + crop), sliding windows, segments, lazy plans."""

from __future__ import annotations

import math

import pytest
import torch

from salience.errors import ParameterError, ShapeError
from salience.layout import Layout
from salience.masking import GridMasker, Segments, SlidingWindow


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _reference_grid(grid, shifts, sizes):
    """RISE's generate_masks, any rank: skimage resize to (s+1)*ceil(L/s), then crop at the shift."""
    transform = pytest.importorskip("skimage.transform")
    cells = grid.shape[2:]
    up = [(s + 1) * math.ceil(L / s) for L, s in zip(sizes, cells, strict=True)]
    out = []
    for i in range(grid.shape[0]):
        big = transform.resize(grid[i].numpy(), (1, *up), order=1, mode="reflect", anti_aliasing=False)
        sl = [slice(int(shifts[i, d]), int(shifts[i, d]) + sizes[d]) for d in range(len(sizes))]
        out.append(torch.from_numpy(big[(slice(None), *sl)]))
    return torch.stack(out)


@pytest.mark.parametrize(
    "layout, shape, cells",
    [
        ("b c t", (3, 50), {"t": 7}),
        ("b c h w", (3, 20, 17), {"h": 4, "w": 5}),
        ("b c h w", (3, 50, 50), {"h": 7, "w": 7}),
        ("b c t h w", (2, 6, 9, 8), {"t": 2, "h": 3, "w": 3}),
    ],
)
def test_grid_matches_rise_reference_upsampling(layout, shape, cells):
    masker = GridMasker(cells, p_keep=0.5)
    lay = Layout(layout)
    grid = masker.resolve(shape, lay)
    g = _g(1)
    keep = grid.bernoulli(4, 0.5, g, torch.float64)
    shifts = grid.shifts(4, g)
    ours = grid.render(keep, shifts)
    ref = _reference_grid(keep, shifts, [shape[i] for i in range(1, len(shape))])
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert ours.shape == (4, 1, *shape[1:])


def test_grid_without_shift_is_a_plain_resize():
    transform = pytest.importorskip("skimage.transform")
    grid = GridMasker({"t": 5}, shift=False).resolve((1, 23), "b c t")
    keep = grid.bernoulli(3, 0.5, _g(4), torch.float64)
    ours = grid.render(keep, grid.shifts(3, _g()))
    for i in range(3):
        ref = transform.resize(keep[i].numpy(), (1, 23), order=1, mode="reflect", anti_aliasing=False)
        torch.testing.assert_close(ours[i], torch.from_numpy(ref), rtol=1e-12, atol=1e-12)


def test_grid_values_shapes_and_keep_rate():
    m = GridMasker({"t": 16}, p_keep=0.3).sample((4, 100), "b c t", 400, generator=_g(), dtype=torch.float64)
    assert m.shape == (400, 1, 100) and m.dtype == torch.float64
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.3) < 0.03


def test_element_cells_without_shift_are_binary_bernoulli():
    m = GridMasker({"t": 12}, p_keep=0.5, shift=False).sample((1, 12), "b c t", 200, generator=_g())
    assert set(m.unique().tolist()) <= {0.0, 1.0}


def test_default_cells_cap_and_other_axis_names():
    m = GridMasker().sample((2, 5, 30), "b c h w", 3, generator=_g())
    assert m.shape == (3, 1, 5, 30)
    f = GridMasker({"f": 8}).sample((2, 33, 2), "b c f r", 3, generator=_g())
    assert f.shape == (3, 1, 33, 1)  # shared along channels and the re/im axis
    per_channel = GridMasker({"c": 2, "t": 4}).sample((2, 10), "b c t", 3, generator=_g())
    assert per_channel.shape == (3, 2, 10)


def test_plan_slices_equal_whole_and_generator_reproducible():
    masker = GridMasker({"h": 3, "w": 3})
    plan = masker.plan((3, 10, 10), "b c h w", 11, generator=_g(5))
    whole = plan(0, 11)
    parts = torch.cat([plan(a, min(11, a + 4)) for a in range(0, 11, 4)])
    assert torch.equal(whole, parts)
    again = masker.sample((3, 10, 10), "b c h w", 11, generator=_g(5))
    assert torch.equal(whole, again)


def test_grid_errors():
    with pytest.raises(ParameterError, match="'x'"):
        GridMasker({"x": 4}).sample((3, 10), "b c t", 2, generator=_g())
    with pytest.raises(ParameterError, match="p_keep"):
        GridMasker(p_keep=0.0)
    with pytest.raises(ParameterError, match="cells"):
        GridMasker({"t": 0})
    with pytest.raises(ShapeError):
        GridMasker().sample((3, 10, 10), "b c t", 2, generator=_g())
    with pytest.raises(ParameterError, match="'n'"):
        GridMasker().plan((3, 10), "b c t")


@pytest.mark.parametrize("size, w, s", [(12, 3, 3), (10, 3, 2), (10, 4, 3), (7, 7, 1), (9, 1, 1)])
def test_sliding_window_counts_and_cover(size, w, s):
    masks = SlidingWindow({"t": w}, {"t": s}).sample((2, size), "b c t")
    assert masks.shape == (math.ceil((size - w) / s) + 1, 1, size)  # Captum's count
    occluded = 1 - masks
    assert bool((occluded.sum(0) >= 1).all())  # every position is occluded at least once
    assert bool((occluded.sum((1, 2)) <= w).all())


def test_disjoint_windows_tile_the_input():
    masks = SlidingWindow({"h": 2, "w": 3}).sample((3, 4, 6), "b c h w")
    assert masks.shape == (4, 1, 4, 6)
    torch.testing.assert_close((1 - masks).sum(0), torch.ones(1, 4, 6))
    # row-major window order
    assert float(masks[1, 0, 0, 3]) == 0.0 and float(masks[2, 0, 2, 0]) == 0.0


def test_sliding_window_channels_and_errors():
    masks = SlidingWindow({"c": 1, "t": 5}).sample((3, 10), "b c t")
    assert masks.shape == (6, 3, 10)
    with pytest.raises(ParameterError, match="longer"):
        SlidingWindow({"t": 11}).sample((3, 10), "b c t")
    with pytest.raises(ParameterError, match="no window"):
        SlidingWindow({"w": 2}, {"h": 1}).sample((3, 4, 4), "b c h w")


def test_segments_equal_and_boundaries():
    m = Segments(3).sample((2, 10), "b c t")
    torch.testing.assert_close((1 - m).sum(0), torch.ones(1, 10))
    assert (1 - m)[:, 0].sum(1).tolist() == [3.0, 4.0, 3.0]
    b = Segments(boundaries=[2, 7]).sample((1, 9), "b c t")
    assert (1 - b)[:, 0].sum(1).tolist() == [2.0, 5.0, 2.0]
    r = Segments(boundaries=[2, 7], p_keep=0.5).sample((1, 9), "b c t", 50, generator=_g())
    assert r.shape == (50, 1, 9)
    assert bool((r[:, :, :2] == r[:, :, :1]).all() and (r[:, :, 2:7] == r[:, :, 2:3]).all())
    with pytest.raises(ParameterError):
        Segments(3, boundaries=[2])
    with pytest.raises(ParameterError, match="increasing"):
        Segments(boundaries=[4, 2])
    with pytest.raises(ParameterError, match="outside"):
        Segments(boundaries=[12]).sample((1, 9), "b c t")
