"""Shared machinery of the methods over feature groups (FeatureAblation, FeaturePermutation,
ShapleyValueSampling, KernelShap, Lime): groups resolved against the explained tensor, rows of
coalitions built lazily per engine chunk, group values spread back over the elements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..engine import ScoreFunction
from ..errors import ParameterError, ShapeError, current_caller
from ..masking import Filler
from ..masking.groups import GroupIds, Groups, as_groups

__all__ = ["Resolved", "resolve_groups", "coalition_scores", "check_groups", "group_info"]

#: ``keep(k0, k1) -> (k1 - k0, G)`` bool: coalitions ``k0 .. k1`` (True = the group keeps x)
Coalitions = Callable[[int, int], torch.Tensor]


def check_groups(groups: Any) -> Groups:
    """``groups=`` as a :class:`~salience.masking.groups.Groups` (see
    :func:`~salience.masking.groups.as_groups`)."""
    return as_groups(groups)


class Resolved:
    """A grouping resolved for the points ``x`` (B, *S) of a score function.

    ``ids`` (1 or B', *M) holds the group of every element; with one row per original sample,
    point ``p`` reads row ``score.sample_map[p]``.
    """

    def __init__(self, gids: GroupIds, rows: torch.Tensor | None, device: torch.device) -> None:
        self.ids = gids.ids.to(device)
        self.n = int(gids.n_groups)
        self.names = gids.names
        self.shape = gids.shape
        self.rows = rows  # (P,) row of ids of each point, None when shared
        self.flat = self.ids.reshape(self.ids.shape[0], -1)

    def of(self, point: int) -> torch.Tensor:
        """The ids of point ``point``, flattened: (numel(M),)."""
        return self.flat[0] if self.rows is None else self.flat[int(self.rows[point])]

    def masks(self, point: int, keep: torch.Tensor) -> torch.Tensor:
        """Element masks (k, *M) of coalitions ``keep`` (k, G) for point ``point`` (True = keep)."""
        return keep[:, self.of(point)].reshape(keep.shape[0], *self.shape)

    def per_point(self, n_points: int) -> torch.Tensor:
        """The ids of every point, (P, numel(M))."""
        if self.rows is None:
            return self.flat.expand(n_points, -1)
        return self.flat[self.rows]

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """Group values (P, G) on the elements: (P, *M), each element its group's value."""
        p = values.shape[0]
        if self.rows is None:
            return values[:, self.flat[0]].reshape(p, *self.shape)
        return values.gather(1, self.per_point(p)).reshape(p, *self.shape)


def resolve_groups(groups: Groups, x: torch.Tensor, score: ScoreFunction) -> Resolved:
    """Resolve ``groups`` against ``x`` (B, *S) in ``score.layout``."""
    gids = groups.resolve(x.shape[1:], score.layout)
    if not isinstance(gids, GroupIds) or gids.ids.dtype != torch.long:
        raise ParameterError(
            f"{current_caller()}: {groups!r}.resolve must return a GroupIds with integer ids; got {gids!r}."
        )
    rows = None
    if gids.ids.shape[0] > 1:
        n_orig = int(score.sample_map.max()) + 1 if score.sample_map.numel() else 0
        if gids.ids.shape[0] != n_orig:
            raise ShapeError(
                f"{current_caller()}: per-sample group ids have {gids.ids.shape[0]} rows, but {n_orig} "
                "sample(s) are explained; give one row per sample, or a single grouping shared by all."
            )
        rows = score.sample_map.to(gids.ids.device)
    return Resolved(gids, rows, x.device)


def coalition_scores(
    score: ScoreFunction,
    filler: Filler,
    res: Resolved,
    keep: Coalitions,
    n: int,
    on_rows: Callable[[int, int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Scores (B, n) of every sample ``b`` with the groups of coalition ``k`` kept (the others
    replaced by the filler's substrate).

    Rows are built lazily per engine chunk (row ``r``: sample ``r // n``, coalition ``r % n``), so
    memory stays bounded by ``batch_size`` rows. Bool masks select exactly: a kept element is
    ``x`` bit for bit. ``on_rows(b, k0, k1, rows)`` sees every run of rows built (Lime's
    distances).
    """

    def rows(start: int, stop: int) -> torch.Tensor:
        out = []
        r = start
        while r < stop:
            b, k0 = divmod(r, n)
            k1 = min(n, k0 + (stop - r))
            built = filler(b, res.masks(b, keep(k0, k1)))
            if on_rows is not None:
                on_rows(b, k0, k1, built)
            out.append(built)
            r += k1 - k0
        return out[0] if len(out) == 1 else torch.cat(out)

    return score.values(rows, n=n)


def group_info(res: Resolved, values: torch.Tensor, **more: Any) -> dict[str, Any]:
    """What the group methods record in ``Attribution.info``."""
    info: dict[str, Any] = {"n_groups": res.n, "group_values": values.detach()}
    if res.names is not None:
        info["group_names"] = list(res.names)
    info.update(more)
    return info
