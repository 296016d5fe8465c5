"""Faithfulness metrics: deletion/insertion (RISE and Xplique), faithfulness correlation, infidelity.

The model is only called through the engine's :class:`~salience.engine.ScoreFunction`: the
perturbed rows are generated lazily chunk by chunk (``batch_size`` rows per model call), on the
input's device, so memory stays bounded whatever the number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .._progress import progress_bar
from .._validation import (
    check_batch_size,
    check_bool,
    check_float,
    check_generator,
    check_int,
    check_option,
    make_generator,
)
from ..attribution import Attribution
from ..errors import InputError, ParameterError, ShapeError, caller, current_caller
from ..layout import Layout, LayoutLike
from ..masking import Filler, Substrate, as_substrate
from ..targets import TargetLike
from ._checks import call_user, check_count, check_finite_result, check_rows, check_values
from ._setup import reduce_channels as _reduce_channels
from ._setup import setup
from ._stats import rescaled
from ._stats import similarity as _similarity
from .base import _Perturbation

__all__ = [
    "deletion_curve",
    "insertion_curve",
    "auc",
    "faithfulness_correlation",
    "infidelity",
    "RiseBlur",
    "NoisyLinearImputation",
    "Deletion",
    "Insertion",
    "FaithfulnessCorrelation",
    "Infidelity",
]


# ---------------------------------------------------------------------------- substrates
class RiseBlur(Substrate):
    """RISE's insertion substrate, exactly: an 11-tap Gaussian (sigma 5) with zero padding.

    RISE builds its kernel as ``scipy.ndimage.gaussian_filter`` (sigma 5, truncate 4, mode
    ``reflect``) of an 11x11 unit impulse, i.e. the Gaussian's tails folded back into the 11
    taps (not a renormalised truncated Gaussian), and blurs with ``conv2d(x, K, padding=5)``
    per channel, which darkens the borders. The kernel is separable, so it is applied along every
    spatial axis of the layout (time for signals, h and w for images, t, h and w for video).

    Parameters
    ----------
    sigma : float in (0, 1e6], default 5.0
        The Gaussian's standard deviation in samples/pixels (the kernel it folds has
        ``2 * int(4 * sigma + 0.5) + 1`` taps, so it is bounded).
    size : int in [1, 1e6], default 11
        Number of taps (odd).
    """

    needs_mask: ClassVar[bool] = False
    is_random: ClassVar[bool] = False

    #: the largest ``sigma`` and ``size``: the kernels are materialised
    MAX_SIGMA: ClassVar[float] = 1e6
    MAX_SIZE: ClassVar[int] = 1_000_000

    def __init__(self, sigma: float = 5.0, *, size: int = 11) -> None:
        self.sigma = check_float(sigma, "sigma", low=0.0, high=self.MAX_SIGMA, closed="right")
        self.size = check_int(size, "size", low=1, high=self.MAX_SIZE)
        if self.size % 2 == 0:
            raise ParameterError(f"The 'size' parameter of {current_caller()} must be odd. Got {size!r} instead.")

    def kernel(self) -> torch.Tensor:
        """The 1-D kernel (float64, ``size`` taps) whose outer products give RISE's kernel.

        Returns
        -------
        Tensor of shape (size,)
            Tap ``i`` is the sum of the Gaussian's weights ``w[j]`` (truncated at 4 sigma,
            normalised) over the offsets ``j`` whose position ``i + j``, reflected half-sample
            symmetrically into ``[0, size)``, is the centre: scipy's ``gaussian_filter`` of a
            unit impulse.
        """
        n, c = self.size, self.size // 2
        radius = int(4.0 * self.sigma + 0.5)  # scipy's gaussian_filter1d, truncate=4
        j = torch.arange(-radius, radius + 1, dtype=torch.float64)
        w = torch.exp(-0.5 * (j / self.sigma) ** 2)
        w = w / w.sum()
        # position i + j reflects onto the centre c exactly when (i + j) mod 2n is c or 2n-1-c
        # (half-sample symmetric extension, period 2n): each offset feeds at most two taps
        out = torch.zeros(n, dtype=torch.float64)
        jj = j.long()
        for image in (c, 2 * n - 1 - c):
            i = (image - jj) % (2 * n)
            inside = i < n
            out.index_add_(0, i[inside], w[inside])
        return out

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        lay = Layout(str(layout))
        k = self.kernel().to(device=x.device, dtype=x.dtype).reshape(1, 1, -1)
        r = self.size // 2
        out = x
        for dim in lay.spatial_axes:
            moved = out.movedim(dim, -1)
            lead, n = moved.shape[:-1], moved.shape[-1]
            res = F.conv1d(moved.reshape(-1, 1, n), k, padding=r)
            out = res.reshape(*lead, n).movedim(-1, dim)
        return out.contiguous()

    def __repr__(self) -> str:
        return f"RiseBlur(sigma={self.sigma!r}, size={self.size!r})"


class NoisyLinearImputation(Substrate):
    """ROAD's noisy linear imputation: removed values solve a neighbourhood-average equation.

    Each removed value equals the weighted mean of its in-bounds neighbours (weight ``1/m`` for
    a neighbour offset along ``m`` spatial axes: direct 1, diagonal 1/2, as ROAD's 1/6 and 1/12),
    per channel; the sparse symmetric system is solved by batched conjugate gradients on the
    input's device, then Gaussian noise of std ``noise`` is added to the imputed values. On a
    signal this is linear interpolation between the kept neighbours (constant beyond the ends).
    A row with nothing kept is imputed with zeros. Mask-aware (mask: 1 = keep).

    Parameters
    ----------
    noise : float, default 0.01
        Standard deviation of the noise added to imputed values (ROAD's default).
    generator : torch.Generator, optional
        Source of the noise; the draws depend on the chunking (``batch_size``).
    max_iter : int, default 2000
        Maximum conjugate-gradient iterations per call.
    tol : float, default 1e-10
        Relative residual ``||r|| / ||r_0||`` at which conjugate gradients stop. The tolerance
        used is dtype-aware, ``max(tol, 10 * torch.finfo(x.dtype).eps)`` (see
        :meth:`effective_tol`): about ``1.2e-6`` in float32, where ``1e-10`` is below round-off
        and could never be reached (every call would run ``max_iter`` iterations), and ``tol``
        itself in float64. A row whose search direction degenerates at round-off level
        (``p.Ap <= 0``) also stops.

    References
    ----------
    Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods"
    (ROAD), ICML 2022.
    """

    needs_mask: ClassVar[bool] = True
    is_random: ClassVar[bool] = True

    def __init__(
        self, noise: float = 0.01, *, generator: torch.Generator | None = None, max_iter: int = 2000, tol: float = 1e-10
    ) -> None:
        self.noise = check_float(noise, "noise", low=0.0)
        self.generator = check_generator(generator)
        self.max_iter = check_int(max_iter, "max_iter", low=1)
        self.tol = check_float(tol, "tol", low=0.0)

    @staticmethod
    def _shift(t: torch.Tensor, offset: tuple[int, ...]) -> torch.Tensor:
        """``out[p] = t[p + offset]`` along the trailing axes, zero outside."""
        d = len(offset)
        pad: list[int] = []
        for o in reversed(offset):
            pad += [max(-o, 0), max(o, 0)]
        out = F.pad(t, pad)
        for i, o in enumerate(offset):
            dim = t.ndim - d + i
            out = out.narrow(dim, max(o, 0), t.shape[dim])
        return out

    def __call__(self, x: torch.Tensor, layout: LayoutLike, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            raise ParameterError("NoisyLinearImputation is mask-aware: call it as substrate(x, layout, mask).")
        lay = Layout(str(layout))
        spatial = lay.spatial_axes
        d = len(spatial)
        # move spatial axes last
        rest = [i for i in range(x.ndim) if i not in spatial]
        perm = rest + list(spatial)
        inv = [perm.index(i) for i in range(x.ndim)]
        v = x.permute(perm)
        known = torch.broadcast_to(mask >= 0.5, x.shape).permute(perm).to(x.dtype)
        unknown = 1 - known
        offsets = [o for o in product((-1, 0, 1), repeat=d) if any(o)]
        weights = [1.0 / sum(1 for c in o if c) for o in offsets]
        ones = torch.ones_like(v)
        diag = sum(w * self._shift(ones, o) for o, w in zip(offsets, weights, strict=True))
        rhs = unknown * sum(w * self._shift(v * known, o) for o, w in zip(offsets, weights, strict=True))

        def apply(p: torch.Tensor) -> torch.Tensor:
            p = p * unknown
            return unknown * (diag * p - sum(w * self._shift(p, o) for o, w in zip(offsets, weights, strict=True)))

        rows = v.shape[0]
        dims = tuple(range(1, v.ndim))
        sol = torch.zeros_like(v)
        res = rhs.clone()
        p = res.clone()
        rr = (res * res).sum(dims)
        # a relative residual of 1 or more is met before the first iteration: capping tol at 1
        # changes nothing but keeps tol ** 2 finite
        tol = min(self.effective_tol(x.dtype), 1.0)
        stop = (tol**2) * rr.clamp_min(torch.finfo(x.dtype).tiny)
        shape = (rows,) + (1,) * (v.ndim - 1)
        broken = torch.zeros_like(rr, dtype=torch.bool)
        for _ in range(self.max_iter):
            # rows that have converged are frozen: iterating on a residual at round-off level
            # (float32) makes alpha/beta blow up to inf/NaN while other rows still iterate
            active = (rr > stop) & ~broken
            if not bool(active.any()):
                break
            ap = apply(p)
            pap = (p * ap).sum(dims)
            ok = active & (pap > 0)
            # p.Ap <= 0 only happens at round-off level (the system is positive definite on the
            # unknowns): such a row cannot progress any more, so it stops instead of idling
            broken = broken | (active & ~ok)
            alpha = torch.where(ok, rr / torch.where(ok, pap, torch.ones_like(pap)), torch.zeros_like(pap))
            sol = sol + alpha.reshape(shape) * p
            res = res - alpha.reshape(shape) * ap
            rr_new = (res * res).sum(dims)
            beta = torch.where(ok, rr_new / torch.where(ok, rr, torch.ones_like(rr)), torch.zeros_like(rr))
            p = torch.where(ok.reshape(shape), res + beta.reshape(shape) * p, p)
            rr = torch.where(ok, rr_new, rr)
        if self.noise > 0:
            g = make_generator(self.generator)  # local: the substrate object is never changed
            eps = torch.randn(v.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)
            sol = sol + self.noise * eps * unknown
        out = known * v + unknown * sol
        return out.permute(inv).contiguous()

    def effective_tol(self, dtype: torch.dtype) -> float:
        """The relative residual at which conjugate gradients stop for inputs of ``dtype``:
        ``max(tol, 10 * eps)`` with ``eps = torch.finfo(dtype).eps``."""
        return max(self.tol, 10.0 * torch.finfo(dtype).eps)

    def __repr__(self) -> str:
        return f"NoisyLinearImputation(noise={self.noise!r}, max_iter={self.max_iter!r}, tol={self.tol!r})"


# ---------------------------------------------------------------------------- deletion / insertion
def _schedule(n_units: int, step: int | None, steps: int | None, max_fraction: float) -> torch.Tensor:
    """Number of units changed at each recorded state (RISE ``step`` or Xplique ``steps``)."""
    if step is not None and steps is not None:
        raise ParameterError(f"{current_caller()}: pass step=... (RISE) or steps=... (Xplique), not both.")
    if step is not None:
        # a step of n_units or more changes every unit at once: the same two states
        step = min(check_int(step, "step", low=1), n_units)
        n_steps = math.ceil(n_units / step)
        return torch.clamp(torch.arange(n_steps + 1) * step, max=n_units)
    steps = min(100, n_units) if steps is None else check_count(steps, "steps")
    max_n = int(math.floor(n_units * max_fraction))
    if max_n == 0:
        raise ParameterError(
            f"The 'max_fraction' parameter of {current_caller()} must change at least one of the {n_units} "
            f"attribution units (floor(n_units * max_fraction) >= 1, i.e. max_fraction >= "
            f"{1 / n_units:.3g} here). Got {max_fraction!r}: every state would be the input itself."
        )
    # Xplique: np.linspace(0, max_n, steps + 1, dtype=np.int32), i.e. truncated toward zero
    grid = torch.linspace(0, max_n, steps + 1, dtype=torch.float64)
    return grid.floor().long()


def _ranks(units: torch.Tensor) -> torch.Tensor:
    """Rank of each unit (0 = most relevant), descending, ties broken by position."""
    order = torch.sort(units, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(units.shape[1], device=units.device).expand_as(order))
    return ranks


def _curve(
    mode: str,
    model: Any,
    x: torch.Tensor,
    attribution: Any,
    target: TargetLike,
    *,
    step: int | None,
    steps: int | None,
    max_fraction: float,
    substrate: Any,
    reduce: str | None,
    domain: Any,
    layout: LayoutLike | None,
    batch_size: int | None,
    progress: bool,
) -> torch.Tensor:
    max_fraction = check_float(max_fraction, "max_fraction", low=0.0, high=1.0, closed="right")
    progress = check_bool(progress, "progress")
    a, space, lay, score = setup(model, x, attribution, target, domain, batch_size=batch_size, layout=layout)
    units = _reduce_channels(a, reduce)
    unit_shape = units.shape[1:]
    ranks = _ranks(units.flatten(1))
    n_units = ranks.shape[1]
    if steps is not None:
        check_rows(space.shape[0], check_count(steps, "steps") + 1, "steps")
    counts = _schedule(n_units, step, steps, max_fraction).to(space.device)
    k = counts.shape[0]
    filler = Filler(space, substrate, lay, current_caller())
    deletion = mode == "deletion"
    bar = progress_bar(space.shape[0] * k, mode, progress)

    def make(start: int, stop: int) -> torch.Tensor:
        bar.update(stop - start)
        r = torch.arange(start, stop, device=space.device)
        b, i = r // k, r % k
        changed = (ranks[b] < counts[i, None]).reshape(-1, *unit_shape)
        return filler(b, ~changed if deletion else changed)

    with bar:
        return score.values(make, n=k)


_CURVE_DOC = """
    Parameters
    ----------
    model : callable
        Maps (R, *S) to outputs (R, *O); never modified.
    x : Tensor of shape (B, *S)
    attribution : Tensor broadcastable to ``x`` (or to ``domain.forward(x)``), or Attribution
        Its elements are the units removed/inserted together: an attribution of shape
        (B, 1, *spatial) moves whole time steps/pixels (all channels, as RISE), a full-shape
        one moves single cells (as Xplique on time series). Ranked in descending order, ties by
        position.
    target : int, Tensor (B,), Target or None
        The tracked score, bound at ``x`` (None: each sample's predicted class at ``x``; an
        Attribution's recorded target when an Attribution is passed).
    step : int, optional
        RISE: units changed per step; ``ceil(n / step) + 1`` states are scored, from the start
        state to the end state.
    steps : int, optional
        Xplique: score ``steps + 1`` states changing ``floor(linspace(0, floor(n *
        max_fraction), steps + 1))`` units. Default when neither is given: ``min(100, n)``.
    max_fraction : float in (0, 1], default 1.0
        Xplique's ``max_percentage_perturbed`` (with ``steps``).
    substrate : float, Tensor, str or substrate object
        What removed units become. A float or tensor; ``"zeros"``, ``"mean"``, ``"blur"``,
        ``"interpolate"`` and the objects of :mod:`salience.masking` (``Blur``, ``Interpolate``,
        ...); :class:`RiseBlur` (RISE's insertion start); :class:`NoisyLinearImputation` (ROAD).
        In a domain, the substrate is in coefficient space (0: zero coefficients).
    channel_reduction : {None, "sum", "mean", "max", "absmax"}, default None
        Reduce a channel-wise attribution to one value per position first (Xplique averages the
        channels of images: ``"mean"``).
    domain : object with ``forward(x) -> z`` and ``inverse(z) -> x``, optional
        Remove/insert coefficients of this domain (frequency bins, ICA components, wavelet
        bands): the model sees ``inverse(z_perturbed) + (x - inverse(forward(x)))``.
    layout : str or Layout, optional
    batch_size : int, optional
        Maximum rows per model call.
    progress : bool, default True
        Show a tqdm bar over the scored rows (if tqdm is installed).

    Returns
    -------
    Tensor of shape (B, K)
        The score at each of the K states; ``auc(curve)`` gives the area.
"""


@caller("deletion_curve")
def deletion_curve(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    step: int | None = None,
    steps: int | None = None,
    max_fraction: float = 1.0,
    substrate: Any = 0.0,
    channel_reduction: str | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Deletion curve: the score as the most relevant units are replaced by the substrate.

    RISE: ``step=...`` with a zero substrate; Xplique: ``steps=10`` with a zero substrate.
    ROAD (MoRF): ``substrate=NoisyLinearImputation()``.
    """
    return _curve("deletion", model, x, attribution, target, step=step, steps=steps, max_fraction=max_fraction,
                  substrate=substrate, reduce=channel_reduction, domain=domain, layout=layout,
                  batch_size=batch_size, progress=progress)


@caller("insertion_curve")
def insertion_curve(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    step: int | None = None,
    steps: int | None = None,
    max_fraction: float = 1.0,
    substrate: Any = None,
    channel_reduction: str | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Insertion curve: the score as the most relevant units of ``x`` are put into the substrate.

    The default substrate is RISE's blurred input (:class:`RiseBlur`) in input space and zero
    coefficients in a domain. Xplique's insertion starts from ``substrate=0.0``.
    """
    if substrate is None:
        substrate = 0.0 if (domain is not None or getattr(attribution, "domain", None) is not None) else RiseBlur()
    return _curve("insertion", model, x, attribution, target, step=step, steps=steps, max_fraction=max_fraction,
                  substrate=substrate, reduce=channel_reduction, domain=domain, layout=layout,
                  batch_size=batch_size, progress=progress)


deletion_curve.__doc__ = (deletion_curve.__doc__ or "") + _CURVE_DOC + """
    References
    ----------
    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC
    2018; Rong et al., ROAD, ICML 2022.
"""
insertion_curve.__doc__ = (insertion_curve.__doc__ or "") + _CURVE_DOC + """
    References
    ----------
    Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018.
"""


@caller("auc")
def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at equally spaced points of [0, 1] (trapezoid rule).

    ``(sum(s) - s[0]/2 - s[-1]/2) / (K - 1)``: RISE's formula, equal to Xplique's mean of the
    trapezoids ``mean((s[:-1] + s[1:]) / 2)``. With RISE's ``step`` the last step may change
    fewer units; like RISE, the area still counts it as a full step.

    Parameters
    ----------
    curve : Tensor of shape (..., K), K >= 2
        Real floating-point and finite (the scores of :func:`deletion_curve` or
        :func:`insertion_curve`).

    Returns
    -------
    Tensor of shape (...)

    Raises
    ------
    InputError
        ``curve`` is not a tensor (an Attribution is not a curve), or holds NaN or inf.
    DTypeError
        ``curve`` is complex, integer or boolean.
    ShapeError
        ``curve`` has no axis, an empty axis or fewer than 2 points.
    NumericalError
        The area overflows the dtype (scores near its largest value).
    """
    if not isinstance(curve, torch.Tensor):
        raise InputError(
            "auc expects curve to be a torch.Tensor of shape (..., K), e.g. the output of "
            f"deletion_curve. Got {type(curve).__name__} instead."
        )
    curve = check_values(curve, "curve", min_ndim=1)
    if curve.shape[-1] < 2:
        raise ShapeError(f"auc needs at least 2 points per curve. Got shape {tuple(curve.shape)}.")
    area = (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / (curve.shape[-1] - 1)
    return check_finite_result(area, "the curve's values are too large for a sum in this dtype.")


# ---------------------------------------------------------------------------- faithfulness correlation
def _check_similarity(similarity: Any) -> str | Callable:
    if callable(similarity):
        return similarity
    return check_option(similarity, "similarity", options=("pearson", "spearman"))


@caller("faithfulness_correlation")
def faithfulness_correlation(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    n_runs: int = 100,
    subset_size: int = 224,
    substrate: Any = 0.0,
    similarity: str | Callable = "pearson",
    generator: torch.Generator | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Faithfulness correlation: do attribution sums predict the score drop of random subsets?

    For each of ``n_runs`` random subsets of ``subset_size`` units (attribution elements; drawn
    per sample without replacement), the units are replaced by the substrate; the metric is the
    correlation over runs between ``sum(attribution over the subset)`` and ``f(x) - f(x_subset)``.

    Parameters
    ----------
    n_runs : int, default 100
    subset_size : int, default 224
        Quantus' default (an image row); use a fraction of the units of your data. Must be
        smaller than the number of units (removing them all gives the same sum on every run).
    substrate : float, tensor or substrate object, default 0.0
    similarity : {"pearson", "spearman"} or callable, default "pearson"
        Pearson as Bhatt et al. and Quantus; Xplique's MuFidelity uses Spearman.
    generator : torch.Generator, optional
        Run ``j`` of sample ``i`` (row ``i * n_runs + j``) removes the units
        ``torch.rand(n_units, generator=generator).argsort()[:subset_size]``, drawn row after row
        as the rows are scored (at most ``batch_size`` rows at a time, so memory does not grow
        with ``n_runs``); on a CPU generator this equals drawing ``torch.rand((n_runs, n_units))``
        per sample, sample after sample, and does not depend on ``batch_size``.
    progress : bool, default True
        Show a tqdm bar over the scored rows (if tqdm is installed).

    Returns
    -------
    Tensor of shape (B,)
        NaN where the score or the attribution sums do not vary. A ``similarity`` callable's
        values are returned as they are (NaN included); one that raises gives a ParameterError.
        The built-in correlations are computed on each sample's attributions rescaled exactly
        by a power of two (the correlation does not change), so values near the dtype's limits
        neither overflow nor underflow.

    References
    ----------
    Bhatt et al., "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020.
    """
    n_runs = check_count(n_runs, "n_runs", low=2)
    similarity = _check_similarity(similarity)
    progress = check_bool(progress, "progress")
    a, space, lay, score = setup(model, x, attribution, target, domain, batch_size=batch_size, layout=layout)
    flat = a.flatten(1)
    n_units = flat.shape[1]
    subset_size = check_int(subset_size, "subset_size", low=1)
    if n_units < 2:
        raise ShapeError(
            f"{current_caller()} needs at least 2 attribution units per sample (random subsets of one unit "
            f"all have the same sum). Got attributions of shape {tuple(a.shape)}."
        )
    if subset_size >= n_units:
        raise ParameterError(
            f"The 'subset_size' parameter of {current_caller()} (default 224, Quantus' default for images) "
            f"must be smaller than the number of attribution units, {n_units} here (shape "
            f"{tuple(a.shape[1:])}): a subset of all units has the same sum on every run. Got "
            f"{subset_size}; pass a smaller subset_size, e.g. subset_size={max(1, n_units // 4)}."
        )
    gen = make_generator(generator)
    b = space.shape[0]
    check_rows(b, n_runs, "n_runs")
    if isinstance(similarity, str):
        # the correlations are invariant to each sample's scale: rescaled exactly by a power of
        # two, sums of values near the dtype's maximum cannot overflow
        flat = rescaled(flat)
    sums = torch.empty(b * n_runs, dtype=flat.dtype, device=space.device)
    filler = Filler(space, substrate, lay, current_caller())
    unit_shape = a.shape[1:]
    bar = progress_bar(b * n_runs, current_caller(), progress)

    def make(start: int, stop: int) -> torch.Tensor:
        """Rows ``start..stop``: their subsets are drawn here, in row order (bounded memory)."""
        bar.update(stop - start)
        s = torch.arange(start, stop, device=space.device) // n_runs
        idx = torch.rand((stop - start, n_units), generator=gen, device=gen.device).argsort(-1)[:, :subset_size]
        idx = idx.to(space.device)
        sums[start:stop] = flat[s].gather(1, idx).sum(-1)
        removed = torch.zeros((stop - start, n_units), dtype=torch.bool, device=space.device)
        removed.scatter_(1, idx, True)
        return filler(s, ~removed.reshape(-1, *unit_shape))

    with bar:
        drops = score.input_values()[:, None] - score.values(make, n=n_runs)
    return _similarity(sums.reshape(b, n_runs), drops, similarity)


# ---------------------------------------------------------------------------- infidelity
def _check_perturbation(perturbation: Any) -> Any:
    if perturbation is None or callable(perturbation) or isinstance(perturbation, torch.Tensor):
        return perturbation
    raise ParameterError(
        f"The 'perturbation' parameter of {current_caller()} must be None, a callable (x, k, generator) -> "
        f"perturbations or a tensor (B, n_perturbations, *S). Got {type(perturbation).__name__} instead."
    )


@caller("infidelity")
def infidelity(
    model: Any,
    x: torch.Tensor,
    attribution: torch.Tensor | Attribution,
    target: TargetLike = None,
    *,
    n_perturbations: int = 10,
    std: float = 0.1,
    perturbation: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor] | torch.Tensor | None = None,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    domain: Any = None,
    layout: LayoutLike | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Infidelity: ``E_I[(I . attribution - (f(x) - f(x - I)))^2]``.

    Parameters
    ----------
    n_perturbations : int, default 10
    std : float, default 0.1
        Standard deviation of the default perturbation ``I ~ N(0, std^2)`` (input units).
    perturbation : callable or Tensor, optional
        Custom perturbations (Yeh et al.'s square-removal or baseline-difference perturbations):
        a callable ``perturbation(x, k, generator) -> I`` of shape (len(x), k, *S), or a tensor
        (B, n_perturbations, *S) of precomputed perturbations (read chunk by chunk). The callable
        is called chunk by chunk, sample by sample: ``perturbation(x[i:i+1], k, generator)`` for
        the ``k <= batch_size`` next perturbations of sample ``i``, in row order; for results
        that do not depend on ``batch_size``, let it draw perturbation after perturbation.
    normalize : bool, default False
        Scale the attribution by the optimal ``beta = E[I.a * df] / E[(I.a)^2]`` first (Captum's
        ``normalize=True``).
    generator : torch.Generator, optional
        Source of the default perturbations: perturbation ``j`` of sample ``i`` (row
        ``i * n + j``) is ``std * torch.randn(S, generator=generator)``, drawn row after row,
        so the result does not depend on ``batch_size``.
    domain, layout : optional
        As in :func:`deletion_curve`.
    batch_size : int, optional
        Maximum rows per model call; perturbations are drawn and evaluated chunk by chunk, so
        memory is bounded by ``batch_size`` rows, not by ``B * n_perturbations``.

    Returns
    -------
    Tensor of shape (B,)

    Raises
    ------
    ParameterError
        ``n_perturbations`` outside ``[1, 2**63 - 1]``, a negative or non-finite ``std``, or a
        ``perturbation`` callable that raised (the original exception is the cause).
    NumericalError
        The squared errors overflowed the dtype (attributions or perturbations near its largest
        value).

    References
    ----------
    Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
    """
    n = check_count(n_perturbations, "n_perturbations")
    std = check_float(std, "std", low=0.0)
    perturbation = _check_perturbation(perturbation)
    normalize = check_bool(normalize, "normalize")
    a, space, lay, score = setup(model, x, attribution, target, domain, batch_size=batch_size, layout=layout)
    gen = make_generator(generator)
    b, shape = space.shape[0], tuple(space.shape[1:])
    check_rows(b, n, "n_perturbations")
    given: torch.Tensor | None = None
    if isinstance(perturbation, torch.Tensor):
        if tuple(perturbation.shape) != (b, n, *shape):
            raise ShapeError(
                f"{current_caller()}: a perturbation tensor must have shape {(b, n, *shape)} (B, n_perturbations, *S). "
                f"Got {tuple(perturbation.shape)} instead."
            )
        given = check_values(perturbation, "the perturbation tensor").reshape(b * n, *shape)
    dots = torch.empty(b * n, dtype=space.dtype, device=space.device)
    perturb = None if isinstance(perturbation, torch.Tensor) else perturbation  # the callable, if any

    def draw(start: int, stop: int) -> torch.Tensor:
        """Perturbations of rows ``start..stop`` (row ``i * n + j``: perturbation j of sample i)."""
        if given is not None:
            return given[start:stop].to(device=space.device, dtype=space.dtype)
        if perturb is None:
            noise = torch.stack(
                [torch.randn(shape, generator=gen, device=gen.device, dtype=space.dtype) for _ in range(stop - start)]
            )
            return noise.to(space.device) * std
        pieces = []
        for s0 in range(start // n, (stop - 1) // n + 1):  # per sample, the rows of this chunk
            lo, hi = max(start, s0 * n), min(stop, (s0 + 1) * n)
            p = call_user(perturb, (space[s0 : s0 + 1], hi - lo, gen), "perturbation")
            if not isinstance(p, torch.Tensor) or tuple(p.shape) != (1, hi - lo, *shape):
                got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise ShapeError(
                    f"{current_caller()}: perturbation(x, k, generator) must return a tensor of shape (len(x), k, *S) = "
                    f"{(1, hi - lo, *shape)}. Got {got} instead."
                )
            pieces.append(check_values(p, "perturbation(x, k, generator)")[0].to(device=space.device, dtype=space.dtype))
        return torch.cat(pieces)

    def make(start: int, stop: int) -> torch.Tensor:
        samples = torch.arange(start, stop, device=space.device) // n
        pert = draw(start, stop)
        dots[start:stop] = (pert * a[samples]).flatten(1).sum(-1)
        return space[samples] - pert

    f0 = score.input_values()
    diffs = f0[:, None] - score.values(make, n=n)
    dots = dots.reshape(b, n)
    if normalize:
        num = (dots * diffs).mean(1, keepdim=True)
        den = (dots * dots).mean(1, keepdim=True)
        beta = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
        dots = beta * dots
    return check_finite_result(
        (dots - diffs).square().mean(1),
        "the attribution or the perturbations are too large for the squared errors in this dtype.",
    )


# ---------------------------------------------------------------------------- classes
class Deletion(_Perturbation):
    """Deletion AUC (lower is better); ``curve(...)`` gives the curve. See :func:`deletion_curve`.

    RISE: ``Deletion(step=224)`` (pixels per step; zero substrate). Xplique:
    ``Deletion(steps=10)``. ROAD: ``Deletion(substrate=NoisyLinearImputation())``.
    """

    higher_is_better: ClassVar[bool | None] = False
    _mode = "deletion"

    def __init__(
        self,
        *,
        step: int | None = None,
        steps: int | None = None,
        max_fraction: float = 1.0,
        substrate: Any = 0.0,
        channel_reduction: str | None = None,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> None:
        if step is not None and steps is not None:
            raise ParameterError(f"{current_caller()}: pass step=... (RISE) or steps=... (Xplique), not both.")
        self.step = None if step is None else check_int(step, "step", low=1)
        self.steps = None if steps is None else check_count(steps, "steps")
        self.max_fraction = check_float(max_fraction, "max_fraction", low=0.0, high=1.0, closed="right")
        # None: the insertion default (RiseBlur in input space, zero coefficients in a domain)
        self.substrate = None if substrate is None else as_substrate(substrate, current_caller())
        self.channel_reduction = check_option(channel_reduction, "channel_reduction",
                                              options=(None, "sum", "mean", "max", "absmax"))
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.substrate, "is_random", False))

    def curve(self, model: Any, x: torch.Tensor, attribution: Any, target: TargetLike = None, *,
              domain: Any = None, layout: LayoutLike | None = None) -> torch.Tensor:
        fn = deletion_curve if self._mode == "deletion" else insertion_curve
        return fn(model, x, attribution, target, step=self.step, steps=self.steps, max_fraction=self.max_fraction,
                  substrate=self.substrate, channel_reduction=self.channel_reduction, domain=domain, layout=layout,
                  batch_size=self.batch_size, progress=self.progress)

    def __call__(self, model: Any, x: torch.Tensor, attribution: Any, target: TargetLike = None, *,
                 explainer: Any = None, mask: Any = None, domain: Any = None) -> torch.Tensor:
        return auc(self.curve(model, x, attribution, target, domain=domain))


class Insertion(Deletion):
    """Insertion AUC (higher is better). RISE: ``Insertion(step=224)`` (blurred start,
    :class:`RiseBlur`); Xplique: ``Insertion(steps=10, substrate=0.0)``. See :func:`insertion_curve`."""

    higher_is_better: ClassVar[bool | None] = True
    _mode = "insertion"

    def __init__(self, *, step: int | None = None, steps: int | None = None, max_fraction: float = 1.0,
                 substrate: Any = None, channel_reduction: str | None = None, batch_size: int | None = None,
                 progress: bool = True) -> None:
        super().__init__(step=step, steps=steps, max_fraction=max_fraction, substrate=substrate,
                         channel_reduction=channel_reduction, batch_size=batch_size, progress=progress)


class FaithfulnessCorrelation(_Perturbation):
    """:func:`faithfulness_correlation` as a metric class (higher is better)."""

    higher_is_better: ClassVar[bool | None] = True
    is_stochastic: ClassVar[bool] = True

    def __init__(self, *, n_runs: int = 100, subset_size: int = 224, substrate: Any = 0.0,
                 similarity: str | Callable = "pearson", generator: torch.Generator | None = None,
                 batch_size: int | None = None, progress: bool = True) -> None:
        self.n_runs = check_count(n_runs, "n_runs", low=2)
        self.subset_size = check_int(subset_size, "subset_size", low=1)
        self.substrate = as_substrate(substrate, current_caller())
        self.similarity = _check_similarity(similarity)
        self.generator = check_generator(generator)
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")

    def __call__(self, model: Any, x: torch.Tensor, attribution: Any, target: TargetLike = None, *,
                 explainer: Any = None, mask: Any = None, domain: Any = None) -> torch.Tensor:
        return faithfulness_correlation(model, x, attribution, target, n_runs=self.n_runs,
                                        subset_size=self.subset_size, substrate=self.substrate,
                                        similarity=self.similarity, generator=self.generator, domain=domain,
                                        batch_size=self.batch_size, progress=self.progress)


class Infidelity(_Perturbation):
    """:func:`infidelity` as a metric class (lower is better)."""

    higher_is_better: ClassVar[bool | None] = False
    is_stochastic: ClassVar[bool] = True

    def __init__(self, *, n_perturbations: int = 10, std: float = 0.1, perturbation: Any = None,
                 normalize: bool = False, generator: torch.Generator | None = None,
                 batch_size: int | None = None) -> None:
        self.n_perturbations = check_count(n_perturbations, "n_perturbations")
        self.std = check_float(std, "std", low=0.0)
        self.perturbation = _check_perturbation(perturbation)
        self.normalize = check_bool(normalize, "normalize")
        self.generator = check_generator(generator)
        self.batch_size = check_batch_size(batch_size)

    def __call__(self, model: Any, x: torch.Tensor, attribution: Any, target: TargetLike = None, *,
                 explainer: Any = None, mask: Any = None, domain: Any = None) -> torch.Tensor:
        return infidelity(model, x, attribution, target, n_perturbations=self.n_perturbations, std=self.std,
                          perturbation=self.perturbation, normalize=self.normalize, generator=self.generator,
                          domain=domain, batch_size=self.batch_size)
