"""``Contrast``: a target's score minus foil classes' (or a fixed value), a class of
:mod:`salience.targets` kept in its own module."""

from __future__ import annotations

import copy
from typing import Any, cast

import numpy as np
import torch

from .errors import TargetError
from .targets import ClassTarget, Reference, Target, as_target

__all__ = ["Contrast"]


class Contrast(Target):
    """Target score minus foil score: "why ``target`` rather than ``foils``?".

    Parameters
    ----------
    target : int, sequence of ints, or a class-like target (Class, Probability, LogProbability)
        The explained class; an ``int`` means ``Class(int)``. Any other Target when ``value`` is
        used (regression: ``Contrast(Output(3), value=0.5)``).
    foils : int, sequence of ints, or tensor/array of shape (B,) or (B, F), optional
        Foil classes, scored the same way as ``target``; with several foils their mean is
        subtracted. A list is shared by all samples; a tensor or numpy array of shape (B,)
        gives one foil per sample. A foil equal to the target class is refused.
    value : float, optional
        A foil value instead of foil classes (regression): score = target score - value.
    quadratic : bool, default False
        Explain the squared difference (SignalGrad-CAM's ``quadratic_contrastive_score``).
    """

    def __init__(
        self,
        target: Any,
        foils: Any = None,
        *,
        value: float | None = None,
        quadratic: bool = False,
    ) -> None:
        if (foils is None) == (value is None):
            raise TargetError("Contrast needs exactly one of foils=... (classes) or value=... .")
        self.target = as_target(target) if not isinstance(target, Target) else target
        if foils is not None and not isinstance(self.target, ClassTarget):
            raise TargetError(
                f"Contrast with foil classes needs a class-like target (int, Class, Probability, "
                f"LogProbability). Got {self.target!r}; use value=... for other targets."
            )
        self.foils = foils
        self.value = value
        self.quadratic = bool(quadratic)
        self._foils: list[Target] = []

    def bind(self, n_samples: int, reference: Reference) -> Target:
        new = copy.copy(self)
        new.target = self.target.bind(n_samples, reference)
        if self.foils is not None:
            f = torch.as_tensor(self.foils)
            cols: list[int] | list[torch.Tensor]
            if f.ndim == 0:
                cols = [int(f)]
            elif f.ndim == 1 and not isinstance(self.foils, (torch.Tensor, np.ndarray)):
                cols = [int(v) for v in f]  # a list of foil classes shared by all samples
            elif f.ndim == 1:
                cols = [f]  # one foil per sample
            elif f.ndim == 2 and f.shape[0] == n_samples:
                cols = [f[:, j] for j in range(f.shape[1])]
            else:
                raise TargetError(
                    f"Contrast foils must be an int, a list of ints, or a tensor of shape (B,) or "
                    f"(B, F) with B={n_samples}. Got shape {tuple(f.shape)} instead."
                )
            base = cast(ClassTarget, self.target)  # checked in __init__
            new._foils = [base.with_index(c).bind(n_samples, reference) for c in cols]
            classes = new.target.explained()
            if isinstance(classes, torch.Tensor):
                for c in cols:
                    same = torch.as_tensor(c, device=classes.device).expand_as(classes) == classes
                    if bool(same.any()):
                        i = int(same.nonzero()[0, 0])
                        raise TargetError(
                            f"Contrast: the foil class {int(classes[i])} is the target class itself "
                            f"(sample {i}), so its contrast is zero everywhere. Pick foils other "
                            "than the target."
                        )
        return new

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        s = self.target(output, index)
        if self._foils:
            foil = torch.stack([t(output, index) for t in self._foils]).mean(0)
        else:
            foil = torch.as_tensor(self.value, dtype=s.dtype, device=s.device)
        d = s - foil
        return d * d if self.quadratic else d

    def explained(self) -> Any:
        return self.target.explained()

    def __repr__(self) -> str:
        other = f"foils={self.foils!r}" if self.foils is not None else f"value={self.value!r}"
        return f"Contrast({self.target!r}, {other}, quadratic={self.quadratic})"
