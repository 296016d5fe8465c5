"""Metric memory bounds and edge cases: ROAD's imputation tolerance per dtype, bounded rows per
model call in infidelity and sensitivity, the GridPointingGame class through evaluate, validated
flags, relevance mass on a zero sum and faithfulness_correlation's default subset size."""

from __future__ import annotations

import pytest
import torch

import salience as sl
from salience import metrics as M
from salience.errors import ParameterError, ShapeError
from toy_models import cnn, make_input


class RowCounter(torch.nn.Module):
    """Wraps a model; records the number of rows of every call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(x.shape[0]))
        return self.model(x)


# ---------------------------------------------------------------------------- 1. ROAD tolerance
def _cg_iterations(monkeypatch, x: torch.Tensor, keep: torch.Tensor) -> int:
    calls = [0]
    shift = M.NoisyLinearImputation._shift

    def counting(t, o):
        calls[0] += 1
        return shift(t, o)

    monkeypatch.setattr(M.NoisyLinearImputation, "_shift", staticmethod(counting))
    M.NoisyLinearImputation(noise=0.0)(x, "b c t", keep)
    monkeypatch.setattr(M.NoisyLinearImputation, "_shift", staticmethod(shift))
    return (calls[0] - 4) // 2  # 2 neighbours: 4 shifts to set up, 2 per iteration


def test_noisy_linear_imputation_tolerance_is_dtype_aware(monkeypatch):
    x = torch.randn(2, 2, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keep = torch.ones(2, 1, 300, dtype=torch.float64)
    keep[..., 5:] = 0  # a long extrapolation: float32 round-off stalls far above tol=1e-10
    it64 = _cg_iterations(monkeypatch, x, keep)
    it32 = _cg_iterations(monkeypatch, x.float(), keep.float())
    assert it32 <= 1.2 * it64 + 5  # was ~2x (the residual never reached 1e-10 in float32)
    sub = M.NoisyLinearImputation()
    assert sub.effective_tol(torch.float64) == 1e-10
    assert sub.effective_tol(torch.float32) == pytest.approx(10 * torch.finfo(torch.float32).eps)
    out32 = M.NoisyLinearImputation(noise=0.0)(x.float(), "b c t", keep.float())
    out64 = M.NoisyLinearImputation(noise=0.0)(x, "b c t", keep)
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=5e-3)


# ---------------------------------------------------------------------------- 2. bounded memory
def test_infidelity_rows_per_model_call_are_bounded_and_match_a_loop():
    model = RowCounter(cnn(1)).double().eval()
    x = make_input("signal", batch=3)
    a = torch.randn_like(x)
    k = torch.tensor([0, 2, 1])
    n, bs, std = 7, 4, 0.1
    ours = M.infidelity(
        model, x, a, k, n_perturbations=n, std=std, batch_size=bs, generator=torch.Generator().manual_seed(5)
    )
    assert max(model.rows) <= bs and sum(model.rows) >= 3 * n
    # documented draw order: row i * n + j draws std * randn(S), row after row
    g = torch.Generator().manual_seed(5)
    ref = []
    with torch.no_grad():
        for i in range(3):
            f0 = float(model.model(x[i : i + 1])[0, k[i]])
            terms = []
            for _ in range(n):
                p = torch.randn(x.shape[1:], generator=g, dtype=x.dtype) * std
                df = f0 - float(model.model((x[i] - p)[None])[0, k[i]])
                terms.append((float((p * a[i]).sum()) - df) ** 2)
            ref.append(sum(terms) / n)
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=x.dtype))
    # independent of the chunking
    again = M.infidelity(
        model, x, a, k, n_perturbations=n, std=std, batch_size=64, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(ours, again, rtol=1e-12, atol=1e-14)


def test_infidelity_custom_perturbation_is_called_per_chunk():
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn_like(x)
    pert = torch.randn((2, 5, *x.shape[1:]), generator=torch.Generator().manual_seed(1), dtype=x.dtype) * 0.1
    seen = []

    def fn(xs, k, g):
        seen.append((xs.shape[0], k))
        return torch.randn((xs.shape[0], k, *xs.shape[1:]), generator=g, dtype=xs.dtype) * 0.1

    M.infidelity(
        model,
        x,
        a,
        1,
        n_perturbations=5,
        perturbation=fn,
        batch_size=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert all(b == 1 and k <= 3 for b, k in seen) and sum(k for _, k in seen) == 10
    full = M.infidelity(model, x, a, 1, n_perturbations=5, perturbation=pert)
    chunked = M.infidelity(model, x, a, 1, n_perturbations=5, perturbation=pert, batch_size=2)
    torch.testing.assert_close(full, chunked, rtol=1e-12, atol=1e-14)
    with pytest.raises(ShapeError, match="perturbation"):
        M.infidelity(model, x, a, 1, n_perturbations=4, perturbation=pert)
    with pytest.raises(ShapeError, match="perturbation"):
        M.infidelity(model, x, a, 1, n_perturbations=5, perturbation=lambda xs, k, g: pert)


@pytest.mark.parametrize("fn", [M.max_sensitivity, M.avg_sensitivity])
def test_sensitivity_rows_per_call_are_bounded_and_draws_keep_their_order(fn):
    model = RowCounter(cnn(1)).double().eval()
    x = make_input("signal", batch=3)
    n = 5
    kw = dict(n_perturbations=n, radius=0.05, progress=False)
    expl = sl.Gradient(model, batch_size=2)
    per_call = []
    attribute = expl.attribute

    def recording(xp, score):
        per_call.append(int(xp.shape[0]))
        return attribute(xp, score)

    expl.attribute = recording  # the rows re-explained per call (3 samples, batch_size 2)
    small = fn(expl, x, 1, generator=torch.Generator().manual_seed(4), **kw)
    assert max(per_call[1:]) <= 2 and sum(per_call[1:]) == 3 * n  # the first call explains x itself
    assert max(model.rows) <= 2
    big = fn(sl.Gradient(model, batch_size=64), x, 1, generator=torch.Generator().manual_seed(4), **kw)
    torch.testing.assert_close(small, big, rtol=1e-12, atol=1e-12)
    # a plain callable is chunked by the default batch size and sees per-row targets
    targets = []

    def explain(xx, t):
        targets.append(t)
        return sl.Gradient(model).explain(xx, t).values

    plain = fn(explain, x, torch.tensor([1, 0, 2]), generator=torch.Generator().manual_seed(4), **kw)
    ref = fn(sl.Gradient(model), x, torch.tensor([1, 0, 2]), generator=torch.Generator().manual_seed(4), **kw)
    torch.testing.assert_close(plain, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(targets[-1], torch.tensor([1, 0, 2]).repeat_interleave(n))


# ---------------------------------------------------------------------------- 3. GridPointingGame
def test_grid_pointing_game_class_runs_through_evaluate():
    model = cnn(1)
    pool = make_input("signal", batch=8)
    grid = M.make_grid(pool, [0, 1, 2, 3, 0, 1, 2, 3], cells=4)
    batch = grid.expand()
    masks = grid.masks[batch.cells]
    expl = sl.Gradient(model)
    table = M.evaluate(
        {"grad": expl}, {"gpg": M.GridPointingGame()}, model, (batch.inputs, batch.targets, masks)
    )
    att = expl.explain(batch.inputs, batch.targets)
    want = M.grid_pointing_game(att, grid)
    row = table.get("grad", "gpg")
    assert row["n"] == want.numel() and row["higher_is_better"] is True
    assert row["mean"] == pytest.approx(float(want.double().mean()), rel=1e-6)
    # masks with the maps' ndim (M, 1, *S) and 0/1 values are accepted too
    alt = M.GridPointingGame()(model, batch.inputs, att, batch.targets, mask=masks[:, None].float())
    torch.testing.assert_close(alt, want)
    assert M.GridPointingGame.requires_mask
    with pytest.raises(ParameterError, match="mask"):
        M.evaluate({"grad": expl}, [M.GridPointingGame()], model, (batch.inputs, batch.targets))
    with pytest.raises(ParameterError, match="reduce"):
        M.GridPointingGame(reduce="mean")
    with pytest.raises(ShapeError, match="one cell mask per map"):
        M.GridPointingGame()(model, batch.inputs, att, batch.targets, mask=masks[:3])


# ---------------------------------------------------------------------------- 4. flags, zero sums
@pytest.mark.parametrize("fn", [M.deletion_curve, M.insertion_curve])
def test_curve_progress_is_validated(fn):
    model = cnn(1)
    x = make_input("signal", batch=1)
    with pytest.raises(ParameterError, match="progress"):
        fn(model, x, torch.randn_like(x), 1, steps=2, progress="no")


def test_relevance_mass_positive_is_validated():
    with pytest.raises(ParameterError, match="positive"):
        M.RelevanceMass(positive="yes")
    a, m = torch.ones(1, 1, 4), torch.ones(1, 1, 4)
    with pytest.raises(ParameterError, match="positive"):
        M.relevance_mass(a, m, positive=1)


def test_relevance_mass_of_a_zero_sum_is_nan():
    a = torch.tensor(
        [[[0.0, 0.0, 0.0, 0.0]], [[1.0, -1.0, 0.0, 0.0]], [[-1.0, -2.0, 0.0, 0.0]], [[1.0, 3.0, 0.0, 0.0]]]
    )
    m = torch.tensor([[[1, 0, 0, 0]]]).expand(4, 1, 4)
    signed = M.relevance_mass(a, m)
    assert torch.isnan(signed[:2]).all()
    torch.testing.assert_close(signed[2:], torch.tensor([1 / 3, 1 / 4]))
    pos = M.RelevanceMass(positive=True)(None, a, a, mask=m)
    assert torch.isnan(pos[[0, 2]]).all()
    torch.testing.assert_close(pos[[1, 3]], torch.tensor([1.0, 0.25]))


def test_faithfulness_correlation_default_subset_adapts_to_short_inputs():
    """The default subset is min(224, n_units // 4): a 60-unit signal removes 15 units per run;
    an explicit subset as large as the input still says what would fit."""
    model = cnn(1)
    x = make_input("signal")  # 3 x 20 = 60 units, fewer than Bhatt et al.'s 224
    attr = sl.Gradient(model).explain(x, 1)

    def run(**kw):
        return sl.metrics.faithfulness_correlation(
            model, x, attr, 1, generator=torch.Generator().manual_seed(0), progress=False, **kw
        )

    torch.testing.assert_close(run(), run(subset_size=15), rtol=0, atol=0)
    with pytest.raises(
        sl.ParameterError,
        match=r"'subset_size' .*smaller than the number of attribution units, 60.*subset_size=15",
    ):
        run(subset_size=224)
