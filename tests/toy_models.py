"""Small models for tests: analytic models with closed-form attributions and tiny CNNs."""

from __future__ import annotations

import math

import torch
from torch import nn


class Linear(nn.Module):
    """f(x) = sum(W[k] * x) + b[k] for each output k; W has the input's shape (without batch)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, *S)
        self.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias


class Separable(nn.Module):
    """PAIR-style separable model on 3 features: f(x) = 5 x0 + x1^2 + sin(x2), input (B, 3, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return (5 * x[:, 0] + x[:, 1] ** 2 + torch.sin(x[:, 2]))[:, None]


class Counting(nn.Module):
    """Wraps a model and counts forward calls (PAIR-style call-count tests)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.rows: list[int] = []
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows.append(int(x.shape[0]))
        return self.model(x)


def cnn(
    dims: int, in_channels: int = 3, n_classes: int = 4, seed: int = 0, dtype=torch.float64
) -> nn.Sequential:
    """conv -> ReLU -> conv -> ReLU -> global average pool -> linear, for 1, 2 or 3 spatial dims."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = nn.Sequential(
        conv(in_channels, 6, 3, padding=1),
        nn.ReLU(),
        conv(6, 8, 3, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(8, n_classes),
    )
    torch.random.set_rng_state(state)
    return model.to(dtype).eval()


SHAPES = {
    "signal": (3, 20),
    "image": (3, 8, 8),
    "video": (3, 4, 6, 6),
}
DIMS = {"signal": 1, "image": 2, "video": 3}


def make_input(kind: str, batch: int = 2, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *SHAPES[kind]), generator=g, dtype=dtype)


def n_rows(shape) -> int:
    return math.prod(shape)


def bn_cnn(
    dims: int, *, bias: bool = True, batchnorm: bool = True, bn_eps: float = 1e-5, seed: int = 0
) -> nn.Sequential:
    """conv-[BN]-ReLU-conv-[BN]-ReLU(inplace)-GAP-Linear(8->4), float64, eval; random BN statistics."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]

    def build():
        layers = [conv(3, 6, 3, padding=1, bias=bias)]
        if batchnorm:
            layers.append(bn(6, eps=bn_eps))
        layers += [nn.ReLU(), conv(6, 8, 3, padding=1, bias=bias)]
        if batchnorm:
            layers.append(bn(8, eps=bn_eps))
        layers += [nn.ReLU(inplace=True), pool(1), nn.Flatten(), nn.Linear(8, 4, bias=bias)]
        m = nn.Sequential(*layers)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.normal_()
                mod.bias.data.normal_()
        return m

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build()
    finally:
        torch.random.set_rng_state(state)
    return model.double().eval()
