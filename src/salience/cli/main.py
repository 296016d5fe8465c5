"""The ``salience`` command: ``demo``, ``explain`` and ``layers``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ..errors import SalienceError
from ._bands import HELP as BANDS_HELP
from ._bands import band_outputs, check_bands
from ._console import Progress, format_table
from ._io import (
    CLIError,
    check_fs,
    default_data_limit,
    format_size,
    load_data,
    parse_size,
    parse_target,
)
from ._methods import _NO_HOOKS, _OWN_BAR, DOMAINS, METHODS, _build_explainer, _method_name, _wrap_domain
from ._model_io import load_model
from ._names import add_name_options, class_label, load_names, named_info, target_text
from .dataset_commands import COMMANDS as DATASET_COMMANDS
from .dataset_commands import add_parsers as add_dataset_parsers

#: --method names that take --steps (IG steps, SmoothGrad samples, RISE masks)
STEPS = ("ig", "smoothgrad", "rise")
#: --seed range: a torch generator takes 64 bits, FastICA (ICA domain, demo) 32
SEED_MAX = 2**32 - 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="salience", description="Saliency maps for PyTorch models of signals, images and video."
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
        sp.add_argument("--debug", action="store_true", help="show full tracebacks on errors")

    def max_data(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--max-data",
            default=None,
            metavar="SIZE",
            help="most bytes of arrays a .npy/.npz data file may declare, e.g. 16G "
            "(default: a quarter of the machine's memory)",
        )

    d = sub.add_parser(
        "demo", help="train tiny models on real and synthetic data, explain, evaluate, write a report"
    )
    d.add_argument("--out", default="salience-demo", help="output folder (default: ./salience-demo)")
    d.add_argument("--images", action="store_true", help="add pretrained EfficientNet-Lite0 on two photos")
    d.add_argument(
        "--video", action="store_true", help="add synthetic moving-object clips with a tiny 3-D CNN"
    )
    d.add_argument("--quick", action="store_true", help="fewer samples, steps and epochs (for tests)")
    d.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    d.add_argument("--seed", type=int, default=0)
    common(d)

    e = sub.add_parser("explain", help="explain a model on data; writes .npz, PNGs and an HTML report")
    e.add_argument(
        "model", help="TorchScript (.pt) or torch.export (.pt2) archive, or package.module:factory"
    )
    e.add_argument("data", help=".npy, .npz, .csv or .edf (with pyedflib) inputs (N, C, ...)")
    e.add_argument("--weights", help="state dict for a module:factory model (loaded with weights_only=True)")
    e.add_argument(
        "--trust-pickle", action="store_true", help="allow unpickling a full model file (runs its code)"
    )
    e.add_argument("--key", help="array name inside an .npz file")
    e.add_argument("--method", default="ig", help=f"one of {', '.join(METHODS)} (default ig)")
    e.add_argument("--domain", default="time", help=f"one of {', '.join(DOMAINS)} (default time)")
    e.add_argument(
        "--target", default=None, help="'predicted' (default), a class index, or one per sample: 1,0,2"
    )
    e.add_argument("--layer", default=None, help="layer name for CAM methods (see `salience layers`)")
    e.add_argument(
        "--fs", type=float, default=None, help="sampling rate in Hz (time axes in seconds, frequencies in Hz)"
    )
    e.add_argument("--bands", default=None, help=BANDS_HELP)
    add_name_options(e)
    e.add_argument("--steps", type=int, default=None, help="IG steps / SmoothGrad samples / RISE masks")
    e.add_argument("--window", default=None, help="occlusion window per axis, e.g. t=25 or h=16,w=16")
    e.add_argument("--stride", default=None, help="occlusion stride per axis (default: the window)")
    e.add_argument("--batch-size", type=int, default=None, help="maximum rows per model call")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    e.add_argument("--out", default="salience-explain", help="output folder (default ./salience-explain)")
    e.add_argument("--plots", type=int, default=4, help="samples to draw (default 4; 0 for none)")
    e.add_argument("--seed", type=int, default=0, help="seed of the generator of stochastic methods")
    max_data(e)
    common(e)

    la = sub.add_parser("layers", help="list a model's candidate layers with their output shapes")
    la.add_argument("model")
    la.add_argument("--shape", help="shape of one sample without the batch axis, e.g. 8,256 or 3,224,224")
    la.add_argument("--data", help="take the input shape from this data file instead")
    la.add_argument("--weights")
    la.add_argument("--trust-pickle", action="store_true")
    la.add_argument("--device", default="cpu")
    max_data(la)
    common(la)
    add_dataset_parsers(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 internal error, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from .._version import __version__

        print(f"salience {__version__}")
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            return {"demo": _demo, "explain": _explain, "layers": _layers, **DATASET_COMMANDS}[args.command](
                args
            )
    except KeyboardInterrupt:
        print("salience: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line unless --debug
        if args.debug:
            raise
        user = isinstance(exc, (CLIError, SalienceError, FileNotFoundError, ImportError))
        msg = _one_line(exc)
        if _out_of_memory(exc):
            user, msg = (
                True,
                f"not enough memory: {msg} (use a smaller --batch-size, fewer or smaller samples)",
            )
        kind = "error" if user else f"internal error ({type(exc).__name__})"
        print(
            f"salience: {kind}: {msg}" + ("" if user else " (run with --debug for the traceback)"),
            file=sys.stderr,
        )
        return 2 if user else 1


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (numpy, torch on a CPU or an accelerator)."""
    import torch

    return isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= SEED_MAX:
        raise CLIError(f"--seed must be in the range [0, {SEED_MAX}]. Got {seed}.")


