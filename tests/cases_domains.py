"""Contract cases for domains: InDomain(explainer, domain) for every core explainer x every domain.

Signals only (the toy signal model has 3 channels and 20 time steps); tiny budgets.
"""

from __future__ import annotations

import torch

import salience as sl
from registry import CORE, Case, _gen

_g = torch.Generator().manual_seed(7)
_SQUARE = torch.randn(3, 3, generator=_g, dtype=torch.float64) + 2 * torch.eye(3, dtype=torch.float64)
_TALL = torch.randn(3, 2, generator=_g, dtype=torch.float64)
_MEAN = torch.randn(3, generator=_g, dtype=torch.float64)

DOMAINS = {
    "Time": lambda: sl.Time(),
    "Fourier": lambda: sl.Fourier(),
    "Fourier-full": lambda: sl.Fourier(output="full"),
    "STFT": lambda: sl.STFT(n_fft=8, hop_length=2),
    "Wavelet-db2": lambda: sl.Wavelet("db2", levels=2),
    "ComplexCepstrum": lambda: sl.ComplexCepstrum(),
    "ComplexCepstrum-unwrapped": lambda: sl.ComplexCepstrum(phase="unwrapped"),
    "ICA": lambda: sl.ICA.from_matrices(_SQUARE, _MEAN),
    "ICA-lossy": lambda: sl.ICA.from_matrices(_TALL, _MEAN),
    "ICA-sample": lambda: sl.ICA.from_matrices(_SQUARE, _MEAN, mode="sample"),
    "ICA+Fourier": lambda: sl.Compose(sl.ICA.from_matrices(_TALL, _MEAN), sl.Fourier()),
}


def _in_domain(inner, domain):
    return lambda m, **kw: sl.InDomain(inner(m, **kw), domain())


# every core explainer of the registry in every domain (issue 3: the contract suite runs on
# InDomain(explainer, domain) for every explainer x domain pair); the model calls of a wrapped
# explainer are the same passes as in the input space (the residual and the transform cost none)
DOMAIN_CASES: list[Case] = [
    Case(
        f"InDomain({case.id},{did})",
        _in_domain(case.make, dom),
        passes=case.passes,
        stochastic=case.stochastic,
        kinds=("signal",),
    )
    for case in CORE
    for did, dom in DOMAINS.items()
]


def _rr(n):  # right Riemann: n interpolants, then f(baseline)
    return lambda b: [n * b, b]


DOMAIN_CASES += [
    Case("TimeIG", lambda m, **kw: sl.TimeIG(m, n_steps=3, **kw), passes=_rr(3), kinds=("signal",)),
    Case("FourierIG", lambda m, **kw: sl.FourierIG(m, n_steps=3, **kw), passes=_rr(3), kinds=("signal",)),
    Case(
        "FourierIG-full",
        lambda m, **kw: sl.FourierIG(m, n_steps=2, output="full", **kw),
        passes=_rr(2),
        kinds=("signal",),
    ),
    Case(
        "ICAIG",
        lambda m, **kw: sl.ICAIG(m, sl.ICA.from_matrices(_TALL, _MEAN, mode="sample"), n_steps=3, **kw),
        passes=_rr(3),
        kinds=("signal",),
    ),
    Case(
        "STFTIG",
        lambda m, **kw: sl.STFTIG(m, n_fft=8, hop_length=2, n_steps=2, **kw),
        passes=_rr(2),
        kinds=("signal",),
    ),
    Case(
        "WaveletIG",
        lambda m, **kw: sl.WaveletIG(m, levels=2, n_steps=2, **kw),
        passes=_rr(2),
        kinds=("signal",),
    ),
    Case(
        "ComplexCepstrumIG",
        lambda m, **kw: sl.ComplexCepstrumIG(m, n_steps=2, **kw),
        passes=lambda b: [2 * b, b, b],  # Gauss-Legendre: the path, then the scores at x and x0
        kinds=("signal",),
    ),
    Case(
        "CrossDomainIG(ICA+Fourier)",
        lambda m, **kw: sl.CrossDomainIG(m, DOMAINS["ICA+Fourier"](), n_steps=2, **kw),
        passes=_rr(2),
        kinds=("signal",),
    ),
    Case(
        "SmoothGrad(InDomain(IG,ICA-lossy))",
        lambda m, **kw: sl.SmoothGrad(
            sl.InDomain(sl.IntegratedGradients(m, n_steps=2, **kw), DOMAINS["ICA-lossy"]()),
            n_samples=2,
            generator=_gen(),
        ),
        passes=lambda b: [4 * b, b],
        stochastic=True,
        kinds=("signal",),
    ),
]
