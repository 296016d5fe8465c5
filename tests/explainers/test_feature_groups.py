"""Methods over feature groups: FeatureAblation, FeaturePermutation, ShapleyValueSampling,
KernelShap, Lime and Occlusion(groups=), and the group constructors of salience.masking.groups.

Analytic references are written here: exact values on linear and additive models, exact Shapley
values by enumeration, per-band and per-component values inside a domain. The contract kit
(salience.testing) runs on every case of tests/cases_groups.py that tests/registry.py does not
list yet.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import salience as sl

from registry import EXPLAINERS  # isort: skip (first: it loads every case module, and those import from it)
from cases_groups import GROUPS  # isort: skip
from salience.errors import ParameterError, ShapeError
from salience.explainers.ablation import FeatureAblation, FeaturePermutation
from salience.explainers.shapley import ShapleyValueSampling
from salience.explainers.surrogate import KernelShap, Lime, _weighted_lasso
from salience.layout import Layout
from salience.masking.groups import (
    GroupMask,
    axis_groups,
    band_groups,
    channel_groups,
    component_groups,
    cross_groups,
    element_groups,
    patch_groups,
    superpixel_groups,
    time_segments,
)
from salience.testing import explainer_checks, toy_input, toy_model

F64 = torch.float64

# ----------------------------------------------------------------------------- the contract kit
_REGISTERED = {case.id for case in EXPLAINERS}
KIT = [
    pytest.param(check, id=f"{case.id}-{name}")
    for case in GROUPS
    if case.id not in _REGISTERED  # once registered, tests/test_contract_explainers.py runs them
    for name, check in explainer_checks(
        case.make, kinds=case.kinds, stochastic=case.stochastic, expected_passes=case.passes
    )
]


@pytest.mark.parametrize("check", KIT)
def test_contract_kit(check):
    assert check()


# ------------------------------------------------------------------------------------ helpers
class Linear(nn.Module):
    """score_k = sum(w_k * x) + b_k."""

    def __init__(self, shape, n_out=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn((n_out, *shape), generator=g, dtype=F64))
        self.b = nn.Parameter(torch.randn(n_out, generator=g, dtype=F64))

    def forward(self, x):
        return (x.unsqueeze(1) * self.w).flatten(2).sum(2) + self.b


class Additive(nn.Module):
    """score_k = sum_i h_k(x_i) with a different nonlinear h per element: additive, not linear."""

    def __init__(self, shape, n_out=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.randn((n_out, *shape), generator=g, dtype=F64))
        self.c = nn.Parameter(torch.randn((n_out, *shape), generator=g, dtype=F64))

    def h(self, x):
        return self.a * torch.sin(x) + self.c * x**2

    def forward(self, x):
        return self.h(x.unsqueeze(1)).flatten(2).sum(2)


class Interacting(nn.Module):
    """A model with interactions between groups (products of segment means)."""

    def forward(self, x):
        m = x.reshape(x.shape[0], -1, 3).mean(2)  # three segments of 1 x 9 inputs
        s = m[:, 0] * m[:, 1] + torch.tanh(m[:, 1] - 2 * m[:, 2]) + m[:, 0] ** 3
        return torch.stack([s, -s], 1)


def _x(shape=(2, 12), batch=3, seed=1):
    return torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=F64)


def _group_sum(values, ids, n):
    """sum over each group's elements of values (B, *S) with ids broadcastable to S."""
    ids = ids.expand(values.shape[1:]).reshape(-1)
    out = torch.zeros(values.shape[0], n, dtype=values.dtype)
    return out.index_add_(1, ids, values.reshape(values.shape[0], -1))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


SEGMENTS = time_segments(4)
SEG_IDS = SEGMENTS.resolve((2, 12), Layout("b c t")).ids[0]  # (1, 12)


