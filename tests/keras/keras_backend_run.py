"""Run by test_keras_torch_backend.py in a fresh process per Keras backend (the backend is fixed
at the first ``import keras``): ``python keras_backend_run.py BACKEND MODEL.keras OUT.npz``.

Under ``tensorflow`` it builds and saves the models, then explains them through the TensorFlow
bridge; under ``torch`` it loads the saved files and explains them through ``wrap`` (the model
runs in torch). Both write every method's maps to OUT.npz; the torch run also writes what it found
about side effects."""

from __future__ import annotations

import os
import sys

backend, path, out = sys.argv[1:4]
os.environ["KERAS_BACKEND"] = backend

import numpy as np  # noqa: E402
import torch  # noqa: E402
from keras_nets import cnn, data, layout  # noqa: E402

import keras  # noqa: E402
import salience as sl  # noqa: E402
from salience.keras import wrap  # noqa: E402


def methods(lay: str, dims: int) -> dict:
    window = {"t": 8} if dims == 1 else {"h": 5, "w": 5}

    def gen():
        return torch.Generator().manual_seed(0)

    cam = {"layer": "conv2", "layout": lay}
    return {
        "Gradient": sl.Gradient,
        "Saliency": sl.Saliency,
        "InputXGradient": sl.InputXGradient,
        "IntegratedGradients": lambda m, layout: sl.IntegratedGradients(m, n_steps=8, layout=layout),
        "SmoothGrad": lambda m, layout: sl.SmoothGrad(
            sl.Gradient(m, layout=layout), n_samples=4, generator=gen(), progress=False
        ),
        "GradCAM": lambda m, layout: sl.GradCAM(m, final_activation="strip", **cam),
        "HiResCAM": lambda m, layout: sl.HiResCAM(m, final_activation="strip", **cam),
        "GradCAMPlusPlus": lambda m, layout: sl.GradCAMPlusPlus(m, final_activation="strip", **cam),
        "XGradCAM": lambda m, layout: sl.XGradCAM(m, final_activation="strip", **cam),
        "LayerCAM": lambda m, layout: sl.LayerCAM(m, final_activation="strip", **cam),
        "ScoreCAM": lambda m, layout: sl.ScoreCAM(m, final_activation="strip", progress=False, **cam),
        "DefaultCAM": lambda m, layout: sl.GradCAM(m, layout=layout, final_activation="keep"),
        "Occlusion": lambda m, layout: sl.Occlusion(m, window=window, layout=layout, progress=False),
        "RISE": lambda m, layout: sl.RISE(m, n_masks=16, layout=layout, generator=gen(), progress=False),
        "MaskUpdate": lambda m, layout: sl.MaskUpdate(
            m, n_steps=10, layout=layout, generator=gen(), progress=False
        ),
        "ClassRelevant": lambda m, layout: sl.ClassRelevant(
            sl.Gradient(m, layout=layout), classes=[1, 3], normalize=True
        ),
        **(
            {
                "TimeIG": lambda m, layout: sl.TimeIG(m, n_steps=8, layout=layout),
                "FourierIG": lambda m, layout: sl.FourierIG(m, n_steps=8, layout=layout),
            }
            if dims == 1
            else {}
        ),
    }


results: dict[str, np.ndarray] = {}
for dims in (1, 2):
    file = path.replace(".keras", f"{dims}d.keras")
    if backend == "tensorflow":
        cnn(dims, softmax=True).save(file)
    model = keras.saving.load_model(file)
    weights = [np.array(w) for w in model.get_weights()]
    rng = torch.get_rng_state()
    bridged = wrap(model)
    lay = layout(dims)
    x = data(dims, n=3)
    for name, make in methods(lay, dims).items():
        results[f"{name}{dims}"] = make(bridged, layout=lay).explain(x, target=1).values.numpy()
    results[f"layers{dims}"] = np.array(sl.layers(bridged, x[:1], layout=lay).names())
    if backend == "torch":
        results[f"weights_kept{dims}"] = np.array(
            all(np.array_equal(a, np.array(b)) for a, b in zip(weights, model.get_weights(), strict=True))
        )
        results[f"rng_kept{dims}"] = np.array(torch.equal(rng, torch.get_rng_state()))
        results[f"hooks_left{dims}"] = np.array(
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
        )
        results[f"layer_training{dims}"] = np.array([bool(m.training) for m in model.modules()])
        # the Keras model itself is an nn.Module: the gradient methods take it unwrapped
        plain = sl.Gradient(model, layout=lay).explain(x, target=1).values.numpy()
        results[f"plain{dims}"] = plain
np.savez(out, **results)
