"""Hostile use of every registered metric, as a parametrised grid (#13).

For every metric in ``tests/cases_metrics.py`` and every hostile input, attribution, mask,
target, model, explainer or hyperparameter below (one argument of a valid call replaced at a
time), the outcome is either a result of the right shape, finite (NaN only where the docs
define NaN as the answer: an empty mask, an all-zero or constant map), or a
``salience.SalienceError``: never a raw exception from torch, numpy or Python. The caller's
tensors (the input, the attribution, the mask, tensor-valued hyperparameters) are never
changed (values, ``requires_grad``, ``.grad``), nor is the model's state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from cases_metrics import METRICS as CORE_METRICS
from cases_metrics import Call, MetricCase, attribution_like, default_call, gen, mask_like, signal
from cases_metrics_more import MORE
from salience import metrics as M
from salience.masking import Blur, Interpolate, Substrate
from toy_models import cnn

METRICS = [*CORE_METRICS, *MORE]

NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------------------- registry
def test_every_public_metric_is_registered():
    covered = {name for case in METRICS for name in case.covers}
    missing = sorted(set(M.__all__) - covered)
    assert not missing, (
        f"public metrics without a case in tests/cases_metrics.py or cases_metrics_more.py: {missing}"
    )
    assert not covered - set(M.__all__), "a case covers a name that is not public"
    ids = [case.id for case in METRICS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", METRICS, ids=[c.id for c in METRICS])
def test_the_registered_call_is_valid(case: MetricCase):
    """The unmodified call gives a result (so every hostile outcome is due to its variation)."""
    out = _call(case, default_call(case))
    _check_result(case, default_call(case), out, "valid")


# ---------------------------------------------------------------------------- hostile values
def _inference(make: Callable[[], torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return make()


def _with(t: torch.Tensor, index: tuple, value: float) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


def _strided(t: torch.Tensor) -> torch.Tensor:
    """A non-contiguous view with ``t``'s shape and values."""
    return torch.stack([t, torch.zeros_like(t)], -1)[..., 0]


#: hostile inputs x; an attribution and a mask of x's shape are derived where x has one
INPUTS: dict[str, Callable[[], Any]] = {
    "list": lambda: signal().tolist(),
    "numpy": lambda: signal().numpy(),
    "int": lambda: torch.ones(2, 3, 16, dtype=torch.int64),
    "bool": lambda: torch.ones(2, 3, 16, dtype=torch.bool),
    "complex": lambda: signal().to(torch.complex128),
    "nan": lambda: _with(signal(), (0, 1, 3), NAN),
    "inf": lambda: _with(signal(), (1, 0, 0), INF),
    "1d": lambda: signal()[0, 0],
    "zero-length": lambda: signal(t=0),
    "empty-batch": lambda: signal(batch=0),
    "one-step": lambda: signal(t=1),
    "float32": lambda: signal(dtype=torch.float32),
    "requires-grad": lambda: signal().requires_grad_(True),
    "non-contiguous": lambda: _strided(signal()),
    "inference": lambda: _inference(signal),
    "meta": lambda: torch.empty(2, 3, 16, dtype=torch.float64, device="meta"),
    "huge-values": lambda: signal() * 1e300,
}


def _attr() -> torch.Tensor:
    return attribution_like(signal())


def _another_input(batch: int, target: Any) -> Callable[[], sl.Attribution]:
    def make() -> sl.Attribution:
        return sl.Gradient(cnn(1)).explain(signal(batch=batch, seed=9), target)

    return make


