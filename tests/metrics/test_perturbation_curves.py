"""IROF, Selectivity, region perturbation, Sensitivity-n, Monotonicity, monotonicity correlation
and Sufficiency: closed forms on a linear model, perfect vs inverted explanations, batch
invariance, bounded memory, domains and errors."""

from __future__ import annotations

import math

import pytest
import torch

import salience as sl
from salience.errors import InputError, ParameterError, ShapeError
from salience.metrics import perturbation_curves as P
from toy_models import Counting, Linear, cnn, make_input

T = 12


def _linear(seed=0, b=3, negative=None):
    """f(x) = w . x (target 0) on (B, 1, T) signals; contributions c = w * x, all positive unless
    ``negative`` (a position whose contribution is made negative in every sample)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand((2, 1, T), generator=g, dtype=torch.float64) + 0.1
    x = torch.rand((b, 1, T), generator=g, dtype=torch.float64) + 0.5
    if negative is not None:
        x[:, 0, negative] = -3.0
    model = Linear(w).eval()
    return model, x, w[0] * x, torch.zeros(b, dtype=torch.long)


def _trapz(v):
    return (v.sum(-1) - 0.5 * (v[..., 0] + v[..., -1])) if v.shape[-1] > 1 else torch.zeros(v.shape[:-1])


# ---------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("normalize", [True, False])
def test_selectivity_closed_form(normalize):
    model, x, c, y = _linear()
    got = P.selectivity(model, x, c, y, patch_size=1, normalize=normalize, progress=False)
    s = c.flatten(1).sort(1, descending=True).values
    scores = c.flatten(1).sum(1, keepdim=True) - torch.cat([torch.zeros(3, 1, dtype=s.dtype), s.cumsum(1)], 1)
    want = _trapz(scores) / T if normalize else _trapz(scores[:, 1:])
    torch.testing.assert_close(got, want)
    inv = P.selectivity(model, x, -c, y, patch_size=1, normalize=normalize, progress=False)
    assert (got < inv).all()


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_closed_form(order):
    model, x, c, y = _linear(1)
    curve = P.region_perturbation_curve(model, x, c, y, patch_size=2, order=order, progress=False)
    patches = c.reshape(3, T // 2, 2).sum(-1)
    s = patches.sort(1, descending=order == "morf").values
    torch.testing.assert_close(curve, s.cumsum(1))
    aopc = P.region_perturbation(model, x, c, y, patch_size=2, order=order, progress=False)
    torch.testing.assert_close(aopc, s.cumsum(1).sum(1) / (T // 2 + 1))
    inv = P.region_perturbation(model, x, -c, y, patch_size=2, order=order, progress=False)
    assert ((aopc > inv) if order == "morf" else (aopc < inv)).all()


def test_region_perturbation_random_order():
    """order="random": the regions of each sample removed in the order of one torch.rand(L) per
    sample from the generator (checked by hand on the linear model), independent of batch_size,
    reproducible with the same seed, and between LeRF and MoRF on average."""
    model, x, c, y = _linear(1)
    kw = dict(patch_size=2, order="random", progress=False)
    curve = P.region_perturbation_curve(model, x, c, y, generator=torch.Generator().manual_seed(5), **kw)
    g = torch.Generator().manual_seed(5)
    keys = torch.stack([torch.rand(T // 2, generator=g, dtype=torch.float64) for _ in range(3)])
    order = keys.argsort(1, descending=True)
    patches = c.reshape(3, T // 2, 2).sum(-1)
    torch.testing.assert_close(curve, patches.gather(1, order).cumsum(1))
    again = P.region_perturbation_curve(
        model, x, c, y, generator=torch.Generator().manual_seed(5), batch_size=1, **kw
    )
    torch.testing.assert_close(again, curve)
    many = torch.stack(
        [
            P.region_perturbation(model, x, c, y, generator=torch.Generator().manual_seed(s), **kw)
            for s in range(20)
        ]
    ).mean(0)
    morf = P.region_perturbation(model, x, c, y, patch_size=2, order="morf", progress=False)
    lerf = P.region_perturbation(model, x, c, y, patch_size=2, order="lerf", progress=False)
    assert ((lerf < many) & (many < morf)).all()
    m = sl.metrics.RegionPerturbation(
        patch_size=2, order="random", generator=torch.Generator().manual_seed(5)
    )
    assert m.is_stochastic and m.higher_is_better is None
    torch.testing.assert_close(m(model, x, c, y), curve.sum(1) / (T // 2 + 1))


@pytest.mark.parametrize("normalize", [True, False])
def test_irof_closed_form(normalize):
    model, x, c, y = _linear(2)
    seg = (torch.arange(T) * 4 // T).reshape(1, 1, T)
    got = P.irof(model, x, c, y, segments=seg, substrate=0.0, normalize=normalize, progress=False)
    sums = c.reshape(3, 4, 3).sum(-1)
    means = c.reshape(3, 4, 3).mean(-1)
    order = means.argsort(1, descending=True)
    f0 = c.flatten(1).sum(1, keepdim=True)
    p = 1 - sums.gather(1, order).cumsum(1) / f0
    if normalize:
        want = 1 - _trapz(torch.cat([torch.ones_like(f0), p], 1)) / 4
    else:
        want = 4 - _trapz(p)
    torch.testing.assert_close(got, want)
    inv = P.irof(model, x, -c, y, segments=seg, substrate=0.0, normalize=normalize, progress=False)
    assert (got > inv).all()


@pytest.mark.parametrize("n", [1, 3, 7])
def test_sensitivity_n_linear(n):
    model, x, c, y = _linear(3)
    kw = dict(n=n, n_runs=10, progress=False)
    got = P.sensitivity_n(model, x, c, y, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(got, torch.ones(3, dtype=torch.float64))
    inv = P.sensitivity_n(model, x, -c, y, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(inv, -torch.ones(3, dtype=torch.float64))
    # the same estimator and draws as faithfulness correlation with subset_size=n
    g = torch.Generator().manual_seed(5)
    a = torch.randn(c.shape, generator=g, dtype=torch.float64)
    m = cnn(1, in_channels=1)
    got = P.sensitivity_n(m, x, a, y, generator=torch.Generator().manual_seed(1), **kw)
    ref = sl.metrics.faithfulness_correlation(
        m, x, a, y, n_runs=10, subset_size=n, generator=torch.Generator().manual_seed(1), progress=False
    )
    torch.testing.assert_close(got, ref)


def test_monotonicity_perfect_and_inverted():
    model, x, c, y = _linear(4, negative=5)  # one negative contribution: put back first if ranked lowest
    assert P.monotonicity(model, x, c, y, progress=False).tolist() == [1.0] * 3
    assert P.monotonicity(model, x, -c, y, progress=False).tolist() == [0.0] * 3
    # the curve it checks, directly: states k = 1..T put back the k least relevant units
    order = c.flatten(1).argsort(1)
    states = c.flatten(1).gather(1, order).cumsum(1)
    assert ((states.diff(dim=1) >= 0).all(1) == torch.tensor([True] * 3)).all()


def test_monotonicity_correlation_perfect_and_inverted():
    model, x, c, y = _linear(5)
    kw = dict(substrate=0.0, n_samples=2, progress=False)
    torch.testing.assert_close(
        P.monotonicity_correlation(model, x, c, y, **kw), torch.ones(3, dtype=torch.float64)
    )
    torch.testing.assert_close(
        P.monotonicity_correlation(model, x, -c, y, **kw), -torch.ones(3, dtype=torch.float64)
    )
    # closed form with Pearson: changes (c_i / f)^2 against sums c_i (features_in_step=1)
    got = P.monotonicity_correlation(model, x, c, y, similarity="pearson", **kw)
    f0 = c.flatten(1).sum(1, keepdim=True)
    cc = c.flatten(1)
    ch = (cc / f0).square()
    want = torch.stack([torch.corrcoef(torch.stack([cc[i], ch[i]]))[0, 1] for i in range(3)])
    torch.testing.assert_close(got, want)


def test_sufficiency_perfect_and_inverted():
    w = torch.zeros((2, 1, 4), dtype=torch.float64)
    w[0, 0, 0], w[1, 0, 1] = 1.0, 1.0
    model = Linear(w)
    x = torch.tensor([[2.0, 0, 0, 0], [3.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 3.0, 0, 0]], dtype=torch.float64)[
        :, None
    ]
    perfect = x.clone()  # explanations close within each predicted class, far across
    inverted = x[[2, 3, 0, 1]]  # each sample carries the other class's explanation
    ones = torch.ones(4, dtype=torch.float64)
    torch.testing.assert_close(P.sufficiency(model, x, perfect, threshold=0.5, distance="euclidean"), ones)
    torch.testing.assert_close(P.sufficiency(model, x, inverted[[0, 2, 1, 3]], threshold=0.5), ones * 0)
    # nobody within the threshold: undefined
    assert P.sufficiency(model, x, perfect, threshold=0.0).isnan().all()


# ---------------------------------------------------------------------------- batching and memory
_CASES = {
    "irof": lambda m, x, a, y, **k: P.irof(m, x, a, y, n_segments=6, **k),
    "selectivity": lambda m, x, a, y, **k: P.selectivity(m, x, a, y, patch_size=3, **k),
    "region": lambda m, x, a, y, **k: P.region_perturbation(m, x, a, y, patch_size=3, order="lerf", **k),
    "sensitivity_n": lambda m, x, a, y, **k: P.sensitivity_n(
        m, x, a, y, n=20, n_runs=8, generator=torch.Generator().manual_seed(3), **k
    ),
    "monotonicity": lambda m, x, a, y, **k: P.monotonicity(m, x, a, y, features_in_step=20, **k),
    "mono_corr": lambda m, x, a, y, **k: P.monotonicity_correlation(
        m, x, a, y, features_in_step=40, n_samples=3, generator=torch.Generator().manual_seed(3), **k
    ),
}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_batch_invariance_and_memory(name):
    fn = _CASES[name]
    model = cnn(2)
    x = make_input("image", batch=3)
    a = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    full = fn(model, x, a, y, progress=False)
    counting = Counting(model)
    small = fn(counting, x, a, y, batch_size=5, progress=False)
    torch.testing.assert_close(small, full, equal_nan=True)
    assert max(counting.rows) <= 5 and counting.calls > 3
    if name not in ("sensitivity_n", "mono_corr"):  # the random draws run over the batch
        alone = torch.stack(
            [fn(model, x[i : i + 1], a[i : i + 1], y[i : i + 1], progress=False)[0] for i in range(3)]
        )
        torch.testing.assert_close(alone, full, equal_nan=True)
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_superpixels_cover_the_image():
    x = make_input("image", batch=2)
    lab = sl.metrics._regions.superpixels(x, sl.layout.Layout("b c h w"), 6)
    assert lab.shape == (2, 1, 8, 8) and lab.min() >= 0 and 2 <= len(lab[0].unique()) <= 9


def test_irof_over_frequency_bands():
    """In a Fourier domain IROF's segments are bands: the band the model reads, ranked first,
    removes the whole score at once."""
    n, k0 = 32, 5
    t = torch.arange(n, dtype=torch.float64)
    w = torch.cos(2 * math.pi * k0 * t / n).reshape(1, 1, n).repeat(2, 1, 1)
    model = Linear(w)
    x = 2 * w[:1].repeat(2, 1, 1) + 0.1 * torch.randn(
        (2, 1, n), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    y = torch.zeros(2, dtype=torch.long)
    bins = torch.arange(n // 2 + 1, dtype=torch.float64)
    good = (bins == k0).to(torch.float64).reshape(1, 1, -1, 1).expand(2, 1, -1, 2)
    dom = sl.domains.Fourier()
    kw = dict(n_segments=8, substrate=0.0, domain=dom, progress=False)
    high = P.irof(model, x, good, y, **kw)
    low = P.irof(model, x, -good, y, **kw)
    assert (high > 0.9).all() and (low < 0.2).all()


# ---------------------------------------------------------------------------- classes and errors
def test_classes_match_functions_and_repr():
    model = cnn(1, in_channels=1)
    _, x, c, y = _linear(6)
    metrics = [
        (P.IROF(n_segments=4, progress=False), P.irof(model, x, c, y, n_segments=4, progress=False)),
        (P.Selectivity(patch_size=2, progress=False), P.selectivity(model, x, c, y, patch_size=2, progress=False)),
        (P.RegionPerturbation(patch_size=2, order="lerf", progress=False),
         P.region_perturbation(model, x, c, y, patch_size=2, order="lerf", progress=False)),
        (P.Monotonicity(progress=False), P.monotonicity(model, x, c, y, progress=False)),
        (P.Sufficiency(threshold=0.9), P.sufficiency(model, x, c, y, threshold=0.9)),
    ]  # fmt: skip
    for metric, ref in metrics:
        torch.testing.assert_close(metric(model, x, c, y), ref, equal_nan=True)
        assert repr(metric).startswith(type(metric).__name__ + "(")
    assert P.RegionPerturbation(order="lerf").higher_is_better is False
    assert P.RegionPerturbation().higher_is_better is True
    assert (
        P.MonotonicityCorrelation().is_stochastic
        and not P.MonotonicityCorrelation(substrate=0.0).is_stochastic
    )
    metrics_ = [P.Selectivity(patch_size=2, progress=False), P.SensitivityN(n=3, n_runs=4, progress=False)]
    table = sl.metrics.evaluate([sl.Gradient(model)], metrics_, model, (x, y))
    assert len(list(table)) == 2


@pytest.mark.parametrize(
    ("call", "err", "words"),
    [
        (lambda m, x, a: P.selectivity(m, x, a, patch_size=0), ParameterError, "'patch_size'"),
        (lambda m, x, a: P.region_perturbation_curve(m, x, a, order="up"), ParameterError, "'order'"),
        (lambda m, x, a: P.irof(m, x, a, n_segments=0), ParameterError, "'n_segments'"),
        (lambda m, x, a: P.irof(m, x, a, segments=torch.zeros(2, 1, 5)), InputError, "segments"),
        (
            lambda m, x, a: P.irof(m, x, a, segments=torch.zeros(2, 1, 5, dtype=torch.long)),
            ShapeError,
            "segments",
        ),
        (lambda m, x, a: P.sensitivity_n(m, x, a, n=12), ParameterError, "'n'"),
        (lambda m, x, a: P.monotonicity(m, x, a, features_in_step=0), ParameterError, "'features_in_step'"),
        (lambda m, x, a: P.monotonicity_correlation(m, x, a, n_samples=0), ParameterError, "'n_samples'"),
        (lambda m, x, a: P.sufficiency(m, x, a, distance="cosine"), ParameterError, "'distance'"),
        (lambda m, x, a: P.sufficiency(m, x, a, threshold=-1.0), ParameterError, "'threshold'"),
        (lambda m, x, a: P.Selectivity(patch_size=(2, 0)), ParameterError, "Selectivity"),
        (lambda m, x, a: P.SensitivityN(n=0), ParameterError, "SensitivityN"),
        (lambda m, x, a: P.IROF(segments=[1, 2]), ParameterError, "IROF"),
    ],
)
def test_errors(call, err, words):
    model, x, c, _ = _linear(7, b=2)
    with pytest.raises(err, match=words):
        call(model, x, c)


def test_superpixels_follow_an_edge():
    x = torch.zeros((1, 3, 12, 12), dtype=torch.float64)
    x[..., 6:] = 5.0
    lab = sl.metrics._regions.superpixels(x, sl.layout.Layout("b c h w"), 4)[0, 0]
    assert set(lab[:, :6].unique().tolist()).isdisjoint(lab[:, 6:].unique().tolist())


class _Scaled(torch.nn.Module):
    """A model with a per-sample keyword input: logits times ``scale``."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = cnn(1, in_channels=1)

    def forward(self, x, scale):
        return self.inner(x) * scale[:, None]


