"""The fill ``x * m + (1 - m) * substrate(x)``: :func:`fill` for one mask at a time and
:class:`Filler`, the row builder of the perturbation explainers and the faithfulness metrics.

Examples
--------
>>> import torch
>>> from salience.layout import Layout
>>> from salience.masking import Interpolate
>>> x = torch.arange(6.0).reshape(1, 1, 6)
>>> m = torch.tensor([[[1.0, 0, 0, 0, 0, 1]]])
>>> fill(x, m, "zeros", Layout("b c t"))
tensor([[[0., 0., 0., 0., 0., 5.]]])
>>> fill(x, m, Interpolate(), Layout("b c t"))
tensor([[[0., 1., 2., 3., 4., 5.]]])
"""

from __future__ import annotations

import torch

from .._validation import non_finite
from ..errors import ParameterError, SalienceError, ShapeError, caller, current_caller
from ..layout import LayoutLike
from .substrates import Constant, SubstrateLike, _checked, as_substrate

__all__ = ["fill", "Filler"]


@caller("fill")
def fill(
    x: torch.Tensor,
    mask: torch.Tensor,
    substrate: SubstrateLike,
    layout: LayoutLike,
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x * mask + (1 - mask) * substrate(x)``: keep where the mask is 1, replace where it is 0.

    Parameters
    ----------
    x : Tensor of shape (R, *S)
    mask : Tensor broadcastable to ``x``
        Values in [0, 1]; 1 = keep.
    substrate : Substrate, str or float
        See :func:`as_substrate`.
    layout : Layout or str
        Axis names of ``x`` (first axis: rows).
    base : Tensor broadcastable to ``x``, optional
        A precomputed substrate (for substrates without ``needs_mask``), to reuse it over many masks.

    Returns
    -------
    Tensor of shape (R, *S)
    """
    sub = as_substrate(substrate)
    if base is None:
        base = sub(x, layout, mask if sub.needs_mask else None)
    mask = mask.to(x.dtype)
    return x * mask + (1 - mask) * base


class Filler:
    """Masked rows of one batch: ``x[i] * m + (1 - m) * substrate(x)[i]`` for many masks.

    The one row builder of the perturbation explainers (RISE, Occlusion, MaskUpdate) and the
    deletion/insertion/faithfulness metrics. A substrate that does not read the mask is computed
    once for the whole batch (so a :class:`Noise` image is shared by all masks of a sample and a
    per-sample :class:`Reference` fits); a mask-aware one is called on each chunk of rows.

    Parameters
    ----------
    x : Tensor of shape (B, *S)
    substrate : Substrate, str, float or Tensor
        See :func:`as_substrate`.
    layout : Layout or str
        Axis names of ``x``.
    owner : str, optional
        Named in error messages; by default the explainer or metric running
        (:func:`salience.errors.current_caller`).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(6.0).reshape(1, 1, 6)
    >>> Filler(x, 0.5, "b c t")(0, torch.tensor([[[1.0, 1, 0, 0, 1, 1]]]))
    tensor([[[0.0000, 1.0000, 0.5000, 0.5000, 4.0000, 5.0000]]])
    """

    def __init__(
        self, x: torch.Tensor, substrate: SubstrateLike, layout: LayoutLike, owner: str | None = None
    ) -> None:
        self.owner = owner or current_caller()
        self.x = x
        self.layout = _checked(layout, x)
        self.substrate = sub = as_substrate(substrate, self.owner)
        self.const = sub.value if isinstance(sub, Constant) else None
        self.base: torch.Tensor | None = None
        self.diff = x
        if not sub.needs_mask:
            base = self._substrate(x, None)
            self.base = base.to(dtype=x.dtype)
            if self.const != 0.0:
                self.diff = x - self.base

    def __call__(self, index: int | slice | torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows for the samples ``x[index]`` under ``mask`` (1 / True = keep).

        Parameters
        ----------
        index : int, slice or LongTensor of shape (R,)
            One sample (broadcast against a run of masks), a slice of the batch, or each row's
            sample.
        mask : Tensor broadcastable to ``x[index]`` (one mask per row, or a run of masks for an
            int ``index``)
            Float masks in [0, 1] give ``base + m * (x - base)``; bool masks select exactly
            (``where(keep, x, substrate)``).

        Returns
        -------
        Tensor of shape (R, *S)
        """
        sl = slice(index, index + 1) if isinstance(index, int) else index
        xb = self.x[sl]
        if mask.dtype == torch.bool:
            if self.const is not None:  # one pass (a where with a scalar: ~2x a clone + masked_fill)
                return torch.where(mask, xb, self.const)
            if self.base is not None:
                return torch.where(mask, xb, self.base[sl])
            xb = xb.expand(torch.broadcast_shapes(xb.shape, mask.shape))
            s = self._substrate(xb, torch.broadcast_to(mask, xb.shape).to(xb.dtype))
            return torch.where(mask, xb, s)
        if self.base is None:
            xb = xb.expand(torch.broadcast_shapes(xb.shape, mask.shape))
            mask = mask.to(xb.dtype)
            return xb * mask + (1 - mask) * self._substrate(xb, mask)
        if self.const == 0.0:
            return self.diff[sl] * mask
        return torch.addcmul(self.base[sl], mask, self.diff[sl])

    def _substrate(self, rows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The substrate of ``rows`` (with ``mask`` if it reads one), checked: a tensor of the
        rows' shape with finite values; an exception it raises becomes a ParameterError."""
        sub = self.substrate
        try:
            out = sub(rows, self.layout, mask) if sub.needs_mask else sub(rows, self.layout)
        except SalienceError:
            raise
        except Exception as err:
            raise ParameterError(
                f"{self.owner}: the substrate {sub!r} raised {type(err).__name__}: {err} (on rows of shape "
                f"{tuple(rows.shape)})."
            ) from err
        if not isinstance(out, torch.Tensor) or out.shape != rows.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(
                f"{self.owner}: the substrate {sub!r} must return a tensor of the input's shape "
                f"{tuple(rows.shape)}. Got {got}."
            )
        if out.is_complex() or (not out.is_floating_point() and out.dtype != rows.dtype):
            raise ParameterError(
                f"{self.owner}: the substrate {sub!r} must return real values of the rows' dtype "
                f"{rows.dtype}. Got dtype {out.dtype}."
            )
        n_bad = non_finite(out)
        if n_bad:
            raise ParameterError(
                f"{self.owner}: the substrate {sub!r} returned {n_bad} NaN/inf value(s) for finite rows of "
                f"shape {tuple(rows.shape)}; what replaces removed values must be finite."
            )
        return out
