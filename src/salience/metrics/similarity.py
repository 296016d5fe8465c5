"""Similarity between two batches of maps, one value per sample: rank and linear correlations,
cosine, SSIM and top-k overlap.

Every function takes two maps of the same shape (B, ...) (tensors or :class:`~salience.Attribution`)
and returns a tensor of shape (B,), NaN where the similarity is undefined for a sample (a constant
map for a correlation, zero dynamic range for SSIM). Called with two (B, F) rows, every function is
a valid ``similarity=`` of :func:`~salience.metrics.model_randomisation` and
:func:`~salience.metrics.random_logit` (which pass flattened maps; give :func:`ssim` the map shape
with ``functools.partial(ssim, shape=(C, H, W))``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .._validation import check_bool, check_float, check_int, check_option
from ..attribution import Attribution
from ..errors import ParameterError, ShapeError, caller, current_caller
from ._checks import check_values
from ._stats import similarity

__all__ = ["spearman", "kendall_tau", "pearson", "cosine", "ssim", "top_k_overlap"]


def _pair(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both maps checked (finite, real floating point, batched), same shape, one common dtype."""
    a = check_values(a.values if isinstance(a, Attribution) else a, "the first map (a)")
    b = check_values(b.values if isinstance(b, Attribution) else b, "the second map (b)")
    if a.shape != b.shape:
        raise ShapeError(
            f"{current_caller()} compares maps of the same shape. Got a of shape {tuple(a.shape)} and b "
            f"of shape {tuple(b.shape)}."
        )
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return a.to(dtype), b.to(device=a.device, dtype=dtype)


@caller("spearman")
def spearman(a: torch.Tensor | Attribution, b: torch.Tensor | Attribution) -> torch.Tensor:
    """Spearman rank correlation per sample: Pearson's correlation of the average ranks.

    Ties get their average rank (``scipy.stats.spearmanr``). NaN where either map is constant.

    Parameters
    ----------
    a, b : Tensor of shape (B, ...) or Attribution
        At least 2 values per sample.

    Returns
    -------
    Tensor of shape (B,)
        In [-1, 1].
    """
    a, b = _pair(a, b)
    return similarity(a.flatten(1), b.flatten(1), "spearman")


@caller("pearson")
def pearson(a: torch.Tensor | Attribution, b: torch.Tensor | Attribution) -> torch.Tensor:
    """Pearson correlation per sample (``scipy.stats.pearsonr``); NaN where either map is constant.

    Parameters
    ----------
    a, b : Tensor of shape (B, ...) or Attribution
        At least 2 values per sample.

    Returns
    -------
    Tensor of shape (B,)
    """
    a, b = _pair(a, b)
    return similarity(a.flatten(1), b.flatten(1), "pearson")


@caller("cosine")
def cosine(a: torch.Tensor | Attribution, b: torch.Tensor | Attribution) -> torch.Tensor:
    """Cosine similarity ``<a, b> / (|a| |b|)`` per sample (0 where either map is all zero, as
    ``torch.nn.functional.cosine_similarity``).

    Quantus' ``cosine`` is ``scipy.spatial.distance.cosine``, the cosine *distance* ``1 - cos``.

    Parameters
    ----------
    a, b : Tensor of shape (B, ...) or Attribution

    Returns
    -------
    Tensor of shape (B,)
    """
    a, b = _pair(a, b)
    return similarity(a.flatten(1), b.flatten(1), "cosine")


