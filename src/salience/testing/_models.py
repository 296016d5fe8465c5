"""The kit's models and inputs: tiny float64 CNNs for signals, images and video, seeded inputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["KINDS", "CONV_LAYER", "toy_model", "toy_input", "training_model"]

#: input shape (without the batch axis) of each kind of data the explainer checks use
KINDS: dict[str, tuple[int, ...]] = {
    "signal": (3, 20),
    "image": (3, 8, 8),
    "video": (3, 4, 6, 6),
}

#: name of the last convolution of :func:`toy_model` (for methods that need a layer: CAMs)
CONV_LAYER = "2"

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _dims(kind: str | int) -> int:
    if isinstance(kind, int) and not isinstance(kind, bool) and kind in _CONV:
        return kind
    if isinstance(kind, str) and kind in KINDS:
        return len(KINDS[kind]) - 1
    raise ValueError(f"kind must be one of {sorted(KINDS)} (or 1, 2, 3 spatial dims); got {kind!r}.")


def toy_model(
    kind: str | int = "signal",
    *,
    in_channels: int = 3,
    n_classes: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> nn.Sequential:
    """The small CNN the explainer checks explain, in eval mode.

    ``conv -> ReLU -> conv -> ReLU -> global average pool -> flatten -> linear`` with 1, 2 or 3
    spatial dimensions; the module named ``"2"`` (:data:`CONV_LAYER`) is the last convolution.
    The weights are drawn from a generator seeded with ``seed``; the global RNG is left as it was.

    Parameters
    ----------
    kind : {"signal", "image", "video"} or int
        The kind of input (or the number of spatial dimensions).
    in_channels : int, default 3
    n_classes : int, default 4
    seed : int, default 0
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional

    Returns
    -------
    nn.Sequential
        Maps (N, in_channels, *spatial) to (N, n_classes).
    """
    dims = _dims(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            _CONV[dims](in_channels, 6, 3, padding=1),
            nn.ReLU(),
            _CONV[dims](6, 8, 3, padding=1),
            nn.ReLU(),
            _POOL[dims](1),
            nn.Flatten(),
            nn.Linear(8, n_classes),
        )
    return model.to(dtype=dtype, device=device).eval()


def training_model(kind: str | int = "signal", **kwargs: Any) -> nn.Sequential:
    """:func:`toy_model` with BatchNorm and Dropout after the first convolution, in training mode.

    Module ``"2"`` is still the last convolution. Takes the keyword arguments of
    :func:`toy_model`.
    """
    model = toy_model(kind, **kwargs)
    first = next(model.parameters())
    dtype, device = first.dtype, first.device
    norm = _NORM[_dims(kind)](6).to(dtype=dtype, device=device)
    model[1] = nn.Sequential(norm, nn.ReLU(), nn.Dropout(0.3))
    return model.train()


def toy_input(
    kind: str = "signal",
    batch: int = 2,
    *,
    seed: int = 1,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A seeded standard-normal batch of shape ``(batch, *KINDS[kind])`` for :func:`toy_model`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}; got {kind!r}.")
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *KINDS[kind]), generator=g, dtype=dtype).to(device)
