"""Parity of GradCAM/HiResCAM with SignalGrad-CAM (PyPI ``signal-grad-cam`` 2.2, its torch path).

We compare the raw float maps that SignalGrad-CAM computes before its display post-processing
(``TorchCamBuilder._create_raw_batched_cams``: layer resolution, one map per item), on 1-D, 2-D
and 3-D networks, in float64.

Definitional differences pinned:
- SignalGrad-CAM's public ``get_cam`` returns per-item min-max scaled **uint8** maps, resized
  with OpenCV (with opencv-python 5 its 1-D maps come back constant, see
  ../shared/specs/seed-methods.md, section 4.4); we return raw float maps, so the comparison is
  made on its raw maps, with ``upsample=False`` on our side.
- Its ``avoid_relu=True`` is our ``relu=False``.
- Its ``softmax_final=True`` on a Softmax head explains ``log(clamp(p, eps, 1 - eps))``: ours is
  ``final_activation="strip"`` with ``target=LogProbability(k)`` (equal while no probability is
  clamped); on a single-output Sigmoid head it explains ``logit(p) = z`` for class 1: ours is
  ``final_activation="strip"`` with ``target=Output()``.
- Its contrastive score ``S_c - S_foil`` (or its square) is our ``Contrast(c, foils=foil)``
  (``quadratic=True``).
- It runs one ``backward(retain_graph=True)`` per item over the whole batch graph; we run one
  batched backward: the maps are equal because items are independent in eval mode.
- Its constructor seeds numpy's, Python's and torch's global RNGs and turns on
  ``torch.use_deterministic_algorithms``; the fixture below restores all of them.

SignalGrad-CAM imports TensorFlow and Keras at import time though its torch path never uses
them; where they are not installed, the test provides empty stand-in modules (only the names
used in its type annotations) instead of pulling a TensorFlow install into the test extras.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from toy_models import DIMS, cnn, make_input

pytestmark = pytest.mark.parity


def _stand_in_tensorflow() -> None:
    """Empty ``tensorflow``/``keras`` modules with the names SignalGrad-CAM's annotations use."""
    tf = types.ModuleType("tensorflow")
    tf.Tensor = type("Tensor", (), {})
    tf.keras = types.ModuleType("tensorflow.keras")
    tf.keras.Model = type("Model", (), {})
    tf.keras.layers = types.ModuleType("tensorflow.keras.layers")
    tf.keras.layers.Layer = type("Layer", (), {})
    sys.modules.setdefault("tensorflow", tf)
    sys.modules.setdefault("keras", types.ModuleType("keras"))


@pytest.fixture(scope="module")
def TorchCamBuilder():
    if importlib.util.find_spec("signal_grad_cam") is None:
        pytest.skip("signal-grad-cam is not installed (pip install --no-deps signal-grad-cam)")
    for dep in ("cv2", "matplotlib", "imageio"):
        pytest.importorskip(dep)
    if importlib.util.find_spec("tensorflow") is None:
        _stand_in_tensorflow()
    from signal_grad_cam import TorchCamBuilder as builder

    return builder


@pytest.fixture
def restore_globals():
    """SignalGrad-CAM's constructor changes global state; put it all back after the test."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    np_state, py_state = np.random.get_state(), random.getstate()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        np.random.set_state(np_state)
        random.setstate(py_state)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _theirs(builder, model, x, target, explainer, **kwargs) -> torch.Tensor:
    cams = builder(model, class_names=None)  # prints its layer listing (captured by pytest)
    layer = dict(model.named_modules())["2"]
    maps, _ = cams._create_raw_batched_cams(list(x), target, layer, explainer, **kwargs)
    return torch.as_tensor(np.stack(maps))


OURS = {"Grad-CAM": sl.GradCAM, "HiResCAM": sl.HiResCAM}
KINDS = ["signal", "image", "video"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("explainer", list(OURS))
@pytest.mark.parametrize("relu", [True, False], ids=["relu", "signed"])
def test_raw_maps(TorchCamBuilder, restore_globals, kind, explainer, relu):
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=4, seed=3)
    theirs = _theirs(TorchCamBuilder, model, x, 2, explainer, softmax_final=False, avoid_relu=not relu)
    ours = OURS[explainer](model, layer="2", relu=relu, upsample=False).explain(x, target=2)
    assert ours.values.shape == (4, 1, *theirs.shape[1:])
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours.values[:, 0], theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("explainer", list(OURS))
def test_softmax_head_is_log_probability(TorchCamBuilder, restore_globals, explainer):
    model = nn.Sequential(*cnn(1), nn.Softmax(dim=1)).eval()
    x = make_input("signal", batch=4, seed=5)
    theirs = _theirs(TorchCamBuilder, model, x, 1, explainer, softmax_final=True, avoid_relu=True)
    ours = OURS[explainer](model, layer="2", relu=False, upsample=False, final_activation="strip")
    attr = ours.explain(x, target=sl.LogProbability(1))
    torch.testing.assert_close(attr.values[:, 0], theirs, rtol=1e-10, atol=1e-12)
    # and it is not the map of the logit (the "logit + constant" comment in its code)
    logit = OURS[explainer](model, layer="2", relu=False, upsample=False, final_activation="strip")
    assert not torch.allclose(logit.explain(x, target=1).values[:, 0], theirs, atol=1e-6)


def test_sigmoid_head_binary(TorchCamBuilder, restore_globals):
    model = nn.Sequential(*cnn(1, n_classes=1), nn.Sigmoid()).eval()
    x = make_input("signal", batch=4, seed=6)
    theirs = _theirs(TorchCamBuilder, model, x, 1, "Grad-CAM", softmax_final=True, avoid_relu=True)
    ours = sl.GradCAM(model, layer="2", relu=False, upsample=False, final_activation="strip")
    torch.testing.assert_close(
        ours.explain(x, target=sl.Output()).values[:, 0], theirs, rtol=1e-8, atol=1e-10
    )


@pytest.mark.parametrize("quadratic", [False, True], ids=["linear", "quadratic"])
@pytest.mark.parametrize("explainer", list(OURS))
def test_contrastive(TorchCamBuilder, restore_globals, explainer, quadratic):
    model = cnn(2)
    x = make_input("image", batch=3, seed=8)
    theirs = _theirs(
        TorchCamBuilder,
        model,
        x,
        0,
        explainer,
        softmax_final=False,
        avoid_relu=True,
        contrastive_foil=3,
        quadratic_contrastive_score=quadratic,
    )
    ours = OURS[explainer](model, layer="2", relu=False, upsample=False)
    attr = ours.explain(x, target=sl.Contrast(0, foils=3, quadratic=quadratic))
    torch.testing.assert_close(attr.values[:, 0], theirs, rtol=1e-10, atol=1e-12)
