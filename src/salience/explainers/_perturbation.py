"""Shared machinery of the mask-based explainers (RISE, Occlusion): blocks of masks, lazy rows."""

from __future__ import annotations

from typing import Any

import torch

from .._engine import ScoreFunction
from ..errors import ParameterError
from ..masking import Constant, Masker, Substrate, as_substrate, fill

# masks of one block rendered at once: at most this many mask elements (32 MiB of float64)
_BLOCK_ELEMENTS = 2**22


def block_size(n_masks: int, n_samples: int, batch_size: int, mask_numel: int) -> int:
    """Masks per block: whole engine chunks of rows where possible, bounded mask memory."""
    per = max(1, -(-batch_size // n_samples))  # masks that fill one model call for all samples
    cap = max(1, _BLOCK_ELEMENTS // max(1, mask_numel))
    return max(1, min(n_masks, max(per, (cap // per) * per)))


def masked_scores(
    x: torch.Tensor,
    score: ScoreFunction,
    masks: torch.Tensor,
    sub: Substrate,
    base: torch.Tensor | None,
    outputs: bool = False,
) -> torch.Tensor:
    """Scores of ``fill(x[b], masks[k])`` for every sample ``b`` and mask ``k``: shape (B, K).

    Rows are built lazily per engine chunk (row ``r``: sample ``r // K``, mask ``r % K``), so
    memory stays bounded by ``batch_size`` rows plus the block of masks. With a precomputed
    substrate ``base`` (B, *S) a row is ``base[b] + m * (x[b] - base[b])`` (= ``x*m + (1-m)*base``
    up to rounding), built by broadcasting one sample against its run of masks. With
    ``outputs=True`` the raw model outputs (B, K, *O) are returned instead of the target's scores.
    """
    k_total = masks.shape[0]
    lay = score.layout
    if base is not None:
        zero = isinstance(sub, Constant) and sub.value == 0.0
        diff = x if zero else x - base

    def piece(b: int, k0: int, k1: int) -> torch.Tensor:
        m = masks[k0:k1]
        if base is None:
            xb = x[b : b + 1].expand(k1 - k0, *x.shape[1:])
            return fill(xb, m, sub, lay)
        if zero:
            return diff[b : b + 1] * m
        return torch.addcmul(base[b : b + 1], m, diff[b : b + 1])

    def rows(start: int, stop: int) -> torch.Tensor:
        out = []
        r = start
        while r < stop:
            b, k0 = divmod(r, k_total)
            k1 = min(k_total, k0 + (stop - r))
            out.append(piece(b, k0, k1))
            r += k1 - k0
        return out[0] if len(out) == 1 else torch.cat(out)

    return (score.outputs if outputs else score.values)(rows, n=k_total)


def check_masker(masker: Any, owner: str) -> Masker:
    if not isinstance(masker, Masker):
        raise ParameterError(
            f"The 'masker' parameter of {owner} must be a salience.masking.Masker (GridMasker, "
            f"SlidingWindow, Segments). Got {type(masker).__name__} instead."
        )
    return masker


def check_substrate(substrate: Any, owner: str) -> Substrate:
    return as_substrate(substrate, owner)


__all__ = ["block_size", "masked_scores", "check_masker", "check_substrate"]
