"""salience.keras.wrap on Keras models of the TensorFlow backend: every family of methods through
the bridge, against direct TensorFlow computations written here (float64)."""

from __future__ import annotations

import random
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("these tests need the TensorFlow backend of Keras", allow_module_level=True)

from keras_nets import K, cnn, data, layout, tf_grad  # noqa: E402

import salience as sl  # noqa: E402
from salience.keras import wrap  # noqa: E402

DIMS = [1, 2]


@pytest.fixture(scope="module")
def nets():
    return {d: cnn(d) for d in DIMS}


@pytest.fixture(scope="module")
def bridged(nets):
    return {d: wrap(m) for d, m in nets.items()}


def test_import_salience_does_not_import_tensorflow():
    code = "import sys, salience, salience.keras; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_dlpack_shares_memory():
    from salience.keras._tf import to_tf, to_torch

    x = torch.arange(64, dtype=torch.float32).reshape(4, 16)
    t = to_tf(x)
    x[0, 0] = 100.0  # the TensorFlow tensor sees the torch tensor's memory: no copy was made
    assert float(t.numpy()[0, 0]) == 100.0
    back = to_torch(t, torch.device("cpu"))
    assert back.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("dims", DIMS)
def test_gradient_equals_tape(nets, bridged, dims):
    x = data(dims)
    ref, scores = tf_grad(nets[dims], x, target=2)
    attr = sl.Gradient(bridged[dims], layout=layout(dims)).explain(x, target=2)
    np.testing.assert_allclose(attr.values.numpy(), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(attr.scores.numpy(), scores, rtol=1e-12)
    assert attr.layout == layout(dims)


@pytest.mark.parametrize("dims", DIMS)
def test_integrated_gradients_equals_direct_sum(nets, bridged, dims):
    x, n = data(dims, n=3), 8
    model = nets[dims]
    xt = tf.constant(x.numpy())
    total = 0.0
    for k in range(1, n + 1):  # right Riemann sum
        pt = xt * (k / n)
        with tf.GradientTape() as tape:
            tape.watch(pt)
            s = model(pt, training=False)[:, 1]
        total = total + tape.gradient(s, pt).numpy() / n
    ref = x.numpy() * total
    attr = sl.IntegratedGradients(bridged[dims], n_steps=n, rule="riemann_right", layout=layout(dims))
    got = attr.explain(x, target=1)
    np.testing.assert_allclose(got.values.numpy(), ref, rtol=1e-10, atol=1e-13)
    y = model(xt).numpy()[:, 1] - model(tf.zeros_like(xt)).numpy()[:, 1]
    np.testing.assert_allclose(got.delta.numpy(), ref.reshape(3, -1).sum(1) - y, rtol=1e-9, atol=1e-12)


def _cams(a, g):
    """Grad-CAM, HiResCAM and Grad-CAM++ written on channels-last activations (N, *pos, K)."""
    pos = tuple(range(1, a.ndim - 1))
    grad = (g.mean(pos, keepdims=True) * a).sum(-1)
    hires = (g * a).sum(-1)
    g2 = g * g
    den = 2 * g2 + a.sum(pos, keepdims=True) * g2 * g
    alpha = np.where(den != 0, g2 / np.where(den != 0, den, 1), 0)
    w = (alpha * np.maximum(g, 0)).sum(pos, keepdims=True)
    return {"GradCAM": grad, "HiResCAM": hires, "GradCAMPlusPlus": (w * a).sum(-1)}


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("method", ["GradCAM", "HiResCAM", "GradCAMPlusPlus"])
def test_cams_equal_direct_layer_gradients(nets, bridged, dims, method):
    x = data(dims)
    a, g, _ = tf_grad(nets[dims], x, target=3, layer="conv2")
    ref = _cams(a, g)[method]
    cls = getattr(sl, method)
    attr = cls(bridged[dims], layer="conv2", relu=False, upsample=False, layout=layout(dims)).explain(
        x, target=3
    )
    assert attr.layer == "conv2" and attr.layout == layout(dims)
    assert attr.values.shape == (*x.shape[:-1], 1)  # the channel axis kept last, as passed
    np.testing.assert_allclose(attr.values[..., 0].numpy(), ref, rtol=1e-10, atol=1e-13)
    relu = cls(bridged[dims], layer="conv2", upsample=False, layout=layout(dims)).explain(x, target=3)
    np.testing.assert_allclose(relu.values[..., 0].numpy(), np.maximum(ref, 0), rtol=1e-10, atol=1e-13)


def test_layers_lists_keras_names(bridged):
    table = sl.layers(bridged[2], data(2, n=1), layout="b h w c")
    assert table.names() == ["conv1", "conv2", "relu2", "gap", "logits"]
    info = {i.name: i for i in table}
    assert info["conv2"].shape == (1, 8, 10, 10)  # channels-first, as the CAMs read layers
    assert info["relu2"].default and info["conv2"].type == "Conv2D"
    default = sl.GradCAM(bridged[2], layout="b h w c").explain(data(2), target=0)
    assert default.layer == "relu2"


def test_unknown_layer_names_the_candidates(bridged):
    with pytest.raises(sl.LayerError, match="conv2"):
        sl.GradCAM(bridged[1], layer="conv", layout="b t c").explain(data(1), target=0)


def test_final_softmax_inside_dense():
    soft, plain = wrap(cnn(1, softmax=True)), wrap(cnn(1))
    x = data(1)
    assert "logits.activation" in dict(soft.named_modules())
    with pytest.warns(sl.FinalActivationWarning, match="logits.activation"):
        warned = sl.GradCAM(soft, layer="conv2", layout="b t c").explain(x, target=1)
    probs = tf.nn.softmax(cnn(1)(tf.constant(x.numpy()))).numpy()[:, 1]
    np.testing.assert_allclose(warned.scores.numpy(), probs, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stripped = sl.GradCAM(soft, layer="conv2", layout="b t c", final_activation="strip").explain(
            x, target=1
        )
        logit = sl.GradCAM(plain, layer="conv2", layout="b t c").explain(x, target=1)
    np.testing.assert_allclose(stripped.values.numpy(), logit.values.numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(warned.values.numpy(), logit.values.numpy())
    # the gradient methods explain the probability, as the model outputs it
    g = sl.Gradient(soft, layout="b t c").explain(x, target=1).values.numpy()
    ref, _ = tf_grad(cnn(1, softmax=True), x, target=1)
    np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-14)


def test_hook_replacing_a_layer_output_reaches_the_rest_of_the_model(nets, bridged):
    """A hook that changes the layer's output (as layer attributions do) is what the layers after
    it receive: zeros at conv2 leave the Dense bias."""
    b = bridged[1]
    handle = b.get_submodule("conv2").register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    try:
        out = b(data(1))
    finally:
        handle.remove()
    bias = nets[1].get_layer("logits").bias.numpy()
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(bias, out.shape), atol=1e-14)


def _numpy_model(model):
    return sl.NumpyModel(lambda a: model(a, training=False).numpy(), flatten=False)


@pytest.mark.parametrize("dims", DIMS)
def test_forward_only_methods_in_batches(nets, bridged, dims):
    x, lay = data(dims, n=3), layout(dims)
    window = {"t": 8} if dims == 1 else {"h": 5, "w": 5}
    soft = cnn(dims, softmax=True)

    def gen():
        return torch.Generator().manual_seed(0)

    cases = {  # name: (keras model, factory, extra options of the NumPy reference)
        "Occlusion": (
            nets[dims],
            lambda m, **k: sl.Occlusion(m, window=window, layout=lay, batch_size=5),
            {},
        ),
        "RISE": (
            nets[dims],
            lambda m, **k: sl.RISE(m, n_masks=20, layout=lay, batch_size=5, generator=gen()),
            {},
        ),
        # the bridge shows the softmax head, so MaskUpdate sees probabilities; the NumPy model
        # cannot show it: it is told with link="clamp" (the identity on [0, 1])
        "MaskUpdate": (
            soft,
            lambda m, **k: sl.MaskUpdate(m, n_steps=15, layout=lay, batch_size=5, generator=gen(), **k),
            {"link": "clamp"},
        ),
    }
    for name, (model, make, ref_options) in cases.items():
        b = bridged[dims] if model is nets[dims] else wrap(model)
        rows: list[int] = []
        handle = b.register_forward_pre_hook(lambda _m, args, rows=rows: rows.append(args[0].shape[0]))
        try:
            ours = make(b).explain(x, target=2)
        finally:
            handle.remove()
        assert rows and max(rows) <= 5, name
        ref = make(_numpy_model(model), **ref_options).explain(x, target=2)
        np.testing.assert_allclose(ours.values.numpy(), ref.values.numpy(), rtol=1e-10, atol=1e-12)
        assert ours.values.ndim == x.ndim and ours.values.shape[:-1] == x.shape[:-1], name
        assert float(ours.values.abs().max()) > 0, name


def _state(model):
    return (
        [w.copy() for w in model.get_weights()],
        [(layer.name, layer.trainable) for layer in model.layers],
        model.name,
        len(model.layers),
    )


def test_no_side_effects(nets):
    model = nets[2]
    b = wrap(model)
    x = data(2)
    before, x0 = _state(model), x.clone()
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    with torch.no_grad():
        for explainer in (
            sl.Gradient(b, layout="b h w c"),
            sl.GradCAM(b, layer="conv2", layout="b h w c"),
            sl.IntegratedGradients(b, n_steps=4, layout="b h w c"),
            sl.SmoothGrad(sl.Gradient(b, layout="b h w c"), n_samples=3, generator=torch.Generator()),
        ):
            explainer.explain(x, target=0)
    after = _state(model)
    for w0, w1 in zip(before[0], after[0], strict=True):
        np.testing.assert_array_equal(w0, w1)
    assert before[1:] == after[1:]
    assert torch.equal(x, x0)
    assert torch.equal(rng[0], torch.get_rng_state())
    assert np.array_equal(rng[1], np.random.get_state()[1]) and rng[2] == random.getstate()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in b.modules())


