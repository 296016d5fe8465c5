"""Where the time goes in the 2-D CNN's perturbation metrics (issue #20's 3x target).

Run by hand, where Quantus imports:

    OMP_NUM_THREADS=2 python benchmarks/profile_quantus_families.py   # writes results_quantus_profile.md

For each metric of ``bench_quantus_families.py`` that is below 3x on the 2-D CNN, both sides run
once (after a warm-up) on the same workload, the model wrapped in a counter; the table gives
each side's total time, the time inside the model's own forward passes and the number of model
calls and rows. The ratio ``total / model`` bounds
the speed-up of any implementation that feeds the model the same rows: with Quantus at
``total / model = r``, an implementation with zero overhead is at most ``r`` times faster.
Fractions are stable under load (both sides are measured in one process), absolute seconds are
not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from _common import THREADS, setup  # noqa: E402  (puts src/ on sys.path)

from salience.metrics import perturbation_curves as P  # noqa: E402

ROOT = Path(__file__).resolve().parent
Q = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)


class Counted(torch.nn.Module):
    """The benchmark model behind a counter of calls and rows (its forward is what is timed)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls, self.rows, self.seconds = model, 0, 0, 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.rows += x.shape[0]
        return out


def _zero_positions(arr, mask, **kwargs):
    return np.where(np.asarray(mask, dtype=bool), 0.0, arr).astype(arr.dtype)


def cases(n: int):
    import quantus
    import quantus.helpers.utils as qu

    model, x = setup("cnn2d", n)
    with torch.no_grad():
        y = model(x).argmax(1)
    import salience as sl

    a = sl.Gradient(model).explain(x, y).values.detach().sum(1, keepdim=True)
    xn, yn, an = x.numpy(), y.numpy(), a.numpy()
    patch, n_patches, steps = 16, 16, 16
    feats = 64 * 64
    seg = (torch.arange(64)[:, None] // 8 * 8 + torch.arange(64)[None] // 8).reshape(1, 1, 64, 64)
    qu.get_superpixel_segments = lambda img, **kw: seg[0, 0].numpy()
    if not hasattr(np, "trapz"):
        setattr(np, "trapz", np.trapezoid)  # noqa: B010
    fis_sn = feats // steps
    q_steps = int(0.8 * feats) // fis_sn
    fis_mc = feats // (steps // 2)

    def q(metric, m):
        return lambda: metric(model=m, x_batch=xn, y_batch=yn, a_batch=an, device="cpu", channel_first=True,
                              softmax=False, batch_size=256)  # fmt: skip

    return model, [
        ("Selectivity", lambda m: P.selectivity(m, x, a, y, patch_size=patch, normalize=False, progress=False),
         lambda m: q(quantus.Selectivity(patch_size=patch, perturb_baseline=0.0, **Q), m)()),
        ("RegionPerturbation (MoRF)",
         lambda m: P.region_perturbation_curve(m, x, a, y, patch_size=patch, n_regions=n_patches, progress=False),
         lambda m: q(quantus.RegionPerturbation(patch_size=patch, regions_evaluation=n_patches, order="morf",
                                                perturb_baseline=0.0, **Q), m)()),
        ("SensitivityN",
         lambda m: P.sensitivity_n(m, x, a, y, n=fis_sn, n_runs=q_steps, progress=False,
                                   generator=torch.Generator().manual_seed(0)),
         lambda m: q(quantus.SensitivityN(features_in_step=fis_sn, n_max_percentage=0.8, perturb_baseline=0.0,
                                          return_aggregate=False, **Q), m)()),
        ("MonotonicityCorrelation",
         lambda m: P.monotonicity_correlation(m, x, a, y, n_samples=2, features_in_step=fis_mc, substrate=0.0,
                                              progress=False),
         lambda m: q(quantus.MonotonicityCorrelation(nr_samples=2, features_in_step=fis_mc, perturb_baseline=0.0,
                                                     **Q), m)()),
        ("IROF", lambda m: P.irof(m, x, a, y, segments=seg, substrate=0.0, normalize=False, progress=False),
         lambda m: q(quantus.IROF(perturb_baseline=0.0, return_aggregate=False, perturb_func=_zero_positions,
                                  **Q), m)()),
    ]  # fmt: skip


def profile(fn, model) -> dict[str, float]:
    """Total time of one run after a warm-up, and the time, calls and rows inside the model."""
    m = Counted(model).eval()
    fn(m)  # warm-up
    m.calls = m.rows = 0
    m.seconds = 0.0
    t0 = time.perf_counter()
    fn(m)
    return {"total": time.perf_counter() - t0, "model": m.seconds, "calls": m.calls, "rows": m.rows}


def main() -> None:
    torch.set_num_threads(THREADS)
    load0 = os.getloadavg()
    model, todo = cases(32)
    rows = []
    for name, ours, theirs in todo:
        o, t = profile(ours, model), profile(theirs, model)
        print(name, o, t, flush=True)
        rows.append((name, o, t))
    load1 = os.getloadavg()
    lines = [
        "## Where the time goes: the 2-D CNN's perturbation metrics (`benchmarks/profile_quantus_families.py`)",
        "",
        f"32 images 3x64x64, the settings of `bench_quantus_families.py` (ours at its default batch size), "
        f"one profiled run per side after a warm-up, {THREADS} threads; load average (1 min) {load0[0]:.1f} "
        f"at start, {load1[0]:.1f} at end. \"model\" is the time inside the benchmark model's forward "
        f"passes; \"bound\" = Quantus total / Quantus model time, the largest speed-up any implementation "
        f"feeding the model the same rows could reach over Quantus.",
        "",
        "| metric | salience total (s) | salience model (s) | calls / rows | Quantus total (s) | Quantus model (s) "
        "| calls / rows | speed-up | bound |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, o, t in rows:
        lines.append(
            f"| {name} | {o['total']:.2f} | {o['model']:.2f} | {o['calls']} / {o['rows']} | {t['total']:.2f} | "
            f"{t['model']:.2f} | {t['calls']} / {t['rows']} | {t['total'] / o['total']:.1f}x | "
            f"{t['total'] / max(t['model'], 1e-9):.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "results_quantus_profile.md").write_text(text)


if __name__ == "__main__":
    main()
