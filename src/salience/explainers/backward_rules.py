"""Temporary backward rules on modules: the mechanism under Guided Backprop, DeconvNet and LRP.

A *plan* maps modules of the model to handlers. While :func:`rewired` is active, each planned
module keeps its forward value, but its output is replaced by a tensor whose backward pass is the
handler's rule instead of the module's own derivative. Everything is installed by hooks that exist
only inside the ``with`` block and are removed in ``finally``; parameters, buffers, modes and
``.grad`` are never touched. The hooks act only in the thread that installed them, so other
threads using the same model at the same time are not affected.

Used through :meth:`salience.engine.ScoreFunction.under`, which enters such a context around each
pass of model calls (forward and backward).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..engine import own_thread
from ..engine._hooks import worker_thread_error

__all__ = ["Handler", "replace_backward", "rewired"]

#: ``handler(module, x, y) -> new output`` where ``x`` is the module's (first) input as it was
#: before the call and ``y`` its output; return ``y`` itself to leave the module alone.
Handler = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class _Replace(torch.autograd.Function):
    """``value`` in the forward pass; ``backward(grad)`` as the gradient of ``x`` in the backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, value: torch.Tensor, backward: Callable) -> torch.Tensor:
        ctx.rule = backward
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return ctx.rule(grad), None, None


def replace_backward(
    x: torch.Tensor, value: torch.Tensor, backward: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """A copy of ``value`` whose gradient flows to ``x`` as ``backward(grad of the copy)``.

    ``value``'s own graph is cut: the only path back from the result is the rule.
    """
    return _Replace.apply(x, value.detach(), backward)


def _each_tensor(out: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``out`` with ``fn`` applied to each floating tensor in it (through tuples, lists and
    mappings, a Hugging Face ``ModelOutput`` included, copied rather than modified); None when
    nothing in it is a floating tensor, so a forward hook leaves the output as it is."""
    if isinstance(out, torch.Tensor):
        return fn(out) if out.is_floating_point() else None
    if isinstance(out, (tuple, list)) and type(out) in (tuple, list):
        parts = [_each_tensor(v, fn) for v in out]
        if all(p is None for p in parts):
            return None
        return type(out)(v if p is None else p for v, p in zip(out, parts, strict=True))
    if isinstance(out, Mapping):
        changed = {k: p for k, v in out.items() if (p := _each_tensor(v, fn)) is not None}
        if not changed:
            return None
        new = copy.copy(out)
        for k, p in changed.items():
            new[k] = p  # type: ignore[index]
        return new
    return None


@contextmanager
def rewired(
    model: nn.Module,
    plan: Mapping[nn.Module, Handler],
    *,
    output: Handler | None = None,
) -> Iterator[None]:
    """Replace the backward rule of the planned modules (and of the model's output) temporarily.

    Parameters
    ----------
    model : nn.Module
        The model; only hooks are added, and removed on exit (also after an exception).
    plan : mapping of module to handler
        For each module, ``handler(module, x, y)`` returns the tensor that replaces its output.
        Modules whose ``inplace`` attribute is true (``nn.ReLU(inplace=True)``) run on a copy of
        their input, so ``x`` is still the input as it was.
    output : handler, optional
        Applied to the output of ``model`` itself (after its own plan entry, if any).
    """
    handles: list[Any] = []
    stash: dict[int, torch.Tensor] = {}

    def pre_hook(module: nn.Module, inputs: tuple[Any, ...]) -> Any:
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            return None
        stash[id(module)] = inputs[0]
        if getattr(module, "inplace", False):
            return (inputs[0].clone(), *inputs[1:])
        return None

    def make_hook(handler: Handler) -> Callable[..., Any]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> Any:
            x = stash.pop(id(module), None)
            if x is None or not isinstance(out, torch.Tensor):
                return None
            return handler(module, x, out)

        return hook

    tallies: dict[nn.Module, list[int]] = {}
    try:
        for module, handler in plan.items():
            tallies[module] = tally = [0, 0]
            handles.append(module.register_forward_pre_hook(own_thread(pre_hook)))
            handles.append(module.register_forward_hook(own_thread(make_hook(handler), tally)))
        if output is not None:

            def output_hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> Any:
                # a structured output (tuple, dict, ModelOutput): every floating tensor in it,
                # the one the score is taken from among them
                return _each_tensor(out, lambda t: output(module, t, t))

            handles.append(model.register_forward_hook(own_thread(output_hook)))
        yield
        elsewhere = [m for m, (here, other) in tallies.items() if other and not here]
        if elsewhere:
            names = {m: n for n, m in model.named_modules()}
            raise worker_thread_error([names.get(m, type(m).__name__) for m in elsewhere])
    finally:
        for handle in reversed(handles):
            handle.remove()
        stash.clear()