#: hostile attributions (built from the case's valid attribution ``a``)
ATTRIBUTIONS: dict[str, Callable[[torch.Tensor], Any]] = {
    "nan": lambda a: _with(a, (1,) + (0,) * (a.ndim - 1), NAN),
    "inf": lambda a: _with(a, (0,) * a.ndim, -INF),
    "complex": lambda a: a.to(torch.complex128),
    "int": lambda a: (a > 0).long(),
    "bool": lambda a: a > 0,
    "float32": lambda a: a.float(),
    "list": lambda a: a.tolist(),
    "numpy": lambda a: a.numpy(),
    "scalar": lambda a: a.flatten()[0],
    "1d": lambda a: a.flatten(),
    "flattened": lambda a: a.flatten(1),
    "extra-axis": lambda a: a[..., None],
    "wrong-shape": lambda a: a[..., :-1],
    "wrong-batch": lambda a: a[:1],
    "empty-batch": lambda a: a[:0],
    "zero-length": lambda a: a[..., :0],
    "zero": lambda a: torch.zeros_like(a),
    "constant": lambda a: torch.full_like(a, 0.5),
    "huge-values": lambda a: a * 1e307,
    "tiny-values": lambda a: a * 1e-320,
    "requires-grad": lambda a: a.clone().requires_grad_(True),
    "non-contiguous": lambda a: _strided(a),
    "inference": lambda a: _inference(lambda: a.clone()),
    "meta": lambda a: torch.empty(a.shape, dtype=a.dtype, device="meta"),
    "attribution-object": lambda a: sl.Attribution(
        values=a,
        target=torch.tensor([0, 3]),
        scores=torch.zeros(2),
        method="m",
        layout=sl.Layout("b c t") if a.ndim == 3 else None,
    ),
    "other-input-batch-3": lambda a: _another_input(3, 1)(),
    "other-input-same-batch": lambda a: _another_input(2, torch.tensor([3, 0]))(),
}

#: hostile ground-truth masks (built from the case's valid boolean mask ``m``)
MASKS: dict[str, Callable[[torch.Tensor], Any]] = {
    "nan": lambda m: _with(m.double(), (0,) * m.ndim, NAN),
    "soft": lambda m: m.double() * 0.4,
    "labels": lambda m: m.long() * 2,
    "negative": lambda m: -m.double(),
    "complex": lambda m: m.to(torch.complex128),
    "int01": lambda m: m.long(),
    "float01": lambda m: m.double(),
    "requires-grad": lambda m: m.double().requires_grad_(True),
    "non-contiguous": lambda m: _strided(m),
    "wrong-shape": lambda m: m[..., :-1],
    "wrong-batch": lambda m: m[:1],
    "extra-axis": lambda m: m[..., None],
    "1d": lambda m: m.flatten(),
    "empty": lambda m: m[..., :0],
    "all-false": lambda m: torch.zeros_like(m),
    "all-true": lambda m: torch.ones_like(m),
    "list": lambda m: m.tolist(),
    "numpy": lambda m: m.numpy(),
    "meta": lambda m: torch.empty(m.shape, dtype=m.dtype, device="meta"),
    "none": lambda m: None,
}

#: hostile targets (class targets of the 4-class toy model; labels for make_grid)
TARGETS: dict[str, Callable[[], Any]] = {
    "out-of-range": lambda: 4,
    "negative": lambda: -1,
    "huge": lambda: 2**64,
    "string": lambda: "cat",
    "float": lambda: 1.5,
    "bool": lambda: True,
    "wrong-length": lambda: [0, 1, 2],
    "nested-list": lambda: [[0], [1]],
    "float-tensor": lambda: torch.tensor([0.0, 1.0]),
    "2d-tensor": lambda: torch.tensor([[0, 1]]),
    "numpy-int": lambda: np.int64(2),
    "numpy-array": lambda: np.array([1, 3]),
    "callable-raises": lambda: lambda out: 1 / 0,
    "probability": lambda: sl.Probability(1),
    "contrast": lambda: sl.Contrast(1, foils=[0]),
    "none": lambda: None,
}


class _Wrapped(nn.Module):
    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.net = cnn(1, n_classes=n_classes)


class _Tuple(_Wrapped):
    def forward(self, x):
        return self.net(x), x


class _NaN(_Wrapped):
    def forward(self, x):
        return self.net(x) * NAN


class _Raises(_Wrapped):
    def forward(self, x):
        raise KeyError("boom")


class _Detached(_Wrapped):
    def forward(self, x):
        return self.net(x).detach()


class _InPlace(_Wrapped):
    def forward(self, x):
        x.mul_(2.0)
        return self.net(x)


class _OneOutput(_Wrapped):
    def __init__(self) -> None:
        super().__init__(n_classes=1)

    def forward(self, x):
        return self.net(x)


class _WrongBatch(_Wrapped):
    def forward(self, x):
        return self.net(x)[:1]


class _Integer(_Wrapped):
    def forward(self, x):
        return (self.net(x) * 10).long()


class _Float32(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1, dtype=torch.float32)

    def forward(self, x):
        return self.net(x)


