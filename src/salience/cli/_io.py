"""Loading user models and data for ``salience explain`` / ``salience layers``."""

from __future__ import annotations

import math
import os
import re
import warnings
import zipfile
import zlib
from typing import Any

import numpy as np

from ..errors import InputError, ParameterError, ShapeError


class CLIError(Exception):
    """A user-facing command-line error (bad file, bad option); exit code 2."""


#: the default limit on the bytes of data read from one file where the machine's memory is unknown
FALLBACK_DATA_LIMIT = 4 * 2**30

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def default_data_limit() -> int:
    """The default of ``--max-data``: a quarter of the machine's physical memory.

    Returns
    -------
    int
        Bytes; :data:`FALLBACK_DATA_LIMIT` (4 GiB) where the memory size is not known.
    """
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return FALLBACK_DATA_LIMIT
    return total // 4 if total > 0 else FALLBACK_DATA_LIMIT


def parse_size(text: str, option: str = "--max-data") -> int:
    """A size such as ``512M``, ``8G``, ``2GiB``, ``1.5T`` or ``1e9`` (bytes) as a number of bytes.

    Parameters
    ----------
    text : str
        A positive number with an optional binary unit K, M, G or T (``B``/``iB`` may follow).
    option : str
        The option named in the error message.

    Returns
    -------
    int
        The size in bytes (at least 1).

    Raises
    ------
    CLIError
        The text is not a positive finite size.
    """
    m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    try:
        value = float(m.group(1)) * _UNITS[m.group(2).lower()] if m else math.nan
    except (ValueError, OverflowError):
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise CLIError(f"{option} takes a size such as 512M, 8G or 1e9 (bytes). Got {text!r}.")
    return int(value)


def format_size(n: float) -> str:
    """Bytes as a short human-readable size (``1.5 GiB``)."""
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} PiB"


def check_fs(value: Any, source: str, hint: str = "") -> float:
    """A sampling rate as a positive finite float.

    Parameters
    ----------
    value : Any
        A number, or a one-element numeric array (as read from a file).
    source : str
        Where the value came from (``--fs``, ``'fs' in data.npz``), for the message.
    hint : str
        Appended to the message (how to do without the value).

    Returns
    -------
    float
        The sampling rate in Hz.

    Raises
    ------
    CLIError
        ``value`` is not one real number, or is NaN, infinite, zero or negative.
    """
    arr = None if isinstance(value, (str, bytes)) else np.asarray(value)
    ok = arr is not None and arr.size == 1 and arr.dtype.kind in "fiu"
    fs = float(arr.reshape(())) if ok and arr is not None else math.nan
    if not (math.isfinite(fs) and fs > 0):
        raise CLIError(
            f"{source} must be a positive finite sampling rate in Hz. Got {_describe(value)}{hint}."
        )
    return fs


def _describe(value: Any) -> str:
    """A short description of a value for an error message (arrays by shape and dtype)."""
    if isinstance(value, np.ndarray) and value.size != 1:
        return f"an array of shape {value.shape} ({value.dtype})"
    if isinstance(value, np.ndarray):
        return repr(value.reshape(()).item())
    return repr(value)


