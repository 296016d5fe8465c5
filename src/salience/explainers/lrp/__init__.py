"""Layer-wise Relevance Propagation: the :class:`LRP` explainer, its rules and composites.

Rules and composites are small frozen data objects: ``LRP(model, composite="epsilon_plus_flat")``,
``LRP(model, composite=Epsilon(0.1))`` or ``LRP(model, composite=Composite(rules=(...), first=...))``.
"""

from .composites import (
    COMPOSITES,
    Composite,
    epsilon,
    epsilon_alpha2_beta1,
    epsilon_alpha2_beta1_flat,
    epsilon_gamma_box,
    epsilon_plus,
    epsilon_plus_flat,
    single,
)
from .explainer import LRP, LRPCoverageWarning
from .rules import AlphaBeta, Epsilon, Flat, Gamma, LayerCall, Pass, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "LRP",
    "LRPCoverageWarning",
    "Rule",
    "LayerCall",
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "Flat",
    "WSquare",
    "Pass",
    "Composite",
    "COMPOSITES",
    "single",
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon_gamma_box",
]
