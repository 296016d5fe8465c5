"""Parity with Captum's FeatureAblation, FeaturePermutation, ShapleyValueSampling, KernelShap and
Lime over feature groups (float64 models and inputs).

Every comparison feeds both libraries the same random draws:
- FeaturePermutation and ShapleyValueSampling draw their permutations as Captum does (one
  ``randperm`` per group, redrawn while the identity; ``n_samples`` ``randperm(G)`` orders shared
  by the batch), from ``generator=``: seeded like Captum's global RNG they are the same.
- KernelShap and Lime expose the coalitions of a call (``.coalitions(G, generator)``); Captum is
  given them through its ``perturb_func`` (KernelShap: the full and empty coalitions first, as
  its own generator yields them).

Definitional differences pinned here:
- Shape: Captum returns the input's shape; ours the shape of the group ids (1 along the axes a
  group spans whole), broadcast here. Both give each element its group's whole value.
- ShapleyValueSampling: Captum accumulates in float32 (rtol 1e-5); ours evaluates the full
  coalition once (it is ``score(x)``) instead of once per order: the same values.
- KernelShap: Captum approximates the two constraints (``phi_0 = f(baseline)``, efficiency) by
  weighting the full and empty coalitions 1e6 and fits in float32; ours solves the constrained
  least squares exactly, so the two agree to about 1e-5 and ours sums exactly to
  ``f(x) - f(baseline)``. Our ``n_samples`` counts the sampled coalitions only (Captum's
  includes the full and empty ones).
- Lime: Captum fits scikit-learn's Lasso in float32 with ``tol=1e-4``; ours runs coordinate
  descent to convergence in float64. Compared with a converged Lasso (``tol=1e-10``), they agree
  to float32 precision. Captum draws new coalitions per sample; ours share one draw per call.
"""

from __future__ import annotations

import pytest
import torch

from salience.explainers.ablation import FeatureAblation, FeaturePermutation
from salience.explainers.shapley import ShapleyValueSampling
from salience.explainers.surrogate import KernelShap, Lime
from salience.layout import Layout
from salience.masking.groups import patch_groups, time_segments
from toy_models import cnn, make_input

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.parity

CASES = {
    "signal": (1, time_segments(5), Layout("b c t")),
    "image": (2, patch_groups(4), Layout("b c h w")),
}


def _setup(kind, batch=3):
    dims, groups, layout = CASES[kind]
    model = cnn(dims)
    x = make_input(kind, batch=batch)
    ids = groups.resolve(x.shape[1:], layout).ids
    return model, x, torch.tensor([0, 2, 3][:batch]), groups, ids


@pytest.mark.parametrize("kind", ["signal", "image"])
@pytest.mark.parametrize("baseline", [0.0, 0.3])
def test_feature_ablation(kind, baseline):
    model, x, t, groups, ids = _setup(kind)
    theirs = captum_attr.FeatureAblation(model).attribute(x, target=t, feature_mask=ids, baselines=baseline)
    ours = FeatureAblation(model, groups=groups, substrate=baseline, batch_size=4).explain(x, t).values
    torch.testing.assert_close(ours.expand_as(x), theirs, rtol=1e-10, atol=1e-12)


def test_feature_ablation_every_element_and_tensor_baseline():
    model, x, t, _, _ = _setup("signal")
    base = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    theirs = captum_attr.FeatureAblation(model).attribute(x, target=t, baselines=base)
    ours = FeatureAblation(model, substrate=base).explain(x, t).values
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["signal", "image"])
@pytest.mark.parametrize("seed", [0, 5])
def test_feature_permutation(kind, seed):
    model, x, t, groups, ids = _setup(kind, batch=3)
    torch.manual_seed(seed)
    theirs = captum_attr.FeaturePermutation(model).attribute(x, target=t, feature_mask=ids)
    gen = torch.Generator().manual_seed(seed)
    ours = FeaturePermutation(model, groups=groups, generator=gen, batch_size=5).explain(x, t).values
    torch.testing.assert_close(ours.expand_as(x), theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["signal", "image"])
