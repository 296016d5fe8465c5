"""HSIC attribution (Novello, Fel & Vigouroux 2022): the dependence between each grid cell's
binary mask and the score, measured by the Hilbert-Schmidt independence criterion."""

from __future__ import annotations

from numbers import Real
from typing import Any

import torch

from .._validation import check_bool, check_float, check_generator, check_int, check_option, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError
from ..layout import LayoutLike
from ..masking import SubstrateLike
from ._gsa import (
    Grid,
    GridLike,
    Perturbation,
    check_grid,
    check_perturbation,
    design_scores,
    lhs_points,
    sobol_points,
)

__all__ = ["HsicAttributionMethod"]

_WIDTHS = ("median", "median_distance")


def output_width(y: torch.Tensor, rule: str | float) -> torch.Tensor:
    """The RBF width of the output kernel per sample, shape (B,), from scores ``y`` (B, N).

    ``"median"``: the median of the scores themselves (Xplique's ``percentile(Y, 50)``, linear
    interpolation); ``"median_distance"``: the median of the pairwise distances ``|y_j - y_l|``,
    j < l (the usual median heuristic); a float: that width.
    """
    if not isinstance(rule, str):
        return torch.full_like(y[:, 0], float(rule))
    if rule == "median":
        return torch.quantile(y, 0.5, dim=1, interpolation="linear")
    n = y.shape[1]
    j, k = torch.triu_indices(n, n, offset=1, device=y.device)
    return torch.quantile((y[:, j] - y[:, k]).abs(), 0.5, dim=1, interpolation="linear")


