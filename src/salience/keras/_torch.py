"""Keras 3 models of the torch backend: already ``nn.Module``s; the wrapper names their layers by
their Keras names, shows a layer's activations channels-first to the hooks of a call, separates
a final softmax/sigmoid, and calls the model in inference mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..engine import own_thread
from ._common import graph_layers, has_hooks, head_of, output_layer, register, stand_in, to_first, to_last

__all__ = ["TorchBackendModel"]


class TorchBackendModel(nn.Module):
    """A Keras 3 model of the torch backend as salience reads it (see :func:`salience.keras.wrap`).

    The Keras model runs as it is, with ``training=False``. While a stand-in of a layer is
    hooked (a CAM's capture), a forward hook on the Keras layer itself, existing only during
    that call and acting only in the calling thread, passes the layer's output through the
    stand-in (channels-first) and hands the result back to the model (channels-last again).
    """

    def __init__(self, model: Any, *, data_format: str | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_keras_model", model)  # its modules are not ours to list
        self._layers: dict[str, Any] = {}
        self._head: tuple[str, Any] | None = None
        for layer in graph_layers(model):
            register(self, layer.name, stand_in(layer, data_format))
            self._layers[layer.name] = layer
        last = output_layer(model)
        found = head_of(last) if last is not None else None
        if found is not None:
            register(self, found[0], found[1])
            self._head = (found[0], last)
        self.eval()

    @property
    def keras_model(self) -> Any:
        """The wrapped Keras model."""
        return self.__dict__["_keras_model"]

    def extra_repr(self) -> str:
        return f"model={getattr(self.keras_model, 'name', type(self.keras_model).__name__)!r}"

    def _route(self, name: str) -> Callable[..., Any]:
        proxy = self._modules[name]
        last = bool(getattr(proxy, "channels_last", False))

        def hook(_mod: nn.Module, _inp: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor):
                return None
            return to_last(proxy(to_first(out, last)), last)  # type: ignore[misc]

        return hook

    def forward(self, x: torch.Tensor) -> Any:
        handles = []
        seen: dict[str, Any] = {}
        head = self._head is not None and has_hooks(self._modules[self._head[0]])  # type: ignore[arg-type]
        try:
            for name, layer in self._layers.items():
                if has_hooks(self._modules[name]):  # type: ignore[arg-type]
                    handles.append(layer.register_forward_hook(own_thread(self._route(name))))
            if head and self._head is not None:

                def keep_input(_mod: nn.Module, inp: Any, _out: Any) -> None:
                    seen["h"] = inp[0] if inp else None

                handles.append(self._head[1].register_forward_hook(own_thread(keep_input)))
            out = self.keras_model(x, training=False)
        finally:
            for h in handles:
                h.remove()
        if not head or self._head is None or not isinstance(seen.get("h"), torch.Tensor):
            return out
        name, layer = self._head
        h = seen["h"]
        if type(layer).__name__ == "Dense":
            z = h @ layer.kernel.value
            h = z + layer.bias.value if layer.use_bias else z
        return self._modules[name](h)  # type: ignore[misc]
