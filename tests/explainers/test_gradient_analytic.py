"""Closed-form answers in float64: linear and separable models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import salience as sl
from salience.explainers.integrated_gradients import RULES, quadrature
from toy_models import Linear, Separable

D = torch.float64


@pytest.fixture
def linear():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3, 2, 7, generator=g, dtype=D)
    return Linear(w, torch.randn(3, generator=g, dtype=D)).eval(), w


@pytest.fixture
def x():
    return torch.randn(4, 2, 7, generator=torch.Generator().manual_seed(4), dtype=D)


def test_gradient_is_weight(linear, x):
    model, w = linear
    attr = sl.Gradient(model).explain(x, target=1)
    torch.testing.assert_close(attr.values, w[1].expand_as(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(attr.scores, model(x)[:, 1])


def test_input_x_gradient(linear, x):
    model, w = linear
    torch.testing.assert_close(sl.InputXGradient(model).explain(x, target=2).values, w[2] * x)


def test_saliency_signal_keeps_channels_image_reduces(linear, x):
    model, w = linear
    torch.testing.assert_close(sl.Saliency(model).explain(x, target=0).values, w[0].abs().expand_as(x))
    # the same model seen as images (N, 2, 7, 1): max over channels
    xi = x[..., None]
    out = sl.Saliency(lambda t: model(t.squeeze(-1))).explain(xi, target=0).values
    assert out.shape == (4, 1, 7, 1)
    torch.testing.assert_close(out[:, 0, :, 0], w[0].abs().amax(0).expand(4, 7))
    kept = sl.Saliency(lambda t: model(t.squeeze(-1)), reduce_channels=False).explain(xi, target=0).values
    assert kept.shape == xi.shape


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n_steps", [2, 5, 17])
@pytest.mark.parametrize("baseline", ["zeros", 0.5, "mean", "tensor", "callable"])
def test_ig_linear_exact_for_every_rule(linear, x, rule, n_steps, baseline):
    model, w = linear
    if baseline == "tensor":
        baseline = torch.randn(1, 2, 7, generator=torch.Generator().manual_seed(5), dtype=D)
    elif baseline == "callable":
        baseline = lambda t: t.flip(-1)  # noqa: E731
    attr = sl.IntegratedGradients(model, n_steps=n_steps, rule=rule, baseline=baseline).explain(x, target=1)
    if isinstance(baseline, str):
        x0 = torch.zeros_like(x) if baseline == "zeros" else x.mean(-1, keepdim=True).expand_as(x)
    elif isinstance(baseline, float):
        x0 = torch.full_like(x, baseline)
    elif callable(baseline) and not isinstance(baseline, torch.Tensor):
        x0 = baseline(x)
    else:
        x0 = baseline.expand_as(x)
    torch.testing.assert_close(attr.values, w[1] * (x - x0), rtol=1e-12, atol=1e-12)
    assert attr.delta.abs().max() < 1e-12


@pytest.mark.parametrize(
    "n_samples, n_steps, batch_size",
    [(40, 3, 256), (40, 3, 5), (5, 20, 7), (5, 20, 256), (3, 64, 13)],
    ids=["gathered", "gathered-small-chunks", "per-sample-split", "per-sample-one-chunk", "per-sample-long"],
)
def test_ig_interpolants_any_chunking(n_samples, n_steps, batch_size):
    """Both ways of building the path rows (gathered, or sample by sample when a chunk spans few
    samples) give the exact interpolants: a quadratic model's IG is exact for the midpoint rule's
    weighted sum of gradients, and a reference sum over the same nodes matches."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(n_samples, 2, 5, generator=g, dtype=D)
    x0 = torch.randn(1, 2, 5, generator=g, dtype=D)

    def quad(t):
        return (t.flatten(1) ** 2).sum(1, keepdim=True) + t.flatten(1)[:, :1] ** 3

    ig = sl.IntegratedGradients(
        quad, n_steps=n_steps, rule="riemann_middle", baseline=x0, batch_size=batch_size
    )
    attr = ig.explain(x)
    alphas, weights = quadrature("riemann_middle", n_steps)
    ref = torch.zeros_like(x)
    for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
        p = (x0 + a * (x - x0)).requires_grad_(True)
        (gr,) = torch.autograd.grad(quad(p).sum(), p)
        ref += w * gr
    torch.testing.assert_close(attr.values, (x - x0) * ref, rtol=1e-12, atol=1e-12)


def test_ig_separable_converges_and_gap_shrinks():
    model = Separable().eval().eval()
    x = torch.tensor([[[1.0], [2.0], [1.5]], [[-0.5], [0.3], [3.0]]], dtype=D)
    exact = torch.stack([5 * x[:, 0, 0], x[:, 1, 0] ** 2, torch.sin(x[:, 2, 0])], 1)
    errors, gaps = [], []
    for n in (4, 16, 64, 256):
        attr = sl.IntegratedGradients(model, n_steps=n, rule="riemann_left").explain(x, target=0)
        errors.append(float((attr.values[:, :, 0] - exact).abs().max()))
        gaps.append(float(attr.delta.abs().max()))
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert errors[-1] < 0.02 and gaps[-1] < 0.02
    # Gauss-Legendre is exact to machine precision quickly on these smooth features
    gl = sl.IntegratedGradients(model, n_steps=20, rule="gausslegendre").explain(x, target=0)
    torch.testing.assert_close(gl.values[:, :, 0], exact, rtol=1e-10, atol=1e-10)


