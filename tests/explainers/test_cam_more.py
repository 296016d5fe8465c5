"""EigenCAM, EigenGradCAM, AblationCAM, FullGrad, several layers, eigen_smooth and aug_smooth:
direct references written here, analytic identities, 1-D/2-D/3-D runs, errors, and the
public testing kit (``salience.testing``) on each new explainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from salience.errors import CompositionError, LayerError, ParameterError, ShapeError
from salience.explainers._cam_base import AUGMENTATIONS, first_component
from salience.explainers.cam import GradCAM, HiResCAM, ScoreCAM
from salience.explainers.cam_ablation import AblationCAM
from salience.explainers.cam_eigen import EigenCAM, EigenGradCAM
from salience.explainers.fullgrad import FullGrad
from salience.testing import explainer_checks
from toy_models import DIMS, bn_cnn, cnn, make_input

KINDS = ["signal", "image", "video"]
TARGET = torch.tensor([1, 0, 3])


def _capture(model: nn.Module, index: int, x: torch.Tensor, t: torch.Tensor):
    """Activations of model[index] and the gradient of the target scores there (reference)."""
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    handle = model[index].register_forward_hook(hook)
    try:
        out = model(x)
        out[torch.arange(len(t)), t].sum().backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    return store["a"].detach(), store["a"].grad.detach()


def _pca_reference(terms: torch.Tensor) -> torch.Tensor:
    """First principal component per sample with NumPy, our sign convention applied."""
    maps = []
    for t in terms.numpy():
        m = t.reshape(t.shape[0], -1).T
        m = m - m.mean(0)
        _, _, vt = np.linalg.svd(m, full_matrices=False)
        v = vt[0] * (1.0 if vt[0].sum() >= 0 else -1.0)
        maps.append((m @ v).reshape(t.shape[1:]))
    return torch.from_numpy(np.stack(maps))


def _up(cam: torch.Tensor, size) -> torch.Tensor:
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return nn.functional.interpolate(cam[:, None], size=size, mode=mode, align_corners=False)


# --------------------------------------------------------------------------- Eigen-CAMs
@pytest.mark.parametrize("kind", KINDS)
def test_eigen_cams_equal_the_numpy_reference(kind):
    model, x = cnn(DIMS[kind]), make_input(kind, batch=3)
    a, g = _capture(model, 2, x, TARGET)
    eig = EigenCAM(model, layer="2", relu=False, upsample=False).explain(x, TARGET).values[:, 0]
    torch.testing.assert_close(eig, _pca_reference(a), rtol=1e-9, atol=1e-12)
    grad = EigenGradCAM(model, layer="2", relu=False, upsample=False).explain(x, TARGET).values[:, 0]
    torch.testing.assert_close(grad, _pca_reference(g * a), rtol=1e-9, atol=1e-12)
    up = EigenCAM(model, layer="2").explain(x, TARGET).values
    torch.testing.assert_close(up, _up(_pca_reference(a).clamp_min(0), x.shape[2:]), rtol=1e-9, atol=1e-12)


def test_first_component_sign_convention_and_invariances():
    g = torch.Generator().manual_seed(0)
    terms = torch.randn(8, 5, 4, 6, generator=g, dtype=torch.float64)
    p = first_component(terms)
    assert ((p * terms.sum(1)).flatten(1).sum(1) >= 0).all()  # correlates with the channel sum
    torch.testing.assert_close(first_component(-terms), -p)  # the sign follows the data's, not LAPACK's
    torch.testing.assert_close(first_component(terms + 3.0), p)  # centred over positions
    torch.testing.assert_close(first_component(terms[:, torch.randperm(5, generator=g)]), p)
    assert torch.equal(first_component(torch.ones(2, 3, 1)), torch.zeros(2, 1))  # one position


def test_eigen_cam_ignores_the_target_eigen_grad_cam_does_not():
    model, x = cnn(2), make_input("image", batch=2)
    one, two = (EigenCAM(model, layer="2").explain(x, t).values for t in (0, 3))
    assert torch.equal(one, two)
    one, two = (EigenGradCAM(model, layer="2").explain(x, t).values for t in (0, 3))
    assert not torch.allclose(one, two)


def test_eigen_smooth_is_refused_by_the_eigen_cams():
    with pytest.raises(ParameterError, match="eigen_smooth"):
        EigenCAM(cnn(1), layer="2", eigen_smooth=True)


@pytest.mark.parametrize("kind", KINDS)
def test_eigen_smooth_replaces_the_channel_sum(kind):
    model, x = cnn(DIMS[kind]), make_input(kind, batch=3)
    a, g = _capture(model, 2, x, TARGET)
    w = g.mean(dim=tuple(range(2, g.ndim)), keepdim=True)
    mine = GradCAM(model, layer="2", eigen_smooth=True, relu=False, upsample=False).explain(x, TARGET)
    torch.testing.assert_close(mine.values[:, 0], _pca_reference(w * a), rtol=1e-9, atol=1e-12)
    hires = HiResCAM(model, layer="2", eigen_smooth=True, relu=False, upsample=False).explain(x, TARGET)
    torch.testing.assert_close(hires.values[:, 0], _pca_reference(g * a), rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- AblationCAM
def _ablation_reference(model, x, t, index, value=0.0):
    """One forward per (sample, channel): model[index]'s channel k set to ``value``."""
    with torch.no_grad():
        base = model(x)[torch.arange(len(t)), t]
    a, _ = _capture(model, index, x, t)
    k = a.shape[1]
    drops = torch.zeros(len(t), k, dtype=x.dtype)
    for c in range(k):

        def hook(_m, _i, out, c=c):
            out = out.clone()
            out[:, c] = value
            return out

        handle = model[index].register_forward_hook(hook)
        with torch.no_grad():
            drops[:, c] = base - model(x)[torch.arange(len(t)), t]
        handle.remove()
    return base, drops, a


