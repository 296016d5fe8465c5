"""Parity with Xplique 2.0.2 (TensorFlow) on Keras 1-D and 2-D CNNs, through salience.keras.wrap.

Xplique is installed by hand beside TensorFlow (``pip install --no-deps xplique==2.0.2`` and its
requirements, see docs/keras.md): its Linux requirement ``tensorflow[and-cuda]`` would pull the
CUDA build. Skipped without it.

Definitional differences, pinned here:

- dtype: Xplique casts the one-hot targets, masks, noise and its IG path to float32, so it cannot
  explain a float64 Keras model: the comparisons run on float32 models at rtol 1e-5 (1e-4 for
  the CAMs);
- Saliency: Xplique takes ``|grad|`` and, for images (N, H, W, C), the max over channels: our
  ``Saliency`` default (signals keep their channels);
- GradientInput: Xplique averages ``x * grad`` over the channels of images (its ``reducer="mean"``);
  ours keeps every channel: compared as our map averaged over channels;
- IntegratedGradients: Xplique's ``linspace(0, 1, steps)`` path with the trapezoid rule is our
  ``rule="riemann_trapezoid"`` (the default) with ``n_steps=steps``; channel mean for images;
- SmoothGrad: Xplique adds noise of a fixed standard deviation (``noise=0.2``) drawn from
  TensorFlow's global RNG; ours is relative to each sample's value range (``sigma=0.2`` means
  ``0.2 * (max - min)``) and drawn from a torch generator. The test feeds Xplique our noisy
  points (its ``_perturb_samples`` patched for the test), so both average the gradients of the
  same points; channel mean for images;
- GradCAM: Xplique's weights average over axes (1, 2), which are the positions only for 2-D
  feature maps (N, H, W, K): compared on the 2-D CNN (its bicubic resize to the input size is the
  identity here, the layer having the input's size);
- GradCAMPP: Xplique uses the mean of the activations over positions in alpha's denominator
  (the paper: the sum), averages the weights over positions (the paper: the sum) and adds 1e-4
  where the denominator is 0 (ours: 0 there). Pinned by showing that Xplique's maps equal a
  salience LayerExplainer with exactly that formula through the bridge, and that ours differ;
- Occlusion: Xplique sums the drops of every patch covering a position (ours averages them); the
  disjoint windows compared here (stride = window) cover each position once, where both agree.
  Its patches over a signal (N, T, C) are 2-D (time x channels): ``patch_size=(8, C)`` is our
  ``window={"t": 8}`` over all channels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
pytest.importorskip("keras")
xa = pytest.importorskip("xplique.attributions")

from keras_nets import C, K, cnn, data, layout  # noqa: E402

import salience as sl  # noqa: E402
from salience.explainers.cam import LayerExplainer  # noqa: E402
from salience.keras import wrap  # noqa: E402

pytestmark = pytest.mark.parity

TARGET = 2
DIMS = [1, 2]


@pytest.fixture(scope="module")
def nets32():
    return {d: cnn(d, dtype="float32") for d in DIMS}


def _onehot(n: int, dtype: str = "float32") -> np.ndarray:
    return np.eye(K, dtype=dtype)[[TARGET] * n]


def _close(ours: torch.Tensor, theirs, rtol: float = 1e-5) -> bool:
    """True when ours equals theirs within ``rtol`` of their scale (raises with the difference otherwise)."""
    theirs = np.asarray(theirs)
    scale = float(np.abs(theirs).max())
    assert scale > 0
    np.testing.assert_allclose(
        ours.detach().numpy().reshape(theirs.shape), theirs, rtol=rtol, atol=rtol * scale
    )
    return True


def _reduce(values: torch.Tensor, dims: int, how: str) -> torch.Tensor:
    """Xplique's channel reduction of image maps (signals keep their channels)."""
    if dims == 1:
        return values
    return values.amax(-1, keepdim=True) if how == "max" else values.mean(-1, keepdim=True)


@pytest.mark.parametrize("dims", DIMS)
def test_saliency_and_gradient_input(dims):
    dtype = "float32"
    model = cnn(dims, dtype=dtype)
    x = data(dims, dtype=getattr(torch, dtype))
    b, lay = wrap(model), layout(dims)
    xt = tf.constant(x.numpy())
    theirs = xa.Saliency(model).explain(xt, _onehot(len(x), dtype))
    assert _close(sl.Saliency(b, layout=lay).explain(x, target=TARGET).values, theirs)
    theirs = xa.GradientInput(model).explain(xt, _onehot(len(x), dtype))
    ours = _reduce(sl.InputXGradient(b, layout=lay).explain(x, target=TARGET).values, dims, "mean")
    assert _close(ours, theirs)


