"""The extension API: what a new method, wrapper or metric is written against.

A method subclasses :class:`Explainer` and implements :meth:`Explainer.attribute`, which
receives the explained input and a :class:`ScoreFunction` (the model composed with the bound
target): it asks the score function for values, gradients or a layer's activations and never
sees the model. The score function batches rows to ``batch_size`` per model call, keeps the
model, the input and the global RNG unchanged, and raises the library's errors; the method
then works in every domain, with several classes and under every metric. docs/extending.md
writes complete methods and a domain; :mod:`salience.testing` checks them.

Modules
-------
score
    :class:`ScoreFunction` and :func:`make_score`.
explainer
    :class:`Explainer`, :class:`Wrapper` and :class:`Parts`.
attention
    Attention capture: :func:`attention_maps`, :func:`reduce_attention`, :func:`capture_attention`,
    :class:`AttentionMap`.
layers
    Finding and describing layers: :func:`find_layer`, :func:`trace`, :func:`layers`.
tokens
    Token grids of transformer layers and their mapping back to the input:
    :func:`infer_token_grid`, :class:`TokenGrid`.
"""

from ..errors import caller, current_caller
from ._forward import OutputLike, Selector, shared
from ._hooks import own_thread
from ._rows import ModelFn, PassContext, RowSource, default_batch_size
from .attention import AttentionMap, attention_maps, capture_attention, reduce_attention
from .explainer import Explainer, Parts, Wrapper
from .layers import LayerInfo, LayerTable, ModuleCall, find_layer, layers, trace
from .score import ScoreFunction, make_score
from .tokens import TokenGrid, find_patch_embedding, infer_token_grid, prefix_tokens

__all__ = [
    "Explainer",
    "Wrapper",
    "Parts",
    "ScoreFunction",
    "make_score",
    "AttentionMap",
    "attention_maps",
    "reduce_attention",
    "capture_attention",
    "OutputLike",
    "Selector",
    "shared",
    "ModelFn",
    "PassContext",
    "RowSource",
    "default_batch_size",
    "own_thread",
    "ModuleCall",
    "find_layer",
    "trace",
    "layers",
    "LayerInfo",
    "LayerTable",
    "caller",
    "current_caller",
    "TokenGrid",
    "infer_token_grid",
    "find_patch_embedding",
    "prefix_tokens",
]
