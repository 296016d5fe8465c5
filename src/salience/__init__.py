"""salience: saliency maps for PyTorch models of signals, images and video, in any domain."""

from . import masking
from .adapters import NumpyModel
from .attribution import Attribution
from .errors import (
    CompositionError,
    DTypeError,
    InputError,
    LayerError,
    ModelCallError,
    ModelOutputError,
    NotFittedError,
    ParameterError,
    SalienceError,
    ShapeError,
    TargetError,
)
from .explainers import (
    ClassRelevant,
    TopClasses,
    Explainer,
    GradCAM,
    GradCAMPlusPlus,
    Gradient,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    layers,
    InputXGradient,
    IntegratedGradients,
    MaskUpdate,
    Occlusion,
    RISE,
    Saliency,
    SmoothGrad,
    Wrapper,
)
from .layout import Layout
from . import metrics
from .metrics import evaluate
from .targets import (
    Class,
    Contrast,
    LogProbability,
    Output,
    Predicted,
    Probability,
    Score,
    Target,
    as_target,
)

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "Layout",
    "metrics",
    "evaluate",
    # explainers
    "Explainer",
    "Wrapper",
    "Gradient",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "ClassRelevant",
    "TopClasses",
    "GradCAM",
    "HiResCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "ScoreCAM",
    "layers",
    "RISE",
    "MaskUpdate",
    "Occlusion",
    "NumpyModel",
    "masking",
    # targets
    "Target",
    "Class",
    "Output",
    "Contrast",
    "Probability",
    "LogProbability",
    "Score",
    "Predicted",
    "as_target",
    # errors
    "SalienceError",
    "ParameterError",
    "InputError",
    "ShapeError",
    "DTypeError",
    "TargetError",
    "ModelOutputError",
    "ModelCallError",
    "NotFittedError",
    "CompositionError",
    "LayerError",
]