def _check_device(text: str) -> Any:
    """The ``--device`` as a ``torch.device`` that can hold data, or a CLIError."""
    import torch

    try:
        device = torch.device(text)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise CLIError(f"device {text!r} is not usable here: {str(exc).splitlines()[0]}") from exc
    if device.type == "meta":
        raise CLIError(
            f"device {text!r} holds shapes but no data, so nothing can be computed on it; "
            "use cpu, cuda, mps, ..."
        )
    return device


def _data_limit(args: argparse.Namespace) -> int:
    """The --max-data limit in bytes (its default: a quarter of the machine's memory)."""
    return default_data_limit() if args.max_data is None else parse_size(args.max_data)


def _one_line(exc: BaseException) -> str:
    """The error message on one line, keeping its cause.

    A multi-line message (a TorchScript interpreter error carries its interpreter traceback,
    with the real cause, e.g. a channel mismatch, on its last line) becomes its first line
    followed by its last non-empty line.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) == 1 or lines[-1] in lines[0]:
        return lines[0]
    return f"{lines[0]} (cause: {lines[-1]})"


# ------------------------------------------------------------------ demo
def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptions, run_demo

    if args.threads < 1:
        raise CLIError(f"--threads must be >= 1. Got {args.threads}.")
    _check_seed(args.seed)
    res = run_demo(
        DemoOptions(
            out=args.out,
            images=args.images,
            video=args.video,
            quick=args.quick,
            threads=args.threads,
            seed=args.seed,
            quiet=args.quiet,
        )
    )
    if not args.quiet:
        cols = [
            "task",
            "accuracy",
            "method",
            "deletion AUC",
            "insertion AUC",
            "pointing game",
            "relevance mass (+)",
            "rank accuracy",
        ]
        cols = [c for c in cols if any(c in r for r in res.rows)]
        print(format_table(res.rows, cols))
        print(f"\n{len(res.pngs)} PNGs in {os.path.join(args.out, 'png')}; finished in {res.seconds:.1f} s")
    print(f"report: {os.path.abspath(res.report)}")
    return 0


# ------------------------------------------------------------------ explain
def _explain(args: argparse.Namespace) -> int:
    import torch

    from .. import viz
    from ..viz.report import completeness_metrics, completeness_summary

    if args.plots < 0:
        raise CLIError(f"--plots must be >= 0. Got {args.plots}.")
    if args.fs is not None:
        check_fs(args.fs, "--fs")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1. Got {args.batch_size}.")
    if args.steps is not None:
        if args.steps < 1:
            raise CLIError(f"--steps must be >= 1. Got {args.steps}.")
        name = _method_name(args.method)
        if name in METHODS and name not in STEPS:
            raise CLIError(
                f"--steps applies to {', '.join(STEPS[:-1])} and {STEPS[-1]}, not {args.method!r}."
            )
    _check_seed(args.seed)
    limit = _data_limit(args)
    device = _check_device(args.device)
    arr, meta = load_data(args.data, key=args.key, max_bytes=limit)
    channels, classes = load_names(args, meta, arr.shape[1])
    fs = float(args.fs) if args.fs is not None else None
    if fs is None and "fs" in meta:  # the file's own rate, unless --fs overrides it
        fs = check_fs(meta["fs"], f"the 'fs' array in {args.data}", "; give --fs to override it")
    check_bands(args.bands, args.domain, fs)  # before the model runs
    model = load_model(
        args.model, weights=args.weights, trust_pickle=args.trust_pickle, device=args.device, quiet=args.quiet
    )
    x = torch.from_numpy(arr).to(device)
    explainer = _wrap_domain(args, _build_explainer(args, model), x)
    target = parse_target(target_text(args.target, classes), x.shape[0])
    chunk = 16
    parts = []
    own_bar = _method_name(args.method) in _OWN_BAR
    with Progress(
        (x.shape[0] + chunk - 1) // chunk, disable=args.quiet or own_bar, desc=f"explain ({args.method})"
    ) as bar:
        for i in range(0, x.shape[0], chunk):
            t = target[i : i + chunk] if isinstance(target, list) else target
            parts.append(explainer.explain(x[i : i + chunk], target=t))
            bar.step()
    values = torch.cat([p.values for p in parts]).cpu().numpy()
    targets = (
        torch.cat([torch.as_tensor(p.target).reshape(-1).cpu() for p in parts]).numpy()
        if isinstance(parts[0].target, torch.Tensor)
        else np.array([])
    )
    scores = torch.cat([p.scores for p in parts]).cpu().numpy()
    first = parts[0]
    os.makedirs(args.out, exist_ok=True)
    metadata = {
        "method": first.method,
        "domain": args.domain,
        "layout": str(first.layout),
        "layer": first.layer,
        "model": args.model,
        "data": args.data,
        "fs": fs,
        "target": args.target or "predicted",
        "input_shape": list(arr.shape),
        "channels": channels,
        "class_names": classes,
        "bands": args.bands,
    }
    save: dict[str, Any] = {
        "values": values,
        "targets": targets,
        "scores": scores,
        "metadata": np.array(json.dumps(metadata)),
    }
    if first.delta is not None:
        save["delta"] = torch.cat([p.delta for p in parts]).cpu().numpy()
    coords = _coordinates(first, fs)
    for k, v in coords.items():
        save[f"coord_{k}"] = v
    bands = band_outputs(args.bands, _all_rows(first, values), fs) if args.bands and fs else None
    if bands is not None:
        save.update(bands[0])
    npz = os.path.join(args.out, "attributions.npz")
    np.savez_compressed(npz, **save)
    report = viz.Report(f"salience explain: {os.path.basename(args.model)} on {os.path.basename(args.data)}")
    report.section(
        "Run", f"method {first.method}, domain {args.domain}, {arr.shape[0]} samples of shape {arr.shape[1:]}"
    )
    report.table([{"key": k, "value": "" if v is None else v} for k, v in metadata.items()])
    gaps = dataclasses.replace(first, values=torch.from_numpy(values), delta=_delta(save))
    if gaps.delta is not None:  # IG's completeness gap, per sample below
        report.text(cast(str, completeness_summary(gaps)))
    if bands is not None:
        report.section(
            "Bands", "attribution summed per frequency band (mean over samples, summed over channels)"
        )
        report.table(bands[1])
    png_dir = os.path.join(args.out, "png")
    os.makedirs(png_dir, exist_ok=True)
    n_plot = min(args.plots, arr.shape[0])
    full = dataclasses.replace(
        first, values=torch.from_numpy(values), info=named_info(first.info, channels, classes)
    )
    if n_plot:
        report.section(f"Samples: {first.method}")
    for j in range(n_plot):
        figs = _sample_figures(arr, full, j, fs, os.path.join(args.out, f"sample{j}"), channels)
        embedded: list[tuple[str, Any]] = []  # (caption, saved path or PNG bytes)
        for cap, fig in figs:
            if isinstance(fig, str):
                embedded.append((cap, fig))
                continue
            data = viz._mpl.to_png(fig if hasattr(fig, "savefig") else fig.figure, report.dpi)
            path = os.path.join(png_dir, f"sample{j}_{len(embedded)}.png")
            with open(path, "wb") as fh:
                fh.write(data)
            embedded.append((cap, data))
        tgt = class_label(int(targets[j]), classes) if targets.size else args.target
        metrics = {"score": float(scores[j]), **completeness_metrics(gaps, j)}
        report.sample(f"sample {j}", target=tgt, metrics=metrics, figures=embedded)
    html_path = report.save(os.path.join(args.out, "report.html"))
    if not args.quiet:
        print(f"attributions {values.shape} -> {npz}")
    print(f"report: {os.path.abspath(html_path)}")
    return 0


def _delta(save: dict[str, Any]) -> Any:
    """Every sample's completeness gap as a tensor, or None (methods without one)."""
    import torch

    return torch.from_numpy(save["delta"]) if "delta" in save else None


