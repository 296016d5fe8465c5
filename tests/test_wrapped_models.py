"""Models inside wrappers (torch.compile, nn.DataParallel): layer names resolve in the network
they run, with or without the wrapper's prefix, and every method gives the plain model's map."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import salience as sl


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def _compiled(net: nn.Module) -> nn.Module:
    return torch.compile(net, backend="eager")  # no C++ toolchain needed


WRAPPERS = {"compile": _compiled, "DataParallel": nn.DataParallel}
PREFIX = {"compile": "_orig_mod.", "DataParallel": "module."}
X = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("layer", [None, "1", "prefixed"])
def test_cam_layers_resolve_through_wrappers(wrap, layer):
    net = _net()
    wrapped = WRAPPERS[wrap](net)
    name = PREFIX[wrap] + "1" if layer == "prefixed" else layer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no training-mode or Dynamo warning either
        att = sl.GradCAM(wrapped, layer=name).explain(X, 1)
    ref = sl.GradCAM(net, layer="1").explain(X, 1)
    assert att.layer == "1"
    torch.testing.assert_close(att.values, ref.values, rtol=0, atol=0)


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_layers_lists_the_network_and_its_names_work_when_passed_back(wrap):
    net = _net()
    wrapped = WRAPPERS[wrap](net)
    table = sl.layers(wrapped, X)
    assert [row.name for row in table] == [row.name for row in sl.layers(net, X)]
    default = next(row.name for row in table if row.default)
    assert sl.GradCAM(wrapped, layer=default).explain(X, 1).layer == default


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize(
    "make",
    [
        lambda m: sl.IntegratedGradients(m, n_steps=8),
        lambda m: sl.GuidedBackprop(m),
        lambda m: sl.LRP(m),
        lambda m: sl.ScoreCAM(m, progress=False),
        lambda m: sl.Occlusion(m, window={"t": 4}),
    ],
    ids=["IG", "GuidedBackprop", "LRP", "ScoreCAM", "Occlusion"],
)
def test_every_kind_of_method_gives_the_plain_models_map(wrap, make):
    net = _net()
    wrapped = WRAPPERS[wrap](net)
    torch.testing.assert_close(make(wrapped).explain(X, 2).values, make(net).explain(X, 2).values)


@pytest.mark.parametrize("wrap", WRAPPERS)
def test_wrapper_and_network_left_unchanged(wrap):
    net = _net()
    wrapped = WRAPPERS[wrap](net)
    state = {k: v.clone() for k, v in wrapped.state_dict().items()}
    hooks = [(m._forward_hooks.copy(), m._forward_pre_hooks.copy()) for m in wrapped.modules()]
    modes = [m.training for m in wrapped.modules()]
    sl.GradCAM(wrapped).explain(X, 0)
    sl.LRP(wrapped).explain(X, 0)
    assert all(torch.equal(state[k], v) for k, v in wrapped.state_dict().items())
    assert hooks == [(m._forward_hooks.copy(), m._forward_pre_hooks.copy()) for m in wrapped.modules()]
    assert modes == [m.training for m in wrapped.modules()]


def test_unknown_layer_names_the_network_candidates():
    wrapped = nn.DataParallel(_net())
    with pytest.raises(sl.LayerError, match=r"Layer 'nope' not found in Sequential"):
        sl.GradCAM(wrapped, layer="nope").explain(X, 0)