@pytest.mark.parametrize("kind", KINDS)
def test_ablation_cam_equals_the_reference(kind):
    model, x = cnn(DIMS[kind]), make_input(kind, batch=3)
    base, drops, a = _ablation_reference(model, x, TARGET, 2)
    w = drops / base[:, None]
    expected = (w.reshape(*w.shape, *([1] * (a.ndim - 2))) * a).sum(1)
    mine = AblationCAM(model, layer="2", relu=False, upsample=False, progress=False).explain(x, TARGET)
    torch.testing.assert_close(mine.values[:, 0], expected, rtol=1e-9, atol=1e-12)
    raw = AblationCAM(model, layer="2", relu=False, upsample=False, relative=False, progress=False)
    expected = (drops.reshape(*w.shape, *([1] * (a.ndim - 2))) * a).sum(1)
    torch.testing.assert_close(raw.explain(x, TARGET).values[:, 0], expected, rtol=1e-9, atol=1e-12)


def test_ablation_cam_value():
    model, x = cnn(2), make_input("image", batch=3)
    base, drops, a = _ablation_reference(model, x, TARGET, 3, value=-0.5)
    mine = AblationCAM(
        model, layer="3", value=-0.5, relative=False, relu=False, upsample=False, progress=False
    )
    torch.testing.assert_close(
        mine.explain(x, TARGET).values[:, 0], (drops[:, :, None, None] * a).sum(1), rtol=1e-9, atol=1e-12
    )


def test_ablation_cam_drop_is_the_linear_head_weight_times_the_mean_activation():
    """After the ReLU "3", GAP and one linear layer: ablating channel k drops W[t, k] mean(A_k)."""
    model, x = cnn(1), make_input("signal", batch=3)
    a, _ = _capture(model, 3, x, TARGET)
    weight = model[6].weight.detach()[TARGET]  # (B, K)
    drop = weight * a.mean(2)
    mine = AblationCAM(model, layer="3", relative=False, relu=False, upsample=False, progress=False)
    torch.testing.assert_close(mine.explain(x, TARGET).values[:, 0], (drop[:, :, None] * a).sum(1))


def test_ablation_cam_refuses_token_layers():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.embed(x.transpose(1, 2)).mean(1))

    model = Tokens().double().eval()
    with pytest.raises(LayerError):
        AblationCAM(model, layer="embed", progress=False).explain(make_input("signal", 2), 0)


# --------------------------------------------------------------------------- FullGrad
@pytest.mark.parametrize("kind", KINDS)
def test_fullgrad_completeness(kind):
    """Piecewise-linear network, raw terms: the map plus the linear bias terms is the score."""
    model, x = bn_cnn(DIMS[kind]), make_input(kind, batch=3)
    attr = FullGrad(model, absolute=False, normalize=None).explain(x, TARGET)
    torch.testing.assert_close(
        attr.values.flatten(1).sum(1) + attr.info["bias_rest"], attr.scores, rtol=1e-9, atol=1e-10
    )
    assert attr.info["layers"] == ("0", "1", "3", "4")


