"""What the benchmark scripts share: the two CNNs, their inputs, and interleaved timing.

The scripts run by hand as ``python benchmarks/bench_<name>.py`` (the folder is then on
``sys.path``, so ``import _common`` works) and test salience from the checkout's ``src``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

THREADS = 2


def _cnn(dims: int, c_in: int, first: int, k: int, n_classes: int) -> nn.Module:
    """Three convs with ReLU and max pooling (after the first two), global average pool, linear."""
    conv, pool, gap = {1: (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
                       2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)}[dims]
    torch.manual_seed(0)
    return nn.Sequential(
        conv(c_in, first, k, padding=k // 2), nn.ReLU(), pool(2),
        conv(first, 32, k, padding=k // 2), nn.ReLU(), pool(2),
        conv(32, 32, k, padding=k // 2), nn.ReLU(),
        gap(1), nn.Flatten(), nn.Linear(32, n_classes),
    ).eval()


def cnn1d() -> nn.Module:
    """The 1-D benchmark CNN on (N, 8, T) signals, 5 classes (last conv: "6")."""
    return _cnn(1, 8, 32, 7, 5)


def cnn2d() -> nn.Module:
    """The 2-D benchmark CNN on (N, 3, H, W) images, 10 classes (last conv: "6")."""
    return _cnn(2, 3, 16, 3, 10)


def setup(kind: str, n: int) -> tuple[nn.Module, torch.Tensor]:
    """``kind`` "cnn1d"/"signals": (n, 8, 1000) signals; "cnn2d"/"images": (n, 3, 64, 64)."""
    g = torch.Generator().manual_seed(1)
    if kind in ("cnn1d", "signals"):
        return cnn1d(), torch.randn(n, 8, 1000, generator=g)
    return cnn2d(), torch.randn(n, 3, 64, 64, generator=g)


def time_all(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best time of each function over ``repeats`` rounds, the functions interleaved in each round
    (so that slow drifts of the machine affect them all alike); one warm-up call each first."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def timeit(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` calls after a warm-up."""
    return time_all({"fn": fn}, repeats)["fn"]
