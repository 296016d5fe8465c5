"""Metrics benchmark: deletion + insertion curves vs the bare forward cost and vs Quantus.

Run by hand (never in tests):

    python benchmarks/bench_metrics.py            # full run, writes benchmarks/results_metrics.md
    python benchmarks/bench_metrics.py --quick    # tiny smoke run, prints only

Workload: 32 signals (C=8, T=1000) and a 1-D CNN (the core benchmark's ``cnn1d``), a
position attribution of shape (32, 1, 1000) (all channels of a time step move
together, as RISE's pixels), deletion and insertion with 100 steps each (101 scored
states per curve, so 2 * 101 * 32 = 6464 model rows). Everything is measured in one process,
same thread count, best of ``repeats``:

- ours: ``deletion_curve`` + ``insertion_curve`` (zero substrate for both, so that only the
  perturbation and the model count; ``batch_size=None``, i.e. 256 rows per call);
- bare limit: the model's forward passes alone over the same 6464 rows, pre-built in memory,
  in chunks of 256 rows, under ``no_grad`` (the fastest any implementation can be);
- Quantus ``PixelFlipping`` (deletion only: Quantus has no insertion curve) with
  ``features_in_step = 1000 / 100``, the same zero baseline and model; its time is reported
  for deletion alone and doubled to compare with deletion + insertion (curves only:
  ``return_auc_per_sample=True`` calls ``np.trapz``, removed in numpy 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from _common import cnn1d, timeit  # noqa: E402  (puts src/ on sys.path)
from salience import metrics as M  # noqa: E402

THREADS = 2
ROOT = Path(__file__).resolve().parent






def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; prints, writes nothing")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    n, steps, repeats = (4, 10, 1) if args.quick else (32, 100, 3)
    g = torch.Generator().manual_seed(1)
    model = cnn1d()
    x = torch.randn(n, 8, 1000, generator=g)
    a = torch.randn(n, 1, 1000, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    k = steps + 1
    rows_total = 2 * k * n

    def ours():
        d = M.deletion_curve(model, x, a, y, steps=steps, substrate=0.0, progress=False)
        i = M.insertion_curve(model, x, a, y, steps=steps, substrate=0.0, progress=False)
        return M.auc(d), M.auc(i)

    # the same rows, pre-built (not timed): deletion and insertion states
    order = a.flatten(1).argsort(1, descending=True)
    counts = torch.linspace(0, 1000, k).floor().long()
    built = []
    for c in counts:
        removed = torch.zeros(n, 1000, dtype=torch.bool)
        removed.scatter_(1, order[:, : int(c)], True)
        removed = removed.reshape(n, 1, 1000)
        built.append(torch.where(removed, 0.0, x))
        built.append(torch.where(removed, x, 0.0))
    rows = torch.cat(built)
    assert rows.shape[0] == rows_total

    def bare():
        with torch.no_grad():
            for s in range(0, rows.shape[0], 256):
                model(rows[s : s + 256])

    t_ours = timeit(ours, repeats)
    t_bare = timeit(bare, repeats)
    lines = [
        "## Metrics: deletion + insertion",
        "",
        f"{n} signals (C=8, T=1000), 1-D CNN, {steps} steps per curve ({rows_total} model rows), "
        f"{THREADS} threads, best of {repeats}.",
        "",
        "| implementation | time (s) | ratio to bare forward |",
        "|---|---|---|",
        f"| salience deletion + insertion | {t_ours:.3f} | {t_ours / t_bare:.2f}x |",
        f"| bare forward, same rows (256 per call) | {t_bare:.3f} | 1.00x |",
    ]
    try:
        import quantus
    except ImportError:
        quantus = None
        lines.append("| Quantus PixelFlipping | not installed | |")
    if quantus is not None:
        metric = quantus.PixelFlipping(features_in_step=1000 // steps, perturb_baseline=0.0, normalise=False,
                                       abs=False, disable_warnings=True, return_auc_per_sample=False)

        def q():
            return metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                          channel_first=True, device="cpu", batch_size=256)

        t_q = timeit(q, repeats)
        lines.append(f"| Quantus PixelFlipping (deletion only) | {t_q:.3f} | {t_q / t_bare:.2f}x |")
        lines.append(f"| Quantus, doubled (deletion + insertion equivalent) | {2 * t_q:.3f} | {2 * t_q / t_bare:.2f}x |")
        d_ours = M.deletion_curve(model, x, a, y, steps=steps, substrate=0.0, progress=False)
        lines.append("")
        lines.append(f"Deletion-curve states: ours {d_ours.shape[1]} (including the intact input), Quantus "
                     f"{steps} (after each step). Ours vs Quantus time for deletion + insertion: "
                     f"{t_ours / (2 * t_q):.2f}x.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (ROOT / "results_metrics.md").write_text(text)
    _ = np  # numpy is used through Quantus' inputs


if __name__ == "__main__":
    main()
