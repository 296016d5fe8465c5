"""Shared machinery of the mask-based explainers (RISE, Occlusion): blocks of masks, lazy rows."""

from __future__ import annotations

from typing import Any

import torch

from ..engine import ScoreFunction
from ..errors import ParameterError, current_caller
from ..masking import Filler, Masker, Substrate, as_substrate

# masks of one block rendered at once: at most this many mask elements (32 MiB of float64)
_BLOCK_ELEMENTS = 2**22


def block_size(n_masks: int, n_samples: int, batch_size: int, mask_numel: int) -> int:
    """Masks per block: whole engine chunks of rows where possible, bounded mask memory."""
    per = max(1, -(-batch_size // n_samples))  # masks that fill one model call for all samples
    cap = max(1, _BLOCK_ELEMENTS // max(1, mask_numel))
    return max(1, min(n_masks, max(per, (cap // per) * per)))


def masked_scores(
    score: ScoreFunction,
    masks: torch.Tensor,
    filler: Filler,
    outputs: bool = False,
) -> torch.Tensor:
    """Scores of ``filler``'s rows for every sample ``b`` and mask ``k``: shape (B, K).

    Rows are built lazily per engine chunk (row ``r``: sample ``r // K``, mask ``r % K``), so
    memory stays bounded by ``batch_size`` rows plus the block of masks; each sample is broadcast
    against its run of masks (:class:`~salience.masking.Filler`). With ``outputs=True`` the raw
    model outputs (B, K, *O) are returned instead of the target's scores.
    """
    k_total = masks.shape[0]

    def rows(start: int, stop: int) -> torch.Tensor:
        out = []
        r = start
        while r < stop:
            b, k0 = divmod(r, k_total)
            k1 = min(k_total, k0 + (stop - r))
            out.append(filler(b, masks[k0:k1]))
            r += k1 - k0
        return out[0] if len(out) == 1 else torch.cat(out)

    return (score.outputs if outputs else score.values)(rows, n=k_total)


def check_masker(masker: Any) -> Masker:
    """``masker`` if it is a :class:`~salience.masking.Masker`; the error names the explainer
    being built (:func:`salience.errors.current_caller`)."""
    if not isinstance(masker, Masker):
        raise ParameterError(
            f"The 'masker' parameter of {current_caller()} must be a salience.masking.Masker (GridMasker, "
            f"SlidingWindow, Segments). Got {type(masker).__name__} instead."
        )
    return masker


def check_substrate(substrate: Any) -> Substrate:
    """``substrate`` as a :class:`~salience.masking.Substrate` (see
    :func:`~salience.masking.as_substrate`)."""
    return as_substrate(substrate)


__all__ = ["block_size", "masked_scores", "check_masker", "check_substrate"]
