"""Explainers: each one implements ``attribute(x, score)`` and sees a score function, not a model.

This is the index of the explainers: a new method is one module (with its ``__all__``), its
import line below and its names in ``__all__`` (``tests/test_exports.py`` names what is left
out). The package's top level re-exports this ``__all__``.
"""

from ..engine import Explainer, Parts, Wrapper
from ..engine.layers import LayerInfo, LayerTable, layers
from . import lrp
from .attention import AttentionGradCAM, AttentionGuidedGradCAM, AttentionRollout, TransformerAttribution
from .cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, LayerExplainer, ScoreCAM, XGradCAM
from .class_relevant import ClassRelevant, TopClasses
from .gradient import Gradient, InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients
from .lrp import LRP, LRPCoverageWarning
from .mask_update import MaskUpdate
from .modified_backprop import DeconvNet, GuidedBackprop, GuidedGradCAM, ReLUCoverageWarning
from .occlusion import Occlusion
from .rise import RISE
from .smoothgrad import SmoothGrad

__all__ = [
    # the base classes (salience.engine) and layer listing
    "Explainer",
    "Wrapper",
    "Parts",
    "layers",
    "LayerInfo",
    "LayerTable",
    # attention
    "AttentionRollout",
    "TransformerAttribution",
    "AttentionGradCAM",
    "AttentionGuidedGradCAM",
    # cam
    "LayerExplainer",
    "GradCAM",
    "HiResCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "ScoreCAM",
    # class_relevant
    "ClassRelevant",
    "TopClasses",
    # gradient
    "Gradient",
    "Saliency",
    "InputXGradient",
    # integrated_gradients
    "IntegratedGradients",
    # mask_update
    "MaskUpdate",
    # modified_backprop
    "GuidedBackprop",
    "DeconvNet",
    "GuidedGradCAM",
    "ReLUCoverageWarning",
    # occlusion
    "Occlusion",
    # rise
    "RISE",
    # smoothgrad
    "SmoothGrad",
    # lrp
    "lrp",
    "LRP",
    "LRPCoverageWarning",
]
