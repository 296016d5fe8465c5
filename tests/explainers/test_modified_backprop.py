"""Guided Backprop and DeconvNet: closed forms, Captum parity, coverage warning, no side effects."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience as sl
from toy_models import DIMS, cnn, make_input


def seeded(seed: int, build):
    """Build a model from a fixed seed without touching the global RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


class TwoLayer(nn.Module):
    """f(x) = V relu(W x): Guided Backprop and DeconvNet have closed forms."""

    def __init__(self, w: torch.Tensor, v: torch.Tensor, relu: nn.Module | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.v = nn.Parameter(v)
        self.relu = relu if relu is not None else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x.flatten(1) @ self.w.T) @ self.v.T


def _two_layer(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64)
    v = torch.randn(3, 5, generator=g, dtype=torch.float64)
    x = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    return w, v, x


@pytest.mark.parametrize("inplace", [False, True])
def test_closed_forms(inplace):
    w, v, x = _two_layer()
    model = TwoLayer(w, v, nn.ReLU(inplace=inplace)).eval()
    k = 1
    h = x.flatten(1) @ w.T  # (B, 5) pre-activations
    up = v[k].expand_as(h)  # gradient arriving at the ReLU output
    guided = (up.clamp(min=0) * (h > 0)) @ w
    deconv = up.clamp(min=0) @ w
    plain = (up * (h > 0)) @ w
    torch.testing.assert_close(
        sl.GuidedBackprop(model).explain(x, k).values, guided.reshape(x.shape), rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(
        sl.DeconvNet(model).explain(x, k).values, deconv.reshape(x.shape), rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(
        sl.Gradient(model).explain(x, k).values, plain.reshape(x.shape), rtol=1e-12, atol=1e-14
    )


def test_reused_relu_module():
    """One nn.ReLU module called twice in a forward: both calls get the rule."""

    class Reuse(nn.Module):
        def __init__(self, separate: bool) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 3)
            self.r1 = nn.ReLU()
            self.r2 = nn.ReLU() if separate else self.r1

        def forward(self, x):
            return self.c(self.r2(self.b(self.r1(self.a(x.flatten(1))))))

    x = _two_layer()[2]
    shared = seeded(3, lambda: Reuse(False)).double().eval()
    separate = seeded(3, lambda: Reuse(True)).double().eval()
    for cls in (sl.GuidedBackprop, sl.DeconvNet):
        torch.testing.assert_close(
            cls(shared).explain(x, 2).values, cls(separate).explain(x, 2).values, rtol=0, atol=0
        )


def test_three_d_and_nested_wrapper():
    inner = cnn(3)
    wrapped = nn.Sequential(nn.Identity(), nn.Sequential(inner)).eval()
    x = make_input("video")
    a = sl.GuidedBackprop(inner).explain(x, 2).values
    b = sl.GuidedBackprop(wrapped).explain(x, 2).values
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, sl.Gradient(inner).explain(x, 2).values)


def test_smoothgrad_of_guided_backprop_with_zero_noise():
    model, x = cnn(1), make_input("signal")
    sg = sl.SmoothGrad(sl.GuidedBackprop(model), n_samples=2, sigma=0.0).explain(x, 1).values
    torch.testing.assert_close(sg, sl.GuidedBackprop(model).explain(x, 1).values, rtol=1e-12, atol=1e-14)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.act(self.conv(x))
        h = F.relu(h - 0.1)
        h = torch.relu(h * 2).relu()
        return self.head(h.mean(-1))


def test_functional_relu_warns_and_names_the_call():
    model = seeded(0, Functional).double().eval()
    x = make_input("signal")
    with pytest.warns(sl.ReLUCoverageWarning) as record:
        sl.GuidedBackprop(model).explain(x, 1)
    msg = str(record[0].message)
    for part in (
        "GuidedBackprop",
        "torch.nn.functional.relu",
        "torch.relu",
        "Tensor.relu",
        "<model> (Functional)",
        "1 found",
    ):
        assert part in msg, (part, msg)
    # the nn.ReLU module itself is covered: no warning for a model made of modules only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sl.GuidedBackprop(cnn(1)).explain(x, 1)
        sl.DeconvNet(cnn(1)).explain(x, 1)


def test_functional_relu_inside_a_submodule_is_named():
    class Block(nn.Module):
        def forward(self, x):
            return F.relu(x)

    model = seeded(0, lambda: nn.Sequential(nn.Conv1d(3, 4, 3), Block(), nn.Flatten(), nn.Linear(4 * 18, 2)))
    model = model.double().eval()
    with pytest.warns(sl.ReLUCoverageWarning, match=r"torch.nn.functional.relu in 1 \(Block\).*0 found"):
        sl.DeconvNet(model).explain(make_input("signal"), 0)


