"""Masking: maskers draw masks over named axes; substrates say what replaces masked values.

Generating masks (:mod:`salience.masking.maskers`) and applying them (:func:`fill` with a
:class:`Substrate`) are separate concerns, shared by RISE, MaskUpdate, Occlusion and the
deletion/insertion metrics. Masks hold values in [0, 1], 1 = keep.
"""

from .maskers import GridMasker, Masker, MaskPlan, Segments, SlidingWindow
from .substrates import (
    Blur,
    ChannelMean,
    Constant,
    Filler,
    Interpolate,
    Noise,
    Reference,
    Substrate,
    SubstrateLike,
    as_substrate,
    fill,
)

__all__ = [
    "Masker",
    "MaskPlan",
    "GridMasker",
    "SlidingWindow",
    "Segments",
    "Substrate",
    "SubstrateLike",
    "Constant",
    "ChannelMean",
    "Blur",
    "Noise",
    "Interpolate",
    "Reference",
    "as_substrate",
    "fill",
    "Filler",
]
