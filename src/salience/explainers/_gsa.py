"""Shared machinery of the global-sensitivity explainers (Sobol, HSIC): a coarse grid of cells
over named axes, quasi-Monte-Carlo designs, the perturbed rows and the upsampled maps.

Everything is written over axis names, never per rank: a grid names the axes it cuts
(``{"t": 8}``, ``{"h": 8, "w": 8}``, ``{"t": 4, "h": 8, "w": 8}``), the other axes share each
cell's value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .._progress import progress_bar
from .._validation import check_float, check_int
from ..engine import ScoreFunction
from ..errors import ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike
from ..masking import Filler, Substrate, as_substrate
from ..masking.substrates import _checked

__all__ = [
    "GridLike",
    "check_grid",
    "Grid",
    "BoxBlur",
    "Perturbation",
    "check_perturbation",
    "sobol_points",
    "lhs_points",
    "design_scores",
]

GridLike = int | Mapping[str, int]

#: the largest dimension torch's SobolEngine draws
MAX_SOBOL_DIM = 21201
#: Xplique's perturbation names, and the default ``sigma`` of those that take one
PERTURBATIONS = {"inpainting": None, "blurring": 10.0, "amplitude": 1.0}


def check_grid(grid_size: Any) -> GridLike:
    """``grid_size`` if it is an int >= 1 or a mapping of axis names to ints >= 1."""
    if isinstance(grid_size, Mapping):
        if not grid_size or not all(isinstance(k, str) for k in grid_size):
            raise ParameterError(
                f"The 'grid_size' parameter of {current_caller()} must be an int or a non-empty mapping of "
                f"axis names to cell counts, e.g. {{'t': 8}}. Got {grid_size!r} instead."
            )
        return {k: check_int(v, f"grid_size[{k!r}]", low=1) for k, v in grid_size.items()}
    return check_int(grid_size, "grid_size", low=1)


class Grid:
    """The cells of one call: ``mask_shape`` (one entry per axis after the batch: the cell count
    on a gridded axis, 1 elsewhere) and ``cells``, their number.

    An int ``grid_size`` cuts every spatial axis of the layout into that many cells; a mapping
    names the axes (the channel axis ``c`` included).
    """

    def __init__(self, x: torch.Tensor, layout: Layout, grid_size: GridLike) -> None:
        owner = current_caller()
        if isinstance(grid_size, Mapping):
            named = dict(grid_size)
            layout.axes(*named)  # raises for unknown names
            if "b" in named:
                raise ParameterError(f"The 'grid_size' parameter of {owner} cannot cut the batch axis 'b'.")
        else:
            if not layout.spatial:
                raise ShapeError(
                    f"{owner}: layout {layout} has no spatial axis to cut into cells; pass grid_size "
                    "as a mapping of axis names, e.g. {'c': 4}."
                )
            named = dict.fromkeys(layout.spatial, grid_size)
        self.sizes = dict(zip(layout.names, x.shape, strict=True))
        for name, cells in named.items():
            if cells > self.sizes[name]:
                raise ParameterError(
                    f"The 'grid_size' parameter of {owner} asks for {cells} cells along axis {name!r}, "
                    f"which has only {self.sizes[name]} positions."
                )
        self.layout = layout
        self.named = named
        self.mask_shape = tuple(named.get(n, 1) for n in layout.names[1:])
        self.cells = int(math.prod(self.mask_shape))

    def expand(self, cells: torch.Tensor) -> torch.Tensor:
        """Cell values (R, *mask_shape) -> masks at the input's resolution along the gridded axes
        (1 elsewhere), by nearest neighbour with half-pixel centres (TensorFlow's
        ``resize(method="nearest")``, which Xplique uses)."""
        out = cells
        for name, n_cells in self.named.items():
            dim = self.layout.axes(name)[0]
            size = self.sizes[name]
            if size == n_cells:
                continue
            src = ((torch.arange(size, dtype=torch.float64) + 0.5) * (n_cells / size)).floor().long()
            out = out.index_select(dim, src.clamp_max(n_cells - 1).to(out.device))
        return out

    def modulate(self, q: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """``q * M`` for one sample ``q`` (*S) and each mask ``M`` of cell values (K, *mask_shape)
        upsampled as :meth:`expand` does, shape (K, *S), without building the masks: an axis
        whose length is a multiple of its cell count is split into (cells, cell length) and the
        cell values broadcast over the second part."""
        k = cells.shape[0]
        q_shape: list[int] = []
        c_shape: list[int] = []
        for i, name in enumerate(self.layout.names[1:]):
            size, n_cells = self.sizes[name], self.mask_shape[i]
            if n_cells in (1, size):
                q_shape.append(size)
                c_shape.append(n_cells)
            elif size % n_cells == 0:
                q_shape += [n_cells, size // n_cells]
                c_shape += [n_cells, 1]
            else:  # cell lengths differ: the cell values are expanded along this axis only
                src = ((torch.arange(size, dtype=torch.float64) + 0.5) * (n_cells / size)).floor().long()
                cells = cells.index_select(1 + i, src.clamp_max(n_cells - 1).to(cells.device))
                q_shape.append(size)
                c_shape.append(size)
        return (q.reshape(q_shape) * cells.reshape(k, *c_shape)).reshape(k, *q.shape)

    def upsample(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps (B, *mask_shape) -> the input's size along the gridded axes by cubic convolution
        (Keys, a = -0.75, half-pixel centres, edges replicated: OpenCV's ``INTER_CUBIC``, which
        Xplique uses, and torch's ``bicubic`` in 2-D), one axis after the other."""
        out = maps
        for name, n_cells in self.named.items():
            dim = self.layout.axes(name)[0]
            size = self.sizes[name]
            if size == n_cells:
                continue
            w = _cubic_matrix(n_cells, size, maps.dtype, maps.device)  # (size, n_cells)
            out = torch.tensordot(out.movedim(dim, -1), w, dims=([out.ndim - 1], [1])).movedim(-1, dim)
        return out


