"""Similarity between maps: references (scipy, skimage), analytic cases, batch invariance, errors,
and use as ``model_randomisation``'s ``similarity=``."""

from __future__ import annotations

import functools

import pytest
import scipy.stats as ss
import torch
from torch import nn

import salience as sl
from salience.errors import ParameterError, ShapeError
from salience.metrics import model_randomisation
from salience.metrics import similarity as S

skimage_metrics = pytest.importorskip("skimage.metrics")

FUNCS = [S.spearman, S.kendall_tau, S.pearson, S.cosine, S.ssim, S.top_k_overlap]


def _pair(seed=0, shape=(4, 1, 12, 13), noise=1.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g, dtype=torch.float64)
    return a, a + noise * torch.randn(shape, generator=g, dtype=torch.float64)


def _skimage(a, b, **kw):
    out = []
    for x, y in zip(a.numpy(), b.numpy(), strict=True):
        rng = max(x.max(), y.max()) - min(x.min(), y.min())
        out.append(skimage_metrics.structural_similarity(x, y, channel_axis=0, data_range=rng, **kw))
    return torch.tensor(out, dtype=torch.float64)


WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


# ---------------------------------------------------------------------------- references
@pytest.mark.parametrize("n", [2, 3, 37, 64, 1000])
def test_kendall_tau_matches_scipy_with_ties(n):
    g = torch.Generator().manual_seed(n)
    a = torch.randint(0, 5, (3, n), generator=g).double()
    b = torch.randint(0, 4, (3, n), generator=g).double() + 0.1 * a
    ref = [ss.kendalltau(x, y)[0] for x, y in zip(a.numpy(), b.numpy(), strict=True)]
    torch.testing.assert_close(S.kendall_tau(a, b), torch.tensor(ref, dtype=torch.float64), equal_nan=True)


def test_kendall_tau_large_map_matches_scipy():
    a, b = _pair(1, shape=(2, 3, 40, 40))  # 4800 values: no n x n pair matrix
    ref = [ss.kendalltau(x, y)[0] for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy(), strict=True)]
    torch.testing.assert_close(
        S.kendall_tau(a, b), torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=1e-12
    )


def test_spearman_and_pearson_match_scipy():
    a, b = _pair(2)
    a[:, :, 0] = 0.0  # ties
    fa, fb = a.flatten(1).numpy(), b.flatten(1).numpy()
    sp = [ss.spearmanr(x, y)[0] for x, y in zip(fa, fb, strict=True)]
    pe = [ss.pearsonr(x, y)[0] for x, y in zip(fa, fb, strict=True)]
    torch.testing.assert_close(S.spearman(a, b), torch.tensor(sp, dtype=torch.float64))
    torch.testing.assert_close(S.pearson(a, b), torch.tensor(pe, dtype=torch.float64))


def test_cosine_direct():
    a, b = _pair(3)
    fa, fb = a.flatten(1), b.flatten(1)
    ref = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1))
    torch.testing.assert_close(S.cosine(a, b), ref)


@pytest.mark.parametrize("shape", [(3, 1, 40), (3, 2, 14, 15), (2, 1, 12, 11, 13)])
def test_ssim_matches_skimage_gaussian(shape):
    a, b = _pair(4, shape=shape)
    torch.testing.assert_close(S.ssim(a, b), _skimage(a, b, **WANG), rtol=1e-10, atol=1e-10)


def test_ssim_uniform_window_matches_skimage_default():
    a, b = _pair(5, shape=(3, 2, 10, 9))
    ours = S.ssim(a, b, window="uniform", win_size=5, sample_covariance=True)
    torch.testing.assert_close(ours, _skimage(a, b, win_size=5), rtol=1e-10, atol=1e-10)


def test_ssim_fixed_data_range_and_constants():
    a, b = _pair(6, shape=(2, 1, 16, 16))
    kw = {"gaussian_weights": True, "sigma": 1.0, "use_sample_covariance": False, "K1": 0.02, "K2": 0.05}
    ref = [
        skimage_metrics.structural_similarity(x[0], y[0], data_range=8.0, **kw)
        for x, y in zip(a.numpy(), b.numpy(), strict=True)
    ]
    ours = S.ssim(a, b, sigma=1.0, k1=0.02, k2=0.05, data_range=8.0)
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_ssim_shape_reshapes_flat_rows():
    a, b = _pair(7, shape=(2, 1, 12, 12))
    flat = S.ssim(a.flatten(1), b.flatten(1), shape=(1, 12, 12))
    torch.testing.assert_close(flat, S.ssim(a, b))


# ---------------------------------------------------------------------------- analytic
def test_identical_maps_score_one():
    a, _ = _pair(8)
    for f in FUNCS:
        torch.testing.assert_close(f(a, a), torch.ones(4, dtype=torch.float64), msg=f.__name__)


