"""Feature-group benchmark: FeatureAblation, FeaturePermutation, ShapleyValueSampling, KernelShap
and Lime against the bare cost of their forward passes and against Captum.

Run by hand (never in tests):

    python benchmarks/bench_feature_groups.py            # full run, writes benchmarks/results_feature_groups.md
    python benchmarks/bench_feature_groups.py --quick    # tiny smoke run, prints only

Settings: the benchmark 1-D CNN on N=32 signals (8 x 1000) with 20 time segments, and the 2-D
CNN on N=32 images (3 x 64 x 64) with 8 x 8 patches (64 groups). 'bare' is the model's forward
passes over the same number of rows in the same chunks on a premade chunk (no row building).
Captum gets ``perturbations_per_eval`` chosen to give the same rows per model call where it has
the option (FeatureAblation, FeaturePermutation, ShapleyValueSampling); its Lime and KernelShap
explain a batch one sample at a time (their design), so they are timed on the whole batch too.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from _common import cnn1d, cnn2d, time_all  # noqa: E402  (puts src/ on sys.path)

from salience.engine import default_batch_size  # noqa: E402
from salience.explainers.ablation import FeatureAblation, FeaturePermutation  # noqa: E402
from salience.explainers.shapley import ShapleyValueSampling  # noqa: E402
from salience.explainers.surrogate import KernelShap, Lime  # noqa: E402
from salience.layout import Layout  # noqa: E402
from salience.masking.groups import patch_groups, time_segments  # noqa: E402

THREADS = int(__import__("os").environ.get("BENCH_THREADS", "2"))
ROOT = Path(__file__).resolve().parent


def bare_forward(model, x: torch.Tensor, n_rows: int, chunk: int, target: int):
    rows = x[torch.arange(chunk) % x.shape[0]].contiguous()

    def run():
        with torch.no_grad():
            for start in range(0, n_rows, chunk):
                model(rows[: min(chunk, n_rows - start)])[:, target].sum()

    return run


def rows_for(name, model, x, groups, layout, n_samples, repeats) -> list[str]:
    b = x.shape[0]
    chunk = default_batch_size(int(math.prod(x.shape[1:])))
    ids = groups.resolve(x.shape[1:], layout).ids
    g = int(ids.max()) + 1
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ours = {
        "FeatureAblation": (lambda: FeatureAblation(model, groups=groups)(x, target=1), g + 1),
        "FeaturePermutation": (
            lambda: FeaturePermutation(model, groups=groups, generator=gen())(x, 1),
            g + 1,
        ),
        "ShapleyValueSampling": (
            lambda: ShapleyValueSampling(model, groups=groups, n_samples=n_samples, generator=gen())(x, 1),
            1 + n_samples * (g - 1) + 1,
        ),
        "KernelShap": (
            lambda: KernelShap(model, groups=groups, n_samples=4 * g, generator=gen())(x, 1),
            4 * g + 2,
        ),
        "Lime": (lambda: Lime(model, groups=groups, n_samples=4 * g, generator=gen())(x, 1), 4 * g + 1),
    }
    fns = {k: fn for k, (fn, _) in ours.items()}
    for k, (_, rows) in ours.items():
        fns[f"bare {k}"] = bare_forward(model, x, b * rows, chunk, 1)
    try:
        from captum import attr as ca
    except ImportError:
        ca = None
    if ca is not None:
        ppe = max(1, chunk // b)
        t = torch.ones(b, dtype=torch.long)
        fns["Captum FeatureAblation"] = lambda: ca.FeatureAblation(model).attribute(
            x, target=t, feature_mask=ids, perturbations_per_eval=ppe
        )
        fns["Captum FeaturePermutation"] = lambda: ca.FeaturePermutation(model).attribute(
            x, target=t, feature_mask=ids, perturbations_per_eval=ppe
        )
        fns["Captum ShapleyValueSampling"] = lambda: ca.ShapleyValueSampling(model).attribute(
            x, target=t, feature_mask=ids, n_samples=n_samples, perturbations_per_eval=ppe
        )
        fns["Captum KernelShap"] = lambda: ca.KernelShap(model).attribute(
            x, target=t, feature_mask=ids, n_samples=4 * g + 2, perturbations_per_eval=ppe
        )
        fns["Captum Lime"] = lambda: ca.Lime(model).attribute(
            x, target=t, feature_mask=ids, n_samples=4 * g, perturbations_per_eval=ppe
        )
    best = time_all(fns, repeats)
    out = []
    for k, (_, rows) in ours.items():
        bare = best[f"bare {k}"]
        captum = best.get(f"Captum {k}")
        theirs = "" if captum is None else f"{captum:.2f} | {captum / best[k]:.1f}x"
        out.append(
            f"| {k} | {name}, G={g}, {rows} rows/sample, chunk={chunk} | {best[k]:.2f} | {bare:.2f} | "
            f"{best[k] / bare:.2f} | {theirs} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes; print only")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    n, n_samples, repeats = (4, 2, 1) if args.quick else (32, 4, 2)
    g = torch.Generator().manual_seed(1)
    signals = torch.randn(n, 8, 1000, generator=g)
    images = torch.randn(n, 3, 64, 64, generator=g)
    lines = [
        "## Feature-group methods (FeatureAblation, FeaturePermutation, ShapleyValueSampling, KernelShap, Lime)",
        "",
        f"torch {torch.__version__}, {THREADS} threads, float32, CPU; best of {repeats}. 'bare' = the "
        "model's own forward passes over the same rows in the same chunks; the last column is "
        "Captum's time over ours.",
        "",
        "| method | setting | seconds | bare seconds | ratio | Captum seconds | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += rows_for(
        f"signals N={n} 8x1000, 20 segments",
        cnn1d(),
        signals,
        time_segments(20),
        Layout("b c t"),
        n_samples,
        repeats,
    )
    lines += rows_for(
        f"images N={n} 3x64x64, 8x8 patches",
        cnn2d(),
        images,
        patch_groups(8),
        Layout("b c h w"),
        n_samples,
        repeats,
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (ROOT / "results_feature_groups.md").write_text(text)


if __name__ == "__main__":
    main()
