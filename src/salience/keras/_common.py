"""What both bridges share: the stand-in modules named by Keras layers, the final-activation head,
reading a Keras model's graph, and moving tensors between torch and TensorFlow."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import LayerError

__all__ = ["KerasLayer", "stand_in", "channels_last", "head_of", "has_hooks", "to_first", "to_last"]

#: Keras activation names a final head may have, and the torch module that computes each
_HEADS = {"softmax": nn.Softmax, "log_softmax": nn.LogSoftmax, "sigmoid": nn.Sigmoid}


class KerasLayer(nn.Module):
    """The stand-in of one Keras layer in the module tree of a wrapped model.

    During a call the wrapper passes the layer's activations through it, channels-first
    (B, K, *positions), when (and only when) hooks are registered on it: a CAM's capture, a
    ``salience.layers`` dry run. Its forward is the identity; what a hook returns is what the
    rest of the Keras model receives (moved back to the layer's own layout).

    Attributes
    ----------
    keras_name : str
        The Keras layer's name.
    keras_type : str
        The Keras layer's class name.
    channels_last : bool
        Whether the layer's channel axis is its last (moved to axis 1 for the hooks).
    """

    def __init__(self, keras_name: str, keras_type: str, channels_last: bool) -> None:
        super().__init__()
        self.keras_name = keras_name
        self.keras_type = keras_type
        self.channels_last = channels_last

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a

    def extra_repr(self) -> str:
        return f"{self.keras_name!r}, {self.keras_type}, channels_last={self.channels_last}"


_CLASSES: dict[str, type[KerasLayer]] = {}


def stand_in(layer: Any, data_format: str | None) -> KerasLayer:
    """A :class:`KerasLayer` for ``layer`` whose class is named as the Keras class (so the table
    of ``salience.layers`` shows ``Conv1D``, ``ReLU``)."""
    kind = type(layer).__name__
    cls = _CLASSES.get(kind)
    if cls is None:
        cls = type(kind, (KerasLayer,), {"__doc__": f"Stand-in of a Keras {kind} layer."})
        _CLASSES[kind] = cls
    return cls(layer.name, kind, channels_last(layer, data_format))


def channels_last(layer: Any, data_format: str | None) -> bool:
    """Whether ``layer``'s outputs keep their channels on the last axis."""
    fmt = getattr(layer, "data_format", None)
    if fmt not in ("channels_last", "channels_first"):
        fmt = data_format
    if fmt is None:
        import keras  # type: ignore[import-not-found,import-untyped,unused-ignore]

        fmt = keras.config.image_data_format()
    return bool(fmt == "channels_last")


def to_first(a: torch.Tensor, last: bool) -> torch.Tensor:
    """(B, *positions, K) -> (B, K, *positions) for a channels-last activation of rank >= 3."""
    return a.movedim(-1, 1) if last and a.ndim >= 3 else a


def to_last(a: torch.Tensor, last: bool) -> torch.Tensor:
    """The inverse of :func:`to_first`."""
    return a.movedim(1, -1) if last and a.ndim >= 3 else a


def has_hooks(module: nn.Module) -> bool:
    """Whether anything watches ``module`` in this call (forward hooks or pre-hooks on it)."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def activation_name(layer: Any) -> str | None:
    """The name of the activation a Keras layer ends in (``"softmax"``), or None."""
    kind = type(layer).__name__
    if kind == "Softmax":
        axis = getattr(layer, "axis", -1)
        return "softmax" if axis in (-1, [-1], (-1,)) else None
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None)
    return name if name in _HEADS else None


def head_of(layer: Any) -> tuple[str, nn.Module] | None:
    """``(name, torch head)`` for a model's output layer that ends in a softmax, log-softmax or
    sigmoid the bridge can separate from the logits: an ``Activation``/``Softmax`` layer (the
    logits are its input) or a ``Dense`` layer with such an activation (the logits are
    ``input @ kernel + bias``). None otherwise."""
    name = activation_name(layer)
    if name is None:
        return None
    kind = type(layer).__name__
    if kind not in ("Activation", "Softmax", "Dense"):
        return None
    if kind == "Dense" and (
        getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None)
    ):
        return None
    head = _HEADS[name](dim=-1) if name != "sigmoid" else nn.Sigmoid()
    return f"{layer.name}.activation", head


def output_layer(model: Any) -> Any:
    """The layer that produces a functional or sequential model's (single) output, or None."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    for layer in reversed(list(getattr(model, "layers", []))):
        try:
            if layer.output is outputs[0]:
                return layer
        except (AttributeError, ValueError, RuntimeError):
            continue
    return None


def graph_layers(model: Any) -> list[Any]:
    """The top-level layers of a functional or sequential model (input layers left out)."""
    return [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]


def register(owner: nn.Module, name: str, module: nn.Module) -> None:
    """Add ``module`` under the Keras name ``name`` (which may clash with an attribute of
    ``nn.Module``, such as ``"input"`` or ``"forward"``: named modules are what salience reads)."""
    if not isinstance(name, str) or not name:
        raise LayerError(f"A Keras layer has no usable name ({name!r}); give every layer a name.")
    owner._modules[name] = module
