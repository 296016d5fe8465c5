"""Which layers a layer method (the CAM family) can explain: ``layers(model, x)`` and the defaults."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .._engine import FINAL_ACTIVATIONS, ModuleCall, lead_shape, make_score, own_thread
from .._validation import check_input
from ..errors import LayerError
from ..layout import Layout, LayoutLike
from ..targets import Output

__all__ = ["layers", "LayerInfo", "LayerTable"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# modules that work on the last axis of a (B, L, D) token sequence: an output of theirs with the
# input's number of axes is tokens x features, not channels x positions
_TOKEN = (
    nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.MultiheadAttention, nn.RNNBase,
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
    nn.TransformerDecoder, nn.Transformer,
)
# adaptive pooling only resamples the layer before it (VGG's 7x7 avgpool blows a 2x2 map up)
_RESAMPLE = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)


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
        Its output has the input's number of axes and more than one position, and the module
        does not work on token sequences (Linear, LayerNorm, attention, RNN): a CAM can be
        computed there without ``reshape``.
    final_activation : bool
        A Softmax/LogSoftmax/Sigmoid whose output is the model's output.
    default : bool
        The layer the CAM explainers use when ``layer=None``: the last spatial one before any
        token module, other than adaptive pooling.
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


def is_token_module(module: nn.Module) -> bool:
    """A module that works on the last axis of a (B, L, D) sequence (Linear, token-wise
    LayerNorm, attention, RNN, transformer layers). A LayerNorm over several trailing axes
    (``LayerNorm([C, T])``) normalises channels x positions and is not one."""
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape) == 1
    return isinstance(module, _TOKEN)


def _token_shaped(calls: Sequence[ModuleCall], ndim: int) -> set[str]:
    """Names of the modules whose output is tokens x features rather than channels x positions.

    The sources are token modules whose output (or an RNN's output sequence) has the input's
    number of axes, a real (B, L, D) sequence (a Linear on pooled (B, C) features, as in a
    squeeze-excitation block, is not one). Token-shaped are the sources, the modules inside
    them, and every later module other than a convolution whose output has the shape of an
    earlier source's output: what passes the tokens along (an activation, dropout, a norm, a
    transformer block of one's own).
    """
    sources = [
        c for c in calls
        if is_token_module(c.module) and c.lead_shape is not None and len(c.lead_shape) == ndim
    ]
    inside = tuple(c.name + "." for c in sources)
    token = set()
    for c in calls:
        if c.shape is None or isinstance(c.module, _CONV):
            continue
        if (
            c.name.startswith(inside)
            or any(s is c for s in sources)
            or any(s.order <= c.order and s.lead_shape[1:] == c.shape[1:] for s in sources)  # type: ignore[index]
        ):
            token.add(c.name)
    return token


def _spatial(calls: Sequence[ModuleCall], ndim: int, n_rows: int) -> list[ModuleCall]:
    """Modules whose output has the input's number of axes and more than one position, other
    than those whose output is tokens x features (see :func:`_token_shaped`)."""
    token = _token_shaped(calls, ndim)
    return [
        c for c in calls
        if c.shape is not None
        and len(c.shape) == ndim
        and c.shape[0] == n_rows
        and math.prod(c.shape[2:]) > 1
        and c.name not in token
    ]


def _default_candidates(
    calls: Sequence[ModuleCall], spatial: Sequence[ModuleCall], ndim: int
) -> list[ModuleCall]:
    """Spatial layers a CAM may pick by itself: those finished before the first module that
    makes a token sequence (a transformer or recurrent part must be named, with ``reshape=``),
    adaptive pooling left out."""
    first_token = min(
        (c.order for c in calls
         if is_token_module(c.module) and c.lead_shape is not None and len(c.lead_shape) == ndim),
        default=math.inf,
    )
    return [c for c in spatial if c.order < first_token and not isinstance(c.module, _RESAMPLE)]


def token_module(model: nn.Module, name: str) -> nn.Module | None:
    """The token module (Linear, token-wise LayerNorm, attention, RNN, transformer layer) that
    is the layer ``name`` of ``model`` or contains it, or None: such a layer's output is
    (B, L, D) tokens x features (or time x hidden units), not channels x positions."""
    for prefix, module in model.named_modules():
        if is_token_module(module) and (name == prefix or name.startswith(prefix + ".") or prefix == ""):
            return module
    return None


class TokenProbe:
    """Pass context: whether the output of ``layer`` has the shape of a (B, L, D) token sequence
    made earlier in the same forward pass by a token module (so that a GELU, dropout or custom
    block after a transformer or RNN is recognised). ``hits`` gets one bool per call of the
    layer. Hooks exist only inside the pass and act only in the calling thread."""

    def __init__(self, layer: nn.Module, ndim: int) -> None:
        self.layer = layer
        self.ndim = ndim
        self.hits: list[bool] = []

    @contextmanager
    def __call__(self, model: Any) -> Iterator[None]:
        shapes: set[tuple[int, ...]] = set()

        def reset(*_: Any) -> None:
            shapes.clear()

        def record(_m: nn.Module, _i: Any, out: Any) -> None:
            shape = lead_shape(out)
            if shape is not None and len(shape) == self.ndim:
                shapes.add(shape[1:])

        def at_layer(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                self.hits.append(tuple(out.shape[1:]) in shapes)

        handles = []
        try:
            if isinstance(model, nn.Module):
                handles.append(model.register_forward_pre_hook(own_thread(reset)))
                for m in model.modules():
                    if m is not self.layer and is_token_module(m):
                        handles.append(m.register_forward_hook(own_thread(record)))
            handles.append(self.layer.register_forward_hook(own_thread(at_layer)))
            yield
        finally:
            for h in handles:
                h.remove()


def default_layer(calls: Sequence[ModuleCall], ndim: int, n_rows: int, owner: str) -> ModuleCall:
    """The last module (in execution order) whose output is spatial like the input, before any
    token module (Linear on sequences, attention, LayerNorm, RNN) and other than adaptive pooling."""
    candidates = _default_candidates(calls, _spatial(calls, ndim, n_rows), ndim)
    if not candidates:
        raise LayerError(
            f"{owner}: no layer of the model returns a spatial output with {ndim} axes like the "
            "input before its first token or recurrent module, so there is no default layer. Pass "
            "layer='name' (list the candidates with salience.layers(model, x)), and reshape=... "
            "for token outputs."
        )
    return candidates[-1]


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
    spatial_calls = _spatial(calls, x.ndim, n)
    candidates = _default_candidates(calls, spatial_calls, x.ndim)
    default = candidates[-1].name if candidates else None
    spatial = {c.name for c in spatial_calls}
    table = LayerTable()
    for c in calls:
        table.append(
            LayerInfo(
                name=c.name,
                type=type(c.module).__name__,
                shape=c.shape,
                conv=isinstance(c.module, _CONV),
                spatial=c.name in spatial,
                final_activation=c.is_output and isinstance(c.module, FINAL_ACTIVATIONS),
                default=c.name == default,
                calls=c.calls,
            )
        )
    return table