def _all_rows(first: Any, values: np.ndarray) -> Any:
    """The first chunk's Attribution holding every sample's values."""
    import torch

    return dataclasses.replace(first, values=torch.from_numpy(values))


def _coordinates(attribution: Any, fs: float | None) -> dict[str, np.ndarray]:
    """The domain's coordinates (e.g. bin frequencies ``f``), as numpy arrays."""
    dom = attribution.domain
    if dom is None or not hasattr(dom, "coordinates"):
        return {}
    try:
        coords = dom.coordinates(fs=fs)
    except SalienceError:  # a domain without coordinates for this input: report without them
        return {}
    return {
        str(k): np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in (coords or {}).items()
    }


def _sample_figures(
    x_all: np.ndarray, attribution: Any, j: int, fs: float | None, stem: str, channels: Any = None
) -> list[tuple[str, Any]]:
    """Figures for sample ``j``: the view matching the layout; clips also get an animated GIF."""
    from .. import viz

    x = x_all[j]
    if x.ndim == 4 and attribution.domain is None:
        a = attribution.values[j].cpu().numpy()
        gif = stem + ".gif"
        viz.save_gif(x, a, gif)
        return [("per-frame attribution", gif), ("slices", viz.plot_volume_slices(x, a))]
    names = list(channels) if channels is not None and len(channels) == x.shape[0] else None
    view = viz.plot_attribution(x_all, attribution, j, fs=fs, channel_names=names)
    caption = "attribution per frequency bin" if "f" in attribution.layout.names else "attribution"
    return [(caption, view)]


