"""Attention benchmark: AttentionRollout and TransformerAttribution against the bare model.

Run by hand (never in tests):

    python benchmarks/bench_attention.py            # full run, prints a markdown table
    python benchmarks/bench_attention.py --quick    # smaller models and inputs

- "bare fwd": one forward pass of the batch under ``torch.no_grad()`` (what rollout needs);
- "bare fwd+bwd": one forward pass and one backward pass of the summed target logits to the
  input (what Chefer's attribution needs);
- the explainers' time includes everything ``explain`` does (target binding, the capture of the
  attention in every layer with the fused kernels replaced by explicit attention, the rollout,
  mapping the tokens to the input).

Models (hand-written, timm's layout, ``F.scaled_dot_product_attention``): a ViT-Tiny-like model
(patch 16, width 192, 12 blocks, 3 heads) on (8, 3, 224, 224) images, and a 1-D patch
transformer (patch 16, width 128, 6 blocks, 4 heads) on (8, 16, 2048) signals. The functions
are interleaved in each round; the table gives the median and the minimum over the rounds (the
minimum is the figure to trust on a machine shared with other work). Each explainer is timed
with the default ``batch_size`` (which bounds the rows per model call by their size: 3 images
of 224 x 224 per call on a CPU) and with the whole batch in one call, as the bare model runs it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import salience as sl  # noqa: E402

THREADS = 2


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchTransformer(nn.Module):
    """CLS token + patch tokens from a strided convolution (1-D or 2-D), pre-norm blocks, linear head."""

    def __init__(
        self, conv: nn.Module, n_patches: int, dim: int, depth: int, heads: int, classes: int
    ) -> None:
        super().__init__()
        self.patch_embed = conv
        self.num_prefix_tokens = 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, n_patches + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(t))[:, 0])


def models(quick: bool) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    side, length = (112, 1024) if quick else (224, 2048)
    vit = PatchTransformer(nn.Conv2d(3, 192, 16, 16), (side // 16) ** 2, 192, 12, 3, 1000).eval()
    sig = PatchTransformer(nn.Conv1d(16, 128, 16, 16), length // 16, 128, 6, 4, 5).eval()
    return {
        f"ViT-Tiny-like, (8, 3, {side}, {side})": (vit, torch.randn(8, 3, side, side, generator=g)),
        f"1-D patch transformer, (8, 16, {length})": (sig, torch.randn(8, 16, length, generator=g)),
    }


def run_times(fns: dict[str, object], rounds: int) -> dict[str, list[float]]:
    """Seconds of every round of each function, the functions interleaved in each round (slow
    drifts of the machine affect them alike); one warm-up call each first."""
    for fn in fns.values():
        fn()  # type: ignore[operator]
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            times[k].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    rows = []
    target = 1
    for name, (model, x) in models(args.quick).items():
        rollout, chefer = sl.AttentionRollout(model), sl.TransformerAttribution(model)
        # the whole batch in one call, as the bare model runs it (the default batch_size bounds the
        # rows per call by their size: 3 images of 224 x 224 per call on a CPU)
        rollout8 = sl.AttentionRollout(model, batch_size=x.shape[0])
        chefer8 = sl.TransformerAttribution(model, batch_size=x.shape[0])

        def forward(model=model, x=x) -> None:
            with torch.no_grad():
                model(x)

        def forward_backward(model=model, x=x) -> None:
            xr = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xr)[:, target].sum(), xr)

        runs = run_times(
            {
                "fwd": forward,
                "fwdbwd": forward_backward,
                "rollout": lambda r=rollout, x=x: r.explain(x, target),
                "chefer": lambda c=chefer, x=x: c.explain(x, target),
                "rollout8": lambda r=rollout8, x=x: r.explain(x, target),
                "chefer8": lambda c=chefer8, x=x: c.explain(x, target),
            },
            args.rounds,
        )
        for stat, reduce in (("median", statistics.median), ("min", min)):
            t = {k: reduce(v) for k, v in runs.items()}
            for label, r, c in (("default", "rollout", "chefer"), (str(x.shape[0]), "rollout8", "chefer8")):
                rows.append(
                    f"| {name} | {label} | {stat} | {t['fwd'] * 1e3:.1f} | {t[r] * 1e3:.1f} | "
                    f"{t[r] / t['fwd']:.2f}x | {t['fwdbwd'] * 1e3:.1f} | {t[c] * 1e3:.1f} | "
                    f"{t[c] / t['fwdbwd']:.2f}x |"
                )
    print(f"torch {torch.__version__}, {THREADS} threads, float32, {args.rounds} rounds\n")
    print(
        "| model, input | batch_size | statistic | bare fwd (ms) | AttentionRollout (ms) | ratio | bare fwd+bwd (ms) "
        "| TransformerAttribution (ms) | ratio |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
