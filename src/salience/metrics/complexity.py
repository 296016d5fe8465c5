"""Complexity metrics: how concentrated an attribution is (no model calls)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from ..attribution import Attribution
from ..errors import caller
from ._checks import unpack
from ._stats import rescaled
from .base import Metric

__all__ = ["sparseness", "complexity", "Sparseness", "Complexity"]


@caller("sparseness")
def sparseness(attribution: torch.Tensor | Attribution) -> torch.Tensor:
    """Gini index of ``|attribution|`` per sample (1: all mass on one element, 0: uniform).

    ``sum_k (2k - n - 1) |a|_(k) / (n sum |a|)`` with ``|a|_(k)`` sorted ascending, k = 1..n.
    The absolute value is part of the definition. Quantus adds 1e-7 to every element first
    (which makes an all-zero map score 0); here an all-zero map gives NaN.

    Parameters
    ----------
    attribution : Tensor of shape (B, ...) or Attribution

    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Chalasani et al., "Concise Explanations of Neural Networks using Adversarial Training",
    ICML 2020.
    """
    a, _, _ = unpack(attribution, None, None)
    # rescaled exactly by a power of two per sample: the index is scale-invariant, and the sums
    # of values near the dtype's maximum cannot overflow
    v = rescaled(a.flatten(1).abs()).sort(dim=1).values
    n = v.shape[1]
    k = torch.arange(1, n + 1, device=v.device, dtype=v.dtype)
    total = v.sum(1)
    num = ((2 * k - n - 1) * v).sum(1)
    return torch.where(
        total > 0,
        num / (n * torch.where(total > 0, total, torch.ones_like(total))),
        torch.full_like(total, float("nan")),
    )


@caller("complexity")
def complexity(attribution: torch.Tensor | Attribution) -> torch.Tensor:
    """Entropy (natural log) of the fractional contributions ``|a_i| / sum |a|`` per sample.

    ``0 log 0 = 0``; NaN for an all-zero map. Quantus computes ``-sum p log(p + 1e-12)``.

    References
    ----------
    Bhatt et al., "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020.
    """
    a, _, _ = unpack(attribution, None, None)
    v = rescaled(a.flatten(1).abs())  # exact, scale-invariant: the sum cannot overflow
    total = v.sum(1, keepdim=True)
    p = v / torch.where(total > 0, total, torch.ones_like(total))
    ent = -torch.where(
        p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p)
    ).sum(1)
    return torch.where(total[:, 0] > 0, ent, torch.full_like(ent, float("nan")))


class Sparseness(Metric):
    """:func:`sparseness` as a metric class (higher is better: sparser)."""

    higher_is_better: ClassVar[bool | None] = True

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: Any = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return sparseness(attribution)


class Complexity(Metric):
    """:func:`complexity` as a metric class (lower is better: less complex)."""

    higher_is_better: ClassVar[bool | None] = False

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: Any = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return complexity(attribution)
