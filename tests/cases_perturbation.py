"""Contract-suite cases of the perturbation family (RISE, MaskUpdate, Occlusion): tiny budgets."""

from __future__ import annotations

import torch

import salience as sl
from registry import Case
from salience.masking import Segments


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(4321)


PERTURBATION: list[Case] = [
    # RISE draws its masks once per call and shares them across the batch, so with a fixed
    # generator it is batch invariant: not marked stochastic here (the class is is_stochastic).
    Case(
        "RISE",
        lambda m, **kw: sl.RISE(m, n_masks=6, cells=3, generator=_gen(), progress=False, **kw),
        passes=lambda b: [6 * b, b],  # masked rows, then the score at x itself
    ),
    Case(
        "RISE-mean-coverage",
        lambda m, **kw: sl.RISE(
            m,
            n_masks=5,
            cells=2,
            p_keep=0.3,
            substrate="mean",
            normalization="coverage",
            generator=_gen(),
            progress=False,
            **kw,
        ),
        passes=lambda b: [5 * b, b],
    ),
    Case(
        "MaskUpdate",
        lambda m, **kw: sl.MaskUpdate(
            m, n_steps=3, cells=2, n_chains=2, link="sigmoid", generator=_gen(), progress=False, **kw
        ),
        passes=lambda b: [2 * b] * 3 + [b],
        stochastic=True,
    ),
    Case(
        "Occlusion",
        lambda m, **kw: sl.Occlusion(m, window=3, stride=2, progress=False, **kw),
        passes=None,  # window count depends on the kind; counted in tests/explainers/test_perturbation.py
    ),
    Case(
        "Occlusion-segments-interpolate",
        lambda m, **kw: sl.Occlusion(m, masker=Segments(4), substrate="interpolate", progress=False, **kw),
        passes=lambda b: [b, 4 * b],
        kinds=("signal", "video"),
    ),
]

# RISE(all_classes=True) returns (B, K, *spatial) with layout 'b k ...', not broadcastable to x, so
# it is outside the contract's shape check; tests/explainers/test_perturbation.py checks it
# against per-class runs.