@pytest.mark.parametrize("baseline", [0.0, -0.2])
def test_shapley_value_sampling(kind, baseline):
    model, x, t, groups, ids = _setup(kind)
    torch.manual_seed(11)
    theirs = captum_attr.ShapleyValueSampling(model).attribute(
        x, target=t, feature_mask=ids, baselines=baseline, n_samples=6
    )
    gen = torch.Generator().manual_seed(11)
    ours = ShapleyValueSampling(model, groups=groups, n_samples=6, substrate=baseline, generator=gen)
    values = ours.explain(x, t).values
    assert theirs.dtype == torch.float32  # Captum's accumulator
    torch.testing.assert_close(values.expand_as(x).float(), theirs, rtol=1e-5, atol=1e-7)


class _Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.factor


def _captum_per_sample(method, x, t, ids, baseline, **kwargs):
    return torch.cat(
        [
            method.attribute(x[i : i + 1], target=int(t[i]), feature_mask=ids, baselines=baseline, **kwargs)
            for i in range(x.shape[0])
        ]
    )


@pytest.mark.parametrize("kind", ["signal", "image"])
def test_kernel_shap_same_coalitions(kind):
    model, x, t, groups, ids = _setup(kind)
    n, g = 40, int(ids.max()) + 1
    ours = KernelShap(
        model, groups=groups, n_samples=n, substrate=0.1, generator=torch.Generator().manual_seed(2)
    )
    z = ours.coalitions(g, torch.Generator().manual_seed(2))
    values = ours.explain(x, t).values

    def coalitions(_inputs, **_kwargs):
        yield torch.ones(1, g, dtype=torch.long)
        yield torch.zeros(1, g, dtype=torch.long)
        yield from (row[None].long() for row in z)

    ks = captum_attr.KernelShap(model)
    ks.perturb_func = coalitions
    theirs = _captum_per_sample(ks, x, t, ids, 0.1, n_samples=n + 2)
    scale = theirs.abs().max()
    torch.testing.assert_close(values.expand_as(x).float(), theirs, rtol=1e-4, atol=1e-5 * float(scale))


@pytest.mark.parametrize("kind", ["signal", "image"])
@pytest.mark.parametrize("alpha", [0.01, 0.0])
def test_lime_same_coalitions(kind, alpha):
    from captum._utils.models.linear_model import SkLearnLasso, SkLearnLinearRegression

    model, x, t, groups, ids = _setup(kind)
    model = torch.nn.Sequential(model, _Scale(100.0)).eval()  # scores of order 1: alpha matters
    n, g = 30, int(ids.max()) + 1
    ours = Lime(model, groups=groups, n_samples=n, alpha=alpha, generator=torch.Generator().manual_seed(4))
    z = ours.coalitions(g, torch.Generator().manual_seed(4))
    values = ours.explain(x, t).values

    def coalitions(_inputs, **_kwargs):
        yield from (row[None].long() for row in z)

    surrogate = (
        SkLearnLasso(alpha=alpha, tol=1e-10, max_iter=1_000_000) if alpha else SkLearnLinearRegression()
    )
    lime = captum_attr.Lime(model, interpretable_model=surrogate, perturb_func=coalitions)
    theirs = _captum_per_sample(lime, x, t, ids, 0.0, n_samples=n)
    scale = float(theirs.abs().max())
    assert scale > 0.1
    torch.testing.assert_close(values.expand_as(x).float(), theirs, rtol=1e-4, atol=1e-5 * scale)


def test_lime_defaults_are_captums():
    """Captum's Lime defaults (25 samples, cosine distance, width 1, Lasso alpha 0.01) are ours."""
    import inspect

    params = inspect.signature(Lime).parameters
    assert params["n_samples"].default == 25
    assert params["alpha"].default == 0.01
    assert params["kernel_width"].default == 1.0
    assert params["distance"].default == "cosine"
    assert inspect.signature(captum_attr.Lime.attribute).parameters["n_samples"].default == 25
    lasso = captum_attr.Lime(lambda v: v).interpretable_model
    assert lasso.construct_kwargs == {"alpha": 0.01}
