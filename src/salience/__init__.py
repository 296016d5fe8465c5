"""salience: saliency maps for PyTorch models of signals, images and video, in any domain."""

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
    LRP,
    DeconvNet,
    Explainer,
    GuidedBackprop,
    Gradient,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    ReLUCoverageWarning,
    SmoothGrad,
    Wrapper,
    lrp,
)
from .layout import Layout
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
    # explainers
    "Explainer",
    "Wrapper",
    "Gradient",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "SmoothGrad",
    "GuidedBackprop",
    "DeconvNet",
    "ReLUCoverageWarning",
    "LRP",
    "lrp",
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
