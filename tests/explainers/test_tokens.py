"""Token grids (salience.engine.tokens): inference from models and shapes, exact mappings back
to the input on hand-built cases, and errors that name the shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import salience as sl
from salience.engine.tokens import TokenGrid, find_patch_embedding, infer_token_grid, prefix_tokens
from transformer_models import PatchTransformer1D, TinyViT

F64 = torch.float64


def _tokens(model: nn.Module) -> int:
    return model.num_prefix_tokens + model.patch_embed.num_patches


def _layer_shape(model: nn.Module, x: torch.Tensor, layer: str = "blocks.1.norm1") -> tuple[int, ...]:
    """The real output shape of ``layer`` on ``x`` (so the tests read what a CAM would read)."""
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return tuple(seen[0])


# ------------------------------------------------------------------ inference from models
@pytest.mark.parametrize(
    ("kw", "prefix", "kinds"),
    [
        ({"cls": False}, 0, ()),
        ({}, 1, ("cls",)),
        ({"dist": True}, 2, ("cls", "dist")),
        ({"registers": 4, "dist": True}, 6, ("cls", "dist", "register", "register", "register", "register")),
        ({"registers": 4}, 5, ("cls", "register", "register", "register", "register")),
    ],
)
def test_vit_prefix_tokens_from_the_model(kw, prefix, kinds):
    model = TinyViT(**kw)
    x = torch.zeros(2, 3, 32, 32, dtype=F64)
    g = infer_token_grid(_layer_shape(model, x), x.shape, model=model)
    assert (g.prefix, g.grid, g.prefix_kinds, g.channels) == (prefix, (4, 4), kinds, None)
    assert (g.kernel, g.stride, g.padding) == ((8, 8), (8, 8), (0, 0))
    assert "patch_embed.proj" in g.source and "num_prefix_tokens" in g.source
    assert g.cls_index == (0 if kw.get("cls", True) else None)
    assert prefix_tokens(model)[:2] == (prefix, kinds)


@pytest.mark.parametrize(
    ("img", "patch", "stride", "padding", "grid"),
    [
        ((32, 48), (8, 4), None, 0, (4, 12)),  # non-square image, non-square patch
        ((30, 32), 6, None, 0, (5, 5)),  # remainder dropped by the convolution
        (32, 8, 4, 0, (7, 7)),  # overlapping patches
        (32, 8, 4, 2, (8, 8)),  # overlapping and padded
    ],
)
def test_vit_grid_follows_the_patch_convolution(img, patch, stride, padding, grid):
    model = TinyViT(img=img, patch=patch, stride=stride, padding=padding)
    x = torch.zeros(1, 3, *model.img_size, dtype=F64)
    g = infer_token_grid(_layer_shape(model, x), x.shape, model=model)
    assert g.grid == grid == model.patch_embed.grid_size and g.prefix == 1


@pytest.mark.parametrize(
    ("kw", "grid", "channels", "prefix"),
    [
        ({}, (8,), None, 1),
        ({"patch": 16, "stride": 8}, (7,), None, 1),
        ({"channel_independent": True}, (3, 8), 3, 1),
        ({"channel_independent": True, "cls": False}, (3, 8), 3, 0),
    ],
)
def test_signal_grids(kw, grid, channels, prefix):
    model = PatchTransformer1D(**kw)
    x = torch.zeros(2, 3, 64, dtype=F64)
    g = infer_token_grid(_layer_shape(model, x), x.shape, model=model)
    assert (g.grid, g.channels, g.prefix, g.sizes) == (grid, channels, prefix, (64,))
    assert g.n_tokens == _tokens(model)


def test_patch_embedding_lookup():
    vit = TinyViT()
    assert find_patch_embedding(vit, 2) == ("patch_embed.proj", vit.patch_embed.proj)
    assert find_patch_embedding(vit, 1) is None  # no Conv1d
    # torchvision / Hugging Face names, and the kernel == stride rule (a 1x1 conv is not one)
    tv = nn.Sequential()
    tv.add_module("stem", nn.Conv2d(3, 3, 1))
    tv.add_module("conv_proj", nn.Conv2d(3, 8, 4, stride=4))
    assert find_patch_embedding(tv, 2)[0] == "conv_proj"
    hf = nn.Module()
    hf.embeddings = nn.Module()
    hf.embeddings.patch_embeddings = nn.Module()
    hf.embeddings.patch_embeddings.projection = nn.Conv2d(3, 8, 4, stride=2)  # overlapping: found by name
    assert find_patch_embedding(hf, 2)[0] == "embeddings.patch_embeddings.projection"
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 8, 2, stride=2))
    assert find_patch_embedding(plain, 2)[0] == "2"
    assert find_patch_embedding(plain, 2, names_only=True) is None
    assert find_patch_embedding(hf, 2, names_only=True)[0] == "embeddings.patch_embeddings.projection"
    assert find_patch_embedding(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)), 2) is None
    assert find_patch_embedding(lambda t: t, 2) is None


def test_prefix_from_parameters_without_num_prefix_tokens():
    """torchvision's ``class_token`` and Hugging Face's ``embeddings.cls_token`` /
    ``distillation_token`` / ``register_tokens`` count when no module declares the number."""
    m = nn.Module()
    m.class_token = nn.Parameter(torch.zeros(1, 1, 4))
    assert prefix_tokens(m) == (1, ("cls",), "parameters class_token")
    hf = nn.Module()
    hf.embeddings = nn.Module()
    hf.embeddings.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
    hf.embeddings.distillation_token = nn.Parameter(torch.zeros(1, 1, 4))
    hf.embeddings.register_tokens = nn.Parameter(torch.zeros(1, 3, 4))
    assert prefix_tokens(hf)[:2] == (5, ("cls", "dist", "register", "register", "register"))
    assert prefix_tokens(nn.Linear(2, 2)) is None


def test_compiled_and_parallel_wrappers_are_seen_through():
    model = TinyViT(registers=2)
    x = torch.zeros(1, 3, 32, 32, dtype=F64)
    wrapped = nn.DataParallel(model)
    g = infer_token_grid((1, _tokens(model), 32), x.shape, model=wrapped)
    assert (g.prefix, g.grid) == (3, (4, 4)) and "patch_embed.proj" in g.source


def test_arguments_override_the_model():
    model = TinyViT()  # 1 prefix token, 4x4 grid
    g = infer_token_grid((1, 20, 8), (1, 3, 32, 32), model=model, prefix=4)
    assert (g.prefix, g.grid, g.prefix_kinds) == (4, (4, 4), ("unknown",) * 4)
    g = infer_token_grid((1, 50, 8), (1, 3, 32, 32), patch=8, stride=4, prefix=1)
    assert (g.grid, g.kernel, g.stride, g.source) == ((7, 7), (8, 8), (4, 4), "patch=; prefix from prefix=")


# ------------------------------------------------------------------ inference from shapes
@pytest.mark.parametrize(
    ("tokens", "input_shape", "prefix", "grid", "channels"),
    [
        (197, (2, 3, 224, 224), 1, (14, 14), None),
        (196, (2, 3, 224, 224), 0, (14, 14), None),
        (198, (2, 3, 224, 224), 2, (14, 14), None),
        (201, (2, 3, 224, 224), 5, (14, 14), None),
        (33, (2, 3, 32, 64), 1, (4, 8), None),  # non-square: a 4x8 grid of 8-pixel patches
        (9, (2, 3, 64), 1, (8,), None),  # smallest prefix wins over (4,) + 5 or (2,) + 7
        (25, (2, 3, 64), 1, (3, 8), 3),  # no time grid fits: per-channel tokens
    ],
)
def test_grids_from_shapes(tokens, input_shape, prefix, grid, channels):
    g = infer_token_grid((2, tokens, 16), input_shape)
    assert (g.prefix, g.grid, g.channels) == (prefix, grid, channels)
    assert g.source.startswith("shapes") and g.prefix_kinds == ("unknown",) * prefix


def test_shape_inference_can_be_switched_off():
    """from_shapes=False: only the model's (or the arguments') grid; a plain model has none."""
    with pytest.raises(sl.LayerError, match="no patch embedding found"):
        infer_token_grid((2, 17, 8), (2, 3, 32, 32), model=nn.Linear(2, 2), from_shapes=False)


# ------------------------------------------------------------------ exact mappings
def _grid(**kw) -> TokenGrid:
    nd = len(kw["sizes"])
    defaults = {"padding": (0,) * nd, "dilation": (1,) * nd, "stride": kw["kernel"]}
    return TokenGrid(**{**defaults, **kw})


@pytest.mark.parametrize("prefix", [0, 1, 2, 5])
def test_square_patches_to_pixels(prefix):
    g = _grid(prefix=prefix, grid=(2, 2), sizes=(4, 4), kernel=(2, 2))
    v = torch.cat(
        [torch.full((1, prefix), 99.0, dtype=F64), torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=F64)], 1
    )
    expected = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], dtype=F64)[None]
    assert torch.equal(g.to_input(v), expected)
    assert torch.equal(g.to_input(v[:, prefix:]), expected)  # the patch tokens alone


def test_non_square_image_and_patch():
    g = _grid(prefix=1, grid=(2, 3), sizes=(4, 3), kernel=(2, 1))
    v = torch.arange(7, dtype=F64)[None]  # token 0 is the prefix
    expected = torch.tensor([[1, 2, 3], [1, 2, 3], [4, 5, 6], [4, 5, 6]], dtype=F64)[None]
    assert torch.equal(g.to_input(v), expected)


def test_overlapping_patches_average_and_uncovered_positions_are_zero():
    # 1-D, kernel 4, stride 2, size 9: patches [0,4), [2,6), [4,8); position 8 is dropped
    g = _grid(prefix=0, grid=(3,), sizes=(9,), kernel=(4,), stride=(2,))
    v = torch.tensor([[1.0, 2.0, 4.0]], dtype=F64)
    expected = torch.tensor([[1, 1, 1.5, 1.5, 3, 3, 4, 4, 0]], dtype=F64)
    assert torch.equal(g.to_input(v), expected)


def test_padding_is_cropped():
    # 1-D, kernel 4, stride 4, padding 2, size 8: patches cover [-2,2), [2,6), [6,10)
    g = _grid(prefix=1, grid=(3,), sizes=(8,), kernel=(4,), stride=(4,), padding=(2,))
    v = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=F64)
    expected = torch.tensor([[1, 1, 2, 2, 2, 2, 3, 3]], dtype=F64)
    assert torch.equal(g.to_input(v), expected)
    # size 9: the same 3 patches, the last one now also covers position 8 (9 is padding)
    g = _grid(prefix=1, grid=(3,), sizes=(9,), kernel=(4,), stride=(4,), padding=(2,))
    assert torch.equal(g.to_input(v), torch.tensor([[1, 1, 2, 2, 2, 2, 3, 3, 3]], dtype=F64))


@pytest.mark.parametrize(
    ("sizes", "kernel", "stride", "padding"),
    [
        # rows: 5 patches of 5 from -1 by 2 (the last covers 7..11, row 11 is padding); columns:
        # 3 of 4 by 2 (column 8 is covered by none)
        ((11, 9), (5, 4), (2, 2), (1, 0)),
        ((11, 9), (3, 2), (3, 2), (2, 1)),  # kernel == stride (the repeat path), padded, remainders
        ((8, 8), (4, 4), (4, 4), (0, 0)),
    ],
)
def test_patches_to_pixels_against_a_loop(sizes, kernel, stride, padding):
    """Mean of the covering patches, checked against a direct loop over patches and pixels."""
    grid = tuple(
        (s + 2 * p - k) // st + 1 for s, k, st, p in zip(sizes, kernel, stride, padding, strict=True)
    )
    g = _grid(prefix=2, grid=grid, sizes=sizes, kernel=kernel, stride=stride, padding=padding)
    v = torch.randn(3, 2, 2 + g.n_patches, dtype=F64, generator=torch.Generator().manual_seed(0))
    total = torch.zeros(3, 2, *sizes, dtype=F64)
    count = torch.zeros(*sizes, dtype=F64)
    for i in range(grid[0]):
        for j in range(grid[1]):
            r0, c0 = i * stride[0] - padding[0], j * stride[1] - padding[1]
            for r in range(max(r0, 0), min(r0 + kernel[0], sizes[0])):
                for c in range(max(c0, 0), min(c0 + kernel[1], sizes[1])):
                    total[..., r, c] += v[..., 2 + i * grid[1] + j]
                    count[r, c] += 1
    expected = torch.where(count > 0, total / count.clamp_min(1), torch.zeros(()))
    torch.testing.assert_close(g.to_input(v), expected, rtol=1e-12, atol=1e-12)
    assert g.to_input(v).shape == (3, 2, *sizes)


def test_three_dimensional_tubelets():
    g = _grid(prefix=1, grid=(2, 1, 2), sizes=(4, 2, 4), kernel=(2, 2, 2))
    v = torch.tensor([[0.0, 1, 2, 3, 4]], dtype=F64)
    out = g.to_input(v)
    assert out.shape == (1, 4, 2, 4) and torch.equal(out[0, 2:, :, :2], torch.full((2, 2, 2), 3.0, dtype=F64))
    assert torch.equal(out.sum(), torch.tensor(8.0 * (1 + 2 + 3 + 4), dtype=F64))


def test_channel_tokens_to_channels_by_time():
    g = _grid(prefix=1, grid=(2, 3), sizes=(6,), kernel=(2,), channels=2)
    v = torch.tensor([[9.0, 1, 2, 3, 4, 5, 6]], dtype=F64)
    expected = torch.tensor([[[1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6]]], dtype=F64)
    assert torch.equal(g.to_input(v), expected)
    assert g.positions == (3,) and g.to_input(v[None]).shape == (1, 1, 2, 6)


def test_tokens_to_feature_maps():
    model = TinyViT(dist=True)
    x = torch.randn(2, 3, 32, 32, dtype=F64, generator=torch.Generator().manual_seed(1))
    g = infer_token_grid((2, 18, 32), x.shape, model=model)
    t = torch.randn(2, 18, 32, dtype=F64)
    maps = g.to_grid(t)
    assert maps.shape == (2, 32, 4, 4)
    assert torch.equal(maps[:, :, 1, 2], t[:, 2 + 1 * 4 + 2])  # row-major after 2 prefix tokens
    assert torch.equal(g.patch_tokens(t), t[:, 2:])


def test_mapping_matches_the_model_patches():
    """A token's value lands exactly on the pixels its patch convolution reads."""
    model = TinyViT(img=(16, 24), patch=(4, 8), registers=1)
    g = infer_token_grid((1, _tokens(model), 32), (1, 3, 16, 24), model=model)
    values = torch.zeros(1, g.n_tokens, dtype=F64)
    values[0, g.prefix + 5] = 1.0  # grid (4, 3): row 1, column 2
    expected = torch.zeros(1, 16, 24, dtype=F64)
    expected[0, 4:8, 16:24] = 1.0
    assert torch.equal(g.to_input(values), expected)


