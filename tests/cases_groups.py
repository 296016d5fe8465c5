"""Contract-suite cases of the feature-group family (FeatureAblation, FeaturePermutation,
ShapleyValueSampling, KernelShap, Lime, Occlusion with groups=): tiny budgets, in the input
space and inside a Fourier and an ICA domain.

Channel groups give 3 groups for every kind of the kit's inputs (3 channels), so the row counts
do not depend on the kind. Random methods draw their permutations/coalitions once per call and
share them across the batch, so with a fixed generator they are batch invariant (not marked
stochastic); FeaturePermutation permutes across the batch by definition (stochastic).
"""

from __future__ import annotations

import torch

import salience as sl
from registry import Case
from salience.explainers.ablation import FeatureAblation, FeaturePermutation
from salience.explainers.shapley import ShapleyValueSampling
from salience.explainers.surrogate import KernelShap, Lime
from salience.masking.groups import axis_groups, band_groups, channel_groups, component_groups, time_segments


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(2468)


_g = torch.Generator().manual_seed(13)
_MIXING = torch.randn(3, 3, generator=_g, dtype=torch.float64) + 2 * torch.eye(3, dtype=torch.float64)
_MEAN = torch.randn(3, generator=_g, dtype=torch.float64)


def _methods(groups):
    """(id, make, rows per sample for G groups, stochastic) of every method over ``groups``."""
    return [
        ("FeatureAblation", lambda m, **kw: FeatureAblation(m, groups=groups(), **kw), lambda g: g, False),
        (
            "FeaturePermutation",
            lambda m, **kw: FeaturePermutation(m, groups=groups(), generator=_gen(), **kw),
            lambda g: g,
            True,
        ),
        (
            "ShapleyValueSampling",
            lambda m, **kw: ShapleyValueSampling(m, groups=groups(), n_samples=2, generator=_gen(), **kw),
            lambda g: 1 + 2 * (g - 1),
            False,
        ),
        (
            "KernelShap",
            lambda m, **kw: KernelShap(m, groups=groups(), n_samples=4, generator=_gen(), **kw),
            lambda g: 5,
            False,
        ),
        (
            "Lime",
            lambda m, **kw: Lime(m, groups=groups(), n_samples=4, alpha=1e-4, generator=_gen(), **kw),
            lambda g: 4,
            False,
        ),
    ]


def _passes(rows, g):
    return lambda b: [rows(g) * b, b]  # the coalitions' rows, then the score at x itself


def _in_domain(make, domain):
    return lambda m, **kw: sl.InDomain(make(m, **kw), domain())


# the kit's signals: 3 channels x 20 samples; one-sided Fourier: 11 bins (4 groups of 3 bins)
_FOURIER = [
    ("Fourier", lambda: sl.Fourier(), lambda: axis_groups("f", 3), 4),
    (
        "Fourier-bands",
        lambda: sl.Fourier(fs=20.0),
        lambda: band_groups(sl.Fourier(fs=20.0, n=20), "0-2.5,2.5-5,5-10"),
        3,
    ),
    ("ICA", lambda: sl.ICA.from_matrices(_MIXING, _MEAN), component_groups, 3),
]

GROUPS: list[Case] = [
    Case(f"{name}-channels", make, passes=_passes(rows, 3), stochastic=stochastic)
    for name, make, rows, stochastic in _methods(channel_groups)
]
GROUPS += [
    Case(
        "FeatureAblation-segments-mean",
        lambda m, **kw: FeatureAblation(m, groups=time_segments(4), substrate="mean", **kw),
        passes=lambda b: [4 * b, b],
        kinds=("signal", "video"),
    ),
    Case(
        "Occlusion-groups",
        lambda m, **kw: sl.Occlusion(m, groups=time_segments(4), progress=False, **kw),
        passes=lambda b: [4 * b, b],
        kinds=("signal", "video"),
    ),
]
GROUPS += [
    Case(
        f"InDomain({name},{dom_id})",
        _in_domain(make, domain),
        passes=_passes(rows, g),
        stochastic=stochastic,
        kinds=("signal",),
        # band groups are built for the kit's 20-sample signals (their bins are fixed)
        tags={"signal_length": 20} if dom_id == "Fourier-bands" else {},
    )
    for dom_id, domain, groups, g in _FOURIER
    for name, make, rows, stochastic in _methods(groups)
]
