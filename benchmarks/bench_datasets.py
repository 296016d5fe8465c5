"""explain_dataset (#17): throughput of the local engine against plain explain() over the same
memory-mapped data, Ray with 1 and 2 workers, the time to resume a finished store, and the peak
memory (RSS) as the dataset grows from 1e3 to 1e5 samples.

Run: ``.venv/bin/python benchmarks/bench_datasets.py [--quick]``; writes
benchmarks/results_datasets.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from salience.datasets.explain import explain_dataset
from salience.explainers.gradient import Gradient
from salience.explainers.integrated_gradients import IntegratedGradients

C, T = 8, 256


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(C, 16, 7, padding=3),
        nn.ReLU(),
        nn.Conv1d(16, 16, 7, padding=3),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(8),
        nn.Flatten(),
        nn.Linear(128, 4),
    ).eval()


def plain(explainer, x: np.ndarray, chunk: int) -> None:
    """explain() chunk by chunk over the same data, results copied to the host and dropped."""
    for a in range(0, len(x), chunk):
        explainer.explain(torch.from_numpy(np.array(x[a : a + chunk]))).numpy()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def write_npy(n: int, path: str) -> None:
    """A memory-mapped .npy of ``n`` samples (8, 64), written in blocks."""
    x = np.lib.format.open_memmap(os.path.join(path, "x.npy"), mode="w+", dtype=np.float32, shape=(n, C, 64))
    for a in range(0, n, 10_000):
        x[a : a + 10_000] = np.random.default_rng(a).standard_normal((min(10_000, n - a), C, 64))
    x.flush()


def rss_child(path: str) -> None:
    """Explain the .npy at ``path`` in a fresh process: peak RSS after imports and a warm-up
    (the baseline) and after the whole run."""
    m = nn.Sequential(nn.Conv1d(C, 8, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 4)).eval()
    small = np.load(os.path.join(path, "x.npy"), mmap_mode="r")[:512]
    explain_dataset(
        Gradient(m), np.array(small), os.path.join(path, "warm.zarr"), batch_size=512, progress=False
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    explain_dataset(
        Gradient(m), os.path.join(path, "x.npy"), os.path.join(path, "s.zarr"), batch_size=512, progress=False
    )
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{before / 1024:.1f} {after / 1024:.1f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rss-child", metavar="DIR")
    args = p.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    torch.set_num_threads(2)
    n = 1024 if args.quick else 2048
    chunk = 256
    tmp = tempfile.mkdtemp()
    x = np.lib.format.open_memmap(os.path.join(tmp, "x.npy"), mode="w+", dtype=np.float32, shape=(n, C, T))
    x[:] = np.random.default_rng(0).standard_normal((n, C, T))
    x.flush()
    x = np.load(os.path.join(tmp, "x.npy"), mmap_mode="r")
    rows = []
    for name, e in [
        ("Gradient", Gradient(model())),
        ("IntegratedGradients(n_steps=16)", IntegratedGradients(model(), n_steps=16)),
    ]:
        plain(e, x[:chunk], chunk)  # warm-up
        t_plain = min(timed(lambda e=e: plain(e, x, chunk)) for _ in range(2))
        t_store = []
        for r in range(2):
            out = os.path.join(tmp, f"{name[:4]}{r}.zarr")
            t_store.append(
                timed(lambda e=e, out=out: explain_dataset(e, x, out, batch_size=chunk, progress=False))
            )
        t_resume = timed(lambda e=e, out=out: explain_dataset(e, x, out, batch_size=chunk, progress=False))
        rows.append((name, n / t_plain, n / min(t_store), min(t_store) / t_plain - 1, t_resume))
        print(rows[-1], flush=True)
    ray_rows = []
    try:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        e = IntegratedGradients(model(), n_steps=16)
        for workers in (1, 2):
            out = os.path.join(tmp, f"ray{workers}.zarr")
            ray_rows.append(
                (
                    workers,
                    n
                    / timed(
                        lambda out=out, workers=workers: explain_dataset(
                            e, x, out, batch_size=chunk, engine="ray", workers=workers, progress=False
                        )
                    ),
                )
            )
            print(ray_rows[-1], flush=True)
        ray.shutdown()
    except ImportError:
        pass
    rss = []
    for size in (1_000, 100_000) if not args.quick else (1_000, 10_000):
        d = tempfile.mkdtemp()
        write_npy(size, d)
        res = subprocess.run(
            [sys.executable, __file__, "--rss-child", d],
            capture_output=True,
            text=True,
            check=True,
        )
        before, after = map(float, res.stdout.split())
        rss.append((size, before, after))
        print(rss[-1], flush=True)
        shutil.rmtree(d)
    shutil.rmtree(tmp)
    lines = [
        "# explain_dataset (#17)",
        "",
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 2 threads; "
        f"{n} memory-mapped samples of ({C}, {T}) float32, chunks of {chunk}; a 2-conv 1-D CNN. "
        "Best of 2 runs. `plain`: explain() chunk by chunk over the same data, values copied to the "
        "host; `store`: explain_dataset (local engine) into a new Zarr store.",
        "",
        "| method | plain samples/s | store samples/s | writing overhead | resume a finished store (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b:.0f} | {c:.0f} | {d * 100:+.1f}% | {e:.3f} |" for a, b, c, d, e in rows]
    if ray_rows:
        lines += [
            "",
            "Ray (local cluster, 2 CPUs, IntegratedGradients n_steps=16; the cluster started "
            "beforehand, the actors' start included):",
            "",
            "| workers | samples/s |",
            "|---|---|",
        ]
        lines += [f"| {w} | {s:.0f} |" for w, s in ray_rows]
    lines += [
        "",
        "Peak RSS of a process explaining a memory-mapped .npy of (8, 64) samples (Gradient, chunks of 512):",
        "",
        "| samples | peak RSS after imports and a warm-up (MiB) | peak RSS after the run (MiB) |",
        "|---|---|---|",
    ]
    lines += [f"| {s} | {b:.0f} | {a:.0f} |" for s, b, a in rss]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(os.path.dirname(__file__), "results_datasets.md"), "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
