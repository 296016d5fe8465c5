"""Hugging Face models built from tiny configurations (no hub): ``ViTForImageClassification``
returns an ``ImageClassifierOutput``, explained by its logits with no option or with
``output="logits"``; an attention mask passed with ``forward_kwargs`` reaches every model call
with the rows it belongs to (masked patches get exactly zero gradient, chunking changes
nothing); BERT explained on its input embeddings with a padding mask."""

from __future__ import annotations

import pytest
import torch
from model_libs import assert_same, direct_gradcam, direct_gradient, direct_ig, generator, image, need

import salience as sl

transformers = need("transformers")
# the models import lazily: a broken torchvision fails here, not at `import transformers`
ViTConfig = need("transformers.models.vit").ViTConfig
ViTForImageClassification = need("transformers.models.vit.modeling_vit").ViTForImageClassification

pytestmark = pytest.mark.models

SIZE, PATCH, GRID = 32, 8, 4
X = image(n=4, size=SIZE)


def logits(model):
    return lambda x, **kw: model(x, **kw).logits


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=SIZE,
        patch_size=PATCH,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        initializer_range=0.5,  # O(1) logits and gradients for the comparisons
    )
    return ViTForImageClassification(config).double().eval()


def read(a: torch.Tensor) -> torch.Tensor:  # (B, 1 + 16, D) -> (B, D, 4, 4)
    return a[:, 1:].transpose(1, 2).reshape(a.shape[0], -1, GRID, GRID)


def test_the_output_is_a_model_output(vit):
    out = vit(X)
    assert isinstance(out, transformers.utils.ModelOutput) and not isinstance(out, torch.Tensor)


def test_gradient_explains_the_logits(vit):
    direct = direct_gradient(logits(vit), X, 1)
    got = sl.Gradient(vit).explain(X, 1)
    assert_same(got.values, direct)
    assert_same(sl.Gradient(vit, output="logits").explain(X, 1).values, direct)
    # the predicted class is read from the logits too
    assert got.target.tolist() == [1] * 4
    assert sl.Gradient(vit).explain(X).target.tolist() == vit(X).logits.argmax(1).tolist()


def test_integrated_gradients(vit):
    got = sl.IntegratedGradients(vit, n_steps=4, output="logits").explain(X, 2).values
    assert_same(got, direct_ig(logits(vit), X, 2, 4))


def test_gradcam_on_a_layer_norm_with_reshape(vit):
    norm = "vit.layers.1.layernorm_before"
    module = dict(vit.named_modules())[norm]
    direct = direct_gradcam(logits(vit), X, 0, module, read)
    assert_same(sl.GradCAM(vit, layer=norm, reshape=read).explain(X, 0).values, direct)
    assert_same(sl.GradCAM(vit, layer=norm, reshape="tokens").explain(X, 0).values, direct)


def test_rise_and_layers(vit):
    rise = sl.RISE(vit, n_masks=8, cells=4, generator=generator(), progress=False)
    chunked = sl.RISE(vit, n_masks=8, cells=4, generator=generator(), progress=False, batch_size=3)
    got = rise.explain(X, 1).values
    assert got.shape == (4, 1, SIZE, SIZE) and torch.isfinite(got).all()
    assert_same(chunked.explain(X, 1).values, got)
    table = {row.name: row for row in sl.layers(vit, X[:1])}
    assert table["vit.layers.1.layernorm_before"].shape == (1, 1 + GRID * GRID, 32)
    assert table["vit.embeddings.patch_embeddings.projection"].conv


def patch_mask() -> torch.Tensor:
    """(4, 17): CLS kept, per sample a different set of patches masked out."""
    keep = torch.ones(4, 1 + GRID * GRID, dtype=torch.long)
    for i, patches in enumerate([[0], [5, 6], [], [15, 3, 9]]):
        keep[i, [1 + p for p in patches]] = 0
    return keep


def pixels_of(patch: int) -> tuple[slice, slice]:
    r, c = divmod(patch, GRID)
    return slice(r * PATCH, (r + 1) * PATCH), slice(c * PATCH, (c + 1) * PATCH)


