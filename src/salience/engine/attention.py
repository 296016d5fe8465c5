"""Attention capture: the attention probabilities of every layer, and their gradients, inside one call.

:func:`attention_maps` runs the model on the explained input (chunked to ``batch_size``) and
returns, for each attention computation, the probabilities ``A`` of shape (B, H, N, M) (rows =
queries, after the softmax) and, with ``gradients=True``, ``dScore/dA`` of the same shape.

How: during the engine's passes only, a :class:`torch.overrides.TorchFunctionMode` (thread-local:
other threads running the same model are unaffected) sees every torch function call the model
makes:

- ``F.scaled_dot_product_attention`` (hand-written blocks, timm's ``Attention`` with
  ``fused_attn=True``, Hugging Face's ``"sdpa"`` implementation) is computed explicitly for the
  call, ``softmax(Q K^T * scale + mask) @ V`` (bool and float masks, ``is_causal``, ``scale``,
  grouped-query attention), so ``A`` exists and the output is computed from it;
- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, torchvision's ViT encoder blocks,
  ``nn.TransformerEncoderLayer``; their fused fast paths are not taken while the mode is active)
  is computed explicitly the same way, returning the weights only where the caller asked for them;
- a softmax over the last axis of a 4-D tensor (the explicit paths: timm with
  ``fused_attn=False``, Hugging Face ``"eager"``, hand-written ``q @ k.T`` blocks) is recorded as
  attention probabilities.

No attribute of the model is switched (``fused_attn``, ``need_weights``, configs stay as they
are): the fast paths are replaced for the call by explicit computations of the same values.
Forward hooks on every module, wrapped with :func:`~salience.engine.own_thread` and removed in
``finally``, name each attention after the innermost module running when it was computed
(``"blocks.3.attn"``, ``"encoder.layers.encoder_layer_0.self_attention"``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import CompositionError, LayerError, ShapeError
from ._attention_ops import explicit_mha, explicit_sdpa
from ._hooks import own_thread, worker_thread_error
from ._rows import cat
from .tokens import prefix_tokens

if TYPE_CHECKING:
    from .score import ScoreFunction

__all__ = ["AttentionMap", "attention_maps", "reduce_attention", "capture_attention"]

_SOFTMAX = {torch.softmax, torch.Tensor.softmax, F.softmax, torch.special.softmax}


@dataclass
class AttentionMap:
    """The attention of one layer at the explained input.

    Attributes
    ----------
    name : str
        The module that computed it (the innermost module running at the time; ``"#k"`` is
        appended when one module computes several attentions in one forward pass).
    attention : Tensor of shape (B, H, N, M)
        Attention probabilities: rows are queries, each row sums to 1 (0 for a fully masked row).
        In the explained input's dtype (a softmax the model computes in another precision is
        cast).
    gradient : Tensor of shape (B, H, N, M) or None
        ``d score / d attention`` (None unless gradients were asked for).
    prefix : int or None
        Number of prefix tokens before the patch tokens (CLS, distillation, register tokens),
        read from the model (:func:`salience.engine.tokens.prefix_tokens`); None when the model
        does not say (:func:`salience.engine.tokens.infer_token_grid` infers it from the shapes).
    source : str
        How it was captured: ``"sdpa"`` (``F.scaled_dot_product_attention`` recomputed),
        ``"mha"`` (``F.multi_head_attention_forward`` recomputed) or ``"softmax"`` (an explicit
        softmax).
    """

    name: str
    attention: torch.Tensor
    gradient: torch.Tensor | None
    prefix: int | None
    source: str

    @property
    def heads(self) -> int:
        return int(self.attention.shape[1])

    @property
    def tokens(self) -> int:
        return int(self.attention.shape[-1])


# --------------------------------------------------------------------------------- the mechanism
class _Mode(TorchFunctionMode):
    """Replaces fused attention by explicit attention and records the probabilities."""

    def __init__(self, where: Callable[[], str], grad: bool) -> None:
        super().__init__()
        self.where = where
        self.grad = grad
        self.records: list[tuple[str, str, torch.Tensor]] = []

    def keep(self, source: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def keep(probs: torch.Tensor) -> torch.Tensor:
            if not self.grad:
                self.records.append((self.where(), source, probs.detach()))
                return probs
            # downstream uses a copy, so an in-place change after the softmax cannot alter it
            self.records.append((self.where(), source, probs))
            return probs.clone() if source == "softmax" else probs

        return keep

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return explicit_sdpa(self.keep("sdpa"), *args, **kwargs)
        if func is F.multi_head_attention_forward:
            return explicit_mha(self.keep("mha"), *args, **kwargs)
        out = func(*args, **kwargs)
        if func in _SOFTMAX and isinstance(out, torch.Tensor) and out.ndim == 4:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if dim in (-1, 3):
                return self.keep("softmax")(out)
        return out


@contextmanager
def capture_attention(model: Any, *, grad: bool = False) -> Iterator[list[tuple[str, str, torch.Tensor]]]:
    """Inside the ``with`` block, record every attention computation of ``model`` in this thread.

    Yields a list that fills with ``(module name, source, probabilities (B, H, N, M))``, in the
    order the attentions were computed. With ``grad=True`` the recorded probabilities are the
    tensors the model's output is computed from (take gradients with respect to them);
    otherwise they are detached. Hooks and the function mode exist only inside the block
    (removed in ``finally``, also after an exception); the model's attributes are not changed.
    """
    stack: list[str] = []
    modules = list(model.named_modules()) if isinstance(model, nn.Module) else []
    tally = [0, 0]

    def enter(name: str) -> Callable[..., None]:
        def pre(_m: nn.Module, _i: Any) -> None:
            stack.append(name)

        return pre

    def leave(_m: nn.Module, _i: Any, _o: Any) -> None:
        if stack:
            stack.pop()

    mode = _Mode(lambda: stack[-1] if stack else "", grad)
    handles: list[Any] = []
    try:
        for name, module in modules:
            handles.append(module.register_forward_pre_hook(own_thread(enter(name), tally)))
            handles.append(module.register_forward_hook(own_thread(leave), always_call=True))
        with mode:
            yield mode.records
        if modules and tally[1] and not tally[0]:
            raise worker_thread_error([type(model).__name__])
    finally:
        for handle in reversed(handles):
            handle.remove()


# ------------------------------------------------------------------------------ the engine call
def _named(records: list[tuple[str, str, torch.Tensor]]) -> list[tuple[str, str, torch.Tensor]]:
    """Records with unique names (``"name#k"`` for a module's k-th attention in one pass)."""
    seen: dict[str, int] = {}
    out = []
    for name, source, probs in records:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append((name if k == 0 else f"{name}#{k}", source, probs))
    return out


def _chunk_maps(score: ScoreFunction, gradients: bool) -> Generator[list[AttentionMap], None, None]:
    """The attention maps of each chunk of ``score.batch_size`` samples, in order; records the
    scores at the explained input after the last chunk."""
    if score.composed:
        raise CompositionError(
            f"{score.caller} explains the model's attention, which has no meaning inside a domain "
            "(InDomain) or other input transform."
        )
    b = score.n_samples
    declared = prefix_tokens(score.model)
    prefix = None if declared is None else declared[0]
    names: list[tuple[str, str]] | None = None
    vals = []
    with score._pass():
        for start, stop in score._chunks(b):
            local = torch.arange(start, stop, device=score.input.device)
            rows = score.input[start:stop]
            # the capture covers the forward pass only (the backward runs without the mode)
            with capture_attention(score.model, grad=gradients) as records, torch.set_grad_enabled(gradients):
                if gradients:
                    # the graph must reach every layer's attention, also in a frozen model
                    kept = score._call.kept(rows)
                    rows = (rows.detach().clone() if kept else rows.detach()).requires_grad_(True)
                s = score._scores(rows, local, score.target_map[start:stop])
            found = _named(records)
            if not found:
                raise LayerError(
                    f"{score.caller}: the model computed no attention during its forward pass (no "
                    "F.scaled_dot_product_attention, nn.MultiheadAttention or softmax over the last "
                    "axis of a 4-D tensor was called). Attention methods explain transformers."
                )
            for _, _, p in found:
                if p.shape[0] != stop - start:
                    raise ShapeError(
                        f"{score.caller}: an attention of shape {tuple(p.shape)} was computed for "
                        f"{stop - start} input rows; its first axis must be the batch (a model that "
                        "folds channels or windows into the batch axis is not supported)."
                    )
            keys = [(n, src) for n, src, _ in found]
            if names is None:
                names = keys
            elif keys != names:
                raise LayerError(
                    f"{score.caller}: the model computed different attention layers on different "
                    f"chunks of the batch ({[n for n, _ in names]} then {[n for n, _ in keys]})."
                )
            tensors = [p for _, _, p in found]
            grads: list[torch.Tensor | None] = [None] * len(found)
            if gradients:
                if not s.requires_grad:
                    raise score._no_gradient("its attention")
                with torch.enable_grad():
                    got = torch.autograd.grad(s.sum(), tensors, allow_unused=True)
                grads = [
                    torch.zeros_like(p) if g is None else g.detach()
                    for g, p in zip(got, tensors, strict=True)
                ]
            vals.append(s.detach())
            # in the input's dtype: a softmax computed in float32 inside a float64 model (Hugging
            # Face's eager path) is read like the model's other layers
            dtype = score.input.dtype
            yield [
                AttentionMap(
                    name=n,
                    attention=p.detach().to(dtype),
                    gradient=None if g is None else g.to(dtype),
                    prefix=prefix,
                    source=src,
                )
                for (n, src, p), g in zip(found, grads, strict=True)
            ]
    score.record_input_values(cat(vals))


def attention_maps(score: ScoreFunction, *, gradients: bool = False) -> list[AttentionMap]:
    """The attention probabilities of every attention layer at the explained input, and optionally
    the gradient of the explained score with respect to them.

    One forward pass (and, with ``gradients=True``, one backward pass) per chunk of
    ``score.batch_size`` samples, rows in order. The capture (see :func:`capture_attention`)
    exists only inside the call. Records the scores at the explained input
    (``score.input_values()`` costs no further call). Every layer of every sample is kept:
    :func:`reduce_attention` bounds the memory to one chunk.

    Parameters
    ----------
    score : ScoreFunction
        The score function an explainer received (not inside a domain).
    gradients : bool, default False
        Also compute ``d score / d A`` for every layer (one backward per chunk).

    Returns
    -------
    list of AttentionMap
        In the order the attentions were computed (forward order), each with ``attention`` of
        shape (B, H, N, M) and ``gradient`` of the same shape or None.

    Raises
    ------
    LayerError
        When the model computed no attention (no ``scaled_dot_product_attention``,
        ``nn.MultiheadAttention`` or 4-D softmax was seen).
    CompositionError
        Inside a domain (the attention belongs to the model's input, not to coefficients).
    """
    chunks = list(_chunk_maps(score, gradients))
    return [
        AttentionMap(
            name=first.name,
            attention=cat([c[i].attention for c in chunks]),
            gradient=cat([cast(torch.Tensor, c[i].gradient) for c in chunks]) if gradients else None,
            prefix=first.prefix,
            source=first.source,
        )
        for i, first in enumerate(chunks[0])
    ]


def reduce_attention(
    score: ScoreFunction,
    reduce: Callable[[list[AttentionMap]], torch.Tensor],
    *,
    gradients: bool = False,
) -> torch.Tensor:
    """``reduce`` applied to the attention maps of each chunk of samples, concatenated.

    As :func:`attention_maps`, but the maps of a chunk (``score.batch_size`` samples) are handed
    to ``reduce`` and dropped, so memory is bounded by one chunk whatever the batch: what the
    attention methods use.

    Parameters
    ----------
    score : ScoreFunction
    reduce : callable
        ``reduce(maps) -> Tensor (b, ...)`` for the ``b`` samples of a chunk, in order.
    gradients : bool, default False

    Returns
    -------
    Tensor of shape (B, ...)
    """
    with closing(_chunk_maps(score, gradients)) as chunks:  # closed (hooks gone) if reduce raises
        return cat([reduce(maps) for maps in chunks])
