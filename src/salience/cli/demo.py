"""``salience demo``: train tiny models on real and synthetic data, explain, evaluate, report."""

from __future__ import annotations

import os
import time
from typing import Any, cast

import torch

from . import _data
from ._console import Progress
from ._demo_parts import (
    _GRID_CAPTION,
    SIGNAL_INSERTION_START,
    DemoOptions,
    DemoResult,
    _auc,
    _curves,
    _explain_all,
    _fourier,
    _fourier_title,
    _grid_cell,
    _ica,
    _image_grid_options,
    _localisation,
    _methods,
    _Sink,
    _slug,
    _start_probability,
)

__all__ = ["DemoOptions", "run_demo"]


def _signal_task(task: _data.Task, opts: DemoOptions, sink: _Sink, bar: Progress) -> list[dict[str, Any]]:
    from .. import viz
    from ..viz.report import completeness_metrics

    model = task.model
    n_eval = 8 if opts.quick else 24
    if task.truth is not None:  # explain the class that carries known evidence
        idx = torch.nonzero(task.y_test == 1).flatten()[:n_eval]
    else:
        idx = torch.arange(min(n_eval, task.x_test.shape[0]))
    x, y = task.x_test[idx], task.y_test[idx]
    with torch.no_grad():
        prob = model(x).softmax(-1)
    pred = prob.argmax(1)
    methods = _methods(model, "signal", opts)
    bar.set(f"{task.name}: explaining")
    attrs = _explain_all(methods, x, y)
    bar.step()
    bar.set(f"{task.name}: evaluating")
    n_steps = 10 if opts.quick else 20
    rows, curves_del, curves_ins, per_sample = [], {}, {}, {}
    for name, a in attrs.items():
        d, i = _curves(model, x, a, y, steps=n_steps, insertion_start=SIGNAL_INSERTION_START)
        curves_del[name], curves_ins[name] = d, i
        row = {
            "task": task.name,
            "accuracy": task.accuracy,
            "method": name,
            "deletion AUC": _auc(d),
            "insertion AUC": _auc(i),
        }
        if task.truth is not None:
            pg, rm, rra = _localisation(a, task.truth[idx])
            row["pointing game"] = float(pg.mean())
            row["relevance mass (+)"] = float(rm.mean())
            row["rank accuracy"] = float(rra.mean())
            per_sample[name] = (pg, rm, rra)
        rows.append(row)
    # IG in the Fourier and ICA domains on the same samples, evaluated in their own domain
    # (frequency bins / independent components removed and inserted, zero coefficients as the
    # substrate); localisation needs time-domain maps, so those columns stay empty
    ig_steps = 16 if opts.quick else 32
    fourier = _fourier(model, x, y, task.fs, steps=ig_steps)
    ica = _ica(model, task, x, y, steps=ig_steps, seed=opts.seed)
    for label, res in (("IG, Fourier domain (bins)", fourier), ("IG, ICA domain (components)", ica)):
        if res is None:
            continue
        d, i = _curves(model, x, res[0], y, steps=n_steps, domain=True)
        rows.append(
            {
                "task": task.name,
                "accuracy": task.accuracy,
                "method": label,
                "deletion AUC": _auc(d),
                "insertion AUC": _auc(i),
            }
        )
    p_start = _start_probability(model, x, y, SIGNAL_INSERTION_START)
    p_zero = _start_probability(model, x, y, 0.0)
    bar.step()
    bar.set(f"{task.name}: drawing")
    rep = sink.report
    slug = _slug(task.name)
    rep.section(task.name, task.description)
    rep.text(
        f"Tiny 1-D CNN ({sum(p.numel() for p in model.parameters())} parameters), test accuracy "
        f"{task.accuracy:.1%}. Metrics (salience.metrics) over {len(idx)} test samples, tracking "
        "the target's softmax probability with the most important elements first: deletion "
        f"replaces them by 0 (all removed: mean p(target) {p_zero:.3f}); insertion puts them into "
        "a flat signal at each channel's mean (the start, mean p(target) "
        f"{p_start:.3f}). AUC: lower is better for deletion, higher for insertion. The Fourier "
        "and ICA rows remove/insert frequency bins or independent components (zero "
        "coefficients as the substrate), so their AUCs are on another axis than the "
        "time-domain rows'."
        + (
            " Pointing game: the largest attribution lies in the ground-truth window; relevance "
            "mass (+): the share of the positive attribution inside it; rank accuracy: the "
            "share of the |window| highest attributions that lie inside it (channel-less maps "
            "such as Grad-CAM and RISE are scored on time only)."
            if task.truth is not None
            else ""
        )
    )
    rep.table(
        [{k: v for k, v in r.items() if k not in ("task", "accuracy")} for r in rows], caption="evaluation"
    )
    show = slice(0, 3)
    names = task.channel_names
    titles = [f"#{int(j)}: {task.classes[int(t)]}" for j, t in zip(idx[show], y[show], strict=True)]
    fig = viz.plot_grid(
        x[show],
        {k: a.values[show] for k, a in attrs.items()},
        row_titles=titles,
        fs=task.fs,
        channel_names=names,
        cell_size=_grid_cell(len(attrs), image=False),
    )
    rep.figure(sink.png(fig, f"{slug}_grid"), _GRID_CAPTION)
    fig = viz._mpl.new_figure((11, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    viz.plot_curves(curves_del, kind="deletion", ax=ax1, ylabel="target probability")
    viz.plot_curves(curves_ins, kind="insertion", ax=ax2, ylabel="target probability")
    ax1.set_xlabel("fraction of input removed (set to 0)")
    ax2.set_xlabel("fraction of input revealed (from a flat signal)")
    for ax in (ax1, ax2):
        ax.set_ylim(-0.02, 1.02)
    rep.figure(
        sink.png(fig, f"{slug}_curves"),
        "deletion and insertion curves of the time-domain methods (mean over samples)",
    )
    best = "Integrated Gradients"
    for j in range(2):
        a = attrs[best].values[j]
        figs = []
        if x.shape[1] == 1:
            ax = viz.plot_signal(x[j], a, fs=task.fs, title=f"{best}, target {task.classes[int(y[j])]}")
        else:
            ax = viz.plot_signal_map(
                x[j],
                a,
                fs=task.fs,
                channel_names=names,
                truth=task.truth[idx[j]] if task.truth is not None else None,
                title=f"{best}, target {task.classes[int(y[j])]} (dashed: ground truth)",
            )
        figs.append((f"{best} over the signal", sink.png(ax, f"{slug}_sample{j}_{_slug(best)}")))
        if fourier is not None:
            fatt, freqs = fourier
            per_bin = fatt.values[j]
            fig = viz._mpl.new_figure((11, 3.2) if task.fs else (8, 3.2))
            if task.fs:
                ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
            else:
                ax1, ax2 = fig.add_subplot(), None
            viz.plot_spectrum(
                per_bin,
                freqs,
                signal=x[j],
                bands=viz.EEG_BANDS if task.fs else None,
                fmax=45.0 if task.fs else 0.1,
                ax=ax1,
                title=_fourier_title(x.shape[1]),
            )
            if ax2 is not None:
                viz.plot_bands(
                    per_bin,
                    freqs,
                    bands="eeg",
                    fs=task.fs,
                    per_channel=True,
                    channel_names=names,
                    ax=ax2,
                    title="per channel and EEG band",
                )
            figs.append(
                ("Integrated Gradients in the Fourier domain", sink.png(fig, f"{slug}_sample{j}_fourier"))
            )
        if ica is not None:
            iatt, sources = ica
            fig = viz.plot_components(
                iatt.values[j],
                sources[j],
                fs=task.fs,
                title="ICA-domain IG: one score per independent component (FastICA fitted on the training set)",
            )
            figs.append(
                ("Integrated Gradients over independent components", sink.png(fig, f"{slug}_sample{j}_ica"))
            )
        metrics = {}
        if per_sample:
            pg, rm, rra = per_sample[best]
            metrics = {
                "pointing game (IG)": float(pg[j]),
                "relevance mass (+) (IG)": float(rm[j]),
                "rank accuracy (IG)": float(rra[j]),
            }
        metrics["p(target)"] = float(prob[j, y[j]])
        metrics.update(completeness_metrics(attrs[best], j))
        rep.sample(
            f"{task.name} test #{int(idx[j])}",
            prediction=task.classes[int(pred[j])],
            target=task.classes[int(y[j])],
            metrics=metrics,
            figures=figs,
        )
    bar.step()
    return rows


def _image_task(opts: DemoOptions, sink: _Sink, bar: Progress) -> list[dict[str, Any]]:
    from .. import viz
    from ..viz.report import completeness_metrics

    task = _data.efficientnet_images()
    model, x, y = task.model, task.x_test, task.y_test
    bar.set("images: explaining")
    # EfficientNet reuses one Swish module everywhere: explain the head convolution instead
    methods = _methods(model, "image", opts, cam_layer="_conv_head")
    attrs = _explain_all(methods, x, y)
    bar.step()
    bar.set("images: evaluating")
    with torch.no_grad():
        prob = model(x).softmax(-1)
    rows = []
    curves_del = {}
    for name, a in attrs.items():
        d, i = _curves(model, x, a, y, steps=5 if opts.quick else 8, batch_size=18)
        curves_del[name] = d
        rows.append(
            {
                "task": task.name,
                "accuracy": float("nan"),
                "method": name,
                "deletion AUC": _auc(d),
                "insertion AUC": _auc(i),
            }
        )
    bar.step()
    bar.set("images: drawing")
    rep = sink.report
    rep.section(task.name, task.description)
    rep.table(
        [{k: v for k, v in r.items() if k not in ("task", "accuracy")} for r in rows],
        caption="evaluation (predicted class)",
    )
    titles = [
        f"{p}\n{task.classes[int(k)]} ({float(prob[i, k]):.0%})"
        for i, (p, k) in enumerate(zip(task.notes["photos"], y, strict=True))
    ]
    fig = viz.plot_grid(
        x,
        {k: a.values for k, a in attrs.items()},
        row_titles=titles,
        cell_size=_grid_cell(len(attrs) + 1, image=True),
        **_image_grid_options(attrs),
    )
    rep.figure(
        sink.png(fig, "images_grid"),
        "photos x methods, explaining the predicted class. "
        + _GRID_CAPTION
        + ". Gradient, Integrated Gradients and SmoothGrad are pixel-level maps: shown as the magnitude "
        "summed over the colour channels, smoothed (Gaussian, sigma 2 px) with the colour scale "
        "clipped at the 99th percentile of |a| (display only; the attributions and the metrics "
        "use the unsmoothed signed values).",
    )
    for j, photo in enumerate(task.notes["photos"]):
        ax = viz.plot_image(
            x[j],
            attrs["Integrated Gradients"].values[j],
            title=f"Integrated Gradients: {task.classes[int(y[j])]}",
        )
        rep.sample(
            photo,
            prediction=f"{task.classes[int(y[j])]} ({float(prob[j, y[j]]):.1%})",
            target="predicted class",
            metrics=completeness_metrics(attrs["Integrated Gradients"], j),
            figures=[("Integrated Gradients overlay", sink.png(ax, f"images_{photo}_ig"))],
        )
    bar.step()
    return rows


def _video_task(opts: DemoOptions, sink: _Sink, bar: Progress) -> list[dict[str, Any]]:
    from .. import viz

    task = _data.moving_objects(n_train=64 if opts.quick else 96, n_test=16)
    with torch.random.fork_rng():
        torch.manual_seed(opts.seed)
        model = _data.cnn3d(1, 2, width=6)
    _data.train(model, task, epochs=6 if opts.quick else 10, batch=32, seed=opts.seed)
    bar.step()
    x, y = task.x_test[:8], task.y_test[:8]
    methods = _methods(model, "video", opts)
    methods.pop("SmoothGrad", None)
    attrs = _explain_all(methods, x, y)
    rows = []
    truth = cast(torch.Tensor, task.truth)  # moving_objects knows where the objects are
    for name, a in attrs.items():
        pg, rm, rra = _localisation(a, truth[:8])
        rows.append(
            {
                "task": task.name,
                "accuracy": task.accuracy,
                "method": name,
                "pointing game": float(pg.mean()),
                "relevance mass (+)": float(rm.mean()),
                "rank accuracy": float(rra.mean()),
            }
        )
    bar.step()
    rep = sink.report
    rep.section(task.name, task.description)
    rep.text(f"Tiny 3-D CNN, test accuracy {task.accuracy:.1%}. Each GIF frame shows that frame's own map.")
    rep.table(
        [{k: v for k, v in r.items() if k not in ("task", "accuracy")} for r in rows],
        caption="localisation of the moving square",
    )
    gif_dir = os.path.join(sink.out, "video")
    os.makedirs(gif_dir, exist_ok=True)
    for j in range(2):
        a = attrs["Integrated Gradients"].values[j]
        path = os.path.join(gif_dir, f"sample{j}_ig.gif")
        viz.save_gif(
            x[j], a, path, fps=3, png_dir=os.path.join(gif_dir, f"sample{j}_frames") if opts.frames else None
        )
        fig = viz.plot_volume_slices(x[j], a, n_slices=8)
        rep.sample(
            f"clip #{j}",
            prediction=task.classes[int(model(x[j : j + 1]).argmax())],
            target=task.classes[int(y[j])],
            figures=[
                ("Integrated Gradients, animated (frame | overlay)", path),
                ("Integrated Gradients per frame", sink.png(fig, f"video_sample{j}_slices")),
            ],
        )
    bar.step()
    return rows


# ------------------------------------------------------------------ driver
def run_demo(opts: DemoOptions) -> DemoResult:
    """Run the demo and write ``report.html`` and PNGs into ``opts.out``."""
    from ..viz import Report

    t0 = time.perf_counter()
    result = DemoResult()
    old_threads = torch.get_num_threads()
    # the tiny models run single-threaded: at this size intra-op threads only add overhead (and
    # on a busy 2-core machine spinning OpenMP threads cost 5-10x the CPU time); the pretrained
    # image model uses opts.threads
    torch.set_num_threads(1)
    try:
        os.makedirs(opts.out, exist_ok=True)
        report = Report("salience demo")
        report.text(
            "Tiny models trained in seconds, explained with several methods and evaluated. "
            "Re-run with: salience demo"
            + (" --quick" if opts.quick else "")
            + (" --images" if opts.images else "")
            + (" --video" if opts.video else "")
            + f" --seed {opts.seed}"
        )
        sink = _Sink(opts.out, report, result)
        total = 2 * 4 + (3 if opts.images else 0) + (3 if opts.video else 0)
        with Progress(total, disable=opts.quiet, desc="salience demo") as bar:
            epochs = {"GunPoint": 40 if opts.quick else 100, "Synthetic EEG": 10 if opts.quick else 20}
            for loader in (_data.gunpoint, lambda: _data.synthetic_eeg(seed=opts.seed)):
                task = loader()
                bar.set(f"{task.name}: training")
                with torch.random.fork_rng():
                    torch.manual_seed(opts.seed)
                    model = _data.cnn1d(task.x_train.shape[1], len(task.classes))
                _data.train(model, task, epochs=epochs[task.name], batch=50, seed=opts.seed)
                bar.step()
                result.rows += _signal_task(task, opts, sink, bar)
            if opts.images:
                torch.set_num_threads(opts.threads)
                result.rows += _image_task(opts, sink, bar)
                torch.set_num_threads(1)
            if opts.video:
                result.rows += _video_task(opts, sink, bar)
        result.report = report.save(os.path.join(opts.out, "report.html"))
    finally:
        torch.set_num_threads(old_threads)
    result.seconds = time.perf_counter() - t0
    return result
