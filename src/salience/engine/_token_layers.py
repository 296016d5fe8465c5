"""Token layers: telling a transformer's or RNN's (B, L, D) tokens x features apart from channels x
positions (the CAM family's layer checks, the default layer of a patch transformer).

A layer read as it is must hold a map over the input's positions; a token sequence read that way
would take its feature axis for time. These helpers find the modules that make token sequences,
the layers that pass them on, and the layer a CAM reads in a patch transformer by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import LayerError, current_caller
from ._hooks import own_thread

if TYPE_CHECKING:
    from .layers import ModuleCall

__all__ = [
    "lead_shape",
    "is_token_module",
    "makes_tokens",
    "token_shaped",
    "token_module",
    "TokenProbe",
    "token_layer_error",
    "patch_transformer",
    "last_attention_input",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def lead_shape(out: Any) -> tuple[int, ...] | None:
    """Shape of a module output, or of the tensor leading a tuple/list output."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return tuple(out.shape) if isinstance(out, torch.Tensor) else None


# modules that work on the last axis of a (B, L, D) token sequence: an output of theirs with the
# input's number of axes is tokens x features, not channels x positions
_TOKEN = (
    nn.Linear,
    nn.Bilinear,
    nn.LayerNorm,
    nn.Embedding,
    nn.MultiheadAttention,
    nn.RNNBase,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)


def is_token_module(module: nn.Module) -> bool:
    """A module that works on the last axis of a (B, L, D) sequence (Linear, token-wise
    LayerNorm, attention, RNN, transformer layers). A LayerNorm over several trailing axes
    (``LayerNorm([C, T])``) normalises channels x positions and is not one."""
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape) == 1
    return isinstance(module, _TOKEN)


def makes_tokens(module: nn.Module, shape: tuple[int, ...] | None, ndim: int) -> bool:
    """Whether a token module's output of ``shape`` is tokens x features with the input's
    ``ndim`` axes. A LayerNorm whose output's last axis is not the normalised one has normalised
    the channels of a channels-first map (timm's ``LayerNorm2d``, used throughout ConvNeXt): its
    output is channels x positions."""
    if shape is None or len(shape) != ndim or not is_token_module(module):
        return False
    return not (isinstance(module, nn.LayerNorm) and shape[-1] != module.normalized_shape[-1])


def token_shaped(calls: Sequence[ModuleCall], ndim: int) -> set[str]:
    """Names of the modules whose output is tokens x features rather than channels x positions.

    The sources are token modules whose output (or an RNN's output sequence) has the input's
    number of axes, a real (B, L, D) sequence (a Linear on pooled (B, C) features, as in a
    squeeze-excitation block, is not one). Token-shaped are the sources, the modules inside
    them, and every later module other than a convolution whose output has the shape of an
    earlier source's output: what passes the tokens along (an activation, dropout, a norm, a
    transformer block of one's own). A LayerNorm that normalised the channels of a
    channels-first map (timm's ``LayerNorm2d`` in ConvNeXt) is not a source (:func:`makes_tokens`).
    """
    sources = [c for c in calls if makes_tokens(c.module, c.lead_shape, ndim)]
    inside = tuple(c.name + "." for c in sources)
    token = set()
    for c in calls:
        if c.shape is None or isinstance(c.module, _CONV):
            continue
        if (
            c.name.startswith(inside)
            or any(s is c for s in sources)
            or any(s.lead_shape[1:] == c.shape[1:] for s in sources)  # type: ignore[index]
        ):
            token.add(c.name)
    return token


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

        def record(m: nn.Module, _i: Any, out: Any) -> None:
            shape = lead_shape(out)
            if shape is not None and makes_tokens(m, shape, self.ndim):
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

    def check(self, name: str) -> None:
        """Raise the token-layer error when the layer ``name`` returned a token sequence."""
        if any(self.hits):
            raise token_layer_error(
                name,
                "returns the shape of a token sequence made earlier by a transformer, attention "
                "or recurrent module: its output",
            )


def _is_attention(module: nn.Module) -> bool:
    """An attention module: ``nn.MultiheadAttention``, or a class named like one (timm's
    ``Attention``, Hugging Face's ``ViTAttention``/``...SelfAttention``)."""
    return isinstance(module, nn.MultiheadAttention) or type(module).__name__.endswith("Attention")


def patch_transformer(model: Any, n_spatial: int) -> bool:
    """Whether ``model`` names its patch embedding or declares prefix tokens (CLS, registers)."""
    from .tokens import find_patch_embedding, prefix_tokens  # (tokens.py imports this module)

    return (
        prefix_tokens(model) is not None
        or find_patch_embedding(model, n_spatial, names_only=True) is not None
    )


def last_attention_input(calls: Sequence[ModuleCall]) -> ModuleCall | None:
    """The (B, L, D) token layer that feeds a transformer's last attention module, or None.

    The last module finished before the last attention module (outside it) whose output is a
    token sequence: the last block's first norm (timm's ``blocks[-1].norm1``, torchvision's
    ``ln_1``, Hugging Face's ``layernorm_before``), or the previous block's output in a post-norm
    transformer. It is the Grad-CAM layer pytorch-grad-cam's guide recommends for ViTs: after the
    last attention only the CLS token reaches the head, so later layers give patch tokens no
    gradient.
    """
    attention = [c for c in calls if _is_attention(c.module)]
    if not attention:
        return None
    last = max(attention, key=lambda c: c.order)
    inside = last.name + "."
    for c in sorted(calls, key=lambda c: c.order, reverse=True):
        if c.order >= last.order or c.name.startswith(inside) or _is_attention(c.module):
            continue
        if c.shape is not None and len(c.shape) == 3 and is_token_module(c.module):
            return c
    return None


def token_layer_error(name: str, what: str) -> LayerError:
    """The error for a layer whose output is tokens x features, read without ``reshape``."""
    return LayerError(
        f"{current_caller()}: the layer {name!r} {what} is a sequence of tokens x features "
        "(B, L, D), not channels x positions; read as it is, its feature axis would be taken for "
        "time. Pass reshape='tokens' (a patch grid inferred from the input size), a callable "
        "mapping the output to (B, K, *spatial) (e.g. reshape=lambda a: a.transpose(1, 2) for "
        "(B, T, D) time x features; reshape=lambda a: a if the layer does work on channels x "
        "positions, e.g. a Linear over time), or pick a convolutional layer "
        "(salience.layers(model, x) lists them)."
    )