@pytest.mark.parametrize("dims", DIMS)
def test_integrated_gradients(nets32, dims):
    model, x = nets32[dims], data(dims, dtype=torch.float32)
    theirs = xa.IntegratedGradients(model, steps=16).explain(tf.constant(x.numpy()), _onehot(len(x)))
    ours = sl.IntegratedGradients(wrap(model), n_steps=16, layout=layout(dims)).explain(x, target=TARGET)
    assert _close(_reduce(ours.values, dims, "mean"), theirs)


@pytest.mark.parametrize("dims", DIMS)
def test_smoothgrad_on_the_same_noisy_points(nets32, dims, monkeypatch):
    model, x = nets32[dims], data(dims, n=3, dtype=torch.float32)
    n, sigma = 8, 0.2
    # our noisy points: the draw SmoothGrad makes from a generator seeded 5 (one group of n draws)
    noise = torch.randn((len(x), n, *x.shape[1:]), generator=torch.Generator().manual_seed(5))
    flat = x.flatten(1)
    std = (sigma * (flat.amax(1) - flat.amin(1))).reshape(-1, 1, *([1] * (x.ndim - 1)))
    points = (x.unsqueeze(1) + std * noise).reshape(-1, *x.shape[1:])
    from xplique.attributions.gradient_statistics.gradient_statistic import GradientStatistic

    def same_points(inputs, nb, _noise):
        assert nb == n and inputs.shape[0] == len(x)  # one call with every sample
        return tf.constant(points.numpy())

    monkeypatch.setattr(GradientStatistic, "_perturb_samples", staticmethod(same_points))
    theirs = xa.SmoothGrad(model, nb_samples=n, batch_size=len(x) * n).explain(
        tf.constant(x.numpy()), _onehot(len(x))
    )
    explainer = sl.SmoothGrad(
        sl.Gradient(wrap(model), layout=layout(dims)),
        n_samples=n,
        sigma=sigma,
        generator=torch.Generator().manual_seed(5),
        progress=False,
    )
    assert _close(_reduce(explainer.explain(x, target=TARGET).values, dims, "mean"), theirs)


def test_gradcam_2d(nets32):
    model, x = nets32[2], data(2, dtype=torch.float32)
    theirs = xa.GradCAM(model, conv_layer="conv2").explain(tf.constant(x.numpy()), _onehot(len(x)))
    ours = sl.GradCAM(wrap(model), layer="conv2", layout="b h w c").explain(x, target=TARGET)
    assert ours.values.shape == tuple(theirs.shape)
    assert _close(ours.values, theirs, 1e-4)


class XpliqueGradCAMPP(LayerExplainer):
    """Xplique 2.0.2's Grad-CAM++ formula (positions averaged; 1e-4 on a zero denominator)."""

    def _combine(self, a, g):
        pos = tuple(range(2, a.ndim))
        den = 2 * g**2 + g**3 * a.mean(pos, keepdim=True)
        den = den + (den == 0) * 1e-4
        w = (g**2 / den * g.clamp_min(0)).mean(pos, keepdim=True)
        return (w * a).sum(1)


def test_gradcampp_2d_difference_pinned(nets32):
    model, x = nets32[2], data(2, dtype=torch.float32)
    theirs = xa.GradCAMPP(model, conv_layer="conv2").explain(tf.constant(x.numpy()), _onehot(len(x)))
    b = wrap(model)
    pinned = XpliqueGradCAMPP(b, layer="conv2", layout="b h w c").explain(x, target=TARGET)
    assert _close(pinned.values, theirs, 1e-4)
    ours = sl.GradCAMPlusPlus(b, layer="conv2", layout="b h w c").explain(x, target=TARGET).values
    assert not np.allclose(ours.numpy(), np.asarray(theirs), rtol=1e-2)  # the paper's sums differ


@pytest.mark.parametrize("dims", DIMS)
def test_occlusion_disjoint_patches(nets32, dims):
    model, x = nets32[dims], data(dims, dtype=torch.float32)
    patch = (8, C) if dims == 1 else (5, 5)
    theirs = xa.Occlusion(model, patch_size=patch, patch_stride=patch).explain(
        tf.constant(x.numpy()), _onehot(len(x))
    )
    window = {"t": 8} if dims == 1 else {"h": 5, "w": 5}
    ours = sl.Occlusion(wrap(model), window=window, layout=layout(dims), progress=False).explain(
        x, target=TARGET
    )
    assert _close(ours.values.expand(*theirs.shape), theirs)
