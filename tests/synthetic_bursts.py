"""A synthetic task where each class has its own evidence: a class-specific frequency burst.

Class k is a Hann-windowed sine burst of frequency ``FREQS[k]`` (cycles per sample) at a random
position and phase, on Gaussian noise. A tiny 1-D CNN learns it in a few seconds; composing
inputs of different classes along time (a time grid) puts each class's evidence in its own cell.
Used by tests/metrics/test_grid_pointing.py and benchmarks/bench_classrel.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FREQS = (0.03, 0.08, 0.15, 0.3)
LENGTH = 96
BURST = 32


def burst_data(
    n_per_class: int, generator: torch.Generator, *, length: int = LENGTH, noise: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals (N, 1, length) and labels (N,), classes interleaved 0, 1, 2, 3, 0, ..."""
    k = len(FREQS)
    n = n_per_class * k
    y = torch.arange(n) % k
    t = torch.arange(BURST, dtype=torch.float64)
    window = torch.hann_window(BURST, periodic=False, dtype=torch.float64)
    x = noise * torch.randn(n, 1, length, generator=generator, dtype=torch.float64)
    start = torch.randint(0, length - BURST + 1, (n,), generator=generator)
    phase = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    for i in range(n):
        f = FREQS[int(y[i])]
        x[i, 0, start[i] : start[i] + BURST] += window * torch.sin(2 * math.pi * f * t + phase[i])
    return x.float(), y


def train_cnn(seed: int = 0, steps: int = 60, n_per_class: int = 32) -> tuple[nn.Module, float]:
    """A 1-D CNN (conv-ReLU-conv-ReLU-global average pool-linear) and its held-out accuracy.

    The global RNG is used only inside a forked, seeded state (left as it was)."""
    gen = torch.Generator().manual_seed(seed)
    x, y = burst_data(n_per_class, gen)
    x_test, y_test = burst_data(16, gen)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv1d(1, 16, 9, padding=4),
            nn.ReLU(),
            nn.Conv1d(16, 16, 9, padding=4),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(16, len(FREQS)),
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    with torch.no_grad():
        acc = float((model(x_test).argmax(1) == y_test).float().mean())
    model.requires_grad_(True)
    return model, acc
