"""CAM-family cases for the contract suite (layer "2" is the second conv of toy_models.cnn)."""

from __future__ import annotations

import salience as sl
from registry import Case

# second conv of toy_models.cnn has 8 channels: Score-CAM scores 8 masked inputs per sample
_K = 8


def _conv2(m):
    """Layer "2" by name; by module when the call-count test wraps the model in Counting."""
    inner = getattr(m, "model", None)
    return inner[2] if inner is not None else "2"


CAM: list[Case] = [
    Case(
        "GradCAM",
        lambda m, **kw: sl.GradCAM(m, layer=_conv2(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "HiResCAM",
        lambda m, **kw: sl.HiResCAM(m, layer=_conv2(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "GradCAMPlusPlus",
        lambda m, **kw: sl.GradCAMPlusPlus(m, layer=_conv2(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "XGradCAM",
        lambda m, **kw: sl.XGradCAM(m, layer=_conv2(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "LayerCAM",
        lambda m, **kw: sl.LayerCAM(m, layer=_conv2(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "ScoreCAM",
        lambda m, **kw: sl.ScoreCAM(m, layer=_conv2(m), progress=False, **kw),
        passes=lambda b: [b, _K * b],  # activations, then the masked inputs
        needs_layer=True,
    ),
    Case(
        "GradCAM-default-layer-signed",
        lambda m, **kw: sl.GradCAM(m, relu=False, **kw),
        passes=lambda b: [1, b],  # a dry run on one sample finds the layer
        needs_layer=True,
    ),
    Case(
        "HiResCAM-layer-resolution",
        lambda m, **kw: sl.HiResCAM(m, layer=_conv2(m), upsample=False, relu=False, **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
]
