"""Keras models through salience.keras.wrap (issue #18): IntegratedGradients (n_steps=50) and
Grad-CAM on a Keras 1-D CNN (N=32, T=1000, float32), against Xplique 2.0.2 on the same model and
against the bare TensorFlow forward+backward over the same rows.

Run in the TensorFlow environment (.venv-tf, see docs/keras.md)::

    .venv-tf/bin/python benchmarks/bench_keras.py [--repeats 5] [--out benchmarks/results_keras.md]

The bare TensorFlow rows are a ``tf.function`` of the model's forward pass and the tape's
gradient of the target logit over the same rows, in the chunks salience uses (its default
batch_size for this input) and in one batch; its eager version is shown too. The rule is the
trapezoid on ``linspace(0, 1, 50)``, Xplique's (our ``riemann_trapezoid``), so both make 1600
rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import keras  # noqa: E402
import salience as sl  # noqa: E402
from salience.engine._rows import default_batch_size  # noqa: E402
from salience.keras import wrap  # noqa: E402

N, T, C, K, STEPS, TARGET = 32, 1000, 3, 4, 50, 1


def model_1d() -> keras.Model:
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((T, C))
    h = layers.Conv1D(16, 7, padding="same", activation="relu", name="conv1")(inp)
    h = layers.Conv1D(32, 5, padding="same", activation="relu", name="conv2")(h)
    h = layers.Conv1D(32, 3, padding="same", name="conv3")(h)
    h = layers.ReLU(name="relu3")(h)
    h = layers.GlobalAveragePooling1D(name="gap")(h)
    return keras.Model(inp, layers.Dense(K, name="logits")(h), name="bench_cnn1d")


def time_all(fns: dict, repeats: int) -> dict[str, float]:
    """Best time of each function over ``repeats`` interleaved rounds after one warm-up call each."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import xplique.attributions as xa

    model = model_1d()
    bridged = wrap(model)
    x = torch.randn(N, T, C, generator=torch.Generator().manual_seed(0))
    xt = tf.constant(x.numpy())
    onehot = np.eye(K, dtype=np.float32)[[TARGET] * N]
    chunk = default_batch_size(T * C, torch.device("cpu"))
    alphas = tf.reshape(tf.linspace(0.0, 1.0, STEPS), (1, STEPS, 1, 1))
    path = tf.reshape(xt[:, None] * alphas, (N * STEPS, T, C))  # the 1600 IG rows
    sub = keras.Model(model.inputs, [model.get_layer("relu3").output, model.output])

    def fwd_bwd(rows):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            s = model(rows, training=False)[:, TARGET]
        return tape.gradient(s, rows)

    graph_fwd_bwd = tf.function(fwd_bwd, input_signature=[tf.TensorSpec((None, T, C), tf.float32)])

    def cam_fwd_bwd(rows):
        with tf.GradientTape() as tape:
            a, y = sub(rows, training=False)
            s = y[:, TARGET]
        return a, tape.gradient(s, a)

    graph_cam = tf.function(cam_fwd_bwd, input_signature=[tf.TensorSpec((None, T, C), tf.float32)])

    def chunks(fn, rows, size):
        return [fn(rows[i : i + size]) for i in range(0, rows.shape[0], size)]

    ig = sl.IntegratedGradients(bridged, n_steps=STEPS, rule="riemann_trapezoid", layout="b t c")
    cam = sl.GradCAM(bridged, layer="relu3", layout="b t c")
    xig = xa.IntegratedGradients(model, steps=STEPS, batch_size=chunk)
    xig_default = xa.IntegratedGradients(model, steps=STEPS)
    xcam = xa.GradCAM(model, conv_layer="conv3")

    def xplique_cam_1d():
        """Xplique's GradCAM.explain without its final bicubic resize, which refuses 1-D maps (its
        weights then average the gradients over axes 1 and 2: time and channels)."""
        maps = []
        for i in range(0, N, xcam.batch_size):
            fm, g = xcam._gradient(xt[i : i + xcam.batch_size], onehot[i : i + xcam.batch_size])
            maps.append(xa.GradCAM._apply_weights(xcam._compute_weights(g, fm), fm))
        return tf.concat(maps, 0)

    ig_rows = {
        f"bare TF fwd+bwd (tf.function), {N * STEPS} rows in chunks of {chunk} (our default batch_size)": lambda: (
            chunks(graph_fwd_bwd, path, chunk)
        ),
        f"bare TF fwd+bwd (tf.function), {N * STEPS} rows in one batch": lambda: graph_fwd_bwd(path),
        f"bare TF fwd+bwd (eager), {N * STEPS} rows in chunks of {chunk}": lambda: chunks(
            fwd_bwd, path, chunk
        ),
        "salience IG through the bridge": lambda: ig.explain(x, target=TARGET),
        f"Xplique IG (batch_size={chunk})": lambda: xig.explain(xt, onehot),
        "Xplique IG (batch_size=32, its default)": lambda: xig_default.explain(xt, onehot),
    }
    cam_rows = {
        f"bare TF layer fwd+bwd (tf.function), {N} rows": lambda: graph_cam(xt),
        f"bare TF layer fwd+bwd (eager), {N} rows": lambda: cam_fwd_bwd(xt),
        "salience GradCAM through the bridge": lambda: cam.explain(x, target=TARGET),
        "Xplique GradCAM (explain without its 2-D resize)": xplique_cam_1d,
    }
    # the maps agree (Xplique: float32 trapezoid IG; its GradCAM bicubic resize of a full-size map)
    ours = ig.explain(x, target=TARGET).values.numpy()
    theirs = np.asarray(xig.explain(xt, onehot))
    agree = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    results = []
    for title, rows in (("IntegratedGradients, n_steps=50", ig_rows), ("Grad-CAM", cam_rows)):
        best = time_all(rows, args.repeats)
        bare = next(iter(best.values()))
        ours_t = next(v for k, v in best.items() if k.startswith("salience"))
        results.append((title, best, bare, ours_t))
    load = os.getloadavg()[0]
    lines = [
        "## Keras models through the TensorFlow bridge (`benchmarks/bench_keras.py`)",
        "",
        f"TensorFlow {tf.__version__} (CPU), Keras {keras.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}; Keras 1-D CNN "
        f"(3 convolutions, T={T}, C={C}, {K} classes, float32), N={N}, target={TARGET}; best of "
        f"{args.repeats} interleaved rounds after a warm-up; load average {load:.1f} at the end. "
        f"The bridge's IG equals Xplique's to {agree:.1e} of its scale.",
        "",
        "| method | call | time (s) | vs bare TF | vs ours |",
        "|---|---|---|---|---|",
    ]
    for title, best, bare, ours_t in results:
        for k, v in best.items():
            lines.append(f"| {title} | {k} | {v:.3f} | {v / bare:.2f}x | {v / ours_t:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
