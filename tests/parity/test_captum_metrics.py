"""Parity with Captum's ``infidelity`` and ``sensitivity_max`` (float64).

Definitional differences pinned:
- Both draw perturbations from the global RNG in Captum, from a generator here; the tests hand
  Captum our perturbations through ``perturb_func`` (rows ordered ``b * n + i`` in both, Captum
  expands inputs with ``repeat_interleave``).
- ``sensitivity_max`` divides by the norm of the explanation at ``x``: ours with
  ``normalize=True`` (Yeh et al.'s definition, our default, does not).
- ``infidelity``: same definition; ``normalize=True`` scales by the same optimal beta.
"""

from __future__ import annotations

import pytest
import torch

import salience as sl
from salience import metrics as M
from toy_models import DIMS, cnn, make_input

captum_metrics = pytest.importorskip("captum.metrics")
pytestmark = pytest.mark.parity


@pytest.mark.parametrize("kind", ["signal", "image"])
@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity(kind, normalize):
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=3)
    y = torch.tensor([0, 2, 3])
    a = sl.IntegratedGradients(model, n_steps=8).explain(x, y).values
    n = 6
    pert = torch.randn((3, n, *x.shape[1:]), generator=torch.Generator().manual_seed(1), dtype=x.dtype) * 0.1
    ours = M.infidelity(model, x, a, y, n_perturbations=n, perturbation=pert, normalize=normalize)

    def perturb_func(inputs):
        noise = pert.reshape(-1, *x.shape[1:])
        return noise, inputs - noise

    ref = captum_metrics.infidelity(
        model, perturb_func, x, a, target=y, n_perturb_samples=n, normalize=normalize
    )
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["signal", "image"])
def test_sensitivity_max(kind):
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=3)
    y = torch.tensor([1, 0, 2])
    expl = sl.InputXGradient(model)
    n, radius = 5, 0.05
    ours = M.max_sensitivity(
        expl,
        x,
        y,
        n_perturbations=n,
        radius=radius,
        normalize=True,
        generator=torch.Generator().manual_seed(2),
    )
    noise = torch.rand((3 * n, *x.shape[1:]), generator=torch.Generator().manual_seed(2), dtype=x.dtype)

    def perturb_func(inputs, perturb_radius):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        return inputs + (2 * noise - 1) * perturb_radius

    def explanation_func(inputs, target):
        if isinstance(inputs, tuple):  # Captum passes a tuple first and expects one back
            return (expl.explain(inputs[0], target).values,)
        return expl.explain(inputs, target).values

    ref = captum_metrics.sensitivity_max(
        explanation_func, x, perturb_func=perturb_func, perturb_radius=radius, n_perturb_samples=n, target=y
    )
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
