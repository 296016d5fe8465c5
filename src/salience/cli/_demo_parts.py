"""The pieces of ``salience demo`` shared by its signal, image and video tasks: options, the
methods explained, the evaluation curves and where the pictures go."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import _data


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

    def __init__(self, out: str, report: Any, result: DemoResult, dpi: int = 100) -> None:
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


#: the widest figure the demo draws, in inches: at 100 dpi it fits the report's 1200-px column at
#: natural size, so 7-pt labels stay 9.7 px tall (the report never shrinks them below 9 px)
FIGURE_WIDTH_IN = 11.5


def _grid_cell(n_columns: int, image: bool) -> float:
    """plot_grid's ``cell_size`` that keeps a grid of ``n_columns`` within FIGURE_WIDTH_IN
    (a signal column is 1.5 cells wide; the grid adds 0.4 in), at most its default 2.6."""
    return min(2.6, (FIGURE_WIDTH_IN - 0.4) / (n_columns * (1.0 if image else 1.5)))


def _fourier_title(n_channels: int) -> str:
    """Title of the per-bin Fourier view (a one-channel signal has nothing to sum)."""
    return "Fourier-domain IG per frequency bin" + (" (channels summed)" if n_channels > 1 else "")


def _slug(s: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in s).strip("-").replace("--", "-")


# ------------------------------------------------------------------ tasks