def rbf_gram(y: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``exp(-(y_j - y_l)^2 / (2 w^2))`` per sample, (B, N, N); a zero width gives the kernel's
    limit, 1 where ``y_j == y_l`` and 0 elsewhere."""
    d2 = (y[:, :, None] - y[:, None, :]) ** 2
    w2 = (2 * width**2)[:, None, None]
    safe = torch.where(w2 > 0, w2, torch.ones_like(w2))
    return torch.where(w2 > 0, torch.exp(-d2 / safe), (d2 == 0).to(y.dtype))


def hsic_binary(masks: torch.Tensor, y: torch.Tensor, width: str | float) -> torch.Tensor:
    """Xplique's HSIC estimate of every cell: ``tr(K_i H L H) / N`` with the input kernel
    ``k(u, v) = 1 + 1/2 - (u - v)^2`` and the RBF output kernel ``L``.

    Since ``H L H`` has zero row and column sums, only the cross term of ``(u - v)^2`` survives:
    ``tr(K_i H L H) = 2 m_i^T (H L H) m_i`` for the column ``m_i`` of the masks.

    Parameters
    ----------
    masks : Tensor of shape (N, d)
    y : Tensor of shape (B, N)

    Returns
    -------
    Tensor of shape (B, d)
    """
    n = y.shape[1]
    gram = rbf_gram(y, output_width(y, width))
    centred = gram - gram.mean(1, keepdim=True) - gram.mean(2, keepdim=True) + gram.mean((1, 2), keepdim=True)
    m = masks.to(y.dtype)
    return 2.0 / n * torch.einsum("ni,bnk,ki->bi", m, centred, m)


class HsicAttributionMethod(Explainer):
    """HSIC attribution: how strongly the score depends on each cell of a coarse grid.

    Each cell is kept or removed by a binary mask (the rounded points of a quasi-Monte-Carlo
    design of ``nb_design`` points in ``d`` dimensions, shared by every sample); the score of
    every perturbed input is computed, and the Hilbert-Schmidt independence criterion between
    cell ``i``'s mask values and the scores is estimated as Xplique does:
    ``HSIC_i = tr(K_i H L H) / N`` with ``H = I - 1/N``, the input kernel
    ``K_i[j, l] = 1 + 1/2 - (m_ji - m_li)^2`` (Xplique's binary kernel) and the output kernel
    ``L[j, l] = exp(-(y_j - y_l)^2 / (2 w^2))`` with the width ``w`` the median of the scores.
    The cell map is upsampled to the input by cubic convolution (OpenCV's ``INTER_CUBIC``).

    Costs ``nb_design`` rows per sample, forward passes only.

    Parameters
    ----------
    model : callable
        Any model: only forward passes are made.
    grid_size : int or dict of str to int, default 8
        See :class:`~salience.explainers.sobol.SobolAttributionMethod`.
    nb_design : int, default 500
        Number of masks.
    sampler : {"sobol", "lhs"}, default "sobol"
        The design rounded to {0, 1}: a Sobol sequence (Xplique's default) or a Latin hypercube
        (the paper's), drawn from ``generator``.
    scramble : bool, default True
        With ``sampler="sobol"``: Owen scrambling seeded from ``generator``; False uses the
        plain sequence without the origin (Xplique's deterministic design).
    output_width : "median", "median_distance" or float, default "median"
        The output kernel's width per sample: the median of the scores (Xplique's convention),
        the median pairwise distance between scores (the usual median heuristic), or a fixed
        positive value. A zero width gives the kernel's limit (1 for equal scores, else 0).
    perturbation : str or substrate, default "inpainting"
    sigma : float, optional
        See :class:`~salience.explainers.sobol.SobolAttributionMethod`.
    upsample : bool, default True
        False returns the cell map itself.
    generator : torch.Generator, optional
        Source of the design (the global RNG is never used).
    progress : bool, default True
    batch_size, layout, output
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attribution
        HSIC estimates of shape (B, *mask_shape) upsampled along the gridded axes, broadcastable
        to ``x``; ``info["indices"]`` holds the cell map.

    References
    ----------
    Novello, Fel & Vigouroux, "Making Sense of Dependence: Efficient Black-box Explanations
    Using Dependence Measure", NeurIPS 2022. Gretton et al., "Measuring Statistical Dependence
    with Hilbert-Schmidt Norms", ALT 2005.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3)).eval()
    >>> hsic = HsicAttributionMethod(model, grid_size=5, nb_design=64, progress=False,
    ...                              generator=torch.Generator().manual_seed(0))
    >>> hsic.explain(torch.randn(2, 2, 20), target=1).shape
    (2, 1, 20)
    """

    def __init__(
        self,
        model: Any,
        *,
        grid_size: GridLike = 8,
        nb_design: int = 500,
        sampler: str = "sobol",
        scramble: bool = True,
        output_width: str | float = "median",
        perturbation: str | SubstrateLike = "inpainting",
        sigma: float | None = None,
        upsample: bool = True,
        generator: torch.Generator | None = None,
        progress: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.grid_size = check_grid(grid_size)
        self.nb_design = check_int(nb_design, "nb_design", low=2)
        self.sampler = check_option(sampler, "sampler", options=("sobol", "lhs"))
        self.scramble = check_bool(scramble, "scramble")
        if isinstance(output_width, str):
            self.output_width: str | float = check_option(output_width, "output_width", options=_WIDTHS)
        elif isinstance(output_width, Real) and not isinstance(output_width, bool):
            self.output_width = check_float(output_width, "output_width", low=0.0, closed="neither")
        else:
            raise ParameterError(
                f"The 'output_width' parameter of {self.name} must be 'median', 'median_distance' or a "
                f"positive float. Got {output_width!r} instead."
            )
        self.perturbation, self.sigma = check_perturbation(perturbation, sigma)
        self.upsample = check_bool(upsample, "upsample")
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return self.sampler == "lhs" or self.scramble

    def __repr__(self) -> str:
        return (
            f"HsicAttributionMethod(grid_size={self.grid_size!r}, nb_design={self.nb_design}, "
            f"sampler={self.sampler!r}, perturbation={self.perturbation!r})"
        )

    def design(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The binary masks of one call, shape (nb_design, d)."""
        gen = make_generator(self.generator)
        d, n = grid.cells, self.nb_design
        if self.sampler == "lhs":
            points = lhs_points(d, n, generator=gen, dtype=torch.float64)
        else:
            points = sobol_points(d, n, scramble=self.scramble, generator=gen, dtype=torch.float64)
        return points.round().to(x.dtype)  # half to even, as numpy's round in Xplique

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        grid = Grid(x, score.layout, self.grid_size)
        design = self.design(x, grid)
        perturb = Perturbation(x, score.layout, self.perturbation, self.sigma)
        s = design_scores(score, grid, design, perturb, progress=self.progress, desc=f"{self.name} rows")
        indices = hsic_binary(design.to(s.device), s, self.output_width).reshape(x.shape[0], *grid.mask_shape)
        values = grid.upsample(indices) if self.upsample else indices
        info = {
            "grid": tuple(grid.mask_shape),
            "nb_design": self.nb_design,
            "sampler": self.sampler,
            "output_width": self.output_width,
            "perturbation": self.perturbation
            if isinstance(self.perturbation, str)
            else repr(self.perturbation),
            "indices": indices,
        }
        return Parts(values, info=info)
