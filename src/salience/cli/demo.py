"""``salience demo``: train tiny models on real and synthetic data, explain, evaluate, report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from . import _data
from ._console import Progress

__all__ = ["DemoOptions", "run_demo"]


@dataclass
class DemoOptions:
    out: str = "salience-demo"
    images: bool = False
    video: bool = False
    quick: bool = False
    threads: int = 2
    seed: int = 0
    quiet: bool = False
    frames: bool = True  # per-frame PNGs next to each GIF


@dataclass
class DemoResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    report: str = ""
    pngs: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------ methods (plug-in points)
def _methods(model: Any, kind: str, opts: DemoOptions, cam_layer: str | None = None) -> dict[str, Any]:
    """The explainers shown for a task kind ("signal", "image", "video"), in column order.

    Capabilities that are not installed in this version are skipped, so a method is added here
    with one line.
    """
    import salience as sl

    steps = {"signal": 32, "image": 16, "video": 16}[kind] // (2 if opts.quick else 1)
    g = torch.Generator().manual_seed(opts.seed)
    out: dict[str, Any] = {
        "Gradient": sl.Gradient(model),
        "Input x Gradient": sl.InputXGradient(model),
        "Integrated Gradients": sl.IntegratedGradients(model, n_steps=steps),
        # progress=False: the demo's own bar is the only one (no nested bars, none with --quiet)
        "SmoothGrad": sl.SmoothGrad(
            sl.Gradient(model), n_samples=max(4, steps // 2), sigma=0.15, generator=g, progress=False
        ),
    }
    if kind == "image":
        del out["Input x Gradient"]
    if hasattr(sl, "GradCAM"):  # default: the last layer with a spatial output
        out["Grad-CAM"] = sl.GradCAM(model, layer=cam_layer)
    if hasattr(sl, "RISE"):
        masks = {"signal": 2000, "image": 256, "video": 1000}[kind] // (4 if opts.quick else 1)
        out["RISE"] = sl.RISE(
            model, n_masks=masks, generator=torch.Generator().manual_seed(opts.seed + 1), progress=False
        )
    return out


def _explain_all(methods: dict[str, Any], x: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    return {name: m.explain(x, target=target) for name, m in methods.items()}


#: insertion start for signals: each series' own channel means, a flat line that carries no
#: evidence (RISE's blurred start keeps GunPoint's smooth shape, so p(target) is ~0.99 before
#: anything is inserted and insertion cannot tell methods apart)
SIGNAL_INSERTION_START = "mean"


def _curves(
    model: Any,
    x: torch.Tensor,
    att: Any,
    y: torch.Tensor,
    steps: int,
    batch_size: int = 64,
    insertion_start: Any = None,
    domain: bool = False,
) -> tuple[Any, Any]:
    """Deletion and insertion curves (B, steps + 1) of the explained class's softmax probability.

    Deletion replaces the units by 0; insertion starts from ``insertion_start`` (None: the
    salience.metrics default, RISE's blurred input). The attribution's elements are the units (a
    (B, 1, T) map moves whole time steps). ``domain``: ``att`` is a domain attribution, whose
    coefficients (frequency bins, independent components) are removed/inserted in its domain,
    with zero coefficients as the substrate of both curves.
    """
    import salience as sl
    from salience import metrics as M

    target = sl.Probability(y)
    kw: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "progress": False}
    if domain:  # the Attribution carries its (bound) domain
        return M.deletion_curve(model, x, att, target, **kw), M.insertion_curve(model, x, att, target, **kw)
    ins: dict[str, Any] = {} if insertion_start is None else {"substrate": insertion_start}
    return (
        M.deletion_curve(model, x, att.values, target, **kw),
        M.insertion_curve(model, x, att.values, target, **kw, **ins),
    )


def _start_probability(model: Any, x: torch.Tensor, y: torch.Tensor, substrate: Any) -> float:
    """Mean p(target) at the insertion start (what the insertion curves begin from)."""
    from salience.masking import as_substrate

    with torch.no_grad():
        start = as_substrate(substrate)(x, "b c t")
        return float(model(start).softmax(-1).gather(1, y[:, None]).mean())


def _auc(curves: torch.Tensor) -> float:
    from salience import metrics as M

    return float(M.auc(curves).mean())


def _localisation(att: Any, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample pointing game hits, positive relevance mass and relevance rank accuracy
    against a ground-truth mask.

    Maps without a channel axis (Grad-CAM, RISE: (B, 1, ...)) are scored against the mask
    pooled over channels, i.e. on where in time/space they point.
    """
    from salience import metrics as M

    a = att.values
    if a.shape[1] == 1 and truth.shape[1] != 1:
        truth = truth.any(1, keepdim=True)
    return (
        M.pointing_game(a, truth),
        M.relevance_mass(a, truth, positive=True),
        M.relevance_rank_accuracy(a, truth),
    )


def _ica(model: Any, task: _data.Task, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> Any:
    """ICA-domain IG with one FastICA fitted on the training set: one score per independent
    component, and the components' time courses for each explained sample (None when
    unavailable)."""
    import salience as sl

    try:
        from sklearn.decomposition import FastICA
    except ImportError:
        return None
    if not hasattr(sl, "ICAIG") or x.shape[1] < 2:
        return None
    rows = task.x_train.permute(0, 2, 1).reshape(-1, x.shape[1]).double().numpy()
    ica = FastICA(n_components=x.shape[1], whiten="unit-variance", random_state=seed, max_iter=400).fit(rows)
    att = sl.ICAIG(model, ica, mode="sample", n_steps=steps).explain(x, target=y)
    sources = np.stack([ica.transform(xi.double().numpy().T).T for xi in x])  # (B, K, T)
    return att, sources


def _fourier(model: Any, x: torch.Tensor, y: torch.Tensor, fs: float | None, steps: int) -> Any:
    """Fourier-domain IG (per channel and frequency bin) and the bin frequencies, when available."""
    import salience as sl

    if not hasattr(sl, "FourierIG"):
        return None
    att = sl.FourierIG(model, n_steps=steps, fs=fs).explain(x, target=y)
    return att, att.domain.coordinates(fs=fs)["f"]


# ------------------------------------------------------------------ figures and files
class _Sink:
    """Renders each figure once, writes it as a PNG and embeds the same bytes in the report."""

    def __init__(self, out: str, report: Any, result: DemoResult, dpi: int = 90) -> None:
        self.out, self.report, self.result, self.dpi = out, report, result, dpi
        os.makedirs(os.path.join(out, "png"), exist_ok=True)

    def png(self, fig: Any, name: str) -> bytes:
        from ..viz._mpl import to_png

        data = to_png(fig if hasattr(fig, "savefig") else fig.figure, self.dpi)
        path = os.path.join(self.out, "png", f"{name}.png")
        with open(path, "wb") as fh:
            fh.write(data)
        self.result.pngs.append(path)
        return data


#: the colour scales are viz's defaults, chosen from each map: signed maps diverging around a
#: white zero, maps without negative values (Grad-CAM) sequential from zero, RISE min-max as its
#: paper shows it; each column states its scale under its title
_GRID_CAPTION = (
    "samples x methods; each map has its own colour scale, stated under its column title "
    "(signed maps: red raises the explained score, blue lowers it, white is zero; maps without "
    "negative values: white (zero) to dark red; RISE's scores are mask-weighted mean scores, "
    "all close to the mean: min-max scaled, white to dark red, as the RISE paper shows them)"
)
#: photos: the pixel-level maps are speckle at 224 x 224; the grid shows their magnitude summed
#: over the colour channels (no sign left: a sequential scale from zero), lightly smoothed, with
#: the colour scale clipped at the 99th percentile (display only: the attributions and metrics
#: are unchanged)
_PIXEL_LEVEL = ("Gradient", "Input x Gradient", "Integrated Gradients", "SmoothGrad")
_PIXEL_VIEW = {"channel_reduce": "abssum", "smooth": 2.0, "percentile": 99.0}


def _image_grid_options(methods: Any) -> dict[str, Any]:
    """Per-method plot_grid options for the photo grid (see _PIXEL_VIEW)."""
    out: dict[str, dict[str, Any]] = {}
    for name in methods:
        if name in _PIXEL_LEVEL:
            for k, v in _PIXEL_VIEW.items():
                out.setdefault(k, {})[name] = v
    return out


def _fourier_title(n_channels: int) -> str:
    """Title of the per-bin Fourier view (a one-channel signal has nothing to sum)."""
    return "Fourier-domain IG per frequency bin" + (" (channels summed)" if n_channels > 1 else "")


def _slug(s: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in s).strip("-").replace("--", "-")


# ------------------------------------------------------------------ tasks
def _signal_task(task: _data.Task, opts: DemoOptions, sink: _Sink, bar: Progress) -> list[dict[str, Any]]:
    from .. import viz

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
    )
    rep.figure(sink.png(fig, f"{slug}_grid"), _GRID_CAPTION)
    fig = viz._mpl.new_figure((12, 3.6))
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
        f"{p}: {task.classes[int(k)]} ({float(prob[i, k]):.0%})"
        for i, (p, k) in enumerate(zip(task.notes["photos"], y, strict=True))
    ]
    fig = viz.plot_grid(
        x, {k: a.values for k, a in attrs.items()}, row_titles=titles, **_image_grid_options(attrs)
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
