"""Shared fixtures: float64 numerics, seeded generators, model call counting."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

# test the checkout's own sources (also from a git worktree), not whatever is installed
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

# tiny tensors: one thread is fastest, and immune to oversubscribed CPUs
torch.set_num_threads(1)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0xDEADBEEF)


@pytest.fixture(autouse=True)
def _seeded_global_rng():
    """Tests that build models draw from a seeded, forked global RNG (restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
