"""Regions of the perturbation-curve metrics (:mod:`~salience.metrics.perturbation_curves`):
label maps (patch grids, superpixels, contiguous segments and frequency bands, user masks),
per-region attribution scores, their removal order and the cumulative removal curve scored
chunk by chunk through the engine."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._progress import progress_bar
from .._validation import check_bool, check_generator, check_int, check_option, make_generator
from ..errors import InputError, ParameterError, ShapeError, current_caller
from ..layout import Layout
from ..masking import Filler
from ._checks import check_rows
from ._setup import setup


def _per_axis(value: Any, name: str, n_axes: int) -> tuple[int, ...]:
    """An int or one int per segmented axis, each >= 1."""
    if isinstance(value, (tuple, list)):
        if len(value) != n_axes:
            raise ParameterError(
                f"The {name!r} parameter of {current_caller()} must be an int or {n_axes} ints (one per "
                f"segmented axis). Got {value!r} instead."
            )
        return tuple(check_int(v, name, low=1) for v in value)
    return (check_int(value, name, low=1),) * n_axes


def grid_labels(space: torch.Tensor, lay: Layout, patch_size: Any) -> torch.Tensor:
    """Patches of ``patch_size`` along the spatial axes, as Quantus lays them out.

    An axis of length ``n`` not divisible by ``p`` is padded by ``p - n % p`` split as floor/ceil
    before/after (Quantus' ``get_padding_size``); patches cover the padded grid, so the border
    patches are smaller. The label map has size 1 on the other axes (all channels together).

    Returns
    -------
    LongTensor of shape (1, ...) broadcastable to ``space``
    """
    axes = lay.spatial_axes
    sizes = _per_axis(patch_size, "patch_size", len(axes))
    label = torch.zeros((1,) * space.ndim, dtype=torch.long, device=space.device)
    for ax, p in zip(axes, sizes, strict=True):
        n = space.shape[ax]
        p = min(p, n)  # a patch longer than the axis is the whole axis (Quantus pads it to one patch)
        before = (p - n % p) // 2 if n % p else 0
        count = math.ceil(n / p)
        idx = (torch.arange(n, device=space.device) + before) // p
        shape = [1] * space.ndim
        shape[ax] = n
        label = label * count + idx.reshape(shape)
    return label


def band_labels(space: torch.Tensor, lay: Layout, n_segments: int) -> torch.Tensor:
    """``n_segments`` contiguous, nearly equal segments along each spatial axis (a signal's time
    segments, a Fourier domain's frequency bands); boundaries at ``floor(k * n / n_segments)``."""
    label = torch.zeros((1,) * space.ndim, dtype=torch.long, device=space.device)
    for ax in lay.spatial_axes:
        n = space.shape[ax]
        k = min(n_segments, n)
        idx = torch.arange(n, device=space.device) * k // n
        shape = [1] * space.ndim
        shape[ax] = n
        label = label * k + idx.reshape(shape)
    return label


def superpixels(
    space: torch.Tensor, lay: Layout, n_segments: int, compactness: float = 10.0, n_iter: int = 10
) -> torch.Tensor:
    """SLIC-like superpixels of images, batched and dependency-free (no connectivity step).

    Centres start on a regular grid of about ``n_segments`` cells; every iteration assigns each
    pixel to the nearest centre within two grid steps in the distance
    ``|colour - colour_k|^2 + (compactness / step)^2 |position - position_k|^2`` (colours over
    the channel axis, standardised per sample) and moves the centres to their pixels' means.
    Empty clusters keep no pixels (their labels are unused).

    Returns
    -------
    LongTensor of shape (B, 1, H, W) (the layout's axes; size 1 but for b, h and w)
    """
    h_ax, w_ax = lay.spatial_axes
    b = space.shape[0]
    hh, ww = space.shape[h_ax], space.shape[w_ax]
    others = [i for i in range(1, space.ndim) if i not in (h_ax, w_ax)]
    img = space.permute(0, *others, h_ax, w_ax).reshape(b, -1, hh, ww)
    std = img.flatten(1).std(1).clamp_min(torch.finfo(img.dtype).tiny)
    col = ((img - img.mean((1, 2, 3), keepdim=True)) / std[:, None, None, None]).flatten(2)  # (B, C, N)
    step = math.sqrt(hh * ww / min(n_segments, hh * ww))
    gh, gw = max(1, round(hh / step)), max(1, round(ww / step))
    cy = (torch.arange(gh, dtype=img.dtype, device=img.device) + 0.5) * hh / gh
    cx = (torch.arange(gw, dtype=img.dtype, device=img.device) + 0.5) * ww / gw
    cen_pos = torch.stack(torch.meshgrid(cy, cx, indexing="ij"), -1).reshape(1, -1, 2).expand(b, -1, -1)
    py, px = torch.meshgrid(
        torch.arange(hh, dtype=img.dtype, device=img.device),
        torch.arange(ww, dtype=img.dtype, device=img.device),
        indexing="ij",
    )
    pos = torch.stack((py, px), -1).reshape(-1, 2)  # (N, 2)
    k_of = ((pos[:, 0] * gh // hh) * gw + pos[:, 1] * gw // ww).long()
    n_cells = gh * gw
    start_col = torch.zeros((b, col.shape[1], n_cells), dtype=img.dtype, device=img.device).index_add_(
        2, k_of, col
    ) / torch.bincount(k_of, minlength=n_cells).clamp_min(1).to(img.dtype)
    weight = (compactness / step) ** 2
    labels = []
    for i in range(b):  # one image at a time: memory (H * W, n_cells), not times B
        c_pos, c_col = cen_pos[i], start_col[i]
        for _ in range(n_iter):
            d_pos = torch.cdist(pos, c_pos).square()  # (N, K)
            dist = torch.cdist(col[i].T, c_col.T).square() + weight * d_pos
            near = d_pos <= (2 * step) ** 2
            near = near | ~near.any(1, keepdim=True)  # a pixel no centre reaches sees them all
            label = dist.masked_fill(~near, torch.inf).argmin(1)  # (N,)
            one = torch.nn.functional.one_hot(label, n_cells).to(img.dtype)  # (N, K)
            count = one.sum(0)
            used = count > 0
            c_pos = torch.where(used[:, None], (one.T @ pos) / count.clamp_min(1)[:, None], c_pos)
            c_col = torch.where(used[None], (col[i] @ one) / count.clamp_min(1)[None], c_col)
        labels.append(label)
    label = torch.stack(labels)
    shape = [b if i == 0 else 1 for i in range(space.ndim)]
    shape[h_ax], shape[w_ax] = hh, ww
    return label.reshape(b, hh, ww).reshape(shape)


def check_segments(segments: Any, space: torch.Tensor) -> torch.Tensor:
    """A user's label map: integer labels >= 0 broadcastable to ``space`` (same ndim)."""
    if not isinstance(segments, torch.Tensor) or segments.is_floating_point() or segments.is_complex():
        got = segments.dtype if isinstance(segments, torch.Tensor) else type(segments).__name__
        raise InputError(
            f"The 'segments' parameter of {current_caller()} must be an integer tensor of segment labels "
            f"(0, 1, ...) broadcastable to the input (or the domain's coefficients). Got {got} instead."
        )
    if segments.ndim != space.ndim or segments.shape[0] not in (1, space.shape[0]):
        raise ShapeError(
            f"{current_caller()}: segments must have the input's number of dims and batch size 1 or B, "
            f"broadcastable to {tuple(space.shape)}. Got shape {tuple(segments.shape)} instead."
        )
    try:
        torch.broadcast_shapes(segments.shape, space.shape)
    except RuntimeError as err:
        raise ShapeError(
            f"{current_caller()}: segments of shape {tuple(segments.shape)} do not broadcast to "
            f"{tuple(space.shape)}."
        ) from err
    segments = segments.to(device=space.device, dtype=torch.long)
    if bool((segments < 0).any()):
        raise InputError(f"{current_caller()}: segment labels must be >= 0. Got {int(segments.min())}.")
    return segments


def region_scores(a: torch.Tensor, labels: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-region ``how`` ("sum" or "mean") of ``a`` expanded to the labels' broadcast shape.

    Returns
    -------
    (scores, counts) : Tensors of shape (B, K)
        K = the largest label + 1; a region without elements has count 0 (score 0).
    """
    shape = torch.broadcast_shapes(a.shape, labels.shape)
    lab = labels.expand(shape).reshape(shape[0], -1)
    k = int(lab.max()) + 1
    vals = a.expand(shape).reshape(shape[0], -1)
    sums = torch.zeros((shape[0], k), dtype=a.dtype, device=a.device).scatter_add_(1, lab, vals)
    counts = torch.zeros((shape[0], k), dtype=a.dtype, device=a.device).scatter_add_(
        1, lab, torch.ones_like(vals)
    )
    if how == "mean":
        sums = sums / counts.clamp_min(1)
    return sums, counts


def region_ranks(
    scores: torch.Tensor, counts: torch.Tensor, order: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Removal rank of each region (0 first): MoRF descending scores, LeRF ascending; ties by
    label; ``"random"``: a uniform random permutation per sample (one ``torch.rand(L)`` per
    sample, in sample order, from ``generator``); empty regions last."""
    if order == "random":
        gen = make_generator(generator)
        key = torch.stack(
            [
                torch.rand(scores.shape[1], generator=gen, device=gen.device, dtype=torch.float64)
                for _ in scores
            ]
        ).to(scores.device)
    else:
        key = scores if order == "morf" else -scores
    key = torch.where(counts > 0, key, torch.full_like(key, -torch.inf))
    idx = torch.sort(key, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(idx)
    ranks.scatter_(1, idx, torch.arange(idx.shape[1], device=idx.device).expand_as(idx))
    return ranks


def removal_scores(
    score: Any, filler: Filler, labels: torch.Tensor, ranks: torch.Tensor, n_states: int, bar: Any
) -> torch.Tensor:
    """Scores after removing the first 1..n_states regions of each sample (cumulatively).

    Rows are built chunk by chunk (``score.batch_size`` rows per model call): memory is bounded
    by the batch size, not by ``B * n_states``.

    Returns
    -------
    Tensor of shape (B, n_states)
    """
    b = ranks.shape[0]
    pos = ranks.gather(1, labels.expand(b, *labels.shape[1:]).reshape(b, -1)).reshape(b, *labels.shape[1:])
    pos = pos.to(torch.int32)  # ranks < number of regions: half the memory traffic of int64 per chunk

    def make(start: int, stop: int) -> torch.Tensor:
        bar.update(stop - start)
        r = torch.arange(start, stop, device=pos.device)
        s, k = r // n_states, r % n_states + 1
        kept = pos[s] >= k.reshape(-1, *([1] * (pos.ndim - 1)))  # regions ranked k and later stay
        return filler(s, kept)

    return score.values(make, n=n_states)


def setup_metric(model: Any, x: Any, attribution: Any, target: Any, domain: Any, kw: dict) -> tuple:
    progress = check_bool(kw.pop("progress"), "progress")
    a, space, lay, score = setup(model, x, attribution, target, domain, **kw)
    return a, space, lay, score, progress


def labels_for(
    space: torch.Tensor, lay: Any, segments: Any, patch_size: Any, n_segments: int | None
) -> torch.Tensor:
    """The region label map: a user's segments, a patch grid, superpixels or contiguous bands."""
    if segments is not None:
        return check_segments(segments, space)
    if not lay.spatial_axes:
        raise ShapeError(
            f"{current_caller()} segments the spatial axes of the input; layout {lay} has none. Pass segments=..."
        )
    if n_segments is None:
        return grid_labels(space, lay, patch_size)
    if len(lay.spatial_axes) == 2 and not {"f", "r"} & set(lay.names):
        return superpixels(space, lay, n_segments)
    return band_labels(space, lay, n_segments)


def curve_scores(
    model: Any,
    x: Any,
    attribution: Any,
    target: Any,
    *,
    segments: Any,
    patch_size: Any,
    n_segments: int | None,
    how: str,
    order: str,
    n_regions: int | None,
    substrate: Any,
    domain: Any,
    kw: dict,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(f(x), scores after removing 1..L regions (B, L), regions per sample (B,))``."""
    order = check_option(order, "order", options=("morf", "lerf", "random"))
    a, space, lay, score, progress = setup_metric(model, x, attribution, target, domain, kw)
    labels = labels_for(space, lay, segments, patch_size, n_segments)
    scores, counts = region_scores(a, labels, how)
    present = (counts > 0).sum(1)
    n = int(present.max())
    if n_regions is not None:
        n = min(n, n_regions)
    check_rows(space.shape[0], n, "n_regions")
    ranks = region_ranks(scores, counts, order, check_generator(generator))
    filler = Filler(space, substrate, lay)
    bar = progress_bar(space.shape[0] * n, current_caller(), progress)
    with bar:
        curve = removal_scores(score, filler, labels, ranks, n, bar)
    return score.input_values(), curve, present


def trapezoid(curve: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule (unit spacing) over points ``0..last[i]`` of each row of ``curve``."""
    k = torch.arange(curve.shape[1], device=curve.device)
    w = (k <= last[:, None]).to(curve.dtype)
    w = w - 0.5 * ((k == 0) | (k == last[:, None])).to(curve.dtype)
    return (curve * w).sum(1)
