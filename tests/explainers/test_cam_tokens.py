"""The Grad-CAM family on transformer token layers with the automatic token grid
(``reshape="auto"``, the default): equal to the explicit reshape callable, a direct
implementation for per-channel tokens, CNN layers unchanged, and refusals where the model does
not say how its tokens lie."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience as sl
from salience.engine.tokens import TokenGrid
from toy_models import cnn, make_input
from transformer_models import PatchTransformer1D, TinyViT

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}
METHODS = [sl.GradCAM, sl.HiResCAM, sl.GradCAMPlusPlus]
LAYER = "blocks.1.norm1"


def _x(shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _explicit(prefix: int, grid: tuple[int, ...]):
    """The reshape a user writes by hand: drop the prefix, tokens -> (B, D, *grid)."""
    return lambda a: a[:, prefix:].transpose(1, 2).reshape(a.shape[0], a.shape[2], *grid)


VITS = {
    "sdpa": {},
    "sdpa-explicit-path": {"fused": False},
    "mha": {"attention": "mha"},
    "explicit": {"attention": "explicit"},
    "deit": {"dist": True},
    "registers": {"registers": 3},
    "no-cls": {"cls": False},
    "non-square": {"img": (24, 40), "patch": (8, 4)},
    "overlapping": {"stride": 4},
}


def _vit(case: str) -> TinyViT:
    kw = dict(VITS[case])
    fused = kw.pop("fused", True)
    model = TinyViT(**kw)
    for block in model.blocks:
        if hasattr(block.attn, "fused_attn"):
            block.attn.fused_attn = fused
    return model


@pytest.mark.parametrize("case", list(VITS))
@pytest.mark.parametrize("method", METHODS)
def test_vit_auto_equals_the_explicit_reshape(case, method):
    model = _vit(case)
    x = _x((2, 3, *model.img_size))
    grid = model.patch_embed.grid_size
    auto = method(model, layer=LAYER, relu=False).explain(x, 1)
    manual = method(model, layer=LAYER, relu=False, reshape=_explicit(model.num_prefix_tokens, grid)).explain(
        x, 1
    )
    torch.testing.assert_close(auto.values, manual.values, **TOL)
    assert auto.values.shape == (2, 1, *model.img_size) and auto.values.abs().sum() > 0
    g = auto.info["tokens"]
    assert isinstance(g, TokenGrid) and (g.prefix, g.grid) == (model.num_prefix_tokens, grid)
    assert auto.info["layer_shape"] == grid and "tokens" not in manual.info
    # "tokens" reads the same grid
    tokens = method(model, layer=LAYER, relu=False, reshape="tokens").explain(x, 1)
    torch.testing.assert_close(tokens.values, auto.values, **TOL)


@pytest.mark.parametrize("kw", [{}, {"patch": 16, "stride": 8}, {"cls": False}, {"attention": "mha"}])
@pytest.mark.parametrize("method", METHODS)
def test_signal_patches_auto_equals_the_explicit_reshape(kw, method):
    model = PatchTransformer1D(**kw)
    x = _x((3, 3, 64), seed=1)
    grid = model.patch_embed.grid_size
    auto = method(model, layer=LAYER).explain(x, 0)
    manual = method(model, layer=LAYER, reshape=_explicit(model.num_prefix_tokens, grid)).explain(x, 0)
    torch.testing.assert_close(auto.values, manual.values, **TOL)
    assert auto.values.shape == (3, 1, 64) and auto.info["tokens"].grid == grid


def _direct_token_maps(model, x, target, layer=LAYER):
    """Activations and score gradients of ``layer`` (B, N, D), by a hook and autograd."""
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        out = model(x)
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(out[:, target].sum(), seen[0])
    return seen[0].detach(), g


@pytest.mark.parametrize("cls_token", [True, False])
def test_channel_tokens_give_channel_by_time_maps(cls_token):
    """Per-channel tokens (C x time patches): HiResCAM and Grad-CAM maps over channels x time,
    against a direct implementation of the formulas on the hooked tokens."""
    model = PatchTransformer1D(channel_independent=True, cls=cls_token)
    x = _x((2, 3, 64), seed=2)
    a, g = _direct_token_maps(model, x, 2)
    p = model.num_prefix_tokens
    a, g = a[:, p:].reshape(2, 3, 8, -1), g[:, p:].reshape(2, 3, 8, -1)  # (B, C, T', D)
    hires = (a * g).sum(-1)
    grad = (a * g.mean(dim=(1, 2), keepdim=True)).sum(-1)
    for method, expected in ((sl.HiResCAM, hires), (sl.GradCAM, grad)):
        low = method(model, layer=LAYER, relu=False, upsample=False).explain(x, 2)
        torch.testing.assert_close(low.values, expected, **TOL)
        full = method(model, layer=LAYER, relu=False).explain(x, 2)
        up = F.interpolate(expected, size=64, mode="linear", align_corners=False)
        torch.testing.assert_close(full.values, up, **TOL)
        assert full.values.shape == (2, 3, 64) and full.info["tokens"].channels == 3


def test_channel_tokens_score_cam():
    """Score-CAM masks every channel x time position of the input with its token map."""
    model = PatchTransformer1D(channel_independent=True, dim=8, heads=2)
    x = _x((2, 3, 64), seed=3)
    attr = sl.ScoreCAM(model, layer=LAYER, progress=False).explain(x, 1)
    assert attr.values.shape == (2, 3, 64) and attr.values.abs().sum() > 0
    # direct: mask_k = min-max of the (C, T) upsampled feature k; weights softmax of f(x * mask_k)
    a, _ = _direct_token_maps(model, x, 1)
    a = a[:, 1:].reshape(2, 3, 8, 8).permute(0, 3, 1, 2)  # (B, D, C, T')
    up = F.interpolate(a.reshape(2 * 8, 3, 8), size=64, mode="linear", align_corners=False).reshape(
        2, 8, 3, 64
    )
    lo, hi = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
    masks = (up - lo) / (hi - lo)
    with torch.no_grad():
        s = model((x[:, None] * masks).reshape(16, 3, 64))[:, 1].reshape(2, 8)
    cam = (torch.softmax(s, 1)[:, :, None, None] * a).sum(1).clamp_min(0)
    expected = F.interpolate(cam, size=64, mode="linear", align_corners=False)
    torch.testing.assert_close(attr.values, expected, **TOL)


@pytest.mark.parametrize("method", [*METHODS, sl.XGradCAM, sl.LayerCAM])
@pytest.mark.parametrize("kind", ["signal", "image"])
def test_cnn_layers_are_read_exactly_as_before(method, kind):
    """reshape='auto' (the default) on convolutional and other spatial layers is reshape=None,
    bit for bit: the default layer, a named convolution and a named ReLU (the probed path)."""
    model, x = cnn(2 if kind == "image" else 1), make_input(kind, batch=3)
    for layer in (None, "2", "3"):
        auto = method(model, layer=layer).explain(x, 1)
        plain = method(model, layer=layer, reshape=None).explain(x, 1)
        assert torch.equal(auto.values, plain.values) and auto.layer == plain.layer
        assert "tokens" not in auto.info


def test_score_cam_auto_equals_the_explicit_reshape():
    model = TinyViT(dim=8, heads=2, dist=True)
    x = _x((2, 3, 32, 32), seed=4)
    auto = sl.ScoreCAM(model, layer=LAYER, progress=False).explain(x, 0)
    manual = sl.ScoreCAM(model, layer=LAYER, progress=False, reshape=_explicit(2, (4, 4))).explain(x, 0)
    torch.testing.assert_close(auto.values, manual.values, **TOL)


def test_layer_inside_a_token_module_and_one_passing_tokens_on():
    """A token module (norm1), a module inside one's block (attn.proj, a Linear) and a module
    that only passes tokens on (the MLP's GELU) are all read as the grid."""
    model = TinyViT()
    x = _x((2, 3, 32, 32), seed=5)
    for layer in ("blocks.1.attn.proj", "blocks.0.mlp.act", "blocks.0"):
        auto = sl.HiResCAM(model, layer=layer, relu=False).explain(x, 2)
        manual = sl.HiResCAM(model, layer=layer, relu=False, reshape=_explicit(1, (4, 4))).explain(x, 2)
        torch.testing.assert_close(auto.values, manual.values, **TOL)
        assert auto.info["tokens"].grid == (4, 4)


class _Unnamed(nn.Module):
    """Patch tokens from a convolution with kernel == stride, under a name no library uses,
    and no prefix-token parameters: reshape='auto' does not guess, 'tokens' does."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.stem = nn.Conv2d(3, 8, 4, stride=4)
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 3)
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.norm(self.stem(x).flatten(2).transpose(1, 2))
        return self.head(t.mean(1))


def test_auto_refuses_token_layers_it_cannot_place():
    model, x = _Unnamed(), _x((2, 3, 16, 16), seed=6)
    with pytest.raises(sl.LayerError) as err:
        sl.GradCAM(model, layer="norm").explain(x, 0)
    msg = str(err.value)
    for part in ("'norm'", "(2, 16, 8)", "(2, 3, 16, 16)", "patch_embed", "reshape='tokens'"):
        assert part in msg, (part, msg)
    attr = sl.GradCAM(model, layer="norm", reshape="tokens").explain(x, 0)
    assert attr.info["tokens"].grid == (4, 4) and "'stem'" in attr.info["tokens"].source


class _Pooled(nn.Module):
    """A ViT-like model (patch_embed, cls_token) whose token layer is a pooled stage: 17 -> 9."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.patch_embed = nn.Conv2d(3, 8, 8, stride=8)
            self.cls_token = nn.Parameter(torch.randn(1, 1, 8))
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 3)
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1)[:, :9]
        return self.head(self.norm(t).mean(1))


