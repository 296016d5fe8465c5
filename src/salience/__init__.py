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
from .domains import (
    ICA,
    ICAIG,
    STFT,
    STFTIG,
    Compose,
    CrossDomainIG,
    Domain,
    Fourier,
    FourierIG,
    InDomain,
    Time,
    TimeIG,
    Wavelet,
    WaveletIG,
    aggregate_bands,
)
from .explainers import (
    Explainer,
    Gradient,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    Wrapper,
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
    # domains
    "Domain",
    "Time",
    "Fourier",
    "STFT",
    "ICA",
    "Wavelet",
    "Compose",
    "InDomain",
    "CrossDomainIG",
    "TimeIG",
    "FourierIG",
    "ICAIG",
    "STFTIG",
    "WaveletIG",
    "aggregate_bands",
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
