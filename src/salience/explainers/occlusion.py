"""Occlusion: the score drop when a window of the input is replaced by a substrate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from .._progress import progress_bar
from .._validation import check_bool
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError, current_caller
from ..layout import LayoutLike
from ..masking import Filler, Masker, MaskPlan, SlidingWindow, SubstrateLike
from ..masking.groups import Groups, GroupsLike, as_groups
from ..masking.maskers import AxisSizes
from ._perturbation import block_size, check_masker, check_substrate, masked_scores

__all__ = ["Occlusion"]


class _GroupMasker(Masker):
    """One mask per group of a grouping: 0 on the group's elements, 1 elsewhere (occlusion of
    feature groups, e.g. ``Occlusion(model, groups=...)``). Deterministic; the grouping must be
    shared by every sample (per-sample groupings: :class:`~salience.FeatureAblation`).

    Parameters
    ----------
    groups : Groups or integer Tensor
    """

    def __init__(self, groups: Any) -> None:
        self.groups = as_groups(groups)

    def __repr__(self) -> str:
        return f"_GroupMasker({self.groups!r})"

    def plan(
        self,
        shape: Sequence[int],
        layout: LayoutLike,
        n: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> MaskPlan:
        gids = self.groups.resolve(shape, layout)
        if gids.ids.shape[0] != 1:
            raise ParameterError(
                f"{current_caller()}: the groups {self.groups!r} give one grouping per sample; a masker "
                "needs one grouping shared by every sample (FeatureAblation takes per-sample groups)."
            )
        ids = gids.ids[0].to(device)

        def render(a: int, z: int) -> torch.Tensor:
            k = torch.arange(a, z, device=device).reshape(-1, *([1] * ids.ndim))
            return (ids.unsqueeze(0) != k).to(dtype)

        return MaskPlan(gids.n_groups, gids.shape, render)


class Occlusion(Explainer):
    """Occlusion: ``score(x) - score(fill(x, M_k))`` for every window ``k``, averaged per position.

    Each mask ``M_k`` (1 = keep, 0 = occluded) comes from a deterministic masker, by default a
    :class:`~salience.masking.SlidingWindow`. The drop of window ``k`` is credited to the
    positions it occludes, weighted by ``1 - M_k``, and each position's credits are divided by
    ``sum_k (1 - M_k)``, i.e. overlapping windows are averaged (Captum's convention; the sign is
    positive where occluding lowers the score). Positions no window covers get 0. Forward passes
    only; any callable model works.

    Parameters
    ----------
    model : callable
    window : int or dict of str to int, optional
        Window length per axis name, e.g. ``{"t": 25}`` or ``{"h": 8, "w": 8}``; an int applies
        to every spatial axis. Axes not named are occluded as a whole (all channels at once unless
        ``"c"`` is named).
    stride : int or dict of str to int, optional
        Default: the window (disjoint windows tiling the input). Captum's ``Occlusion``
        defaults to a stride of 1 (every window position); pass ``stride=1`` for its maps.
    masker : Masker, optional
        Instead of ``window``/``stride``: any deterministic masker, e.g. ``Segments(12)`` or
        ``Segments(boundaries=[...])`` for long series (beats, sleep epochs).
    groups : Groups or integer Tensor, optional
        Instead of ``window``/``stride``/``masker``: occlude each feature group of a grouping
        (:mod:`salience.masking.groups`: time segments, channels, patches, superpixels,
        frequency bands or components inside :class:`~salience.InDomain`), shared by every
        sample. With a grouping every element lies in one group, so the map equals (up to rounding)
        :class:`~salience.FeatureAblation`'s with the same groups and substrate.
    substrate : str, float or Substrate, default 0.0
        What occluded values become (``"zeros"``, ``"mean"``, ``"blur"``, ``"interpolate"``, ...).
    progress : bool, default True
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *mask_shape), e.g. (B, 1, T) when windows span all channels.

    References
    ----------
    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.

    Examples
    --------
    >>> import torch, salience as sl
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3)).eval()
    >>> sl.Occlusion(model, window={"t": 5}, progress=False)(torch.randn(2, 2, 20), target=0).shape
    (2, 1, 20)
    """

    def __init__(
        self,
        model: Any,
        *,
        window: AxisSizes | None = None,
        stride: AxisSizes | None = None,
        masker: Masker | None = None,
        groups: GroupsLike = None,
        substrate: SubstrateLike = 0.0,
        progress: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.groups: Groups | None = None
        if groups is not None:
            if window is not None or stride is not None or masker is not None:
                raise ParameterError(f"{self.name}: pass groups=... alone, without window/stride/masker.")
            self.groups = as_groups(groups)
            masker = _GroupMasker(self.groups)
        elif masker is None:
            if window is None:
                raise ParameterError(
                    f"{self.name} needs window=... (e.g. {{'t': 25}}), masker=... or groups=... ."
                )
        else:
            masker = check_masker(masker)
            if window is not None or stride is not None:
                raise ParameterError(f"{self.name}: pass either window/stride or masker=..., not both.")
            if masker.is_random:
                raise ParameterError(
                    f"{self.name} needs a deterministic masker; {masker!r} is random (use RISE)."
                )
        self.window = window
        self.stride = stride
        self.masker = masker
        self.substrate = check_substrate(substrate)
        self.progress = check_bool(progress, "progress")
        self._masker()  # validates window and stride

    def _masker(self) -> Masker:
        """The masker in use: ``masker``, or the sliding window built from ``window``/``stride``."""
        if self.masker is not None:
            return self.masker
        # __init__ requires window= when no masker is given
        return SlidingWindow(cast(AxisSizes, self.window), self.stride)

    def __repr__(self) -> str:
        return f"Occlusion(masker={self._masker()!r}, substrate={self.substrate!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        lay = score.layout
        masker = self._masker()
        plan = masker.plan(x.shape[1:], lay, device=x.device, dtype=x.dtype)
        n = plan.n
        filler = Filler(x, self.substrate, lay)
        b = x.shape[0]
        s0 = score.input_values().to(x.dtype).reshape(b, 1)
        acc = torch.zeros((b, *plan.shape), dtype=x.dtype, device=x.device)
        count = torch.zeros(plan.shape, dtype=x.dtype, device=x.device)
        block = block_size(n, b, score.batch_size, int(torch.Size(plan.shape).numel()))
        with progress_bar(n, "Occlusion windows", self.progress) as bar:
            for k0 in range(0, n, block):
                masks = plan(k0, min(n, k0 + block))
                drop = s0 - masked_scores(score, masks, filler)  # (B, K)
                occluded = 1 - masks
                acc += torch.tensordot(drop, occluded, dims=([1], [0]))
                count += occluded.sum(0)
                bar.update(masks.shape[0])
        values = torch.where(
            count > 0, acc / count.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(acc)
        )
        return Parts(values, info={"n_windows": n, "masker": repr(masker)})
