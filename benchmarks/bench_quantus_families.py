"""Issue #20's metric families against Quantus 0.6, on the shared benchmark models.

Run by hand (never in tests), in an environment where Quantus imports (it needs torchvision):

    OMP_NUM_THREADS=2 python benchmarks/bench_quantus_families.py          # writes results_quantus_families.md
    OMP_NUM_THREADS=2 python benchmarks/bench_quantus_families.py --quick  # tiny smoke run, prints only

Workload: ``setup("cnn1d", 32)`` (32 signals, C=8, T=1000) and ``setup("cnn2d", 32)`` (32 images
3x64x64), targets the model's predictions, attributions ``salience.Gradient`` maps computed once
and handed to both sides. Both sides get the settings under which the parity tests
(tests/parity/test_quantus_*.py) show they compute the same thing: Quantus with ``abs=False,
normalise=False, softmax=False, display_progressbar=False``, a zero baseline, the same segments,
the same additive noise (through a ``perturb_func``) and the same explainer (through an
``explain_func`` wrapping ours); ``batch_size=256`` on both sides (Quantus: samples per batch, so
the whole batch at once; ours: model rows per call). Step counts are reduced on both sides alike
(see the table's "setting" column) so that the whole run stays under ~8 minutes on 2 cores.
Each metric is timed as the best of 3 interleaved rounds after a warm-up, with the bare model's
forward passes (or forward + backward for the explainer-based stability metrics) over the number
of rows salience feeds the model as the reference line.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from _common import THREADS, setup, time_all  # noqa: E402  (puts src/ on sys.path)

import salience as sl  # noqa: E402
from salience.engine import default_batch_size  # noqa: E402
from salience import metrics as M  # noqa: E402
from salience.metrics import axioms as X  # noqa: E402
from salience.metrics import localisation_more as L  # noqa: E402
from salience.metrics import perturbation_curves as P  # noqa: E402
from salience.metrics import stability as S  # noqa: E402

ROOT = Path(__file__).resolve().parent
BS = 256  # Quantus' batch_size (samples per batch: the whole batch at once)
# ours: rows per model call; None = the library's default (salience.engine.default_batch_size: at
# most 256 rows and ~512K input elements per call on a CPU, so that activations stay in the caches)
OURS_BS: int | None = None
Q = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)


def _bare(model, x, rows, grad=False):
    """Forward (+ backward) passes over ``rows`` rows made of copies of ``x``, in the chunks salience
    uses (``OURS_BS`` rows per call, or the default batch size for this input)."""
    reps = x.repeat(math.ceil(rows / x.shape[0]), *[1] * (x.ndim - 1))[:rows]
    per_call = OURS_BS or default_batch_size(int(x[0].numel()))

    def run():
        for s in range(0, rows, per_call):
            chunk = reps[s : s + per_call]
            if grad:
                chunk = chunk.clone().requires_grad_(True)
                out = model(chunk)
                torch.autograd.grad(out[:, 0].sum(), chunk)
            else:
                with torch.no_grad():
                    model(chunk)

    return run


def _feeder(noise):
    """Quantus perturb_func adding step j's noise (one call per step, the whole batch at once)."""
    step = [0]

    def perturb(arr, indices=None, **kwargs):
        j = step[0] % noise.shape[1]
        step[0] += 1
        return arr + noise[:, j].reshape(arr.shape[0], -1).numpy().astype(arr.dtype)

    return perturb


def _zero_positions(arr, mask, **kwargs):
    """Quantus IROF perturb_func: zero every channel at a segment's positions (Quantus' default
    masks a single-channel input only)."""
    return np.where(np.asarray(mask, dtype=bool), 0.0, arr).astype(arr.dtype)


def _explain_func(expl):
    def explain(model, inputs, targets, **kwargs):
        xs = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return expl.explain(xs, torch.as_tensor(np.asarray(targets))).values.numpy()

    return explain


