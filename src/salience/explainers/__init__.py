"""Explainers: each one implements ``_attribute(x, score)`` and sees a score function, not a model."""

from .base import Explainer, Parts, Wrapper
from .gradient import Gradient, InputXGradient, Saliency
from .integrated_gradients import IntegratedGradients
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
    "RISE",
    "MaskUpdate",
    "Occlusion",
]