#: hostile models (the explainer-based metrics get ``salience.Gradient(model)`` as the explainer)
MODELS: dict[str, Callable[[], Any]] = {
    "tuple": _Tuple,
    "nan": _NaN,
    "raises": _Raises,
    "detached": _Detached,
    "in-place": _InPlace,
    "one-output": _OneOutput,
    "wrong-batch": _WrongBatch,
    "integer": _Integer,
    "float32-weights": _Float32,
    "training-mode": lambda: cnn(1).train(),
    "lambda": lambda: lambda x: x.flatten(1)[:, :4] * 2,
    "not-callable": lambda: 42,
    "explainer": lambda: sl.Gradient(cnn(1)),
}


def _explainer_raises(x, target):
    raise KeyError("boom")


#: hostile explainers (for the metrics that re-explain)
EXPLAINERS: dict[str, Callable[[nn.Module], Any]] = {
    "model": lambda m: m,
    "class": lambda m: sl.Gradient,
    "none": lambda m: None,
    "not-callable": lambda m: 42,
    "string": lambda m: "Gradient",
    "returns-nan": lambda m: lambda x, t: torch.full_like(x, NAN),
    "returns-list": lambda m: lambda x, t: x.tolist(),
    "returns-wrong-shape": lambda m: lambda x, t: x[..., 1:],
    "returns-int": lambda m: lambda x, t: (x > 0).long(),
    "raises": lambda m: _explainer_raises,
    "plain-callable": lambda m: lambda x, t: sl.Gradient(m).explain(x, t),
    "other-model": lambda m: sl.Saliency(cnn(1, seed=5)),
}


class _NaNSubstrate(Substrate):
    def __call__(self, x, layout, mask=None):
        return torch.full_like(x, NAN)


class _WrongShapeSubstrate(Substrate):
    def __call__(self, x, layout, mask=None):
        return x[..., 1:]


class _RaisingSubstrate(Substrate):
    def __call__(self, x, layout, mask=None):
        raise KeyError("boom")


class _IntSubstrate(Substrate):
    needs_mask = True

    def __call__(self, x, layout, mask=None):
        return torch.zeros(x.shape, dtype=torch.long)


