"""Shared fixtures: float64 numerics, seeded generators, model call counting."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

# test the checkout's own sources (also from a git worktree), not whatever is installed
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0xDEADBEEF)


@pytest.fixture(autouse=True)
def _no_global_rng_change():
    """Every test checks that the library left the global RNG untouched."""
    state = torch.random.get_rng_state()
    yield
    # tests themselves may draw from the global RNG only through explicit generators
    assert torch.equal(state, torch.random.get_rng_state()), "global torch RNG state changed"
