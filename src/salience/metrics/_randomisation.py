"""Model-parameter randomisation helpers: the layers in cascading order, their re-initialisation
on a copy, and an explainer re-bound to that copy (used by
:func:`~salience.metrics.model_randomisation`)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ParameterError, current_caller

__all__ = ["randomisation_layers"]


def _check_layers(layers: Any) -> list[str] | None:
    if layers is None:
        return None
    if not isinstance(layers, (list, tuple)) or not layers or not all(isinstance(n, str) for n in layers):
        raise ParameterError(
            f"The 'layers' parameter of {current_caller()} must be None (every layer with parameters) or a "
            f"non-empty list of module names such as ['2', '0']. Got {layers!r} instead."
        )
    return list(layers)


def randomisation_layers(model: nn.Module) -> list[str]:
    """Names of the modules holding parameters, from the output side to the input side.

    This is the cascading order of Adebayo et al. (the last module in registration order first).
    """
    if not isinstance(model, nn.Module):
        raise ParameterError(f"Model randomisation needs an nn.Module. Got {type(model).__name__} instead.")
    names = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Draw new parameters for ``module`` (in place, on a copy) without touching the global RNG.

    Modules with ``reset_parameters`` use their own default initialisation, run under a forked
    RNG seeded from ``generator``; other parameters get ``N(0, std(p)^2)`` draws.
    """
    params = list(module.parameters(recurse=False))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.no_grad():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                reset()
            return
        g = torch.Generator().manual_seed(seed)
        for p in params:
            std = float(p.std()) if p.numel() > 1 else 1.0
            p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) * std).to(p))


def _with_model(explainer: Any, original: nn.Module, new: nn.Module) -> Any:
    """A shallow copy of ``explainer`` (and of the explainers it wraps) bound to ``new``.

    Attributes that are modules of ``original`` (a CAM layer) are swapped for the module of the
    same name in ``new``.
    """
    names = {id(m): n for n, m in original.named_modules()}
    new_mods = dict(new.named_modules())
    out = copy.copy(explainer)
    for key, value in list(vars(out).items()):
        if value is original:
            setattr(out, key, new)
        elif isinstance(value, nn.Module) and id(value) in names:
            setattr(out, key, new_mods[names[id(value)]])
        elif key == "explainer" and hasattr(value, "model"):
            setattr(out, key, _with_model(value, original, new))
    return out
