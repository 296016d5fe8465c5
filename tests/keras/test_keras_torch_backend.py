"""One Keras model explained under the torch backend (the model is an nn.Module) and through the
TensorFlow bridge gives the same maps, for every method family.

The backend cannot change inside a process: each backend runs in its own subprocess
(keras_backend_run.py); the TensorFlow run saves the models as .keras files and the torch run
loads them, so both explain the same weights.

Tolerance: Keras's two backends compute the same float64 model to about 1e-7 of its scale by
themselves (measured on these networks: conv1's output agrees to 2e-16, the pooled features after
conv2 to 7e-8 of their scale; the bridge itself equals TensorFlow's tape to 1e-12, see
test_keras_bridge.py), so the maps are compared at 1e-6 of each map's scale.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

HERE = pathlib.Path(__file__).parent


def _run(backend: str, tmp: pathlib.Path) -> dict:
    out = tmp / f"{backend}.npz"
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.run(
        [sys.executable, str(HERE / "keras_backend_run.py"), backend, str(tmp / "model.keras"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keras_backends")
    tf_run = _run("tensorflow", tmp)
    return tf_run, _run("torch", tmp)


def test_same_maps_under_torch_and_through_the_bridge(runs):
    tf_run, torch_run = runs
    compared = [k for k in tf_run if not k.startswith("layers")]
    assert len(compared) == 2 * 16 + 2  # every method ran on both networks
    for key in compared:
        a, b = tf_run[key], torch_run[key]
        assert a.shape == b.shape, key
        scale = float(np.abs(a).max())
        assert scale > 0, key
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * scale, err_msg=key)


def test_layers_by_keras_name_under_both(runs):
    tf_run, torch_run = runs
    for dims in (1, 2):
        expected = ["conv1", "conv2", "relu2", "gap", "logits", "logits.activation"]
        assert list(tf_run[f"layers{dims}"]) == expected
        assert list(torch_run[f"layers{dims}"]) == expected


def test_no_side_effects_on_the_keras_model(runs):
    _, torch_run = runs
    for dims in (1, 2):
        assert bool(torch_run[f"weights_kept{dims}"]) and bool(torch_run[f"rng_kept{dims}"])
        assert int(torch_run[f"hooks_left{dims}"]) == 0
        # the torch modules' flags are as Keras left them (salience never calls .eval() on them)
        assert torch_run[f"layer_training{dims}"].all()


def test_unwrapped_keras_module_takes_gradient_methods(runs):
    tf_run, torch_run = runs
    for dims in (1, 2):
        ref = tf_run[f"Gradient{dims}"]
        np.testing.assert_allclose(torch_run[f"plain{dims}"], ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