def _cubic_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The (n_out, n_in) matrix of cubic-convolution upsampling with replicated edges."""
    a = -0.75
    src = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    i0 = src.floor()
    t = src - i0
    s = [t + 1, t, 1 - t, 2 - t]  # distances to the taps i0 - 1 .. i0 + 2
    near = [((a + 2) * d - (a + 3)) * d * d + 1 for d in s[1:3]]
    far = [((a * d - 5 * a) * d + 8 * a) * d - 4 * a for d in (s[0], s[3])]
    weights = torch.stack([far[0], near[0], near[1], far[1]], dim=1)  # (n_out, 4)
    taps = (i0.long()[:, None] + torch.arange(-1, 3)[None, :]).clamp(0, n_in - 1)
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    w.scatter_add_(1, taps, weights)
    return w.to(dtype=dtype, device=device)


def _reflect101(index: torch.Tensor, n: int) -> torch.Tensor:
    """Indices folded into 0..n-1 by reflection without repeating the edge (OpenCV's default)."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * n - 2
    i = index.remainder(period)
    return torch.where(i >= n, period - i, i)


class BoxBlur(Substrate):
    """A moving average of ``size`` samples along each spatial axis, edges reflected without
    repetition: OpenCV's ``cv2.blur(x, (size, size))``, Xplique's ``"blurring"`` perturbation
    (its window covers ``i - size // 2`` to ``i - size // 2 + size - 1``).

    Parameters
    ----------
    size : int, default 10
        Window length in samples.
    """

    def __init__(self, size: int = 10) -> None:
        self.size = check_int(size, "size", low=1)

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        lay = _checked(layout, x)
        out = x
        k = self.size
        for dim in lay.spatial_axes:
            n = x.shape[dim]
            offsets = torch.arange(k, device=x.device) - k // 2
            idx = _reflect101(torch.arange(n, device=x.device)[:, None] + offsets[None, :], n)  # (n, k)
            gathered = out.index_select(dim, idx.reshape(-1))
            shape = (*out.shape[:dim], n, k, *out.shape[dim + 1 :])
            out = gathered.reshape(shape).mean(dim=dim + 1)
        return out.clone() if out is x else out

    def __repr__(self) -> str:
        return f"BoxBlur(size={self.size})"


def check_perturbation(perturbation: Any, sigma: Any) -> tuple[str | Substrate, float | None]:
    """Xplique's perturbation name (``"inpainting"``, ``"blurring"``, ``"amplitude"``) with its
    ``sigma``, or any salience substrate (then ``sigma`` must be None)."""
    owner = current_caller()
    if isinstance(perturbation, str) and perturbation in PERTURBATIONS:
        default = PERTURBATIONS[perturbation]
        if default is None:
            if sigma is not None:
                raise ParameterError(
                    f"The 'sigma' parameter of {owner} has no meaning for perturbation='inpainting'. "
                    f"Got {sigma!r}."
                )
            return perturbation, None
        if sigma is None:
            return perturbation, default
        if perturbation == "blurring":
            return perturbation, float(check_int(sigma, "sigma", low=1))
        return perturbation, check_float(sigma, "sigma")
    if sigma is not None:
        raise ParameterError(
            f"The 'sigma' parameter of {owner} applies to perturbation='blurring' or 'amplitude' only. "
            f"Got sigma={sigma!r} with perturbation={perturbation!r}."
        )
    return as_substrate(perturbation, owner, "perturbation"), None


class Perturbation:
    """Rows ``perturb(x[b], M)`` for one sample and many cell masks (1 = keep):

    - ``"inpainting"``: ``x * M`` (Xplique: zero baseline);
    - ``"blurring"``: ``x * M + (1 - M) * BoxBlur(sigma)(x)``;
    - ``"amplitude"``: ``x * (M - 0.5) * sigma`` (what Xplique's code computes; its docstring
      writes ``x + (M - 0.5) * sigma``);
    - a substrate: ``x * M + (1 - M) * substrate(x)``.

    Each is ``p + M * q`` for per-sample tensors ``p`` and ``q``, so the rows are built by
    broadcasting the cell values over blocks of ``q`` (:meth:`Grid.modulate`) without
    materialising full-resolution masks; a substrate that reads the mask gets the masks.
    """

    def __init__(self, x: torch.Tensor, layout: Layout, kind: str | Substrate, sigma: float | None) -> None:
        self.p: torch.Tensor | None = None
        self.q = x
        self.filler: Filler | None = None
        if kind == "amplitude":
            scale = float(sigma if sigma is not None else 1.0)
            self.p, self.q = x * (-0.5 * scale), x * scale
        elif kind != "inpainting":
            sub: Any = BoxBlur(int(sigma or 10)) if kind == "blurring" else kind
            filler = Filler(x, sub, layout)
            if filler.base is None:  # a substrate that reads the mask
                self.filler = filler
            elif filler.const != 0.0:
                self.p, self.q = filler.base, filler.diff

    def rows(self, b: int, cells: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The rows of sample ``b`` under cell values (K, *mask_shape): shape (K, *S)."""
        if self.filler is not None:
            return self.filler(b, grid.expand(cells))
        out = grid.modulate(self.q[b], cells)
        return out if self.p is None else out.add_(self.p[b])


def sobol_points(
    dim: int, n: int, *, scramble: bool, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """``n`` points of the ``dim``-dimensional Sobol sequence, shape (n, dim), on the CPU.

    Scrambled (Owen scrambling with a seed drawn from ``generator``) or, with
    ``scramble=False``, the plain sequence from its second point (the origin left out, as
    TensorFlow's ``sobol_sample``, which Xplique calls, returns it).
    """
    if dim > MAX_SOBOL_DIM:
        raise ParameterError(
            f"{current_caller()}: the design needs a Sobol sequence of dimension {dim}, above the "
            f"{MAX_SOBOL_DIM} that torch supports; use a coarser grid_size."
        )
    seed = (
        int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)) if scramble else None
    )
    engine = torch.quasirandom.SobolEngine(dim, scramble=scramble, seed=seed)
    if not scramble:
        engine.fast_forward(1)
    return engine.draw(n, dtype=torch.float64).to(dtype)


def lhs_points(dim: int, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A Latin hypercube of ``n`` points in ``dim`` dimensions, shape (n, dim): each coordinate
    takes one value in each of the ``n`` strata ``[i/n, (i+1)/n)`` (McKay et al. 1979)."""
    dev = generator.device
    strata = torch.rand((dim, n), generator=generator, device=dev, dtype=torch.float64).argsort(dim=1)
    jitter = torch.rand((dim, n), generator=generator, device=dev, dtype=torch.float64)
    return ((strata + jitter) / n).T.to(device="cpu", dtype=dtype)


def design_scores(
    score: ScoreFunction,
    grid: Grid,
    design: torch.Tensor,
    perturb: Perturbation,
    *,
    progress: bool,
    desc: str,
) -> torch.Tensor:
    """Scores of every sample perturbed by every design row: shape (B, R) for a design (R, cells).

    The design is shared by every sample. Rows are built per engine chunk (row ``r``: sample
    ``r // R``, design row ``r % R``), so memory stays bounded by ``batch_size`` rows.
    """
    x = score.input
    n_rows = design.shape[0]
    cells = design.to(device=x.device, dtype=x.dtype).reshape(n_rows, *grid.mask_shape)
    bar = progress_bar(x.shape[0] * n_rows, desc, progress)

    def rows(start: int, stop: int) -> torch.Tensor:
        parts = []
        for b in range(start // n_rows, (stop - 1) // n_rows + 1):  # a sample's rows are consecutive
            k0, k1 = max(start, b * n_rows) - b * n_rows, min(stop, (b + 1) * n_rows) - b * n_rows
            parts.append(perturb.rows(b, cells[k0:k1], grid))
        bar.update(stop - start)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    with bar:
        return score.values(rows, n=n_rows)
