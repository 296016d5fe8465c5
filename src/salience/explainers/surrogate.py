"""Linear surrogates over feature groups: KernelShap (Lundberg & Lee 2017) and Lime (Ribeiro et
al. 2016). Coalitions of groups are scored through the engine; a weighted linear model of the
coalitions' scores gives one coefficient per group."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validation import check_float, check_generator, check_int, check_option, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..layout import LayoutLike
from ..masking import Filler, SubstrateLike
from ..masking.groups import GroupsLike
from ._groups import check_groups, coalition_scores, group_info, resolve_groups
from ._perturbation import check_substrate

__all__ = ["KernelShap", "Lime"]


def _kernel_sizes(m: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Coalition sizes k in 1 .. m-1 drawn with p(k) proportional to (m-1) / (k (m-k))."""
    k = torch.arange(1, m, dtype=torch.float64, device=gen.device)  # on the generator's device
    p = (m - 1) / (k * (m - k))
    return (torch.multinomial(p, n, replacement=True, generator=gen) + 1).cpu()


class KernelShap(Explainer):
    """Kernel SHAP: Shapley values of feature groups from a Shapley-kernel weighted regression.

    A coalition ``z`` in {0, 1}^G keeps the groups with ``z_g = 1`` and replaces the others by
    the substrate (by default zeros: Captum's default baseline). ``n_samples`` coalitions are
    drawn as Captum draws them: a size ``k`` in 1 .. G-1 with probability proportional to
    ``(G-1) / (k (G-k))``, then ``k`` groups uniformly, so each coalition is drawn in proportion
    to its Shapley kernel weight and gets weight 1 in the regression. The linear model
    ``score(z) ~ phi_0 + sum_g phi_g z_g`` is fitted by least squares under the two constraints
    of Lundberg & Lee (``phi_0 = score(substrate)`` and ``sum_g phi_g = score(x) -
    score(substrate)``), solved exactly by eliminating one coefficient (Captum approximates them
    with a weight of 1e6 on the full and empty coalitions). On an additive model the
    coefficients are its exact Shapley values once the coalitions span the groups.

    The coalitions are drawn once per call and shared by every sample of the batch (one
    regression design, solved for all samples at once), so a sample's map does not depend on
    the rest of the batch. Rows: ``n_samples + 1`` per sample (the coalitions and the empty
    one), built lazily, scored in chunks of ``batch_size``; forward passes only.

    Parameters
    ----------
    model : callable
    groups : Groups, integer Tensor or None, default None
        See :class:`~salience.FeatureAblation`; None: every element its own group.
    n_samples : int, default 25
        Number of sampled coalitions, besides the empty and the full one (Captum's 25 include
        those two).
    substrate : str, float, Tensor or Substrate, default 0.0
    generator : torch.Generator, optional
        Source of the coalitions (the global RNG is never used).
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *M) (see :class:`~salience.FeatureAblation`);
    ``info["group_values"]`` holds the (B, G) coefficients.

    References
    ----------
    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
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
        return f"KernelShap(groups={self.groups!r}, n_samples={self.n_samples}, substrate={self.substrate!r})"

    def coalitions(self, n_groups: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The coalitions one call draws: bool (n_samples, n_groups), True = group kept
        (none for a single group)."""
        m, n = n_groups, self.n_samples
        if m < 2:
            return torch.zeros((0, m), dtype=torch.bool)
        gen = make_generator(generator)
        size = _kernel_sizes(m, n, gen)
        u = torch.rand((n, m), generator=gen, device=gen.device, dtype=torch.float64).cpu()
        rank = u.argsort(1).argsort(1)
        return rank < size[:, None]

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        res = resolve_groups(self.groups, x, score)
        m = res.n
        z = self.coalitions(m, self.generator).to(x.device)
        rows = torch.cat([torch.zeros((1, m), dtype=torch.bool, device=x.device), z])

        filler = Filler(x, self.substrate, score.layout)
        s = coalition_scores(score, filler, res, lambda k0, k1: rows[k0:k1], rows.shape[0])
        f0 = s[:, 0]
        total = score.input_values().to(s.dtype) - f0  # (B,)
        if m == 1:
            values = total[:, None]
        else:
            zf = z.to(s.dtype)
            # phi_last = total - sum(phi_rest): y - f0 - z_last total = (z_rest - z_last) phi_rest
            design = zf[:, :-1] - zf[:, -1:]
            rhs = s[:, 1:] - f0[:, None] - zf[:, -1][None, :] * total[:, None]  # (B, n)
            rest = (torch.linalg.pinv(design) @ rhs.T).T  # (B, G-1), least norm when underdetermined
            values = torch.cat([rest, (total - rest.sum(1))[:, None]], 1)
        return Parts(res.spread(values), info=group_info(res, values, n_samples=self.n_samples))


