"""RISE: randomized input sampling, a forward-only (black-box) saliency method."""

from __future__ import annotations

from typing import Any

import torch

from .._progress import progress_bar
from .._validation import check_bool, check_generator, check_int, check_option, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError
from ..layout import LayoutLike
from ..masking import Filler, GridMasker, Masker, SubstrateLike
from ..masking.maskers import AxisSizes
from ..targets import ClassTarget
from ._perturbation import (
    block_size,
    check_masker,
    check_substrate,
    masked_scores,
)

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
    shift : bool, default True
        Random shift of the upsampled grid (RISE); False resizes the grid to the input exactly
        (``cells`` equal to the axis length then gives element-sized binary cells).
    masker : Masker, optional
        Replaces ``cells``/``p_keep`` (e.g. ``Segments(20, p_keep=0.5)`` for long series).
    substrate : str, float or Substrate, default 0.0
        What masked values become (``"zeros"``, ``"mean"``, ``"blur"``, ``"interpolate"``, a
        constant, or a :mod:`salience.masking` substrate).
    normalization : {"p_keep", "coverage"}, default "p_keep"
        Divide by ``N * p_keep`` (the paper) or by ``sum_i M_i`` per position (Xplique's variant,
        an estimate of E[score | position kept]). The name follows RISE and Xplique; it picks
        the Monte-Carlo estimator's denominator and is not a display normalisation (the map keeps
        the score's units and sign; rescaling belongs to plotting).
    all_classes : bool, default False
        Explain every model output from the same forward passes (the original RISE's matrix
        product): values of shape (B, K, *spatial) with the channel axis ``c`` replaced by an
        output axis ``k`` in the layout (K = the number of outputs per sample, flattened). The
        masks must be shared across channels (the default). ``target`` then only selects the
        recorded score.
    generator : torch.Generator, optional
        Source of the masks (the global RNG is never used).
    progress : bool, default True
        Show a tqdm bar over the masks (if tqdm is installed).
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

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
        shift: bool = True,
        masker: Masker | None = None,
        substrate: SubstrateLike = 0.0,
        normalization: str = "p_keep",
        all_classes: bool = False,
        generator: torch.Generator | None = None,
        progress: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.n_masks = check_int(n_masks, "n_masks", low=1)
        if masker is not None:
            masker = check_masker(masker)
            if cells is not None:
                raise ParameterError(f"{self.name}: pass either cells=... or masker=..., not both.")
        self.cells = cells
        self.p_keep = p_keep
        self.shift = shift
        self.masker = masker
        self.substrate = check_substrate(substrate)
        self.normalization = check_option(normalization, "normalization", options=("p_keep", "coverage"))
        built = self._masker()  # validates cells, p_keep and shift
        if self.normalization == "p_keep" and getattr(built, "p_keep", None) is None:
            raise ParameterError(
                f"{self.name}: normalization='p_keep' needs a random masker with a p_keep attribute; "
                f"{built!r} has none. Use normalization='coverage'."
            )
        self.all_classes = check_bool(all_classes, "all_classes")
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")

    def _masker(self) -> Masker:
        """The masker in use: ``masker``, or the grid built from ``cells``/``p_keep``/``shift``."""
        if self.masker is not None:
            return self.masker
        return GridMasker(self.cells, p_keep=self.p_keep, shift=self.shift)

    def __repr__(self) -> str:
        return f"RISE(n_masks={self.n_masks}, masker={self._masker()!r}, substrate={self.substrate!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        return self._run(x, score, per_class=False)

    def _class_maps(self, x: torch.Tensor, score: ScoreFunction) -> torch.Tensor | None:
        """The maps of every class from one set of masked forward passes, for wrappers that
        compare classes (ClassRelevant): shape (B, K, *M) with M the shape of one map, class
        ``k`` scored as ``score.target`` scores it (logit, probability, log-probability).

        Equal to running RISE once per class with the same masks (the same generator state),
        at 1/K of the model calls. None where that does not apply (``all_classes=True``, or a
        target that is not a class target).
        """
        if self.all_classes or not isinstance(score.target, ClassTarget):
            return None
        return self._run(x, score, per_class=True).values

    def _run(self, x: torch.Tensor, score: ScoreFunction, *, per_class: bool) -> Parts:
        gen = make_generator(self.generator)
        lay = score.layout
        n = self.n_masks
        masker = self._masker()
        plan = masker.plan(x.shape[1:], lay, n, generator=gen, device=x.device, dtype=x.dtype)
        n = plan.n
        out_layout = None
        if self.all_classes:
            c_axis = lay.axes("c")[0] - 1 if "c" in lay.names else None
            if c_axis is None or plan.shape[c_axis] != 1:
                raise ParameterError(
                    f"RISE(all_classes=True) puts the outputs on the channel axis, so it needs a "
                    f"layout with 'c' and masks shared across channels; got layout {lay} and mask "
                    f"shape {plan.shape}."
                )
            out_layout = lay.replace("c", "k")
        filler = Filler(x, self.substrate, lay)
        b = x.shape[0]
        acc: torch.Tensor | None = None
        cover = torch.zeros(plan.shape, dtype=x.dtype, device=x.device)
        mask_numel = int(torch.Size(plan.shape).numel())
        block = block_size(n, b, score.batch_size, mask_numel)
        with progress_bar(n, "RISE masks", self.progress) as bar:
            for k0 in range(0, n, block):
                masks = plan(k0, min(n, k0 + block))
                if self.all_classes:
                    o = masked_scores(score, masks, filler, outputs=True)  # (B, K, *O)
                    o = o.reshape(b, masks.shape[0], -1)
                    # (B, O, *mask_shape without c): the output axis takes the channel's place
                    m = masks.squeeze(1 + c_axis)  # type: ignore[operator]
                    part = torch.tensordot(o.transpose(1, 2), m, dims=([2], [0])).movedim(1, 1 + c_axis)  # type: ignore[operator]
                elif per_class:
                    o = masked_scores(score, masks, filler, outputs=True)  # (B, n, *O)
                    k = masks.shape[0]
                    s = score.target.class_scores(o.reshape(b * k, *o.shape[2:])).reshape(b, k, -1)  # type: ignore[attr-defined]
                    part = torch.tensordot(s.transpose(1, 2), masks, dims=([2], [0]))  # (B, K, *M)
                else:
                    s = masked_scores(score, masks, filler)  # (B, n)
                    part = torch.tensordot(s, masks, dims=([1], [0]))
                acc = part if acc is None else acc + part
                cover += masks.sum(0)
                bar.update(masks.shape[0])
        if acc is None:
            raise ParameterError(f"{self.name} needs at least one mask; got n_masks={n}.")
        if self.normalization == "p_keep":
            values = acc / (n * float(masker.p_keep))  # type: ignore[attr-defined]
        else:
            values = torch.where(
                cover > 0, acc / cover.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(acc)
            )
        info = {"n_masks": n, "masker": repr(masker), "normalization": self.normalization}
        return Parts(values, layout=out_layout, info=info)
