"""Sobol attribution (Fel et al. 2021): total Sobol indices of a grid of cells, estimated with
quasi-Monte-Carlo masks and the Jansen estimator."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_bool, check_generator, check_int, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError
from ..layout import LayoutLike
from ..masking import SubstrateLike
from ._gsa import Grid, GridLike, Perturbation, check_grid, check_perturbation, design_scores, sobol_points

__all__ = ["SobolAttributionMethod"]

#: the floor of the output variance in the Jansen estimator (Xplique's)
_EPS = 1e-12


def jansen_design(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The rows the Jansen estimator scores: ``A`` (N, d), then ``C_1 .. C_d`` (each ``A`` with
    column ``i`` taken from ``B``), shape (N * (d + 1), d)."""
    n, d = a.shape
    eye = torch.eye(d, dtype=torch.bool, device=a.device)[:, None, :]  # (d, 1, d)
    c = torch.where(eye, b[None], a[None])  # (d, N, d)
    return torch.cat([a, c.reshape(d * n, d)])


def jansen_total_indices(f_a: torch.Tensor, f_c: torch.Tensor) -> torch.Tensor:
    """Total Sobol indices ``ST_i = sum_j (f(A_j) - f(C_ij))^2 / (2 N Var f(A))`` (Jansen 1999),
    with the unbiased variance floored at 1e-12 as Xplique does.

    Parameters
    ----------
    f_a : Tensor of shape (B, N)
    f_c : Tensor of shape (B, d, N)

    Returns
    -------
    Tensor of shape (B, d)
    """
    n = f_a.shape[1]
    var = f_a.var(dim=1, correction=1).clamp_min(_EPS) if n > 1 else torch.full_like(f_a[:, 0], _EPS)
    return ((f_a[:, None, :] - f_c) ** 2).sum(-1) / (2 * n * var[:, None])