def load_data(
    path: str, *, key: str | None = None, max_bytes: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read inputs as a float32 array (N, C, ...) from .npy, .npz, .csv or .edf/.bdf.

    Parameters
    ----------
    path : str
        .npy/.npz: 3-5 dims are (N, C, T), (N, C, H, W), (N, C, T, H, W); 2 dims are (N, T)
        single-channel signals. .csv: one multichannel recording, rows = time steps, columns =
        channels (a header row is skipped), giving (1, C, T). .edf/.bdf (with pyedflib
        installed): one recording (1, C, T) of the channels at the highest sampling rate.
    key : str, optional
        The array of an .npz file (default: ``x`` or the only array); its optional ``fs`` and
        ``y`` arrays are read too.
    max_bytes : int, optional
        The most bytes of arrays an .npy/.npz file may declare (default
        :func:`default_data_limit`). The sizes in the .npy headers and, for .npz, the zip
        members' uncompressed sizes are checked before any data is read or decompressed.

    Returns
    -------
    tuple of (numpy.ndarray, dict)
        The float32 inputs and the metadata read with them (``fs`` as stored, ``y``; for EDF a
        checked ``fs`` and the ``channels``).

    Raises
    ------
    CLIError
        The file is missing, unreadable, over the size limit, or holds no usable inputs.
    """
    if not os.path.isfile(path):
        raise CLIError(f"data file not found: {path}")
    limit = default_data_limit() if max_bytes is None else max_bytes
    meta: dict[str, Any] = {}
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            with open(path, "rb") as fh:
                arr = _read_npy(fh, os.path.getsize(path), path, limit)
        elif ext == ".npz":
            arr, meta = _read_npz(path, key, limit)
        elif ext == ".csv":
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
            skip = 0 if _numeric_row(first) else 1
            arr = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2).T[None]
        elif ext in (".edf", ".bdf"):
            arr, meta = _read_edf(path)
        else:
            raise CLIError(f"unsupported data file {path}: use .npy, .npz, .csv or .edf.")
    except CLIError:
        raise
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        # RuntimeError: an encrypted zip member; NotImplementedError: an unknown compression
        text = str(exc).strip()
        raise CLIError(f"cannot read {path}: {text.splitlines()[0] if text else type(exc).__name__}") from exc
    if arr.dtype.kind not in "fiu":
        raise CLIError(f"{path} holds {arr.dtype} values; expected real numbers.")
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim not in (3, 4, 5):
        raise CLIError(
            f"{path} has shape {arr.shape}; expected (N, C, T) signals, (N, C, H, W) images or "
            "(N, C, T, H, W) video (or (N, T) single-channel signals)."
        )
    if not np.isfinite(arr).all():
        raise CLIError(f"{path} contains NaN or infinite values.")
    return arr.astype(np.float32, copy=False), meta


_RAISE = "raise the limit with --max-data SIZE, e.g. --max-data 16G"


def _read_npz(path: str, key: str | None, limit: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``key`` array of an .npz archive and its ``fs``/``y`` arrays, sizes checked first.

    The uncompressed sizes the zip directory declares are compared with ``limit`` before
    anything is decompressed (zipfile never inflates a member past its declared size), then each
    member's .npy header is checked against that size before its array is allocated.
    """
    with zipfile.ZipFile(path) as zf:
        members = {}
        for info in zf.infolist():
            name = info.filename
            members[name[:-4] if name.endswith(".npy") else name] = info
        keys = list(members)
        if key is None:
            key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None or key not in keys:
            raise CLIError(f"{path} holds arrays {keys}; choose one with --key.")
        wanted = [key] + [k for k in ("fs", "y") if k in members and k != key]
        declared = sum(members[k].file_size for k in wanted)
        if declared > limit:
            raise CLIError(
                f"{path}: the arrays {wanted} take {format_size(declared)} once decompressed (from a "
                f"{format_size(os.path.getsize(path))} file), over the {format_size(limit)} limit on data read; "
                f"{_RAISE}."
            )
        arrays = {}
        for k in wanted:
            with zf.open(members[k]) as fh:
                arrays[k] = _read_npy(fh, members[k].file_size, f"{path} (array {k!r})", limit)
    return arrays.pop(key), arrays


def _read_npy(fh: Any, size: int, where: str, limit: int) -> np.ndarray:
    """An array from an .npy stream of ``size`` bytes, refused before allocation when its header
    declares more data than ``limit`` or than the stream holds (a truncated or forged header)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:  # 2.0 and 3.0 (a utf-8 header) share the layout; only the sizes are needed here
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise CLIError(
            f"{where} declares an array of shape {tuple(shape)} {dtype} ({format_size(nbytes)}), over the "
            f"{format_size(limit)} limit on data read; {_RAISE}."
        )
    available = size - fh.tell()
    if nbytes > available:
        raise CLIError(
            f"{where} declares an array of shape {tuple(shape)} {dtype} ({nbytes} bytes) but holds "
            f"{max(available, 0)} bytes of data: the file is truncated or corrupt."
        )
    fh.seek(0)
    return np.lib.format.read_array(fh, allow_pickle=False)


def _read_edf(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One EDF/BDF recording as (1, C, T) with its sampling rate and channel names (pyedflib)."""
    try:
        import pyedflib
    except ImportError as exc:
        raise CLIError(
            "reading EDF files needs pyedflib: pip install pyedflib (or convert to .npy)."
        ) from exc
    reader = pyedflib.EdfReader(path)
    try:
        rates = np.asarray(reader.getSampleFrequencies(), dtype=float)
        if rates.size == 0:
            raise CLIError(f"{path} holds no signals.")
        fs = check_fs(rates.max(), f"the sampling rate in the header of {path}")
        keep = np.flatnonzero(rates == rates.max())  # channels at the main rate (annotations differ)
        if keep.size < rates.size:
            warnings.warn(
                f"{path}: {rates.size - keep.size} channel(s) at other sampling rates were left out.",
                UserWarning,
                stacklevel=3,
            )
        arr = np.stack([reader.readSignal(int(i)) for i in keep])[None]
        labels = reader.getSignalLabels()
        meta = {"fs": fs, "channels": [labels[int(i)] for i in keep]}
    finally:
        reader.close()
    return arr, meta


def _numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.strip().split(",") if v.strip()]
        return True
    except ValueError:
        return False


def parse_target(value: str | None, n: int) -> Any:
    """``None``/'predicted' -> None, '3' -> 3, '1,0,2' -> a per-sample list."""
    if value is None or value == "predicted":
        return None
    try:
        parts = [int(v) for v in value.split(",")]
    except ValueError as exc:
        raise CLIError(
            f"--target must be 'predicted', an int or one int per sample separated by commas. Got {value!r}."
        ) from exc
    big = [v for v in parts if not -(2**63) <= v < 2**63]
    if big:
        raise CLIError(f"--target class {big[0]} is out of range.")
    if len(parts) == 1:
        return parts[0]
    if len(parts) != n:
        raise CLIError(f"--target lists {len(parts)} classes but the data has {n} samples.")
    return parts


__all__ = [
    "CLIError",
    "load_data",
    "parse_target",
    "check_fs",
    "parse_size",
    "format_size",
    "default_data_limit",
    "InputError",
    "ParameterError",
    "ShapeError",
]
