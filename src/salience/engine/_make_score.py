"""``make_score``: the score function of a model at ``x``, with its target bound there (what
:meth:`~salience.engine.Explainer.explain` and the metrics build)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ParameterError, current_caller
from ..layout import Layout
from ..targets import TargetLike, as_target
from ._forward import Extras, OutputLike, Selector
from .layers import eager, unwrap
from .score import ScoreFunction

__all__ = ["make_score"]


def make_score(
    model: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None,
    layout: Layout,
    caller: str | None = None,
    output: OutputLike = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> ScoreFunction:
    """The score function of ``model`` at ``x`` with ``target`` bound there (what ``explain`` uses).

    The target is coerced with :func:`~salience.targets.as_target` and bound once at ``x``
    (``target=None`` freezes each sample's predicted class); when binding needed the model output
    at ``x``, the scores there are cached so that :meth:`ScoreFunction.input_values` costs no
    further model call.

    Parameters
    ----------
    model : callable
        Maps rows (R, *S) to outputs (R, *O).
    x : Tensor of shape (B, *S)
        The explained point (detached by the caller).
    target : TargetLike
    batch_size : int or None
    layout : Layout
    caller : str, optional
        Name used in error messages (the explainer or metric); by default the one running
        (:func:`salience.errors.caller`).
    output : str, int, callable or None, optional
        The tensor to explain when the model returns a tuple, a mapping or a Hugging Face
        ``ModelOutput``: a key, an index or a callable (see :class:`~salience.engine.Selector`).
        None takes a tensor as it is, a mapping's ``"logits"`` and a one-element tuple's element.
    forward_args : sequence, optional
        Extra positional inputs of every model call, after the rows.
    forward_kwargs : mapping, optional
        Extra keyword inputs of every model call (an attention mask, a padding mask, flags).
        Tensors whose first axis has the length of ``x``'s are per-sample (also inside lists,
        tuples and dicts): each model call receives the entries of the samples its rows belong
        to, whatever the chunking (IG steps, noise draws, masks). Wrap a tensor in
        :func:`~salience.engine.shared` to pass it unchanged.
    """
    caller = current_caller() if caller is None else caller
    extras = Extras(forward_args, forward_kwargs, x.shape[0], caller)
    # a wrapper (torch.compile, DataParallel) runs a network: hooks, names and state are its
    network, call = unwrap(model), eager(model)
    if isinstance(network, nn.Module):
        meta = [n for n, t in (*network.named_parameters(), *network.named_buffers()) if t.is_meta]
        if meta:
            raise ParameterError(
                f"The 'model' parameter of {caller} has {len(meta)} parameter(s)/buffer(s) on the "
                f"'meta' device (e.g. {meta[0]!r}), which hold no data; materialise and load the "
                "weights first (model.to_empty(device=...), then load_state_dict)."
            )
    unbound = as_target(target)

    def model_fn(rows: torch.Tensor, index: torch.Tensor) -> Any:
        if not extras:
            return call(rows)
        args, kwargs = extras.rows(index)
        return call(rows, *args, **kwargs)

    score = ScoreFunction(
        model_fn,
        unbound,
        input=x,
        layout=layout,
        batch_size=batch_size,
        model=network,
        caller=caller,
        select=Selector(output, caller),
    )
    # the reference output is cached by the score function: when binding needed it,
    # input_values() reuses it
    score.target = unbound.bind(x.shape[0], score.reference_output)
    return score
