"""Contract-suite cases of the layer attributions and the global-sensitivity methods (Sobol, HSIC).

``SOBOL_HSIC`` fits every check of the suite (maps broadcastable to the input), also inside the
Fourier and ICA domains. ``LAYER`` returns maps in the *layer's* shape (B, *A), which the kit's
``output`` check reads as "not broadcastable to the input" unless it knows layer-space results
(``Attribution.info["space"] == "layer"``); every other check applies to them.
"""

from __future__ import annotations

import torch

from registry import Case
from salience.domains import ICA, Fourier, InDomain
from salience.explainers.hsic import HsicAttributionMethod
from salience.explainers.layer_attribution import (
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from salience.explainers.sobol import SobolAttributionMethod

_g = torch.Generator().manual_seed(11)
_TALL = torch.randn(3, 2, generator=_g, dtype=torch.float64)  # lossy ICA: 3 channels, 2 sources
_MEAN = torch.randn(3, generator=_g, dtype=torch.float64)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(2024)


def _conv2(m):
    """Layer "2" by name; by module when the call-count test wraps the model in Counting."""
    inner = getattr(m, "model", None)
    return inner[2] if inner is not None else "2"


# grids over the channel axis ({"c": 3}) give d = 3 cells for every kind, so the row count of a
# pass does not depend on the kind: Sobol scores nb_design * (d + 1) rows per sample
def _sobol(m, **kw):
    return SobolAttributionMethod(m, grid_size={"c": 3}, nb_design=4, generator=_gen(), progress=False, **kw)


def _hsic(m, **kw):
    return HsicAttributionMethod(m, grid_size={"c": 3}, nb_design=8, generator=_gen(), progress=False, **kw)


SOBOL_HSIC: list[Case] = [
    # the design is drawn once per call and shared by the batch: with a fixed generator the
    # methods are batch invariant (not marked stochastic), as RISE
    Case("SobolAttributionMethod", _sobol, passes=lambda b: [16 * b, b]),
    Case(
        "SobolAttributionMethod-grid-blurring",
        lambda m, **kw: SobolAttributionMethod(
            m,
            grid_size=2,
            nb_design=4,
            perturbation="blurring",
            sigma=3,
            generator=_gen(),
            progress=False,
            **kw,
        ),
    ),
    Case("HsicAttributionMethod", _hsic, passes=lambda b: [8 * b, b]),
    Case(
        "HsicAttributionMethod-grid-lhs",
        lambda m, **kw: HsicAttributionMethod(
            m, grid_size=2, nb_design=8, sampler="lhs", generator=_gen(), progress=False, **kw
        ),
    ),
    Case(
        "InDomain(Sobol,Fourier)",
        lambda m, **kw: InDomain(
            SobolAttributionMethod(
                m, grid_size={"f": 3}, nb_design=4, generator=_gen(), progress=False, **kw
            ),
            Fourier(),
        ),
        passes=lambda b: [16 * b, b],
        kinds=("signal",),
    ),
    Case(
        "InDomain(HSIC,ICA-lossy)",
        lambda m, **kw: InDomain(
            HsicAttributionMethod(m, grid_size={"k": 2}, nb_design=8, generator=_gen(), progress=False, **kw),
            ICA.from_matrices(_TALL, _MEAN),
        ),
        passes=lambda b: [8 * b, b],
        kinds=("signal",),
    ),
]

LAYER: list[Case] = [
    Case(
        "LayerGradientXActivation",
        lambda m, **kw: LayerGradientXActivation(m, layer=_conv2(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "LayerIntegratedGradients",
        lambda m, **kw: LayerIntegratedGradients(m, layer=_conv2(m), n_steps=3, **kw),
        passes=lambda b: [b, b, 3 * b],  # A(x), A(x0), the path
        needs_layer=True,
    ),
    Case(
        "LayerConductance",
        lambda m, **kw: LayerConductance(m, layer=_conv2(m), n_steps=3, **kw),
        passes=lambda b: [4 * b],  # n_steps + 1 path points, both ends included
        needs_layer=True,
    ),
    Case(
        "LayerIntegratedGradients-default-layer-gausslegendre",
        lambda m, **kw: LayerIntegratedGradients(m, n_steps=2, rule="gausslegendre", **kw),
        passes=lambda b: [1, b, b, 2 * b],  # a dry run on one sample finds the layer
        needs_layer=True,
    ),
]
