"""Focus, localisation AUC, top-k intersection and attribution localisation: analytic cases,
direct references, grids, batch invariance, classes and errors."""

from __future__ import annotations

import pytest
import torch

from salience.errors import ParameterError, ShapeError
from salience.metrics import (
    energy_pointing_game,
    evaluate,
    make_grid,
    relevance_mass,
    relevance_rank_accuracy,
)
from salience.metrics import localisation_more as L


def _batch(seed=0, shape=(5, 1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape, generator=g) > 0.6
    return a, mask


def _quadrants(h=6, w=8):
    cells = torch.zeros(4, h, w, dtype=torch.bool)
    cells[0, : h // 2, : w // 2] = cells[1, : h // 2, w // 2 :] = True
    cells[2, h // 2 :, : w // 2] = cells[3, h // 2 :, w // 2 :] = True
    return cells


# ---------------------------------------------------------------------------- focus
def test_focus_analytic_on_a_mosaic():
    cells = _quadrants()
    positions = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 1]])
    a = torch.zeros(3, 1, 6, 8, dtype=torch.float64)
    a[0, 0, :3] = 1.0  # all mass on the top row of cells, the class's: 1
    a[1] = 1.0  # even: 2 of 4 cells
    a[2, 0, :3] = 2.0  # all on the other class's cells
    a[2, 0, 3:] = -5.0  # negative evidence is not counted
    torch.testing.assert_close(
        L.focus(a, positions, grid=cells), torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    )


def test_focus_with_a_grid_equals_the_region_mask_and_energy_pointing_game():
    cells = _quadrants()
    positions = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0]])
    a, _ = _batch(1, shape=(2, 3, 6, 8))
    region = (positions.double() @ cells.flatten(1).double()).reshape(2, 1, 6, 8) > 0
    ours = L.focus(a, positions, grid=cells)
    torch.testing.assert_close(ours, L.focus(a, region))
    torch.testing.assert_close(ours, energy_pointing_game(a, region))
    pos = a.clamp_min(0)
    torch.testing.assert_close(ours, (pos * region).flatten(1).sum(1) / pos.flatten(1).sum(1))


