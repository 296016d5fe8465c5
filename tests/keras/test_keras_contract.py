"""The contract suite (salience.testing) on bridged Keras models.

The kit hands the factory its own torch toy CNN; the factory here builds the Keras twin of that
model (the same float64 weights, a Permute layer first so that it takes the kit's channels-first
inputs, layers named "0".."6" as the torch modules are, so the kit's CAM layer "2" is the last
convolution), wraps it with salience.keras.wrap and builds the explainer on the bridge. The checks
that compare values (output, batch and chunk invariance, determinism, target forms, the explained
target recorded, no side effects under torch.no_grad()) then exercise the bridge. The kit's checks
that act on the torch model itself (a hook that raises, training mode, an extra forward input,
call counts through a hook on the torch model) do not apply to a Keras model and are left out;
tests/keras/test_keras_bridge.py counts the bridge's calls and checks the Keras model's state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import salience as sl  # noqa: E402
from salience.keras import wrap  # noqa: E402
from salience.testing import explainer_checks, toy_input, toy_model  # noqa: E402

CHECKS = [
    "output",
    "batch_invariance",
    "chunk_invariance",
    "determinism",
    "no_side_effects",
    "target_forms",
    "target_recorded",
]
_TWINS: dict[bytes, torch.nn.Module] = {}


def keras_twin(model: torch.nn.Module) -> torch.nn.Module:
    """The bridged Keras model with the weights of the kit's toy CNN (cached per weights)."""
    key = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    if key in _TWINS:
        return _TWINS[key]
    from keras import layers

    convs = [m for m in model if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    dims = convs[0].weight.ndim - 2
    c_in = convs[0].in_channels
    shape = (c_in, 20) if dims == 1 else (c_in, 8, 8)
    conv = layers.Conv1D if dims == 1 else layers.Conv2D
    gap = layers.GlobalAveragePooling1D if dims == 1 else layers.GlobalAveragePooling2D
    dt = "float64"
    inp = keras.Input(shape, dtype=dt)
    h = layers.Permute((2, 1) if dims == 1 else (2, 3, 1), name="permute", dtype=dt)(inp)
    h = conv(6, 3, padding="same", name="0", dtype=dt)(h)
    h = layers.ReLU(name="1", dtype=dt)(h)
    h = conv(8, 3, padding="same", name="2", dtype=dt)(h)
    h = layers.ReLU(name="3", dtype=dt)(h)
    h = gap(name="4", dtype=dt)(h)
    out = layers.Dense(model[-1].out_features, name="6", dtype=dt)(h)
    twin = keras.Model(inp, out)
    order = (2, 1, 0) if dims == 1 else (2, 3, 1, 0)
    for name, m in (("0", convs[0]), ("2", convs[1])):
        twin.get_layer(name).set_weights([m.weight.detach().permute(*order).numpy(), m.bias.detach().numpy()])
    twin.get_layer("6").set_weights([model[-1].weight.detach().T.numpy(), model[-1].bias.detach().numpy()])
    _TWINS[key] = wrap(twin)
    return _TWINS[key]


FACTORIES = {
    "Gradient": lambda m, **kw: sl.Gradient(keras_twin(m), **kw),
    "IntegratedGradients": lambda m, **kw: sl.IntegratedGradients(keras_twin(m), n_steps=4, **kw),
    "GradCAM": lambda m, **kw: sl.GradCAM(keras_twin(m), layer="2", **kw),
    "Occlusion": lambda m, **kw: sl.Occlusion(keras_twin(m), window=4, progress=False, **kw),
    "RISE": lambda m, generator=None, **kw: sl.RISE(
        keras_twin(m), n_masks=8, generator=generator, progress=False, **kw
    ),
    "SmoothGrad": lambda m, generator=None, **kw: sl.SmoothGrad(
        sl.Gradient(keras_twin(m), **kw), n_samples=3, generator=generator, progress=False
    ),
}
CASES = [
    (f"{method}-{name}", check)
    for method, make in FACTORIES.items()
    for name, check in explainer_checks(make, checks=CHECKS)
]


@pytest.mark.parametrize("name, check", CASES, ids=[n for n, _ in CASES])
def test_contract(name, check):
    assert check()


@pytest.mark.parametrize("kind", ["signal", "image"])
def test_twin_is_the_toy_model(kind):
    """The twin computes the kit's model: the same maps through the bridge as on the torch model."""
    model, x = toy_model(kind), toy_input(kind, batch=3)
    for make in (FACTORIES["Gradient"], FACTORIES["GradCAM"]):
        ours = make(model).explain(x, target=1).values
        ref = (sl.Gradient(model) if make is FACTORIES["Gradient"] else sl.GradCAM(model, layer="2")).explain(
            x, target=1
        )
        np.testing.assert_allclose(ours.numpy(), ref.values.numpy(), rtol=1e-10, atol=1e-13)
