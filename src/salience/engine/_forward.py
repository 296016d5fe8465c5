"""What one model call receives and returns beyond a tensor of rows: extra forward inputs
(``forward_args``/``forward_kwargs``, per-sample ones chunked with the rows) and structured outputs
(``output=``: the tensor to explain inside a tuple, a mapping or a Hugging Face ``ModelOutput``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelOutputError, ParameterError

__all__ = ["OutputLike", "Shared", "shared", "check_output", "Selector", "Extras"]

OutputLike = str | int | Callable[[Any], torch.Tensor] | None
"""Which tensor of a structured model output to explain: a key (``"logits"``), an index (``0``),
a callable ``output -> tensor``, or None (a tensor as it is, a ``ModelOutput``'s or mapping's
``"logits"``, the element of a one-element tuple)."""


@dataclass(frozen=True)
class Shared:
    """A forward input passed unchanged to every model call, even if its first axis has the
    length of the batch (see :func:`shared`)."""

    value: Any


def shared(value: Any) -> Shared:
    """Mark a forward input as the same for every row.

    Tensors in ``forward_args``/``forward_kwargs`` whose first axis has the batch's length are
    per-sample (an attention mask, a subject id): every model call receives the rows of the samples
    it computes. Wrap a tensor in ``shared(...)`` when its first axis only happens to have that
    length (a table of per-class weights with as many classes as samples).
    """
    return Shared(value)


def check_output(output: Any, owner: str) -> OutputLike:
    """Validate an ``output=`` option (a key, an index, a callable or None)."""
    if output is None or isinstance(output, str) or callable(output):
        return output
    if isinstance(output, int) and not isinstance(output, bool):
        return output
    raise ParameterError(
        f"The 'output' parameter of {owner} must be None, a key (str), an index (int) or a callable "
        f"mapping the model's output to the tensor to explain. Got {output!r} instead."
    )


def _describe(out: Any) -> str:
    """The parts of a structured output, for error messages: ``'logits' (4, 3), 'hidden' (4, 5, 8)``."""

    def one(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return f"{tuple(v.shape)}"
        if isinstance(v, (tuple, list)):
            return f"{type(v).__name__} of {len(v)}"
        return type(v).__name__

    if isinstance(out, Mapping):
        return ", ".join(f"{k!r} {one(v)}" for k, v in out.items())
    return ", ".join(f"[{i}] {one(v)}" for i, v in enumerate(out))


class Selector:
    """``select(out) -> Tensor``: the tensor to explain in a model's (structured) output.

    Parameters
    ----------
    output : str, int, callable or None
        See :data:`OutputLike`.
    caller : str
        Named in error messages.
    """

    def __init__(self, output: OutputLike, caller: str) -> None:
        self.output = output
        self.caller = caller
        #: the type name of the last structured output selected from (for error hints)
        self.structured: str | None = None

    def __call__(self, out: Any) -> Any:
        option = self.output
        if isinstance(out, torch.Tensor) and option is None:
            return out
        kind = type(out).__name__
        if option is None:
            if isinstance(out, Mapping):
                if "logits" in out:
                    self.structured = kind
                    return out["logits"]
                raise ModelOutputError(
                    f"{self.caller}: the model returned a {kind} without 'logits'; pass output=<key> "
                    f"(or an index or a callable) to say which tensor to explain. It holds: {_describe(out)}."
                )
            if isinstance(out, Sequence) and not isinstance(out, (str, bytes)):
                if len(out) == 1:
                    self.structured = kind
                    return out[0]
                raise ModelOutputError(
                    f"{self.caller}: the model returned a {kind} of {len(out)} elements; pass "
                    f"output=<index> (or a callable) to say which one to explain. It holds: {_describe(out)}."
                )
            return out  # not structured: the engine's checks name what it is
        self.structured = kind
        if callable(option):
            try:
                return option(out)
            except Exception as err:
                raise ModelOutputError(
                    f"{self.caller}: output={getattr(option, '__name__', option)!r} raised "
                    f"{type(err).__name__}: {err} on the model's {kind} output."
                ) from err
        try:
            return out[option]
        except (KeyError, IndexError, TypeError) as err:
            holds = (
                f" It holds: {_describe(out)}."
                if isinstance(out, (Mapping, Sequence)) and not isinstance(out, (str, bytes))
                else ""
            )
            raise ModelOutputError(
                f"{self.caller}: output={option!r} cannot be taken from the model's {kind} output "
                f"({type(err).__name__}: {err}).{holds}"
            ) from err


class Extras:
    """The extra forward inputs of one explain call, cut to the rows of each model call.

    Tensors (also inside lists, tuples and dicts) whose first axis has length ``n_samples`` are
    per-sample: a model call over rows of samples ``index`` receives ``t[index]``. Everything
    else (other tensors, numbers, flags, :func:`shared` values) is passed unchanged.

    Parameters
    ----------
    args : sequence
        Positional inputs after the rows.
    kwargs : mapping or None
        Keyword inputs.
    n_samples : int
        The number of explained samples.
    owner : str
        Named in error messages.
    """

    def __init__(
        self, args: Sequence[Any], kwargs: Mapping[str, Any] | None, n_samples: int, owner: str
    ) -> None:
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise ParameterError(
                f"The 'forward_args' parameter of {owner} must be a tuple or list of extra positional "
                f"inputs. Got {type(args).__name__} instead."
            )
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ParameterError(
                f"The 'forward_kwargs' parameter of {owner} must be a dict of keyword inputs with str "
                f"keys. Got {type(kwargs).__name__} instead."
            )
        self.n_samples = n_samples
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.per_sample = self._any(self.args) or self._any(tuple(self.kwargs.values()))

    def __bool__(self) -> bool:
        return bool(self.args or self.kwargs)

    def _is_row_tensor(self, v: Any) -> bool:
        return isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == self.n_samples

    def _any(self, values: tuple[Any, ...]) -> bool:
        for v in values:
            if isinstance(v, Shared):
                continue
            if self._is_row_tensor(v):
                return True
            if isinstance(v, (list, tuple)) and self._any(tuple(v)):
                return True
            if isinstance(v, Mapping) and self._any(tuple(v.values())):
                return True
        return False

    def _cut(self, v: Any, index: torch.Tensor) -> Any:
        if isinstance(v, Shared):
            return v.value
        if self._is_row_tensor(v):
            return v[index.to(v.device)]
        if isinstance(v, (list, tuple)):
            return type(v)(self._cut(e, index) for e in v) if type(v) in (list, tuple) else v
        if isinstance(v, dict):
            return {k: self._cut(e, index) for k, e in v.items()}
        return v

    def rows(self, index: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The inputs for a model call over rows of samples ``index`` (R,)."""
        return tuple(self._cut(a, index) for a in self.args), {
            k: self._cut(v, index) for k, v in self.kwargs.items()
        }