def _weighted_lasso(
    z: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
    alpha: float,
    *,
    max_iter: int = 20_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted linear regression with an intercept and an L1 penalty, for each sample.

    Minimises ``1 / (2 sum_i w_i) * sum_i w_i (y_i - b - z_i . c)^2 + alpha * ||c||_1``
    (scikit-learn's ``Lasso(alpha).fit(z, y, sample_weight=w)``). Accelerated proximal gradient
    (FISTA, Beck & Teboulle 2009) on the weighted Gram matrix, all samples at once, finds the
    support and signs of the solution; every 25 iterations the optimality conditions are solved
    exactly on that support, and a sample whose solution satisfies them (signs kept,
    ``|gradient| <= alpha`` off the support) is done, at machine precision. ``alpha = 0`` is
    weighted least squares (least norm when underdetermined).

    Parameters
    ----------
    z : Tensor of shape (N, G)
        The design (shared by every sample).
    y, weights : Tensors of shape (B, N)
    alpha : float
    max_iter : int, default 20000
        Iterations at most (the last iterate is returned if the exact solve never verifies,
        e.g. for an underdetermined design without a unique solution).

    Returns
    -------
    coef : Tensor of shape (B, G)
    intercept : Tensor of shape (B,)
    """
    v = weights / weights.sum(1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    zm = v @ z  # (B, G) weighted means
    ym = (v * y).sum(1)
    yc = y - ym[:, None]
    gram = torch.stack([(z.T * vb) @ z for vb in v]) - zm[:, :, None] * zm[:, None, :]  # (B, G, G)
    corr = torch.einsum("bn,ng,bn->bg", v, z, yc)  # z - zm is orthogonal to v: uncentred z suffices
    if alpha == 0:
        coef = (torch.linalg.pinv(gram) @ corr[:, :, None])[:, :, 0]
        return coef, ym - (zm * coef).sum(1)
    coef = torch.zeros_like(zm)
    live = torch.diagonal(gram, dim1=1, dim2=2) > 0  # a group always or never kept: coefficient 0
    step = 1 / torch.linalg.eigvalsh(gram).amax(1).clamp_min(torch.finfo(zm.dtype).tiny)[:, None]
    todo = torch.ones(zm.shape[0], dtype=torch.bool, device=zm.device)
    slack = corr.abs().amax(1).clamp_min(alpha) * 1e-9
    ahead, t = coef, 1.0
    last = torch.zeros_like(coef, dtype=torch.bool)
    for it in range(max_iter):
        # FISTA on 1/2 c'Qc - corr'c + alpha |c|_1, every sample at once
        grad = (gram @ ahead[:, :, None])[:, :, 0] - corr
        moved = ahead - step * grad
        new = torch.sign(moved) * (moved.abs() - alpha * step).clamp_min(0)
        new = torch.where(live & todo[:, None], new, torch.where(todo[:, None], 0.0, coef))
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        ahead = new + ((t - 1) / t_next) * (new - coef)
        ahead = torch.where(todo[:, None], ahead, new)
        coef, t = new, t_next
        if it % 25 != 24:
            continue
        support = coef != 0
        stable = todo & (support == last).all(1)  # the same support as 25 iterations ago
        last = support
        for i in torch.nonzero(stable).flatten().tolist():  # solve exactly on the support found
            active = support[i]
            sign = torch.sign(coef[i][active])
            exact = torch.zeros_like(coef[i])
            if bool(active.any()):
                q = gram[i][active][:, active]
                # pinv, not lstsq: LAPACK's gelsy does not repeat its results bit for bit
                exact[active] = torch.linalg.pinv(q) @ (corr[i][active] - alpha * sign)
            off = (corr[i] - gram[i] @ exact)[~active].abs()
            if bool((torch.sign(exact[active]) == sign).all()) and bool((off <= alpha + slack[i]).all()):
                coef[i] = exact
                todo[i] = False
        if not bool(todo.any()):
            break
    return coef, ym - (zm * coef).sum(1)


class Lime(Explainer):
    """LIME: a weighted sparse linear model of the score over random coalitions of groups.

    ``n_samples`` coalitions keep each group with probability 1/2 (the others become the
    substrate, by default zeros); each perturbed input ``x'`` is weighted by the exponential
    kernel ``exp(-d(x, x')^2 / (2 kernel_width^2))`` of its distance to ``x`` in the model's
    input (or a domain's coefficients), and a linear model with intercept is fitted to the
    scores with an L1 penalty ``alpha`` (scikit-learn's ``Lasso`` objective). The coefficients
    are the attributions, in the score's units and signs.

    The defaults are Captum's ``Lime`` defaults: ``n_samples=25``, cosine distance over the
    flattened input, ``kernel_width=1.0``, ``alpha=0.01`` (``SkLearnLasso(alpha=0.01)``), zero
    baseline. ``alpha=0`` fits weighted least squares (Ribeiro et al.'s K-LASSO selection is
    not done). The coalitions are drawn once per call and shared by every sample (Captum draws
    new ones for each sample); with the same coalitions the two agree (Captum fits in float32,
    with scikit-learn's tolerance ``tol=1e-4``; the fit here runs to convergence in the input's
    dtype). Rows: ``n_samples`` per sample, built lazily in chunks of ``batch_size``.

    Parameters
    ----------
    model : callable
    groups : Groups, integer Tensor or None, default None
        See :class:`~salience.FeatureAblation`; None: every element its own group.
    n_samples : int, default 25
    alpha : float, default 0.01
        L1 penalty of the surrogate, in score units; 0 gives weighted least squares.
    kernel_width : float, default 1.0
    distance : {"cosine", "euclidean"}, default "cosine"
        Between the flattened ``x`` and each perturbed input.
    substrate : str, float, Tensor or Substrate, default 0.0
    generator : torch.Generator, optional
        Source of the coalitions (the global RNG is never used).
    batch_size : int, optional
    layout : str or Layout, optional
    output : str, int or callable, optional
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attributions of shape (B, *M) (see :class:`~salience.FeatureAblation`);
    ``info["group_values"]`` holds the (B, G) coefficients and ``info["intercept"]`` the (B,)
    intercepts.

    References
    ----------
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?: Explaining the Predictions of Any
    Classifier", KDD 2016.
    """

    is_stochastic = True

    def __init__(
        self,
        model: Any,
        *,
        groups: GroupsLike = None,
        n_samples: int = 25,
        alpha: float = 0.01,
        kernel_width: float = 1.0,
        distance: str = "cosine",
        substrate: SubstrateLike = 0.0,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.groups = check_groups(groups)
        self.n_samples = check_int(n_samples, "n_samples", low=1)
        self.alpha = check_float(alpha, "alpha", low=0.0)
        self.kernel_width = check_float(kernel_width, "kernel_width", low=0.0, closed="neither")
        self.distance = check_option(distance, "distance", options=("cosine", "euclidean"))
        self.substrate = check_substrate(substrate)
        self.generator = check_generator(generator)

    def __repr__(self) -> str:
        return (
            f"Lime(groups={self.groups!r}, n_samples={self.n_samples}, alpha={self.alpha}, "
            f"kernel_width={self.kernel_width}, distance={self.distance!r}, substrate={self.substrate!r})"
        )

    def coalitions(self, n_groups: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The coalitions one call draws: bool (n_samples, n_groups), each group kept with
        probability 1/2."""
        gen = make_generator(generator)
        u = torch.rand((self.n_samples, n_groups), generator=gen, device=gen.device, dtype=torch.float64)
        return (u < 0.5).cpu()

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        res = resolve_groups(self.groups, x, score)
        z = self.coalitions(res.n, self.generator).to(x.device)
        b, n = x.shape[0], self.n_samples
        dist = torch.zeros((b, n), dtype=x.dtype, device=x.device)
        flat = x.reshape(b, -1)

        def measure(point: int, k0: int, k1: int, rows: torch.Tensor) -> None:
            a, r = flat[point : point + 1], rows.reshape(k1 - k0, -1)
            if self.distance == "cosine":
                d = 1 - torch.nn.functional.cosine_similarity(a, r, dim=1, eps=1e-8)
            else:
                d = (r - a).norm(dim=1)
            dist[point, k0:k1] = d.to(x.dtype)

        filler = Filler(x, self.substrate, score.layout)
        s = coalition_scores(score, filler, res, lambda k0, k1: z[k0:k1], n, on_rows=measure)
        weights = torch.exp(-(dist**2) / (2 * self.kernel_width**2))
        coef, intercept = _weighted_lasso(z.to(s.dtype), s, weights.to(s.dtype), self.alpha)
        info = group_info(res, coef, n_samples=n, intercept=intercept.detach())
        return Parts(res.spread(coef), info=info)
