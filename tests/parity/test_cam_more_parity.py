"""Parity of EigenCAM, EigenGradCAM, AblationCAM, FullGrad, several layers and the smoothing
options with pytorch-grad-cam (2-D; its own post-processing applied to our raw maps).

Definitional differences pinned (besides those of tests/parity/test_cam_parity.py: ReLU and
min-max scaling with 1e-7, float32, its resize):
- The principal component's sign (EigenCAM, EigenGradCAM, ``eigen_smooth``): its sign is the
  one NumPy's SVD returns; ours makes the loadings sum to >= 0. Each of its maps equals ours
  after its ReLU and scaling or ours negated; ``test_sign_convention_measured`` pins how often
  the two signs agree on these inputs.
- AblationCAM: it ablates to 0 only when the sample's smallest activation at the layer is 0
  and to ``min - 1e7`` otherwise; we ablate to ``value`` (0). The target layer is a ReLU, where
  its rule gives 0 too.
- Several layers: it min-max scales each layer's map before the mean (``scale_layers=True``).
- aug_smooth: it averages its scaled maps; ``info["augmented"]`` holds our 6 raw maps, scaled
  here and averaged. Its target=None is the class predicted for each augmented input; ours is
  bound at x (the tests pass targets). For 3-D inputs its "horizontal" flip is ttach's
  ``flip(3)``, the "h" axis of (B, C, T, H, W); ours flips "w".
- FullGrad: it scales each channel with 1e-7 in the denominator (``normalize="channel"``) and
  scales the final sum; it covers Conv2d and BatchNorm2d only.
- Score-CAM: its masks are resized with ``align_corners=True``; ours with ``align_corners=False``
  (``test_score_cam_resize_difference`` pins that this is the only difference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from salience.explainers._cam_base import first_component
from salience.explainers.cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from salience.explainers.cam_ablation import AblationCAM
from salience.explainers.cam_eigen import EigenCAM, EigenGradCAM
from salience.explainers.fullgrad import FullGrad
from toy_models import bn_cnn, cnn, make_input

pytestmark = pytest.mark.parity
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TARGET = [0, 2, 3]


def _scaled(model: nn.Sequential, index: int = 6) -> nn.Sequential:
    with torch.no_grad():
        model[index].weight.mul_(1e4)
        model[index].bias.mul_(1e4)
    return model


def _minmax(cam: torch.Tensor) -> torch.Tensor:
    flat = cam.flatten(1)
    lo, hi = flat.amin(1), flat.amax(1)
    return ((flat - lo[:, None]) / (hi - lo)[:, None]).reshape(cam.shape)


def _theirs(cls, model, layers, x, **call) -> torch.Tensor:
    cam = cls(model=model, target_layers=layers)
    try:
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGET], **call)
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(np.asarray(out, dtype=np.float64))


def _signs(signed: torch.Tensor, theirs: torch.Tensor, atol: float = 5e-6) -> list[int]:
    """The sign s (+1 or -1) per sample with theirs == minmax(ReLU(s * ours)); fails if neither."""
    signs = []
    for ours, their in zip(signed, theirs, strict=True):
        fits = [
            s
            for s in (1, -1)
            if torch.allclose(_minmax((s * ours).clamp_min(0)[None])[0], their, rtol=1e-6, atol=atol)
        ]
        assert fits, (
            f"neither sign matches: max diff {(_minmax(ours.clamp_min(0)[None])[0] - their).abs().max()}"
        )
        signs.append(fits[0])
    return signs


@pytest.mark.parametrize(
    "ours, name, layer", [(EigenCAM, "EigenCAM", "2"), (EigenGradCAM, "EigenGradCAM", "2")]
)
def test_eigen_cams(ours, name, layer):
    model = _scaled(cnn(2)) if ours is EigenGradCAM else cnn(2)
    x = make_input("image", batch=3, seed=7)
    signed = ours(model, layer=layer, relu=False).explain(x, torch.tensor(TARGET)).values[:, 0]
    theirs = _theirs(getattr(pgc, name), model, [model[int(layer)]], x)
    assert len(_signs(signed, theirs)) == 3  # measured: max diff 2e-7 with the matching sign


def test_projection_equals_theirs_up_to_sign():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    terms = torch.randn(4, 6, 5, 7, dtype=torch.float64)
    ours = first_component(terms)
    theirs = torch.from_numpy(get_2d_projection(terms.numpy()).astype(np.float64))
    for o, t in zip(ours, theirs, strict=True):
        s = 1.0 if (o * t).sum() > 0 else -1.0
        torch.testing.assert_close(s * o, t, rtol=1e-5, atol=1e-6)  # theirs is float32


def test_sign_convention_measured():
    """Our sign is fixed (loadings sum >= 0, map correlates with the channel sum); NumPy's
    is whatever LAPACK returns. Pinned: on these 16 inputs they agree on some and not all."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    g = torch.Generator().manual_seed(3)
    terms = torch.randn(16, 6, 5, 7, generator=g, dtype=torch.float64)
    ours = first_component(terms)
    theirs = torch.from_numpy(get_2d_projection(terms.numpy()).astype(np.float64))
    agree = ((ours * theirs).flatten(1).sum(1) > 0).sum().item()
    assert (ours * terms.sum(1)).flatten(1).sum(1).min() >= 0  # our convention, always
    assert 0 < agree < 16, agree  # theirs is not a convention: measured 9 of 16 here