@pytest.mark.parametrize("name", ["irof", "selectivity", "monotonicity", "sensitivity_n"])
def test_per_sample_forward_kwargs_and_no_side_effects(name):
    model = _Scaled().eval()
    _, x, c, y = _linear(8)
    scale = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    fn = {
        "irof": lambda **k: P.irof(model, x, c, y, n_segments=3, **k),
        "selectivity": lambda **k: P.selectivity(model, x, c, y, patch_size=2, **k),
        "monotonicity": lambda **k: P.monotonicity(model, x, c, y, features_in_step=3, **k),
        "sensitivity_n": lambda **k: P.sensitivity_n(
            model, x, c, y, n=3, n_runs=5, generator=torch.Generator().manual_seed(0), **k
        ),
    }[name]
    x0, state = x.clone(), torch.random.get_rng_state()
    full = fn(forward_kwargs={"scale": scale}, progress=False)
    chunked = fn(forward_kwargs={"scale": scale}, batch_size=1, progress=False)
    torch.testing.assert_close(chunked, full, equal_nan=True)
    assert torch.equal(x, x0) and torch.equal(torch.random.get_rng_state(), state)
    assert not model.training


def test_monotonicity_correlation_uniform_draws():
    """The default substrate draws U(low, high) per row: reproducible with a generator, and the
    mean squared change matches a direct computation with the same draws."""
    model = cnn(1, in_channels=1)
    _, x, c, y = _linear(9, b=2)
    kw = dict(
        n_samples=3, features_in_step=4, low=-1.0, high=2.0, similarity=lambda a, b: b[:, 0], progress=False
    )
    got = P.monotonicity_correlation(model, x, c, y, generator=torch.Generator().manual_seed(1), **kw)
    g = torch.Generator().manual_seed(1)
    noise = -1.0 + 3.0 * torch.rand((2 * 3 * 3, 1, T), generator=g, dtype=torch.float64)
    first = c.flatten(1).argsort(1)[:, :4]  # the group of the 4 least relevant units
    with torch.no_grad():
        f0 = model(x)[torch.arange(2), y]
        out = []
        for i in range(2):
            rows = x[i].repeat(3, 1, 1)
            rows[:, 0, first[i]] = noise[i * 9 : i * 9 + 3, 0][:, first[i]]
            out.append(((model(rows)[:, 0] - f0[i]) ** 2).mean() / f0[i] ** 2)
    torch.testing.assert_close(got, torch.stack(out))


def test_extreme_values():
    """Steps and patches longer than the input are the whole input; Sufficiency's distances are
    exact at the dtype's extremes (one power-of-two scale for the batch)."""
    model, x, c, y = _linear(10)
    assert P.monotonicity(model, x, c, y, features_in_step=2**64, progress=False).tolist() == [1.0] * 3
    whole = P.selectivity(model, x, c, y, patch_size=2**64, progress=False)
    torch.testing.assert_close(whole, c.flatten(1).sum(1) / 2)  # one patch: (f(x) + f(0)) / 2
    ref = P.sufficiency(model, x, c, threshold=0.5)
    for scale in (1e300, 1e-310):
        torch.testing.assert_close(P.sufficiency(model, x, c * scale, threshold=0.5), ref, equal_nan=True)