class SobolAttributionMethod(Explainer):
    """Sobol attribution: the total Sobol index of each cell of a coarse grid.

    Each cell ``i`` carries a random mask value ``M_i`` in [0, 1]; the score of the perturbed
    input ``perturb(x, M)`` (masks upsampled to the input by nearest neighbour) is a function of
    the ``d`` cell values, and the total index ``ST_i`` is the share of its variance that
    involves ``M_i`` (alone or with others). The masks come from a quasi-Monte-Carlo design: ``A``
    and ``B`` are the two halves of ``nb_design`` points of a ``2d``-dimensional Sobol sequence,
    ``C_i`` is ``A`` with column ``i`` from ``B``, and the Jansen estimator gives
    ``ST_i = sum_j (f(A_j) - f(C_ij))^2 / (2 N Var f(A))``. The cell map is upsampled to the
    input by cubic convolution (OpenCV's ``INTER_CUBIC``, as Xplique).

    The design is drawn once per call and shared by every sample of the batch, so with a fixed
    ``generator`` (or ``scramble=False``) a sample's map does not depend on the others. Costs
    ``nb_design * (d + 1)`` rows per sample, forward passes only (Xplique also scores the
    ``nb_design`` rows of ``B``, which the Jansen estimator does not use: ``d + 2``).

    Parameters
    ----------
    model : callable
        Any model: only forward passes are made.
    grid_size : int or dict of str to int, default 8
        Cells per spatial axis (8 x 8 for images, 8 for signals, 8 x 8 x 8 for video), or a
        mapping of axis names to cell counts (``{"t": 16}``, ``{"c": 4, "t": 8}``; the
        channel axis may be cut too). Axes not named share each cell's value.
    nb_design : int, default 32
        Points of the Sobol sequence; a power of two (as Xplique requires).
    perturbation : str or substrate, default "inpainting"
        Xplique's ``"inpainting"`` (``x * M``), ``"blurring"`` (``x * M + (1 - M) * box_blur(x)``)
        or ``"amplitude"`` (``x * (M - 0.5) * sigma``, what Xplique's code computes), or any
        salience substrate (``"mean"``, ``salience.masking.Blur(3)``, a float...) filled in as
        ``x * M + (1 - M) * substrate(x)``.
    sigma : float, optional
        Window length of ``"blurring"`` (default 10 samples, ``cv2.blur``'s box) or the factor
        of ``"amplitude"`` (default 1.0).
    scramble : bool, default True
        Owen-scrambled Sobol points (seeded from ``generator``): an unbiased randomised QMC
        estimate. False uses the plain sequence without its first point (the origin), the
        deterministic design of Xplique's default sampler.
    upsample : bool, default True
        False returns the cell map itself, (B, *cells).
    generator : torch.Generator, optional
        Source of the scrambling seed (the global RNG is never used).
    progress : bool, default True
        Show a tqdm bar over the perturbed rows (if tqdm is installed).
    batch_size, layout, output
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attribution
        Total indices of shape (B, *mask_shape) upsampled along the gridded axes: 1 on the axes
        the grid does not cut (e.g. (B, 1, T) for signals, (B, 1, H, W) for images),
        broadcastable to ``x``. ``info["indices"]`` holds the cell map; the indices are
        non-negative, the cubic upsampling may dip slightly below 0 next to a large cell.

    References
    ----------
    Fel, Cadène, Chalvidal, Cord, Vigouroux & Serre, "Look at the Variance! Efficient Black-box
    Explanations with Sobol-based Sensitivity Analysis", NeurIPS 2021. Jansen, "Analysis of
    variance designs for model output", Computer Physics Communications 1999.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3)).eval()
    >>> sobol = SobolAttributionMethod(model, grid_size=5, nb_design=16, progress=False,
    ...                                generator=torch.Generator().manual_seed(0))
    >>> sobol.explain(torch.randn(2, 2, 20), target=1).shape
    (2, 1, 20)
    """

    def __init__(
        self,
        model: Any,
        *,
        grid_size: GridLike = 8,
        nb_design: int = 32,
        perturbation: str | SubstrateLike = "inpainting",
        sigma: float | None = None,
        scramble: bool = True,
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
        if self.nb_design & (self.nb_design - 1):
            raise ParameterError(
                f"The 'nb_design' parameter of {self.name} must be a power of two (the balance of a "
                f"Sobol sequence). Got {nb_design!r} instead."
            )
        self.perturbation, self.sigma = check_perturbation(perturbation, sigma)
        self.scramble = check_bool(scramble, "scramble")
        self.upsample = check_bool(upsample, "upsample")
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return self.scramble

    def __repr__(self) -> str:
        return (
            f"SobolAttributionMethod(grid_size={self.grid_size!r}, nb_design={self.nb_design}, "
            f"perturbation={self.perturbation!r}, scramble={self.scramble})"
        )

    def design(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The mask values of one call: ``A`` then ``C_1 .. C_d``, shape (N * (d + 1), d)."""
        d, n = grid.cells, self.nb_design
        gen = make_generator(self.generator)
        ab = sobol_points(2 * d, n, scramble=self.scramble, generator=gen, dtype=x.dtype)
        return jansen_design(ab[:, :d], ab[:, d:])

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        grid = Grid(x, score.layout, self.grid_size)
        d, n, b = grid.cells, self.nb_design, x.shape[0]
        design = self.design(x, grid)
        perturb = Perturbation(x, score.layout, self.perturbation, self.sigma)
        s = design_scores(score, grid, design, perturb, progress=self.progress, desc=f"{self.name} rows")
        indices = jansen_total_indices(s[:, :n], s[:, n:].reshape(b, d, n)).reshape(b, *grid.mask_shape)
        values = grid.upsample(indices) if self.upsample else indices
        info = {
            "grid": tuple(grid.mask_shape),
            "nb_design": n,
            "rows_per_sample": design.shape[0],
            "perturbation": self.perturbation
            if isinstance(self.perturbation, str)
            else repr(self.perturbation),
            "indices": indices,
        }
        return Parts(values, info=info)
