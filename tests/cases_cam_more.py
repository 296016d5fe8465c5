"""Cases of the CAM additions of issue #19 for the contract suite (layer "2" is the second conv
of toy_models.cnn, 8 channels; layer "0" the first, 6 channels)."""

from __future__ import annotations

from registry import Case
from salience.explainers.cam import GradCAM, ScoreCAM
from salience.explainers.cam_ablation import AblationCAM
from salience.explainers.cam_eigen import EigenCAM, EigenGradCAM
from salience.explainers.fullgrad import FullGrad

_K = 8  # channels of layer "2"
_AUG = 6  # aug_smooth's augmentations per sample


def _layer(m, index: int = 2):
    """Layer ``index`` by name; by module when the call-count test wraps the model in Counting."""
    inner = getattr(m, "model", None)
    return inner[index] if inner is not None else str(index)


CAM_MORE: list[Case] = [
    Case(
        "EigenCAM",
        lambda m, **kw: EigenCAM(m, layer=_layer(m), **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "EigenGradCAM-signed",
        lambda m, **kw: EigenGradCAM(m, layer=_layer(m), relu=False, **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "AblationCAM",
        lambda m, **kw: AblationCAM(m, layer=_layer(m), progress=False, **kw),
        passes=lambda b: [b, _K * b],  # activations, then the ablated rows
        needs_layer=True,
    ),
    Case(
        "FullGrad",
        lambda m, **kw: FullGrad(m, **kw),
        passes=lambda b: [b],
    ),
    Case(
        "FullGrad-raw",
        lambda m, **kw: FullGrad(m, absolute=False, normalize=None, **kw),
        passes=lambda b: [b],
    ),
    Case(
        "GradCAM-two-layers",
        lambda m, **kw: GradCAM(m, layer=[_layer(m, 0), _layer(m)], scale_layers=True, **kw),
        passes=lambda b: [b, b],  # one pass per layer
        needs_layer=True,
    ),
    Case(
        "GradCAM-eigen_smooth",
        lambda m, **kw: GradCAM(m, layer=_layer(m), eigen_smooth=True, relu=False, **kw),
        passes=lambda b: [b],
        needs_layer=True,
    ),
    Case(
        "GradCAM-aug_smooth",
        lambda m, **kw: GradCAM(m, layer=_layer(m), aug_smooth=True, **kw),
        passes=lambda b: [_AUG * b],
        kinds=("image", "video"),  # flips the "w" axis: refused for signals
        needs_layer=True,
    ),
    Case(
        "ScoreCAM-aug_smooth",
        lambda m, **kw: ScoreCAM(m, layer=_layer(m), aug_smooth=True, progress=False, **kw),
        passes=lambda b: [_AUG * b, _AUG * _K * b],
        kinds=("image",),
        needs_layer=True,
    ),
]