#: hostile hyperparameters, by kind (see cases_metrics.Param)
_COUNT = {
    "zero": lambda: 0,
    "negative": lambda: -1,
    "float": lambda: 2.5,
    "nan": lambda: NAN,
    "inf": lambda: INF,
    "huge": lambda: 2**64,
    "string": lambda: "3",
    "bool": lambda: True,
    "tensor": lambda: torch.tensor(3),
    "list": lambda: [3],
    "none": lambda: None,
}
_FLOAT = {
    "zero": lambda: 0.0,
    "negative": lambda: -1.0,
    "nan": lambda: NAN,
    "inf": lambda: INF,
    "-inf": lambda: -INF,
    "huge": lambda: 1e308,
    "string": lambda: "0.1",
    "bool": lambda: True,
    "none": lambda: None,
    "tensor": lambda: torch.tensor(0.1),
    "complex": lambda: 1j,
}
HYPERPARAMETERS: dict[str, dict[str, Callable[[], Any]]] = {
    "count": _COUNT,
    "float": _FLOAT,
    "fraction": {**_FLOAT, "above-one": lambda: 1.5, "tiny": lambda: 1e-300},
    "bool": {"int": lambda: 1, "string": lambda: "yes", "none": lambda: None, "float": lambda: 1.0},
    "option": {
        "unknown": lambda: "median",
        "int": lambda: 1,
        "bool": lambda: True,
        "list": lambda: ["sum"],
        "none": lambda: None,
    },
    "generator": {"seed": lambda: 0, "string": lambda: "g", "numpy": lambda: np.random.default_rng(0)},
    "substrate": {
        "nan": lambda: NAN,
        "inf": lambda: INF,
        "huge": lambda: 1e308,
        "unknown": lambda: "noise",
        "none": lambda: None,
        "bool": lambda: True,
        "callable": lambda: lambda x: x * 0,
        "nan-tensor": lambda: torch.full((3, 16), NAN, dtype=torch.float64),
        "wrong-shape-tensor": lambda: torch.zeros(3, 15, dtype=torch.float64),
        "int-tensor": lambda: torch.zeros(3, 16, dtype=torch.long),
        "complex-tensor": lambda: torch.zeros(3, 16, dtype=torch.complex128),
        "requires-grad-tensor": lambda: torch.zeros(3, 16, dtype=torch.float64, requires_grad=True),
        "meta-tensor": lambda: torch.zeros(3, 16, dtype=torch.float64, device="meta"),
        "nan-substrate": _NaNSubstrate,
        "wrong-shape-substrate": _WrongShapeSubstrate,
        "raising-substrate": _RaisingSubstrate,
        "int-substrate": _IntSubstrate,
        "huge-blur": lambda: Blur(1e308),
        "huge-blur-radius": lambda: Blur(1.0, radius=2**64),
        "interpolate-other-axis": lambda: Interpolate("h"),
    },
    "similarity": {
        "unknown": lambda: "kendall",
        "none": lambda: None,
        "int": lambda: 3,
        "constant": lambda: lambda u, v: 1.0,
        "raises": lambda: lambda u, v: 1 / 0,
        "wrong-shape": lambda: lambda u, v: u,
        "nan": lambda: lambda u, v: torch.full((u.shape[0],), NAN),
    },
    "baseline": {
        "nan": lambda: NAN,
        "inf": lambda: INF,
        "huge": lambda: 1e308,
        "unknown": lambda: "median",
        "none": lambda: None,
        "bool": lambda: True,
        "nan-tensor": lambda: torch.full((3, 16), NAN, dtype=torch.float64),
        "wrong-shape-tensor": lambda: torch.zeros(3, 15, dtype=torch.float64),
        "int-tensor": lambda: torch.zeros(3, 16, dtype=torch.long),
        "complex-tensor": lambda: torch.zeros(3, 16, dtype=torch.complex128),
        "requires-grad-tensor": lambda: torch.zeros(3, 16, dtype=torch.float64, requires_grad=True),
        "callable-raises": lambda: lambda x: 1 / 0,
        "callable-list": lambda: lambda x: [0.0],
        "callable-nan": lambda: lambda x: torch.full_like(x, NAN),
    },
    "norm": {
        "zero": lambda: 0,
        "negative": lambda: -1,
        "nan": lambda: NAN,
        "-inf": lambda: -INF,
        "string": lambda: "l2",
        "none": lambda: None,
        "bool": lambda: True,
    },
    "layers": {
        "empty": lambda: [],
        "unknown": lambda: ["zz"],
        "string": lambda: "0",
        "ints": lambda: [0],
        "no-parameters": lambda: ["1"],
        "duplicates": lambda: ["0", "0"],
        "root": lambda: [""],
    },
    "perturbation": {
        "nan-tensor": lambda: torch.full((2, 2, 3, 16), NAN, dtype=torch.float64),
        "wrong-shape-tensor": lambda: torch.zeros(2, 2, 3, 15, dtype=torch.float64),
        "int-tensor": lambda: torch.zeros(2, 2, 3, 16, dtype=torch.long),
        "huge-tensor": lambda: torch.full((2, 2, 3, 16), 1e300, dtype=torch.float64),
        "requires-grad-tensor": lambda: torch.zeros(2, 2, 3, 16, dtype=torch.float64, requires_grad=True),
        "callable-raises": lambda: lambda x, k, g: 1 / 0,
        "callable-list": lambda: lambda x, k, g: [0.0],
        "string": lambda: "gaussian",
    },
    "cells": {
        **_COUNT,
        "wrong-length": lambda: [2, 2],
        "tuple-of-strings": lambda: ("2",),
        "empty": lambda: (),
    },
    "cell-index": {
        "out-of-range": lambda: [0, 5],
        "negative": lambda: [-1, 0],
        "float": lambda: [0.5, 1.0],
        "wrong-length": lambda: [0],
        "string": lambda: "ab",
        "nested": lambda: [[0], [1]],
        "huge": lambda: [0, 2**64],
        "none": lambda: None,
    },
    "metrics": {
        "none": lambda: None,
        "empty": lambda: [],
        "model": lambda: [cnn(1)],
        "class": lambda: [M.Sparseness],
        "string": lambda: "Sparseness",
    },
}


# ---------------------------------------------------------------------------- the grid
def _batch(obj: Any) -> int | None:
    if isinstance(obj, sl.Attribution):
        obj = obj.values
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return int(obj.shape[0]) if obj.ndim else None
    if isinstance(obj, (list, tuple)):
        return len(obj)
    return None


