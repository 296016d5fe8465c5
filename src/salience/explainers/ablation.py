"""FeatureAblation and FeaturePermutation: the score change when a group of features is removed
(replaced by a substrate) or permuted across the batch."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_generator, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError
from ..layout import LayoutLike
from ..masking import Filler, SubstrateLike
from ..masking.groups import GroupsLike
from ._groups import check_groups, coalition_scores, group_info, resolve_groups
from ._perturbation import check_substrate

__all__ = ["FeatureAblation", "FeaturePermutation"]


class FeatureAblation(Explainer):
    """Feature ablation: ``score(x) - score(x with group g replaced by the substrate)`` per group.

    Every group ``g`` of ``groups`` is removed on its own (its elements become the substrate's
    values, by default 0: Captum's default baseline), and the score drop is given to every
    element of the group (the sign is positive where removing the group lowers the score; a
    group's value is not divided among its elements, as Captum). Forward passes only: ``G``
    rows per sample, built lazily and scored in chunks of ``batch_size``; any callable model
    works. On a linear model ``w . x`` with a zero substrate, element ``i`` as its own group gets
    exactly ``w_i x_i``.

    Parameters
    ----------
    model : callable
    groups : Groups, integer Tensor or None, default None
        The feature groups (see :mod:`salience.masking.groups`: ``time_segments``,
        ``channel_groups``, ``patch_groups``, ``superpixel_groups``, ``band_groups``,
        ``component_groups``, or ids broadcastable to the input like Captum's
        ``feature_mask``). None: every element its own group.
    substrate : str, float, Tensor or Substrate, default 0.0
        What removed values become (``"zeros"``, ``"mean"``, ``"blur"``, ``"interpolate"``, a
        constant, a baseline tensor, or a :mod:`salience.masking` substrate).
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *M), ``M`` the shape of the group ids (1 along the axes a group
    spans whole, e.g. (B, 1, T) for time segments shared by all channels), broadcastable to
    ``x``. ``info["group_values"]`` holds the (B, G) drops and ``info["group_names"]`` the
    groups' names when they have some (bands, channels).

    References
    ----------
    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (occlusion
    of feature groups); Captum's ``FeatureAblation``.

    Examples
    --------
    >>> import torch, salience as sl
    >>> from salience.masking.groups import time_segments
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3)).eval()
    >>> fa = FeatureAblation(model, groups=time_segments(4))
    >>> fa(torch.randn(2, 2, 20), target=0).shape
    (2, 1, 20)
    """

    def __init__(
        self,
        model: Any,
        *,
        groups: GroupsLike = None,
        substrate: SubstrateLike = 0.0,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.groups = check_groups(groups)
        self.substrate = check_substrate(substrate)

    def __repr__(self) -> str:
        return f"FeatureAblation(groups={self.groups!r}, substrate={self.substrate!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        res = resolve_groups(self.groups, x, score)
        g = res.n
        filler = Filler(x, self.substrate, score.layout)

        def keep(k0: int, k1: int) -> torch.Tensor:  # coalition k: every group but k
            out = torch.ones((k1 - k0, g), dtype=torch.bool, device=x.device)
            out[torch.arange(k1 - k0, device=x.device), torch.arange(k0, k1, device=x.device)] = False
            return out

        ablated = coalition_scores(score, filler, res, keep, g)  # (B, G)
        drop = score.input_values().to(x.dtype)[:, None] - ablated
        return Parts(res.spread(drop), info=group_info(res, drop))


class FeaturePermutation(Explainer):
    """Permutation feature importance: ``score(x) - score(x with group g permuted across the batch)``.

    For every group ``g`` a random permutation ``pi_g`` of the batch is drawn (never the
    identity), and sample ``b`` is scored with the elements of group ``g`` taken from sample
    ``pi_g(b)`` (all other elements its own); the drop is given to every element of the group.
    As Captum's ``FeaturePermutation``, the permutations are drawn group after group, so with
    the same seed they are Captum's; the map of a sample depends on the rest of the batch by
    definition (the method needs at least 2 samples). Forward passes only, ``G`` rows per sample.

    Parameters
    ----------
    model : callable
    groups : Groups, integer Tensor or None, default None
        See :class:`FeatureAblation`.
    generator : torch.Generator, optional
        Source of the permutations (the global RNG is never used).
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *M) (see :class:`FeatureAblation`).

    References
    ----------
    Breiman, "Random Forests", Machine Learning 45, 2001 (permutation importance); Fisher, Rudin
    & Dominici, "All Models are Wrong, but Many are Useful", JMLR 2019.
    """

    is_stochastic = True

    def __init__(
        self,
        model: Any,
        *,
        groups: GroupsLike = None,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.groups = check_groups(groups)
        self.generator = check_generator(generator)

    def __repr__(self) -> str:
        return f"FeaturePermutation(groups={self.groups!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        b = x.shape[0]
        if b < 2:
            raise ParameterError(
                f"{self.name} permutes each group's values across the batch, so it needs at least 2 "
                f"samples; got a batch of {b}."
            )
        res = resolve_groups(self.groups, x, score)
        g = res.n
        gen = make_generator(self.generator)
        identity = torch.arange(b)
        perms = []
        for _ in range(g):  # group after group, redrawn while the identity (as Captum)
            p = torch.randperm(b, generator=gen, device=gen.device).cpu()
            while torch.equal(p, identity):
                p = torch.randperm(b, generator=gen, device=gen.device).cpu()
            perms.append(p)
        perm = torch.stack(perms).to(x.device)  # (G, B)
        ids = res.per_point(b)  # (B, numel(M))

        def rows(start: int, stop: int) -> torch.Tensor:
            r = torch.arange(start, stop, device=x.device)
            sample, group = r // g, r % g
            inside = (ids[sample] == group[:, None]).reshape(len(r), *res.shape)
            return torch.where(inside, x[perm[group, sample]], x[sample])

        permuted = score.values(rows, n=g)  # (B, G)
        drop = score.input_values().to(x.dtype)[:, None] - permuted
        return Parts(res.spread(drop), info=group_info(res, drop))
