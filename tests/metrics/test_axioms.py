"""Effective complexity, non-sensitivity and input invariance: analytic cases on linear models,
domains, batch invariance, memory bounded by batch_size, no side effects, classes and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import salience as sl
from salience.errors import ParameterError
from salience.metrics import axioms as X
from salience.metrics import evaluate
from toy_models import Counting, Linear


# ---------------------------------------------------------------------------- effective complexity
def test_effective_complexity_counts():
    a = torch.tensor([[[4.0, -2.0, 2e-5, 0.0, -1e-3]], [[0.0, 0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(
        X.effective_complexity(a, eps=1e-5), torch.tensor([3.0, 0.0], dtype=torch.float64)
    )
    # relative: |a| > eps * max|a| = 0.4 * 4
    torch.testing.assert_close(
        X.effective_complexity(a, eps=0.4), torch.tensor([2.0, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        X.effective_complexity(a, eps=1e-5, relative=False), torch.tensor([4.0, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(X.effective_complexity(a * 1e-20, eps=0.4), X.effective_complexity(a, eps=0.4))


# ---------------------------------------------------------------------------- non-sensitivity
def _linear(seed=0, n=10):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(2, 1, n, generator=g, dtype=torch.float64)
    w[0, 0, [1, 4, 5]] = 0.0  # inputs the model ignores (for class 0)
    x = torch.rand(3, 1, n, generator=g, dtype=torch.float64) + 0.5  # no zero inputs
    return Linear(w).eval(), x, w


def test_non_sensitivity_zero_for_gradient_times_input_of_a_linear_model():
    model, x, w = _linear()
    a = w[0] * x  # zero exactly where the model ignores the input
    torch.testing.assert_close(X.non_sensitivity(model, x, a, 0), torch.zeros(3, dtype=torch.float64))


def test_non_sensitivity_counts_the_symmetric_difference():
    model, x, w = _linear()
    dense = torch.ones_like(x)  # attributes the 3 ignored inputs
    torch.testing.assert_close(
        X.non_sensitivity(model, x, dense, 0), torch.full((3,), 3.0, dtype=torch.float64)
    )
    a = w[0] * x
    a[:, :, [0, 2]] = 0.0  # 2 used inputs left unattributed
    a[1, :, 7] = 0.0  # and one more in sample 1
    torch.testing.assert_close(
        X.non_sensitivity(model, x, a, 0), torch.tensor([2.0, 3.0, 2.0], dtype=torch.float64)
    )


def test_non_sensitivity_groups_of_features():
    model, x, w = _linear()
    a = w[0] * x  # groups {0,1,2} {3,4,5} {6,7,8} {9}: model ignores none, the attribution none
    torch.testing.assert_close(
        X.non_sensitivity(model, x, a, 0, features_in_step=3), torch.zeros(3, dtype=torch.float64)
    )
    a2 = a.clone()
    a2[:, :, 3] = 0.0  # group {3,4,5} now unattributed but used (3 is used)
    torch.testing.assert_close(
        X.non_sensitivity(model, x, a2, 0, features_in_step=3), torch.ones(3, dtype=torch.float64)
    )
    torch.testing.assert_close(
        X.non_sensitivity(model, x, a2, 0, features_in_step=2), torch.zeros(3, dtype=torch.float64)
    )


def test_non_sensitivity_one_group_of_every_unit():
    model, x, w = _linear()
    a = w[0] * x  # used and attributed as a whole: 0; unattributed as a whole: 1
    for step in (10, 2**62):
        torch.testing.assert_close(
            X.non_sensitivity(model, x, a, 0, features_in_step=step), torch.zeros(3, dtype=torch.float64)
        )
        torch.testing.assert_close(
            X.non_sensitivity(model, x, 0 * a, 0, features_in_step=step), torch.ones(3, dtype=torch.float64)
        )


def test_non_sensitivity_thresholds():
    model, x, w = _linear()
    a = w[0] * x
    a[:, :, 0] = 1e-9 * a.abs().amax()  # negligible relative to the largest |a|
    torch.testing.assert_close(X.non_sensitivity(model, x, a, 0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(
        X.non_sensitivity(model, x, a, 0, eps=1e-12), torch.zeros(3, dtype=torch.float64)
    )
    # a huge output tolerance: every removal counts as ignored, so the 7 attributed inputs violate
    torch.testing.assert_close(
        X.non_sensitivity(model, x, w[0] * x, 0, atol=1e6), torch.full((3,), 7.0, dtype=torch.float64)
    )


def test_non_sensitivity_in_a_domain():
    class Mean(nn.Module):  # depends on the DC Fourier coefficient only
        def forward(self, x):
            return x.mean((1, 2))[:, None]

    x = torch.randn(2, 1, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = torch.zeros(2, 1, 9, 2, dtype=torch.float64)  # real/imaginary parts of the 9 bins
    a[:, :, 0, 0] = 1.0  # the real DC coefficient
    torch.testing.assert_close(
        X.non_sensitivity(Mean(), x, a, 0, domain=sl.Fourier()), torch.zeros(2, dtype=torch.float64)
    )
    a[:, :, 3] = 1.0  # bin 3 attributed, ignored by the model: 2 violations
    torch.testing.assert_close(
        X.non_sensitivity(Mean(), x, a, 0, domain=sl.Fourier()), torch.full((2,), 2.0, dtype=torch.float64)
    )
    torch.testing.assert_close(
        X.non_sensitivity(Mean(), x, torch.zeros_like(a), 0, domain=sl.Fourier()),
        torch.ones(2, dtype=torch.float64),
    )


def test_non_sensitivity_memory_bounded_and_batch_invariant():
    model, x, w = _linear()
    a = w[0] * x
    a[:, :, 0] = 0.0
    counting = Counting(model)
    out = X.non_sensitivity(counting, x, a, 0, batch_size=4)
    assert max(counting.rows) <= 4
    assert sum(counting.rows) == 3 + 3 * 10  # f(x), then one row per feature
    torch.testing.assert_close(out, X.non_sensitivity(model, x, a, 0))
    single = torch.cat([X.non_sensitivity(model, x[i : i + 1], a[i : i + 1], 0) for i in range(3)])
    torch.testing.assert_close(out, single)


def test_non_sensitivity_no_side_effects():
    model, x, w = _linear()
    a = w[0] * x
    x0, a0, p0 = x.clone(), a.clone(), [p.clone() for p in model.parameters()]
    rng = torch.random.get_rng_state()
    X.non_sensitivity(model, x, a, 0)
    assert torch.equal(x, x0) and torch.equal(a, a0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), p0, strict=True))
    assert torch.equal(torch.random.get_rng_state(), rng) and not model.training


# ---------------------------------------------------------------------------- input invariance
def _mlp(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=bias), nn.ReLU(), nn.Linear(5, 3)).double().eval()


@pytest.mark.parametrize(
    "first",
    [
        lambda: nn.Linear(6, 4),
        lambda: nn.Linear(6, 4, bias=False),
        lambda: nn.Sequential(nn.Unflatten(1, (2, 3)), nn.Conv1d(2, 4, 2)),
        lambda: nn.Sequential(
            nn.Unflatten(1, (1, 6)), nn.Conv1d(1, 4, 3, padding=1, padding_mode="circular")
        ),
    ],
)
def test_shift_first_layer_absorbs_the_shift_exactly(first):
    torch.manual_seed(0)
    model = nn.Sequential(first(), nn.Flatten(), nn.LazyLinear(2)).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    model(x)  # materialise the lazy layer
    before = [p.clone() for p in model.parameters()]
    shifted = X.shift_first_layer(model, -1.5)
    torch.testing.assert_close(shifted(x - 1.5), model(x))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_input_invariance_gradient_yes_gradient_times_input_no():
    model = _mlp()
    x = torch.randn(5, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grad, gxi = sl.Gradient(model), sl.InputXGradient(model)
    torch.testing.assert_close(X.input_invariance(grad, x, 0), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(X.input_invariance(gxi, x, 0), torch.zeros(5, dtype=torch.float64))
    # a shift of 0 changes nothing
    torch.testing.assert_close(X.input_invariance(gxi, x, 0, shift=0.0), torch.ones(5, dtype=torch.float64))
    assert grad.model is model and torch.equal(model[1].bias, _mlp()[1].bias)


def test_input_invariance_uses_the_given_attribution_and_the_class():
    model = _mlp()
    x = torch.randn(3, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    grad = sl.Gradient(model)
    wrong = grad(x, 0).values + 1.0
    torch.testing.assert_close(
        X.input_invariance(grad, x, 0, attribution=wrong), torch.zeros(3, dtype=torch.float64)
    )
    metric = X.InputInvariance()
    torch.testing.assert_close(
        metric(model, x, grad(x, 1), 1, explainer=grad), torch.ones(3, dtype=torch.float64)
    )


def test_input_invariance_errors():
    x = torch.randn(2, 1, 6, dtype=torch.float64)
    bn_first = nn.Sequential(nn.BatchNorm1d(1), nn.Flatten(), nn.Linear(6, 2)).double().eval()
    with pytest.raises(ParameterError, match="first layer"):
        X.input_invariance(sl.Gradient(bn_first), x, 0)
    with pytest.raises(ParameterError, match="nn.Module"):
        X.input_invariance(lambda x, t: x, x, 0)
    with pytest.raises(ParameterError, match="'atol'"):
        X.input_invariance(sl.Gradient(_mlp()), x, 0, atol=-1.0)
    with pytest.raises(ParameterError, match="explainer"):
        X.InputInvariance()(_mlp(), x, x)


# ---------------------------------------------------------------------------- classes and errors
def test_classes_in_evaluate():
    _, x, w = _linear()
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 2)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(w.flatten(1))
    explain = sl.InputXGradient(model)
    metrics = [X.EffectiveComplexity(), X.NonSensitivity(batch_size=7), X.InputInvariance()]
    table = evaluate({"ixg": explain}, metrics, model, (x, torch.zeros(3, dtype=torch.long)))
    assert table.get("ixg", "NonSensitivity")["mean"] == 0.0
    assert table.get("ixg", "InputInvariance")["mean"] == 0.0
    assert table.get("ixg", "EffectiveComplexity")["mean"] == 7.0
    assert repr(X.EffectiveComplexity(eps=0.1)) == "EffectiveComplexity(eps=0.1, relative=True)"
    assert not X.NonSensitivity.higher_is_better and X.NonSensitivity.requires_model


def test_parameter_errors_name_the_parameter():
    model, x, w = _linear()
    with pytest.raises(ParameterError, match="'eps'.*effective_complexity"):
        X.effective_complexity(x, eps=-1.0)
    with pytest.raises(ParameterError, match="'features_in_step'.*non_sensitivity"):
        X.non_sensitivity(model, x, x, 0, features_in_step=0)
    with pytest.raises(ParameterError, match="'atol'.*NonSensitivity"):
        X.NonSensitivity(atol=-1.0)
    with pytest.raises(ParameterError, match="'relative'"):
        X.EffectiveComplexity(relative=1)
    with pytest.raises(ParameterError, match="'shift'"):
        X.InputInvariance(shift=float("nan"))
