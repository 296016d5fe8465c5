"""Evaluation used by the demo: deletion/insertion curves and localisation against ground truth.

Kept beside the demo, its only user, as a small reference implementation: zero substrate,
features ranked by signed attribution, the target's softmax probability after each step.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def deletion_insertion(
    model: Any, x: torch.Tensor, attr: torch.Tensor, target: torch.Tensor, *, steps: int = 20, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Curves (B, steps + 1) of the target probability while removing (deletion) or revealing
    (insertion) the most important input elements first; removed elements are set to 0.

    ``attr`` may have a single channel (a CAM); it is broadcast over the input channels.
    """
    B = x.shape[0]
    a = attr.expand_as(x) if attr.shape != x.shape else attr
    if a.shape != x.shape:
        a = torch.nn.functional.interpolate(attr, size=x.shape[2:], mode="linear" if x.ndim == 3 else "nearest").expand_as(x)
    flat = a.reshape(B, -1)
    D = flat.shape[1]
    order = flat.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(D).expand(B, D).contiguous())
    counts = [round(D * i / steps) for i in range(steps + 1)]
    rows_del, rows_ins = [], []
    xf = x.reshape(B, -1)
    for k in counts:
        removed = rank < k
        rows_del.append(torch.where(removed, torch.zeros_like(xf), xf))
        rows_ins.append(torch.where(removed, xf, torch.zeros_like(xf)))
    out = []
    for rows in (rows_del, rows_ins):
        r = torch.stack(rows, 1).reshape(B * (steps + 1), *x.shape[1:])
        probs = torch.cat([model(r[i : i + batch_size]).softmax(-1) for i in range(0, r.shape[0], batch_size)])
        t = target.repeat_interleave(steps + 1)
        out.append(probs[torch.arange(r.shape[0]), t].reshape(B, steps + 1))
    return out[0], out[1]


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of curves (B, S) on [0, 1]."""
    S = curves.shape[1]
    return ((curves[:, 1:] + curves[:, :-1]) / 2).sum(1) / (S - 1)


def pointing_game(attr: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 where the largest (positive) attribution falls inside the ground-truth mask, per sample.

    Channel-reduced maps (B, 1, ...) are compared with the mask pooled over channels.
    """
    B = attr.shape[0]
    if attr.shape[1] == 1 and truth.shape[1] != 1:
        truth = truth.any(1, keepdim=True)
    idx = attr.reshape(B, -1).argmax(1)
    return truth.reshape(B, -1)[torch.arange(B), idx].float()


def relevance_mass(attr: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Share of the positive attribution inside the ground-truth mask, per sample."""
    B = attr.shape[0]
    if attr.shape[1] == 1 and truth.shape[1] != 1:
        truth = truth.any(1, keepdim=True)
    pos = attr.clamp(min=0).reshape(B, -1)
    inside = (pos * truth.reshape(B, -1)).sum(1)
    total = pos.sum(1)
    return torch.where(total > 1e-12, inside / total.clamp(min=1e-12), torch.zeros_like(total))
