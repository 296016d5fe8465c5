"""Attention benchmark: AttentionRollout, TransformerAttribution and IntegratedGradients on
transformers against the bare model.

Run by hand (never in tests):

    python benchmarks/bench_attention.py            # full run, prints markdown tables
    python benchmarks/bench_attention.py --out benchmarks/results_attention.md
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

IntegratedGradients (n_steps=32; rule gausslegendre, Captum's default, and salience's default
riemann_trapezoid) is timed on the first ``IG_SAMPLES`` samples of the same inputs against its bare
limit: one forward and one backward pass of the summed target logits over the same B x n_steps
interpolated rows, run in chunks of the engine's default batch size and in one go; the faster of
the two is the limit. Captum's IntegratedGradients (default ``internal_batch_size=None``: every row
in one go) runs on the same model and inputs as a peer when captum can be imported.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import salience as sl  # noqa: E402
from salience.engine import default_batch_size  # noqa: E402

THREADS = 2
IG_STEPS = 32
# samples explained by IG per model (B; B x n_steps rows): one ViT image is 32 rows of 224 x 224,
# about 1.6 s of forward+backward on 2 threads (2 signals: 64 rows, about 2.5 s); 5 functions x rounds
IG_SAMPLES = {"ViT": 1, "1-D": 2}


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


def interpolants(x: torch.Tensor, n_steps: int) -> torch.Tensor:
    """The B x n_steps rows IG runs (zero baseline): every sample scaled by every step."""
    a = torch.linspace(0, 1, n_steps)
    return (a.view(1, -1, *[1] * (x.ndim - 1)) * x.unsqueeze(1)).reshape(-1, *x.shape[1:])


def bare_pass(model: nn.Module, rows: torch.Tensor, target: int, chunk: int):
    """Forward and backward of the summed target logits to the rows, ``chunk`` rows per call."""

    def run() -> None:
        for start in range(0, rows.shape[0], chunk):
            r = rows[start : start + chunk].detach().requires_grad_(True)
            torch.autograd.grad(model(r)[:, target].sum(), r)

    return run


def ig_rows(name: str, model: nn.Module, x: torch.Tensor, rounds: int, target: int) -> tuple[list[str], dict]:
    """IntegratedGradients against its bare limit (and Captum's, when it imports) on one model."""
    n = _ig_samples(name)
    x = x[:n]
    rows = interpolants(x, IG_STEPS)
    chunk = default_batch_size(math.prod(x.shape[1:]))
    fns = {
        f"bare fwd+bwd, {rows.shape[0]} rows in chunks of {chunk} (the default batch_size)": bare_pass(
            model, rows, target, chunk
        ),
        f"bare fwd+bwd, {rows.shape[0]} rows in one go": bare_pass(model, rows, target, rows.shape[0]),
        "salience IG, gausslegendre": lambda: sl.IntegratedGradients(
            model, n_steps=IG_STEPS, rule="gausslegendre"
        ).explain(x, target),
        "salience IG, default rule (riemann_trapezoid)": lambda: sl.IntegratedGradients(
            model, n_steps=IG_STEPS
        ).explain(x, target),
    }
    try:
        from captum.attr import IntegratedGradients as CaptumIG
    except Exception:  # noqa: BLE001 - any failure to import means no peer row
        CaptumIG = None
    if CaptumIG is not None:
        fns["captum IG, gausslegendre (internal_batch_size=None)"] = lambda: CaptumIG(model).attribute(
            x, target=target, n_steps=IG_STEPS, method="gausslegendre"
        )
    runs = run_times(fns, rounds)
    label = f"{name.split(', (')[0]}, ({n}, {', '.join(map(str, x.shape[1:]))})"
    out, summary = [], {}
    stats = {
        stat: {k: reduce(v) for k, v in runs.items()}
        for stat, reduce in (("median", statistics.median), ("min", min))
    }
    limits = {stat: min(t[k] for k in t if k.startswith("bare")) for stat, t in stats.items()}
    for k in runs:
        med, mn = stats["median"][k], stats["min"][k]
        out.append(
            f"| {label} | {k} | {med * 1e3:.0f} | {mn * 1e3:.0f} | {med / limits['median']:.2f}x | "
            f"{mn / limits['min']:.2f}x |"
        )
        summary[k] = mn / limits["min"]
    return out, summary


def _ig_samples(name: str) -> int:
    return IG_SAMPLES["ViT"] if name.startswith("ViT") else IG_SAMPLES["1-D"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU cores ({cpu})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ig-rounds", type=int, default=8, help="rounds of the (slow) IG table")
    parser.add_argument("--skip-ig", action="store_true")
    parser.add_argument("--out", help="write the markdown section to this file")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    rows = []
    ig_lines: list[str] = []
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
        if not args.skip_ig:
            lines, _ = ig_rows(name, model, x, args.ig_rounds, target)
            ig_lines += lines
    load_after = os.getloadavg()
    text = "\n".join(
        [
            "## Attention: rollout, Chefer's attribution and IG on transformers (`benchmarks/bench_attention.py`)",
            "",
            "Two hand-written transformers in timm's layout (`F.scaled_dot_product_attention`, a CLS token): "
            "a ViT-Tiny-like model (patch 16, width 192, 12 blocks, 3 heads, 1000 classes) and a 1-D patch "
            "transformer (patch 16, width 128, 6 blocks, 4 heads, 5 classes); target class 1, float32.",
            "",
            f"Machine: {machine()}, torch {torch.__version__}, {THREADS} threads (OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), no GPU. The functions are interleaved in each "
            "round after one warm-up call each; the tables give the median and the minimum over the rounds. "
            "The machine was shared with other work (load average "
            f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end, on {os.cpu_count()} cores): "
            "the minimum is the figure to trust, the median shows the spread.",
            "",
            "### AttentionRollout and TransformerAttribution against one forward(+backward)",
            "",
            "AttentionRollout needs one forward pass: its ratio is to one bare forward of the batch under "
            "`torch.no_grad()`. TransformerAttribution (Chefer et al. 2021) needs one forward and one "
            "backward: its ratio is to one bare forward+backward of the summed target logits to the input. "
            "The explainers' time is all of `explain` (target binding, the capture of every layer's "
            "attention with the fused kernel replaced by explicit attention for the call, the rollout, the "
            "tokens mapped back to the input). `batch_size` default: the engine bounds the rows per model "
            "call by their size (3 images of 224 x 224 on a CPU, 16 signals of 16 x 2048), so the default "
            "runs the batch of 8 in several calls while the bare pass runs it in one; `batch_size` 8: the "
            "whole batch in one call, as the bare model runs it. Target: 1.3x or less.",
            "",
            f"{args.rounds} rounds.",
            "",
            "| model, input | batch_size | statistic | bare fwd (ms) | AttentionRollout (ms) | ratio | bare fwd+bwd (ms) "
            "| TransformerAttribution (ms) | ratio |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    if ig_lines:
        text += "\n" + "\n".join(
            [
                "",
                f"### IntegratedGradients against the bare limit (n_steps={IG_STEPS})",
                "",
                "The bare limit is the model's own forward+backward of the summed target logits over the "
                f"same B x {IG_STEPS} interpolated rows (zero baseline), run in chunks of the engine's "
                "default batch size and in one go (all rows in one call; memory allowed it here); the "
                "faster of the two, per statistic, is the limit (1.00x). salience's IG runs with its "
                "default batch_size; Captum's IntegratedGradients (captum "
                f"{_captum_version()}, `internal_batch_size=None`, its default: every row in one call) "
                f"runs on the same model and inputs as a peer. {args.ig_rounds} rounds.",
                "",
                "| model, input | function | median (ms) | min (ms) | median / limit | min / limit |",
                "|---|---|---:|---:|---:|---:|",
                *ig_lines,
            ]
        )
    text += "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def _captum_version() -> str:
    try:
        import captum

        return str(captum.__version__)
    except Exception:  # noqa: BLE001
        return "not importable: no peer row"


if __name__ == "__main__":
    main()
