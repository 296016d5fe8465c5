"""Tiny, seeded transformer models for tests (torch only, no hub downloads).

:class:`TinyViT` is a vision transformer laid out as timm's ``VisionTransformer`` (``patch_embed.proj``,
``cls_token``/``dist_token``/``reg_token``, ``pos_embed``, ``blocks.i.norm1/attn/norm2/mlp``,
``norm``, ``head``, ``num_prefix_tokens``); :class:`PatchTransformer1D` patches ``(N, C, T)``
signals over time, optionally per channel (PatchTST-style channel tokens). Three attention
implementations are available:

``"sdpa"``
    :class:`TimmAttention`, timm's layout: a ``fused_attn`` flag chooses
    ``F.scaled_dot_product_attention`` (True) or the explicit ``q @ k^T * scale``, softmax,
    ``attn_drop``, ``@ v`` path (False).
``"mha"``
    ``nn.MultiheadAttention(batch_first=True)`` called with ``need_weights=False`` as
    torchvision's ``EncoderBlock`` does.
``"explicit"``
    :class:`ExplicitAttention`, a hand-written block with separate ``query``/``key``/``value``
    projections and the explicit path only.

``model(x, return_attention=True)`` returns ``(logits, attentions)`` where ``attentions`` is a
list with one ``(B, heads, N, N)`` tensor of attention probabilities per block (softmax output,
before dropout). In that mode every block runs an explicit path built from the same weights, and
the returned probabilities are the tensors the output is computed from, so
``torch.autograd.grad(score, attentions)`` gives the attention gradients; the logits equal the
normal forward's up to rounding. Reference tests use it; explainers never see it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TimmAttention",
    "ExplicitAttention",
    "Block",
    "PatchEmbed",
    "TinyViT",
    "PatchTransformer1D",
    "attention_probs",
]

ATTENTIONS = ("sdpa", "mha", "explicit")


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, drop: nn.Module):
    """(B, H, N, d) q, k, v -> output (B, H, N, d) and probabilities (B, H, N, N)."""
    attn = (q @ k.transpose(-2, -1)) * scale
    attn = attn.softmax(dim=-1)
    return drop(attn) @ v, attn


class TimmAttention(nn.Module):
    """timm's ``Attention``: fused ``scaled_dot_product_attention`` or the explicit path."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        probs = None
        if self.fused_attn and not return_attention:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            q = q * self.scale
            attn = q @ k.transpose(-2, -1)
            attn = attn.softmax(dim=-1)
            probs = attn
            attn = self.attn_drop(attn)
            x = attn @ v
        x = self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))
        return (x, probs) if return_attention else x