def test_ablation_cam():
    model = cnn(2)
    x = make_input("image", batch=3, seed=7)
    mine = AblationCAM(model, layer="3", progress=False).explain(x, torch.tensor(TARGET)).values[:, 0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    theirs = _theirs(pgc.AblationCAM, model, [model[3]], x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert isinstance(model[3], nn.ReLU)  # put back
    torch.testing.assert_close(_minmax(mine), theirs, rtol=1e-5, atol=2e-5)  # float32 scores: measured 6e-7


def test_ablation_cam_batches_rows():
    """The N x K ablated rows go through the model in chunks of batch_size rows."""
    from toy_models import Counting

    model = Counting(cnn(2))
    x = make_input("image", batch=3, seed=7)
    AblationCAM(model, layer=model.model[3], progress=False, batch_size=5).explain(x, 1)
    assert model.rows == [3] + [5] * 4 + [4]  # activations, then 3 x 8 = 24 ablated rows


def test_fullgrad():
    model = _scaled(bn_cnn(2), index=8)
    x = make_input("image", batch=3, seed=7)
    mine = FullGrad(model).explain(x, torch.tensor(TARGET)).values[:, 0]
    theirs = _theirs(pgc.FullGrad, model, [], x)
    torch.testing.assert_close(_minmax(mine), theirs, rtol=1e-5, atol=1e-5)  # measured 1.1e-7
    assert (
        _minmax(FullGrad(model, normalize="layer").explain(x, torch.tensor(TARGET)).values[:, 0]) - theirs
    ).abs().max() > 0.1


PAIRS = [
    (GradCAM, "GradCAM"),
    (HiResCAM, "HiResCAM"),
    (GradCAMPlusPlus, "GradCAMPlusPlus"),
    (XGradCAM, "XGradCAM"),
    (LayerCAM, "LayerCAM"),
]


@pytest.mark.parametrize("ours, name", PAIRS, ids=[p[1] for p in PAIRS])
def test_several_layers(ours, name):
    model = _scaled(cnn(2))
    x = make_input("image", batch=3, seed=7)
    attr = ours(model, layer=["0", "2", "3"], scale_layers=True).explain(x, torch.tensor(TARGET))
    theirs = _theirs(getattr(pgc, name), model, [model[0], model[2], model[3]], x)
    torch.testing.assert_close(_minmax(attr.values[:, 0]), theirs, rtol=1e-6, atol=1e-5)  # measured <= 5.1e-6
    assert attr.layer == "0, 2, 3" and attr.info["layers"] == ("0", "2", "3")


@pytest.mark.parametrize("ours, name", PAIRS, ids=[p[1] for p in PAIRS])
def test_eigen_smooth(ours, name):
    model = _scaled(cnn(2))
    x = make_input("image", batch=3, seed=7)
    signed = ours(model, layer="2", relu=False, eigen_smooth=True).explain(x, torch.tensor(TARGET)).values
    theirs = _theirs(getattr(pgc, name), model, [model[2]], x, eigen_smooth=True)
    assert len(_signs(signed[:, 0], theirs)) == 3


@pytest.mark.parametrize(
    "ours, name", [*PAIRS, (ScoreCAM, "ScoreCAM")], ids=[*(p[1] for p in PAIRS), "ScoreCAM"]
)
def test_aug_smooth(ours, name):
    model = _scaled(cnn(2))
    x = make_input("image", batch=3, seed=7)
    kw = {"progress": False} if ours is ScoreCAM else {}
    attr = ours(model, layer="2", aug_smooth=True, **kw).explain(x, torch.tensor(TARGET))
    theirs = _theirs(getattr(pgc, name), model, [model[2]], x, aug_smooth=True)
    scaled = torch.stack([_minmax(m[:, 0]) for m in attr.info["augmented"].unbind(1)], 1)
    torch.testing.assert_close(scaled.mean(1), theirs, rtol=1e-6, atol=5e-6)
    torch.testing.assert_close(attr.values, attr.info["augmented"].mean(1))


def _downsampling_cnn() -> nn.Sequential:
    torch.manual_seed(5)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )
        .double()
        .eval()
    )