def test_reversed_order_scores_minus_one():
    a = torch.arange(10.0, dtype=torch.float64)[None].repeat(2, 1)
    for f in (S.spearman, S.kendall_tau, S.pearson):
        torch.testing.assert_close(f(a, -a), -torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(S.top_k_overlap(a, -a, k=5), torch.zeros(2, dtype=torch.float64))


def test_kendall_tau_small_example():
    # pairs (1,1)-(2,3) concordant, (1,1)-(3,2) concordant, (2,3)-(3,2) discordant: (2 - 1) / 3
    a = torch.tensor([[1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 3.0, 2.0]])
    torch.testing.assert_close(S.kendall_tau(a, b), torch.tensor([1 / 3]))


def test_constant_maps_are_nan():
    a = torch.ones(2, 20, dtype=torch.float64)
    b = torch.randn(2, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for f in (S.spearman, S.kendall_tau, S.pearson):
        assert torch.isnan(f(a, b)).all()
    assert torch.isnan(S.ssim(a, a)).all()  # zero data range: C1 = C2 = 0


def test_ssim_is_invariant_to_a_common_scale_and_symmetric():
    a, b = _pair(9, shape=(2, 1, 12, 12))
    torch.testing.assert_close(S.ssim(a * 1e-30, b * 1e-30), S.ssim(a, b))
    torch.testing.assert_close(S.ssim(b, a), S.ssim(a, b))
    assert (S.ssim(a, b) < S.ssim(a, a + 0.1 * (b - a))).all()  # less noise, more similar


def test_top_k_overlap_counts_and_ties():
    a = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    b = torch.tensor([[5.0, 0.0, 4.0, 1.0, 2.0, 3.0]])
    torch.testing.assert_close(S.top_k_overlap(a, b, k=3), torch.tensor([2 / 3]))  # {0,1,2} & {0,2,5}
    torch.testing.assert_close(S.top_k_overlap(a, b, k=0.5), torch.tensor([2 / 3]))  # round(0.5 * 6)
    ties = torch.zeros(1, 6)  # ties broken by position: the first k
    torch.testing.assert_close(S.top_k_overlap(ties, a, k=2), torch.tensor([1.0]))


def test_batch_invariance_and_attribution_inputs():
    a, b = _pair(10)
    for f in FUNCS:
        whole = f(a, b)
        single = torch.cat([f(a[i : i + 1], b[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(whole, single, msg=f.__name__)
    model = nn.Sequential(nn.Flatten(), nn.Linear(156, 2)).double().eval()
    att = sl.Gradient(model)(a, 0)  # an Attribution
    torch.testing.assert_close(S.spearman(att, b), S.spearman(att.values, b))


def test_inputs_are_not_modified():
    a, b = _pair(11)
    a0, b0 = a.clone(), b.clone()
    for f in FUNCS:
        f(a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)


# ---------------------------------------------------------------------------- errors
def test_errors_name_the_parameter():
    a, b = _pair(12, shape=(2, 1, 8, 8))
    with pytest.raises(ShapeError, match="same shape"):
        S.spearman(a, b[:, :, :4])
    with pytest.raises(ParameterError, match="'k'.*top_k_overlap"):
        S.top_k_overlap(a, b, k=65)
    with pytest.raises(ParameterError, match="'k'"):
        S.top_k_overlap(a, b, k=0)
    with pytest.raises(ParameterError, match="win_size"):
        S.ssim(a, b, win_size=7)
    with pytest.raises(ParameterError, match="odd"):
        S.ssim(a, b, window="uniform", win_size=4)
    with pytest.raises(ShapeError, match="window"):
        S.ssim(a, b)  # 11 taps > 8
    with pytest.raises(ShapeError, match="shape"):
        S.ssim(a.flatten(1), b.flatten(1), shape=(1, 7, 7))
    with pytest.raises(ParameterError, match="window"):
        S.ssim(a, b, window="box")
    with pytest.raises(ShapeError, match="window"):
        S.ssim(a, b, sigma=1e300)  # refused before any window is built
    with pytest.raises(ParameterError, match="'k1'"):
        S.ssim(a, b, k1=2.0)
    with pytest.raises(ShapeError, match="at least 2"):
        S.kendall_tau(a[:, :, :1, :1], b[:, :, :1, :1])


# ---------------------------------------------------------------------------- model_randomisation
def test_model_randomisation_accepts_the_functions():
    torch.manual_seed(0)
    model = (
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 12 * 12, 3))
        .double()
        .eval()
    )
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expl = sl.Gradient(model)
    gen = functools.partial(torch.Generator().manual_seed, 3)
    builtin = model_randomisation(expl, x, 0, similarity="spearman", generator=gen())
    ours = model_randomisation(expl, x, 0, similarity=S.spearman, generator=gen())
    torch.testing.assert_close(ours, builtin)
    for sim in (S.kendall_tau, functools.partial(S.ssim, shape=(1, 12, 12)), S.top_k_overlap):
        out = model_randomisation(expl, x, 0, similarity=sim, generator=gen())
        assert out.shape == (2, 2) and torch.isfinite(out).all()
