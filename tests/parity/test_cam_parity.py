"""Parity of the CAM family with pytorch-grad-cam (2-D) and Captum's LayerGradCam (1-D/2-D/3-D).

Definitional differences pinned:
- pytorch-grad-cam always applies ReLU and a per-image min-max scaling (twice, with 1e-7 in
  the denominator) and returns float32 numpy; we return raw maps. We apply ReLU and an exact
  min-max to ours. Its resize is cv2/``UpsamplingBilinear2d`` (align_corners=True) where ours
  is align_corners=False, so the target layer keeps the input resolution (the second conv of
  ``toy_models.cnn``, padding 1) and every resize is the identity.
- Its Grad-CAM++ (1e-6), XGrad-CAM (1e-7) and Score-CAM (1e-8) add epsilons to denominators
  where we divide exactly (0 where a denominator is 0). The model's last layer is scaled by 1e4
  so that gradients and ranges dwarf those epsilons.
- Its Score-CAM gathers the masked scores in float32 (``torch.Tensor(list)``) and returns float32: atol 5e-6.
- Captum's ``LayerGradCam(relu_attributions=False)`` is our ``GradCAM(relu=False,
  upsample=False)`` exactly (float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import salience as sl
from toy_models import DIMS, cnn, make_input

pytestmark = pytest.mark.parity


def _scaled_cnn(dims):
    model = cnn(dims)
    with torch.no_grad():
        model[6].weight.mul_(1e4)
        model[6].bias.mul_(1e4)
    return model


def _minmax(cam: torch.Tensor) -> torch.Tensor:
    flat = cam.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    return ((flat - lo[:, None]) / (hi - lo)[:, None]).reshape(cam.shape)


PAIRS = [
    ("GradCAM", sl.GradCAM),
    ("HiResCAM", sl.HiResCAM),
    ("GradCAMPlusPlus", sl.GradCAMPlusPlus),
    ("XGradCAM", sl.XGradCAM),
    ("LayerCAM", sl.LayerCAM),
    ("ScoreCAM", sl.ScoreCAM),
]


@pytest.mark.parametrize("name, ours", PAIRS, ids=[p[0] for p in PAIRS])
def test_pytorch_grad_cam_2d(name, ours):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _scaled_cnn(2)
    x = make_input("image", batch=3, seed=7)
    target = [0, 2, 3]
    kw = {"progress": False} if ours is sl.ScoreCAM else {}
    mine = ours(model, layer="2", **kw).explain(x, torch.tensor(target)).values[:, 0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cam = getattr(pgc, name)(model=model, target_layers=[model[2]])
    try:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
    finally:
        cam.activations_and_grads.release()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    theirs = torch.from_numpy(np.asarray(theirs, dtype=np.float64))
    assert theirs.shape == mine.shape
    torch.testing.assert_close(
        _minmax(mine), theirs, rtol=1e-6, atol=5e-6
    )  # measured: 1.6e-7, Score-CAM 1.3e-6


@pytest.mark.parametrize("kind", ["signal", "image", "video"])
def test_captum_layer_gradcam_raw(kind):
    captum_attr = pytest.importorskip("captum.attr")
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=3, seed=8)
    target = torch.tensor([1, 0, 3])
    for layer in ("0", "2", "3"):
        module = model[int(layer)]
        theirs = captum_attr.LayerGradCam(model, module).attribute(x, target=target, relu_attributions=False)
        mine = sl.GradCAM(model, layer=layer, relu=False, upsample=False).explain(x, target).values
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-10, atol=1e-12)
        theirs_relu = captum_attr.LayerGradCam(model, module).attribute(
            x, target=target, relu_attributions=True
        )
        mine_relu = sl.GradCAM(model, layer=layer, upsample=False).explain(x, target).values
        torch.testing.assert_close(mine_relu, theirs_relu.detach(), rtol=1e-10, atol=1e-12)
