"""Parity with Captum for Saliency, InputXGradient and IntegratedGradients (float64).

Definitional differences pinned:
- Captum's ``Saliency(abs=True)`` keeps every channel; ours reduces images by the channel max
  (Xplique's convention), so images are compared with ``reduce_channels=False`` and the max is
  checked separately.
- IG: the same rule names map to the same nodes and weights; Captum defaults to
  ``gausslegendre``, we to ``riemann_trapezoid``, so every test names the rule.
- Captum's baseline "mean" does not exist; we pass our per-sample per-channel mean as a tensor.
- Captum's ``riemann_trapezoid`` has the right nodes (``linspace(0, 1, n)``) but step sizes
  ``1/n`` with halved ends, which sum to ``(n-1)/n``: it is not the trapezoid rule, and its
  completeness gap on a linear model is ``1/n`` of ``f(x) - f(x0)``. Ours uses the trapezoid
  weights ``1/(n-1)`` (halved ends), so ``captum = ours * (n-1)/n`` exactly.
- Captum computes its nodes in float32 (``torch.linspace(...).tolist()``) and casts its step sizes to float32 even for float64 inputs, so IG agrees to a
  relative 1e-7 (ours keeps the weights in the input's dtype); gradients agree to 1e-9.
"""

from __future__ import annotations

import pytest
import torch

import salience as sl
from salience.explainers.integrated_gradients import RULES
from toy_models import cnn, make_input

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.parity

KINDS = ["signal", "image"]
TOL = dict(rtol=1e-9, atol=1e-11)
IG_TOL = dict(rtol=2e-7, atol=1e-9)  # Captum's float32 step sizes


def _setup(kind):
    model = cnn({"signal": 1, "image": 2}[kind])
    x = make_input(kind, batch=3)
    target = torch.tensor([0, 2, 3])
    return model, x, target


@pytest.mark.parametrize("kind", KINDS)
def test_saliency(kind):
    model, x, t = _setup(kind)
    theirs = captum_attr.Saliency(model).attribute(x, target=t, abs=True)
    ours = sl.Saliency(model, reduce_channels=False).explain(x, t).values
    torch.testing.assert_close(ours, theirs, **TOL)
    default = sl.Saliency(model).explain(x, t).values
    expected = theirs if kind == "signal" else theirs.amax(1, keepdim=True)
    torch.testing.assert_close(default, expected, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_input_x_gradient(kind):
    model, x, t = _setup(kind)
    theirs = captum_attr.InputXGradient(model).attribute(x, target=t)
    torch.testing.assert_close(sl.InputXGradient(model).explain(x, t).values, theirs, **TOL)


def ours_b_tensor(b, x):
    if isinstance(b, str):
        return (
            torch.zeros_like(x)
            if b == "zeros"
            else x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x)
        )
    return b if isinstance(b, torch.Tensor) else torch.full_like(x, b)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", ["zeros", "const", "tensor", "mean"])
def test_integrated_gradients(kind, rule, baseline):
    model, x, t = _setup(kind)
    if baseline == "zeros":
        ours_b, theirs_b = "zeros", None
    elif baseline == "const":
        ours_b, theirs_b = 0.3, 0.3
    elif baseline == "tensor":
        ours_b = theirs_b = torch.randn(
            1, *x.shape[1:], dtype=x.dtype, generator=torch.Generator().manual_seed(9)
        )
    else:
        ours_b = "mean"
        theirs_b = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x).contiguous()
    theirs, delta = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=theirs_b, target=t, n_steps=7, method=rule, return_convergence_delta=True
    )
    attr = sl.IntegratedGradients(model, n_steps=7, rule=rule, baseline=ours_b).explain(x, t)
    if rule == "riemann_trapezoid":  # Captum's step sizes sum to (n-1)/n, see the module docstring
        ours = attr.values * (6 / 7)
        torch.testing.assert_close(ours, theirs, **IG_TOL)
        gap = (
            attr.values.flatten(1).sum(1)
            - (model(x) - model(x - x + ours_b_tensor(ours_b, x))).gather(1, t[:, None])[:, 0]
        )
        torch.testing.assert_close(attr.delta, gap, rtol=1e-9, atol=1e-12)
        return
    torch.testing.assert_close(attr.values, theirs, **IG_TOL)
    torch.testing.assert_close(attr.delta, delta.to(attr.delta.dtype), rtol=1e-6, atol=1e-8)


def test_integrated_gradients_with_internal_batch_size():
    model, x, t = _setup("signal")
    theirs = captum_attr.IntegratedGradients(model).attribute(
        x, target=t, n_steps=20, method="gausslegendre", internal_batch_size=7
    )
    ours = sl.IntegratedGradients(model, n_steps=20, rule="gausslegendre", batch_size=7).explain(x, t).values
    torch.testing.assert_close(ours, theirs, **IG_TOL)


def test_smoothgrad_matches_noise_tunnel_without_noise():
    # NoiseTunnel draws from the global RNG; with stdevs=0 both reduce to the inner method
    model, x, t = _setup("signal")
    ig = captum_attr.IntegratedGradients(model)
    theirs = captum_attr.NoiseTunnel(ig).attribute(
        x, target=t, nt_type="smoothgrad_sq", nt_samples=3, stdevs=0.0, n_steps=5, method="riemann_right"
    )
    ours = sl.SmoothGrad(
        sl.IntegratedGradients(model, n_steps=5, rule="riemann_right"), n_samples=3, sigma=0.0, kind="square"
    ).explain(x, t)
    torch.testing.assert_close(ours.values, theirs, **IG_TOL)
