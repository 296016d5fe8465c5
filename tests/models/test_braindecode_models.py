"""braindecode's EEGConformer (Song et al., 2023: a shallow convolutional patch embedding, then
a transformer over the pooled time steps), built locally: Gradient and IG equal autograd, a CAM
on the last transformer block reads its (B, T', D) tokens with ``reshape`` as features x time,
and chunking changes nothing."""

from __future__ import annotations

import warnings

import pytest
import torch
from model_libs import assert_same, direct_gradcam, direct_gradient, direct_ig, generator, need

import salience as sl

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mne's deprecation notices at import time
    models = need("braindecode.models")

pytestmark = pytest.mark.models

CHANNELS, TIMES = 4, 200
X = torch.randn(3, CHANNELS, TIMES, generator=generator(2), dtype=torch.float64)
LAST = "transformer.5"  # the last encoder block: (B, 7 pooled time steps, 40 features)


def time_major(a: torch.Tensor) -> torch.Tensor:  # (B, T', D) tokens -> (B, D, T') maps
    return a.transpose(1, 2)


@pytest.fixture(scope="module")
def conformer():
    torch.manual_seed(0)
    model = models.EEGConformer(n_outputs=3, n_chans=CHANNELS, n_times=TIMES, sfreq=100)
    return model.double().eval()


def test_gradient_and_ig_equal_autograd(conformer):
    direct = direct_gradient(conformer, X, 1)
    assert_same(sl.Gradient(conformer).explain(X, 1).values, direct)
    got = sl.IntegratedGradients(conformer, n_steps=4).explain(X, 1).values
    assert_same(got, direct_ig(conformer, X, 1, 4))


def test_cam_on_the_transformer_tokens(conformer):
    module = dict(conformer.named_modules())[LAST]
    direct = direct_gradcam(conformer, X, 0, module, time_major)
    got = sl.GradCAM(conformer, layer=LAST, reshape=time_major).explain(X, 0)
    assert got.values.shape == (3, 1, TIMES)
    assert_same(got.values, direct)
    # without reshape the token output is refused: its 40 features are not time steps
    with pytest.raises(sl.LayerError, match="tokens x features"):
        sl.GradCAM(conformer, layer=LAST, reshape=None).explain(X, 0)


def test_chunking_changes_nothing(conformer):
    for make in (
        lambda **kw: sl.IntegratedGradients(conformer, n_steps=4, **kw),
        lambda **kw: sl.GradCAM(conformer, layer=LAST, reshape=time_major, **kw),
        lambda **kw: sl.RISE(conformer, n_masks=8, cells=8, generator=generator(), progress=False, **kw),
    ):
        whole, chunked = make().explain(X, 2), make(batch_size=2).explain(X, 2)
        assert_same(chunked.values, whole.values, msg=whole.method)


def test_default_cam_layer_is_not_a_token_sequence(conformer):
    """Its (B, 7, 40) patch embedding is tokens x features made by einops' Rearrange (no token
    module); it has the shape of the transformer's tokens, so it is not read as 7 channels x 40
    time steps; the default is the last map over time before them, the projection's
    (B, K, T', 1) convolution."""
    table = {row.name: row for row in sl.layers(conformer, X[:1])}
    assert not table["patch_embedding"].default
    assert sl.GradCAM(conformer).explain(X, 0).layer == "patch_embedding.projection.0"