def test_ig_one_step_right_rule_is_grad_times_diff():
    model = Separable().eval().eval()
    x = torch.tensor([[[1.0], [2.0], [1.5]]], dtype=D)
    ig = sl.IntegratedGradients(model, n_steps=1, rule="riemann_right").explain(x, target=0).values
    g = sl.Gradient(model).explain(x, target=0).values
    torch.testing.assert_close(ig, g * x)


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_weights_integrate_polynomials(rule):
    a, w = quadrature(rule, 8)
    assert a.min() >= 0 and a.max() <= 1
    assert abs(float(w.sum()) - 1) < 1e-12  # integrates constants exactly
    np.testing.assert_allclose(
        float((w * a).sum()), 0.5, atol=1e-12 if rule != "riemann_left" and rule != "riemann_right" else 0.07
    )


def test_ig_memory_is_bounded_by_batch_size(linear, x):
    from toy_models import Counting

    model = Counting(linear[0])
    sl.IntegratedGradients(model, n_steps=50, batch_size=16).explain(x, target=0)
    assert max(model.rows) <= 16 and sum(model.rows) == 4 * 50


def test_default_batch_size_is_bounded():
    from toy_models import Counting

    model = Counting(
        sl_model := torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 10, 2)).double().eval()
    )
    x = torch.randn(8, 8, 10, dtype=D, generator=torch.Generator().manual_seed(0))
    sl.IntegratedGradients(model, n_steps=100).explain(x, target=0)
    assert max(model.rows) == 256 and sum(model.rows) == 800
    del sl_model


def test_default_batch_size_budget_depends_on_device():
    from salience.engine import default_batch_size

    assert default_batch_size(3 * 64 * 64) == 2**19 // (3 * 64 * 64) == 42  # CPU: cache-sized
    assert default_batch_size(3 * 64 * 64, "cpu") == 42
    assert default_batch_size(3 * 64 * 64, torch.device("cuda", 0)) == 256  # 4M elements: capped
    assert default_batch_size(3 * 224 * 224, "cuda") == 2**22 // (3 * 224 * 224) == 27
    assert default_batch_size(10**7) == 1  # one huge row: still one row per call


def test_smoothgrad_sigma_zero_equals_inner(linear, x):
    model, _ = linear
    inner = sl.IntegratedGradients(model, n_steps=3)
    a = sl.SmoothGrad(inner, n_samples=4, sigma=0.0, generator=torch.Generator().manual_seed(0)).explain(x, 1)
    torch.testing.assert_close(a.values, inner.explain(x, 1).values)
    sq = sl.SmoothGrad(
        inner, n_samples=4, sigma=0.0, kind="square", generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(sq.explain(x, 1).values, inner.explain(x, 1).values ** 2)
    var = sl.SmoothGrad(inner, n_samples=4, sigma=0.0, kind="var", generator=torch.Generator().manual_seed(0))
    assert var.explain(x, 1).values.abs().max() < 1e-12


def test_smoothgrad_matches_manual_noise():
    model = Separable().eval().eval()
    x = torch.tensor([[[1.0], [2.0], [1.5]], [[0.0], [-1.0], [0.5]]], dtype=D)
    n, sigma = 7, 0.2
    out = {
        k: sl.SmoothGrad(
            sl.Gradient(model), n_samples=n, sigma=sigma, kind=k, generator=torch.Generator().manual_seed(11)
        )
        .explain(x, 0)
        .values
        for k in ("mean", "square", "var")
    }
    g = torch.Generator().manual_seed(11)
    noise = torch.randn((2, n, 3, 1), generator=g, dtype=D)
    rng = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).reshape(2, 1, 1, 1)
    xn = x[:, None] + sigma * rng * noise
    grads = torch.stack(
        [torch.full_like(xn[..., 0, 0], 5.0), 2 * xn[..., 1, 0], torch.cos(xn[..., 2, 0])], -1
    )[..., None]
    torch.testing.assert_close(out["mean"], grads.mean(1))
    torch.testing.assert_close(out["square"], (grads**2).mean(1))
    torch.testing.assert_close(out["var"], grads.var(1, unbiased=False))
    assert out["var"][:, 0].abs().max() < 1e-12  # the linear feature has no gradient variance


def test_smoothgrad_without_generator_leaves_global_rng(linear, x):
    state = torch.random.get_rng_state()
    sl.SmoothGrad(sl.Gradient(linear[0]), n_samples=3).explain(x, 0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_attribution_numpy(linear, x):
    attr = sl.Gradient(linear[0]).explain(x, target=0)
    arr = np.asarray(attr)
    assert isinstance(arr, np.ndarray) and arr.shape == x.shape
    np.testing.assert_array_equal(attr.numpy(), arr)
    assert "Gradient" in repr(attr) and attr.domain is None and attr.delta is None
    assert str(attr.layout) == "b c t"
