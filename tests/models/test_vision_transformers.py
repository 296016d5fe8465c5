"""Vision transformers as users build them: timm's ``VisionTransformer`` and DeiT (a
distillation token), torchvision's ``VisionTransformer``, tiny and built locally. Gradient and
IG equal autograd, Grad-CAM on a block's norm layer (``reshape``) equals a direct
implementation, every gradient method and RISE run, and chunking changes nothing."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_libs import assert_same, direct_gradcam, direct_gradient, direct_ig, generator, image, need

import salience as sl

pytestmark = pytest.mark.models

SIZE, PATCH, GRID = 32, 8, 4  # a 4x4 patch grid


def timm_vit():
    vit = need("timm.models.vision_transformer")
    return vit.VisionTransformer(
        img_size=SIZE, patch_size=PATCH, embed_dim=32, depth=2, num_heads=2, num_classes=3
    ), "blocks.1.norm1"


def timm_deit():
    deit = need("timm.models.deit")
    return deit.VisionTransformerDistilled(
        img_size=SIZE, patch_size=PATCH, embed_dim=32, depth=2, num_heads=2, num_classes=3
    ), "blocks.1.norm1"


def torchvision_vit():
    vit = need("torchvision.models.vision_transformer")
    return vit.VisionTransformer(
        image_size=SIZE, patch_size=PATCH, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3
    ), "encoder.layers.encoder_layer_1.ln_1"


# model -> number of tokens before the patch tokens (CLS, DeiT's distillation token)
MODELS = {"timm_vit": (timm_vit, 1), "timm_deit": (timm_deit, 2), "torchvision_vit": (torchvision_vit, 1)}


@pytest.fixture(params=list(MODELS))
def vit(request):
    build, prefix = MODELS[request.param]
    torch.manual_seed(0)
    model, norm = build()
    for m in model.modules():  # torchvision zeroes its head, timm draws it with std 0.02
        if isinstance(m, torch.nn.Linear) and m.out_features == 3:
            torch.nn.init.normal_(m.weight)
    model = model.double().eval()

    def read(a: torch.Tensor) -> torch.Tensor:  # (B, prefix + 16, D) -> (B, D, 4, 4)
        return a[:, prefix:].transpose(1, 2).reshape(a.shape[0], -1, GRID, GRID)

    return model, norm, read, prefix


X = image(n=4, size=SIZE)


def test_gradient_and_ig_equal_autograd(vit):
    model, *_ = vit
    direct = direct_gradient(model, X, 1)
    assert_same(sl.Gradient(model).explain(X, 1).values, direct)
    got = sl.IntegratedGradients(model, n_steps=4).explain(X, 1).values
    assert_same(got, direct_ig(model, X, 1, 4))


def test_gradcam_on_a_norm_layer_with_reshape(vit):
    model, norm, read, prefix = vit
    module = dict(model.named_modules())[norm]
    got = sl.GradCAM(model, layer=norm, reshape=read).explain(X, 2)
    assert got.values.shape == (4, 1, SIZE, SIZE)
    assert_same(got.values, direct_gradcam(model, X, 2, module, read))
    # the patch grid found from the model (prefix tokens, patch embedding) reads it the same way
    tokens = sl.GradCAM(model, layer=norm, reshape="tokens").explain(X, 2)
    assert_same(tokens.values, got.values)


def test_chunking_changes_nothing(vit):
    model, norm, read, _ = vit
    for make in (
        lambda **kw: sl.Gradient(model, **kw),
        lambda **kw: sl.IntegratedGradients(model, n_steps=4, **kw),
        lambda **kw: sl.GradCAM(model, layer=norm, reshape=read, **kw),
        lambda **kw: sl.RISE(model, n_masks=8, cells=4, generator=generator(), progress=False, **kw),
    ):
        whole, chunked = make().explain(X, 0), make(batch_size=2).explain(X, 0)
        assert_same(chunked.values, whole.values, msg=whole.method)


def test_every_gradient_method_and_rise_run(vit):
    model, norm, read, _ = vit
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = X[:2]
    for method in (
        sl.Saliency(model),
        sl.InputXGradient(model),
        sl.SmoothGrad(sl.Gradient(model), n_samples=3, generator=generator(), progress=False),
        sl.GuidedBackprop(model),
        sl.HiResCAM(model, layer=norm, reshape=read),
        sl.GradCAMPlusPlus(model, layer=norm, reshape=read),
        sl.XGradCAM(model, layer=norm, reshape=read),
        sl.LayerCAM(model, layer=norm, reshape=read),
        sl.GuidedGradCAM(model, layer=norm, reshape=read),
        sl.RISE(model, n_masks=8, cells=4, generator=generator(), progress=False),
        sl.Occlusion(model, window=PATCH, progress=False),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sl.ReLUCoverageWarning)  # GELU, no ReLU
            got = method.explain(x, 1)
        assert got.values.shape[0] == 2 and got.values.shape[2:] == (SIZE, SIZE), method.name
        assert torch.isfinite(got.values).all() and got.values.abs().sum() > 0, method.name
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not model.training


def test_layers_lists_the_token_layers(vit):
    model, norm, _, prefix = vit
    table = {row.name: row for row in sl.layers(model, X[:1])}
    assert table[norm].shape == (1, prefix + GRID * GRID, 32) and not table[norm].spatial
    default = [name for name, row in table.items() if row.default]
    # never a tensor inside attention (timm's q_norm/k_norm see (B, heads, N, head_dim))
    assert len(default) == 1 and ".attn" not in default[0] and "attention" not in default[0]


def test_default_gradcam_layer_feeds_the_last_attention(vit):
    """With no layer, Grad-CAM reads the last block's first norm (as pytorch-grad-cam's guide
    recommends), read as the patch grid: it equals the named layer with the explicit reshape."""
    model, norm, read, _ = vit
    got = sl.GradCAM(model).explain(X, 1)
    assert got.layer == norm
    assert_same(got.values, sl.GradCAM(model, layer=norm, reshape=read).explain(X, 1).values)


def test_attention_methods_run(vit):
    """The attention methods find the attention of every block (fused or not) and the grid."""
    model, _, _, prefix = vit
    for method in (sl.AttentionRollout, sl.TransformerAttribution, sl.AttentionGradCAM):
        got = method(model).explain(X, 1)
        assert got.values.shape == (4, 1, SIZE, SIZE) and torch.isfinite(got.values).all()
        assert len(got.info["layers"]) == (1 if method is sl.AttentionGradCAM else 2)  # the last block only
        assert got.info["tokens"].prefix == prefix
        assert got.values.abs().sum() > 0
