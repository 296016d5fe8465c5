"""Keras and TensorFlow models explained by every salience method.

``salience.keras.wrap(model)`` returns a ``torch.nn.Module`` that the explainers take like any
PyTorch model:

- under the TensorFlow backend (Keras 3), for ``tf.keras``/``tf_keras`` models and for TensorFlow
  callables (a SavedModel's ``serve``), the forward pass runs in TensorFlow and the backward pass
  is the vector-Jacobian product of a ``tf.GradientTape``; tensors cross by DLPack;
- under the torch backend (``KERAS_BACKEND=torch``) the Keras model is already an
  ``nn.Module``; the wrapper names its layers by their Keras names and calls it in inference
  mode.

Either way the Keras layers appear as submodules named by their Keras names, with their
activations presented channels-first, so the CAMs take ``layer="conv1d_2"`` and
``salience.layers(wrapped, x)`` lists them. Importing this package imports neither TensorFlow nor
Keras; :func:`wrap` does.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError

__all__ = ["wrap", "KerasLayer"]


def wrap(model: Any, *, data_format: str | None = None, graph: bool = True) -> Any:
    """A Keras or TensorFlow model as a ``torch.nn.Module`` that salience explains.

    Parameters
    ----------
    model : keras.Model, tf_keras.Model or callable
        A Keras 3 model (TensorFlow or torch backend), a ``tf.keras``/``tf_keras`` model, or a
        TensorFlow callable mapping a batch to outputs (a SavedModel's signature, a
        ``tf.function``); layers are available for functional and sequential Keras models.
        Never modified: no weight, flag, layer or name of it changes.
    data_format : {"channels_last", "channels_first"}, optional
        Where a layer's channel axis is when the layer does not say (an activation, a dropout);
        by default ``keras.config.image_data_format()``. Layers with a ``data_format`` (a
        convolution, a pooling) use their own.
    graph : bool, default True
        TensorFlow models only: run the model (or the part of it before and after an explained
        layer) as a ``tf.function`` traced once per part for any number of rows; False runs it
        eagerly (slower; for models that cannot be traced).

    Returns
    -------
    torch.nn.Module
        Calls the model on (N, *S) tensors in the layout the Keras model takes (channels-last
        as Keras stores data: pass ``layout="b t c"`` or ``"b h w c"`` to the explainers) and
        returns its output as a tensor on the input's device. It has no parameters of its own
        and is in eval mode; its submodules, named by the Keras layers' names, are
        :class:`KerasLayer` stand-ins whose outputs are the layers' activations channels-first
        (B, K, *positions), plus ``"<layer>.activation"``, an ``nn.Softmax``/``nn.Sigmoid``, when
        the model's last layer ends in such an activation (so the CAMs' ``final_activation``
        handles it).

    Raises
    ------
    ImportError
        When TensorFlow (or Keras) is not installed; the message names the extra to install.

    Examples
    --------
    >>> import salience as sl  # doctest: +SKIP
    >>> bridged = sl.keras.wrap(keras_model)  # doctest: +SKIP
    >>> sl.GradCAM(bridged, layer="conv1d_1", layout="b t c").explain(x, target=0)  # doctest: +SKIP
    """
    if data_format not in (None, "channels_last", "channels_first"):
        raise ParameterError(
            "The 'data_format' parameter of salience.keras.wrap must be None, 'channels_last' or "
            f"'channels_first'. Got {data_format!r} instead."
        )
    if _is_torch_keras(model):
        from ._torch import TorchBackendModel

        return TorchBackendModel(model, data_format=data_format)
    from ._tf import TFModel

    return TFModel(model, data_format=data_format, graph=graph)


def _is_torch_keras(model: Any) -> bool:
    """A Keras 3 model of the torch backend (already an nn.Module)."""
    import sys

    import torch

    keras = sys.modules.get("keras")
    if keras is None or not isinstance(model, torch.nn.Module):
        return False
    return isinstance(model, keras.Layer) and keras.backend.backend() == "torch"


def __getattr__(name: str) -> Any:
    if name == "KerasLayer":
        from ._common import KerasLayer

        return KerasLayer
    raise AttributeError(f"module 'salience.keras' has no attribute {name!r}")
