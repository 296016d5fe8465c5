"""braindecode's EEG CNNs (EEGNet, ShallowFBCSPNet, Deep4Net; Lawhern et al. 2018, Schirrmeister
et al. 2017), built locally: Gradient, IG and Grad-CAM equal direct implementations, every
registered explainer that runs on signals runs on them, and every CAM runs on their last map
over time. Their convolutions are 2-D over (time, 1) or (1, time): a CAM reads the layer's
(B, K, T', 1) output as K features over T' time steps with ``reshape=``."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from model_libs import assert_same, direct_gradcam, direct_gradient, direct_ig, generator, need

import salience as sl

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mne's and braindecode's notices at import time
    models = need("braindecode.models")

from registry import EXPLAINERS  # noqa: E402

pytestmark = [
    pytest.mark.models,
    # no nn.ReLU in these networks (ELU, square/log): the modified-backprop methods say so
    pytest.mark.filterwarnings("ignore::salience.errors.SalienceWarning"),
]

# 3 channels, as the registry's toy signals (its ICA domains are fitted to 3 channels); 128 time
# steps: ShallowFBCSPNet's 25-step filter and 75-step pooling need about 100
CHANNELS, TIMES = 3, 128
X = torch.randn(2, CHANNELS, TIMES, generator=generator(3), dtype=torch.float64)

# model -> (constructor arguments, the last layer with a map over time before the classifier,
# what the default-layer rule, "the last spatial output before the classifier", should pick)
# (narrower than the published 40-200 filters, so that the ~130 registered cases stay fast)
_DEEP4 = {f"n_filters_{k}": 8 for k in ("time", "spat", "2", "3", "4")}
MODELS = {
    "EEGNet": ({}, "elu_2", "drop_2"),
    "ShallowFBCSPNet": (
        {"final_conv_length": "auto", "n_filters_time": 8, "n_filters_spat": 8},
        "pool_nonlin_exp",
        "drop",
    ),
    "Deep4Net": ({"final_conv_length": "auto", **_DEEP4}, "nonlin_4", "pool_nonlin_4"),
}


def over_time(a: torch.Tensor) -> torch.Tensor:
    """(B, K, T', 1) or (B, K, 1, T') -> (B, K, T'): the map over time a CAM reads."""
    return a.flatten(2)


@pytest.fixture(scope="module", params=list(MODELS))
def net(request):
    kwargs, _, _ = MODELS[request.param]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(models, request.param)(n_chans=CHANNELS, n_outputs=3, n_times=TIMES, **kwargs)
    return request.param, model.double().eval()


def test_gradient_ig_and_gradcam_equal_direct_implementations(net):
    name, model = net
    assert model(X).shape == (2, 3)
    assert_same(sl.Gradient(model).explain(X, 1).values, direct_gradient(model, X, 1), msg=name)
    assert_same(
        sl.IntegratedGradients(model, n_steps=4).explain(X, 2).values, direct_ig(model, X, 2, 4), msg=name
    )
    layer = MODELS[name][1]
    module = dict(model.named_modules())[layer]
    # without the ReLU, whose output on an untrained network may be all zero
    got = sl.GradCAM(model, layer=layer, reshape=over_time, relu=False).explain(X, 0)
    assert got.values.shape == (2, 1, TIMES) and got.layer == layer
    assert_same(got.values, direct_gradcam(model, X, 0, module, over_time, relu=False), msg=name)


def _signal_cases():
    # cases built for the kit's own signal length (band groups with fixed bins) are left out
    return [
        c
        for c in EXPLAINERS
        if "signal" in c.kinds and not c.needs_layer and c.tags.get("signal_length", TIMES) == TIMES
    ]


@pytest.mark.parametrize("case", _signal_cases(), ids=lambda c: c.id)
def test_every_registered_explainer_runs(net, case):
    name, model = net
    a = case.make(model).explain(X, 1)
    assert a.values.shape[0] == 2 and bool(torch.isfinite(a.values).all()), f"{case.id} on {name}"
    if not case.id.startswith("ClassRelevant"):  # zero where no class is relevant (untrained net)
        assert a.values.abs().sum() > 0, f"{case.id} on {name} gave an all-zero map"


def _cams():
    """Every exported layer explainer that reads a layer's map (``layer`` and ``reshape``)."""
    out = []
    for n in sl.__all__:
        cls = getattr(sl, n)
        if inspect.isclass(cls) and issubclass(cls, sl.Explainer) and not inspect.isabstract(cls):
            params = inspect.signature(cls).parameters
            if "layer" in params and "reshape" in params and n != "LayerExplainer":
                out.append(cls)
    return out


@pytest.mark.parametrize("cls", _cams(), ids=lambda c: c.__name__)
def test_every_cam_runs_on_the_last_map_over_time(net, cls):
    name, model = net
    kw = {"progress": False} if "progress" in inspect.signature(cls).parameters else {}
    a = cls(model, layer=MODELS[name][1], reshape=over_time, **kw).explain(X, 2)
    assert a.values.shape == (2, 1, TIMES) or a.values.shape == X.shape, (cls.__name__, a.shape)
    assert bool(torch.isfinite(a.values).all())


def test_default_cam_layer_is_the_last_map_over_time(net):
    name, model = net
    a = sl.GradCAM(model).explain(X, 0)
    assert a.layer == MODELS[name][2]
