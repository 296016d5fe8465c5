"""Shapley value sampling (Castro et al. 2009) over feature groups."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_generator, check_int, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..layout import LayoutLike
from ..masking import Filler, SubstrateLike
from ..masking.groups import GroupsLike
from ._groups import check_groups, coalition_scores, group_info, resolve_groups
from ._perturbation import check_substrate

__all__ = ["ShapleyValueSampling"]


class ShapleyValueSampling(Explainer):
    """Shapley values of feature groups, estimated over random permutations (Castro et al. 2009).

    For each of ``n_samples`` random orders of the ``G`` groups, the groups are added one by one
    to the substrate (by default zeros: Captum's default baseline) in that order, and each
    group is credited with the score change its addition makes. The average over the orders
    is an unbiased estimate of the group's Shapley value for the game
    ``v(S) = score(x on the groups in S, substrate elsewhere)``; its values sum to
    ``score(x) - score(substrate)`` for every sample (efficiency), and on an additive model
    (``score = sum_g h_g(x_g)``) one order already gives the exact values. A group's value is
    given to each of its elements, not divided among them (as Captum).

    The orders are drawn once per call with ``torch.randperm(G, generator=generator)`` and
    shared by every sample of the batch, so with the same seed they are the ones Captum draws
    from the global RNG, and a sample's map does not depend on the rest of the batch. Each order
    costs ``G - 1`` rows per sample (the empty coalition is scored once, ``score(x)`` is the
    explained score), built lazily and scored in chunks of ``batch_size``; forward passes only.

    Parameters
    ----------
    model : callable
    groups : Groups, integer Tensor or None, default None
        See :class:`~salience.FeatureAblation`; None: every element its own group.
    n_samples : int, default 25
        Number of random orders (Captum's default).
    substrate : str, float, Tensor or Substrate, default 0.0
        What absent groups' values are (a baseline tensor, ``"mean"``, ``"blur"``, ...).
    generator : torch.Generator, optional
        Source of the orders (the global RNG is never used).
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *M) (see :class:`~salience.FeatureAblation`);
    ``info["group_values"]`` holds the (B, G) Shapley values.

    References
    ----------
    Castro, Gomez & Tejada, "Polynomial calculation of the Shapley value based on sampling",
    Computers & Operations Research 36(5), 2009. Strumbelj & Kononenko, "Explaining prediction
    models and individual predictions with feature contributions", KAIS 2014.

    Examples
    --------
    >>> import torch
    >>> from salience.masking.groups import channel_groups
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3)).eval()
    >>> svs = ShapleyValueSampling(model, groups=channel_groups(), n_samples=4,
    ...                            generator=torch.Generator().manual_seed(0))
    >>> svs(torch.randn(2, 2, 20), target=0).shape
    (2, 2, 1)
    """

    is_stochastic = True

    def __init__(
        self,
        model: Any,
        *,
        groups: GroupsLike = None,
        n_samples: int = 25,
        substrate: SubstrateLike = 0.0,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.groups = check_groups(groups)
        self.n_samples = check_int(n_samples, "n_samples", low=1)
        self.substrate = check_substrate(substrate)
        self.generator = check_generator(generator)

    def __repr__(self) -> str:
        return (
            f"ShapleyValueSampling(groups={self.groups!r}, n_samples={self.n_samples}, "
            f"substrate={self.substrate!r})"
        )

    def permutations(self, n_groups: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The orders one call draws: (n_samples, n_groups), row ``p`` the ``p``-th order."""
        gen = make_generator(generator)
        return torch.stack(
            [torch.randperm(n_groups, generator=gen, device=gen.device) for _ in range(self.n_samples)]
        ).cpu()

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        res = resolve_groups(self.groups, x, score)
        g, n = res.n, self.n_samples
        perms = self.permutations(g, self.generator).to(x.device)  # (n, G)
        rank = perms.argsort(1)  # rank[p, j]: position of group j in order p
        steps = g - 1  # coalitions of 1 .. G-1 groups per order; 0 and G are shared

        def keep(k0: int, k1: int) -> torch.Tensor:  # coalition 0: empty; then (order, size)
            k = torch.arange(k0, k1, device=x.device)
            order = (k - 1).clamp(min=0) // max(steps, 1)
            size = torch.where(k == 0, torch.zeros_like(k), (k - 1) % max(steps, 1) + 1)
            return rank[order] < size[:, None]

        filler = Filler(x, self.substrate, score.layout)
        s = coalition_scores(score, filler, res, keep, 1 + n * steps)  # (B, 1 + n (G-1))
        b = x.shape[0]
        full = score.input_values().to(s.dtype)
        path = torch.empty((b, n, g + 1), dtype=s.dtype, device=s.device)
        path[:, :, 0] = s[:, :1]
        path[:, :, 1:g] = s[:, 1:].reshape(b, n, steps)
        path[:, :, g] = full[:, None]
        gains = path[:, :, 1:] - path[:, :, :-1]  # (B, n, G): the gain of the j-th group of order p
        values = torch.zeros((b, g), dtype=s.dtype, device=s.device)
        values.scatter_add_(1, perms.reshape(1, -1).expand(b, -1), gains.reshape(b, -1))
        values = values / n
        return Parts(res.spread(values), info=group_info(res, values, n_samples=n))