def _reference_score_cam(model, x, align_corners: bool) -> torch.Tensor:
    """Score-CAM written out: masks resized with the given align_corners, exact min-max."""
    store = {}
    handle = model[2].register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    a = store["a"]
    cams = []
    for i, t in enumerate(TARGET):
        up = nn.functional.interpolate(
            a[i : i + 1].transpose(0, 1), size=x.shape[2:], mode="bilinear", align_corners=align_corners
        )
        masks = _minmax(up)  # (K, 1, H, W)
        with torch.no_grad():
            s = model(x[i : i + 1] * masks)[:, t]
        w = torch.softmax(s, 0)
        cams.append((w[:, None, None] * a[i]).sum(0).clamp_min(0))
    cam = torch.stack(cams)[:, None]
    return nn.functional.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def test_score_cam_resize_difference():
    """With a layer at half the input's resolution, pytorch-grad-cam's Score-CAM is the
    reference with align_corners=True masks, ours the reference with align_corners=False."""
    model = _scaled(_downsampling_cnn())
    x = make_input("image", batch=3, seed=7)
    mine = ScoreCAM(model, layer="2", progress=False).explain(x, torch.tensor(TARGET)).values[:, 0]
    torch.testing.assert_close(
        mine, _reference_score_cam(model, x, align_corners=False), rtol=1e-9, atol=1e-12
    )
    theirs = _theirs(pgc.ScoreCAM, model, [model[2]], x)
    torch.testing.assert_close(
        _minmax(_reference_score_cam(model, x, align_corners=True)), theirs, rtol=1e-5, atol=1e-5
    )
    assert (_minmax(mine) - theirs).abs().max() > 1e-3  # the masks differ, so the maps do


# --------------------------------------------------------------------------- 3-D (b c t h w)
@pytest.mark.parametrize("ours, name", [(EigenCAM, "EigenCAM"), (EigenGradCAM, "EigenGradCAM")])
def test_eigen_cams_3d(ours, name):
    model = _scaled(cnn(3))
    x = make_input("video", batch=3, seed=7)
    signed = ours(model, layer="2", relu=False).explain(x, torch.tensor(TARGET)).values[:, 0]
    assert len(_signs(signed, _theirs(getattr(pgc, name), model, [model[2]], x))) == 3


@pytest.mark.parametrize("ours, name", PAIRS, ids=[p[1] for p in PAIRS])
def test_several_layers_and_eigen_smooth_3d(ours, name):
    model = _scaled(cnn(3))
    x = make_input("video", batch=3, seed=7)
    attr = ours(model, layer=["0", "2"], scale_layers=True).explain(x, torch.tensor(TARGET))
    theirs = _theirs(getattr(pgc, name), model, [model[0], model[2]], x)
    torch.testing.assert_close(_minmax(attr.values[:, 0]), theirs, rtol=1e-6, atol=1e-5)  # measured 2.4e-7
    signed = ours(model, layer="2", relu=False, eigen_smooth=True).explain(x, torch.tensor(TARGET)).values
    assert (
        len(_signs(signed[:, 0], _theirs(getattr(pgc, name), model, [model[2]], x, eigen_smooth=True))) == 3
    )


def test_aug_smooth_3d_flips_h_in_pytorch_grad_cam():
    """ttach's HorizontalFlip flips axis 3: "h" of a (B, C, T, H, W) video. Our aug_smooth flips
    "w"; pytorch-grad-cam's 3-D result is the same average with "h" flipped instead."""
    model = _scaled(cnn(3))
    x = make_input("video", batch=3, seed=7)
    t = torch.tensor(TARGET)
    maps = []
    for flip, factor in ((False, 1.0), (False, 0.9), (False, 1.1), (True, 1.0), (True, 0.9), (True, 1.1)):
        xa = (x.flip(3) if flip else x) * factor
        m = GradCAM(model, layer="2").explain(xa, t).values[:, 0]
        maps.append(_minmax(m.flip(2) if flip else m))
    theirs = _theirs(pgc.GradCAM, model, [model[2]], x, aug_smooth=True)
    torch.testing.assert_close(torch.stack(maps).mean(0), theirs, rtol=1e-6, atol=1e-5)
    ours = GradCAM(model, layer="2", aug_smooth=True).explain(x, t).info["augmented"][:, :, 0]
    scaled = torch.stack([_minmax(m) for m in ours.unbind(1)]).mean(0)
    assert (scaled - theirs).abs().max() > 1e-2  # the flipped axis differs
