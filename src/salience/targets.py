"""Targets: small callables that reduce a model's output to one score per row.

A target sees the model output of a chunk of rows, shape (R, *O), and for each row the index the
engine hands it, shape (R,) (the original sample by default; one index per explained point when
several targets share a sample, see ``ScoreFunction.retarget``), and returns the explained score,
shape (R,). A bound per-sample target reads its entry at that index. ``as_target`` is the one
place where ``int``, per-sample sequences/tensors, ``None`` and callables are coerced.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SalienceError, TargetError

__all__ = [
    "Target",
    "ClassTarget",
    "Class",
    "Output",
    "Contrast",
    "Probability",
    "LogProbability",
    "Score",
    "Predicted",
    "as_target",
]

Reference = Callable[[], torch.Tensor]


_INT64 = (-(2**63), 2**63 - 1)


def _as_index(k: Any, n: int, what: str) -> torch.Tensor:
    """Coerce an int or a per-sample sequence/tensor of ints to a LongTensor of shape (n,)."""
    if isinstance(k, bool):
        raise TargetError(f"{what} must be an int or a sequence of ints. Got {k!r} instead.")
    if isinstance(k, Integral):  # int, numpy integer
        if not _INT64[0] <= int(k) <= _INT64[1]:
            raise TargetError(f"{what} must be a class index that fits in int64. Got {int(k)} instead.")
        return torch.full((n,), int(k), dtype=torch.long)
    if isinstance(k, np.ndarray) and k.dtype == np.uint64 and k.size and int(k.max()) > _INT64[1]:
        raise TargetError(f"{what} must hold class indices that fit in int64. Got {int(k.max())}.")
    try:
        t = torch.as_tensor(k)
    except (TypeError, ValueError, OverflowError, RuntimeError) as err:
        raise TargetError(
            f"{what} must be an int, a sequence of ints or an integer tensor (class indices that "
            f"fit in int64). Got {type(k).__name__}: {err}."
        ) from err
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TargetError(f"{what} must hold integer class indices. Got dtype {t.dtype} instead.")
    if t.ndim == 0:
        return t.long().expand(n).clone()
    if t.ndim != 1 or t.shape[0] != n:
        raise TargetError(
            f"{what} must have one entry per sample (length {n}). Got shape {tuple(t.shape)} instead."
        )
    return t.long()


def _single_output(out: torch.Tensor) -> torch.Tensor | None:
    """Return the (R,) output of a model with one output per sample, else None."""
    if out.ndim == 1:
        return out
    if out.ndim >= 2 and out[0].numel() == 1:
        return out.reshape(out.shape[0])
    return None


class Target:
    """Base class: maps model output (R, *O) and target indices (R,) to scores (R,).

    Subclasses implement ``__call__``; ``bind`` (called once per explanation with the number of
    samples and a lazy reference output at x) returns a bound copy, never mutating ``self``.
    A target whose ``raw`` is True receives the model's output as the model returned it (a tuple,
    a mapping, a ``ModelOutput``) instead of the tensor selected by ``output=``.
    """

    raw: bool = False

    def bind(self, n_samples: int, reference: Reference) -> Target:
        return self

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def explained(self) -> Any:
        """What is recorded as ``Attribution.target``: per-sample class indices where they exist."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ClassTarget(Target):
    """Base of the targets indexed by a class: :class:`Class`, :class:`Probability`,
    :class:`LogProbability`.

    Besides scoring the bound class, a class target scores every class the same way
    (:meth:`class_scores`), so that methods comparing classes (ClassRelevant) can rank and
    explain other classes in the target's own sense; :meth:`with_index` gives the same kind of
    target for other classes.
    """

    def __init__(self, k: Any) -> None:
        if isinstance(k, (bool, str, bytes)) or not (
            isinstance(k, (Integral, torch.Tensor)) or hasattr(k, "__len__")
        ):
            raise TargetError(
                f"{type(self).__name__} expects a class index (int) or one index per sample. "
                f"Got {k!r} instead."
            )
        self.k = k
        self._index: torch.Tensor | None = None
        self._checked = False

    def bind(self, n_samples: int, reference: Reference) -> Target:
        new = copy.copy(self)
        new._index = _as_index(self.k, n_samples, f"The target of {type(self).__name__}")
        new._checked = False
        return new

    def with_index(self, k: Any) -> ClassTarget:
        """The same kind of target for class(es) ``k`` (unbound)."""
        return type(self)(k)

    def n_classes(self, output: torch.Tensor) -> int:
        """The number of classes of a model output (R, *O): its per-sample size, or 2 for a
        single-logit binary model read through a sigmoid (Probability, LogProbability)."""
        if _single_output(output) is not None:
            return 2 if self._binary_head else 1
        return int(output.reshape(output.shape[0], -1).shape[1])

    def class_scores(self, output: torch.Tensor) -> torch.Tensor:
        """Every class's score in this target's sense, shape (R, n_classes(output)).

        Logits for Class, softmax probabilities for Probability, log-softmax for LogProbability;
        for a single-logit binary model the scores of classes 0 and 1 (e.g. ``sigmoid(-z)`` and
        ``sigmoid(z)`` for Probability).
        """
        single = _single_output(output)
        if single is not None:
            if self._binary_head:
                ones = torch.ones_like(single, dtype=torch.long)
                return torch.stack([self._binary(single, ones * 0), self._binary(single, ones)], 1)
            return single[:, None]
        if output.ndim != 2:
            raise TargetError(
                f"{type(self).__name__} needs per-class model outputs (R, K); got shape "
                f"{tuple(output.shape)}."
            )
        return self._scores(output)

    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        """Per-class scores (R, K) from the raw output; the identity for Class."""
        return out

    #: whether a single-logit output is read as a binary classifier (sigmoid) for k in {0, 1}
    _binary_head = False

    def _binary(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (k.to(z.dtype) * 2 - 1) * z  # the logit of class k: z for 1, -z for 0

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self._index is None:
            raise TargetError(f"{self!r} was used before bind(); this is a bug in the caller.")
        k = self._index.to(output.device)[index]
        single = _single_output(output)
        if single is not None and self._binary_head:
            if not self._checked:  # check every sample's index once, not only this chunk's
                k_all = self._index
                bad = (k_all < 0) | (k_all > 1)
                if bool(bad.any()):
                    raise TargetError(
                        f"{type(self).__name__}: the model has one output per sample (a binary "
                        f"logit), so the class must be 0 or 1. Got {k_all[bad][0].item()} instead."
                    )
                self._checked = True
            return self._binary(single, k)
        if output.ndim == 1:
            output = output[:, None]
        if output.ndim != 2:
            raise TargetError(
                f"An int/class target needs a model output of shape (B, K); got shape "
                f"{tuple(output.shape)}. Use Output(index) for multi-dimensional outputs or "
                "Score(fn) for a custom reduction."
            )
        if not self._checked:  # check every sample's index once, not only this chunk's
            n_classes = output.shape[1]
            k_all = self._index
            bad = (k_all < 0) | (k_all >= n_classes)
            if bool(bad.any()):
                hint = (
                    " For a single-logit binary classifier use Probability(k)/LogProbability(k) "
                    "(sigmoid) or Score(lambda out: -out[:, 0]) for the negative class."
                    if n_classes == 1
                    else ""
                )
                raise TargetError(
                    f"Target class {k_all[bad][0].item()} is out of range for a model with "
                    f"{n_classes} outputs (valid: 0..{n_classes - 1}).{hint}"
                )
            self._checked = True
        scores = self._scores(output)
        return scores.gather(1, k[:, None]).squeeze(1)

    def explained(self) -> Any:
        return self._index if self._index is not None else self.k

    def __repr__(self) -> str:
        k = int(self.k) if isinstance(self.k, Integral) else f"<{len(self.k)} per-sample indices>"
        return f"{type(self).__name__}({k})"


#: former private name, kept for code written against it
_ClassLike = ClassTarget


class Class(ClassTarget):
    """The raw output (logit) of class ``k``: ``output[:, k]``.

    Parameters
    ----------
    k : int or sequence/tensor of ints of shape (B,)
        One class for every sample, or one per sample. Plain indexing: on a model with one
        output per sample only ``k = 0`` is valid (that output itself).
    """


class Probability(ClassTarget):
    """The softmax probability of class ``k``.

    On a model with a single output per sample (a binary classifier's logit ``z``), class 1 is
    ``sigmoid(z)`` and class 0 is ``1 - sigmoid(z)``.
    """

    _binary_head = True

    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out, dim=1)

    def _binary(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super()._binary(z, k))