def test_grid_errors_list_the_shapes():
    """The model declares its prefix token and patch embedding, but the layer fits no grid."""
    with pytest.raises(sl.LayerError) as err:
        sl.GradCAM(_Pooled(), layer="norm").explain(_x((2, 3, 32, 32)), 0)
    msg = str(err.value)
    for part in (
        "(2, 9, 8)",
        "(2, 3, 32, 32)",
        "1 prefix token",
        "'patch_embed'",
        "(4, 4)",
        "reshape=callable",
    ):
        assert part in msg, (part, msg)


def test_default_reshape_and_validation():
    assert sl.GradCAM(TinyViT()).reshape == "auto"
    with pytest.raises(sl.ParameterError, match="'auto', 'tokens', None or a callable"):
        sl.GradCAM(TinyViT(), layer=LAYER, reshape="grid")
    with pytest.raises(sl.ParameterError, match="explicit layer"):
        sl.GradCAM(TinyViT(), reshape="tokens")
    sl.GradCAM(TinyViT(), reshape="auto")  # no layer needed: auto changes nothing for the default layer


def test_model_is_left_unchanged():
    model = TinyViT()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [b.attn.fused_attn for b in model.blocks]
    sl.GradCAMPlusPlus(model, layer=LAYER).explain(_x((2, 3, 32, 32)), 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert flags == [b.attn.fused_attn for b in model.blocks] and not model.training
    assert not any(m._forward_hooks for m in model.modules())


def _compiled(net: nn.Module) -> nn.Module:
    return torch.compile(net, backend="eager")  # no C++ toolchain needed


@pytest.mark.parametrize("wrap", [_compiled, nn.DataParallel])
def test_wrapped_models_are_read_through(wrap):
    """torch.compile and DataParallel: the grid comes from the network inside (1-D case, where
    shapes alone would not tell tokens from channels x time)."""
    model = PatchTransformer1D()
    x = _x((2, 3, 64), seed=7)
    plain = sl.GradCAM(model, layer=LAYER).explain(x, 1)
    wrapped = sl.GradCAM(wrap(model), layer=LAYER).explain(x, 1)
    torch.testing.assert_close(wrapped.values, plain.values, **TOL)
    assert wrapped.info["tokens"] == plain.info["tokens"]


def test_guided_grad_cam_reads_token_layers_by_default():
    """GuidedGradCAM's Grad-CAM part uses the same automatic grid as GradCAM."""
    model, x = (
        TinyViT(),
        torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
    )
    with pytest.warns(sl.explainers.modified_backprop.ReLUCoverageWarning):
        guided = sl.GuidedGradCAM(model, layer="blocks.1.norm1").explain(x, 1)
    cam = sl.GradCAM(model, layer="blocks.1.norm1").explain(x, 1).values
    gradient = sl.Gradient(model).explain(x, 1).values  # no ReLU: guided backprop is the gradient
    torch.testing.assert_close(guided.values, gradient * cam)
    assert isinstance(guided.info["tokens"], TokenGrid)


@pytest.mark.parametrize(
    "kw",
    [{}, {"attention": "mha"}, {"attention": "explicit"}, {"dist": True, "registers": 2}, {"cls": False}],
)
def test_default_layer_of_a_vit_feeds_the_last_attention(kw):
    """With no layer, a patch transformer's CAM reads the last block's first norm (the layer
    pytorch-grad-cam recommends), not the patch embedding."""
    model, x = (
        TinyViT(**kw),
        torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
    )
    got = sl.GradCAM(model).explain(x, 1)
    assert got.layer == "blocks.1.norm1"
    torch.testing.assert_close(got.values, sl.GradCAM(model, layer="blocks.1.norm1").explain(x, 1).values)
    assert got.values.abs().sum() > 0
    # reshape=None keeps the old default (the last spatial layer before the tokens)
    assert sl.GradCAM(model, reshape=None).explain(x, 1).layer == "patch_embed.proj"


def test_default_layer_of_a_post_norm_encoder():
    class PostNorm(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.patch_embed = nn.Conv1d(2, 16, 8, stride=8)
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(16, 3)
            self.double().eval()

        def forward(self, x):
            return self.head(self.encoder(self.patch_embed(x).transpose(1, 2)).mean(1))

    x = torch.randn(2, 2, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = sl.GradCAM(PostNorm()).explain(x, 1)
    assert got.layer == "encoder.layers.0"  # the output of the block before the last attention
    assert got.values.shape == (2, 1, 64)


def test_named_channels_first_layer_norm_is_read_as_a_map():
    """A LayerNorm subclass normalising the channels of a (B, C, H, W) map (timm's LayerNorm2d)
    is a token module by type, but its output is channels x positions: read as it is."""

    class LayerNorm2d(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        LayerNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).double()
    model.eval()
    # (width 6 != 8 channels: a map whose last axis had the channels' length would be ambiguous)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = sl.GradCAM(model, layer="1").explain(x, 1).values
    torch.testing.assert_close(got, sl.GradCAM(model, layer="1", reshape=lambda a: a).explain(x, 1).values)