def _fullgrad_reference(model, x, t, normalize, layers=(0, 1, 3, 4)):
    """Input term and conv/BN bias terms by autograd, post-processed as the paper (or peer)
    does: each channel interpolated to the input, then summed."""
    outs = {}

    def keep(i):
        def hook(_m, _inp, out):
            outs[i] = out
            return out.clone()  # an in-place ReLU after the layer must not overwrite it

        return hook

    handles = [model[i].register_forward_hook(keep(i)) for i in layers]
    xr = x.clone().requires_grad_(True)
    try:
        score = model(xr)[torch.arange(len(t)), t].sum()
        grads = torch.autograd.grad(score, [xr, *(outs[i] for i in layers)])
    finally:
        for h in handles:
            h.remove()

    def bias(i):
        m = model[i]
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return (m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)).detach()
        return m.bias.detach()

    terms = [grads[0] * x] + [
        g * bias(i).reshape(1, -1, *([1] * (g.ndim - 2))) for g, i in zip(grads[1:], layers, strict=True)
    ]
    total = 0
    for term in terms:
        term = term.abs()
        dims = tuple(range(2, term.ndim)) if normalize == "channel" else tuple(range(1, term.ndim))
        lo, hi = term.amin(dims, keepdim=True), term.amax(dims, keepdim=True)
        term = torch.where(hi > lo, (term - lo) / (hi - lo).clamp_min(1e-300), 0.0)
        channels = [_up(term[:, c], x.shape[2:])[:, 0] for c in range(term.shape[1])]
        total = total + torch.stack(channels, 1).sum(1)
    return total


@pytest.mark.parametrize("normalize", ["channel", "layer"])
@pytest.mark.parametrize("kind", KINDS)
def test_fullgrad_equals_the_reference(kind, normalize):
    model, x = bn_cnn(DIMS[kind]), make_input(kind, batch=3)
    mine = FullGrad(model, normalize=normalize).explain(x, TARGET).values[:, 0]
    torch.testing.assert_close(mine, _fullgrad_reference(model, x, TARGET, normalize), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("normalize", ["channel", "layer"])
@pytest.mark.parametrize("kind", KINDS)
def test_fullgrad_interpolates_terms_of_lower_resolution(kind, normalize):
    d = DIMS[kind]
    conv, bn = getattr(nn, f"Conv{d}d"), getattr(nn, f"BatchNorm{d}d")
    pool, gap = getattr(nn, f"MaxPool{d}d"), getattr(nn, f"AdaptiveAvgPool{d}d")
    model = nn.Sequential(
        conv(3, 5, 3, padding=1),
        bn(5),
        nn.ReLU(),
        pool(2),
        conv(5, 4, 3, padding=1),
        nn.ReLU(),
        gap(1),
        nn.Flatten(),
        nn.Linear(4, 4),
    )
    model[1].running_mean.normal_()
    model = model.double().eval()
    x = make_input(kind, batch=3)
    mine = FullGrad(model, normalize=normalize).explain(x, TARGET)
    expected = _fullgrad_reference(model, x, TARGET, normalize, layers=(0, 1, 4))
    torch.testing.assert_close(mine.values[:, 0], expected, rtol=1e-9, atol=1e-10)
    assert mine.info["layers"] == ("0", "1", "4")


def test_fullgrad_channels_last_layout():
    model, x = bn_cnn(1), make_input("signal", batch=2)
    wrapped = nn.Sequential(Transpose(), model).eval()
    mine = FullGrad(wrapped, layout="b t c").explain(x.transpose(1, 2).contiguous(), 1).values
    torch.testing.assert_close(mine.transpose(1, 2), FullGrad(model).explain(x, 1).values)


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


def test_fullgrad_refusals():
    model = bn_cnn(1)
    model[1].train()
    with pytest.raises(LayerError, match="batch statistics"):
        FullGrad(model).explain(make_input("signal", 2), 0)
    with pytest.raises(CompositionError):
        sl.InDomain(FullGrad(bn_cnn(1)), sl.Fourier()).explain(make_input("signal", 2), 0)
    with pytest.raises(ParameterError, match="normalize"):
        FullGrad(bn_cnn(1), normalize="image")


# --------------------------------------------------------------------------- several layers
@pytest.mark.parametrize("kind", KINDS)
def test_several_layers_average_the_single_layer_maps(kind):
    model, x = cnn(DIMS[kind]), make_input(kind, batch=3)
    maps = [GradCAM(model, layer=name).explain(x, TARGET).values for name in ("0", "2", "3")]
    both = GradCAM(model, layer=["0", "2", "3"]).explain(x, TARGET)
    torch.testing.assert_close(both.values, torch.stack(maps).mean(0), rtol=1e-12, atol=1e-14)
    scaled = GradCAM(model, layer=["0", model[2]], scale_layers=True).explain(x, TARGET).values

    def mm(t):
        f = t.flatten(1)
        return ((f - f.amin(1, keepdim=True)) / (f.amax(1, keepdim=True) - f.amin(1, keepdim=True))).reshape(
            t.shape
        )

    torch.testing.assert_close(scaled, (mm(maps[0]) + mm(maps[1])) / 2, rtol=1e-12, atol=1e-14)
    assert both.layer == "0, 2, 3" and both.info["layers"] == ("0", "2", "3")


def test_several_layers_errors():
    model = nn.Sequential(
        nn.Conv1d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, padding=1)
    )
    model = nn.Sequential(*model, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).double().eval()
    x = make_input("signal", 2)
    with pytest.raises(ShapeError, match="one shape"):
        GradCAM(model, layer=["0", "3"], upsample=False).explain(x, 0)
    assert GradCAM(model, layer=["0", "3"]).explain(x, 0).values.shape == (2, 1, 20)
    with pytest.raises(ParameterError, match="list"):
        GradCAM(model, layer=[])
    with pytest.raises(ParameterError, match="list"):
        GradCAM(model, layer=["0", 3])