class LogProbability(ClassTarget):
    """The log-softmax of class ``k`` (log-sigmoid for single-logit binary models).

    This is what SignalGrad-CAM explains with ``softmax_final=True``. On a single-logit model,
    class 1 is ``log sigmoid(z)`` and class 0 is ``log sigmoid(-z)``.
    """

    _binary_head = True

    def _scores(self, out: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(out, dim=1)

    def _binary(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(super()._binary(z, k))


class Output(Target):
    """One entry of the model output for every sample: ``output[:, *index]``.

    For regression and multi-output models (a forecast step, an output channel). ``Output()``
    selects the single output of a model with one output per sample.

    Parameters
    ----------
    index : int or tuple of ints
        Index into the non-batch axes of the output.
    """

    def __init__(self, index: int | tuple[int, ...] = ()) -> None:
        idx: tuple[Any, ...]
        try:
            idx = tuple(index)  # type: ignore[arg-type]
        except TypeError:  # a single index (int, numpy integer)
            idx = (index,)
        if not all(isinstance(i, Integral) and not isinstance(i, bool) for i in idx):
            raise TargetError(f"Output expects an int or a tuple of ints. Got {index!r} instead.")
        self.index = tuple(int(i) for i in idx)  # numpy integers (np.unravel_index) become ints

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if not self.index:
            single = _single_output(output)
            if single is None:
                raise TargetError(
                    f"Output() needs a model with one output per sample; got output shape "
                    f"{tuple(output.shape)}. Pass Output(index) or a class index."
                )
            return single
        try:
            out = output[(slice(None),) + self.index]
        except IndexError as err:
            raise TargetError(
                f"{self!r} is out of range for model output of shape {tuple(output.shape)}."
            ) from err
        if out.ndim != 1:
            raise TargetError(
                f"{self!r} selects shape {tuple(out.shape)} from model output "
                f"{tuple(output.shape)}; it must select one value per sample."
            )
        return out

    def __repr__(self) -> str:
        if len(self.index) == 1:
            return f"Output({self.index[0]})"
        return f"Output({self.index})" if self.index else "Output()"


class Score(Target):
    """Any callable mapping the model output (R, *O) to one score per row (R,).

    Parameters
    ----------
    fn : callable
        ``fn(output) -> Tensor (R,)``.
    raw : bool, default False
        Hand ``fn`` the model's output as the model returned it (a tuple, a dict, a Hugging Face
        ``ModelOutput``: ``Score(lambda o: o["logits"][:, 1], raw=True)``) rather than the tensor
        the explainer's ``output=`` option selects (by default a ``ModelOutput``'s logits).
    """

    def __init__(self, fn: Callable[[Any], torch.Tensor], *, raw: bool = False) -> None:
        if not callable(fn):
            raise TargetError(f"Score expects a callable. Got {type(fn).__name__} instead.")
        if not isinstance(raw, bool):
            raise TargetError(f"Score's 'raw' must be True or False. Got {raw!r} instead.")
        self.fn = fn
        self.raw = raw

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        try:
            out = self.fn(output)
        except SalienceError:
            raise
        except Exception as err:
            what = (
                f"a model output of shape {tuple(output.shape)}, dtype {output.dtype}"
                if isinstance(output, torch.Tensor)
                else f"the model's {type(output).__name__} output"
            )
            raise TargetError(
                f"Score function {getattr(self.fn, '__name__', self.fn)!r} raised "
                f"{type(err).__name__}: {err} (on {what})."
            ) from err
        rows = index.shape[0]
        if not isinstance(out, torch.Tensor) or out.shape != (rows,):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TargetError(
                f"Score function {getattr(self.fn, '__name__', self.fn)!r} must return one score "
                f"per row, shape ({rows},). Got {shape} instead."
            )
        return out

    def __repr__(self) -> str:
        raw = ", raw=True" if self.raw else ""
        return f"Score({getattr(self.fn, '__name__', repr(self.fn))}{raw})"


class Predicted(Target):
    """``target=None``: the predicted class of a classifier, or the single output of a model
    with one output per sample. Resolved once from the model's output at the explained input."""

    def __init__(self) -> None:
        self._bound: Target | None = None

    def bind(self, n_samples: int, reference: Reference) -> Target:
        out = reference()
        if _single_output(out) is not None:
            return Output()
        if out.ndim != 2:
            raise TargetError(
                f"target=None needs a classifier output (B, K) or one output per sample; got "
                f"model output of shape {tuple(out.shape)}. Pass Output(index) or Score(fn)."
            )
        return Class(out.argmax(dim=1)).bind(n_samples, reference)

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise TargetError("Predicted() must be bound before use; this is a bug in the caller.")


TargetLike = None | int | Sequence[int] | torch.Tensor | Target | Callable[..., Any]


def as_target(target: TargetLike) -> Target:
    """Coerce the accepted target forms to a Target (the single coercion point).

    ``None`` -> Predicted(); ``int`` (also a numpy integer) or a per-sample sequence, tensor or
    numpy array of ints -> Class;
    a Target -> itself; any other callable -> Score.
    """
    if target is None:
        return Predicted()
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise TargetError(f"target must be an int class index, not a bool. Got {target!r}.")
    if isinstance(target, str) or (isinstance(target, Sequence) and target and isinstance(target[0], str)):
        raise TargetError(  # explain(..., class_names=[...]) turns names into indices first
            f"target {target!r} names a class: pass class_names=[...] to explain() (or explain "
            "mne.Epochs, whose event names are the class names), or give the class index."
        )
    if isinstance(target, (Integral, torch.Tensor, np.ndarray)) or (
        isinstance(target, Sequence) and not isinstance(target, (str, bytes))
    ):
        return Class(target)
    if callable(target):
        return Score(target)
    raise TargetError(
        "target must be None, an int, a sequence/tensor of ints (one per sample), a Target "
        "(Class, Output, Contrast, Probability, LogProbability, Score) or a callable mapping the "
        f"model output (B, ...) to (B,). Got {type(target).__name__} instead."
    )


from ._contrast import Contrast  # noqa: E402  (a Target subclass, in its own module)
