"""Parity with Captum's LayerIntegratedGradients, LayerGradientXActivation and LayerConductance
(float64, small CNNs in 1-D, 2-D and 3-D, and an embedding layer).

Definitional differences pinned:
- Rules: the same names give the same nodes. Captum's ``riemann_trapezoid`` step sizes sum to
  ``(n-1)/n`` (see tests/parity/test_captum_gradient.py), so Captum's LayerIG with that rule is
  ours times ``(n-1)/n``. Captum defaults to ``gausslegendre``, we to ``riemann_trapezoid``, so
  every test names the rule.
- LayerConductance uses only the nodes of ``n_steps + 1`` points (the weights play no part), as
  Captum; with ``gausslegendre`` (Captum's default) the nodes stop short of 0 and 1, so the
  conductances do not sum to ``A(x) - A(x0)``: ours defaults to ``riemann_trapezoid``, whose
  nodes ``k / n`` include both ends.
- Captum computes its Riemann nodes in float32 (``torch.linspace(...).tolist()``) and casts every
  rule's step sizes to float32, so LayerIG agrees to a relative 2e-7 and its completeness gap to
  1e-8 absolute; conductance (no step sizes) agrees to 1e-9 with Gauss-Legendre's float64 nodes
  and to 2e-7 with the Riemann nodes; gradient x activation to 1e-9.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from salience.explainers.integrated_gradients import RULES
from salience.explainers.layer_attribution import (
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from toy_models import DIMS, cnn, make_input

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.parity

KINDS = ["signal", "image", "video"]
LAYERS = ["0", "2", "3"]  # first conv, second conv, its ReLU
TIGHT = dict(rtol=1e-9, atol=1e-11)
FLOAT32 = dict(rtol=2e-7, atol=1e-9)


def _tol(rule):
    return TIGHT if rule == "gausslegendre" else FLOAT32


def _setup(kind):
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=3)
    return model, x, torch.tensor([0, 2, 3])


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_gradient_x_activation(kind, layer):
    model, x, t = _setup(kind)
    module = model.get_submodule(layer)
    for mult in (True, False):
        theirs = captum_attr.LayerGradientXActivation(model, module, multiply_by_inputs=mult).attribute(
            x, target=t
        )
        ours = LayerGradientXActivation(model, layer=layer, multiply_by_inputs=mult).explain(x, t)
        torch.testing.assert_close(ours.values, theirs, **TIGHT)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_integrated_gradients(kind, layer, rule):
    model, x, t = _setup(kind)
    n = 6
    lig = captum_attr.LayerIntegratedGradients(model, model.get_submodule(layer))
    theirs, delta = lig.attribute(x, target=t, n_steps=n, method=rule, return_convergence_delta=True)
    ours = LayerIntegratedGradients(model, layer=layer, n_steps=n, rule=rule).explain(x, t)
    scale = (n - 1) / n if rule == "riemann_trapezoid" else 1.0
    torch.testing.assert_close(ours.values * scale, theirs, **FLOAT32)
    if rule != "riemann_trapezoid":  # the same completeness gap
        torch.testing.assert_close(ours.delta, delta, rtol=0.0, atol=1e-8)


@pytest.mark.parametrize("kind", ["signal", "image"])
def test_layer_integrated_gradients_options(kind):
    model, x, t = _setup(kind)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(x.shape, generator=g, dtype=x.dtype) * 0.1
    lig = captum_attr.LayerIntegratedGradients(model, model[2], multiply_by_inputs=False)
    theirs = lig.attribute(x, baselines=x0, target=t, n_steps=5, method="gausslegendre")
    ours = LayerIntegratedGradients(
        model, layer="2", n_steps=5, rule="gausslegendre", baseline=x0, multiply_by_inputs=False
    ).explain(x, t)
    torch.testing.assert_close(ours.values, theirs, **FLOAT32)
    assert ours.delta is None
    theirs = captum_attr.LayerIntegratedGradients(model, model[2]).attribute(
        x, baselines=x0, target=t, n_steps=5, method="gausslegendre", internal_batch_size=4
    )
    ours = LayerIntegratedGradients(
        model, layer="2", n_steps=5, rule="gausslegendre", baseline=x0, batch_size=4
    )
    torch.testing.assert_close(ours.explain(x, t).values, theirs, **FLOAT32)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_conductance(kind, layer, rule):
    model, x, t = _setup(kind)
    n = 5
    lc = captum_attr.LayerConductance(model, model.get_submodule(layer))
    theirs, delta = lc.attribute(x, target=t, n_steps=n, method=rule, return_convergence_delta=True)
    ours = LayerConductance(model, layer=layer, n_steps=n, rule=rule).explain(x, t)
    torch.testing.assert_close(ours.values, theirs, **_tol(rule))
    if rule == "riemann_trapezoid":  # both ends among the nodes: the same completeness gap
        torch.testing.assert_close(ours.delta, delta, rtol=0.0, atol=1e-8)
    else:
        assert ours.delta is None


@pytest.mark.parametrize("kind", ["signal", "image"])
def test_layer_conductance_baseline(kind):
    model, x, t = _setup(kind)
    x0 = torch.full_like(x, 0.3)
    theirs = captum_attr.LayerConductance(model, model[2]).attribute(
        x, baselines=x0, target=t, n_steps=4, method="gausslegendre"
    )
    ours = LayerConductance(model, layer="2", n_steps=4, rule="gausslegendre", baseline=0.3).explain(x, t)
    torch.testing.assert_close(ours.values, theirs, **TIGHT)


class _TextModel(nn.Module):
    """Token ids carried as floats (B, 1, L) -> embedding -> 1-D conv over tokens -> linear."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(9)
        self.embedding = nn.Embedding(20, 5)
        self.conv = nn.Conv1d(5, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embedding(ids[:, 0].long())  # (B, L, D)
        h = torch.relu(self.conv(e.transpose(1, 2)))
        return self.head(h.mean(-1))


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle"])
def test_embedding_layer(rule):
    model = _TextModel().double().eval()
    ids = torch.randint(1, 20, (3, 1, 9), generator=torch.Generator().manual_seed(1)).double()
    t = torch.tensor([0, 1, 2])
    theirs = captum_attr.LayerIntegratedGradients(model, model.embedding).attribute(
        ids, baselines=torch.zeros_like(ids), target=t, n_steps=8, method=rule
    )
    ours = LayerIntegratedGradients(model, layer="embedding", n_steps=8, rule=rule, layer_layout="b t c")
    attr = ours.explain(ids, t)
    assert attr.values.shape == (3, 9, 5) and str(attr.layout) == "b t c"
    torch.testing.assert_close(attr.values, theirs, **FLOAT32)
    gxa = captum_attr.LayerGradientXActivation(model, model.embedding).attribute(ids, target=t)
    torch.testing.assert_close(
        LayerGradientXActivation(model, layer="embedding").explain(ids, t).values, gxa, **TIGHT
    )
    if rule != "gausslegendre":
        return
    # conductance needs a path in the input: the float ids interpolated towards 0 are truncated
    # by .long(), so only identical nodes give identical rows (Captum's Riemann nodes are float32)
    cond = captum_attr.LayerConductance(model, model.conv).attribute(ids, target=t, n_steps=6, method=rule)
    ours_c = LayerConductance(model, layer="conv", n_steps=6, rule=rule).explain(ids, t)
    torch.testing.assert_close(ours_c.values, cond, **_tol(rule))