def cases(kind, n, quick):
    """(name, setting, ours, quantus, bare) for one model."""
    import quantus

    model, x = setup(kind, n)
    with torch.no_grad():
        y = model(x).argmax(1)
    expl = sl.Gradient(model)
    a_full = expl.explain(x, y).values.detach()
    # Quantus' feature-order metrics count features over the spatial positions (all channels of a
    # position move together): both sides get the channel sum, shape (n, 1, *S)
    a = a_full.sum(1, keepdim=True)
    xn, yn, an = x.numpy(), y.numpy(), a.numpy()
    feats = x[0, 0].numel()
    steps = 4 if quick else (20 if kind == "cnn1d" else 16)

    def q(metric, a_batch=an, **kw):
        return lambda: metric(model=model, x_batch=xn, y_batch=yn, a_batch=a_batch, device="cpu",
                              channel_first=True, softmax=False, batch_size=BS, **kw)  # fmt: skip

    out = []
    # ------------------------------------------------------------------ faithfulness
    patch = 1000 // steps if kind == "cnn1d" else 64 // int(math.sqrt(steps) // 1)
    n_patches = steps if kind == "cnn1d" else (64 // patch) ** 2
    out.append((
        "Selectivity", f"patch {patch}, {n_patches} patches",
        lambda: P.selectivity(model, x, a, y, patch_size=patch, normalize=False, batch_size=OURS_BS, progress=False),
        q(quantus.Selectivity(patch_size=patch, perturb_baseline=0.0, **Q)),
        _bare(model, x, n * (n_patches + 1)),
    ))  # fmt: skip
    out.append((
        "RegionPerturbation (MoRF)", f"patch {patch}, {n_patches} regions",
        lambda: P.region_perturbation_curve(model, x, a, y, patch_size=patch, n_regions=n_patches, order="morf",
                                            batch_size=OURS_BS, progress=False),
        q(quantus.RegionPerturbation(patch_size=patch, regions_evaluation=n_patches, order="morf",
                                     perturb_baseline=0.0, **Q)),
        _bare(model, x, n * (n_patches + 1)),
    ))  # fmt: skip
    fis = feats // steps
    out.append((
        "Monotonicity", f"features_in_step {fis} ({steps} steps)",
        lambda: P.monotonicity(model, x, a, y, features_in_step=fis, batch_size=OURS_BS, progress=False),
        q(quantus.Monotonicity(features_in_step=fis, perturb_baseline=0.0, **Q)),
        _bare(model, x, n * (steps + 1)),
    ))  # fmt: skip
    ns = 2
    fis_mc = feats // (steps // 2)
    groups = math.ceil(feats / fis_mc)
    out.append((
        "MonotonicityCorrelation", f"features_in_step {fis_mc} ({groups} groups), {ns} samples",
        lambda: P.monotonicity_correlation(model, x, a, y, n_samples=ns, features_in_step=fis_mc, substrate=0.0,
                                           batch_size=OURS_BS, progress=False),
        q(quantus.MonotonicityCorrelation(nr_samples=ns, features_in_step=fis_mc, perturb_baseline=0.0, **Q)),
        _bare(model, x, n * (groups * ns + 1)),
    ))  # fmt: skip
    # Quantus' SensitivityN removes features_in_step features per step in MoRF order and
    # correlates over the batch (not Ancona et al.'s estimator); ours draws n_runs random subsets
    # per sample: timed at the same number of model rows per sample.
    fis_sn = feats // steps
    q_steps = int(0.8 * feats) // fis_sn
    out.append((
        "SensitivityN", f"Quantus {q_steps} steps of {fis_sn}; ours n={fis_sn}, {q_steps} runs",
        lambda: P.sensitivity_n(model, x, a, y, n=fis_sn, n_runs=q_steps, batch_size=OURS_BS, progress=False,
                                generator=torch.Generator().manual_seed(0)),
        q(quantus.SensitivityN(features_in_step=fis_sn, n_max_percentage=0.8, perturb_baseline=0.0,
                               return_aggregate=False, **Q)),
        _bare(model, x, n * (q_steps + 1)),
    ))  # fmt: skip
    if kind == "cnn2d":  # Quantus' IROF segments images (skimage SLIC): both get the same grid
        side = 8 if not quick else 32
        seg = (torch.arange(64)[:, None] // side * (64 // side) + torch.arange(64)[None] // side).reshape(
            1, 1, 64, 64
        )
        n_seg = (64 // side) ** 2
        import quantus.helpers.utils as qu

        qu.get_superpixel_segments = lambda img, **kw: seg[0, 0].numpy()
        if not hasattr(np, "trapz"):  # Quantus calls np.trapz, removed in numpy 2.4
            setattr(np, "trapz", np.trapezoid)  # noqa: B010
        out.append((
            "IROF", f"{n_seg} segments (8x8 grid)",
            lambda: P.irof(model, x, a, y, segments=seg, substrate=0.0, normalize=False, batch_size=OURS_BS,
                           progress=False),
            q(quantus.IROF(perturb_baseline=0.0, return_aggregate=False, perturb_func=_zero_positions, **Q)),
            _bare(model, x, n * (n_seg + 1)),
        ))  # fmt: skip
    # ------------------------------------------------------------------ robustness
    # the explainer's own maps (n, C, *S) here: the perturbed copies are re-explained with it
    n_p = 2 if quick else 5
    g = torch.Generator().manual_seed(2)
    noise = torch.randn((n, n_p, *x.shape[1:]), generator=g) * 0.01
    for name, ours_fn, q_cls, grad_rows in [
        ("LocalLipschitzEstimate", S.local_lipschitz_estimate, quantus.LocalLipschitzEstimate, n * n_p),
        ("RelativeInputStability", S.relative_input_stability, quantus.RelativeInputStability, n * n_p),
        ("RelativeOutputStability", S.relative_output_stability, quantus.RelativeOutputStability, n * n_p),
    ]:
        kw = dict(normalise=False, abs=False) if name == "LocalLipschitzEstimate" else {}
        metric = q_cls(nr_samples=n_p, perturb_func=_feeder(noise), disable_warnings=True,
                       display_progressbar=False, **kw)  # fmt: skip
        bare_g, bare_f = _bare(model, x, grad_rows, grad=True), _bare(model, x, grad_rows)
        out.append((
            name, f"{n_p} perturbations, Gradient explainer",
            lambda f=ours_fn: f(expl, x, y, n_perturbations=n_p, perturbation=noise, attribution=a_full, batch_size=OURS_BS,
                                progress=False),
            q(metric, a_batch=a_full.numpy(), explain_func=_explain_func(expl)),
            lambda bg=bare_g, bf=bare_f: (bg(), bf()),
        ))  # fmt: skip
    # ------------------------------------------------------------------ complexity / axioms
    # Quantus 0.6's batched NonSensitivity is defined only for features_in_step=1 (see the parity
    # test): one model call per feature, so 2 samples of the 1-D CNN only (2 * 1000 rows).
    if kind == "cnn1d":
        x4, a4, y4 = x[:2], a[:2], y[:2]
        ns_q = quantus.NonSensitivity(eps=1e-5, features_in_step=1, perturb_baseline=0.0, disable_warnings=True,
                                      display_progressbar=False)  # fmt: skip
        out.append((
            "NonSensitivity", "features_in_step 1, 2 samples",
            lambda: X.non_sensitivity(model, x4, a4, y4, eps=1e-5, atol=1e-5, features_in_step=1, batch_size=OURS_BS),
            lambda: ns_q(model=model, x_batch=x4.numpy(), y_batch=y4.numpy(), a_batch=a4.numpy(), device="cpu",
                         channel_first=True, softmax=False, batch_size=BS),
            _bare(model, x4, 2 * (feats + 1)),
        ))  # fmt: skip
    out.append((
        "EffectiveComplexity", "eps 1e-5, absolute",
        lambda: X.effective_complexity(a_full, eps=1e-5, relative=False),
        lambda: quantus.EffectiveComplexity(eps=1e-5, **Q)(model=None, x_batch=xn, y_batch=yn, a_batch=a_full.numpy(),
                                                           batch_size=BS),
        None,
    ))  # fmt: skip
    # ------------------------------------------------------------------ localisation (images)
    if kind == "cnn2d":
        gm = torch.Generator().manual_seed(3)
        a1 = a
        mask = torch.zeros_like(a1, dtype=torch.bool)
        for i in range(n):
            r, c = torch.randint(0, 40, (2,), generator=gm).tolist()
            mask[i, :, r : r + 24, c : c + 24] = True
        a1n, x1n, maskn = a1.numpy(), np.zeros(a1.shape, np.float32), mask.numpy().astype(np.float32)

        def q_loc(metric):
            return lambda: metric(
                model=None, x_batch=x1n, y_batch=yn, a_batch=a1n, s_batch=maskn, batch_size=BS
            )

        k = 410  # 10 % of the 4096 pixels
        out += [
            ("AUC / localisation_auc", "24x24 box masks", lambda: L.localisation_auc(a1, mask),
             q_loc(quantus.AUC(normalise=False, disable_warnings=True, display_progressbar=False)), None),
            ("TopKIntersection", f"k {k}", lambda: L.top_k_intersection(a1, mask, k=k),
             q_loc(quantus.TopKIntersection(k=k, normalise=False, disable_warnings=True,
                                            display_progressbar=False)), None),
            ("AttributionLocalisation", "positive part", lambda: L.attribution_localisation(a1, mask),
             q_loc(quantus.AttributionLocalisation(abs=False, positive_attributions=True, normalise=False,
                                                   disable_warnings=True, display_progressbar=False)), None),
        ]  # fmt: skip
        # Focus on 2x2 mosaics from make_grid (classes may repeat), the Gradient map of each
        # mosaic for the class of its first cell, computed once.
        grid = M.make_grid(x, y, 2, distinct=False, generator=torch.Generator().manual_seed(4))
        gx = grid.inputs
        gt = grid.labels[:, 0]
        ga = expl.explain(gx, gt).values.detach()
        pos = grid.labels == gt[:, None]
        gan, gxn = ga.numpy(), np.zeros(ga.shape, np.float32)
        focus_q = quantus.Focus(normalise=False, disable_warnings=True, display_progressbar=False)
        out.append((
            "Focus", f"{gx.shape[0]} mosaics {tuple(gx.shape[1:])}",
            lambda: L.focus(ga, pos, grid=grid),
            lambda: focus_q(model=torch.nn.Identity(), x_batch=gxn, y_batch=gt.numpy(), a_batch=gan,
                            custom_batch=[tuple(p) for p in pos.int().tolist()], batch_size=BS),
            None,
        ))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; prints, writes nothing")
    ap.add_argument("--only", default=None, help="comma-separated metric names (prints, writes nothing)")
    ap.add_argument("--models", default="cnn1d,cnn2d", help="comma-separated: cnn1d, cnn2d")
    ap.add_argument("--ours-batch-size", type=int, default=None, help="rows per model call for salience")
    args = ap.parse_args()
    global OURS_BS
    OURS_BS = args.ours_batch_size
    torch.set_num_threads(THREADS)
    n, repeats = (4, 1) if args.quick else (32, 3)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    rows = []
    for kind in args.models.split(","):
        for name, setting, ours, theirs, bare in cases(kind, n, args.quick):
            if args.only and name not in args.only.split(","):
                continue
            fns = {"ours": ours, "quantus": theirs}
            if bare is not None:
                fns["bare"] = bare
            try:
                t = time_all(fns, repeats)
            except Exception as e:  # noqa: BLE001  (a peer failing is a result, not a crash)
                print(f"{kind} {name}: {type(e).__name__}: {e}")
                rows.append((kind, name, setting, None, None, None, f"{type(e).__name__}"))
                continue
            r = (kind, name, setting, t["ours"], t["quantus"], t.get("bare"), "")
            print(r, flush=True)
            rows.append(r)
    load1 = os.getloadavg()
    total = time.perf_counter() - t_start

    def f(v):
        return "n/a" if v is None else (f"{v:.4f}" if v < 0.1 else f"{v:.3f}")

    lines = [
        "## Issue #20's metric families vs Quantus",
        "",
        f"32 samples per model: 1-D CNN on (32, 8, 1000) signals and 2-D CNN on (32, 3, 64, 64) images "
        f"(benchmarks/_common.py), `salience.Gradient` attributions computed once for both sides, the "
        f"parity tests' settings (Quantus 0.6 with `abs=False, normalise=False, softmax=False`, zero "
        f"baseline, the same segments, noise and explainer), `batch_size={BS}` on both sides, "
        f"{THREADS} threads, best of {repeats} interleaved rounds. Steps are reduced alike on both sides "
        f'(setting column). "bare" is the model\'s forward passes (forward + backward for the stability '
        f"metrics, which re-run the explainer) over the rows salience feeds the model; localisation and "
        f"complexity metrics use no model. Load average (1 min) at start {load0[0]:.2f}, at end "
        f"{load1[0]:.2f} (another job may share the 2 cores: the minima reduce, not remove, its effect). "
        f"Whole run {total:.0f} s.",
        "",
        "| model | metric | setting | salience (s) | Quantus (s) | speed-up | bare (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, name, setting, t_o, t_q, t_b, err in rows:
        speed = "n/a" if t_o is None else f"{t_q / t_o:.1f}x"
        q_s = f"failed ({err})" if err else f(t_q)
        lines.append(f"| {kind} | {name} | {setting} | {f(t_o)} | {q_s} | {speed} | {f(t_b)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick and not args.only:
        (ROOT / "results_quantus_families.md").write_text(text)


if __name__ == "__main__":
    main()
