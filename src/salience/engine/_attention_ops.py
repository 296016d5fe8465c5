"""Explicit attention for the capture of :mod:`salience.engine.attention`.

Fused kernels (``F.scaled_dot_product_attention``, the fast path of ``nn.MultiheadAttention``)
never materialise the attention probabilities. During a capture they are replaced, for the call
only, by the explicit computation written here: ``A = softmax(Q K^T * scale + mask)`` and the
output ``A @ V``, so that ``A`` exists, is the tensor the output is computed from, and has a
gradient. Both functions take the arguments of the functions they stand for and return what
those return (up to rounding); ``keep(A)`` receives the probabilities (B, H, L, S) and returns
the tensor to use in their place.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import CompositionError, current_caller

__all__ = ["explicit_sdpa", "explicit_mha", "MHA_SIGNATURE"]

Keep = Callable[[torch.Tensor], torch.Tensor]

MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype, *, allowed: bool) -> torch.Tensor | None:
    """A bool mask as an additive float mask (``allowed=True``: True means "attend", as in
    ``scaled_dot_product_attention``; False: True means "masked out", as in ``nn.MultiheadAttention``)."""
    if mask is None or mask.is_floating_point():
        return None if mask is None else mask.to(dtype)
    blocked = ~mask if allowed else mask
    return torch.zeros(blocked.shape, dtype=dtype, device=blocked.device).masked_fill(blocked, float("-inf"))


def _probabilities(scores: torch.Tensor, masked: bool = True) -> torch.Tensor:
    """Softmax over the last axis; rows whose every entry is masked get zeros (as the math
    kernel of ``scaled_dot_product_attention`` does) with finite gradients. ``masked=False``
    says no mask was applied (no row can be fully masked)."""
    if not masked:
        return torch.softmax(scores, dim=-1)
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)
    if bool(dead.any()):
        return torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    return torch.softmax(scores, dim=-1)


def explicit_sdpa(
    keep: Keep,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` written out: (..., L, E), (..., S, E), (..., S, Ev) -> (..., L, Ev)."""
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(groups, dim=-3)
        value = value.repeat_interleave(groups, dim=-3)
    factor = scale if scale is not None else query.shape[-1] ** -0.5
    scores = (query * factor) @ key.transpose(-2, -1)  # scaling q is cheaper than the scores
    length, source = scores.shape[-2], scores.shape[-1]
    if is_causal:
        causal = torch.ones(length, source, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    mask = _float_mask(attn_mask, scores.dtype, allowed=True)
    if mask is not None:
        scores = scores + mask
    probs = keep(_probabilities(scores, masked=is_causal or mask is not None))
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return probs @ value


def explicit_mha(keep: Keep, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``F.multi_head_attention_forward`` written out (sequence-first inputs (L, B, E), as
    ``nn.MultiheadAttention`` passes them), with the probabilities through ``keep``."""
    a = MHA_SIGNATURE.bind(*args, **kwargs)
    a.apply_defaults()
    p = a.arguments
    if p["static_k"] is not None or p["static_v"] is not None:
        raise CompositionError(
            f"{current_caller()}: nn.MultiheadAttention called with static_k/static_v cannot be "
            "captured (its attention is computed from precomputed keys); explain it without them."
        )
    query, key, value = p["query"], p["key"], p["value"]
    heads = int(p["num_heads"])
    batched = query.dim() == 3
    kpm, attn_mask = p["key_padding_mask"], p["attn_mask"]
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        kpm = None if kpm is None else kpm.unsqueeze(0)
    length, batch, embed = query.shape
    dtype = query.dtype
    if p["use_separate_proj_weight"]:
        weights = (p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"])
    else:
        weights = tuple(p["in_proj_weight"].chunk(3))
    bias = p["in_proj_bias"]
    biases = (None, None, None) if bias is None else tuple(bias.chunk(3))
    q = F.linear(query, weights[0], biases[0])
    k = F.linear(key, weights[1], biases[1])
    v = F.linear(value, weights[2], biases[2])
    # as F.multi_head_attention_forward: a causal hint without a padding mask or weights to
    # return replaces the mask by a causal mask over the final key length (see below)
    causal = bool(p["is_causal"]) and kpm is None and not p["need_weights"]
    kpm = _float_mask(kpm, dtype, allowed=False)
    attn_mask = None if causal else _float_mask(attn_mask, dtype, allowed=False)
    if p["bias_k"] is not None and p["bias_v"] is not None:
        k = torch.cat([k, p["bias_k"].repeat(1, batch, 1)])
        v = torch.cat([v, p["bias_v"].repeat(1, batch, 1)])
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        kpm = None if kpm is None else F.pad(kpm, (0, 1))
    hd = embed // heads

    def split(t: torch.Tensor) -> torch.Tensor:  # (S, B, E) -> (B, H, S, hd)
        return t.reshape(t.shape[0], batch, heads, hd).permute(1, 2, 0, 3)

    q, k, v = split(q), split(k), split(v)
    if p["add_zero_attn"]:
        zeros = torch.zeros((batch, heads, 1, hd), dtype=k.dtype, device=k.device)
        k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        kpm = None if kpm is None else F.pad(kpm, (0, 1))
    source = k.shape[2]
    scores = (q * hd**-0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores + (
            attn_mask.reshape(batch, heads, length, source) if attn_mask.dim() == 3 else attn_mask
        )
    elif causal:
        allowed = torch.ones(length, source, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if kpm is not None:
        scores = scores + kpm.reshape(batch, 1, 1, source)
    probs = keep(_probabilities(scores, masked=causal or attn_mask is not None or kpm is not None))
    dropout_p = float(p["dropout_p"]) if p["training"] else 0.0
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    out = (probs @ v).permute(2, 0, 1, 3).reshape(length, batch, embed)
    out = F.linear(out, p["out_proj_weight"], p["out_proj_bias"])
    weights_out: torch.Tensor | None = None
    if p["need_weights"]:
        weights_out = probs.mean(dim=1) if p["average_attn_weights"] else probs
        if not batched:
            weights_out = weights_out.squeeze(0)
    if not batched:
        out = out.squeeze(1)
    return out, weights_out
