"""Contract cases for compositions across families: perturbation and modified backprop inside
domains, wrappers around modified backprop, ClassRelevant around and inside InDomain.

Signals only (the domains act on the time axis); tiny budgets.
"""

from __future__ import annotations

import torch

import salience as sl
from cases_classrel import K, _cr
from registry import Case

_g = torch.Generator().manual_seed(11)
_TALL = torch.randn(3, 2, generator=_g, dtype=torch.float64)  # lossy ICA: 3 channels, 2 sources
_MEAN = torch.randn(3, generator=_g, dtype=torch.float64)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(99)


def _ica() -> sl.ICA:
    return sl.ICA.from_matrices(_TALL, _MEAN)


INTEGRATION: list[Case] = [
    Case(
        "InDomain(RISE,Fourier)",
        lambda m, **kw: sl.InDomain(
            sl.RISE(m, n_masks=4, cells={"f": 4}, generator=_gen(), progress=False, **kw), sl.Fourier()
        ),
        passes=lambda b: [4 * b, b],
        kinds=("signal",),
    ),
    Case(
        "InDomain(Occlusion,ICA-lossy)",
        lambda m, **kw: sl.InDomain(sl.Occlusion(m, window={"k": 1}, progress=False, **kw), _ica()),
        passes=lambda b: [b, 2 * b],  # the score at x, then one row per component
        kinds=("signal",),
    ),
    Case(
        "InDomain(MaskUpdate,Fourier)",
        lambda m, **kw: sl.InDomain(
            sl.MaskUpdate(
                m,
                n_steps=2,
                cells={"f": 3},
                n_chains=2,
                link="sigmoid",
                generator=_gen(),
                progress=False,
                **kw,
            ),
            sl.Fourier(),
        ),
        passes=lambda b: [2 * b] * 2 + [b],
        stochastic=True,
        kinds=("signal",),
    ),
    Case(
        "InDomain(GuidedBackprop,Fourier)",
        lambda m, **kw: sl.InDomain(sl.GuidedBackprop(m, **kw), sl.Fourier()),
        passes=lambda b: [b],
        kinds=("signal",),
    ),
    Case(
        "InDomain(DeconvNet,ICA-lossy)",
        lambda m, **kw: sl.InDomain(sl.DeconvNet(m, **kw), _ica()),
        passes=lambda b: [b],
        kinds=("signal",),
    ),
    Case(
        "InDomain(LRP,Fourier)",
        lambda m, **kw: sl.InDomain(sl.LRP(m, **kw), sl.Fourier()),
        passes=lambda b: [b],
        kinds=("signal",),
    ),
    Case(
        "SmoothGrad(LRP)",
        lambda m, **kw: sl.SmoothGrad(sl.LRP(m, **kw), n_samples=2, generator=_gen()),
        passes=lambda b: [2 * b, b],
        stochastic=True,
    ),
    Case(
        "InDomain(ClassRelevant(GuidedBackprop),Fourier)",
        lambda m, **kw: sl.InDomain(_cr(sl.GuidedBackprop(m, **kw)), sl.Fourier()),
        passes=lambda b: [b, K * b],
        kinds=("signal",),
    ),
    Case(
        "ClassRelevant(InDomain(IG,Fourier))",
        lambda m, **kw: _cr(sl.InDomain(sl.IntegratedGradients(m, n_steps=2, **kw), sl.Fourier())),
        passes=lambda b: [b, 2 * K * b],
        kinds=("signal",),
    ),
    Case(
        "SmoothGrad(InDomain(ClassRelevant(IG),ICA-lossy))",
        lambda m, **kw: sl.SmoothGrad(
            sl.InDomain(_cr(sl.IntegratedGradients(m, n_steps=2, **kw)), _ica()),
            n_samples=2,
            generator=_gen(),
        ),
        passes=None,
        stochastic=True,
        kinds=("signal",),
    ),
]
