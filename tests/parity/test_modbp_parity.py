"""Parity of modified backpropagation with peers: Captum (GuidedBackprop, Deconvolution,
GuidedGradCam) and zennit (LRP composites with SequentialMergeBatchNorm)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import salience as sl
from toy_models import DIMS, bn_cnn, cnn, make_input


def seeded(seed: int, build):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


# ---------------------------------------------------------------- parity with Captum
class MaxPoolNet(nn.Module):
    """conv-ReLU(inplace)-maxpool-conv-ReLU-linear, in 1-D or 2-D."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
        pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d}[dims]
        self.features = nn.Sequential(
            conv(3, 6, 3, padding=1), nn.ReLU(inplace=True), pool(2), conv(6, 4, 3), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(4))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["signal", "image", "video"])
@pytest.mark.parametrize("net", ["cnn", "maxpool"])
@pytest.mark.parametrize("method", ["guided", "deconv"])
def test_parity_captum(kind, net, method):
    """Same rule as Captum's GuidedBackprop/Deconvolution (hooks on nn.ReLU modules); float64 exact."""
    captum = pytest.importorskip("captum.attr")
    if net == "maxpool" and kind == "video":
        pytest.skip("MaxPoolNet is 1-D/2-D")
    x = make_input(kind, batch=3, seed=7)
    if net == "cnn":
        model = cnn(DIMS[kind])
    else:

        def build():
            m = MaxPoolNet(DIMS[kind])
            m(x.float())  # materialise the lazy layer
            return m

        model = seeded(5, build).double().eval()
    ours_cls, theirs_cls = {
        "guided": (sl.GuidedBackprop, captum.GuidedBackprop),
        "deconv": (sl.DeconvNet, captum.Deconvolution),
    }[method]
    target = torch.tensor([0, 3, 1])
    ours = ours_cls(model).explain(x, target).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum announces its hooks
        theirs = theirs_cls(model).attribute(x.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-15)


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["signal", "image", "video"])
@pytest.mark.parametrize("layer", ["2", "3"])
def test_parity_captum_guided_gradcam(kind, layer):
    """Captum's GuidedGradCam with interpolate_mode set to the paper's (bi/tri)linear
    upsampling (Captum's default is "nearest"); float64 exact."""
    captum = pytest.importorskip("captum.attr")
    model, x = cnn(DIMS[kind]), make_input(kind, batch=3, seed=2)
    target = torch.tensor([1, 0, 3])
    ours = sl.GuidedGradCAM(model, layer=layer).explain(x, target).values
    mode = {"signal": "linear", "image": "bilinear", "video": "trilinear"}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum.GuidedGradCam(model, model[int(layer)]).attribute(
            x.clone().requires_grad_(True), target=target, interpolate_mode=mode
        )
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- parity with zennit
@pytest.mark.parity
@pytest.mark.parametrize("kind", ["signal", "image"])
@pytest.mark.parametrize(
    "name", ["epsilon", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box"]
)
def test_parity_zennit(kind, name):
    """zennit with SequentialMergeBatchNorm on a conv net with BatchNorm.

    Pinned difference: zennit turns a merged BatchNorm into ``x / sqrt(1 + eps)`` rather than the
    identity (it resets the running variance to 1 but keeps ``eps``), which rescales its output by
    about 5e-6 per BatchNorm. With ``eps=0`` both are exact (float64, 1e-12); with the default
    eps they agree to 1e-4 relative (second half of the test).
    """
    zennit = pytest.importorskip("zennit")
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite
    from zennit.rules import Epsilon as ZEpsilon
    from zennit.rules import Norm
    from zennit.rules import Pass as ZPass
    from zennit.types import Activation, AvgPool, Linear

    assert zennit
    dims = {"signal": 1, "image": 2}[kind]
    x = make_input(kind, batch=3, seed=4)
    target = torch.tensor([1, 0, 3])

    def zennit_composite():
        canon = [SequentialMergeBatchNorm()]
        return {
            "epsilon": lambda: LayerMapComposite(
                [(Activation, ZPass()), (AvgPool, Norm()), (Linear, ZEpsilon(1e-6))], canonizers=canon
            ),
            "epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=canon),
            "epsilon_alpha2_beta1_flat": lambda: EpsilonAlpha2Beta1Flat(canonizers=canon),
            "epsilon_gamma_box": lambda: EpsilonGammaBox(low=-3.0, high=3.0, canonizers=canon),
        }[name]()

    ours_comp = sl.lrp.epsilon_gamma_box(-3.0, 3.0) if name == "epsilon_gamma_box" else name
    for bn_eps, rtol, atol in ((0.0, 1e-12, 1e-14), (1e-5, 1e-4, 1e-7)):
        model = bn_cnn(dims, bias=True, batchnorm=True, bn_eps=bn_eps, seed=2)
        ours = sl.LRP(model, composite=ours_comp).explain(x, target).values
        with Gradient(model, zennit_composite()) as attributor:
            _, theirs = attributor(x.clone(), lambda out: torch.eye(4, dtype=out.dtype)[target] * out)
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)


@pytest.mark.parity
@pytest.mark.parametrize(
    "block, name",
    [
        ("BasicBlock", "epsilon_plus_flat"),
        pytest.param("BasicBlock", "epsilon_gamma_box", marks=pytest.mark.slow),
        pytest.param("Bottleneck", "epsilon_plus_flat", marks=pytest.mark.slow),
        pytest.param("Bottleneck", "epsilon_gamma_box", marks=pytest.mark.slow),
    ],
)
def test_parity_zennit_resnet(block, name):
    """torchvision ResNets: zennit's ResNetCanonizer (BatchNorm merging and a Sum module for
    the residual addition, Norm rule) against our BatchNorm merging and functional-sum rule.
    BatchNorm eps=0 pins zennit's x / sqrt(1 + eps) leftover (see test_parity_zennit). About
    2 s each (5M float64 parameters); three of the four are marked slow."""
    pytest.importorskip("zennit")
    resnet = pytest.importorskip("torchvision.models.resnet")
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    def build():
        m = resnet.ResNet(getattr(resnet, block), [1, 1, 1, 1], num_classes=4)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.normal_(1, 0.1)
                mod.bias.data.normal_(0, 0.1)
                mod.eps = 0.0
        return m

    model = seeded(0, build).double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 2])
    if name == "epsilon_plus_flat":
        ours, theirs_comp = "epsilon_plus_flat", EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    else:
        ours = sl.lrp.epsilon_gamma_box(-3.0, 3.0)
        theirs_comp = EpsilonGammaBox(low=-3.0, high=3.0, canonizers=[ResNetCanonizer()])
    attr = sl.LRP(model, composite=ours).explain(x, target)
    with Gradient(model, theirs_comp) as attributor:
        out, theirs = attributor(x.clone(), lambda o: torch.eye(4, dtype=o.dtype)[target] * o)
    torch.testing.assert_close(attr.values, theirs, rtol=1e-10, atol=1e-15)
    # the conservation gap is only what biases absorb: it matches zennit's
    torch.testing.assert_close(
        attr.delta, theirs.flatten(1).sum(1) - out[torch.arange(2), target], rtol=1e-8, atol=1e-12
    )
