"""Layer attributions: the public kit's checks, the layer-space result, analytic values and
completeness, hooks and errors. Captum parity is in tests/parity/test_captum_layer.py."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import salience as sl

from registry import EXPLAINERS  # isort: skip (first: it loads every case module, and those import from it)
from cases_layer_sobol import LAYER  # isort: skip
from salience.errors import CompositionError, LayerError, ParameterError, ShapeError
from salience.explainers.integrated_gradients import quadrature
from salience.explainers.layer_attribution import (
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from salience.testing import EXPLAINER_CHECKS, explainer_checks, toy_input, toy_model
from toy_models import cnn, make_input

KINDS = ("signal", "image", "video")
# every check of the kit except "output", whose broadcast-to-the-input test does not apply to
# maps in the layer's shape (test_output_in_layer_space checks those instead)
NOT_OUTPUT = [name for name in EXPLAINER_CHECKS if name != "output"]

_REGISTERED = {c.id for c in EXPLAINERS}
KIT = [
    pytest.param(check, id=f"{case.id}-{name}")
    for case in LAYER
    if case.id not in _REGISTERED  # once in tests/registry.py, the contract suite runs them
    for name, check in explainer_checks(
        case.make,
        kinds=case.kinds,
        stochastic=case.stochastic,
        expected_passes=case.passes,
        checks=NOT_OUTPUT,
    )
]


@pytest.mark.parametrize("check", KIT)
def test_kit(check):
    assert check()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", LAYER, ids=[c.id for c in LAYER])
def test_output_in_layer_space(case, kind):
    model, x = toy_model(kind), toy_input(kind, 2)
    attr = case.make(model).explain(x, 1)
    with torch.no_grad():
        a = {}
        handle = model[2].register_forward_hook(lambda _m, _i, o: a.setdefault("a", o))
        model(x)
        handle.remove()
    assert attr.values.shape == a["a"].shape  # (B, 8, *spatial): the layer's output
    assert attr.values.dtype == x.dtype and torch.isfinite(attr.values).all()
    assert attr.layer == ("3" if "default" in case.id else "2")  # default: the last ReLU
    assert attr.info["space"] == "layer"
    assert attr.info["layer_shape"] == tuple(a["a"].shape[1:])
    assert str(attr.layout) == {"signal": "b c t", "image": "b c h w", "video": "b c t h w"}[kind]
    torch.testing.assert_close(attr.scores, model(x)[:, 1].detach())


def _linear_head():
    """conv -> flatten -> linear: the score is linear in the conv's output."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 10, 3)).double().eval()


def test_analytic_linear_after_layer():
    model = _linear_head()
    x = torch.randn(3, 2, 10, dtype=torch.float64)
    w = model[2].weight[1].reshape(4, 10)
    a_x = model[0](x).detach()
    a_0 = model[0](torch.zeros_like(x)).detach()  # the conv's bias
    gxa = LayerGradientXActivation(model, layer="0").explain(x, 1).values
    torch.testing.assert_close(gxa, a_x * w, rtol=1e-12, atol=1e-12)
    grad = LayerGradientXActivation(model, layer="0", multiply_by_inputs=False).explain(x, 1).values
    torch.testing.assert_close(grad, w.expand_as(a_x), rtol=1e-12, atol=1e-12)
    for rule in ("riemann_left", "riemann_trapezoid", "gausslegendre"):
        lig = LayerIntegratedGradients(model, layer="0", n_steps=3, rule=rule).explain(x, 1)
        torch.testing.assert_close(lig.values, (a_x - a_0) * w, rtol=1e-12, atol=1e-12)
        assert lig.delta.abs().max() < 1e-12  # exact on a linear head, whatever the rule
        # the differences telescope to A at the last node minus A at the first
        cond = LayerConductance(model, layer="0", n_steps=3, rule=rule).explain(x, 1).values
        nodes = quadrature(rule, 4)[0]
        ends = [model[0](float(a) * x).detach() for a in (nodes[0], nodes[-1])]
        torch.testing.assert_close(cond, (ends[1] - ends[0]) * w, rtol=1e-12, atol=1e-12)


def test_completeness_on_a_cut():
    """Layer "2" of the CNN is a cut: LIG and conductance sum to f(x) - f(x0) as n grows."""
    model, x = cnn(1), make_input("signal", 3)
    f = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]
    for cls in (LayerIntegratedGradients, LayerConductance):
        attr = cls(model, layer="2", n_steps=400).explain(x, 2)
        torch.testing.assert_close(attr.values.flatten(1).sum(1), f.detach(), rtol=1e-3, atol=1e-4)
        assert attr.delta.abs().max() < 1e-4


def test_conductance_of_input_layer_is_ig_per_unit():
    """At an identity layer placed on the input, conductance is the input's Integrated
    Gradients with the left Riemann nodes, and LIG is IG itself."""
    inner = cnn(1)
    model = nn.Sequential(nn.Identity(), *inner).eval()
    x = make_input("signal", 2)
    ig = sl.IntegratedGradients(inner, n_steps=8, rule="riemann_left").explain(x, 1).values
    cond = LayerConductance(model, layer="0", n_steps=8).explain(x, 1).values
    torch.testing.assert_close(cond, ig, rtol=1e-10, atol=1e-12)
    ig_t = sl.IntegratedGradients(inner, n_steps=8).explain(x, 1).values
    lig = LayerIntegratedGradients(model, layer="0", n_steps=8).explain(x, 1).values
    torch.testing.assert_close(lig, ig_t, rtol=1e-10, atol=1e-12)


