"""Domains, sanity checks on a trained model, the evaluation table, classes and errors."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

import salience as sl
from salience import metrics as M
from toy_models import cnn, make_input


# ---------------------------------------------------------------------------- domain stand-ins
class Identity:
    def forward(self, x):
        return x.clone()

    def inverse(self, z):
        return z.clone()


class FFT:
    """rfft along time with an explicit re/im axis: (B, C, T) -> (B, C, F, 2)."""

    def __init__(self, n, keep=None):
        self.n, self.keep = n, keep

    def forward(self, x):
        z = torch.view_as_real(torch.fft.rfft(x, dim=-1))
        if self.keep is not None:  # a lossy domain: drop the highest bins
            z = z[..., : self.keep, :]
        return z

    def inverse(self, z):
        c = torch.view_as_complex(z.contiguous())
        return torch.fft.irfft(c, n=self.n, dim=-1)


def score(model, row, k):
    with torch.no_grad():
        return float(model(row[None])[0, k])


def test_identity_domain_changes_nothing():
    model = cnn(1)
    x = make_input("signal")
    a = sl.Gradient(model).explain(x, 1)
    for fn in (M.deletion_curve, M.insertion_curve):
        plain = fn(model, x, a, steps=6, substrate=0.0, progress=False)
        dom = fn(model, x, a, steps=6, substrate=0.0, domain=Identity(), progress=False)
        torch.testing.assert_close(dom, plain)


@pytest.mark.parametrize("keep", [None, 7], ids=["exact", "lossy"])
def test_fourier_deletion_removes_coefficients_through_the_inverse(keep):
    model = cnn(1)
    x = make_input("signal", batch=2)
    dom = FFT(20, keep)
    z = dom.forward(x)
    a = torch.randn(z.shape[0], 1, z.shape[2], 1, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    k = torch.tensor([2, 0])
    ours = M.deletion_curve(model, x, a, k, step=2, domain=dom, progress=False)
    residual = x - dom.inverse(z)
    n = a[0].numel()
    for b in range(2):
        order = sorted(range(n), key=lambda i: (-float(a[b].flatten()[i]), i))
        for s, c in enumerate(range(0, n + 2, 2)):
            zr = z[b].clone()
            zr[:, order[: min(c, n)], :] = 0.0  # unit = a frequency bin (all channels, re and im)
            xr = dom.inverse(zr[None])[0] + residual[b]
            assert float(ours[b, s]) == pytest.approx(score(model, xr, int(k[b])), rel=1e-9, abs=1e-12)
    # the first state is the input itself, also for a lossy domain (the residual is kept)
    assert float(ours[0, 0]) == pytest.approx(score(model, x[0], 2), rel=1e-12)


def test_attribution_domain_is_used_and_insertion_starts_from_zero_coefficients():
    model = cnn(1)
    x = make_input("signal")
    dom = FFT(20)
    z = dom.forward(x)
    values = torch.randn_like(z)
    att = sl.Attribution(
        values=values,
        target=torch.tensor([1, 1]),
        scores=torch.zeros(2),
        method="m",
        layout=sl.Layout("b c f r"),
        domain=dom,
    )
    via_attr = M.insertion_curve(model, x, att, steps=4, progress=False)
    explicit = M.insertion_curve(model, x, values, 1, steps=4, domain=dom, substrate=0.0, progress=False)
    torch.testing.assert_close(via_attr, explicit)
    zero = score(model, torch.zeros(3, 20, dtype=x.dtype), 1)
    assert float(via_attr[0, 0]) == pytest.approx(zero, rel=1e-9)


class BoundFFT(FFT):
    """The salience Domain protocol: bind(x, layout), inverse(z, index), output_layout."""

    def __init__(self, n):
        super().__init__(n)
        self.bound_to = None

    def bind(self, x, layout=None):
        out = copy.copy(self)
        out.bound_to = x.shape[0]
        return out

    def inverse(self, z, index=None):
        assert self.bound_to is not None and index is not None and index.shape == (z.shape[0],)
        return super().inverse(z)

    def output_layout(self, layout):
        return sl.Layout("b c f r")


def test_reduced_domain_attribution_removes_whole_bins():
    """An InDomain report sums re/im per bin ("b c f"): deleting a bin zeroes both parts."""
    model = cnn(1)
    x = make_input("signal")
    dom = BoundFFT(20)
    bins = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    att = sl.Attribution(
        values=bins,
        target=torch.tensor([0, 3]),
        scores=torch.zeros(2),
        method="m",
        layout=sl.Layout("b c f"),
        domain=dom,
    )
    ours = M.deletion_curve(model, x, att, steps=5, progress=False)
    ref = M.deletion_curve(
        model, x, bins[..., None], torch.tensor([0, 3]), steps=5, domain=FFT(20), progress=False
    )
    torch.testing.assert_close(ours, ref)
    bad = sl.Attribution(
        values=bins,
        target=torch.tensor([0, 3]),
        scores=torch.zeros(2),
        method="m",
        layout=sl.Layout("b c k"),
        domain=dom,
    )
    with pytest.raises(sl.ShapeError, match="reduce=False"):
        M.deletion_curve(model, x, bad, steps=5, progress=False)


def test_completeness_and_infidelity_in_a_domain():
    from toy_models import Linear

    w = torch.randn(2, 3, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = Linear(w).eval()
    x = make_input("signal")
    dom = Identity()
    exact = x * w[1]
    gap = M.completeness_gap(model, x, exact, 1, domain=dom)
    torch.testing.assert_close(gap, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    inf = M.infidelity(model, x, w[1].expand_as(x), 1, domain=dom, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(inf, torch.zeros(2, dtype=torch.float64), atol=1e-20, rtol=0)


# ---------------------------------------------------------------------------- sanity: randomisation
class EdgeDetector(sl.Explainer):
    """A data-only 'explainer': |x[t+1] - x[t]|, whatever the model."""

    def attribute(self, x, score):
        d = (x[..., 1:] - x[..., :-1]).abs()
        return torch.cat([d, torch.zeros_like(x[..., :1])], -1)


@functools.lru_cache(maxsize=1)
def _trained_model():
    g = torch.Generator().manual_seed(0)
    n, t = 96, 32
    y = torch.randint(0, 2, (n,), generator=g)
    # class = sign of a bump at a random position (the CNN pools globally)
    pos = torch.randint(4, t - 4, (n,), generator=g).double()
    grid = torch.arange(t).double()
    bump = torch.exp(-0.5 * ((grid[None] - pos[:, None]) / 2.0) ** 2) * (2.0 * y[:, None] - 1)
    x = 0.3 * torch.randn(n, 1, t, generator=g, dtype=torch.float64) + 2 * bump[:, None]
    model = cnn(1, in_channels=1, n_classes=2, seed=1).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(80):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    acc = float((model(x).argmax(1) == y).double().mean())
    assert acc > 0.9, acc
    return model, x[:8], y[:8]


def test_model_randomisation_flags_edge_detector_not_gradient():
    model, x, y = _trained_model()
    before = copy.deepcopy(model.state_dict())
    rng = torch.random.get_rng_state()
    layers = M.randomisation_layers(model)
    assert layers == ["6", "2", "0"]  # output side first
    grad = M.model_randomisation(sl.Gradient(model), x, y, generator=torch.Generator().manual_seed(0))
    edge = M.model_randomisation(EdgeDetector(model), x, y, generator=torch.Generator().manual_seed(0))
    assert grad.shape == edge.shape == (8, 3)
    torch.testing.assert_close(edge, torch.ones_like(edge))  # flagged: insensitive to the model
    # not flagged: after the whole cascade the maps no longer resemble the trained model's
    # (signed Spearman; on this 2-conv GAP model they can even anti-correlate mid-cascade,
    # so the check is "far from 1", and also holds for |maps|)
    assert float(grad[:, -1].mean()) < 0.5
    grad_abs = M.model_randomisation(
        sl.Gradient(model), x, y, use_abs=True, generator=torch.Generator().manual_seed(0)
    )
    assert float(grad_abs[:, -1].mean()) < 0.5
    # the metric class reports the similarity after the whole cascade
    metric = M.ModelRandomisation(generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(metric(model, x, None, y, explainer=sl.Gradient(model)), grad[:, -1])
    # never the user's model, never the global RNG
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert torch.equal(rng, torch.random.get_rng_state())


def test_random_logit_flags_class_insensitive_explainer():
    model, x, y = _trained_model()
    edge = M.random_logit(EdgeDetector(model), x, y, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(edge, torch.ones_like(edge))
    grad = M.RandomLogit(generator=torch.Generator().manual_seed(0))(
        model, x, None, y, explainer=sl.Gradient(model)
    )
    assert grad.shape == (8,) and float(grad.mean()) < 0.9


# ---------------------------------------------------------------------------- evaluate table
def test_evaluate_table_matches_direct_calls():
    model = cnn(1)
    x = make_input("signal", batch=4)
    y = torch.tensor([0, 1, 2, 3])
    mask = torch.zeros(4, 1, 20, dtype=torch.bool)
    mask[:, :, 4:9] = True
    mask[3] = False  # NaN for this sample: excluded from n
    data = [(x[:2], y[:2], mask[:2]), (x[2:], y[2:], mask[2:])]
    explainers = {"grad": sl.Gradient(model), "ixg": sl.InputXGradient(model)}
    metrics = {
        "del": M.Deletion(steps=5, progress=False),
        "sparse": M.Sparseness(),
        "mass": M.RelevanceMass(),
    }
    table = M.evaluate(explainers, metrics, model, data)
    assert len(table) == 6
    assert [(r["method"], r["metric"]) for r in table][:3] == [
        ("grad", "del"),
        ("grad", "sparse"),
        ("grad", "mass"),
    ]
    for ename, ex in explainers.items():
        att = ex.explain(x, y)
        direct = {
            "del": M.auc(M.deletion_curve(model, x, att, y, steps=5, progress=False)),
            "sparse": M.sparseness(att),
            "mass": M.relevance_mass(att, mask),
        }
        for mname, v in direct.items():
            v = v[torch.isfinite(v)]
            row = table.get(ename, mname)
            assert row["n"] == v.numel() == (3 if mname == "mass" else 4)
            assert row["mean"] == pytest.approx(float(v.mean()), rel=1e-10)
            assert row["std"] == pytest.approx(float(v.std()), rel=1e-10)
    assert table.get("grad", "del")["higher_is_better"] is False
    md = table.to_markdown().splitlines()
    assert md[0] == "| method | metric | mean | std | n | higher_is_better |"
    assert len(md) == 8


def test_evaluate_with_list_inputs_and_robustness_metric():
    model = cnn(1)
    x = make_input("signal")
    table = M.evaluate(
        [sl.Gradient(model)],
        [M.MaxSensitivity(n_perturbations=2, generator=torch.Generator().manual_seed(0)), M.Complexity()],
        model,
        x,
    )
    assert [r["metric"] for r in table] == ["MaxSensitivity", "Complexity"]
    assert all(r["n"] == 2 and r["method"] == "Gradient" for r in table)


# ---------------------------------------------------------------------------- classes and errors
def test_class_flags():
    assert M.Deletion.higher_is_better is False and M.Insertion.higher_is_better is True
    assert M.Deletion.requires_model and not M.Sparseness.requires_model
    assert M.PointingGame.requires_mask and M.MaxSensitivity.requires_explainer
    assert M.Infidelity.is_stochastic and not M.Deletion().is_stochastic


def test_classes_equal_functions():
    model = cnn(2)
    x = make_input("image")
    att = sl.Gradient(model).explain(x)
    torch.testing.assert_close(
        M.Insertion(step=13, progress=False)(model, x, att),
        M.auc(M.insertion_curve(model, x, att, step=13, progress=False)),
    )
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    torch.testing.assert_close(
        M.PointingGame(tolerance=2)(None, x, att, mask=mask), M.pointing_game(att, mask, tolerance=2)
    )


def test_errors():
    model = cnn(1)
    x = make_input("signal")
    a = torch.randn_like(x)
    with pytest.raises(sl.ParameterError, match="not both"):
        M.deletion_curve(model, x, a, 1, step=2, steps=3)
    with pytest.raises(sl.ParameterError, match="substrate"):
        M.deletion_curve(model, x, a, 1, substrate=object())
    with pytest.raises(sl.ShapeError, match="broadcast"):
        M.deletion_curve(model, x, a[..., :5], 1)
    with pytest.raises(sl.ParameterError, match="mask"):
        M.PointingGame()(model, x, a)
    with pytest.raises(sl.ParameterError, match="explainer"):
        M.MaxSensitivity()(model, x, a)
    with pytest.raises(sl.ParameterError, match="q"):
        M.top_q_iou(a, a > 0, q=0)
    with pytest.raises(sl.ParameterError, match="mask"):
        M.evaluate([sl.Gradient(model)], [M.PointingGame()], model, x)
    with pytest.raises(sl.ParameterError, match="nn.Module"):
        M.model_randomisation(sl.Gradient(lambda t: t.flatten(1)[:, :4]), x)


# ---------------------------------------------------------------------------- no side effects
def _all_metrics():
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return [
        M.Deletion(step=7, progress=False),
        M.Insertion(steps=4, progress=False),
        M.Deletion(steps=3, substrate=M.NoisyLinearImputation(generator=g()), progress=False),
        M.FaithfulnessCorrelation(n_runs=4, subset_size=5, generator=g()),
        M.Infidelity(n_perturbations=3, generator=g()),
        M.MaxSensitivity(n_perturbations=2, generator=g()),
        M.AvgSensitivity(n_perturbations=2, generator=g()),
        M.Sparseness(),
        M.Complexity(),
        M.CompletenessGap(),
        M.ModelRandomisation(generator=g()),
        M.RandomLogit(generator=g()),
        M.PointingGame(tolerance=1.0),
        M.EnergyPointingGame(),
        M.RelevanceMass(),
        M.RelevanceRankAccuracy(),
        M.TopQIoU(q=0.2),
    ]


@pytest.mark.parametrize("metric", _all_metrics(), ids=lambda m: m.name)
def test_metric_contract(metric):
    model = cnn(1)
    x = make_input("signal", batch=3)
    x0 = x.clone()
    mask = torch.zeros(3, 1, 20, dtype=torch.bool)
    mask[..., 5:9] = True
    explainer = sl.Gradient(model)
    att = explainer.explain(x, torch.tensor([0, 1, 2]))
    state = copy.deepcopy(model.state_dict())
    rng = torch.random.get_rng_state()
    out = metric(model, x, att, None, explainer=explainer, mask=mask)
    assert out.shape == (3,) and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, x0)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert torch.equal(rng, torch.random.get_rng_state())
    if metric.is_stochastic and hasattr(metric, "generator"):
        assert metric.generator is not None
