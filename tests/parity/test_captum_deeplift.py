"""Parity with Captum for DeepLift, DeepLiftShap, GradientShap and IG(multiply_by_inputs=False),
float64, on small 1-D and 2-D CNNs with ReLU, sigmoid, tanh and max pooling.

Definitional differences pinned here:
- GradientShap: Captum draws from NumPy's and torch's global RNGs (baseline indices with
  ``np.random.choice``, path points with ``np.random.uniform``, noise with ``torch.normal``);
  ours from a ``torch.Generator``. The test feeds Captum our draws (the three functions replaced
  for the duration of its call), so the comparison is exact.
- DeepLiftShap: Captum returns one delta per (sample, baseline) pair; ours is their mean per
  sample.
- DeepLift on modules Captum has no rule for (GELU): Captum keeps the plain gradient, ours the
  rescale rule (pinned: Captum's attributions do not sum to f(x) - f(x0), ours do).
- Two Captum 0.9.0 bugs, fixed upstream after that release, are not reproduced: two covered
  modules in a row (ReLU then MaxPool) make the first use the gradient from before the second's
  rule (captum#1104, PR #1843; pinned below: Captum's delta is not zero, ours is), and the
  maxpool rule's fallback where ``|x - x0| < eps`` uses the first sample's gradient for the
  whole batch (captum#1276, PR #1847). The parity models therefore separate covered modules by
  a linear layer, and the tie test compares one sample at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from salience.explainers.deeplift import DeepLift, DeepLiftShap
from salience.explainers.gradient_shap import GradientShap
from salience.explainers.integrated_gradients import IntegratedGradients

captum_attr = pytest.importorskip("captum.attr")
pytestmark = [pytest.mark.parity, pytest.mark.filterwarnings("ignore::UserWarning")]

TOL = dict(rtol=1e-9, atol=1e-11)


def _net(dims: int, act: str, seed: int = 0) -> nn.Module:
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d}[dims]
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    side = 16 if dims == 1 else 8
    flat = 5 * (side // 2 - 2) ** dims
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # covered modules never follow one another (captum#1104, see the module docstring)
        model = nn.Sequential(
            conv(2, 4, 3, padding=1),
            acts[act](),
            conv(4, 4, 1),
            pool(2),
            conv(4, 5, 3),
            acts[act](),
            nn.Flatten(),
            nn.Linear(flat, 6),
            nn.Tanh(),
            nn.Linear(6, 3),
        )
    return model.double().eval()


def _input(dims: int, batch: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (2, 16) if dims == 1 else (2, 8, 8)
    return torch.randn((batch, *shape), generator=g, dtype=torch.float64)


CASES = [(d, a) for d in (1, 2) for a in ("relu", "sigmoid", "tanh")]
TARGET = torch.tensor([0, 2, 1])


@pytest.mark.parametrize("dims, act", CASES)
@pytest.mark.parametrize("multiply", [True, False])
def test_deeplift(dims, act, multiply):
    model, x = _net(dims, act), _input(dims)
    x0 = 0.3 * _input(dims, seed=5)
    theirs, their_delta = captum_attr.DeepLift(model, multiply_by_inputs=multiply).attribute(
        x, baselines=x0, target=TARGET, return_convergence_delta=True
    )
    attr = DeepLift(model, baseline=x0, multiply_by_inputs=multiply, batch_size=2).explain(x, TARGET)
    torch.testing.assert_close(attr.values, theirs, **TOL)
    if multiply:
        torch.testing.assert_close(attr.delta, their_delta, rtol=0, atol=1e-12)
        assert attr.delta.abs().max() < 1e-12
    else:
        assert attr.delta is None


@pytest.mark.parametrize("dims", [1, 2])
def test_deeplift_zero_baseline_and_ties(dims):
    # a zero baseline gives x - x0 = 0 at padded/zero inputs: Captum's eps branch (the plain
    # derivative) is taken where the input equals the reference
    model, x = _net(dims, "relu"), _input(dims)
    x[:, :, :3] = 0.0
    ours = DeepLift(model).explain(x, TARGET)
    assert ours.delta.abs().max() < 1e-12
    for i in range(3):  # one sample at a time: captum#1276 (see the module docstring)
        theirs = captum_attr.DeepLift(model).attribute(x[i : i + 1], baselines=0.0, target=TARGET[i : i + 1])
        torch.testing.assert_close(ours.values[i : i + 1], theirs, **TOL)


@pytest.mark.parametrize("dims, act", CASES)
def test_deeplift_shap(dims, act):
    model, x = _net(dims, act), _input(dims)
    dist = torch.randn((4, *x.shape[1:]), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    theirs, their_delta = captum_attr.DeepLiftShap(model).attribute(
        x, baselines=dist, target=TARGET, return_convergence_delta=True
    )
    attr = DeepLiftShap(model, baselines=dist, batch_size=5).explain(x, TARGET)
    torch.testing.assert_close(attr.values, theirs, **TOL)
    torch.testing.assert_close(attr.delta, their_delta.reshape(3, 4).mean(1), rtol=0, atol=1e-12)


def _their_draws(monkeypatch, idx, alpha, noise):
    """Hand Captum our draws: its baseline choice, path points and noise calls return them."""
    monkeypatch.setattr(np.random, "choice", lambda n, size: idx.reshape(-1).numpy())
    monkeypatch.setattr(np.random, "uniform", lambda lo, hi, size: alpha.reshape(-1).numpy())
    monkeypatch.setattr(torch, "normal", lambda mean, std: noise.reshape(std.shape).clone())


def _our_draws(seed, b, n, k, shape, stdevs):
    # GradientShap's order: baseline indices, path points, then the noise
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(k, (b, n), generator=g)
    alpha = torch.rand((b, n), generator=g, dtype=torch.float64)
    noise = stdevs * torch.randn((b, n, *shape), generator=g, dtype=torch.float64)
    return idx, alpha, noise


@pytest.mark.parametrize("dims, act", [(1, "relu"), (2, "tanh"), (2, "sigmoid")])
@pytest.mark.parametrize("stdevs", [0.0, 0.2])
@pytest.mark.parametrize("multiply", [True, False])
def test_gradient_shap_same_draws(monkeypatch, dims, act, stdevs, multiply):
    model, x = _net(dims, act), _input(dims)
    dist = torch.randn((5, *x.shape[1:]), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    n = 4
    ours = GradientShap(
        model,
        baselines=dist,
        n_samples=n,
        stdevs=stdevs,
        multiply_by_inputs=multiply,
        generator=torch.Generator().manual_seed(11),
    ).explain(x, TARGET)
    idx, alpha, noise = _our_draws(11, 3, n, 5, x.shape[1:], stdevs)
    with monkeypatch.context() as mp:
        _their_draws(mp, idx, alpha, noise)
        theirs = captum_attr.GradientShap(model, multiply_by_inputs=multiply).attribute(
            x, baselines=dist, target=TARGET, n_samples=n, stdevs=stdevs
        )
    torch.testing.assert_close(ours.values, theirs, **TOL)


def test_gradient_shap_in_expectation():
    # no shared draws: Captum with its global RNG against ours with a generator, 4000 draws each;
    # on a model linear in x the expectation is (x - E[b]) * w exactly
    torch.manual_seed(0)
    np.random.seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 16, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    x = _input(1)
    dist = 0.5 * torch.randn((6, 2, 16), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    n = 4000
    theirs = captum_attr.GradientShap(model).attribute(x, baselines=dist, target=TARGET, n_samples=n)
    ours = GradientShap(
        model, baselines=dist, n_samples=n, generator=torch.Generator().manual_seed(1)
    ).explain(x, TARGET)
    # both estimate the same expectation: the Monte-Carlo error of 4000 draws is a few 1e-3 here
    scale = theirs.abs().max()
    assert (ours.values - theirs).abs().max() < 0.05 * scale


@pytest.mark.parametrize("rule", ["riemann_right", "gausslegendre", "riemann_middle"])
def test_ig_without_inputs(rule):
    model, x = _net(1, "tanh"), _input(1)
    x0 = 0.3 * _input(1, seed=5)
    theirs = captum_attr.IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, baselines=x0, target=TARGET, n_steps=16, method=rule
    )
    ours = IntegratedGradients(model, n_steps=16, rule=rule, baseline=x0, multiply_by_inputs=False).explain(
        x, TARGET
    )
    # Captum keeps its step sizes in float32 (see test_captum_gradient.py)
    torch.testing.assert_close(ours.values, theirs, rtol=2e-7, atol=1e-9)
    assert ours.delta is None


def test_gelu_difference_pinned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 2)).double().eval()
    x = torch.randn(4, 1, 5, dtype=torch.float64)
    x0 = torch.randn(4, 1, 5, dtype=torch.float64)
    t = torch.tensor([0, 1, 0, 1])
    theirs, their_delta = captum_attr.DeepLift(model).attribute(
        x, baselines=x0, target=t, return_convergence_delta=True
    )
    ours = DeepLift(model, baseline=x0).explain(x, t)
    assert their_delta.abs().max() > 1e-3  # Captum leaves GELU at its gradient
    assert ours.delta.abs().max() < 1e-12  # the rescale rule covers it
    assert not torch.allclose(ours.values, theirs)


def test_adjacent_modules_difference_pinned():
    # ReLU directly followed by MaxPool: Captum 0.9.0's ReLU rule reads the gradient from before
    # the maxpool rule (captum#1104), so its attributions miss f(x) - f(x0); ours sum to it
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(32, 3)
    ).double()
    model.eval()
    x, x0 = _input(1), 0.3 * _input(1, seed=5)
    _, their_delta = captum_attr.DeepLift(model).attribute(
        x, baselines=x0, target=TARGET, return_convergence_delta=True
    )
    ours = DeepLift(model, baseline=x0).explain(x, TARGET)
    assert their_delta.abs().max() > 1e-3
    assert ours.delta.abs().max() < 1e-12
