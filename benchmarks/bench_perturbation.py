"""Perturbation benchmark: RISE and MaskUpdate against the bare cost of their forward passes.

Run by hand (never in tests):

    python benchmarks/bench_perturbation.py            # full run, writes benchmarks/results_perturbation.md
    python benchmarks/bench_perturbation.py --quick    # tiny smoke run, prints only

Rows, all timed in one process with the same models, inputs and thread count:

- RISE with ``n_masks`` masks on 32 signals (1-D CNN, C=8, T=1000) and on 8 images (3x224x224)
  vs the *bare* cost: the model's forward passes over the same number of rows (B * n_masks) in
  the same chunks (``batch_size`` rows, the automatic size unless given), on a premade chunk, so
  the bare cost excludes drawing, rendering and applying masks. The target ratio is <= 1.1.
- Occlusion (window 25 on the signals) vs Captum's Occlusion with the same windows and
  ``perturbations_per_eval`` chosen to give the same rows per model call.
- MaskUpdate with ``n_steps`` steps on a batch of 32 signals (one chain each, all chains advance
  together: one 32-row call per step) vs the reference implementation's cost, which is
  ``n_steps`` sequential batch-1 forward passes *per sample*; measured for one sample and
  multiplied by 32. The bare limit of our schedule (``n_steps`` 32-row forwards) is also shown.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from _common import cnn1d, cnn2d, timeit  # noqa: E402  (puts src/ on sys.path)
import salience as sl  # noqa: E402

THREADS = int(__import__("os").environ.get("BENCH_THREADS", "2"))
ROOT = Path(__file__).resolve().parent








def bare_forward(model, x: torch.Tensor, n_rows: int, chunk: int, target: int):
    """Forward ``n_rows`` rows in chunks of ``chunk``, on one premade chunk (no mask work)."""
    rows = x[torch.arange(chunk) % x.shape[0]].contiguous()

    def run():
        with torch.no_grad():
            for start in range(0, n_rows, chunk):
                k = min(chunk, n_rows - start)
                model(rows[:k])[:, target].sum()
    return run


def rise_rows(name, model, x, n_masks, cells, repeats) -> list[str]:
    b = x.shape[0]
    from salience.engine import default_batch_size

    chunk = default_batch_size(int(math.prod(x.shape[1:])))
    explainer = sl.RISE(model, n_masks=n_masks, cells=cells, generator=torch.Generator().manual_seed(0), progress=False)
    ours = timeit(lambda: explainer(x, target=1), repeats)
    bare = timeit(bare_forward(model, x, b * (n_masks + 1), chunk, 1), repeats)  # + the score at x
    return [f"| RISE {name} | B={b}, N={n_masks}, cells={cells}, chunk={chunk} | {ours:.2f} | {bare:.2f} | {ours / bare:.2f} |"]


def occlusion_rows(model, x, window, repeats) -> list[str]:
    from salience.engine import default_batch_size

    b, c, t = x.shape
    chunk = default_batch_size(c * t)
    n_win = math.ceil((t - window) / window) + 1
    ours = timeit(lambda: sl.Occlusion(model, window={"t": window}, progress=False)(x, target=1), repeats)
    bare = timeit(bare_forward(model, x, b * (n_win + 1), chunk, 1), repeats)
    out = [f"| Occlusion signals | B={b}, window={window} ({n_win} windows), chunk={chunk} | {ours:.2f} | {bare:.2f} | {ours / bare:.2f} |"]
    try:
        from captum.attr import Occlusion
    except ImportError:
        return out
    ppe = max(1, chunk // b)
    captum = timeit(
        lambda: Occlusion(model).attribute(
            x, sliding_window_shapes=(c, window), strides=(c, window), baselines=0.0, target=1,
            perturbations_per_eval=ppe,
        ),
        repeats,
    )
    out.append(f"| Captum Occlusion signals | same windows, perturbations_per_eval={ppe} | {captum:.2f} | {bare:.2f} | {captum / bare:.2f} |")
    return out


def mask_update_rows(model, x, n_steps, cells, repeats) -> list[str]:
    b = x.shape[0]
    probs = nn.Sequential(model, nn.Softmax(-1)).eval()
    mu = sl.MaskUpdate(probs, n_steps=n_steps, cells=cells, generator=torch.Generator().manual_seed(0), progress=False)
    ours = timeit(lambda: mu(x, target=1), repeats)
    limit = timeit(bare_forward(probs, x, b * n_steps, b, 1), repeats)
    one = x[:1].contiguous()

    def sequential():
        with torch.no_grad():
            for _ in range(n_steps):
                probs(one)[:, 1]

    seq = timeit(sequential, repeats)
    return [
        f"| MaskUpdate signals | B={b}, steps={n_steps}, cells={cells}: ours (one {b}-row call per step) | {ours:.2f} | {limit:.2f} | {ours / limit:.2f} |",
        f"| reference schedule | {n_steps} sequential batch-1 forwards x {b} samples (measured for 1, x{b}) | {seq * b:.2f} | {limit:.2f} | {seq * b / limit:.2f} |",
        f"| speed-up of ours over the reference schedule | | {seq * b / ours:.1f}x | | |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes; print only")
    ap.add_argument("--image-size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    if args.quick:
        n_sig, n_img, size, n_masks, n_steps, repeats = 8, 2, 64, 200, 50, 2
    else:
        n_sig, n_img, size, n_masks, n_steps, repeats = 32, 8, args.image_size, 4000, 5000, 2
    g = torch.Generator().manual_seed(1)
    m1, m2 = cnn1d(), cnn2d()
    signals = torch.randn(n_sig, 8, 1000, generator=g)
    images = torch.randn(n_img, 3, size, size, generator=g)
    lines = [
        "## Perturbation methods (RISE, Occlusion, MaskUpdate)",
        "",
        f"torch {torch.__version__}, {THREADS} threads, float32, CPU; best of {repeats}. "
        "'bare' = the model's own forward passes over the same rows in the same chunks.",
        "",
        "| method | setting | seconds | bare seconds | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += rise_rows("signals (1-D CNN, C=8, T=1000)", m1, signals, n_masks, {"t": 16}, repeats)
    lines += rise_rows(f"images (3x{size}x{size})", m2, images, n_masks, {"h": 7, "w": 7}, repeats)
    lines += occlusion_rows(m1, signals, 25, repeats)
    lines += mask_update_rows(m1, signals, n_steps, {"t": 16}, repeats)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (ROOT / "results_perturbation.md").write_text(text)


if __name__ == "__main__":
    main()
