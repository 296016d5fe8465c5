"""Statistics of the metrics, exact at any scale: rows rescaled by powers of two, correlations
(Pearson, Spearman), cosine similarity and average ranks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import DTypeError, ParameterError, ShapeError, current_caller
from ._checks import call_user


def rescaled(a: torch.Tensor) -> torch.Tensor:
    """Each row of ``a`` (axis 0) times the power of two that brings its largest magnitude into
    [0.5, 1).

    Multiplying by a power of two is exact, so a scale-invariant quantity (a ratio of sums, a
    correlation, a Gini index) computed on the result equals the one computed on ``a`` bit for
    bit, except that sums no longer overflow (values near the dtype's maximum) and squares no
    longer underflow (tiny values). An all-zero row is left as it is.

    Parameters
    ----------
    a : Tensor of shape (B, ...)
        Real floating point, finite.

    Returns
    -------
    Tensor of shape (B, ...)
    """
    if a.ndim == 0 or a.numel() == 0:
        return a
    peak = a.detach().abs().reshape(a.shape[0], -1).amax(1)
    _, exponent = torch.frexp(peak)
    # 2 ** -exponent in two factors: for subnormal rows the whole factor would overflow the dtype
    half = torch.div(-exponent, 2, rounding_mode="floor")
    shape = (-1,) + (1,) * (a.ndim - 1)
    one = torch.ones_like(peak)
    first = torch.ldexp(one, half).reshape(shape)
    second = torch.ldexp(one, -exponent - half).reshape(shape)
    return a * first * second


def similarity(a: torch.Tensor, b: torch.Tensor, kind: str | Callable) -> torch.Tensor:
    """Per-row similarity of two (B, F) tensors: 'spearman', 'pearson', 'cosine' or a callable.

    A callable must return one real floating-point value per row, shape (B,) (ShapeError,
    DTypeError or ParameterError otherwise: a constant such as ``1.0`` is not a per-sample
    score); its values are returned as they are (NaN included), and an exception it raises
    becomes a ParameterError. A correlation needs at least 2 values per row (ShapeError
    otherwise). The built-in similarities are scale-invariant and computed on rows rescaled
    exactly by powers of two (:func:`rescaled`).
    """
    if callable(kind):
        out = call_user(kind, (a, b), "similarity")
        if not isinstance(out, torch.Tensor):
            raise ParameterError(
                f"The 'similarity' callable of {current_caller()} must return a tensor of shape ({a.shape[0]},), "
                f"one value per sample. Got {type(out).__name__} {out!r} instead."
            )
        if out.shape != (a.shape[0],):
            raise ShapeError(
                f"The 'similarity' callable of {current_caller()} must return a tensor of shape ({a.shape[0]},), "
                f"one value per sample. Got shape {tuple(out.shape)} instead."
            )
        if out.is_complex() or not out.is_floating_point():
            raise DTypeError(
                f"The 'similarity' callable of {current_caller()} must return real floating-point values. Got "
                f"dtype {out.dtype} instead."
            )
        return out
    if kind in ("spearman", "pearson") and a.shape[-1] < 2:
        raise ShapeError(
            f"{current_caller()}: a {kind} correlation needs at least 2 values per sample. Got "
            f"{a.shape[-1]} (the compared tensors have shape {tuple(a.shape)}); use "
            f"similarity='cosine' or more elements."
        )
    if kind == "spearman":
        return pearson(rankdata(a), rankdata(b))
    if kind == "pearson":
        return pearson(a, b)
    if kind == "cosine":
        # scale-invariant: rows rescaled exactly, so huge values do not overflow the norms and
        # subnormal ones do not underflow them
        return torch.nn.functional.cosine_similarity(rescaled(a), rescaled(b), dim=1)
    raise ParameterError(
        f"similarity must be 'spearman', 'pearson', 'cosine' or a callable (a, b) -> (B,). Got {kind!r}."
    )


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis of (B, F) tensors; NaN where either row is constant.

    The rows are first rescaled by powers of two (:func:`rescaled`, exact), so values near the
    dtype's limits neither overflow nor underflow the sums of squares.
    """
    a = rescaled(a)
    b = rescaled(b)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    num = (a * b).sum(-1)
    den = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    return torch.where(
        den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, float("nan"))
    )


def rankdata(a: torch.Tensor) -> torch.Tensor:
    """Ranks along the last axis with ties given their average rank (scipy's ``rankdata``)."""
    n = a.shape[-1]
    flat = a.reshape(-1, n)
    sorted_, order = flat.sort(dim=-1, stable=True)
    # average ranks over runs of equal values
    new = torch.ones_like(sorted_, dtype=torch.bool)
    new[:, 1:] = sorted_[:, 1:] != sorted_[:, :-1]
    group = new.cumsum(-1) - 1  # group id of each sorted position
    pos = torch.arange(1, n + 1, device=a.device, dtype=a.dtype).expand_as(sorted_)
    total = torch.zeros_like(sorted_).scatter_add_(1, group, pos)
    count = torch.zeros_like(sorted_).scatter_add_(1, group, torch.ones_like(sorted_))
    avg = (total / count.clamp_min(1)).gather(1, group)
    ranks = torch.empty_like(sorted_).scatter_(1, order, avg)
    return ranks.reshape(a.shape)
