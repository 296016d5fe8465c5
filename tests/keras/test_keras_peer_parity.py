"""Parity with the TensorFlow paths of two seed packages, through salience.keras.wrap:

- SignalGrad-CAM 2.2 (``TfCamBuilder``): raw Grad-CAM and HiResCAM maps on 1-D and 2-D layers
  of Keras CNNs, float64. As for its torch path (tests/parity/test_signal_grad_cam_parity.py),
  the comparison is on the raw float maps of ``_create_raw_batched_cams`` at layer resolution
  (ours ``upsample=False``); its ``avoid_relu=True`` is our ``relu=False``; its
  ``softmax_final=True`` on a softmax head explains ``log(clamp(p, eps, 1 - eps))``, ours
  ``final_activation="strip"`` with ``target=LogProbability(k)``. Its import sets
  ``PYTHONHASHSEED`` and ``TF_DETERMINISTIC_OPS`` in ``os.environ`` and its constructor seeds
  TensorFlow's, NumPy's, Python's and torch's global RNGs: the fixture restores them.
- cross-domain-saliency-maps 0.0.8 (``tensorflow_ig``): ``TimeIG`` and ``FourierIG``. Its rule
  is ``alpha = linspace(0, 1, n)`` (both ends) with equal weights ``1/n``, which is none of our
  named quadrature rules (our ``TimeIG``/``FourierIG`` default to the right Riemann sum): the
  test writes that rule as a 10-line Explainer with the public extension API and runs it in
  ``InDomain(..., Fourier(output="full"))``. The reference computes in float32 (complex64 FFT),
  one sample per call, and returns (C, T) maps: compared at rtol 1e-4 after moving our
  channels-last maps' axes.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from keras_nets import cnn, data, layout  # noqa: E402

import salience as sl  # noqa: E402
from salience.keras import wrap  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture
def TfCamBuilder():
    pytest.importorskip("signal_grad_cam")
    for dep in ("cv2", "matplotlib", "imageio"):
        pytest.importorskip(dep)
    env = {k: os.environ.get(k) for k in ("PYTHONHASHSEED", "TF_DETERMINISTIC_OPS")}
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        from signal_grad_cam import TfCamBuilder as builder

        yield builder
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.set_rng_state(torch_state)
        torch.use_deterministic_algorithms(deterministic)


def _sgc(builder, model, x, target, explainer, **kwargs) -> np.ndarray:
    cams = builder(model, class_names=None)  # prints its layer listing (captured by pytest)
    maps, _ = cams._create_raw_batched_cams(
        list(x.numpy()), target, model.get_layer("conv2"), explainer, **kwargs
    )
    return np.stack(maps)


OURS = {"Grad-CAM": sl.GradCAM, "HiResCAM": sl.HiResCAM}


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("explainer", list(OURS))
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "signed"])
def test_signal_grad_cam_raw_maps(TfCamBuilder, dims, explainer, relu):
    model, x = cnn(dims), data(dims, n=3, seed=3)
    theirs = _sgc(TfCamBuilder, model, x, 2, explainer, softmax_final=False, avoid_relu=not relu)
    ours = OURS[explainer](wrap(model), layer="conv2", relu=relu, upsample=False, layout=layout(dims))
    got = ours.explain(x, target=2).values
    assert got.shape == (*theirs.shape, 1)  # channels-last, as passed
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(got[..., 0].numpy(), theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("explainer", list(OURS))
def test_signal_grad_cam_softmax_head(TfCamBuilder, explainer):
    model, x = cnn(1, softmax=True), data(1, n=3, seed=5)
    theirs = _sgc(TfCamBuilder, model, x, 1, explainer, softmax_final=True, avoid_relu=True)
    ours = OURS[explainer](
        wrap(model), layer="conv2", relu=False, upsample=False, final_activation="strip", layout="b t c"
    )
    got = ours.explain(x, target=sl.LogProbability(1)).values[..., 0].numpy()
    np.testing.assert_allclose(got, theirs, rtol=1e-9, atol=1e-12)


class LinspaceIG(sl.Explainer):
    """IG on ``alpha = linspace(0, 1, n)`` with weights ``1/n`` (the TensorFlow reference's rule)."""

    def __init__(self, model, *, n_steps=16, layout=None):
        super().__init__(model, layout=layout)
        self.n_steps = n_steps

    def attribute(self, x, score):
        n = self.n_steps
        alphas = torch.linspace(0, 1, n, dtype=x.dtype)

        def path(start, stop):
            r = torch.arange(start, stop)
            return x[r // n] * alphas[r % n].reshape((-1,) + (1,) * (x.ndim - 1))

        _, g = score.gradients(path, n, weights=torch.full((n,), 1.0 / n, dtype=x.dtype))
        return x * g


@pytest.mark.parametrize("domain", ["time", "fourier"])
def test_cross_domain_tensorflow_ig(domain):
    cd = pytest.importorskip("cross_domain_saliency_maps.tensorflow_ig.cross_domain_integrated_gradients")
    model, x, n = cnn(1, dtype="float32"), data(1, n=3, seed=11, dtype=torch.float32), 16
    ref_cls = cd.TimeIG if domain == "time" else cd.FourierIG
    theirs = []
    for i in range(len(x)):
        xi = x[i : i + 1].numpy()
        theirs.append(np.asarray(ref_cls(model, n, 1).run(xi, np.zeros_like(xi))))
    theirs = np.stack(theirs)  # (B, C, T)
    explainer = LinspaceIG(wrap(model), n_steps=n, layout="b t c")
    if domain == "fourier":
        explainer = sl.InDomain(explainer, sl.Fourier(output="full"))
    got = explainer.explain(x, target=1)
    assert got.layout == ("b t c" if domain == "time" else "b f c")
    ours = got.values.numpy().transpose(0, 2, 1)
    scale = np.abs(theirs).max()
    assert scale > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)
    # our named right-Riemann rule is another quadrature of the same integral: close, not equal
    right = (sl.TimeIG if domain == "time" else sl.FourierIG)(
        wrap(model), n_steps=n, layout="b t c", **({} if domain == "time" else {"output": "full"})
    )
    other = right.explain(x, target=1).values.numpy().transpose(0, 2, 1)
    assert not np.allclose(other, theirs, rtol=1e-4, atol=1e-5 * scale)
