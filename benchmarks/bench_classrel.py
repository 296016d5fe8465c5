"""ClassRelevant (VAR) benchmark: time-grid pointing game and the cost of batching the K classes.

Run by hand (never in tests):

    python benchmarks/bench_classrel.py            # full run, writes benchmarks/results_classrel.md
    python benchmarks/bench_classrel.py --quick    # reduced run (one seed, small sizes), also written

1. Pointing game: the synthetic burst task of ``tests/synthetic_bursts.py`` (class k = a sine burst
   of its own frequency at a random position; a tiny 1-D CNN trained for a few seconds per seed).
   Four test signals of different classes are concatenated along time (a time grid); each cell
   is explained for its own class, and the share of positive attribution mass inside the cell is
   averaged (chance 0.25). Plain maps vs ClassRelevant maps (classes = the grid's four labels,
   tau = 0.01, temperature = 0.1), with and without per-sample normalisation.
2. Cost: ClassRelevant(IntegratedGradients) with the K classes stacked into one batched run, vs
   the VAR reference loop (one IG run per class and per sample, K runs each), vs the bare limit
   (the model's forward+backward over the same B * K * n_steps rows as one batch). Same process,
   same threads, best of 3 (pointing game) and 10 (cost).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT.parent / "tests"))
import salience as sl  # noqa: E402
from salience.engine import default_batch_size  # noqa: E402
from salience.metrics import grid_pointing_game, make_grid  # noqa: E402
from synthetic_bursts import burst_data, train_cnn  # noqa: E402

THREADS = 2


def methods(model, n_steps):
    return {
        "Gradient": sl.Gradient(model),
        "InputXGradient": sl.InputXGradient(model),
        f"IG ({n_steps} steps)": sl.IntegratedGradients(model, n_steps=n_steps),
    }


def pointing(seeds, n_grids, n_steps):
    rows = {}
    accs = []
    for seed in seeds:
        model, acc = train_cnn(seed=seed)
        accs.append(acc)
        x, y = burst_data(n_grids, torch.Generator().manual_seed(100 + seed))
        grid = make_grid(x, y, cells=4, generator=torch.Generator().manual_seed(seed))
        batch = grid.expand()
        for name, e in methods(model, n_steps).items():
            variants = {
                "plain": e,
                "ClassRelevant": sl.ClassRelevant(e, classes=batch.classes),
                "ClassRelevant (normalize)": sl.ClassRelevant(e, classes=batch.classes, normalize=True),
            }
            for v, ex in variants.items():
                attr = ex.explain(batch.inputs, batch.targets)
                s = float(grid_pointing_game(attr, grid).mean())
                rows.setdefault(name, {}).setdefault(v, []).append(s)
    return rows, accs


def best_of(fn, repeat=10):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cost(b, k, n_steps):
    model, _ = train_cnn(seed=0)
    x, _ = burst_data(max(1, b // 4 + 1), torch.Generator().manual_seed(7))
    x = x[:b]
    classes = list(range(k))
    targets = torch.arange(b) % k
    ig = sl.IntegratedGradients(model, n_steps=n_steps, rule="riemann_right")
    cr = sl.ClassRelevant(ig, classes=classes)

    def batched():
        cr.explain(x, targets)

    def var_loop():  # VAR: K separate attribution runs for each sample's target
        for i in range(b):
            maps = torch.stack([ig.explain(x[i : i + 1], c).values[0] for c in classes])
            t = int(targets[i])
            m = torch.softmax(10 * maps.abs(), 0)[t]
            _ = maps[t] * m * ((m - 1 / k) > 0.01)

    rows = x.repeat_interleave(k * n_steps, 0)
    tg = torch.arange(k).repeat_interleave(n_steps).repeat(b)

    def bare(chunk):
        def run():
            for s in range(0, rows.shape[0], chunk):
                r = rows[s : s + chunk].clone().requires_grad_(True)
                out = model(r).gather(1, tg[s : s + chunk, None]).sum()
                torch.autograd.grad(out, r)
        return run

    # the limit: one pass over all rows, or chunks of our default batch size, whichever is faster
    # (on a CPU, cache-sized chunks run faster than one giant batch)
    one_pass, chunked = bare(rows.shape[0]), bare(default_batch_size(int(x[0].numel())))
    for fn in (batched, var_loop, one_pass, chunked):
        fn()
    return {"batched": best_of(batched), "var": best_of(var_loop),
            "bare": min(best_of(one_pass), best_of(chunked))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    if args.quick:
        seeds, n_grids, n_steps, b = [0], 4, 8, 4
    else:
        seeds, n_grids, n_steps, b = [0, 1, 2, 3, 4], 16, 32, 16
    rows, accs = pointing(seeds, n_grids, n_steps)
    k = 4
    t = cost(b, k, n_steps)

    lines = [
        "## ClassRelevant (VAR): time-grid pointing game and cost",
        "",
        *(["(Quick run: 1 seed, reduced sizes, shared CPU; `python benchmarks/bench_classrel.py` "
           "for the full table.)", ""] if args.quick else []),
        f"Synthetic burst task (4 classes, one frequency each), 1-D CNN trained per seed "
        f"(held-out accuracy {min(accs):.2f}-{max(accs):.2f}); {n_grids} time grids of 4 cells per seed, "
        f"every cell explained for its class; mean share of positive mass in the cell (chance 0.25), "
        f"mean ± std over {len(seeds)} seed(s). ClassRelevant: classes = the grid's labels, tau 0.01, "
        f"temperature 0.1. Torch {torch.__version__}, {THREADS} threads, CPU.",
        "",
        "| method | plain | ClassRelevant | ClassRelevant (normalize) |",
        "|---|---|---|---|",
    ]
    for name, v in rows.items():
        cells = []
        for key in ("plain", "ClassRelevant", "ClassRelevant (normalize)"):
            s = v[key]
            sd = statistics.stdev(s) if len(s) > 1 else 0.0
            cells.append(f"{statistics.mean(s):.3f} ± {sd:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Cost of K = {k} classes for B = {b} samples with IG ({n_steps} steps, riemann_right), best of 10:",
        "",
        "| run | seconds | vs bare limit |",
        "|---|---|---|",
        f"| bare forward+backward over B*K*steps = {b * k * n_steps} rows (one pass or our chunks, the faster) "
        f"| {t['bare']:.4f} | 1.00 |",
        f"| ClassRelevant(IG), one batched run | {t['batched']:.4f} | {t['batched'] / t['bare']:.2f} |",
        f"| VAR loop: K IG runs per sample | {t['var']:.4f} | {t['var'] / t['bare']:.2f} |",
        "",
        f"Batched / VAR loop: {t['batched'] / t['var']:.2f}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (ROOT / "results_classrel.md").write_text(text)


if __name__ == "__main__":
    main()