def _tied_pairs(s: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Pairs inside runs of a sorted row: ``sum t (t - 1) / 2`` over the runs; ``new`` marks the
    first element of each run."""
    idx = torch.arange(s.shape[1], device=s.device).expand_as(s)
    start = torch.where(new, idx, torch.zeros_like(idx)).cummax(1).values
    return (idx - start).sum(1)


def _runs(s: torch.Tensor) -> torch.Tensor:
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    return new


def _inversions(v: torch.Tensor) -> torch.Tensor:
    """Pairs ``j < i`` with ``v[j] > v[i]`` per row, by a bottom-up merge sort: O(n log^2 n), batched.

    At each level every pair of sorted blocks is merged by ``torch.searchsorted``: an element of
    the right block is preceded by the left elements not greater than it, the others are its
    inversions; an element of the left block is preceded by the right elements smaller than it.
    The row is padded to a power of two with +inf at the end, which adds no inversion.
    """
    b, n = v.shape
    m = 1 << max(0, (n - 1).bit_length())
    cur = torch.cat([v, v.new_full((b, m - n), float("inf"))], 1) if m > n else v
    total = torch.zeros(b, dtype=torch.int64, device=v.device)
    size = 1
    while size < m:
        blocks = cur.reshape(-1, 2, size)
        left, right = blocks[:, 0].contiguous(), blocks[:, 1].contiguous()
        left_not_greater = torch.searchsorted(left, right, right=True)
        right_smaller = torch.searchsorted(right, left, right=False)
        total += (size - left_not_greater).reshape(b, -1).sum(1)
        idx = torch.arange(size, device=v.device)
        merged = torch.empty_like(blocks).reshape(-1, 2 * size)
        merged.scatter_(1, idx + right_smaller, left)
        merged.scatter_(1, idx + left_not_greater, right)
        cur = merged.reshape(b, m)
        size *= 2
    return total


@caller("kendall_tau")
def kendall_tau(a: torch.Tensor | Attribution, b: torch.Tensor | Attribution) -> torch.Tensor:
    """Kendall's tau-b per sample, ties handled (``scipy.stats.kendalltau``'s default variant).

    ``tau_b = (n_c - n_d) / sqrt((n_0 - n_1) (n_0 - n_2))`` with ``n_c``/``n_d`` the concordant
    and discordant pairs, ``n_0 = n (n - 1) / 2``, ``n_1``/``n_2`` the pairs tied in ``a``/``b``.
    Pairs are counted exactly (int64) by sorting and a batched merge count of inversions,
    O(n log^2 n) time and O(n) memory per sample, never the n x n pair matrix.

    Parameters
    ----------
    a, b : Tensor of shape (B, ...) or Attribution
        At least 2 values per sample.

    Returns
    -------
    Tensor of shape (B,)
        In [-1, 1]; NaN where either map is constant.

    References
    ----------
    Kendall, "The treatment of ties in ranking problems", Biometrika 1945; Knight, "A computer
    method for calculating Kendall's tau with ungrouped data", JASA 1966.
    """
    a, b = _pair(a, b)
    a, b = a.flatten(1), b.flatten(1)
    n = a.shape[1]
    if n < 2:
        raise ShapeError(
            f"{current_caller()}: a rank correlation needs at least 2 values per sample. Got {n} (maps of "
            f"shape {tuple(a.shape)})."
        )
    # lexicographic order by (a, b): stable sort by b, then by a
    o = b.argsort(dim=1, stable=True)
    a1, b1 = a.gather(1, o), b.gather(1, o)
    o = a1.argsort(dim=1, stable=True)
    sa, sb = a1.gather(1, o), b1.gather(1, o)
    new_a = _runs(sa)
    n1 = _tied_pairs(sa, new_a)
    n3 = _tied_pairs(sa, new_a | _runs(sb))  # tied in both: runs of equal (a, b) pairs
    sb_alone = b.sort(1).values
    n2 = _tied_pairs(sb_alone, _runs(sb_alone))
    # ties in a are ordered by b, so they add no inversion: inversions are discordant pairs
    dis = _inversions(sb)
    n0 = n * (n - 1) // 2
    num = (n0 - n1 - n2 + n3 - 2 * dis).to(torch.float64)
    den = ((n0 - n1).to(torch.float64) * (n0 - n2).to(torch.float64)).sqrt()
    tau = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), float("nan"))
    return tau.clamp(-1, 1).to(a.dtype)


def _window(kind: str, win_size: int | None, sigma: float, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """The normalised 1-D window; the N-D window is its outer product (a separable filter)."""
    if kind == "gaussian":
        r = int(3.5 * sigma + 0.5)  # scipy.ndimage's truncate=3.5, as skimage
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        w1 = torch.exp(-0.5 * (t / sigma) ** 2)
    else:
        w1 = torch.ones(int(win_size or 7), dtype=torch.float64)
    return (w1 / w1.sum()).to(device=device, dtype=dtype)


def _filter(t: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """``t`` (N, K, *S) filtered by the separable window ``w1`` along every spatial axis, only
    where the window lies inside (no padding): one 1-D convolution per axis."""
    kernel = w1.reshape(1, 1, -1)
    for axis in range(2, t.ndim):
        moved = t.movedim(axis, -1)
        shape = moved.shape
        out = F.conv1d(moved.reshape(-1, 1, shape[-1]), kernel)
        t = out.reshape(*shape[:-1], out.shape[-1]).movedim(-1, axis)
    return t


@caller("ssim")
def ssim(
    a: torch.Tensor | Attribution,
    b: torch.Tensor | Attribution,
    *,
    window: str = "gaussian",
    sigma: float = 1.5,
    win_size: int | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
    sample_covariance: bool = False,
    shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per sample, for 1-D, 2-D and 3-D maps.

    With local means ``mu``, variances ``s^2`` and covariance ``s_ab`` under a sliding window,
    ``SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))``,
    ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L`` the data range; averaged over the window
    positions that lie inside the map (no padding) and over channels. The default is Wang et
    al.'s: a Gaussian window with ``sigma = 1.5`` truncated at 3.5 sigma (11 taps), ``k1 = 0.01``,
    ``k2 = 0.03``, population (1/N) covariances: ``skimage.metrics.structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` and ``channel_axis``.

    Parameters
    ----------
    a, b : Tensor of shape (B, C, *S) or (B, F), or Attribution
        Maps with 1 to 3 spatial axes S after the channel axis; a 2-D tensor (B, F) is one
        channel of F values (a 1-D map), unless ``shape`` says otherwise.
    window : {"gaussian", "uniform"}, default "gaussian"
        ``"uniform"`` with ``win_size=7, sample_covariance=True`` is skimage's default (and
        Quantus' ``ssim``).
    sigma : float > 0, default 1.5
        Of the Gaussian window.
    win_size : int, optional
        Side of the uniform window, odd, default 7 (the Gaussian window's side is set by ``sigma``).
    k1, k2 : float in (0, 1]
    data_range : float > 0, optional
        ``L``. Default: per sample, ``max(a, b) - min(a, b)`` over both maps (attributions have no
        fixed range; Quantus does the same), which makes the SSIM invariant to a common scale.
    sample_covariance : bool, default False
        Normalise the window's (co)variances by ``N - 1`` instead of ``N``.
    shape : sequence of int, optional
        The shape (C, *S) of one map: rows (B, F) are reshaped to (B, C, *S) first (the flattened
        maps that ``model_randomisation`` passes to a ``similarity`` callable).

    Returns
    -------
    Tensor of shape (B,)
        NaN where the data range is 0 (both maps constant and equal).

    Raises
    ------
    ShapeError
        A spatial axis shorter than the window, more than 3 spatial axes, or a ``shape`` that does
        not hold F values.

    References
    ----------
    Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 2004.
    """
    window = check_option(window, "window", options=("gaussian", "uniform"))
    sigma = check_float(sigma, "sigma", low=0.0, closed="right")
    k1 = check_float(k1, "k1", low=0.0, high=1.0, closed="right")
    k2 = check_float(k2, "k2", low=0.0, high=1.0, closed="right")
    sample_covariance = check_bool(sample_covariance, "sample_covariance")
    if win_size is not None:
        if window == "gaussian":
            raise ParameterError(
                f"The 'win_size' parameter of {current_caller()} sets the uniform window; the Gaussian "
                f"window's size follows from sigma (2 * int(3.5 * sigma + 0.5) + 1). Got win_size={win_size!r} "
                "with window='gaussian'."
            )
        win_size = check_int(win_size, "win_size", low=1)
        if win_size % 2 == 0:
            raise ParameterError(
                f"The 'win_size' parameter of {current_caller()} must be odd. Got {win_size}."
            )
    if data_range is not None:
        data_range = check_float(data_range, "data_range", low=0.0, closed="right")
    a, b = _pair(a, b)
    if shape is not None:
        shp = tuple(check_int(s, "shape", low=1) for s in shape)
        if len(shp) < 2 or math.prod(shp) != a[0].numel():
            raise ShapeError(
                f"The 'shape' parameter of {current_caller()} must be (C, *S) with 1 to 3 spatial axes "
                f"holding the {a[0].numel()} values of each map. Got {shape!r}."
            )
        a, b = a.reshape(-1, *shp), b.reshape(-1, *shp)
    elif a.ndim == 2:
        a, b = a[:, None], b[:, None]
    nd = a.ndim - 2
    if nd not in (1, 2, 3):
        raise ShapeError(
            f"{current_caller()} supports maps (B, C, *S) with 1 to 3 spatial axes. Got shape {tuple(a.shape)}."
        )
    side = 2 * int(min(3.5 * sigma + 0.5, 2**40)) + 1 if window == "gaussian" else (win_size or 7)
    if min(a.shape[2:]) < side:
        raise ShapeError(
            f"{current_caller()}: the {window} window has {side} taps per axis, larger than the maps' "
            f"spatial shape {tuple(a.shape[2:])}; use a smaller window (sigma= or window='uniform', win_size=)."
        )
    w = _window(window, win_size, sigma, a.dtype, a.device)
    bsz, c = a.shape[:2]
    if data_range is None:
        both = torch.cat([a.flatten(1), b.flatten(1)], 1)
        rng = both.amax(1) - both.amin(1)
    else:
        rng = torch.full((bsz,), data_range, dtype=a.dtype, device=a.device)
    # a common scale cancels: maps divided by their range (1 where it is 0, then NaN below)
    scale = torch.where(rng > 0, rng, torch.ones_like(rng)).reshape(-1, *([1] * (a.ndim - 1)))
    a, b = a / scale, b / scale
    lr = torch.where(rng > 0, torch.ones_like(rng), torch.zeros_like(rng))
    stacked = torch.stack([a, b, a * a, b * b, a * b], 2).reshape(bsz * c, 5, *a.shape[2:])
    mu_a, mu_b, aa, bb, ab = _filter(stacked, w).unbind(1)
    norm = 1.0
    if sample_covariance:
        np_ = side**nd
        norm = np_ / (np_ - 1)
    va = norm * (aa - mu_a * mu_a)
    vb = norm * (bb - mu_b * mu_b)
    vab = norm * (ab - mu_a * mu_b)
    lr = lr.repeat_interleave(c).reshape(-1, *([1] * nd))
    c1, c2 = (k1 * lr) ** 2, (k2 * lr) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * vab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    out = s.reshape(bsz, -1).mean(1)
    return torch.where(rng > 0, out, torch.full_like(out, float("nan")))


