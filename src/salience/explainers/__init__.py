"""Explainers: each one implements ``attribute(x, score)`` and sees a score function, not a model.

This is the index of the explainers: a new method is one module (with its ``__all__``), its
import line below and its names in ``__all__`` (``tests/test_exports.py`` names what is left
out). The package's top level re-exports this ``__all__``.
"""

from ..engine import Explainer, Parts, Wrapper
from ..engine.layers import LayerInfo, LayerTable, layers
from . import lrp
from .ablation import FeatureAblation, FeaturePermutation
from .attention import AttentionGradCAM, AttentionGuidedGradCAM, AttentionRollout, TransformerAttribution
from .cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, LayerExplainer, ScoreCAM, XGradCAM
from .cam_ablation import AblationCAM
from .cam_eigen import EigenCAM, EigenGradCAM
from .class_relevant import ClassRelevant, TopClasses
from .deeplift import DeepLift, DeepLiftCoverageWarning, DeepLiftShap
from .fullgrad import FullGrad
from .gradient import Gradient, InputXGradient, Saliency
from .gradient_shap import GradientShap
from .hsic import HsicAttributionMethod
from .integrated_gradients import IntegratedGradients
from .layer_attribution import LayerConductance, LayerGradientXActivation, LayerIntegratedGradients
from .lrp import LRP, LRPCoverageWarning
from .mask_update import MaskUpdate
from .modified_backprop import DeconvNet, GuidedBackprop, GuidedGradCAM, ReLUCoverageWarning
from .occlusion import Occlusion
from .rise import RISE
from .shapley import ShapleyValueSampling
from .smoothgrad import SmoothGrad
from .sobol import SobolAttributionMethod
from .surrogate import KernelShap, Lime

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
    # cam_eigen, cam_ablation, fullgrad
    "EigenCAM",
    "EigenGradCAM",
    "AblationCAM",
    "FullGrad",
    # ablation, shapley, surrogate (feature groups)
    "FeatureAblation",
    "FeaturePermutation",
    "ShapleyValueSampling",
    "KernelShap",
    "Lime",
    # class_relevant
    "ClassRelevant",
    "TopClasses",
    # deeplift
    "DeepLift",
    "DeepLiftShap",
    "DeepLiftCoverageWarning",
    # gradient_shap
    "GradientShap",
    # gradient
    "Gradient",
    "Saliency",
    "InputXGradient",
    # integrated_gradients
    "IntegratedGradients",
    # layer_attribution
    "LayerIntegratedGradients",
    "LayerGradientXActivation",
    "LayerConductance",
    # sobol
    "SobolAttributionMethod",
    # hsic
    "HsicAttributionMethod",
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
