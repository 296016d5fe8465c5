"""Shared synthetic data and tiny models for the dataset tests (float64, fast)."""

from __future__ import annotations

import os
import signal

import numpy as np
import torch
from torch import nn

N, C, T = 2000, 2, 16


def tiny_model(seed: int = 0) -> nn.Module:
    """A small float64 classifier of (B, 2, 16) signals into 3 classes (built from torch layers
    only, so Ray workers unpickle it without importing the tests)."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv1d(C, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * T, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.double().eval()


def synthetic(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, C, T))
    y = (np.arange(n) % 3).astype(np.int64)
    x[:, 0, :4] += y[:, None]  # the class shows in the first samples of channel 0
    return x, y


class Items(torch.utils.data.Dataset):
    """Map-style dataset of (x, label) items; counts reads; raises once at ``fail_at``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, fail_at: int | None = None) -> None:
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.fail_at = fail_at
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if self.fail_at is not None and i == self.fail_at:
            self.fail_at = None
            raise RuntimeError("injected failure")
        self.reads.append(i)
        return self.x[i], self.y[i]


class KillOnce(Items):
    """Kills its own process (SIGKILL) the first time it reads ``kill_at`` (a marker file makes
    it once across the restarted actor)."""

    def __init__(self, x, y, kill_at, marker):
        super().__init__(x, y)
        self.kill_at, self.marker = kill_at, marker

    def __getitem__(self, i):
        if i == self.kill_at and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)
