"""Domains: round trips, gradchecks, identity, completeness, analytic answers, helpers."""

from __future__ import annotations

import math

import pytest
import torch

import registry  # noqa: F401 - imports cases_domains (which imports the registry back) in order
import salience as sl
from cases_domains import DOMAINS as CASE_DOMAINS
from salience.domains import EEG_BANDS, daubechies
from salience.testing import domain_checks
from toy_models import Linear, cnn

D = torch.float64


def _x(b=3, c=3, t=24, seed=0, dtype=D):
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _mat(r, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(r, c, generator=g, dtype=D) + (2 * torch.eye(r, c, dtype=D) if r == c else 0)


_M3 = _mat(3, 3, 1)
_M32 = _mat(3, 2, 2)
_MU = torch.tensor([0.3, -0.2, 0.5], dtype=D)

EXACT = {
    "Time": lambda: sl.Time(),
    "Fourier": lambda: sl.Fourier(),
    "Fourier-ortho-full": lambda: sl.Fourier(norm="ortho", output="full"),
    "STFT-hann": lambda: sl.STFT(n_fft=8, hop_length=2),
    "STFT-boxcar-nocenter": lambda: sl.STFT(n_fft=8, hop_length=1, window="boxcar", center=False),
    "Haar": lambda: sl.Wavelet("haar", levels=3),
    "db3": lambda: sl.Wavelet("db3", levels=2, per="coefficient"),
    "ICA": lambda: sl.ICA.from_matrices(_M3, _MU),
    "ICA-sample": lambda: sl.ICA.from_matrices(_M3, _MU, mode="sample"),
    "Fourier+Haar": lambda: sl.Compose(sl.Fourier(), sl.Wavelet("haar", levels=1, axis="f")),
}
LOSSY = {
    "ICA-lossy": lambda: sl.ICA.from_matrices(_M32, _MU),
    "ICA-sample-lossy": lambda: sl.ICA.from_matrices(_M32, _MU, mode="sample"),
    "ICA-lossy+Fourier": lambda: sl.Compose(sl.ICA.from_matrices(_M32, _MU), sl.Fourier()),
}
ALL = {**EXACT, **LOSSY}


# ---------------------------------------------------------------- round trips and gradients
# (the round trips, dtypes and IG completeness of every domain: test_domain_contract below)
@pytest.mark.parametrize("name", ALL)
def test_exact_flags(name):
    x = _x()
    d = ALL[name]().bind(x)
    assert d.exact == (name in EXACT)
    if not d.exact:
        assert (d.inverse(d.forward(x)) - x).abs().max() > 1e-3  # really lossy


@pytest.mark.parametrize("name", ALL)
def test_inverse_gradcheck(name):
    x = _x(b=2, c=3, t=8)
    d = ALL[name]().bind(x)
    z = d.forward(x).detach().clone().requires_grad_(True)
    idx = torch.tensor([1, 0])
    assert torch.autograd.gradcheck(lambda zz: d.inverse(zz, idx), (z,), eps=1e-6, atol=1e-8)


# ---------------------------------------------------------------- errors
def test_not_fitted_errors():
    with pytest.raises(sl.NotFittedError, match="fit"):
        sl.ICA().forward(_x())
    with pytest.raises(sl.NotFittedError):
        sl.ICA().bind(_x())
    z = sl.Fourier().forward(_x())
    with pytest.raises(sl.NotFittedError, match="length"):
        sl.Fourier().inverse(z)
    with pytest.raises(sl.NotFittedError):
        sl.Wavelet().inverse(torch.zeros(1, 3, 24, dtype=D))


def test_nola_error():
    # a Hann window without centring covers the first sample with zero weight
    with pytest.raises(sl.ParameterError, match="NOLA"):
        sl.STFT(n_fft=8, hop_length=4, center=False).fit(_x())
    # hop larger than the window leaves gaps
    with pytest.raises(sl.ParameterError, match="NOLA"):
        sl.STFT(n_fft=8, hop_length=9, window="boxcar").fit(_x())


def test_parameter_errors():
    with pytest.raises(sl.ParameterError, match="'output'"):
        sl.Fourier(output="half")
    with pytest.raises(sl.ParameterError, match="'mode'"):
        sl.ICA(mode="global")
    with pytest.raises(sl.ParameterError, match="wavelet"):
        sl.Wavelet("nosuch4")
    with pytest.raises(sl.ParameterError, match="orthonormal"):
        sl.Wavelet([1.0, 1.0])
    with pytest.raises(sl.ParameterError, match="'domain'"):
        sl.InDomain(sl.Gradient(cnn(1)), "fourier")
    with pytest.raises(sl.ParameterError, match="levels"):
        sl.Wavelet("db4", levels=4).fit(_x(t=12))


def test_layer_method_refused_inside_domain():
    from salience.errors import CompositionError

    class Layer(sl.Explainer):
        def attribute(self, x, score):
            score.layer_gradients(self.model[0])
            return x

    with pytest.raises(CompositionError):
        sl.InDomain(Layer(cnn(1)), sl.Fourier()).explain(_x(), target=0)


# ---------------------------------------------------------------- identity and structure
@pytest.mark.parametrize(
    "make",
    [
        lambda m: sl.Gradient(m),
        lambda m: sl.InputXGradient(m),
        lambda m: sl.IntegratedGradients(m, n_steps=5, baseline="mean"),
        lambda m: sl.SmoothGrad(sl.Gradient(m), n_samples=3, generator=torch.Generator().manual_seed(3)),
    ],
)
def test_time_domain_equals_wrapped_explainer(make):
    model, x = cnn(1), _x()
    a = make(model).explain(x, target=2)
    b = sl.InDomain(make(model), sl.Time()).explain(x, target=2)
    assert torch.equal(a.values, b.values)
    assert isinstance(b.domain, sl.Time) and b.layout == "b c t"
    if a.delta is not None:
        assert torch.equal(a.delta, b.delta)


def test_reduce_false_keeps_coordinates_and_sums_match():
    model, x = cnn(1), _x()
    ig = lambda: sl.IntegratedGradients(model, n_steps=6)  # noqa: E731
    raw = sl.InDomain(ig(), sl.Fourier(), reduce=False).explain(x, target=1)
    per_bin = sl.InDomain(ig(), sl.Fourier()).explain(x, target=1)
    assert raw.layout == "b c f r" and raw.shape == (3, 3, 13, 2)
    assert per_bin.layout == "b c f" and per_bin.shape == (3, 3, 13)
    torch.testing.assert_close(raw.values.sum(-1), per_bin.values, rtol=0, atol=1e-14)
    # imaginary parts of DC and Nyquist carry exactly nothing
    assert torch.equal(raw.values[:, :, 0, 1], torch.zeros(3, 3, dtype=D))
    assert torch.equal(raw.values[:, :, -1, 1], torch.zeros(3, 3, dtype=D))


def test_full_fft_output_mirrors_and_halves():
    model, x = cnn(1), _x(t=24)
    one = sl.FourierIG(model, n_steps=4).explain(x, target=0)
    full = sl.FourierIG(model, n_steps=4, output="full").explain(x, target=0)
    assert full.shape == (3, 3, 24)
    T = 24
    for k in range(1, T):
        torch.testing.assert_close(full.values[..., k], full.values[..., T - k], rtol=0, atol=0)
    folded = full.values[..., : T // 2 + 1].clone()
    folded[..., 1 : T // 2] *= 2
    torch.testing.assert_close(folded, one.values, rtol=0, atol=1e-15)
    torch.testing.assert_close(full.values.sum((1, 2)), one.values.sum((1, 2)), rtol=0, atol=1e-13)


def test_coordinates():
    x = _x(t=24)
    d = sl.Fourier(fs=48.0).bind(x)
    f = d.coordinates()["f"]
    torch.testing.assert_close(f, torch.arange(13, dtype=D) * 2.0)  # k * fs / T
    full = sl.Fourier(fs=48.0, output="full").bind(x).coordinates()["f"]
    assert full.shape == (24,) and full[23] == -2.0
    s = sl.STFT(n_fft=8, hop_length=2, fs=8.0).bind(x).coordinates()
    assert s["f"].shape == (5,) and float(s["f"][1]) == 1.0 and s["frame"].shape == (13,)
    w = sl.Wavelet(levels=3).bind(x).coordinates()
    assert w["band"].tolist() == [3, 1, 2, 3]


# ---------------------------------------------------------------- completeness
def _completeness(domain, n, rule="riemann_trapezoid", model=None, x=None):
    model = model or cnn(1)
    x = _x() if x is None else x
    attr = sl.InDomain(sl.IntegratedGradients(model, n_steps=n, rule=rule), domain).explain(x, target=1)
    # the baseline signal, computed independently: inverse(0) + residual
    d = domain.bind(x)
    with torch.no_grad():
        z = d.forward(x)
        r = x - d.inverse(z)
        x0 = d.inverse(torch.zeros_like(z)) + r
        gap = attr.values.flatten(1).sum(1) - (model(x)[:, 1] - model(x0)[:, 1])
    torch.testing.assert_close(gap, attr.delta, rtol=0, atol=1e-12)
    return gap.abs().max().item()


class _RowByRow(sl.Domain):
    """The same domain, declared non-affine: IG differentiates its inverse on every row."""

    affine = False

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    @property
    def exact(self):
        return self.inner.exact

    def bind(self, x, layout=None):
        bound = _RowByRow(self.inner.bind(x, layout))
        return bound

    def forward(self, x):
        return self.inner.forward(x)

    def inverse(self, z, index=None):
        return self.inner.inverse(z, index)

    def output_layout(self, layout):
        return self.inner.output_layout(layout)

    def reduce(self, values, layout):
        return self.inner.reduce(values, layout)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_affine_domains_sum_gradients_before_the_inverse(name, rule):
    """Built-in domains are affine: IG's weighted gradient sum is mapped back once per sample;
    the result equals differentiating the inverse on every row (float64)."""
    model, x = cnn(1), _x(b=4)
    assert ALL[name]().affine
    baseline = torch.full_like(ALL[name]().bind(x).forward(x), 0.1)
    fast = sl.CrossDomainIG(model, ALL[name](), n_steps=7, rule=rule, baseline=baseline, batch_size=5)
    slow = sl.CrossDomainIG(
        model, _RowByRow(ALL[name]()), n_steps=7, rule=rule, baseline=baseline, batch_size=5
    )
    a, b = fast.explain(x, target=1), slow.explain(x, target=1)
    torch.testing.assert_close(a.values, b.values, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a.delta, b.delta, rtol=1e-10, atol=1e-12)


def test_affine_path_differentiates_the_inverse_once():
    """Counting the inverse's differentiated calls: one (the adjoint) for an affine domain, one
    per chunk row by row; the model still sees every row exactly once."""
    from toy_models import Counting

    calls = {"grad": 0, "nograd": 0}

    class CountingFourier(sl.Fourier):
        def inverse(self, z, index=None):
            calls["grad" if torch.is_grad_enabled() else "nograd"] += 1
            return super().inverse(z, index)

    model, x = Counting(cnn(1)), _x(b=3)
    sl.CrossDomainIG(model, CountingFourier(), n_steps=8, batch_size=6).explain(x, target=0)
    # 24 path rows in 4 chunks of 6, plus the baseline's scores (riemann_right: f(x) is the last step)
    assert calls["grad"] == 1 and calls["nograd"] == 5
    assert sum(model.rows) == 3 * 8 + 3
    calls.update(grad=0, nograd=0)
    sl.CrossDomainIG(model, _RowByRow(CountingFourier()), n_steps=8, batch_size=6).explain(x, target=0)
    assert calls["grad"] == 4


def test_ig_completeness_right_riemann_shrinks():
    gaps = [_completeness(sl.Fourier(), n, rule="riemann_right") for n in (4, 16, 64)]
    assert gaps[2] < gaps[1] < gaps[0]


def test_lossy_residual_makes_score_exact():
    model, x = cnn(1), _x()
    for make in LOSSY.values():
        d = make().bind(x)
        attr = sl.InDomain(sl.Gradient(model), make()).explain(x, target=0)
        torch.testing.assert_close(attr.scores, model(x)[:, 0].detach(), rtol=0, atol=1e-12)
        assert not attr.info["domain_exact"] and not d.exact


def test_smoothgrad_around_lossy_domain_uses_each_copys_residual():
    """SmoothGrad(InDomain(...)): each noisy copy gets its own residual (engine index map)."""
    model, x = cnn(1), _x(b=2)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    dom = LOSSY["ICA-lossy"]
    sg = sl.SmoothGrad(
        sl.InDomain(sl.IntegratedGradients(model, n_steps=32), dom()), n_samples=3, generator=gen()
    )
    a = sg.explain(x, target=1)
    # reproduce by hand: the same noisy copies, explained one by one
    g = gen()
    flat = x.flatten(1)
    std = (0.15 * (flat.amax(1) - flat.amin(1))).reshape(2, 1, 1, 1)
    noise = torch.randn((2, 3, 3, 24), generator=g, dtype=D)
    xn = (x.unsqueeze(1) + std * noise).reshape(6, 3, 24)
    each = torch.cat(
        [
            sl.InDomain(sl.IntegratedGradients(model, n_steps=32), dom())
            .explain(xn[i : i + 1], target=1)
            .values
            for i in range(6)
        ]
    )
    torch.testing.assert_close(a.values, each.reshape(2, 3, *each.shape[1:]).mean(1), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- analytic models
@pytest.mark.parametrize("t, k0", [(32, 5), (33, 7), (32, 1)])
def test_cosine_weights_give_gradient_only_at_k0(t, k0):
    c = 2
    tt = torch.arange(t, dtype=D)
    w = torch.cos(2 * math.pi * k0 * tt / t).expand(c, t).reshape(1, c, t).clone()
    model = Linear(w).eval()
    x = _x(b=2, c=c, t=t)
    g = sl.InDomain(sl.Gradient(model), sl.Fourier(), reduce=False).explain(x, target=None).values
    expected = torch.zeros_like(g)
    expected[:, :, k0, 0] = 1.0  # d f / d Re Z[k0] = 1 (irfft counts interior bins twice, 1/T scale)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-12)
    ig = sl.FourierIG(model, n_steps=3).explain(x, target=None)
    # linear model: IG = Re Z[k0] exactly, nothing elsewhere
    zk = torch.fft.rfft(x, dim=-1)[..., k0].real
    torch.testing.assert_close(ig.values[..., k0], zk, rtol=0, atol=1e-12)
    rest = torch.cat([ig.values[..., :k0], ig.values[..., k0 + 1 :]], -1)
    assert rest.abs().max() < 1e-12


def _source_reader(mixing, mean, j, t, seed=3):
    unmix = torch.linalg.pinv(mixing)
    v = torch.randn(t, generator=torch.Generator().manual_seed(seed), dtype=D)
    weight = (unmix[j][:, None] * v[None, :]).unsqueeze(0)  # f = sum_t v_t s_j[t]
    bias = -(unmix[j] @ mean) * v.sum()
    return Linear(weight, bias.reshape(1)).eval()


@pytest.mark.parametrize("j", [0, 2])
def test_model_reading_one_source_is_one_hot_in_ica(j):
    t = 16
    model = _source_reader(_M3, _MU, j, t)
    x = _x(b=2, t=t)
    # dataset mode: gradient w.r.t. the sources is v on component j, zero elsewhere
    g = sl.InDomain(sl.Gradient(model), sl.ICA.from_matrices(_M3, _MU)).explain(x, target=None)
    assert g.layout == "b k t"
    other = [k for k in range(3) if k != j]
    assert g.values[:, other].abs().max() < 1e-12
    assert g.values[:, j].abs().min() > 0
    # per-sample mode (the reference ICA-IG): one score per component, one-hot on j
    a = sl.ICAIG(model, sl.ICA.from_matrices(_M3, _MU, mode="sample"), n_steps=2).explain(x, target=None)
    assert a.shape == (2, 3) and a.layout == "b k"
    assert a.values[:, other].abs().max() < 1e-12
    torch.testing.assert_close(
        a.values[:, j], model(x)[:, 0].detach() - model(_MU.reshape(1, 3, 1).expand(2, 3, t))[:, 0].detach()
    )


# ---------------------------------------------------------------- scikit-learn ICA
def test_sklearn_fastica_dataset_and_sample_modes():
    pytest.importorskip("sklearn")
    import warnings

    from sklearn.decomposition import FastICA

    t = torch.arange(64, dtype=D) / 16
    src = torch.stack([torch.sin(2 * math.pi * 1.0 * t), torch.sign(torch.sin(2 * math.pi * 2.5 * t))])
    x = torch.einsum("ck,bkt->bct", torch.tensor([[0.5, 0.75], [0.9, 0.1]], dtype=D), src.expand(3, 2, 64))
    x = x + 0.01 * _x(b=3, c=2, t=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ica = FastICA(random_state=0, whiten="unit-variance").fit(x[0].T.numpy())
        d = sl.ICA(ica).bind(x)
        torch.testing.assert_close(d.forward(x)[0].T, torch.as_tensor(ica.transform(x[0].T.numpy())))
        torch.testing.assert_close(d.inverse(d.forward(x)), x)
        fitted = sl.ICA(random_state=0).fit(x)
        assert fitted.mixing_.shape == (2, 2) and fitted.exact
        model = cnn(1, in_channels=2)
        per_sample = sl.ICAIG(model, random_state=0, n_steps=16).explain(x, target=1)
        assert per_sample.shape == (3, 2)
        assert per_sample.delta.abs().max() < 1e-3


def test_ica_fits_never_touch_numpys_global_rng():
    """Review #3: FastICA fits draw their seed from generator= (or random_state), never from
    numpy's global RNG, also for an unfitted estimator given as ``ica``."""
    pytest.importorskip("sklearn")
    import warnings

    import numpy as np
    from sklearn.decomposition import FastICA

    x = _x(b=2, c=2, t=64)
    model = cnn(1, in_channels=2)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.random.seed(123)
        before = np.random.get_state()
        a = sl.ICAIG(model, n_steps=2, generator=gen()).explain(x, target=1)
        b = sl.ICAIG(model, FastICA(whiten="unit-variance"), n_steps=2, generator=gen()).explain(x, target=1)
        sl.ICAIG(model, n_steps=2).explain(x, target=1)
        sl.ICA(mode="dataset").fit(x)
        after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    torch.testing.assert_close(a.values, b.values, rtol=0, atol=0)  # same seeds, same fits
    with pytest.raises(sl.ParameterError, match="random_state.*generator"):
        sl.ICA(random_state=0, generator=gen())
    with pytest.raises(sl.ParameterError, match="generator"):
        sl.ICAIG(model, generator=3)


def test_into_is_shared_by_in_domain_and_metrics_and_keeps_the_residual():
    """Review #7: one implementation of "explain inside a domain" (domains.base.into); for a
    lossy domain g(forward(x)) == f(x) through the residual, for Domain and duck-typed objects."""
    from salience.domains.base import into
    from salience.engine import make_score

    model, x = cnn(1), _x()
    lay = sl.Layout("b c t")
    lossy = LOSSY["ICA-lossy"]()

    class Duck:  # forward/inverse only, lossy through the bound domain's matrices
        def __init__(self, d):
            self.d = d

        def forward(self, v):
            return self.d.forward(v)

        def inverse(self, z):
            return self.d.inverse(z)

    for dom in (lossy, Duck(lossy.bind(x, lay))):
        score = make_score(model, x, 2, batch_size=None, layout=lay, caller="test")
        z, zl, g, bound = into(score, x, dom, lay)
        assert zl.ndim == z.ndim and not bound.exact
        torch.testing.assert_close(
            g.values(z.unsqueeze(1))[:, 0], model(x)[:, 2].detach(), rtol=0, atol=1e-12
        )
    ours = sl.InDomain(sl.Gradient(model), lossy).explain(x, target=2)
    torch.testing.assert_close(ours.scores, model(x)[:, 2].detach(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- bands
def test_aggregate_bands_conventions():
    fs, t = 64.0, 128
    x = _x(b=2, c=2, t=t)
    model = cnn(1, in_channels=2)
    one = sl.FourierIG(model, n_steps=4, fs=fs).explain(x, target=0)
    full = sl.FourierIG(model, n_steps=4, fs=fs, output="full").explain(x, target=0)
    with pytest.warns(sl.SalienceWarning, match="outside every band"):  # DC: below delta
        b1 = sl.aggregate_bands(one, "eeg")
        b2 = sl.aggregate_bands(full, "eeg")
    assert b1.layout == "b c band" and b1.shape == (2, 2, 6)  # "other": DC, below delta
    assert list(b1.info["bands"]) == list(EEG_BANDS) and b1.info["band_names"][-1] == "other"
    torch.testing.assert_close(b1.values, b2.values, rtol=0, atol=1e-13)
    freqs = torch.arange(t // 2 + 1, dtype=D) * fs / t  # 0.5 Hz bins
    # half-open [low, high): 4.0 Hz goes to theta, not delta
    delta = one.values[..., (freqs >= 0.5) & (freqs < 4.0)].sum(-1)
    torch.testing.assert_close(b1.values[..., 0], delta)
    # user edges on a raw tensor
    edges = sl.aggregate_bands(one.values, [0, 8, 32.5], freqs=freqs)
    torch.testing.assert_close(edges.sum(-1), one.values.sum(-1))
    with pytest.raises(sl.ParameterError, match="fs"):
        sl.aggregate_bands(sl.FourierIG(model, n_steps=2).explain(x, target=0))


# ---------------------------------------------------------------- user-defined domain (docs example)
class TrendSeasonal(sl.Domain):
    """x = trend + seasonal + residual, z stacks the three parts on a new axis ``part``."""

    def __init__(self, period: int, window: int = 5) -> None:
        super().__init__()
        self.period, self.window = period, window

    def forward(self, x):
        k = torch.ones(1, 1, self.window, dtype=x.dtype, device=x.device) / self.window
        flat = x.reshape(-1, 1, x.shape[-1])
        trend = torch.nn.functional.conv1d(flat, k, padding=self.window // 2).reshape(x.shape)
        detr = x - trend
        t = x.shape[-1]
        idx = torch.arange(t, device=x.device) % self.period
        means = torch.zeros(*x.shape[:-1], self.period, dtype=x.dtype, device=x.device)
        means = means.index_add(-1, idx, detr) / torch.bincount(idx, minlength=self.period).to(x.dtype)
        seasonal = means[..., idx]
        return torch.stack([trend, seasonal, detr - seasonal], dim=2)  # (B, C, 3, T)

    def inverse(self, z, index=None):
        return z.sum(dim=2)

    def output_layout(self, layout):
        return sl.Layout("b c part t")

    def reduce(self, values, layout):
        return values.sum(-1), sl.Layout("b c part")


def test_user_defined_domain():
    model, x = cnn(1), _x(t=24)
    d = TrendSeasonal(period=6)
    torch.testing.assert_close(d.inverse(d.forward(x)), x)
    attr = sl.CrossDomainIG(model, d, n_steps=32, rule="riemann_trapezoid").explain(x, target=0)
    assert attr.shape == (3, 3, 3) and attr.layout == "b c part"
    assert attr.delta.abs().max() < 1e-3


# ---------------------------------------------------------------- the domain contract (salience.testing)
# Every domain above, those of the explainer contract cases (tests/cases_domains.py) and the
# user-defined one, through the public kit: shapes and dtypes (float64, float32), round trip (a
# projection when lossy), autograd's adjoint of the inverse (exact for affine domains), reduce
# keeps totals, fit/bind/forward/inverse leave x and the domain alone, batch invariance, IG in the
# domain (finite, delta = the gap to f(x) - f(inverse(0) + r), completeness within 1e-3 with 32
# steps and shrinking from 4 steps); the structural checks on signals of odd length too.
CONTRACT = {
    **ALL,
    **{f"cases:{k}": v for k, v in CASE_DOMAINS.items() if k not in ALL},
    "TrendSeasonal": lambda: TrendSeasonal(period=6),
}
ODD = ["shapes_dtypes", "round_trip", "adjoint", "batch_invariance"]  # on odd lengths too
# The complex cepstrum is not affine: its straight IG path in cepstral coefficients bends the
# signal through the ReLUs' kinks, and the gap shrinks like 1/n steps (3e-3 at 32 trapezoid
# steps on this CNN; smooth models meet 1e-3 far sooner, tests/test_domains_cepstrum.py).
TOLERANCE = {"cases:ComplexCepstrum": 1e-2, "cases:ComplexCepstrum-unwrapped": 1e-2}
DOMAIN_CONTRACT = [
    pytest.param(check, id=f"{name}-t{t}-{check_name}")
    for name, make in CONTRACT.items()
    for t, checks in ((24, None), (21, ODD))
    for check_name, check in domain_checks(
        make(), _x(t=t), checks=checks, target=1, completeness_tol=TOLERANCE.get(name, 1e-3)
    )
]


@pytest.mark.parametrize("check", DOMAIN_CONTRACT)
def test_domain_contract(check):
    assert check()


def test_daubechies_filters():
    for order in (1, 2, 3, 4, 6):
        h = daubechies(order)
        assert h.size == 2 * order
        assert abs(h.sum() - math.sqrt(2)) < 1e-12
        for m in range(1, order):
            assert abs((h[: h.size - 2 * m] * h[2 * m :]).sum()) < 1e-10


# ---------------------------------------------------------------- engine: per-point index through derived scores
class _TwoTargets(sl.Explainer):
    """Gradient computed through ``retarget`` with every point duplicated (a ClassRelevant-like wrapper)."""

    def __init__(self, model, rows: bool):
        super().__init__(model)
        self.rows = rows

    def attribute(self, x, score):
        b = x.shape[0]
        xx = x.repeat_interleave(2, 0)
        sm = score.sample_map.repeat_interleave(2)
        rows = torch.arange(b, device=x.device).repeat_interleave(2) if self.rows else None
        return score.retarget(score.target, xx, sm, parents=rows).gradient_at_input()[0::2]


def test_retarget_inside_domain_uses_parent_points():
    model, x = cnn(1), _x()
    lossy = LOSSY["ICA-lossy"]
    ref = sl.InDomain(sl.Gradient(model), lossy()).explain(x, target=2).values
    for rows in (True, False):  # top level: one point per sample, rows may be omitted
        got = sl.InDomain(_TwoTargets(model, rows), lossy()).explain(x, target=2).values
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-13)
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    a = sl.SmoothGrad(sl.InDomain(_TwoTargets(model, True), lossy()), n_samples=2, generator=gen()).explain(
        x, target=2
    )
    b = sl.SmoothGrad(sl.InDomain(sl.Gradient(model), lossy()), n_samples=2, generator=gen()).explain(
        x, target=2
    )
    torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-13)
    # noisy copies are not one point per sample: the parent points must be given
    with pytest.raises(sl.CompositionError, match="parents="):
        sl.SmoothGrad(sl.InDomain(_TwoTargets(model, False), lossy()), n_samples=2, generator=gen()).explain(
            x, target=2
        )


def test_fourier_fixed_length_must_match_the_signal():
    """Fourier(n=...) inverts to n samples: a signal of another length would be explained as a
    different signal (silently, since the domain is exact), so binding refuses it."""
    x = _x(t=24)
    with pytest.raises(sl.ShapeError, match=r"'n' parameter of Fourier is 32, but x has 24 samples"):
        sl.Fourier(n=32).bind(x)
    with pytest.raises(sl.ShapeError, match="'n' parameter of Fourier"):
        sl.InDomain(sl.Gradient(cnn(1)), sl.Fourier(n=32)).explain(x, target=0)
    d = sl.Fourier(n=24).bind(x)
    torch.testing.assert_close(d.inverse(d.forward(x)), x, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- half precision
HALF = [torch.float16, torch.bfloat16]
# relative to max|x|: float16 keeps ~11 significant bits, bfloat16 ~8 (conditioning of _M3 adds)
_HALF_TOL = {torch.float16: 5e-3, torch.bfloat16: 3e-2}
HALF_DOMAINS = {
    k: EXACT[k]
    for k in (
        "Fourier",
        "Fourier-ortho-full",
        "STFT-hann",
        "STFT-boxcar-nocenter",
        "ICA",
        "ICA-sample",
        "Fourier+Haar",
    )
}
HALF_DOMAINS["ICA+Fourier"] = lambda: sl.Compose(sl.ICA.from_matrices(_M3, _MU), sl.Fourier())


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", HALF_DOMAINS)
def test_half_precision_round_trip_and_differentiable_inverse(name, dtype):
    x = _x(t=24).to(dtype)
    d = HALF_DOMAINS[name]().bind(x)
    z = d.forward(x)
    assert z.dtype == dtype
    # the coefficients are those of the (rounded) signal, up to the rounding of z itself
    z64 = HALF_DOMAINS[name]().bind(x.double()).forward(x.double())
    scale = float(z64.abs().max())
    torch.testing.assert_close(z.double(), z64, rtol=0, atol=_HALF_TOL[dtype] * scale)
    zz = z.clone().requires_grad_(True)
    xr = d.inverse(zz)
    assert xr.dtype == dtype
    torch.testing.assert_close(xr.double(), x.double(), rtol=0, atol=_HALF_TOL[dtype] * float(x.abs().max()))
    xr.double().pow(2).sum().backward()
    assert zz.grad is not None and zz.grad.dtype == dtype and bool(torch.isfinite(zz.grad).all())


def _half_model(dtype):
    return cnn(1, dtype=torch.float32).to(dtype).eval()


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize(
    "make",
    [
        lambda m: sl.FourierIG(m, n_steps=16),
        lambda m: sl.FourierIG(m, n_steps=16, output="full"),
        lambda m: sl.STFTIG(m, n_fft=8, hop_length=2, n_steps=16),
        lambda m: sl.InDomain(
            sl.IntegratedGradients(m, n_steps=16), sl.Compose(sl.ICA.from_matrices(_M3), sl.Fourier())
        ),
    ],
    ids=["FourierIG", "FourierIG-full", "STFTIG", "ICA+Fourier"],
)
def test_frequency_ig_end_to_end_in_half_precision(make, dtype):
    model = _half_model(dtype)
    seen = []
    model[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].dtype))
    x = _x(b=2, t=32, dtype=torch.float32).to(dtype)
    attr = make(model).explain(x, 1)
    assert attr.values.dtype == dtype and attr.values.device == x.device
    assert seen and set(seen) == {dtype}  # the model is always called in its own dtype
    # sign and scale: the same as in float32 with the same (rounded) weights and input
    ref_model = _half_model(dtype).float()
    ref = make(ref_model).explain(x.float(), 1)
    assert attr.shape == ref.shape
    scale = float(ref.values.abs().max())
    tol = {torch.float16: 0.05, torch.bfloat16: 0.15}[dtype]
    torch.testing.assert_close(attr.values.float(), ref.values, rtol=0, atol=tol * scale)
    total = attr.values.float().flatten(1).sum(1)
    torch.testing.assert_close(
        total, ref.values.flatten(1).sum(1), rtol=0, atol=tol * float(total.abs().max())
    )


@pytest.mark.parametrize(
    "make", [lambda: sl.Fourier(), lambda: sl.STFT(n_fft=8, hop_length=2)], ids=["Fourier", "STFT"]
)
def test_frequency_domains_reject_non_real_floating_dtypes(make):
    name = type(make()).__name__
    x = _x()
    d = make().bind(x)
    for bad in (torch.ones(3, 3, 24, dtype=torch.int64), torch.complex(x, x)):
        with pytest.raises(sl.DTypeError, match=rf"{name} expects x .*{bad.dtype}.*x\.float\(\)"):
            d.forward(bad)
    z = d.forward(x)
    with pytest.raises(sl.DTypeError, match=rf"{name} expects z .*int64.*z\.float\(\)"):
        d.inverse(z.to(torch.int64))


# ---------------------------------------------------------------- NOLA remedies
def test_nola_error_suggests_only_changes_that_help():
    x = _x()
    # Hann without centring: the first sample has zero weight whatever the hop
    with pytest.raises(sl.ParameterError, match="NOLA") as err:
        sl.STFT(n_fft=8, hop_length=4, center=False).fit(x)
    msg = str(err.value)
    assert (
        "center=True" in msg.split("exist.")[1]
        and "window='hamming'" in msg
        and "hop_length=" not in msg.split("exist.")[1]
    )
    # centred already: the hop (or the window's zero ends) is the problem, never center=True
    for kw, fix in [
        (dict(n_fft=8, hop_length=8), "hop_length=7 (or smaller) instead of 8"),
        (dict(n_fft=8, hop_length=9, window="boxcar"), "hop_length=8 (or smaller) instead of 9"),
    ]:
        with pytest.raises(sl.ParameterError, match="NOLA") as err:
            sl.STFT(**kw).fit(x)
        remedy = str(err.value).split("exist.")[1]
        assert fix in remedy and "center=True" not in remedy, remedy
    with pytest.raises(
        sl.ParameterError,
        match=r"window='boxcar', center=True\): .*Use hop_length=8 \(or smaller\) instead of 9\.$",
    ):
        sl.STFT(n_fft=8, hop_length=9, window="boxcar").fit(x)
    # every remedy it names does satisfy NOLA
    sl.STFT(n_fft=8, hop_length=4, center=True).fit(x)
    sl.STFT(n_fft=8, hop_length=4, window="hamming", center=False).fit(x)
    sl.STFT(n_fft=8, hop_length=7).fit(x)
    sl.STFT(n_fft=8, hop_length=8, window="boxcar").fit(x)