def _tensors(call: Call) -> list[torch.Tensor]:
    """The caller's tensors that the metric must leave alone."""
    out = []
    for obj in (call.x, call.attribution, call.mask, call.target, *call.params.values()):
        if isinstance(obj, sl.Attribution):
            obj = obj.values
        if isinstance(obj, torch.Tensor):
            out.append(obj)
    return out


def _snapshot(t: torch.Tensor) -> tuple:
    values = None if t.device.type == "meta" else t.detach().clone()
    return values, t.requires_grad, None if t.grad is None else t.grad.clone()


def _unchanged(t: torch.Tensor, before: tuple) -> None:
    values, requires_grad, grad = before
    if values is not None:
        assert torch.equal(t.detach(), values) or bool(
            ((t.detach() == values) | (t.detach().isnan() & values.isnan())).all()
        ), "the caller's tensor was changed"
    assert t.requires_grad == requires_grad, "requires_grad was changed"
    assert (t.grad is None) == (grad is None) and (grad is None or torch.equal(t.grad, grad)), (
        ".grad was changed"
    )


def _model_state(model: Any) -> Any:
    if isinstance(model, nn.Module):
        return model.training, {k: v.detach().clone() for k, v in model.state_dict().items()}
    return None


def _call(case: MetricCase, call: Call) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return case.run(call)


def _check_result(case: MetricCase, call: Call, out: Any, variation: str) -> None:
    """The result has the right type and shape and is finite (NaN only where documented)."""
    nan_ok = variation in case.nan
    if case.result == "table":
        assert isinstance(out, M.Table) and len(out) == len(call.params["metrics"])
        for row in out:
            assert (row["n"] == 0 and math.isnan(row["mean"])) or math.isfinite(row["mean"]), row
        return
    if case.result == "grid":
        assert isinstance(out, M.Grid)
        assert torch.isfinite(out.inputs).all() and out.inputs.shape[0] == out.labels.shape[0] >= 1
        batch = out.expand()
        assert batch.inputs.shape[0] == batch.targets.shape[0] == len(out) * out.n_cells
        return
    if case.result == "names":
        assert isinstance(out, list) and all(isinstance(n, str) for n in out)
        return
    assert isinstance(out, torch.Tensor), type(out)
    assert out.is_floating_point(), out.dtype
    if case.result == "per-curve":
        assert out.shape == call.attribution.shape[:-1]
    else:
        b = _batch(call.x if "x" in case.reads else call.attribution)
        assert out.ndim == (2 if case.result == "curve" else 1) and out.shape[0] == b, tuple(out.shape)
    finite = torch.isfinite(out)
    assert bool(finite.all()) or (nan_ok and not bool((~finite & ~out.isnan()).any())), (
        f"non-finite result {out} for {variation}"
    )


def _variation(case: MetricCase, axis: str, name: str) -> Call:
    call = default_call(case)
    if axis == "x":
        call.x = INPUTS[name]()
        x = call.x
        if isinstance(x, torch.Tensor) and x.ndim >= 2 and x.device.type != "meta":
            call.attribution = attribution_like(x)
            call.mask = mask_like(x)
        call.target = 1
    elif axis == "attribution":
        call.attribution = ATTRIBUTIONS[name](call.attribution)
    elif axis == "mask":
        call.mask = MASKS[name](call.mask)
    elif axis == "target":
        call.target = TARGETS[name]()
    elif axis == "model":
        call.model = MODELS[name]()
        call.explainer = sl.Gradient(call.model)  # may raise a SalienceError (a model that is not callable)
    elif axis == "explainer":
        call.explainer = EXPLAINERS[name](call.model)
    else:
        call.params[axis] = HYPERPARAMETERS[case.params[axis].kind][name]()
    return call


def _grid() -> list:
    axes = {
        "x": INPUTS,
        "attribution": ATTRIBUTIONS,
        "mask": MASKS,
        "target": TARGETS,
        "model": MODELS,
        "explainer": EXPLAINERS,
    }
    out = []
    for case in METRICS:
        for axis, values in axes.items():
            if axis in case.reads:
                out += [pytest.param(case, axis, name, id=f"{case.id}-{axis}:{name}") for name in values]
        for param, spec in case.params.items():
            out += [
                pytest.param(case, param, name, id=f"{case.id}-{param}:{name}")
                for name in HYPERPARAMETERS[spec.kind]
            ]
    return out


