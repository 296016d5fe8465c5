"""Grid pointing game: composing grids, Rao et al.'s per-cell score, and class-relevant maps on a
synthetic time grid where each class has its own evidence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import salience as sl
from salience.metrics import Grid, grid_pointing_game, make_grid
from synthetic_bursts import burst_data, train_cnn
from toy_models import Counting, Linear

D = torch.float64


def pool(n=8, shape=(3, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=D)


# ---------------------------------------------------------------------------- building grids
def test_image_mosaic_is_resized_to_the_original_size():
    x = pool()
    labels = [0, 1, 2, 3, 0, 1, 2, 3]
    grid = make_grid(x, labels)
    assert grid.inputs.shape == (2, 3, 8, 8) and grid.cells == (2, 2) and grid.axes == ("h", "w")
    assert grid.sources.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert grid.labels.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    small = F.avg_pool2d(x, 2)  # "area" halving = 2 x 2 averages
    top = torch.cat([small[0], small[1]], dim=2)
    bottom = torch.cat([small[2], small[3]], dim=2)
    torch.testing.assert_close(grid.inputs[0], torch.cat([top, bottom], dim=1), rtol=0, atol=1e-15)
    # masks: a partition of the composite, cell 1 is the top-right quadrant
    assert torch.equal(grid.masks.sum(0), torch.ones(8, 8, dtype=torch.long))
    assert grid.masks[1, :4, 4:].all() and grid.masks[1].sum() == 16


def test_time_grid_concatenates_full_signals():
    x = pool(6, (2, 10))
    grid = make_grid(x, [0, 1, 2, 0, 1, 2], cells=3)
    assert grid.inputs.shape == (2, 2, 30) and grid.axes == ("t",)
    for g in range(2):
        for c in range(3):
            torch.testing.assert_close(
                grid.inputs[g, :, 10 * c : 10 * (c + 1)], x[grid.sources[g, c]], rtol=0, atol=0
            )
            assert grid.masks[c, 10 * c : 10 * (c + 1)].all() and grid.masks[c].sum() == 10
    resized = make_grid(x, [0, 1, 2, 0, 1, 2], cells=3, resize=True, mode="linear")
    assert resized.inputs.shape == (2, 2, 10)
    assert [int(m.sum()) for m in resized.masks] == [3, 3, 4]  # edges floor(i * 10 / 3)


def test_uneven_sizes_and_video_frames():
    grid = make_grid(pool(4, (1, 9, 7)), [0, 1, 2, 3])
    assert [int(m.sum()) for m in grid.masks] == [4 * 3, 4 * 4, 5 * 3, 5 * 4]
    video = make_grid(pool(4, (2, 3, 8, 8)), [0, 1, 2, 3])
    assert video.inputs.shape == (1, 2, 3, 8, 8) and video.masks.shape == (4, 3, 8, 8)
    assert video.masks[3, :, 4:, 4:].all()


def test_distinct_classes_greedy_and_consecutive_groups():
    x = pool(8, (1, 4))
    labels = [0, 0, 1, 1, 2, 0, 2, 1]
    grid = make_grid(x, labels, cells=2)
    # 0 opens A; 0 opens B; 1 -> A (full); 1 -> B (full); 2 opens C; 0 -> C (full); 2, 1 open/fill D
    assert grid.sources.tolist() == [[0, 2], [1, 3], [4, 5], [6, 7]]
    assert all(len(set(r)) == 2 for r in grid.labels.tolist())
    same = make_grid(x, labels, cells=2, distinct=False)
    assert same.sources.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert same.labels.tolist()[0] == [0, 0]


def test_shuffle_uses_only_the_generator():
    x = pool(8, (1, 4))
    a = make_grid(x, list(range(8)), cells=2, generator=torch.Generator().manual_seed(1))
    b = make_grid(x, list(range(8)), cells=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.sources, b.sources) and a.sources.tolist() != [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_confidence_filter_keeps_confidently_correct_inputs():
    # logits = W x with W = [[1, 0], [0, 1]] on 2 features: p(label) = softmax(x)[label]
    model = Counting(Linear(torch.eye(2, dtype=D).reshape(2, 2, 1)).eval())
    x = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.2, 0.0], [3.0, 0.0], [0.0, 5.0], [0.0, 0.1]], dtype=D)[
        ..., None
    ]
    labels = [0, 1, 0, 1, 1, 1]  # 2: barely, 3: wrong, 5: barely
    grid = make_grid(x, labels, cells=2, model=model, min_confidence=0.9, batch_size=4)
    assert grid.sources.tolist() == [[0, 1]]  # 4 (label 1) waits for a class-0 partner
    assert model.rows == [4, 2]  # the engine's chunks
    with pytest.raises(sl.ShapeError, match="do not fill"):
        make_grid(x, labels, cells=2, model=[model, model], min_confidence=0.999999)


@pytest.mark.parametrize(
    "kw, err",
    [
        (dict(labels=[0, 1, 2]), sl.ParameterError),
        (dict(cells=(2, 2, 2)), sl.ParameterError),
        (dict(cells=0), sl.ParameterError),
        (dict(axes=("c",)), sl.ParameterError),
        (dict(axes=("q",)), sl.ParameterError),
        (dict(mode="cubic"), sl.ParameterError),
        (dict(min_confidence=0.5), sl.ParameterError),
        (dict(cells=(9, 1)), sl.ShapeError),
    ],
)
def test_make_grid_errors(kw, err):
    args = dict(labels=[0, 1, 2, 3])
    args.update(kw)
    with pytest.raises(err):
        make_grid(pool(4), **args)


# ---------------------------------------------------------------------------- the score
def test_score_is_positive_mass_share():
    grid = make_grid(pool(4), [0, 1, 2, 3])
    m = grid.masks.to(D)[:, None]  # (4, 1, 8, 8)
    assert grid_pointing_game(m, grid).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert grid_pointing_game(m.roll(1, 0), grid).tolist() == [0.0, 0.0, 0.0, 0.0]
    uniform = torch.ones(4, 3, 8, 8, dtype=D)
    torch.testing.assert_close(grid_pointing_game(uniform, grid), torch.full((4,), 0.25, dtype=D))
    # negative mass elsewhere is ignored; half of the positive mass inside cell 0
    a = -torch.ones(1, 1, 8, 8, dtype=D)
    a[0, 0, 0, 0] = 2.0
    a[0, 0, 7, 7] = 2.0
    assert grid_pointing_game(a, grid, cells=[0]).tolist() == [0.5]
    assert grid_pointing_game(-uniform, grid).tolist() == [0.0] * 4  # no positive mass: 0
    tiny = torch.zeros(1, 1, 8, 8, dtype=D)
    tiny[0, 0, 0, 0] = 1e-8
    assert grid_pointing_game(tiny, grid, cells=[0]).tolist() == [0.0]  # total <= 1e-7


def test_channel_reduction_and_upsampling():
    grid = make_grid(pool(4), [0, 1, 2, 3])
    a = torch.zeros(1, 2, 8, 8, dtype=D)
    a[0, 0, :4, :4] = 1.0  # channel 0: cell 0
    a[0, 1, :4, :4] = -1.0  # channel 1 cancels it
    a[0, 1, 4:, 4:] = 1.0  # and points at cell 3
    assert grid_pointing_game(a, grid, cells=[0], reduce="sum").tolist() == [0.0]
    assert grid_pointing_game(a, grid, cells=[0], reduce="positive").tolist() == [0.5]
    assert grid_pointing_game(a, grid, cells=[0], reduce="abs").tolist() == [2 / 3]
    coarse = torch.ones(2, 1, 2, 2, dtype=D)  # a CAM-sized map, bilinearly upsampled
    torch.testing.assert_close(
        grid_pointing_game(coarse, grid, cells=[0, 3]), torch.full((2,), 0.25, dtype=D)
    )
    one = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=D)
    up = F.interpolate(one, size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    expect = up[:4, :4].sum() / up.sum()
    torch.testing.assert_close(grid_pointing_game(one, grid, cells=[0])[0], expect)
    assert 0.5 < float(expect) < 1.0
    with pytest.raises(sl.ShapeError, match="cells"):
        grid_pointing_game(torch.ones(3, 1, 8, 8), grid)
    with pytest.raises(sl.ParameterError, match="cell index"):
        grid_pointing_game(torch.ones(1, 1, 8, 8), grid, cells=[4])
    with pytest.raises(sl.ParameterError, match="reduce"):
        grid_pointing_game(torch.ones(4, 1, 8, 8), grid, reduce="max")


def test_expand_feeds_explainers_and_class_relevant():
    grid = make_grid(pool(8, (1, 6)), [0, 1, 2, 3] * 2)
    batch = grid.expand()
    assert batch.inputs.shape == (8, 1, 24) and batch.targets.tolist() == [0, 1, 2, 3] * 2
    assert batch.cells.tolist() == [0, 1, 2, 3] * 2 and batch.classes.shape == (8, 4)
    assert isinstance(grid, Grid) and len(grid) == 2 and grid.n_cells == 4


# ---------------------------------------------------------------------------- class-relevant maps
@pytest.fixture(scope="module")
def burst_task():
    with torch.random.fork_rng(devices=[]):
        model, acc = train_cnn(seed=0)
    x, y = burst_data(8, torch.Generator().manual_seed(5))
    grid = make_grid(x, y, cells=4, generator=torch.Generator().manual_seed(1))
    return model, acc, grid


def pointing(explainer, grid):
    batch = grid.expand()
    return float(grid_pointing_game(explainer.explain(batch.inputs, batch.targets), grid).mean())


@pytest.mark.parametrize("method", ["Gradient", "IntegratedGradients"])
def test_class_relevant_maps_point_better_on_a_time_grid(burst_task, method):
    model, acc, grid = burst_task
    assert acc >= 0.95  # the model has learned the four bursts
    base = sl.Gradient(model) if method == "Gradient" else sl.IntegratedGradients(model, n_steps=16)
    batch = grid.expand()
    plain = pointing(base, grid)
    relevant = pointing(sl.ClassRelevant(base, classes=batch.classes), grid)
    print(
        f"\ntime-grid pointing game ({len(grid)} grids x 4 cells, chance 0.25): {method} {plain:.3f} -> "
        f"ClassRelevant({method}) {relevant:.3f}"
    )
    # seeds 0-3 of the task: Gradient +0.01 to +0.05, IG +0.08 to +0.16 (benchmarks/bench_classrel.py)
    assert relevant > plain + (0.01 if method == "Gradient" else 0.05)
