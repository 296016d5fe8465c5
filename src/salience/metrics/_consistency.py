"""Consistency (Dasgupta et al. 2022), re-exported by :mod:`salience.metrics.stability`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from .._validation import check_batch_size
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..targets import TargetLike
from . import _stability as core
from ._checks import call_user, check_count, unpack
from ._setup import prepare
from .base import Metric

__all__ = ["consistency", "Consistency"]


def _top_signs(a: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` largest ``|a|`` (ascending) and their signs, per row (B, 2k)."""
    k = min(k, a.shape[1])
    pos = a.abs().topk(k, dim=1).indices.sort(dim=1).values
    return torch.cat([pos.to(a.dtype), a.gather(1, pos).sign()], dim=1)


@caller("consistency")
def consistency(
    model: Any,
    x: torch.Tensor,
    attribution: Any,
    *,
    discretise: str | Callable[[torch.Tensor], torch.Tensor] = "top_signs",
    k: int = 5,
    output: Any = None,
    batch_size: int | None = None,
    layout: str | None = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Consistency: among the other samples of the batch whose explanation is discretised to the
    same label, the fraction predicted as the same class.

    A batch-level measure: each sample's value depends on the rest of ``x`` (it is not
    invariant to splitting the batch). NaN where no other sample shares the label.

    Parameters
    ----------
    model : callable
    x : Tensor of shape (B, *S)
    attribution : Tensor or Attribution of shape (B, ...)
    discretise : "top_signs" or callable, default "top_signs"
        "top_signs": the positions of the ``k`` largest ``|a|`` and their signs; a callable maps
        the flattened attributions (B, D) to labels (B,) or (B, K) (rows equal = same label).
    k : int, default 5
    output, batch_size, layout, forward_args, forward_kwargs
        As for the other model-based metrics.

    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Dasgupta, Frost and Moshkovitz, "Framework for Evaluating Faithfulness of Local
    Explanations", ICML 2022.
    """
    if not (discretise == "top_signs" or callable(discretise)):
        raise ParameterError(
            f"The 'discretise' parameter of {current_caller()} must be 'top_signs' or a callable "
            f"(B, D) -> labels. Got {discretise!r} instead."
        )
    k = check_count(k, "k")
    a, _, _ = unpack(attribution, None, None)
    x, _, score = prepare(
        model,
        x,
        None,
        batch_size=check_batch_size(batch_size),
        layout=layout,
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )
    b = x.shape[0]
    if a.shape[0] != b:
        raise ShapeError(
            f"{current_caller()}: the attribution must hold one map per input, {b} here. Got shape "
            f"{tuple(a.shape)} instead."
        )
    flat = a.reshape(b, -1)
    labels = (
        _top_signs(flat, k) if isinstance(discretise, str) else call_user(discretise, (flat,), "discretise")
    )
    if not isinstance(labels, torch.Tensor) or labels.shape[0] != b or labels.ndim > 2:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ShapeError(
            f"{current_caller()}: discretise must return labels (B,) or (B, K) with B={b}. Got {got}."
        )
    labels = labels.reshape(b, -1).to(a.device)
    pred = core.flat_prediction(score.reference_output()).to(a.device)
    other = ~torch.eye(b, dtype=torch.bool, device=a.device)
    same_label = (labels[:, None, :] == labels[None, :, :]).all(-1) & other
    same_pred = pred[:, None] == pred[None, :]
    count = same_label.sum(1)
    hits = (same_label & same_pred).sum(1)
    out = hits.to(x.dtype) / count.clamp_min(1).to(x.dtype)
    return torch.where(count > 0, out, torch.full_like(out, torch.nan)).to(x.device)


class Consistency(Metric):
    """:func:`consistency` as a metric class (higher is better; batch-level, see the function)."""

    higher_is_better: ClassVar[bool | None] = True
    requires_model: ClassVar[bool] = True

    def __init__(
        self,
        *,
        discretise: str | Callable[[torch.Tensor], torch.Tensor] = "top_signs",
        k: int = 5,
        batch_size: int | None = None,
        output: Any = None,
    ) -> None:
        if not (discretise == "top_signs" or callable(discretise)):
            raise ParameterError(
                f"The 'discretise' parameter of Consistency must be 'top_signs' or a callable. Got {discretise!r}."
            )
        self.discretise, self.k = discretise, check_count(k, "k")
        self.batch_size, self.output = check_batch_size(batch_size), output

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: TargetLike = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return consistency(
            model,
            x,
            attribution,
            discretise=self.discretise,
            k=self.k,
            output=self.output,
            batch_size=self.batch_size,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
