"""``salience explain --channel-names/--class-names``: names from the options, a CSV header or an
.npz archive, checked against the data, and class names as ``--target`` values."""

from __future__ import annotations

import argparse
import csv
import os
import zipfile
from typing import Any

import numpy as np

from ._io import CLIError

#: .npz arrays read as names (the first present of each tuple)
NPZ_CHANNELS = ("channel_names", "ch_names", "channels")
NPZ_CLASSES = ("class_names", "classes")

_HELP = (
    "{what} names: comma-separated (e.g. {example}) or a text file with one name per line "
    "(default: {default})"
)


def add_name_options(sp: argparse.ArgumentParser) -> None:
    """The ``--channel-names`` and ``--class-names`` options of ``explain``."""
    sp.add_argument(
        "--channel-names",
        default=None,
        help=_HELP.format(
            what="channel",
            example="Fz,Cz,Pz",
            default="a CSV header, an .npz 'channel_names' array or EDF labels",
        ),
    )
    sp.add_argument(
        "--class-names",
        default=None,
        help=_HELP.format(what="class", example="rest,left,right", default="an .npz 'class_names' array")
        + "; --target may then name classes",
    )


def _split(text: str, option: str) -> list[str]:
    """Names from an option value: a file with one per line, or comma-separated text."""
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as fh:
            names = [line.strip() for line in fh if line.strip()]
    else:
        names = [n.strip() for n in next(csv.reader([text]))]
    if not names or any(not n for n in names):
        raise CLIError(
            f"{option} needs non-empty names separated by commas (or a file, one per line). Got {text!r}."
        )
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CLIError(f"{option} repeats the name(s) {dup}.")
    return names


def _csv_header(path: str) -> list[str] | None:
    """The header row of a CSV recording (its column names), None when the first row is numbers."""
    with open(path, encoding="utf-8", newline="") as fh:
        row = next(csv.reader(fh), None)
    if not row:
        return None
    try:
        [float(v) for v in row if v.strip()]
    except ValueError:
        return [v.strip() for v in row]
    return None


def _npz_names(path: str, keys: tuple[str, ...]) -> list[str] | None:
    """The first of ``keys`` stored in an .npz archive as an array of strings."""
    with zipfile.ZipFile(path) as zf:
        present = {n[:-4] if n.endswith(".npy") else n for n in zf.namelist()}
    key = next((k for k in keys if k in present), None)
    if key is None:
        return None
    with np.load(path, allow_pickle=False) as z:
        arr = z[key]
    if arr.dtype.kind not in "US" or arr.ndim != 1:
        raise CLIError(
            f"{path}: the {key!r} array must hold names (a 1-D array of strings). Got {arr.dtype} {arr.shape}."
        )
    return [v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()]


def load_names(
    args: argparse.Namespace, meta: dict[str, Any], n_channels: int
) -> tuple[list[str] | None, list[str] | None]:
    """(channel names, class names): the options first, then what the data file holds.

    Channel names must name every channel of the data (axis 1).
    """
    ext = os.path.splitext(args.data)[1].lower()
    channels: list[str] | None = None
    classes: list[str] | None = None
    where = "--channel-names"
    if args.channel_names is not None:
        channels = _split(args.channel_names, "--channel-names")
    elif meta.get("channels") is not None:
        channels, where = [str(c) for c in meta["channels"]], f"the channel labels of {args.data}"
    elif ext == ".csv":
        channels, where = _csv_header(args.data), f"the header of {args.data}"
    elif ext == ".npz":
        channels, where = _npz_names(args.data, NPZ_CHANNELS), f"the channel names in {args.data}"
    if args.class_names is not None:
        classes = _split(args.class_names, "--class-names")
    elif ext == ".npz":
        classes = _npz_names(args.data, NPZ_CLASSES)
    if channels is not None and len(channels) != n_channels:
        raise CLIError(
            f"{where} gives {len(channels)} channel name(s) for {n_channels} channels: {channels[:6]}."
        )
    return channels, classes


def target_text(value: str | None, classes: list[str] | None) -> str | None:
    """``--target`` with class names replaced by their indices (ints and 'predicted' unchanged)."""
    if value is None or value == "predicted":
        return value
    parts = [p.strip() for p in value.split(",")]
    if all(_is_int(p) for p in parts):
        return value
    if classes is None:
        raise CLIError(
            "--target must be 'predicted', an int or one int per sample separated by commas, or "
            "class names once they are known (--class-names rest,left,right, or a 'class_names' "
            f"array in the .npz file). Got {value!r}."
        )
    unknown = [p for p in parts if not _is_int(p) and p not in classes]
    if unknown:
        raise CLIError(f"--target: unknown class name {unknown[0]!r}; the class names are {classes}.")
    return ",".join(p if _is_int(p) else str(classes.index(p)) for p in parts)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def class_label(k: Any, classes: list[str] | None) -> Any:
    """A class index as its name (``"left (1)"``) when the names cover it."""
    if classes is not None and isinstance(k, (int, np.integer)) and 0 <= int(k) < len(classes):
        return f"{classes[int(k)]} ({int(k)})"
    return k


def named_info(info: dict[str, Any], channels: list[str] | None, classes: list[str] | None) -> dict[str, Any]:
    """``info`` with the known names (what the plots read as an Attribution's names)."""
    names = {"channel_names": channels, "class_names": classes}
    return {**info, **{k: v for k, v in names.items() if v is not None}}
