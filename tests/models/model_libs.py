"""Shared by the tests on real model libraries (timm, torchvision, transformers, braindecode):
importing them without ever breaking collection, and the direct implementations the explainers
are compared with.

PyPI's torchvision does not load beside the CPU build of torch (``RuntimeError: operator
torchvision::nms does not exist``; tests/conftest.py works around it for the pure-Python parts),
transformers fails when a broken torchvision is installed, and braindecode needs torchaudio,
whose PyPI build needs a CUDA build of torch. :func:`need` turns *any* exception raised while
importing a library into a module-level skip that says what went wrong, so a missing or broken
library skips its tests and never fails collection. .ci/run runs these tests twice: in the main
environment (transformers only) and in a second one where every library imports.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

# weights are always built locally: never reach for the Hugging Face hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Logits = Callable[[torch.Tensor], torch.Tensor]


def need(name: str) -> ModuleType:
    """Import ``name`` or skip the calling test module, whatever the import raises."""
    try:
        return importlib.import_module(name)
    except Exception as error:  # any failure of a third-party import is a skip, not an error
        text = str(error).strip()
        first = text.splitlines()[0][:200] if text else ""
        pytest.skip(
            f"{name} cannot be imported here ({type(error).__name__}: {first}); "
            "these tests run in the models environment of .ci/run",
            allow_module_level=True,
        )


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image(n: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=generator(seed), dtype=torch.float64)


def direct_gradient(f: Logits, x: torch.Tensor, target: int, **kwargs) -> torch.Tensor:
    """d f(x)[:, target] / dx, with autograd."""
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(f(x, **kwargs)[:, target].sum(), x)[0]


def direct_ig(f: Logits, x: torch.Tensor, target: int, n_steps: int, **kwargs) -> torch.Tensor:
    """Integrated gradients from a zero baseline, trapezoid rule on ``n_steps`` nodes."""
    total = torch.zeros_like(x)
    for k in range(n_steps):
        w = (0.5 if k in (0, n_steps - 1) else 1.0) / (n_steps - 1)
        total += w * direct_gradient(f, x * (k / (n_steps - 1)), target, **kwargs)
    return x * total


def direct_gradcam(
    f: Logits,
    x: torch.Tensor,
    target: int,
    layer: nn.Module,
    read: Callable[[torch.Tensor], torch.Tensor] = lambda a: a,
    relu: bool = True,
    **kwargs,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017): ``relu(sum_k mean(dS/dA_k) A_k)`` on the layer's
    output read as (B, K, *grid) (without the ReLU when ``relu=False``), upsampled to the input (bilinear/linear, align_corners=False)."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        score = f(x.detach(), **kwargs)[:, target].sum()
    finally:
        handle.remove()
    a = seen[-1]
    g = torch.autograd.grad(score, a)[0]
    a, g = read(a).detach(), read(g)
    axes = tuple(range(2, a.ndim))
    cam = (g.mean(dim=axes, keepdim=True) * a).sum(1, keepdim=True)
    cam = cam.clamp_min(0) if relu else cam
    mode = {1: "linear", 2: "bilinear"}[len(axes)]
    return F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=False)


def assert_same(got: torch.Tensor, want: torch.Tensor, msg: str = "") -> None:
    """Equal up to float64 rounding, relative to the size of ``want`` (not all zero), so that a
    comparison of small gradients is as strict as one of large ones."""
    scale = want.abs().amax().item()
    assert scale > 0, f"nothing to compare: the reference is all zero {msg}"
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9 * scale, msg=msg or None)
