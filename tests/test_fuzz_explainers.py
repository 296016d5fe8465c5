"""Hostile use of every registered explainer, as a parametrised grid (#13).

For every explainer in ``tests/registry.py`` and every hostile input, target or model below, the
outcome is either an ``Attribution`` with finite values of the right batch size or a
``salience.SalienceError`` (never a raw exception from torch, numpy or Python), and the caller's
input is never changed (values, ``requires_grad`` and ``.grad``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from registry import EXPLAINERS, Case
from toy_models import cnn, make_input


def _signal(batch: int = 2, t: int = 20, c: int = 3, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(batch, c, t, generator=g, dtype=dtype)


def _nan() -> torch.Tensor:
    x = _signal()
    x[0, 1, 3] = float("nan")
    return x


def _inf() -> torch.Tensor:
    x = _signal()
    x[1, 0, 0] = float("inf")
    return x


def _leaf() -> torch.Tensor:
    return _signal().requires_grad_(True)


def _strided() -> torch.Tensor:
    return _signal(t=40)[..., ::2]


def _expanded() -> torch.Tensor:
    return _signal(batch=1).expand(3, 3, 20)


def _inference() -> torch.Tensor:
    with torch.inference_mode():
        return _signal()


#: hostile inputs x (the model is toy_models.cnn(1): 3 channels, 4 classes, float64)
INPUTS: dict[str, Callable[[], Any]] = {
    "list": lambda: _signal().tolist(),
    "numpy": lambda: _signal().numpy(),
    "int": lambda: torch.ones(2, 3, 20, dtype=torch.int64),
    "bool": lambda: torch.ones(2, 3, 20, dtype=torch.bool),
    "complex": lambda: torch.ones(2, 3, 20, dtype=torch.complex128),
    "1d": lambda: torch.randn(20, dtype=torch.float64),
    "scalar": lambda: torch.tensor(1.0, dtype=torch.float64),
    "empty-batch": lambda: torch.zeros(0, 3, 20, dtype=torch.float64),
    "zero-length": lambda: torch.zeros(2, 3, 0, dtype=torch.float64),
    "one-step": lambda: _signal(t=1),
    "two-steps": lambda: _signal(t=2),
    "wrong-channels": lambda: _signal(c=5),
    "nan": _nan,
    "inf": _inf,
    "float32": lambda: _signal(dtype=torch.float32),
    "requires-grad": _leaf,
    "strided": _strided,
    "expanded": _expanded,
    "inference": _inference,
    "meta": lambda: torch.empty(2, 3, 20, dtype=torch.float64, device="meta"),
    "huge-values": lambda: _signal() * 1e300,
}

#: hostile targets (for a valid input)
TARGETS: dict[str, Any] = {
    "out-of-range": 4,
    "negative": -1,
    "float": 1.5,
    "string": "cat",
    "bool": True,
    "wrong-length-list": [0, 1, 2],
    "nested-list": [[0], [1]],
    "float-tensor": torch.tensor([0.0, 1.0]),
    "2d-tensor": torch.tensor([[0, 1]]),
    "numpy-int": np.int64(2),
    "numpy-array": np.array([1, 3]),
    "callable-wrong-shape": lambda out: out,
    "callable-raises": lambda out: 1 / 0,
    "none": None,
}


class _Tuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x), x


class _NaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * float("nan")


class _WrongBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:1]


class _Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyError("boom")


class _Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).sum()


class _Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).detach()


class _Integer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) * 10).long()


class _Complex(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.complex(out, out)


class _InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2.0)
        return self.net(x)


class _Float32(nn.Module):
    """float32 weights given float64 input: a dtype mismatch inside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _OneOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1, n_classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ThreeD(nn.Module):
    """Output (B, 4, 5): per-step classes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = cnn(1, n_classes=20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1, 4, 5)


#: hostile models (for a valid input and target=1). For the wrapper classes the CAM cases find
#: their layer by module through ``.model``? No: they look for ``.model``; these keep ``net``,
#: so a CAM case names layer "2", which these models lack, and must say so with a LayerError.
MODELS: dict[str, Callable[[], Any]] = {
    "tuple": _Tuple,
    "nan": _NaN,
    "wrong-batch": _WrongBatch,
    "raises": _Raises,
    "scalar": _Scalar,
    "detached": _Detached,
    "integer": _Integer,
    "complex": _Complex,
    "in-place": _InPlace,
    "float32-weights": _Float32,
    "one-output": _OneOutput,
    "three-d": _ThreeD,
    "not-callable": lambda: 42,
    "lambda": lambda: lambda x: x.flatten(1)[:, :4] * 2,
}

CASES = [c for c in EXPLAINERS if "signal" in c.kinds]


def _check(case: Case, model: Any, x: Any, target: Any) -> sl.Attribution | sl.SalienceError:
    """Run one hostile call, check the input, and return the outcome (a result or the refusal)."""
    x_before = x.clone() if isinstance(x, torch.Tensor) and x.device.type != "meta" else None
    rg = x.requires_grad if isinstance(x, torch.Tensor) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = case.make(model)
            attr = explainer.explain(x, target=target)
    except sl.SalienceError as err:
        outcome: sl.Attribution | sl.SalienceError = err
    else:
        outcome = attr
        assert isinstance(attr, sl.Attribution)
        assert attr.values.shape[0] == x.shape[0]
        assert torch.isfinite(attr.values).all(), "non-finite attributions"
    if x_before is not None:
        assert torch.equal(x, x_before) or (x.isnan() == x_before.isnan()).all(), "the input was changed"
        assert x.requires_grad == rg and x.grad is None
    return outcome


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_inputs(case: Case, name: str):
    assert isinstance(_check(case, cnn(1), INPUTS[name](), 1), (sl.Attribution, sl.SalienceError))


@pytest.mark.parametrize("name", list(TARGETS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_targets(case: Case, name: str):
    assert isinstance(
        _check(case, cnn(1), make_input("signal"), TARGETS[name]), (sl.Attribution, sl.SalienceError)
    )


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_models(case: Case, name: str):
    assert isinstance(
        _check(case, MODELS[name](), make_input("signal"), 1), (sl.Attribution, sl.SalienceError)
    )
