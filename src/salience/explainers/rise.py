"""RISE: randomized input sampling, a forward-only (black-box) saliency method."""

from __future__ import annotations

from typing import Any

import torch

from .._engine import ScoreFunction
from .._validation import check_int, check_option
from ..errors import ParameterError
from ..layout import LayoutLike
from ..masking import GridMasker, Masker, SubstrateLike
from ..masking.maskers import AxisSizes
from ._perturbation import (
    block_size,
    check_bool,
    check_generator,
    check_masker,
    check_substrate,
    masked_scores,
)
from ._progress import progress_bar
from .base import Explainer, Parts
from .smoothgrad import make_generator

__all__ = ["RISE"]


class RISE(Explainer):
    """RISE: the score-weighted average of random masks.

    ``S = 1 / (N * p_keep) * sum_i score(fill(x, M_i)) * M_i`` over ``N`` random masks ``M_i``
    (values in [0, 1], 1 = keep) drawn by a :class:`~salience.masking.GridMasker` over named axes
    (or any random masker), where ``fill(x, M) = x * M + (1 - M) * substrate(x)``. Masks are drawn
    once per call and shared by every sample of the batch, so with a fixed ``generator`` the map of
    a sample does not depend on the rest of the batch. The masks are rendered and scored in blocks
    (memory bounded by ``batch_size`` rows and a block of masks, never all masks at once); only
    forward passes are made, so any callable model works (see :class:`~salience.NumpyModel` for
    scikit-learn).

    Parameters
    ----------
    model : callable
    n_masks : int, default 4000
    cells : int or dict of str to int, optional
        Grid cells per axis name, e.g. ``{"t": 16}``, ``{"h": 7, "w": 7}``, ``{"f": 32}``; an int
        applies to every spatial axis; default 8 per spatial axis.
    p_keep : float, default 0.5
        Probability that a cell is kept.
    masker : Masker, optional
        Replaces ``cells``/``p_keep`` (e.g. ``Segments(20, p_keep=0.5)`` for long series).
    substrate : str, float or Substrate, default 0.0
        What masked values become (``"zeros"``, ``"mean"``, ``"blur"``, ``"interpolate"``, a
        constant, or a :mod:`salience.masking` substrate).
    normalization : {"p_keep", "coverage"}, default "p_keep"
        Divide by ``N * p_keep`` (the paper) or by ``sum_i M_i`` per position (Xplique's variant,
        an estimate of E[score | position kept]).
    generator : torch.Generator, optional
        Source of the masks (the global RNG is never used).
    progress : bool, default True
        Show a tqdm bar over the masks (if tqdm is installed).
    batch_size : int, optional
    layout : str or Layout, optional

    Returns
    -------
    Attributions of shape (B, *mask_shape): 1 on the axes the masks do not vary along (e.g.
    (B, 1, T) for signals, (B, 1, H, W) for images), broadcastable to ``x``.

    References
    ----------
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018.

    Examples
    --------
    >>> import torch, salience as sl
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3)).eval()
    >>> rise = sl.RISE(model, n_masks=64, cells={"t": 5}, generator=torch.Generator().manual_seed(0),
    ...                progress=False)
    >>> rise(torch.randn(2, 2, 20), target=1).shape
    (2, 1, 20)
    """

    is_stochastic = True

    def __init__(
        self,
        model: Any,
        *,
        n_masks: int = 4000,
        cells: AxisSizes | None = None,
        p_keep: float = 0.5,
        masker: Masker | None = None,
        substrate: SubstrateLike = 0.0,
        normalization: str = "p_keep",
        generator: torch.Generator | None = None,
        progress: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout)
        owner = type(self).__name__
        self.n_masks = check_int(n_masks, "n_masks", owner, low=1)
        if masker is None:
            masker = GridMasker(cells, p_keep=p_keep)
        else:
            masker = check_masker(masker, owner)
            if cells is not None:
                raise ParameterError(f"{owner}: pass either cells=... or masker=..., not both.")
        self.masker = masker
        self.substrate = check_substrate(substrate, owner)
        self.normalization = check_option(normalization, "normalization", owner, ("p_keep", "coverage"))
        if self.normalization == "p_keep" and getattr(masker, "p_keep", None) is None:
            raise ParameterError(
                f"{owner}: normalization='p_keep' needs a random masker with a p_keep attribute; "
                f"{masker!r} has none. Use normalization='coverage'."
            )
        self.generator = check_generator(generator, owner)
        self.progress = check_bool(progress, "progress", owner)

    def __repr__(self) -> str:
        return f"RISE(n_masks={self.n_masks}, masker={self.masker!r}, substrate={self.substrate!r})"

    def _attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        gen = make_generator(self.generator)
        lay = score.layout
        n = self.n_masks
        plan = self.masker.plan(x.shape[1:], lay, n, generator=gen, device=x.device, dtype=x.dtype)
        n = plan.n
        sub = self.substrate
        base = None if sub.needs_mask else sub(x, lay)
        b = x.shape[0]
        acc = torch.zeros((b, *plan.shape), dtype=x.dtype, device=x.device)
        cover = torch.zeros(plan.shape, dtype=x.dtype, device=x.device)
        mask_numel = int(torch.Size(plan.shape).numel())
        block = block_size(n, b, score.batch_size, mask_numel)
        with progress_bar(n, "RISE masks", self.progress) as bar:
            for k0 in range(0, n, block):
                masks = plan(k0, min(n, k0 + block))
                s = masked_scores(x, score, masks, sub, base)  # (B, K)
                acc += torch.tensordot(s, masks, dims=([1], [0]))
                cover += masks.sum(0)
                bar.update(masks.shape[0])
        if self.normalization == "p_keep":
            values = acc / (n * float(self.masker.p_keep))  # type: ignore[attr-defined]
        else:
            values = torch.where(cover > 0, acc / cover.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(acc))
        return Parts(values, info={"n_masks": n, "masker": repr(self.masker), "normalization": self.normalization})
