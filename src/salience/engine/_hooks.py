"""Hooks that act only in their own thread, and the forward hook that captures one layer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import CompositionError, LayerError, SalienceWarning, current_caller, warn
from ._rows import cat

if TYPE_CHECKING:
    from .score import ScoreFunction

__all__ = ["own_thread", "worker_thread_error", "capture", "LayerCapture"]


def own_thread(hook: Callable[..., Any], tally: list[int] | None = None) -> Callable[..., Any]:
    """``hook`` made to act only in the thread that wraps it (the one running the call).

    Hooks on a module are seen by every thread that calls the module. Each salience call
    registers its own hooks for its own duration; wrapped this way, they ignore the forward
    passes that other threads run on the same model at the same time, so concurrent calls on one
    model neither read nor change each other's activations, gradients or backward rules.

    ``tally``, a list ``[here, elsewhere]``, counts the calls in this thread and the ignored
    calls from other threads: a module that ran only elsewhere during a call belongs to a model
    that runs its modules in worker threads (see :func:`worker_thread_error`).
    """
    ident = threading.get_ident()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != ident:
            if tally is not None:
                tally[1] += 1
            return None
        if tally is not None:
            tally[0] += 1
        return hook(*args, **kwargs)

    return wrapped


def worker_thread_error(names: list[str]) -> CompositionError:
    """The error for modules that ran only in threads other than the caller's."""
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return CompositionError(
        f"{current_caller()}: the module(s) {shown} ran only in other threads during the call: the model runs "
        "its modules in worker threads (nn.DataParallel on several GPUs, an ensemble on a thread "
        "pool). The hooks this method needs act only in the calling thread (so that threads "
        "sharing a model stay apart). Explain the wrapped network itself (model.module), or run "
        "the members in the calling thread."
    )


@contextmanager
def capture(module: nn.Module, *, grad: bool) -> Iterator[dict[str, Any]]:
    """A forward hook on ``module`` storing its output as ``store["a"]`` and its number of calls
    as ``store["calls"]``; ``store["tally"]`` counts calls in this thread and in others (see
    :func:`own_thread`). The hook exists only inside the ``with`` block.

    With ``grad=True`` the hook switches gradients on at the layer: its output becomes a leaf
    that requires grad, so a model called under ``torch.no_grad()`` records a graph only for the
    rest of the network (the backward stops at the layer anyway), and everything before the
    layer runs as fast as inference; the caller's ``torch.no_grad()`` block restores the mode.
    """
    store: dict[str, Any] = {}

    def hook(_mod: nn.Module, _inp: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor):
            raise LayerError(
                f"The target layer returned {type(out).__name__}, not a tensor; pick a layer "
                "whose output is a single tensor (list the candidates and their output types "
                "with salience.layers(model, x))."
            )
        if grad:
            torch.set_grad_enabled(True)
            out = out.detach().requires_grad_(True)
        store["a"] = out
        store["calls"] = store.get("calls", 0) + 1
        # hand a copy downstream so an in-place op after the layer cannot alter `out`
        return out.clone()

    tally = [0, 0]
    store["tally"] = tally
    handle = module.register_forward_hook(own_thread(hook, tally))
    try:
        yield store
    finally:
        handle.remove()


class LayerCapture:
    """The method of :class:`~salience.engine.ScoreFunction` that captures a layer."""

    def layer_gradients(  # type: ignore[misc]  # self: a mixin of ScoreFunction only
        self: ScoreFunction,
        module: nn.Module,
        *,
        grad: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Activations of ``module`` at the explained input and the score's gradient w.r.t. them.

        The forward hook exists only inside this call (removed in ``finally``); the backward pass
        stops at the layer. Chunked over the batch.

        Returns
        -------
        values : Tensor of shape (B,)
        activations : Tensor of shape (B, *A)
        grads : Tensor of shape (B, *A), or None with ``grad=False``
        """
        if self.composed:
            raise CompositionError(
                f"{self.caller} explains a layer of the model, which has no meaning inside a "
                "domain (InDomain) or other input transform."
            )
        b = self.n_samples
        vals, acts, grads = [], [], []
        with self._pass(), capture(module, grad=grad) as store:
            for start, stop in self._chunks(b):
                for key in ("a", "calls"):
                    store.pop(key, None)
                local = torch.arange(start, stop, device=self.input.device)
                with torch.no_grad():  # gradients start at the layer (see capture)
                    s = self._scores(self.input[start:stop], local, self.target_map[start:stop])
                if "a" not in store:
                    if store["tally"][1]:
                        name = next((n for n, m in self.model.named_modules() if m is module), "?")
                        raise worker_thread_error([name])
                    raise LayerError(
                        f"{self.caller}: the target layer was not called during the forward pass."
                    )
                a = store["a"]
                if start == 0 and store["calls"] > 1:
                    warn(
                        f"{self.caller}: the target layer ran {store['calls']} times in one forward "
                        "pass (a module reused, e.g. a shared ReLU); only its last call is "
                        "explained. Pick a module that runs once (see salience.layers(model, x)).",
                        SalienceWarning,
                    )
                if grad:
                    if not s.requires_grad:
                        raise self._no_gradient("the target layer", layer=True)
                    with torch.enable_grad():
                        (g,) = torch.autograd.grad(s.sum(), a, allow_unused=True)
                    if g is None:
                        raise self._no_gradient("the target layer", layer=True)
                    grads.append(g.detach())
                vals.append(s.detach())
                acts.append(a.detach())
        values = cat(vals)
        self.record_input_values(values)  # the scores at the explained point, as input_values()
        return values, cat(acts), (cat(grads) if grad else None)
