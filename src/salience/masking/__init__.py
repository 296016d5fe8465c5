"""Masking: maskers draw masks over named axes; substrates say what replaces masked values.

Generating masks (:mod:`salience.masking.maskers`) and applying them (:func:`fill` and
:class:`Filler` in :mod:`salience.masking.filling`, with a :class:`Substrate` from
:mod:`salience.masking.substrates`) are separate concerns, shared by RISE, MaskUpdate,
Occlusion and the deletion/insertion metrics. Masks hold values in [0, 1], 1 = keep.
"""

from . import groups
from .filling import Filler, fill
from .groups import (
    GroupMask,
    Groups,
    GroupsLike,
    axis_groups,
    band_groups,
    channel_groups,
    component_groups,
    cross_groups,
    element_groups,
    patch_groups,
    superpixel_groups,
    time_segments,
)
from .maskers import GridMasker, Masker, MaskPlan, Segments, SlidingWindow
from .substrates import (
    Blur,
    ChannelMean,
    Constant,
    Interpolate,
    Noise,
    Reference,
    Substrate,
    SubstrateLike,
    as_substrate,
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
    # feature groups (FeatureAblation, Shapley, KernelShap, Lime, Occlusion(groups=))
    "groups",
    "GroupMask",
    "Groups",
    "GroupsLike",
    "axis_groups",
    "band_groups",
    "channel_groups",
    "component_groups",
    "cross_groups",
    "element_groups",
    "patch_groups",
    "superpixel_groups",
    "time_segments",
]
