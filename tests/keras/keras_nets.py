"""Small Keras CNNs for the Keras tests: channels-last, float64, seeded (TensorFlow backend)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

T, C, H, W, K = 32, 3, 10, 10, 4
DT = "float64"


def cnn(dims: int = 1, *, softmax: bool = False, seed: int = 0, dtype: str = DT, channels: int = C):
    """Conv(relu) 'conv1' -> Conv 'conv2' -> ReLU 'relu2' -> global average pool 'gap' -> Dense
    'logits' (K classes, softmax inside the Dense layer with ``softmax=True``)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    conv = layers.Conv1D if dims == 1 else layers.Conv2D
    gap = layers.GlobalAveragePooling1D if dims == 1 else layers.GlobalAveragePooling2D
    shape = (T, channels) if dims == 1 else (H, W, channels)
    inp = keras.Input(shape, dtype=dtype, name="x")
    h = conv(6, 5 if dims == 1 else 3, padding="same", activation="relu", name="conv1", dtype=dtype)(inp)
    h = conv(8, 3, padding="same", name="conv2", dtype=dtype)(h)
    h = layers.ReLU(name="relu2", dtype=dtype)(h)
    h = gap(name="gap", dtype=dtype)(h)
    out = layers.Dense(K, activation="softmax" if softmax else None, name="logits", dtype=dtype)(h)
    model = keras.Model(inp, out, name=f"cnn{dims}d")
    # spread the biases so that ReLUs are not all on one side
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.random.default_rng(seed + 1).normal(0, 0.1, layer.bias.shape))
    return model


def data(dims: int = 1, n: int = 4, seed: int = 0, dtype=torch.float64, channels: int = C) -> torch.Tensor:
    """Seeded channels-last inputs (N, T, C) or (N, H, W, C)."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, T, channels) if dims == 1 else (n, H, W, channels)
    return torch.randn(shape, generator=g, dtype=dtype)


def layout(dims: int) -> str:
    return "b t c" if dims == 1 else "b h w c"


def tf_grad(model, x: torch.Tensor, target: int, layer: str | None = None, logits: bool = False):
    """Direct TensorFlow: the gradient of the target score w.r.t. the input, or the activations
    and gradient of a layer (``layer=``), the score being the logit (``logits=True``: the Dense
    layer's pre-activation) or the model output."""
    import tensorflow as tf

    import keras

    xt = tf.constant(x.numpy())
    dense = model.get_layer("logits")
    outs = [dense.input] + ([model.get_layer(layer).output] if layer else [])
    sub = keras.Model(model.inputs, outs + [model.output])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        got = sub(xt, training=False)
        h, y = got[0], got[-1]
        z = tf.matmul(h, dense.kernel) + dense.bias if logits else y
        s = z[:, target]
    if layer:
        a = got[1]
        return a.numpy(), tape.gradient(s, a).numpy(), s.numpy()
    return tape.gradient(s, xt).numpy(), s.numpy()
