"""The ``salience explain-dataset`` and ``salience summarise`` commands (whole datasets into a
resumable Zarr store; a store's summary and HTML report).

``add_parsers(sub, common)`` registers them on the ``salience`` parser and ``COMMANDS`` maps
their names to their functions; :func:`main` runs them on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import SalienceError
from ._io import CLIError, load_data
from ._model_io import load_model

__all__ = ["add_parsers", "COMMANDS", "main"]


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``explain-dataset`` and ``summarise`` to the subparsers ``sub`` of ``salience``."""
    e = sub.add_parser(
        "explain-dataset",
        help="explain every sample of a dataset into a resumable Zarr store (locally or on Ray)",
    )
    e.add_argument(
        "model", help="TorchScript (.pt) or torch.export (.pt2) archive, or package.module:factory"
    )
    e.add_argument(
        "data", help="samples (N, C, ...): .npy (memory-mapped), a Zarr array directory, or .npz/.csv/.edf"
    )
    e.add_argument("--out", required=True, help="the store (a directory, e.g. attributions.zarr)")
    e.add_argument(
        "--resume", action="store_true", help="continue an existing store (same explainer and data)"
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing store")
    e.add_argument("--engine", default="local", choices=("local", "ray"), help="local (default) or ray")
    e.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per GPU, else 1)")
    e.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    e.add_argument(
        "--labels", default=None, help=".npy of one label per sample (targets with --target label)"
    )
    e.add_argument("--weights", help="state dict for a module:factory model (loaded with weights_only=True)")
    e.add_argument(
        "--trust-pickle", action="store_true", help="allow unpickling a full model file (runs its code)"
    )
    e.add_argument("--key", help="array name inside an .npz file")
    e.add_argument("--method", default="ig", help="as for `salience explain` (default ig)")
    e.add_argument("--domain", default="time", help="time (default), fourier, stft or wavelet")
    e.add_argument("--fs", type=float, default=None, help="sampling rate in Hz (frequencies in Hz)")
    e.add_argument("--target", default=None, help="'predicted' (default), 'label', or one class index")
    e.add_argument("--layer", default=None, help="layer name for CAM methods")
    e.add_argument("--steps", type=int, default=None, help="IG steps / SmoothGrad samples / RISE masks")
    e.add_argument("--window", default=None, help="occlusion window per axis, e.g. t=25")
    e.add_argument("--stride", default=None, help="occlusion stride per axis (default: the window)")
    e.add_argument("--chunk", type=int, default=64, help="samples per chunk of the store (default 64)")
    e.add_argument("--batch-size", type=int, default=None, help="maximum rows per model call")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    e.add_argument(
        "--seed", type=int, default=0, help="seed of the per-sample generators of stochastic methods"
    )
    common(e)

    s = sub.add_parser("summarise", help="summarise an attribution store and write its HTML report")
    s.add_argument("store", help="a store written by explain-dataset")
    s.add_argument("--report", default=None, help="the HTML report (default: STORE's name + -report.html)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    common(s)


def _data(args: argparse.Namespace) -> Any:
    """The data argument of explain_dataset: a memory-mapped .npy, a Zarr array, or a file read
    into memory by ``salience explain``'s reader; with ``--labels`` an (array, labels) pair."""
    path = args.data
    if path.endswith(".npy"):
        data: Any = np.load(path, mmap_mode="r")
    elif os.path.isdir(path):
        from ..datasets._store import zarr_module

        data = zarr_module().open_array(path, mode="r")
    else:
        data, _ = load_data(path, key=args.key)
    if args.labels is not None:
        labels = np.load(args.labels)
        if labels.shape != (data.shape[0],):
            raise CLIError(
                f"--labels must hold one label per sample ({data.shape[0]}); got shape {labels.shape}."
            )
        return data, labels
    return data


def _targets(text: str | None) -> Any:
    if text is None or text == "predicted":
        return None
    if text == "label":
        return "label"
    try:
        return int(text)
    except ValueError as exc:
        raise CLIError(f"--target takes 'predicted', 'label' or a class index; got {text!r}.") from exc


def explain_dataset_command(args: argparse.Namespace) -> int:
    """``salience explain-dataset``."""
    from ..datasets.explain import explain_dataset
    from .main import _build_explainer, _check_device, _check_seed, _wrap_domain

    if args.domain.lower() == "ica":
        raise CLIError(
            "--domain ica is fitted on the data in memory; explain-dataset takes time, fourier, stft, wavelet."
        )
    if args.chunk < 1:
        raise CLIError(f"--chunk must be >= 1. Got {args.chunk}.")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1. Got {args.batch_size}.")
    if os.path.exists(args.out) and not (args.resume or args.overwrite):
        raise CLIError(f"{args.out} exists: pass --resume to continue it or --overwrite to replace it.")
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other.")
    _check_seed(args.seed)
    _check_device(args.device)
    data = _data(args)
    model = load_model(
        args.model, weights=args.weights, trust_pickle=args.trust_pickle, device=args.device, quiet=args.quiet
    )
    explainer = _wrap_domain(args, _build_explainer(args, model), None)
    path = explain_dataset(
        explainer,
        data,
        args.out,
        targets=_targets(args.target),
        batch_size=args.chunk,
        resume=not args.overwrite,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
        progress=not args.quiet,
        seed=args.seed,
    )
    if not args.quiet:
        from ..datasets.summaries import summarise

        s = summarise(path)
        print(f"{s['method']}: {s['n_written']} of {s['n']} samples written")
    print(f"store: {os.path.abspath(path)}")
    return 0


def summarise_command(args: argparse.Namespace) -> int:
    """``salience summarise``."""
    from ..datasets.summaries import dataset_section, summarise
    from ..viz.report import Report

    if not os.path.isdir(args.store):
        raise CLIError(f"{args.store} is not a store directory.")
    s = summarise(args.store)
    if args.json:
        print(json.dumps(s, indent=2))
    elif not args.quiet:
        print(f"{s['method']} on {s['n_written']} of {s['n']} samples (layout {s['layout']!r})")
        for axis, per in (s.get("mean_abs") or {}).items():
            top = sorted(per.items(), key=lambda kv: -kv[1])[:5]
            print(f"  mean |attribution| by {axis}, largest: " + ", ".join(f"{k} {v:.3g}" for k, v in top))
        for c, row in (s.get("classes") or {}).items():
            print(f"  class {c}: {row['count']} samples, mean score {row['mean_score']:.4g}")
    stem = os.path.splitext(os.path.normpath(args.store))[0]
    report_path = args.report or f"{stem}-report.html"
    title = f"salience: {s['method']} over a dataset"
    saved = dataset_section(Report(title), args.store, title="Dataset").save(report_path)
    print(f"report: {os.path.abspath(saved)}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "explain-dataset": explain_dataset_command,
    "summarise": summarise_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``explain-dataset`` or ``summarise`` alone (the ``salience`` command registers them
    with :func:`add_parsers`); returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(prog="salience")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary")
        sp.add_argument("--debug", action="store_true", help="show full tracebacks on errors")

    add_parsers(sub, common)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CLIError, SalienceError, FileNotFoundError, ImportError) as exc:
        if args.debug:
            raise
        print(f"salience: error: {exc}", file=sys.stderr)
        return 2
