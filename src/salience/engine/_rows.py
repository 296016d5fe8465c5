"""Rows and what the model receives: the automatic batch size, chunk results, and the record of
one explain call's model (whether it may write into the rows it is given).

Row convention: a call over ``B`` samples with ``N`` rows each (IG steps, noise draws, masks)
numbers its rows ``r = b * N + n``; row ``r`` belongs to sample ``r // N``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "ModelFn",
    "PassContext",
    "RowSource",
    "CallState",
    "default_batch_size",
    "cat",
    "model_device",
    "state_kept",
    "reads_only",
    "version_of",
    "leaf_written",
]

# rows x elements per row targeted by the automatic batch size: on a CPU about 2 MiB of float32
# input per call (cache-sized chunks ran fastest in benchmarks/bench_core.py: for a small 2-D CNN
# on 3x64x64 images 32-64 rows ran about 1.9x faster than 256), elsewhere about 16 MiB
_AUTO_ELEMENTS_CPU = 2**19
_AUTO_ELEMENTS = 2**22
_AUTO_MAX_ROWS = 256

ModelFn = Callable[[torch.Tensor, torch.Tensor], Any]
"""``model_fn(rows, index) -> output``: the model behind a score function, given rows (R, *S) and
for each row the position (R,) of its point in the score function's input."""
PassContext = Callable[[Any], AbstractContextManager[Any]]
"""``context(model) -> context manager`` entered around each pass of model calls (forward and
backward), e.g. to change backward rules for the pass (see ``ScoreFunction.under``)."""
RowSource = torch.Tensor | Callable[[int, int], torch.Tensor]
"""Rows for a score function: a tensor (B, N, *S), or ``fn(start, stop)`` building rows
``start..stop`` of the flattened B * N rows (row ``r`` belongs to sample ``r // N``)."""


def default_batch_size(row_numel: int, device: torch.device | str | None = None) -> int:
    """Rows per model call when ``batch_size=None``.

    At most 256 rows and about 512K input elements per call on a CPU (``device`` None or
    ``"cpu"``), 4M elsewhere. Memory stays bounded whatever the number of steps, samples or masks;
    on a CPU, chunks whose activations fit the caches run fastest (larger batches are slower per
    row, see ``benchmarks/RESULTS.md``).
    """
    on_cpu = device is None or torch.device(device).type == "cpu"
    budget = _AUTO_ELEMENTS_CPU if on_cpu else _AUTO_ELEMENTS
    return int(max(1, min(_AUTO_MAX_ROWS, budget // max(1, row_numel))))


def storage(t: torch.Tensor) -> int:
    """Address of the memory a tensor views (0 for tensors without storage)."""
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
        return 0


def cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate chunk results without copying when there is a single chunk."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def model_device(model: Any) -> str:
    """Where the model's parameters and buffers live, e.g. "cpu (torch.float32)", or every
    device/dtype pair when they are mixed."""
    if isinstance(model, nn.Module):
        seen = dict.fromkeys(f"{t.device} ({t.dtype})" for t in (*model.parameters(), *model.buffers()))
        if seen:
            return " and ".join(seen) if len(seen) <= 3 else ", ".join(list(seen)[:3]) + ", ..."
    return "unknown"


@contextmanager
def state_kept(model: Any) -> Iterator[None]:
    """Around one model call: a module in training mode gets its buffers (BatchNorm running
    statistics, ``num_batches_tracked``) and the global RNGs its dropout draws from restored
    afterwards, so explaining never changes the model or the caller's random streams. Nothing
    happens when every module is in eval mode, or for plain callables. A submodule left in
    training mode inside a model in eval mode (a BatchNorm the user forgot) counts too."""
    if not (isinstance(model, nn.Module) and any(m.training for m in model.modules())):
        yield
        return
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        # through .data: the backward of this call is still to come, and autograd saved the
        # running statistics with the graph (their values unused in training mode); a tracked
        # in-place write would invalidate it
        for buffer, value in saved:
            buffer.data.copy_(value)


def reads_only(model: Any) -> bool:
    """Whether ``model`` provably never writes into its input: an ``nn.Module`` made only of
    torch.nn's own modules (whose forward code is known), none with ``inplace=True``, and no
    forward hooks of the caller's (which could write). Custom modules are not inspected: their
    forward may write (``x -= mean``, ``x.data.clamp_()``)."""
    if not isinstance(model, nn.Module):
        return False
    from torch.nn.modules import module as _module

    if _module._global_forward_pre_hooks or _module._global_forward_hooks:
        return False
    for m in model.modules():
        if (
            not type(m).__module__.startswith("torch.nn.modules.")
            or getattr(m, "inplace", False)
            or m._forward_pre_hooks
            or m._forward_hooks
        ):
            return False
    return True


class CallState:
    """What one explain call knows about its model's writes into the rows it is given.

    A model may overwrite its input in place (``nn.ReLU(inplace=True)`` as its first layer,
    ``x.clamp_(...)``, normalisation written as ``x -= mean``, ``x.data.sub_(...)``). Every model
    call must therefore receive rows the model may overwrite without harm:

    * a model made only of torch.nn's own modules without ``inplace=True`` cannot write into
      its input (:func:`reads_only`): it gets every row as it is, at no cost;
    * for any other model, rows that view memory the caller or the explainer keeps (the
      explained input, a user's baseline, the inputs of derived score functions, tensor row
      sources) are copied before the call; rows made for the call (masked copies, path points)
      are handed over as they are;
    * gradient rows are autograd leaves, which the model may not write into: the first gradient
      call hands the model a copy and watches its version counter; when the model did not
      write into it, later calls hand over the leaf itself (no copy); a model found writing in
      place keeps getting copies.
    """

    __slots__ = ("protected", "writes_input", "reads_only")

    def __init__(self, model: Any = None) -> None:
        self.protected: set[int] = set()
        #: None until a model call showed whether the model writes into its input
        self.writes_input: bool | None = None
        self.reads_only = reads_only(model)

    def kept(self, rows: torch.Tensor) -> bool:
        """Whether ``rows`` view memory kept beyond the call that the model might write into."""
        return not self.reads_only and storage(rows) in self.protected

    def protect(self, t: torch.Tensor) -> None:
        ptr = storage(t)
        if ptr:
            self.protected.add(ptr)

    def argument(self, rows: torch.Tensor) -> torch.Tensor:
        """The tensor handed to the model for ``rows``."""
        if self.reads_only:
            return rows
        if rows.requires_grad:  # a leaf of gradients()
            return rows if self.writes_input is False else rows.clone()
        if storage(rows) in self.protected:
            return rows.clone()
        return rows

    def observe(self, arg: torch.Tensor, version: int | None) -> None:
        """Record whether the model wrote into ``arg`` (its version counter moved)."""
        if version is None:  # an inference tensor keeps no version counter
            return
        if arg._version != version:
            self.writes_input = True
        elif self.writes_input is None:
            self.writes_input = False


def version_of(t: torch.Tensor) -> int | None:
    """The version counter of ``t`` (bumped by every in-place write), None for inference tensors."""
    return None if t.is_inference() else t._version


def leaf_written(err: BaseException) -> bool:
    """Autograd's refusal of an in-place write into a leaf that requires grad."""
    return isinstance(err, RuntimeError) and "leaf Variable that requires grad" in str(err)