def test_focus_on_make_grid_composites():
    x = torch.randn(8, 1, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grid = make_grid(x, [0, 0, 1, 1, 0, 0, 1, 1], cells=4, distinct=False)  # classes repeat
    target = torch.tensor([0, 1])  # explain class 0 on composite 0, class 1 on composite 1
    positions = grid.labels == target[:, None]
    a = torch.zeros_like(grid.inputs)
    a[0, :, :16] = 1.0  # the first cell holds class 0
    a[1, :, 16:32] = 1.0  # the second cell holds class 0, not 1
    expected = torch.tensor([1.0 if bool(positions[0, 0]) else 0.0, 1.0 if bool(positions[1, 1]) else 0.0])
    torch.testing.assert_close(L.focus(a, positions, grid=grid), expected.double())


def test_focus_nan_without_positive_mass():
    cells = _quadrants()
    a = -torch.ones(1, 1, 6, 8, dtype=torch.float64)
    assert torch.isnan(L.focus(a, torch.tensor([[1, 0, 0, 0]]), grid=cells)).all()


# ---------------------------------------------------------------------------- AUC
def _auc_reference(a, m):
    out = []
    for x, y in zip(a.flatten(1), m.flatten(1), strict=True):
        p, n = x[y], x[~y]
        diff = p[:, None] - n[None, :]
        out.append(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
    return torch.stack(out)


def test_localisation_auc_matches_pairwise_reference_with_ties():
    a, m = _batch(3)
    a = a.round()  # many ties
    torch.testing.assert_close(L.localisation_auc(a, m), _auc_reference(a, m))


def test_localisation_auc_perfect_inverted_constant():
    m = torch.zeros(3, 1, 10, dtype=torch.bool)
    m[:, :, :4] = True
    a = m.double()
    torch.testing.assert_close(
        L.localisation_auc(torch.stack([a[0], -a[1], 0 * a[2]]), m),
        torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64),
    )
    full = torch.ones_like(m)
    assert torch.isnan(L.localisation_auc(a, full)).all()
    assert torch.isnan(L.localisation_auc(a, ~full)).all()


# ---------------------------------------------------------------------------- top-k intersection
def test_top_k_intersection_analytic():
    a = torch.tensor([[[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]]])
    m = torch.tensor([[[1, 0, 1, 0, 0, 0]]], dtype=torch.bool)
    torch.testing.assert_close(L.top_k_intersection(a, m, k=2), torch.tensor([0.5]))
    torch.testing.assert_close(L.top_k_intersection(a, m, k=3), torch.tensor([2 / 3]))
    torch.testing.assert_close(
        L.top_k_intersection(a, m, k=2, concept_influence=True), torch.tensor([0.5 * 6 / 2])
    )
    torch.testing.assert_close(L.top_k_intersection(a, m, k=0.5), torch.tensor([2 / 3]))


def test_top_k_intersection_with_k_mask_size_is_rank_accuracy():
    a, m = _batch(4, shape=(1, 1, 8, 8))
    k = int(m.sum())
    torch.testing.assert_close(L.top_k_intersection(a, m, k=k), relevance_rank_accuracy(a, m))


# ---------------------------------------------------------------------------- attribution localisation
def test_attribution_localisation_definitions():
    a, m = _batch(5)
    torch.testing.assert_close(L.attribution_localisation(a, m), energy_pointing_game(a, m))
    signed = relevance_mass(a, m)
    ours = L.attribution_localisation(a, m, positive=False)
    torch.testing.assert_close(ours, torch.where(signed > 1, float("nan"), signed), equal_nan=True)
    even = torch.ones(2, 1, 10, dtype=torch.float64)
    mask = torch.zeros(2, 1, 10, dtype=torch.bool)
    mask[0, 0, :2] = True
    mask[1, 0, :5] = True
    torch.testing.assert_close(
        L.attribution_localisation(even, mask), torch.tensor([0.2, 0.5], dtype=torch.float64)
    )
    # weighted: an even map scores 1 whatever the mask's size
    torch.testing.assert_close(
        L.attribution_localisation(even, mask, weighted=True), torch.ones(2, dtype=torch.float64)
    )


def test_ratio_above_one_is_nan():
    a = torch.tensor([[[2.0, -1.0]]], dtype=torch.float64)
    m = torch.tensor([[[True, False]]])
    assert torch.isnan(L.attribution_localisation(a, m, positive=False)).all()


# ---------------------------------------------------------------------------- common
FUNCS = [
    lambda a, m: L.localisation_auc(a, m),
    lambda a, m: L.top_k_intersection(a, m, k=7),
    lambda a, m: L.attribution_localisation(a, m),
    lambda a, m: L.focus(a, m),
]


def test_empty_mask_nan_and_batch_invariance():
    a, m = _batch(6)
    m[1] = False
    for f in FUNCS:
        out = f(a, m)
        assert torch.isnan(out[1]), f
        single = torch.cat([f(a[i : i + 1], m[i : i + 1]) for i in range(5)])
        torch.testing.assert_close(out, single, equal_nan=True)


def test_classes_run_in_evaluate_and_have_reprs():
    a, m = _batch(7, shape=(4, 1, 6, 8))
    cells = _quadrants()
    x = torch.randn(4, 1, 6, 8, dtype=torch.float64)
    metrics = [
        L.LocalisationAUC(),
        L.TopKIntersection(k=5),
        L.AttributionLocalisation(weighted=True),
        L.Focus(),
    ]
    for metric in metrics:
        assert metric.requires_mask and metric.higher_is_better
        torch.testing.assert_close(metric(None, x, a, mask=m), FUNCS_BY_NAME[metric.name](metric, a, m))
    assert repr(L.TopKIntersection(k=5)) == "TopKIntersection(k=5, concept_influence=False)"
    positions = torch.tensor([[1, 0, 0, 1]] * 4)
    torch.testing.assert_close(
        L.Focus(grid=cells)(None, x, a, mask=positions), L.focus(a, positions, grid=cells)
    )

    def explain(x, target):
        return a

    table = evaluate(
        {"fixed": explain}, metrics, lambda t: t.flatten(1)[:, :3], (x, torch.zeros(4, dtype=torch.long), m)
    )
    assert len(table) == len(metrics)
    row = table.get("fixed", "LocalisationAUC")
    assert row["mean"] == pytest.approx(float(L.localisation_auc(a, m).mean())) and row["n"] == 4


FUNCS_BY_NAME = {
    "LocalisationAUC": lambda me, a, m: L.localisation_auc(a, m),
    "TopKIntersection": lambda me, a, m: L.top_k_intersection(a, m, k=me.k),
    "AttributionLocalisation": lambda me, a, m: L.attribution_localisation(a, m, weighted=me.weighted),
    "Focus": lambda me, a, m: L.focus(a, m),
}


def test_errors():
    a, m = _batch(8)
    with pytest.raises(ParameterError, match="'k'.*top_k_intersection"):
        L.top_k_intersection(a, m, k=65)
    with pytest.raises(ParameterError, match="'k'"):
        L.TopKIntersection(k=0)
    with pytest.raises(ParameterError, match="'concept_influence'"):
        L.top_k_intersection(a, m, concept_influence=1)
    with pytest.raises(ParameterError, match="'weighted'"):
        L.AttributionLocalisation(weighted="yes")
    with pytest.raises(ShapeError, match="focus"):
        L.focus(a, torch.ones(5, 3), grid=_quadrants(8, 8))
    with pytest.raises(ShapeError, match="focus"):
        L.focus(a, torch.ones(5, 4), grid=_quadrants(6, 8))
    with pytest.raises(ParameterError, match="mask"):
        L.LocalisationAUC()(None, a, a)
    with pytest.raises(ParameterError, match="grid"):
        L.Focus(grid=[1, 2])