def test_an_attention_mask_reaches_every_call_with_its_rows(vit):
    """A masked patch is no key for any query, so the CLS logits do not depend on its pixels:
    their gradient is exactly zero, in each sample's own patches, whatever the chunking."""
    mask = patch_mask()
    kw = {"attention_mask": mask}
    direct = direct_gradient(logits(vit), X, 1, **kw)
    got = sl.Gradient(vit).explain(X, 1, forward_kwargs=kw).values
    assert_same(got, direct)
    for make in (
        lambda **o: sl.Gradient(vit, **o),
        lambda **o: sl.IntegratedGradients(vit, n_steps=4, **o),
        lambda **o: sl.SmoothGrad(sl.Gradient(vit, **o), n_samples=3, generator=generator(), progress=False),
    ):
        whole = make().explain(X, 1, forward_kwargs=kw).values
        for batch_size in (1, 3):
            chunked = make(batch_size=batch_size).explain(X, 1, forward_kwargs=kw).values
            assert_same(chunked, whole)
        for i in range(4):
            for p in range(GRID * GRID):
                rows, cols = pixels_of(p)
                zero = bool((whole[i, :, rows, cols] == 0).all())
                assert zero == (mask[i, 1 + p] == 0).item(), (i, p)
    ig = sl.IntegratedGradients(vit, n_steps=4).explain(X, 1, forward_kwargs=kw).values
    assert_same(ig, direct_ig(logits(vit), X, 1, 4, **kw))


def test_a_flag_in_forward_kwargs(vit):
    got = sl.Gradient(vit).explain(X, 1, forward_kwargs={"interpolate_pos_encoding": False}).values
    assert_same(got, direct_gradient(logits(vit), X, 1))


def test_bert_on_input_embeddings_with_a_padding_mask():
    """BERT explained on ``inputs_embeds`` (N, L, D), read as (N, C, T): padded positions get
    exactly zero attribution, each sample its own, whatever the chunking."""
    bert = need("transformers.models.bert.modeling_bert")
    torch.manual_seed(0)
    config = need("transformers.models.bert").BertConfig(
        vocab_size=20,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        initializer_range=0.5,
    )
    model = bert.BertForSequenceClassification(config).double().eval()

    def on_embeddings(embeds, attention_mask):
        return model(inputs_embeds=embeds, attention_mask=attention_mask)

    lengths = [8, 5, 3, 6]
    mask = torch.tensor([[1] * n + [0] * (8 - n) for n in lengths])
    embeds = torch.randn(4, 8, 16, generator=generator(3), dtype=torch.float64)
    kw = {"attention_mask": mask}
    whole = sl.IntegratedGradients(on_embeddings, n_steps=4).explain(embeds, 2, forward_kwargs=kw)
    chunked = sl.IntegratedGradients(on_embeddings, n_steps=4, batch_size=3).explain(
        embeds, 2, forward_kwargs=kw
    )
    assert_same(chunked.values, whole.values)
    assert_same(whole.values, direct_ig(lambda e, **k: on_embeddings(e, **k).logits, embeds, 2, 4, **kw))
    for i, n in enumerate(lengths):
        assert (whole.values[i, n:] == 0).all() and (whole.values[i, :n] != 0).any(dim=1).all()


def test_default_gradcam_layer_and_attention_methods(vit):
    norm = "vit.layers.1.layernorm_before"
    got = sl.GradCAM(vit).explain(X, 0)
    assert got.layer == norm
    assert_same(got.values, sl.GradCAM(vit, layer=norm, reshape=read).explain(X, 0).values)
    for method in (sl.AttentionRollout, sl.TransformerAttribution, sl.AttentionGradCAM):
        att = method(vit).explain(X, 0)
        assert att.values.shape == (4, 1, SIZE, SIZE)
        assert len(att.info["layers"]) == (1 if method is sl.AttentionGradCAM else 2)
        assert att.info["tokens"].prefix == 1 and att.values.abs().sum() > 0