@pytest.mark.parametrize("case, axis, name", _grid())
def test_hostile_use(case: MetricCase, axis: str, name: str):
    try:
        call = _variation(case, axis, name)
    except sl.SalienceError:
        return  # refused while building the call (Gradient(42)): a typed error is the outcome
    tensors = _tensors(call)
    before = [_snapshot(t) for t in tensors]
    state = _model_state(call.model)
    try:
        out = _call(case, call)
    except sl.SalienceError:
        pass
    else:
        _check_result(case, call, out, f"{axis}:{name}")
    for t, b in zip(tensors, before, strict=True):
        _unchanged(t, b)
    after = _model_state(call.model)
    if state is not None:
        assert after[0] == state[0] and all(torch.equal(after[1][k], v) for k, v in state[1].items()), (
            "the model was changed"
        )


# ---------------------------------------------------------------------------- what the grid found
def _setup():
    model = cnn(1)
    x = signal()
    return model, x, attribution_like(x), mask_like(x), torch.tensor([1, 2])


def test_auc_refuses_what_is_not_a_finite_real_curve():
    with pytest.raises(
        sl.InputError,
        match=r"auc expects curve to be finite\. Got 1 NaN/inf value\(s\) in a tensor "
        r"of shape \(2, 3\)",
    ):
        M.auc(torch.tensor([[0.0, 1.0, NAN], [1.0, 0.5, 0.0]]))
    with pytest.raises(
        sl.InputError,
        match=r"auc expects curve to be a torch\.Tensor of shape \(\.\.\., K\).*Got "
        r"Attribution instead",
    ):
        M.auc(sl.Gradient(cnn(1)).explain(signal(), 1))
    with pytest.raises(sl.InputError, match=r"Got list instead"):
        M.auc([0.0, 1.0])
    with pytest.raises(sl.DTypeError, match=r"auc expects curve to have a real floating-point dtype"):
        M.auc(torch.ones(2, 3, dtype=torch.complex128))
    with pytest.raises(
        sl.NumericalError,
        match=r"auc: the result overflowed torch\.float64 \(NaN/inf\) for sample\(s\) \[1\]",
    ):
        M.auc(torch.tensor([[0.0, 1.0, 0.5], [1.7e308, 1.7e308, 1.7e308]], dtype=torch.float64))
    assert M.auc(torch.tensor([0.0, 1.0, 1.0])).item() == pytest.approx(0.75)  # one curve: a 0-d area


def test_meta_tensors_are_refused_as_holding_no_data():
    model, x, a, mask, k = _setup()
    with pytest.raises(
        sl.InputError,
        match=r"sparseness expects attribution to hold data; got a tensor on the "
        r"'meta' device \(shape \(2, 3, 16\)\)",
    ):
        M.sparseness(a.to("meta"))
    with pytest.raises(
        sl.InputError, match=r"relevance_mass expects the mask to hold data; got a tensor on the 'meta'"
    ):
        M.relevance_mass(a, mask.to("meta"))
    with pytest.raises(
        sl.ParameterError,
        match=r"'values' parameter of Reference must hold data; got a tensor on "
        r"the 'meta' device",
    ):
        M.deletion_curve(model, x, a, k, steps=2, substrate=torch.zeros(3, 16, device="meta"), progress=False)


def test_explainer_classes_and_raising_explainers_get_typed_errors():
    model, x, a, _, k = _setup()
    with pytest.raises(
        sl.ParameterError,
        match=r"The 'explainer' parameter of avg_sensitivity must be a salience "
        r"Explainer .*Got the class Saliency instead; pass an instance, e\.g\. "
        r"Saliency\(model\)",
    ):
        M.avg_sensitivity(sl.Saliency, x, k, progress=False)

    def broken(xs, t):
        raise KeyError("boom")

    with pytest.raises(
        sl.ModelCallError, match=r"random_logit: the explainer broken raised KeyError: 'boom'"
    ):
        M.random_logit(broken, x, k, n_classes=4)
    with pytest.raises(sl.ModelCallError, match=r"evaluate: the explainer broken raised KeyError"):
        M.evaluate([broken], [M.Sparseness()], model, (x, k))


