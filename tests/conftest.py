"""Shared fixtures: float64 numerics, seeded generators, model call counting."""

from __future__ import annotations

import pathlib
import sys
import types

import pytest
import torch

# test the checkout's own sources (also from a git worktree), not whatever is installed
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))


def _importable_torchvision() -> None:
    """Let the peer libraries import torchvision beside a CPU-only torch build.

    grad-cam, zennit and quantus (parity tests only) import torchvision at import time, though
    we use none of its compiled operators (nms, roi_align, ...). PyPI's torchvision is built
    against CUDA torch; beside the CPU build of torch its extension does not load and
    ``import torchvision`` then raises ``RuntimeError: operator torchvision::nms does not
    exist`` while registering fake kernels for those operators. In that case only, we skip that
    registration module and import torchvision's pure-Python parts (models, transforms). With a
    matching torch/torchvision pair this does nothing.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # not installed: the tests that need it skip
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401


_importable_torchvision()

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


@pytest.fixture(autouse=True)
def _progress_bars_without_delay(monkeypatch):
    """Progress bars appear after a second of work; tests of the bars see them at once."""
    import salience._progress

    monkeypatch.setattr(salience._progress, "_DELAY_S", 0.0)