class ExplicitAttention(nn.Module):
    """A hand-written attention block: separate q/k/v projections, explicit softmax path only."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out = nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        y, probs = _explicit(q, k, v, 1.0 / math.sqrt(self.head_dim), self.attn_drop)
        y = self.out(y.transpose(1, 2).reshape(b, n, c))
        return (y, probs) if return_attention else y


def _mha_explicit(mha: nn.MultiheadAttention, x: torch.Tensor):
    """nn.MultiheadAttention(x, x, x) written out, returning the probabilities it uses."""
    b, n, c = x.shape
    h = mha.num_heads
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, h, c // h).transpose(1, 2) for t in (q, k, v))
    y, probs = _explicit(q, k, v, 1.0 / math.sqrt(c // h), nn.Dropout(mha.dropout if mha.training else 0.0))
    return mha.out_proj(y.transpose(1, 2).reshape(b, n, c)), probs


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, attention: str = "sdpa", mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}; got {attention!r}")
        self.attention = attention
        self.norm1 = nn.LayerNorm(dim)
        self.attn: nn.Module
        if attention == "sdpa":
            self.attn = TimmAttention(dim, heads)
        elif attention == "mha":
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        else:
            self.attn = ExplicitAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        y = self.norm1(x)
        probs = None
        if self.attention == "mha":
            if return_attention:
                y, probs = _mha_explicit(self.attn, y)  # type: ignore[arg-type]
            else:
                y, _ = self.attn(y, y, y, need_weights=False)
        elif return_attention:
            y, probs = self.attn(y, return_attention=True)
        else:
            y = self.attn(y)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return (x, probs) if return_attention else x


class PatchEmbed(nn.Module):
    """timm-style patch embedding: ``proj`` convolution, then flatten to (B, N, D)."""

    def __init__(self, proj: nn.Module, grid_size: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = proj
        self.grid_size = grid_size
        self.num_patches = math.prod(grid_size)
        self.patch_size = proj.kernel_size
        self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Transformer(nn.Module):
    """Shared trunk: prefix tokens, position embedding, blocks, norm, head."""

    def _build_trunk(self, n_patches, dim, depth, heads, classes, attention, cls, dist, registers):
        self.has_class_token = cls
        self.cls_token = nn.Parameter(0.5 * torch.randn(1, 1, dim)) if cls else None
        self.dist_token = nn.Parameter(0.5 * torch.randn(1, 1, dim)) if dist else None
        self.num_reg_tokens = registers
        self.reg_token = nn.Parameter(0.5 * torch.randn(1, registers, dim)) if registers else None
        self.num_prefix_tokens = int(cls) + int(dist) + registers
        self.pos_embed = nn.Parameter(0.5 * torch.randn(1, self.num_prefix_tokens + n_patches, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, attention) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.head_dist = nn.Linear(dim, classes) if dist else None

    def _trunk(self, tokens: torch.Tensor, return_attention: bool):
        b = tokens.shape[0]
        prefix = [
            t.expand(b, -1, -1) for t in (self.cls_token, self.dist_token, self.reg_token) if t is not None
        ]
        x = torch.cat([*prefix, tokens], dim=1) + self.pos_embed
        attentions = []
        for block in self.blocks:
            if return_attention:
                x, probs = block(x, return_attention=True)
                attentions.append(probs)
            else:
                x = block(x)
        x = self.norm(x)
        if self.cls_token is None:
            out = self.head(x[:, self.num_prefix_tokens :].mean(dim=1))
        elif self.head_dist is not None:
            out = (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        else:
            out = self.head(x[:, 0])
        return (out, attentions) if return_attention else out


def _seeded(build, seed: int, dtype: torch.dtype, module: nn.Module) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        build()
    module.to(dtype).eval()


class TinyViT(_Transformer):
    """A tiny timm-layout ViT for (B, in_chans, H, W) images.

    Token order is ``[cls, dist, registers..., patches]`` (the ones present). Classification uses
    the CLS token (averaged with the distillation head when ``dist=True``, as DeiT does at
    inference) or the mean of the patch tokens when ``cls=False``. Built in eval mode, seeded
    (the global RNG is left unchanged).
    """

    def __init__(
        self,
        img: int | tuple[int, int] = 32,
        patch: int | tuple[int, int] = 8,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        classes: int = 3,
        attention: str = "sdpa",
        cls: bool = True,
        dist: bool = False,
        registers: int = 0,
        *,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        in_chans: int = 3,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        img2, patch2 = _pair(img), _pair(patch)
        stride2, pad2 = _pair(patch if stride is None else stride), _pair(padding)
        grid = tuple(_out(img2[i], patch2[i], stride2[i], pad2[i]) for i in range(2))
        self.img_size = img2

        def build() -> None:
            proj = nn.Conv2d(in_chans, dim, kernel_size=patch2, stride=stride2, padding=pad2)
            self.patch_embed = PatchEmbed(proj, grid)
            self._build_trunk(math.prod(grid), dim, depth, heads, classes, attention, cls, dist, registers)

        _seeded(build, seed, dtype, self)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        return self._trunk(self.patch_embed(x), return_attention)


class PatchTransformer1D(_Transformer):
    """A tiny patch transformer for (N, C, T) signals.

    ``channel_independent=False``: one token per time patch, ``Conv1d(C, dim, patch, stride)``
    over all channels (tokens (B, L, D), L = number of time patches).
    ``channel_independent=True``: each channel is patched alone by a shared
    ``Conv1d(1, dim, patch, stride)`` and given a channel embedding; the tokens of all channels
    form one sequence in channel-major order (tokens (B, C * L, D): channel 0's L patches, then
    channel 1's, ...), grid (C, L). A CLS token is prepended when ``cls=True``.
    """

    def __init__(
        self,
        channels: int = 3,
        length: int = 64,
        patch: int = 8,
        stride: int = 8,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        classes: int = 3,
        channel_independent: bool = False,
        *,
        cls: bool = True,
        attention: str = "sdpa",
        padding: int = 0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        n_time = _out(length, patch, stride, padding)
        self.channels = channels
        self.channel_independent = channel_independent
        grid = (channels, n_time) if channel_independent else (n_time,)

        def build() -> None:
            proj = nn.Conv1d(
                1 if channel_independent else channels, dim, patch, stride=stride, padding=padding
            )
            self.patch_embed = PatchEmbed(proj, grid)
            self.channel_embed = (
                nn.Parameter(0.5 * torch.randn(1, channels, 1, dim)) if channel_independent else None
            )
            self._build_trunk(math.prod(grid), dim, depth, heads, classes, attention, cls, False, 0)

        _seeded(build, seed, dtype, self)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        if self.channel_independent:
            b, c, t = x.shape
            tokens = self.patch_embed(x.reshape(b * c, 1, t))  # (B*C, L, D)
            tokens = tokens.reshape(b, c, -1, tokens.shape[-1]) + self.channel_embed
            tokens = tokens.reshape(b, -1, tokens.shape[-1])
        else:
            tokens = self.patch_embed(x)
        return self._trunk(tokens, return_attention)


def attention_probs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The attention probabilities (B, heads, N, N) of every block of ``model`` on ``x``, detached."""
    with torch.no_grad():
        _, attentions = model(x, return_attention=True)
    return [a.detach() for a in attentions]