@pytest.mark.parametrize("which", ["similarity", "perturbation", "baseline", "substrate"])
def test_raising_callables_become_parameter_errors(which):
    model, x, a, _, k = _setup()

    def boom(*args):
        return 1 / 0

    class Boom(Substrate):
        def __call__(self, rows, layout, mask=None):
            return 1 / 0

    run = {
        "similarity": lambda: M.faithfulness_correlation(
            model, x, a, k, n_runs=3, subset_size=4, similarity=boom, progress=False
        ),
        "perturbation": lambda: M.infidelity(model, x, a, k, perturbation=boom),
        "baseline": lambda: M.completeness_gap(model, x, a, k, baseline=boom),
        "substrate": lambda: M.deletion_curve(model, x, a, k, steps=2, substrate=Boom(), progress=False),
    }[which]
    with pytest.raises(sl.ParameterError, match=r"raised ZeroDivisionError: division by zero") as info:
        run()
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_substrate_outputs_are_checked():
    model, x, a, _, k = _setup()

    class NaNs(Substrate):
        needs_mask = True

        def __call__(self, rows, layout, mask=None):
            return torch.full_like(rows, NAN)

    class Short(Substrate):
        def __call__(self, rows, layout, mask=None):
            return rows[..., 1:]

    with pytest.raises(
        sl.ParameterError,
        match=r"deletion_curve: the substrate .*NaNs.* returned 48 NaN/inf value\(s\) "
        r"for finite rows of shape \(1, 3, 16\)",
    ):
        M.deletion_curve(model, x, a, k, steps=2, substrate=NaNs(), batch_size=1, progress=False)
    with pytest.raises(
        sl.ShapeError, match=r"must return a tensor of the input's shape \(2, 3, 16\)\. Got \(2, 3, 15\)"
    ):
        M.deletion_curve(model, x, a, k, steps=2, substrate=Short(), progress=False)


def test_counts_beyond_int64_are_refused_before_any_work():
    model, x, a, _, k = _setup()
    big = 2**64
    for run, name in [
        (lambda: M.deletion_curve(model, x, a, k, steps=big, progress=False), "steps"),
        (
            lambda: M.faithfulness_correlation(model, x, a, k, n_runs=big, subset_size=4, progress=False),
            "n_runs",
        ),
        (lambda: M.infidelity(model, x, a, k, n_perturbations=big), "n_perturbations"),
        (
            lambda: M.max_sensitivity(sl.Gradient(model), x, k, n_perturbations=big, progress=False),
            "n_perturbations",
        ),
        (lambda: M.RandomLogit(n_classes=big), "n_classes"),
    ]:
        with pytest.raises(
            sl.ParameterError,
            match=rf"The '{name}' parameter of \w+ must be an int in the range "
            rf"\[\d, 9\.22337e\+18\]\. Got {big}",
        ):
            run()
    with pytest.raises(
        sl.ParameterError,
        match=r"'steps' parameter of deletion_curve asks for 2 x 9223372036854775808 "
        r"rows, more than an int64 index",
    ):
        M.deletion_curve(model, x, a, k, steps=2**63 - 1, progress=False)
    # a RISE step of more than the number of units is one step that changes everything
    torch.testing.assert_close(
        M.deletion_curve(model, x, a, k, step=big, progress=False),
        M.deletion_curve(model, x, a, k, step=48, progress=False),
    )


def test_scale_invariant_metrics_do_not_overflow_or_underflow():
    """A power-of-two scale is exact, so these metrics must not change at all (before: sums
    overflowed to inf and gave NaN or 0, squares of subnormal values underflowed to 0)."""
    model, x, a, mask, k = _setup()
    for scale in (2.0**1010, 2.0**-540):
        b = a * scale
        for fn in (
            M.sparseness,
            M.complexity,
            lambda v: M.relevance_mass(v, mask),
            lambda v: M.energy_pointing_game(v, mask),
        ):
            assert torch.equal(fn(b), fn(a))
        grad = sl.Gradient(model)
        for sim in ("pearson", "cosine"):
            assert torch.equal(
                M.random_logit(grad, x, k, attribution=b, similarity=sim, generator=gen(1)),
                M.random_logit(grad, x, k, attribution=a, similarity=sim, generator=gen(1)),
            )
        same = [
            M.faithfulness_correlation(
                model, x, v, k, n_runs=5, subset_size=8, generator=gen(2), progress=False
            )
            for v in (a, b)
        ]
        torch.testing.assert_close(same[0], same[1], rtol=1e-12, atol=1e-12)
    cells = torch.stack([mask[0, 0], ~mask[0, 0]])
    torch.testing.assert_close(
        M.grid_pointing_game(a * 2.0**1015, cells, [0, 1]), M.grid_pointing_game(a, cells, [0, 1])
    )