@pytest.mark.parametrize("method", ["Gradient", "IntegratedGradients", "GradCAM"])
def test_batch_and_chunk_invariance(bridged, method):
    b, x = bridged[1], data(1, n=3)
    kwargs = {"GradCAM": {"layer": "conv2"}, "IntegratedGradients": {"n_steps": 5}}.get(method, {})

    def run(xs, target, bs=None):
        return (
            getattr(sl, method)(b, layout="b t c", batch_size=bs, **kwargs).explain(xs, target=target).values
        )

    whole = run(x, torch.tensor([0, 1, 2]))
    alone = torch.cat([run(x[i : i + 1], i) for i in range(3)])
    torch.testing.assert_close(whole, alone, rtol=1e-10, atol=1e-12)
    ref = run(x, 1)
    for bs in (1, 2):
        rows: list[int] = []
        handle = b.register_forward_pre_hook(lambda _m, args, rows=rows: rows.append(args[0].shape[0]))
        try:
            got = run(x, 1, bs)
        finally:
            handle.remove()
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        assert max(rows) <= bs


def test_float32_input_on_a_float64_model_and_back(bridged, nets):
    x = data(1, dtype=torch.float32)
    attr = sl.Gradient(bridged[1], layout="b t c").explain(x, target=0)
    assert attr.values.dtype == torch.float32
    ref, _ = tf_grad(nets[1], x.double(), target=0)
    np.testing.assert_allclose(attr.values.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_eager_equals_graph(nets, bridged):
    x = data(1)
    eager = wrap(nets[1], graph=False)
    for method in (sl.Gradient, lambda m, **k: sl.GradCAM(m, layer="conv2", **k)):
        a = method(eager, layout="b t c").explain(x, target=1).values
        g = method(bridged[1], layout="b t c").explain(x, target=1).values
        torch.testing.assert_close(a, g, rtol=1e-12, atol=1e-14)


def test_tensorflow_callable_without_layers(nets):
    model = nets[1]
    fn = tf.function(lambda t: model(t, training=False))
    b = wrap(fn)
    x = data(1)
    ref, _ = tf_grad(model, x, target=1)
    np.testing.assert_allclose(
        sl.Gradient(b, layout="b t c").explain(x, target=1).values.numpy(), ref, rtol=1e-12
    )
    with pytest.raises(sl.LayerError, match="not found"):
        sl.GradCAM(b, layer="conv2", layout="b t c").explain(x, target=1)


def test_tf_keras_model():
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((16, 2), dtype="float64")
    h = tf_keras.layers.Conv1D(4, 3, padding="same", name="c", dtype="float64")(inp)
    h = tf_keras.layers.GlobalAveragePooling1D(dtype="float64")(h)
    out = tf_keras.layers.Dense(3, activation="softmax", name="d", dtype="float64")(h)
    model = tf_keras.Model(inp, out)
    x = torch.randn(2, 16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b = wrap(model)
    xt = tf.constant(x.numpy())
    with tf.GradientTape() as tape:
        tape.watch(xt)
        s = model(xt)[:, 2]
    np.testing.assert_allclose(
        sl.Gradient(b, layout="b t c").explain(x, target=2).values.numpy(),
        tape.gradient(s, xt).numpy(),
        rtol=1e-12,
    )
    cam = sl.HiResCAM(b, layer="c", layout="b t c", final_activation="strip", upsample=False, relu=False)
    got = cam.explain(x, target=2)
    assert got.values.shape == (2, 16, 1) and got.layer == "c"
    assert K == 4  # the shared nets' class count (used by the parity tests)