def test_plain_function_model_warns():
    w = torch.randn(2, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(x):
        return torch.relu(x.flatten(1)) @ w.T

    with pytest.warns(sl.ReLUCoverageWarning, match="torch.relu in <model>"):
        out = sl.GuidedBackprop(f).explain(make_input("signal"), 0).values
    x = make_input("signal")
    torch.testing.assert_close(out, ((x > 0) * w[0].reshape(3, 20)).to(x.dtype))


def _state(model: nn.Module):
    return (
        [type(m) for m in model.modules()],
        [m.training for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [
            (
                dict(m._forward_hooks),
                dict(m._forward_pre_hooks),
                dict(m._backward_hooks),
                dict(m._backward_pre_hooks),
            )
            for m in model.modules()
        ],
        [(p.requires_grad, p.grad) for p in model.parameters()],
    )


def _same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3]
    assert all(torch.equal(a[2][k], b[2][k]) for k in a[2])
    assert all(ra == rb and ga is gb for (ra, ga), (rb, gb) in zip(a[4], b[4], strict=True))


@pytest.mark.parametrize("cls", [sl.GuidedBackprop, sl.DeconvNet])
def test_model_unchanged_after_call_and_after_exception(cls):
    model = nn.Sequential(cnn(2), nn.ReLU(inplace=True)).eval()
    before = _state(model)
    stack = torch._C._len_torch_function_stack()
    x = make_input("image")
    cls(model).explain(x, 1)
    _same(before, _state(model))

    calls = {"n": 0}

    def boom(_m, _i, _o):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")

    handle = model[0][1].register_forward_hook(boom)
    before = _state(model)
    with pytest.raises(sl.ModelCallError):
        cls(model, batch_size=1).explain(x, 1)
    _same(before, _state(model))
    handle.remove()
    assert torch._C._len_torch_function_stack() == stack
    # and the model still backpropagates plainly afterwards
    torch.testing.assert_close(
        sl.Gradient(model).explain(x, 1).values, sl.Gradient(cnn(2)).explain(x, 1).values, rtol=0, atol=0
    )


# ---------------------------------------------------------------- Guided Grad-CAM
@pytest.mark.parametrize("kind", ["signal", "image", "video"])
def test_guided_gradcam_is_the_product(kind):
    model, x = cnn(DIMS[kind]), make_input(kind)
    attr = sl.GuidedGradCAM(model, layer="3").explain(x, 2)
    cam = sl.GradCAM(model, layer="3").explain(x, 2).values
    gbp = sl.GuidedBackprop(model).explain(x, 2).values
    assert cam.shape == (x.shape[0], 1, *x.shape[2:]) and (cam > 0).any()
    torch.testing.assert_close(attr.values, gbp * cam, rtol=0, atol=0)
    torch.testing.assert_close(attr.info["cam"], cam, rtol=0, atol=0)
    assert attr.layer == "3" and attr.values.shape == x.shape


def test_guided_gradcam_strip_explains_the_logit_in_both_parts():
    model = cnn(1)
    with_softmax = nn.Sequential(*model, nn.Softmax(dim=1)).eval()
    x = make_input("signal")
    stripped = sl.GuidedGradCAM(with_softmax, layer="3", final_activation="strip").explain(x, 1).values
    logits = sl.GuidedGradCAM(model, layer="3").explain(x, 1).values
    torch.testing.assert_close(stripped, logits, rtol=0, atol=0)
    with pytest.warns(UserWarning, match="ends in Softmax"):
        sl.GuidedGradCAM(with_softmax, layer="3").explain(x, 1)


# ---------------------------------------------------------------- inside ClassRelevant (VAR)
def var_reference(maps: torch.Tensor, t: int, tau: float, inv_t: float) -> torch.Tensor:
    """VAR's ClassSpecificAttributionWrapper, literally: maps (K, *A) for the classes in K order."""
    m = torch.softmax(inv_t * maps.abs(), dim=0)
    m_t = m[t]
    return maps[t] * m_t * ((m_t - 1 / maps.shape[0]) > tau)


@pytest.mark.parametrize("cls", [sl.GuidedBackprop, sl.DeconvNet])
def test_class_relevant_guided_backprop_is_var_formula(cls):
    """VAR's demo builds its class-relevant maps on Guided Backprop: the wrapper applied to the
    fixed per-class Guided Backprop maps reproduces VAR's formula exactly."""
    model, x = cnn(2), make_input("image", batch=2)
    base = cls(model)
    classes = [0, 1, 2, 3]
    maps = torch.stack([base.explain(x, target=k).values for k in classes], 1)  # (B, K, C, H, W)
    temperature = 0.002  # the toy CNN's maps are ~0.005: VAR's 0.1 would flatten the softmax
    attr = sl.ClassRelevant(base, classes=classes, temperature=temperature).explain(x, target=[2, 0])
    assert (attr.values != 0).float().mean() > 0.05
    for b, t in enumerate([2, 0]):
        ref = var_reference(maps[b], t, 0.01, 1 / temperature)
        torch.testing.assert_close(attr.values[b], ref, rtol=1e-12, atol=1e-15)


def test_docs_example_runs_as_written():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "modified_backprop.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model of nn.ReLU modules: no coverage warning
        exec(compile(block, "docs/modified_backprop.md", "exec"), ns)
    x = ns["x"]
    for key in ("gbp", "ggc", "dec", "lrp"):
        assert ns[key].values.shape == x.shape, key
    assert ns["ggc"].layer == "5" and ns["lrp"].delta.shape == (x.shape[0],)


@pytest.mark.parametrize("cls", [sl.GuidedBackprop, sl.DeconvNet])
def test_no_relu_at_all_warns_that_the_result_is_the_gradient(cls):
    """MobileNet-style models use ReLU6/SiLU: the rule reaches nothing, and the user is told."""
    model = nn.Sequential(
        nn.Conv1d(3, 4, 3), nn.ReLU6(), nn.Conv1d(4, 4, 3), nn.SiLU(), nn.Flatten(), nn.LazyLinear(2)
    )
    x = make_input("signal")
    model(x.float())  # materialise the lazy layer
    model = model.double().eval()
    with pytest.warns(sl.ReLUCoverageWarning, match=r"no nn.ReLU module .*ReLU6, SiLU.*plain gradient"):
        attr = cls(model).explain(x, 1)
    torch.testing.assert_close(attr.values, sl.Gradient(model).explain(x, 1).values, rtol=0, atol=0)