def test_overflowing_results_are_numerical_errors():
    model, x, a, _, k = _setup()
    huge = a * 1e307
    with pytest.raises(
        sl.NumericalError,
        match=r"infidelity: the result overflowed torch\.float64 \(NaN/inf\) for "
        r"sample\(s\) \[0, 1\]",
    ):
        M.infidelity(model, x, huge, k, generator=gen())
    with pytest.raises(sl.NumericalError, match=r"max_sensitivity: the result overflowed"):
        M.max_sensitivity(sl.Gradient(model), x, k, attribution=huge, generator=gen(), progress=False)
    with pytest.raises(sl.NumericalError, match=r"completeness_gap: the result overflowed"):
        M.completeness_gap(model, x, torch.full_like(x, 1.7e308), k)


def test_grid_arguments_are_checked():
    x = signal()
    cells = torch.zeros(2, 16, dtype=torch.bool)
    cells[0, :8] = cells[1, 8:] = True
    a = attribution_like(x)
    with pytest.raises(
        sl.ParameterError,
        match=r"The 'cells' parameter of grid_pointing_game must hold one cell "
        r"index in \[0, 2\) per map, shape \(2,\)\. Got a tensor of dtype "
        r"torch\.float32",
    ):
        M.grid_pointing_game(a, cells, [0.5, 1.0])  # was truncated to [0, 1] silently
    with pytest.raises(sl.ParameterError, match=r"Got 1 index\(es\) outside, e\.g\. 5"):
        M.grid_pointing_game(a, cells, [0, 5])
    with pytest.raises(
        sl.ParameterError,
        match=r"The 'labels' parameter of make_grid must hold one integer class per "
        r"input.*Got 'ab' instead",
    ):
        M.make_grid(x, "ab")
    with pytest.raises(
        sl.ParameterError,
        match=r"The 'cells' parameter of make_grid must be None, an int or a "
        r"sequence of ints .*Got 2\.5 instead",
    ):
        M.make_grid(x, [0, 1], cells=2.5)
    with pytest.raises(sl.ParameterError, match=r"The 'batch_size' parameter of make_grid must be an int"):
        M.make_grid(x, [0, 1], cells=2, model=cnn(1), min_confidence=0.0, batch_size=0)
    with pytest.raises(
        sl.ShapeError, match=r"GridPointingGame expects attributions to have a batch axis and at least 3"
    ):
        M.GridPointingGame()(None, x, a[0, 0, 0], mask=cells[:, None])


def test_huge_kernels_are_refused_and_huge_radii_capped():
    with pytest.raises(
        sl.ParameterError,
        match=r"The 'sigma' parameter of RiseBlur must be a float in the range "
        r"\(0, 1e\+06\]\. Got 1e\+308",
    ):
        M.RiseBlur(1e308)
    with pytest.raises(
        sl.ParameterError,
        match=r"The kernel radius of Blur, ceil\(truncate \* sigma\) = ceil\(4 \* "
        r"1e\+308\), must be at most 4000000 samples",
    ):
        Blur(1e308)
    _, _, a, mask, _ = _setup()
    # a tolerance beyond the signal's extent covers every position, as the widest useful one does
    assert torch.equal(M.pointing_game(a, mask, tolerance=1e308), M.pointing_game(a, mask, tolerance=16.0))
    # the tolerance of conjugate gradients: at or above 1, no iteration is needed (and tol ** 2 is finite)
    x = signal()
    out = M.NoisyLinearImputation(noise=0.0, tol=1e308)(x, "b c t", mask.double())
    assert torch.equal(out, torch.where(mask, x, torch.zeros_like(x)))


@pytest.mark.parametrize("sigma, size", [(5.0, 11), (2.0, 7), (0.3, 3), (50.0, 5), (1.0, 1)])
def test_rise_blur_kernel_is_scipys_folded_gaussian(sigma, size):
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros(size)
    impulse[size // 2] = 1
    ref = ndimage.gaussian_filter1d(impulse, sigma)  # truncate 4, mode "reflect"
    np.testing.assert_allclose(M.RiseBlur(sigma, size=size).kernel().numpy(), ref, rtol=1e-12, atol=1e-15)