# --------------------------------------------------------------------------- aug_smooth
@pytest.mark.parametrize("kind", ["image", "video"])
def test_aug_smooth_is_the_mean_over_flips_and_factors(kind):
    model, x = cnn(DIMS[kind]), make_input(kind, batch=3)
    maps = []
    for flip, factor in AUGMENTATIONS:
        xa = (x.flip(-1) if flip else x) * factor
        m = GradCAM(model, layer="2").explain(xa, TARGET).values
        maps.append(m.flip(-1) if flip else m)
    attr = GradCAM(model, layer="2", aug_smooth=True).explain(x, TARGET)
    torch.testing.assert_close(attr.values, torch.stack(maps).mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(attr.scores, model(x).detach()[torch.arange(3), TARGET])
    assert attr.info["augmented"].shape == (3, 6, *attr.values.shape[1:])


def test_aug_smooth_refuses_signals():
    with pytest.raises(ParameterError, match="aug_smooth"):
        GradCAM(cnn(1), layer="2", aug_smooth=True).explain(make_input("signal", 2), 0)


def test_aug_smooth_target_none_is_the_class_predicted_at_x():
    model, x = cnn(2), make_input("image", batch=3)
    predicted = model(x).argmax(1)
    a = ScoreCAM(model, layer="2", aug_smooth=True, progress=False).explain(x)
    b = ScoreCAM(model, layer="2", aug_smooth=True, progress=False).explain(x, predicted)
    assert torch.equal(a.values, b.values)


# --------------------------------------------------------------------------- the testing kit
def _layer(m, index: int = 2):
    inner = getattr(m, "model", None)
    return inner[index] if inner is not None else str(index)


KIT = {
    "EigenCAM": (lambda m, **kw: EigenCAM(m, layer=_layer(m), **kw), lambda b: [b], KINDS),
    "EigenGradCAM": (
        lambda m, **kw: EigenGradCAM(m, layer=_layer(m), relu=False, **kw),
        lambda b: [b],
        KINDS,
    ),
    "AblationCAM": (
        lambda m, **kw: AblationCAM(m, layer=_layer(m), progress=False, **kw),
        lambda b: [b, 8 * b],
        KINDS,
    ),
    "AblationCAM-eigen_smooth-aug_smooth": (
        lambda m, **kw: AblationCAM(
            m, layer=_layer(m), eigen_smooth=True, aug_smooth=True, progress=False, **kw
        ),
        lambda b: [6 * b, 48 * b],
        ["image"],
    ),
    "FullGrad": (lambda m, **kw: FullGrad(m, **kw), lambda b: [b], KINDS),
    "FullGrad-layer": (lambda m, **kw: FullGrad(m, normalize="layer", **kw), lambda b: [b], ["video"]),
    "HiResCAM-three-layers": (
        lambda m, **kw: HiResCAM(m, layer=[_layer(m, 0), _layer(m, 1), _layer(m)], relu=False, **kw),
        lambda b: [b, b, b],
        KINDS,
    ),
    "GradCAM-eigen_smooth": (
        lambda m, **kw: GradCAM(m, layer=_layer(m), eigen_smooth=True, **kw),
        lambda b: [b],
        KINDS,
    ),
    "GradCAM-aug_smooth": (
        lambda m, **kw: GradCAM(m, layer=_layer(m), aug_smooth=True, relu=False, **kw),
        lambda b: [6 * b],
        ["image", "video"],
    ),
}
CHECKS = [
    pytest.param(check, id=f"{name}-{check_name}")
    for name, (make, passes, kinds) in KIT.items()
    for check_name, check in explainer_checks(make, kinds=kinds, expected_passes=passes)
]


@pytest.mark.parametrize("check", CHECKS)
def test_testing_kit(check):
    assert check()


def test_docs_cam_more_example_runs_as_written():
    """The ```py block of docs/cam.md's section on these methods (the ```python blocks are
    counted by tests/explainers/test_cam.py)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "cam.md").read_text()
    (block,) = re.findall(r"^```py\n(.*?)^```", text, flags=re.S | re.M)
    ns: dict = {}
    exec(compile(block, "docs/cam.md eigen/ablation/fullgrad block", "exec"), ns)
    assert isinstance(ns["x"], torch.Tensor) and "EigenCAM" in ns and "FullGrad" in ns