def test_chunking_of_the_path():
    model, x = cnn(2), make_input("image", 3)
    ref = LayerIntegratedGradients(model, layer="2", n_steps=5).explain(x, 1).values
    for bs in (1, 4, 7):
        out = LayerIntegratedGradients(model, layer="2", n_steps=5, batch_size=bs).explain(x, 1).values
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)


def test_module_and_default_layer():
    model, x = cnn(1), make_input("signal", 2)
    by_name = LayerIntegratedGradients(model, layer="3", n_steps=4).explain(x, 0)
    by_module = LayerIntegratedGradients(model, layer=model[3], n_steps=4).explain(x, 0)
    default = LayerIntegratedGradients(model, n_steps=4).explain(x, 0)
    torch.testing.assert_close(by_module.values, by_name.values)
    assert by_module.layer == "3" and default.layer == sl.GradCAM(model).explain(x, 0).layer


class _Embedder(nn.Module):
    """Token ids carried as floats (B, 1, L) -> embedding (B, L, D) -> mean -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.embedding = nn.Embedding(12, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embedding(ids[:, 0].long())).mean(1))


def test_embedding_layer_layout():
    model = _Embedder().double().eval()
    ids = torch.randint(1, 12, (2, 1, 7), generator=torch.Generator().manual_seed(0)).double()
    attr = LayerIntegratedGradients(model, layer="embedding", n_steps=64, layer_layout="b t c").explain(
        ids, 2
    )
    assert attr.values.shape == (2, 7, 6) and str(attr.layout) == "b t c"
    assert attr.delta.abs().max() < 1e-3  # completeness through the embedding
    plain = LayerIntegratedGradients(model, layer="embedding", n_steps=4).explain(ids, 2)
    assert str(plain.layout) == "b c t"  # the default reading of a 3-axis output
    flat = LayerGradientXActivation(model, layer="head").explain(ids, 2)
    assert str(flat.layout) == "b a1" and flat.values.shape == (2, 3)


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.conv(self.conv(x)).mean(-1))


def test_errors_and_hooks_removed():
    model, x = cnn(1), make_input("signal", 2)
    with pytest.raises(ParameterError, match="layer"):
        LayerIntegratedGradients(model, layer=3)
    with pytest.raises(ParameterError, match="rule"):
        LayerConductance(model, rule="simpson")
    with pytest.raises(ParameterError, match="n_steps"):
        LayerIntegratedGradients(model, n_steps=1, rule="riemann_trapezoid")
    with pytest.raises(ShapeError, match="layer_layout"):
        LayerGradientXActivation(model, layer="2", layer_layout="b c").explain(x, 0)
    with pytest.raises(LayerError, match="not found"):
        LayerGradientXActivation(model, layer="nope").explain(x, 0)
    with pytest.raises(CompositionError):
        sl.InDomain(LayerIntegratedGradients(model, layer="2", n_steps=2), sl.Fourier()).explain(x, 0)
    twice = _Twice().double().eval()
    with (
        pytest.warns(sl.SalienceWarning, match="ran 2 times"),
        pytest.raises(LayerError, match="more than once"),
    ):
        LayerIntegratedGradients(twice, layer="conv", n_steps=2).explain(x, 0)
    assert all(not m._forward_hooks for m in twice.modules())
    assert all(not m._forward_hooks for m in model.modules())


def test_other_threads_unaffected():
    """While a call replaces the layer's output, other threads' forward passes are untouched:
    each time the call's own forward passes reach the gate, another thread runs the model."""
    model, x = cnn(1), make_input("signal", 2)
    expected = model(x).detach()
    seen: list[torch.Tensor] = []
    errors: list[BaseException] = []
    main = threading.get_ident()

    def other():
        try:
            with torch.no_grad():
                seen.append(gated(x))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    class Gate(nn.Module):
        def forward(self, t):
            if threading.get_ident() == main:
                worker = threading.Thread(target=other)
                worker.start()
                worker.join()
            return t

    gated = nn.Sequential(model[0], model[1], Gate(), *model[2:]).eval()
    LayerIntegratedGradients(gated, layer="3", n_steps=3).explain(x, 0)  # "3": the second conv
    assert not errors and len(seen) >= 3
    for out in seen:
        torch.testing.assert_close(out, expected)


def test_class_relevant_and_smoothgrad_compose():
    model, x = cnn(1), make_input("signal", 2)
    lig = LayerIntegratedGradients(model, layer="2", n_steps=3)
    rel = sl.ClassRelevant(lig, classes=[0, 1], normalize=True).explain(x)
    assert rel.values.shape[0] == 2
    sg = sl.SmoothGrad(
        LayerGradientXActivation(model, layer="2"), n_samples=2, generator=torch.Generator().manual_seed(0)
    )
    assert sg.explain(x, 1).values.shape == (2, 8, 20)
