"""Contract-suite cases of the reference-based gradient family (DeepLift, DeepLiftShap,
GradientShap, IG without the input factor): in the input space and in a Fourier and an ICA
domain; tiny budgets."""

from __future__ import annotations

import torch

import salience as sl
from cases_domains import DOMAINS
from registry import Case, _gen
from salience.explainers.deeplift import DeepLift, DeepLiftShap
from salience.explainers.gradient_shap import GradientShap
from salience.explainers.integrated_gradients import IntegratedGradients


def _dist(x: torch.Tensor) -> torch.Tensor:
    """Three constant reference samples (-1, 0, 1) shaped like a sample of x (batch invariant)."""
    levels = torch.linspace(-1.0, 1.0, 3, dtype=x.dtype, device=x.device)
    return levels.reshape(3, *([1] * (x.ndim - 1))) * torch.ones_like(x[:1])


def _deeplift(m, **kw):
    return DeepLift(m, **kw)


def _deeplift_shap(m, **kw):
    return DeepLiftShap(m, baselines=_dist, **kw)


def _gradient_shap(m, **kw):
    return GradientShap(m, baselines=_dist, n_samples=3, stdevs=0.1, generator=_gen(), **kw)


def _ig_local(m, **kw):
    return IntegratedGradients(m, n_steps=3, multiply_by_inputs=False, **kw)


INNER: list[Case] = [
    Case("DeepLift", _deeplift, passes=lambda b: [b, b]),  # the baselines, then the inputs
    Case(
        "DeepLift-mean-local",
        lambda m, **kw: DeepLift(m, baseline="mean", multiply_by_inputs=False, **kw),
        passes=lambda b: [b, b],
    ),
    Case("DeepLiftShap", _deeplift_shap, passes=lambda b: [3 * b, 3 * b]),
    # draws per row: stochastic; then the score at x itself
    Case("GradientShap", _gradient_shap, passes=lambda b: [3 * b, b], stochastic=True),
    Case("IG-local", _ig_local, passes=lambda b: [3 * b]),
]


def _in_domain(inner, did):
    return lambda m, **kw: sl.InDomain(inner.make(m, **kw), DOMAINS[did]())


# the input-space cases above are the time domain of the signals; each method also runs in a
# Fourier and an ICA domain (the passes are those of the input space: the transform costs none)
DOMAINS_OF = {
    "DeepLift": ("Fourier", "ICA"),
    "DeepLiftShap": ("Fourier", "ICA"),
    "GradientShap": ("Fourier", "ICA"),
    "IG-local": ("Fourier",),
}

REFERENCE: list[Case] = INNER + [
    Case(
        f"InDomain({case.id},{did})",
        _in_domain(case, did),
        passes=case.passes,
        stochastic=case.stochastic,
        kinds=("signal",),
    )
    for case in INNER
    for did in DOMAINS_OF.get(case.id, ())
]
