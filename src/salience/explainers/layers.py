"""Which layers a layer method (the CAM family) can explain: ``layers(model, x)`` and the defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from .._engine import FINAL_ACTIVATIONS, ModuleCall, make_score
from .._validation import check_input
from ..errors import LayerError
from ..layout import Layout, LayoutLike
from ..targets import Output

__all__ = ["layers", "LayerInfo", "LayerTable"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class LayerInfo:
    """One submodule seen in a dry run.

    Attributes
    ----------
    name : str
        Dotted name, as accepted by ``layer=...``.
    type : str
        The module's class name.
    shape : tuple of int or None
        Shape of its output for the traced batch (None when the output is not a tensor).
    conv : bool
        A convolution (Conv1d/2d/3d or transposed).
    spatial : bool
        Its output has the input's number of axes and more than one position: a CAM can be
        computed there without ``reshape``.
    final_activation : bool
        A Softmax/LogSoftmax/Sigmoid whose output is the model's output.
    default : bool
        The layer the CAM explainers use when ``layer=None``.
    calls : int
        How many times it ran in the forward pass (a CAM uses the last call).
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    conv: bool
    spatial: bool
    final_activation: bool
    default: bool
    calls: int


class LayerTable(list):  # type: ignore[type-arg]
    """A list of :class:`LayerInfo` in execution order that prints as a table."""

    def names(self) -> list[str]:
        return [info.name for info in self]

    def __str__(self) -> str:
        rows = [("name", "type", "output shape", "marks")]
        for i in self:
            marks = [m for m, on in (("conv", i.conv), ("spatial", i.spatial), ("default", i.default),
                                     ("final activation", i.final_activation)) if on]
            if i.calls > 1:
                marks.append(f"called {i.calls}x")
            shape = "-" if i.shape is None else str(tuple(i.shape))
            rows.append((i.name, i.type, shape, ", ".join(marks)))
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(str(self))


def _is_spatial(call: ModuleCall, ndim: int, n_rows: int) -> bool:
    shape = call.shape
    return (
        shape is not None
        and len(shape) == ndim
        and shape[0] == n_rows
        and math.prod(shape[2:]) > 1
    )


def default_layer(calls: Sequence[ModuleCall], ndim: int, n_rows: int, owner: str) -> ModuleCall:
    """The last module (in execution order) whose output is spatial like the input."""
    spatial = [c for c in calls if _is_spatial(c, ndim, n_rows)]
    if not spatial:
        raise LayerError(
            f"{owner}: no layer of the model returns a spatial output with {ndim} axes like the "
            "input, so there is no default layer. Pass layer='name' (list the candidates with "
            "salience.layers(model, x)), and reshape=... for token outputs."
        )
    return spatial[-1]


def layers(model: nn.Module, x: torch.Tensor, *, layout: LayoutLike | None = None) -> LayerTable:
    """List the layers a CAM can explain, from one dry run of ``model`` on ``x``.

    Every submodule gets a forward hook for the duration of one forward pass without
    gradients (the hooks are removed afterwards, also if the model raises); the model is
    otherwise untouched.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (N, C, T), (N, C, H, W) or (N, C, T, H, W)
        An example batch (one sample is enough).
    layout : str or Layout, optional
        Axis names of ``x``; inferred from ``x.ndim`` when None.

    Returns
    -------
    LayerTable
        A list of :class:`LayerInfo` in execution order (printing it shows a table), marking
        convolutions, layers with a spatial output, the default CAM layer (the last spatial
        one) and a final Softmax/Sigmoid.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
    ...                       nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1)).eval()
    >>> print(layers(model, torch.randn(1, 2, 16)))
    name  type               output shape  marks
    0     Conv1d             (1, 4, 14)    conv, spatial
    1     ReLU               (1, 4, 14)    spatial, default
    2     AdaptiveAvgPool1d  (1, 4, 1)
    3     Flatten            (1, 4)
    4     Linear             (1, 3)
    5     Softmax            (1, 3)        final activation
    """
    x = check_input(x, "layers")
    lay = Layout.infer(x, layout)
    if not isinstance(model, nn.Module):
        raise LayerError(f"layers() needs an nn.Module model. Got {type(model).__name__}.")
    calls = make_score(model, x.detach(), Output(), batch_size=None, layout=lay, owner="layers").trace()
    n = x.shape[0]
    spatial = [c for c in calls if _is_spatial(c, x.ndim, n)]
    default = spatial[-1].name if spatial else None
    table = LayerTable()
    for c in calls:
        table.append(
            LayerInfo(
                name=c.name,
                type=type(c.module).__name__,
                shape=c.shape,
                conv=isinstance(c.module, _CONV),
                spatial=_is_spatial(c, x.ndim, n),
                final_activation=c.is_output and isinstance(c.module, FINAL_ACTIVATIONS),
                default=c.name == default,
                calls=c.calls,
            )
        )
    return table
