"""Benchmark: FourierIG and ICAIG against the bare forward+backward limit and the reference package.

Workload (full run): n_steps=50 right-Riemann IG, a batch of N=32 signals with C=8 channels and
T=1000 samples, a small float32 1-D CNN, CPU, 2 threads.

- ours: ``salience.FourierIG`` / ``salience.ICAIG`` (per-sample ICA mode, the reference's),
  batched over samples x steps, default ``batch_size``;
- limit: the model's forward+backward over the same N*n rows with nothing else (one pass of
  all rows, chunks of 256 rows and chunks of our default batch size; the fastest is the limit);
- reference: PyPI ``cross-domain-saliency-maps`` (torch part), one sample per ``run`` and n
  sequential batch-1 forward/backward passes (skipped if not installed; install with
  ``pip install --no-deps cross-domain-saliency-maps``).

Timing is the best of ``--repeats`` rounds after one warm-up, ours and the limits interleaved in
each round (so that slow drifts of the machine affect them alike). ICA fitting is excluded (the same
fitted FastICA per sample is given to both libraries).

Usage::

    python benchmarks/bench_domains.py            # full workload (run serially, idle machine)
    python benchmarks/bench_domains.py --quick    # reduced workload, to check the script

Writes ``benchmarks/results_domains.md`` (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys
import warnings

import numpy as np
import torch
from torch import nn

from _common import time_all, timeit as timed  # noqa: E402  (puts src/ on sys.path)

import salience as sl  # noqa: E402
from salience.engine import default_batch_size  # noqa: E402


def make_model(c: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(c, 32, 7, padding=3),
        nn.ReLU(),
        nn.Conv1d(32, 32, 7, padding=3),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(32, 2),
    ).eval()






def bare_limit(model: nn.Module, rows: torch.Tensor, chunk: int | None) -> None:
    step = rows.shape[0] if chunk is None else chunk
    for s in range(0, rows.shape[0], step):
        r = rows[s : s + step].detach().requires_grad_(True)
        out = model(r)[:, 1]
        torch.autograd.grad(out.sum(), r)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="reduced workload (N=4, n=10, T=500)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    n_samples, n_steps, c, t = (4, 10, 8, 500) if args.quick else (32, 50, 8, 1000)
    repeats = args.repeats or (1 if args.quick else 5)

    model = make_model(c)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_samples, c, t, generator=g)
    rows = torch.randn(n_samples * n_steps, c, t, generator=g)


    from sklearn.decomposition import FastICA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        icas = [FastICA(random_state=0, whiten="unit-variance", max_iter=200).fit(x[i].T.double().numpy()) for i in range(n_samples)]

    ours = {
        "FourierIG": lambda: sl.FourierIG(model, n_steps=n_steps).explain(x, target=1),
        "ICAIG": lambda: sl.ICAIG(model, icas, n_steps=n_steps).explain(x, target=1),
    }
    # our chunk size: the rows of the explained (coefficient) tensor; Fourier's has C x (T/2+1) x 2
    ours_chunk = default_batch_size(c * (t // 2 + 1) * 2)
    t_all = time_all(
        {
            "one": lambda: bare_limit(model, rows, None),
            "256": lambda: bare_limit(model, rows, 256),
            "ours": lambda: bare_limit(model, rows, ours_chunk),
            **ours,
        },
        repeats,
    )
    t_one, t_chunk, t_ourchunk = t_all.pop("one"), t_all.pop("256"), t_all.pop("ours")
    limit = min(t_one, t_chunk, t_ourchunk)
    t_ours = t_all

    t_ref: dict[str, float | None] = {"FourierIG": None, "ICAIG": None}
    if not args.no_reference:
        try:
            from cross_domain_saliency_maps.torch_ig import cross_domain_integrated_gradients as ref
        except ImportError:
            ref = None
        if ref is not None:
            def run_ref(kind: str) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for i in range(n_samples):
                        m = copy.deepcopy(model)
                        xi = x[i : i + 1].numpy()
                        if kind == "FourierIG":
                            e = ref.FourierIG(m, n_steps, 1, torch.device("cpu"))
                        else:
                            e = ref.ICAIG(m, icas[i], n_steps, 1, torch.device("cpu"))
                        e.run(xi, np.zeros_like(xi))

            import contextlib
            import io

            for kind in t_ref:
                with contextlib.redirect_stderr(io.StringIO()):
                    t_ref[kind] = timed(lambda: run_ref(kind), repeats)

    lines = [
        "## Domains: FourierIG and ICAIG (CPU, 2 threads)",
        "",
        f"Workload: N={n_samples} signals, C={c}, T={t}, n_steps={n_steps} (right Riemann), float32 "
        f"1-D CNN; best of {repeats} round(s){' (--quick: reduced workload)' if args.quick else ''}.",
        f"Bare forward+backward limit over {n_samples * n_steps} rows: one pass {t_one:.3f} s, "
        f"chunks of 256 {t_chunk:.3f} s, chunks of {ours_chunk} (our default batch size) "
        f"{t_ourchunk:.3f} s; limit = {limit:.3f} s.",
        "",
        "| method | ours (s) | ours / limit | reference (s) | reference / ours |",
        "|---|---|---|---|---|",
    ]
    for k in ours:
        r = t_ref[k]
        ref_s = f"{r:.3f}" if r is not None else "n/a"
        ratio = f"{r / t_ours[k]:.2f}x" if r is not None else "n/a"
        lines.append(f"| {k} | {t_ours[k]:.3f} | {t_ours[k] / limit:.2f}x | {ref_s} | {ratio} |")
    lines.append("")
    text = "\n".join(lines)
    if not args.quick:  # a quick run only checks the script
        pathlib.Path(__file__).with_name("results_domains.md").write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