# ------------------------------------------------------------------ layers
def _layers(args: argparse.Namespace) -> int:
    import torch

    import salience as sl

    limit = _data_limit(args)
    device = _check_device(args.device)
    shape = _shape(args.shape, limit) if args.shape and not args.data else None
    if shape is None and not args.data:
        raise CLIError("give an example input: --shape C,T (or C,H,W) or --data FILE.")
    model = load_model(
        args.model, weights=args.weights, trust_pickle=args.trust_pickle, device=args.device, quiet=args.quiet
    )
    if args.data:
        arr, _ = load_data(args.data, max_bytes=limit)
        x = torch.from_numpy(arr[:1]).to(device)
    else:
        x = torch.zeros([1, *cast(list[int], shape)], device=device)  # checked before loading
    if isinstance(model, torch.jit.ScriptModule):
        raise CLIError(_NO_HOOKS.format(what="listing layers"))
    print(sl.layers(model, x))
    return 0


def _shape(text: str, limit: int) -> list[int]:
    """The --shape of one sample, refused when a zero input of that shape would exceed ``limit`` bytes."""
    import torch

    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError as exc:
        raise CLIError(f"--shape must be comma-separated ints such as 8,256. Got {text!r}.") from exc
    if len(shape) not in (2, 3, 4) or min(shape) < 1:
        raise CLIError(
            f"--shape is one sample without the batch axis: C,T or C,H,W or C,T,H,W. Got {text!r}."
        )
    nbytes = math.prod(shape) * torch.empty(0).element_size()
    if nbytes > limit:
        raise CLIError(
            f"--shape {text} makes an input of {format_size(nbytes)}, over the {format_size(limit)} "
            "limit (--max-data SIZE raises it)."
        )
    return shape