# ------------------------------------------------------------------ errors
def test_errors_name_the_shapes():
    model = TinyViT()  # 1 prefix token + 16 patches
    with pytest.raises(sl.LayerError) as err:
        infer_token_grid((2, 23, 32), (2, 3, 32, 32), model=model)
    msg = str(err.value)
    for part in (
        "(2, 23, 32)",
        "(2, 3, 32, 32)",
        "23 tokens",
        "1 prefix token",
        "patch_embed.proj",
        "(4, 4)",
    ):
        assert part in msg, (part, msg)
    with pytest.raises(sl.LayerError, match=r"\(B, N, D\); got \(2, 23, 32, 1\).*Pass reshape"):
        infer_token_grid((2, 23, 32, 1), (2, 3, 32, 32), hint=" Pass reshape=callable.")
    with pytest.raises(sl.LayerError, match="with spatial axes; got \\(2, 3\\)"):
        infer_token_grid((2, 23, 32), (2, 3))
    with pytest.raises(sl.LayerError, match="0 to 8 prefix tokens"):
        infer_token_grid((2, 7, 3), (2, 3, 5, 7))
    with pytest.raises(sl.ParameterError, match="'prefix'"):
        infer_token_grid((2, 7, 3), (2, 3, 4, 4), prefix=-1)
    g = infer_token_grid((2, 17, 3), (2, 3, 32, 32), model=model)
    with pytest.raises(
        sl.LayerError, match=r"last axis is the 17 tokens \(or the 16 patch tokens\).*\(2, 5\)"
    ):
        g.to_input(torch.zeros(2, 5))
    with pytest.raises(sl.LayerError, match=r"\(B, 17, D\).*got \(2, 16, 3\)"):
        g.to_grid(torch.zeros(2, 16, 3))


def test_errors_speak_for_the_caller():
    with sl.engine.caller("MyRollout"), pytest.raises(sl.LayerError, match="^MyRollout: cannot infer"):
        infer_token_grid((2, 7, 3), (2, 3, 5, 7))
