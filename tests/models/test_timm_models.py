"""timm CNNs built locally (``pretrained=False``): the default CAM layer is the last spatial
stage (not the classifier's pooling, a squeeze-excitation convolution or the stem), and every
gradient method runs on them, Gradient, IG and Grad-CAM equal to direct implementations."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_libs import assert_same, direct_gradcam, direct_gradient, direct_ig, generator, image, need

import salience as sl

timm = need("timm")

pytestmark = pytest.mark.models

X = image(n=2, size=64)  # stride-32 networks end on a 2x2 map


def create(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=3, **kwargs).double().eval()


def tiny_convnext_channels_last() -> torch.nn.Module:
    """ConvNeXt with ``conv_mlp=False`` (convnext_tiny and larger): each block runs a LayerNorm
    and Linear layers on channels-last (B, H, W, C) maps, then returns to channels-first."""
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(0)
    return ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3, conv_mlp=False).double().eval()


# model -> the layer a CAM explains when none is named: the output of the last stage (or the
# norm/activation/identity applied to it) that still has a spatial map
DEFAULT_LAYERS = {
    "resnet10t": "layer4",
    "seresnet18": "layer4",  # squeeze-excitation convolutions run on 1x1 maps
    "test_resnet": "layer4",
    "convnext_atto": "norm_pre",  # LayerNorm2d (channels-first) in every block and the stem
    "test_convnext": "norm_pre",
    "efficientnet_b0": "bn2",  # the head's conv + BatchNormAct, before global pooling
    "test_efficientnet_ln": "bn2",  # LayerNormAct2d, a channels-first LayerNorm
    "mobilenetv3_small_050": "blocks",  # its conv_head runs after global pooling, on a 1x1 map
}


@pytest.mark.parametrize(
    "name",
    list(DEFAULT_LAYERS),
)
def test_default_cam_layer_is_the_last_spatial_stage(name):
    model = create(name)
    x = X[:1]
    default = [row.name for row in sl.layers(model, x) if row.default]
    assert default == [DEFAULT_LAYERS[name]]
    got = sl.GradCAM(model, relu=False).explain(x, 1)
    assert got.layer == DEFAULT_LAYERS[name]
    named = sl.GradCAM(model, layer=DEFAULT_LAYERS[name], relu=False).explain(x, 1)
    assert_same(got.values, named.values)


def test_default_cam_layer_of_a_channels_last_convnext():
    model = tiny_convnext_channels_last()
    table = sl.layers(model, X[:1])
    by = {row.name: row for row in table}
    assert [row.name for row in table if row.default] == ["norm_pre"]
    # the channels-last maps inside a block are never read as channels x positions
    assert not by["stages.3.blocks.0.norm"].spatial and not by["stages.3.blocks.0.mlp.fc1"].spatial
    assert by["stages.3.blocks.0"].spatial


@pytest.mark.parametrize("layer", ["stages.3", "stages.3.blocks.1", "norm_pre"])
def test_convnext_stages_can_be_named(layer):
    """A stage's output has the shape of the blocks' LayerNorm2d outputs, which normalise the
    channels of channels-first maps: it is a map over positions, not a token sequence."""
    model = create("test_convnext")
    from timm.layers import LayerNorm2d

    assert any(isinstance(m, LayerNorm2d) for m in model.modules())
    got = sl.GradCAM(model, layer=layer, relu=False).explain(X, 1)
    module = dict(model.named_modules())[layer]
    assert_same(got.values, direct_gradcam(model, X, 1, module, relu=False))


CNNS = ["test_resnet", "test_convnext", "test_efficientnet", "mobilenetv3_small_050"]


@pytest.mark.parametrize("name", CNNS)
def test_gradient_ig_and_gradcam_equal_direct_implementations(name):
    model = create(name)
    direct = direct_gradient(model, X, 2)
    assert_same(sl.Gradient(model).explain(X, 2).values, direct)
    ig = sl.IntegratedGradients(model, n_steps=5).explain(X, 2).values
    assert_same(ig, direct_ig(model, X, 2, 5))
    layer = DEFAULT_LAYERS.get(name) or next(r.name for r in sl.layers(model, X[:1]) if r.default)
    cam = sl.GradCAM(model, relu=False).explain(X, 2)  # signed: an untrained network's may be < 0
    assert cam.layer == layer
    assert_same(cam.values, direct_gradcam(model, X, 2, dict(model.named_modules())[layer], relu=False))


def methods(model):
    return [
        sl.Saliency(model),
        sl.InputXGradient(model),
        sl.SmoothGrad(sl.Gradient(model), n_samples=3, generator=generator(), progress=False),
        sl.GuidedBackprop(model),
        sl.DeconvNet(model),
        sl.GuidedGradCAM(model),
        sl.HiResCAM(model),
        sl.GradCAMPlusPlus(model),
        sl.XGradCAM(model),
        sl.LayerCAM(model),
        sl.LRP(model),
    ]


@pytest.mark.parametrize("name", CNNS)
def test_every_gradient_method_runs(name):
    model = create(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for method in methods(model):
        with warnings.catch_warnings():
            # no nn.ReLU (SiLU, GELU, hard-swish) for the modified-backprop methods, and LRP
            # rules missing for timm's norm layers: warned, and the method still runs
            warnings.simplefilter("ignore", sl.ReLUCoverageWarning)
            warnings.simplefilter("ignore", sl.LRPCoverageWarning)
            got = method.explain(X, 0)
        one_map = method.name == "Saliency" or "CAM" in method.name and method.name != "GuidedGradCAM"
        assert got.values.shape == (2, 1 if one_map else 3, 64, 64), method.name
        assert torch.isfinite(got.values).all(), method.name
        # (a CAM of an untrained network may be all zero after its ReLU, Guided Grad-CAM too)
        assert got.values.abs().sum() > 0 or "CAM" in method.name, method.name
        assert got.target.tolist() == [0, 0]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not model.training


def test_rise_and_occlusion_run_and_are_chunk_invariant():
    model = create("test_resnet")
    rise = sl.RISE(model, n_masks=8, cells=4, generator=generator(), progress=False)
    chunked = sl.RISE(model, n_masks=8, cells=4, generator=generator(), progress=False, batch_size=3)
    assert_same(rise.explain(X, 1).values, chunked.explain(X, 1).values)
    occ = sl.Occlusion(model, window=16, progress=False).explain(X, 1).values
    assert occ.shape == (2, 1, 64, 64) and torch.isfinite(occ).all()
