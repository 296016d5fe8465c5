"""Explainers: each one implements ``attribute(x, score)`` and sees a score function, not a model."""

from ..engine import Explainer, Parts, Wrapper
from .class_relevant import ClassRelevant, TopClasses
from .cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, LayerExplainer, ScoreCAM, XGradCAM
from .gradient import Gradient, InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients
from . import lrp
from .lrp import LRP, LRPCoverageWarning
from .modified_backprop import DeconvNet, GuidedBackprop, GuidedGradCAM, ReLUCoverageWarning
from ..engine.layers import LayerInfo, LayerTable, layers
from .mask_update import MaskUpdate
from .occlusion import Occlusion
from .rise import RISE
from .smoothgrad import SmoothGrad

__all__ = [
    "Explainer",
    "Wrapper",
    "Parts",
    "Gradient",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "GuidedBackprop",
    "DeconvNet",
    "GuidedGradCAM",
    "ReLUCoverageWarning",
    "LRP",
    "LRPCoverageWarning",
    "lrp",
    "ClassRelevant",
    "TopClasses",
    "LayerExplainer",
    "GradCAM",
    "HiResCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "ScoreCAM",
    "layers",
    "LayerInfo",
    "LayerTable",
    "RISE",
    "MaskUpdate",
    "Occlusion",
]
