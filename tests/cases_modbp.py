"""Contract-suite cases for modified backpropagation: Guided Backprop, DeconvNet, LRP."""

from __future__ import annotations

import torch

import salience as sl
from registry import Case


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def _conv2(m):
    """Layer "2" (second conv of toy_models.cnn); by module when wrapped in Counting."""
    inner = getattr(m, "model", None)
    return inner[2] if inner is not None else "2"


MODBP: list[Case] = [
    Case("GuidedBackprop", lambda m, **kw: sl.GuidedBackprop(m, **kw), passes=lambda b: [b]),
    Case("DeconvNet", lambda m, **kw: sl.DeconvNet(m, **kw), passes=lambda b: [b]),
    Case(
        "GuidedGradCAM",
        lambda m, **kw: sl.GuidedGradCAM(m, layer=_conv2(m), **kw),
        passes=lambda b: [b, b],  # Grad-CAM pass, Guided Backprop pass
        needs_layer=True,
    ),
    Case("LRP-epsilon", lambda m, **kw: sl.LRP(m, **kw), passes=lambda b: [b]),
    Case(
        "LRP-epsilon_plus_flat",
        lambda m, **kw: sl.LRP(m, composite="epsilon_plus_flat", **kw),
        passes=lambda b: [b],
    ),
    Case(
        "LRP-epsilon_gamma_box",
        lambda m, **kw: sl.LRP(m, composite=sl.lrp.epsilon_gamma_box(-4.0, 4.0), **kw),
        passes=lambda b: [b],
    ),
    Case(
        "ClassRelevant(GuidedBackprop)",
        lambda m, **kw: sl.ClassRelevant(sl.GuidedBackprop(m, **kw), classes=[0, 2], normalize=True),
        passes=lambda b: [b, 3 * b],  # class sets and scores, then the B * K stacked rows (K = 3)
    ),
    Case(
        "ClassRelevant(LRP-epsilon_plus_flat)",
        lambda m, **kw: sl.ClassRelevant(
            sl.LRP(m, composite="epsilon_plus_flat", **kw), classes=[0, 2], normalize=True
        ),
        passes=lambda b: [b, 3 * b],
    ),
    Case(
        "SmoothGrad(GuidedBackprop)",
        lambda m, **kw: sl.SmoothGrad(sl.GuidedBackprop(m, **kw), n_samples=2, generator=_gen()),
        passes=lambda b: [2 * b, b],
        stochastic=True,
    ),
]