def _top_k_count(k: Any, n: int) -> int:
    if isinstance(k, float) and not isinstance(k, bool):
        frac = check_float(k, "k", low=0.0, high=1.0, closed="right")
        return max(1, round(frac * n))
    k = check_int(k, "k", low=1)
    if k > n:
        raise ParameterError(
            f"The 'k' parameter of {current_caller()} must be at most the number of values per map, {n}. Got {k}."
        )
    return k


@caller("top_k_overlap")
def top_k_overlap(
    a: torch.Tensor | Attribution, b: torch.Tensor | Attribution, *, k: int | float = 0.1
) -> torch.Tensor:
    """Share of the ``k`` largest positions of ``a`` that are among the ``k`` largest of ``b``.

    ``|top_k(a) & top_k(b)| / k`` over the flattened maps, signed values (pass ``a.abs()`` and
    ``b.abs()`` to rank magnitudes); ties are broken by position (earlier first).

    Parameters
    ----------
    a, b : Tensor of shape (B, ...) or Attribution
    k : int or float, default 0.1
        A count in [1, F], or a fraction in (0, 1] of the F values per map
        (``max(1, round(k * F))``).

    Returns
    -------
    Tensor of shape (B,)
        In [0, 1].
    """
    a, b = _pair(a, b)
    a, b = a.flatten(1), b.flatten(1)
    kk = _top_k_count(k, a.shape[1])
    ta = a.sort(dim=1, descending=True, stable=True).indices[:, :kk]
    tb = b.sort(dim=1, descending=True, stable=True).indices[:, :kk]
    in_b = torch.zeros_like(a, dtype=torch.bool).scatter_(1, tb, True)
    return in_b.gather(1, ta).sum(1).to(a.dtype) / kk
