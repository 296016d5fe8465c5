"""Continuity (Montavon et al. 2018), re-exported by :mod:`salience.metrics.stability`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._validation import check_batch_size, check_bool, check_int
from ..errors import ParameterError, caller, current_caller
from ..targets import TargetLike
from . import _stability as core
from ._checks import check_count

__all__ = ["continuity", "continuity_shifts"]


def _shift(v: torch.Tensor, t: int, axis: int, fill: torch.Tensor) -> torch.Tensor:
    """``v`` (one sample) translated by ``t`` along ``axis``, the uncovered part set to ``fill``."""
    out = fill.expand_as(v).clone()
    size = v.shape[axis]
    if abs(t) < size:
        if t >= 0:
            out.narrow(axis, t, size - t).copy_(v.narrow(axis, 0, size - t))
        else:
            out.narrow(axis, 0, size + t).copy_(v.narrow(axis, -t, size + t))
    return out


def continuity_shifts(size: int, n_steps: int) -> list[int]:
    """The translations of :func:`continuity`: ``-size + k * ((2 size + 1) // n_steps)`` for
    ``k = 1..n_steps`` (Quantus's grid, from the left edge towards the right)."""
    dx = (2 * size + 1) // n_steps
    return [-size + (k + 1) * dx for k in range(n_steps)]


@caller("continuity")
def continuity(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_steps: int = 28,
    axis: int = -1,
    fill: float | str = "min",
    keep_prediction: bool = False,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    batch_size: int | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Continuity: ``max_t ||e(x) - e(x_t)||_1 / ||x - x_t||_2`` over translations ``x_t`` of
    ``x`` along ``axis`` (the uncovered part set to ``fill``: a float, or "min", each sample's
    minimum, Quantus's "black"). The translations are :func:`continuity_shifts` of the axis's
    length; a translation of 0 (distance 0) is skipped. Deterministic (no noise).

    Parameters
    ----------
    n_steps : int, default 28
        Number of translations, at most ``2 * size + 1``.
    axis : int, default -1
        The translated axis (not the batch axis); -1 is Quantus's "x" direction, -2 its "y".
    explainer, x, target, keep_prediction, attribution, model, output, batch_size, progress,
    forward_args, forward_kwargs
        As in :func:`local_lipschitz_estimate`.

    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Montavon, Samek and Müller, "Methods for interpreting and understanding deep neural
    networks", Digital Signal Processing 73, 2018.
    """
    if isinstance(x, torch.Tensor) and x.ndim >= 2:
        ax = check_int(axis, "axis", low=-(x.ndim - 1), high=x.ndim - 1)
        if ax == 0:
            raise ParameterError(f"The 'axis' parameter of {current_caller()} must not be the batch axis 0.")
        ax = ax % x.ndim
    else:
        ax = 1
    steps = check_count(n_steps, "n_steps")
    size = x.shape[ax] if isinstance(x, torch.Tensor) and x.ndim >= 2 else 1
    if steps > 2 * size + 1:
        raise ParameterError(
            f"The 'n_steps' parameter of {current_caller()} must be at most 2 * {size} + 1 = {2 * size + 1} "
            f"(the axis has {size} elements). Got {steps} instead."
        )
    if not (fill == "min" or (isinstance(fill, (int, float)) and not isinstance(fill, bool))):
        raise ParameterError(
            f"The 'fill' parameter of {current_caller()} must be a float or 'min'. Got {fill!r}."
        )
    shifts = continuity_shifts(size, steps)

    def draw(zs: torch.Tensor, samples: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        out = torch.empty_like(zs)
        for i in range(stop - start):
            v = zs[i]
            f = v.min() if fill == "min" else torch.tensor(float(fill), dtype=v.dtype, device=v.device)
            out[i] = _shift(v, shifts[(start + i) % steps], ax - 1, f)
        return out

    def ratio(r: core.Rows) -> torch.Tensor:
        den = core.distance(r.z, r.zp).to(r.ref.device, r.ref.dtype)
        num = core.distance(r.ref, r.expl, ord=1.0)
        return torch.where(den > 0, num / torch.where(den > 0, den, 1), torch.nan)

    values = core.run(
        explainer,
        x,
        target,
        n=steps,
        draw=draw,
        ratio=ratio,
        attribution=attribution,
        model=model,
        output=output,
        outputs=False,
        layer=None,
        keep_prediction=check_bool(keep_prediction, "keep_prediction"),
        domain=None,
        layout=None,
        batch_size=check_batch_size(batch_size),
        progress=check_bool(progress, "progress"),
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )
    return core.nanmax(values)