# ------------------------------------------------------------------------ analytic: linear model
def test_feature_ablation_exact_on_linear_model_per_element():
    x = _x()
    model = Linear(x.shape[1:]).eval()
    values = FeatureAblation(model).explain(x, target=1).values
    torch.testing.assert_close(values, (model.w[1] * x).detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("substrate", [0.0, 0.5, "reference"])
def test_feature_ablation_exact_on_linear_model_per_group(substrate):
    x = _x()
    model = Linear(x.shape[1:]).eval()
    base = torch.full_like(x, substrate) if isinstance(substrate, float) else _x(seed=9)
    attr = FeatureAblation(model, groups=SEGMENTS, substrate=base if substrate == "reference" else substrate)
    out = attr.explain(x, target=2)
    expected = _group_sum((model.w[2] * (x - base)).detach(), SEG_IDS, 4)
    torch.testing.assert_close(out.info["group_values"], expected, rtol=1e-12, atol=1e-12)
    assert out.values.shape == (3, 1, 12)
    torch.testing.assert_close(out.values[:, 0], expected[:, SEG_IDS[0]])  # each element: its group's value


def test_feature_permutation_exact_on_linear_model():
    x = _x(batch=4)
    model = Linear(x.shape[1:]).eval()
    out = FeaturePermutation(model, groups=channel_groups(), generator=_gen(3)).explain(x, target=0)
    gen, ident = _gen(3), torch.arange(4)
    expected = torch.zeros(4, 2, dtype=F64)
    for c in range(2):  # the permutations drawn group after group, never the identity
        p = torch.randperm(4, generator=gen)
        while torch.equal(p, ident):
            p = torch.randperm(4, generator=gen)
        expected[:, c] = (model.w[0, c] * (x[:, c] - x[p, c])).sum(1).detach()
    torch.testing.assert_close(out.info["group_values"], expected, rtol=1e-12, atol=1e-12)
    assert out.values.shape == (4, 2, 1)


def test_feature_permutation_needs_two_samples():
    model = Linear((2, 12)).eval()
    with pytest.raises(ParameterError, match="at least 2 samples"):
        FeaturePermutation(model, groups=SEGMENTS).explain(_x(batch=1), target=0)


def test_lime_least_squares_exact_on_linear_model():
    x = _x()
    model = Linear(x.shape[1:]).eval()
    out = Lime(model, groups=SEGMENTS, n_samples=40, alpha=0.0, generator=_gen()).explain(x, target=1)
    expected = _group_sum((model.w[1] * x).detach(), SEG_IDS, 4)
    torch.testing.assert_close(out.info["group_values"], expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.info["intercept"], model.b[1].detach().expand(3))


def test_lime_lasso_shrinks_toward_zero():
    x = _x()
    model = Linear(x.shape[1:]).eval()
    exact = Lime(model, groups=SEGMENTS, n_samples=40, alpha=0.0, generator=_gen()).explain(x, 1)
    lasso = Lime(model, groups=SEGMENTS, n_samples=40, alpha=0.05, generator=_gen()).explain(x, 1)
    a, b = exact.info["group_values"], lasso.info["group_values"]
    assert bool((b.abs() <= a.abs() + 1e-12).all()) and not torch.allclose(a, b)
    assert bool((torch.sign(b) * torch.sign(a) >= 0).all())  # never flips a sign


def test_weighted_lasso_matches_its_objective_optimum():
    g = _gen(5)
    z = (torch.rand(30, 5, generator=g) < 0.5).to(F64)
    y = torch.randn(2, 30, generator=g, dtype=F64)
    w = torch.rand(2, 30, generator=g, dtype=F64)
    alpha = 0.02
    coef, intercept = _weighted_lasso(z, y, w, alpha)

    def objective(c, b0, i):
        r = y[i] - b0 - z @ c
        return (w[i] * r**2).sum() / (2 * w[i].sum()) + alpha * c.abs().sum()

    for i in range(2):  # a perturbation of any coefficient or the intercept does not lower it
        best = objective(coef[i], intercept[i], i)
        for j in range(5):
            for eps in (1e-4, -1e-4):
                c = coef[i].clone()
                c[j] += eps
                b0 = intercept[i] - eps * (w[i] @ z[:, j]) / w[i].sum()  # the optimal intercept
                assert objective(c, b0, i) >= best - 1e-12


# ---------------------------------------------------------------------- analytic: Shapley values
def _additive_truth(model, x, base, target, ids, n):
    gain = (model.h(x.unsqueeze(1)) - model.h(base.unsqueeze(1)))[:, target].detach()
    return _group_sum(gain, ids, n)


@pytest.mark.parametrize("n_samples", [1, 5])
def test_shapley_value_sampling_exact_on_additive_model(n_samples):
    x = _x()
    model = Additive(x.shape[1:]).eval()
    out = ShapleyValueSampling(model, groups=SEGMENTS, n_samples=n_samples, substrate=0.3, generator=_gen())
    values = out.explain(x, target=2).info["group_values"]
    expected = _additive_truth(model, x, torch.full_like(x, 0.3), 2, SEG_IDS, 4)
    torch.testing.assert_close(values, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_samples", [12, 40])
def test_kernel_shap_exact_on_additive_model(n_samples):
    x = _x()
    model = Additive(x.shape[1:]).eval()
    out = KernelShap(model, groups=SEGMENTS, n_samples=n_samples, generator=_gen(1)).explain(x, target=0)
    expected = _additive_truth(model, x, torch.zeros_like(x), 0, SEG_IDS, 4)
    torch.testing.assert_close(out.info["group_values"], expected, rtol=1e-10, atol=1e-10)


def _exact_shapley(model, x, target, n):
    """Shapley values by enumerating every order of the 3 segments of Interacting (zero baseline)."""
    ids = torch.arange(x[0].numel()).reshape(x.shape[1:]) // (x[0].numel() // n)

    def v(coalition):
        keep = torch.isin(ids, torch.tensor(sorted(coalition), dtype=torch.long))
        return model(torch.where(keep, x, torch.zeros_like(x)))[:, target]

    out = torch.zeros(x.shape[0], n, dtype=F64)
    orders = list(itertools.permutations(range(n)))
    for order in orders:
        for j, g in enumerate(order):
            out[:, g] += v(order[: j + 1]) - v(order[:j])
    return out / len(orders), ids


def test_shapley_methods_converge_to_exact_shapley_values_with_interactions():
    x = _x(shape=(1, 9))
    model = Interacting().eval()
    exact, ids = _exact_shapley(model, x, 0, 3)
    svs = ShapleyValueSampling(model, groups=ids, n_samples=2000, generator=_gen(2)).explain(x, 0)
    scale = float(exact.abs().max())
    torch.testing.assert_close(svs.info["group_values"], exact, rtol=0, atol=0.03 * scale)
    # efficiency holds exactly for every estimate
    f0 = model(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(svs.info["group_values"].sum(1), svs.scores - f0, rtol=1e-12, atol=1e-12)
    ks = KernelShap(model, groups=ids, n_samples=200, generator=_gen(2)).explain(x, 0)
    torch.testing.assert_close(ks.info["group_values"].sum(1), ks.scores - f0, rtol=1e-12, atol=1e-12)
    # with 3 groups the two sizes 1 and 2 span the regression: Kernel SHAP is exact in the limit
    torch.testing.assert_close(ks.info["group_values"], exact, rtol=0, atol=0.05 * scale)


@pytest.mark.parametrize("method", ["svs", "kernel"])
def test_efficiency_on_a_cnn(method):
    model = toy_model("image")
    x = toy_input("image", 3)
    groups = patch_groups(4)
    make = ShapleyValueSampling if method == "svs" else KernelShap
    out = make(model, groups=groups, n_samples=7, substrate=0.2, generator=_gen()).explain(x, target=1)
    f0 = model(torch.full_like(x, 0.2))[:, 1].detach()
    torch.testing.assert_close(out.info["group_values"].sum(1), out.scores - f0, rtol=1e-12, atol=1e-12)


def test_random_methods_reproducible_and_batch_of_draws_shared():
    x = _x()
    model = Additive(x.shape[1:]).eval()
    for make in (ShapleyValueSampling, KernelShap, Lime):
        e = make(model, groups=SEGMENTS, n_samples=5, generator=_gen(8))
        a = e.explain(x, 1).values
        b = make(model, groups=SEGMENTS, n_samples=5, generator=_gen(8)).explain(x, 1).values
        assert torch.equal(a, b)
        alone = make(model, groups=SEGMENTS, n_samples=5, generator=_gen(8)).explain(x[1:2], 1).values
        torch.testing.assert_close(alone, a[1:2], rtol=1e-9, atol=1e-10)


def test_chunking_does_not_change_values_and_no_global_rng():
    model = toy_model("signal")
    x = toy_input("signal", 3)
    state = torch.random.get_rng_state()
    for make in (ShapleyValueSampling, KernelShap, Lime):
        ref = make(model, groups=time_segments(5), n_samples=4, generator=_gen(1)).explain(x, 2).values
        one = make(model, groups=time_segments(5), n_samples=4, generator=_gen(1), batch_size=1).explain(x, 2)
        torch.testing.assert_close(one.values, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------------- groups in a domain
def test_band_groups_in_fourier_give_per_band_attributions():
    fs, n = 64.0, 128
    t = torch.arange(n, dtype=F64) / fs
    x = torch.stack([torch.sin(2 * math.pi * 10 * t) + 0.5 * torch.cos(2 * math.pi * 25 * t)] * 2)[:, None]
    # score 0: the projection on a 10 Hz sine (its band only); score 1: on a 25 Hz cosine
    templates = torch.stack([torch.sin(2 * math.pi * 10 * t), torch.cos(2 * math.pi * 25 * t)])
    model = nn.Sequential(nn.Flatten(), nn.Linear(n, 2, bias=False)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(templates)
    fourier = sl.Fourier(fs=fs)
    groups = band_groups(fourier, "low:0-8,alpha:8-12,mid:12-20,high:20-32", x=x)
    for target, band in ((0, 1), (1, 3)):
        attr = sl.InDomain(FeatureAblation(model, groups=groups), fourier).explain(x, target=target)
        assert attr.info["group_names"] == ["low", "alpha", "mid", "high"]
        values = attr.info["group_values"]  # (B, 4): one value per band
        expected = torch.zeros_like(values)
        expected[:, band] = attr.scores  # removing the band removes the whole score
        torch.testing.assert_close(values, expected, rtol=1e-9, atol=1e-9)
        assert str(attr.layout) == "b c f" and attr.values.shape == (2, 1, n // 2 + 1)
        freqs = attr.domain.coordinates()["f"]
        inside = (freqs >= 8) & (freqs < 12) if band == 1 else (freqs >= 20)
        torch.testing.assert_close(attr.values[0, 0, inside], values[0, band].expand(int(inside.sum())))
    # Shapley values over bands equal the drops on this linear (additive) model
    fa = sl.InDomain(FeatureAblation(model, groups=groups), fourier).explain(x, 0).info["group_values"]
    for make in (ShapleyValueSampling, KernelShap):
        e = sl.InDomain(make(model, groups=groups, n_samples=6, generator=_gen()), fourier)
        torch.testing.assert_close(e.explain(x, 0).info["group_values"], fa, rtol=1e-9, atol=1e-9)


def test_band_groups_other_and_names():
    fourier = sl.Fourier(fs=100.0, n=200)
    g = band_groups(fourier, "eeg")
    ids = g.resolve((1, 101, 2), Layout("b c f r"))
    assert ids.names == ["delta", "theta", "alpha", "beta", "gamma", "other"]  # gamma clipped to 50 Hz
    assert ids.ids.shape == (1, 1, 101, 1)
    freqs = torch.fft.rfftfreq(200, 1 / 100.0)
    assert int(ids.ids[0, 0, 20, 0]) == ids.names.index("alpha")  # 10 Hz
    assert ids.names[int(ids.ids[0, 0, 0, 0])] == "other"  # DC lies outside the EEG bands
    assert freqs[20] == 10.0
    with pytest.raises(ParameterError, match="outside every band"):
        band_groups(fourier, "eeg", other=False).resolve((1, 101, 2), Layout("b c f r"))
    with pytest.raises(ShapeError, match="frequency bins"):
        g.resolve((1, 50, 2), Layout("b c f r"))


def test_component_groups_in_ica_give_per_component_drops():
    x = _x(shape=(3, 16))
    mixing = torch.randn(3, 3, generator=_gen(4), dtype=F64) + 2 * torch.eye(3, dtype=F64)
    mean = torch.randn(3, generator=_gen(5), dtype=F64)
    ica = sl.ICA.from_matrices(mixing, mean)
    model = Linear(x.shape[1:]).eval()
    attr = sl.InDomain(FeatureAblation(model, groups=component_groups()), ica).explain(x, target=0)
    sources = torch.linalg.solve(mixing, (x - mean[:, None]))  # s = A^-1 (x - mean)
    w = model.w[0].detach()  # (3, 16)
    expected = torch.einsum("ct,ck,bkt->bk", w, mixing, sources)  # removing source k drops w . A_k s_k
    torch.testing.assert_close(attr.info["group_values"], expected, rtol=1e-9, atol=1e-9)
    assert str(attr.layout) == "b k t" and attr.values.shape == (3, 3, 1)


# --------------------------------------------------------------------------- Occlusion(groups=)
def test_occlusion_with_groups_equals_feature_ablation():
    model = toy_model("image")
    x = toy_input("image", 3)
    for groups in (patch_groups(4), channel_groups(), cross_groups(channel_groups(), patch_groups(4))):
        occ = sl.Occlusion(model, groups=groups, substrate=0.3, progress=False).explain(x, 2).values
        fa = FeatureAblation(model, groups=groups, substrate=0.3).explain(x, 2).values
        # Occlusion fills with float masks (base + m (x - base)), FeatureAblation selects exactly
        torch.testing.assert_close(occ, fa, rtol=1e-12, atol=1e-14)


def test_occlusion_groups_arguments():
    model = toy_model("signal")
    with pytest.raises(ParameterError, match="groups=... alone"):
        sl.Occlusion(model, window=3, groups=time_segments(2))
    with pytest.raises(ParameterError, match="groups="):
        sl.Occlusion(model)
    x = toy_input("signal", 2)
    per_sample = torch.zeros(2, 1, 20, dtype=torch.long)
    with pytest.raises(ParameterError, match="shared by every sample"):
        sl.Occlusion(model, groups=per_sample, progress=False).explain(x, 0)


def test_occlusion_default_unchanged_by_groups_parameter():
    """The window path is the one of before: disjoint windows (stride = window) by default."""
    model = toy_model("signal")
    x = toy_input("signal", 2)
    a = sl.Occlusion(model, window={"t": 5}, progress=False).explain(x, 1).values
    b = sl.Occlusion(model, window={"t": 5}, stride={"t": 5}, progress=False).explain(x, 1).values
    c = FeatureAblation(model, groups=time_segments(4)).explain(x, 1).values
    assert torch.equal(a, b) and torch.equal(a, c)


# ------------------------------------------------------------------------------ group builders
def test_group_constructors():
    lay = Layout("b c h w")
    p = patch_groups(2).resolve((3, 4, 6), lay)
    assert p.ids.shape == (1, 1, 4, 6) and p.n_groups == 6
    assert p.ids[0, 0, :2, :2].unique().tolist() == [0] and int(p.ids[0, 0, 3, 5]) == 5
    v = patch_groups({"t": 2, "h": 3, "w": 3}).resolve((3, 4, 6, 6), Layout("b c t h w"))
    assert v.n_groups == 8 and v.ids.shape == (1, 1, 4, 6, 6)
    c = channel_groups().resolve((3, 4, 6), lay)
    assert c.ids.flatten().tolist() == [0, 1, 2] and c.names == ["c0", "c1", "c2"]
    a = axis_groups("w", 4).resolve((3, 4, 6), lay)
    assert a.ids.flatten().tolist() == [0, 0, 0, 0, 1, 1] and a.names == ["w0-3", "w4-5"]
    s = time_segments(boundaries=[3, 7]).resolve((2, 10), Layout("b c t"))
    assert s.ids.flatten().tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    x = cross_groups(channel_groups(), time_segments(2)).resolve((2, 4), Layout("b c t"))
    assert x.ids.reshape(2, 4).tolist() == [[0, 0, 1, 1], [2, 2, 3, 3]] and x.names[1] == "c0/1"
    e = element_groups().resolve((2, 3), Layout("b c t"))
    assert e.n_groups == 6 and e.ids.shape == (1, 2, 3)


def test_group_mask_validation():
    lay = Layout("b c t")
    with pytest.raises(ParameterError, match="integer tensor"):
        GroupMask(torch.zeros(1, 5))
    with pytest.raises(ParameterError, match=">= 0"):
        GroupMask(torch.tensor([[-1, 0]]))
    with pytest.raises(ShapeError, match="do not broadcast"):
        GroupMask(torch.zeros(1, 7, dtype=torch.long)).resolve((2, 5), lay)
    with pytest.raises(ParameterError, match="names"):
        GroupMask(torch.tensor([[0, 1]]), names=["a"])
    assert GroupMask(torch.tensor([[0, 1, 1, 2, 2]])).resolve((2, 5), lay).n_groups == 3
    with pytest.raises(ParameterError, match="groups"):
        FeatureAblation(Linear((2, 5)), groups=torch.zeros(2, 5))
    from salience.explainers.occlusion import _GroupMasker

    masks = _GroupMasker(time_segments(2)).sample((2, 4), lay)
    assert masks.tolist() == [[[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0, 0.0]]]


def test_superpixels_per_sample_from_slic():
    segmentation = pytest.importorskip("skimage.segmentation")
    model = toy_model("image")
    x = toy_input("image", 2)
    labels = torch.stack(
        [
            torch.from_numpy(
                segmentation.slic(xi.permute(1, 2, 0).numpy(), n_segments=4, start_label=1, channel_axis=-1)
            )
            for xi in x
        ]
    )
    groups = superpixel_groups(labels)
    out = FeatureAblation(model, groups=groups).explain(x, target=1)
    assert out.values.shape == (2, 1, 8, 8)
    for i in range(2):  # each sample with its own segmentation, alone
        alone = FeatureAblation(model, groups=superpixel_groups(labels[i])).explain(x[i : i + 1], 1)
        torch.testing.assert_close(out.values[i : i + 1], alone.values, rtol=1e-12, atol=1e-12)
        n = int(labels[i].unique().numel())
        ref = FeatureAblation(model, groups=(labels[i] - labels[i].min())[None]).explain(x[i : i + 1], 1)
        if int(labels[i].max() - labels[i].min()) + 1 == n:  # consecutive labels: same groups
            torch.testing.assert_close(alone.values, ref.values)
    with pytest.raises(ShapeError, match="per-sample group ids"):
        FeatureAblation(model, groups=groups).explain(x[:1], 1)
