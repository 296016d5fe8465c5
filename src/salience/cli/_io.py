"""Loading user models and data for ``salience explain`` / ``salience layers``."""

from __future__ import annotations

import importlib
import os
import warnings
import zipfile
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ParameterError, ShapeError


class CLIError(Exception):
    """A user-facing command-line error (bad file, bad option); exit code 2."""


def load_model(spec: str, *, weights: str | None = None, trust_pickle: bool = False, device: str = "cpu") -> Any:
    """Load a model from a TorchScript archive, a ``torch.export`` archive (.pt2),
    ``package.module:factory`` (+ a state dict read with ``weights_only=True``), or, only with
    ``trust_pickle``, a fully pickled module."""
    if ":" in spec and not os.path.exists(spec):
        module_name, _, factory_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CLIError(f"cannot import module {module_name!r} for model {spec!r}: {exc}") from exc
        factory = getattr(module, factory_name, None)
        if factory is None or not callable(factory):
            raise CLIError(f"{module_name!r} has no callable {factory_name!r} (model spec {spec!r}).")
        model = factory()
        if not isinstance(model, torch.nn.Module):
            raise CLIError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module.")
        if weights is not None:
            if not os.path.isfile(weights):
                raise CLIError(f"weights file not found: {weights}")
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CLIError(f"cannot read {weights} as a state dict with weights_only=True: {str(exc).splitlines()[0]}") from exc
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            try:
                model.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise CLIError(f"the weights in {weights} do not fit {spec}: {str(exc).splitlines()[0]}") from exc
        return model.to(device).eval()
    if weights is not None:
        raise CLIError("--weights goes with a 'package.module:factory' model spec.")
    if not os.path.isfile(spec):
        raise CLIError(f"model file not found: {spec}")
    names: list[str] = []
    if zipfile.is_zipfile(spec):
        with zipfile.ZipFile(spec) as zf:
            names = zf.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        try:
            with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; archives still load
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.load.*")
                return torch.jit.load(spec, map_location=device).eval()
        except Exception as exc:
            raise CLIError(f"cannot load TorchScript archive {spec}: {str(exc).splitlines()[0]}") from exc
    if spec.endswith(".pt2") or any("serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
        try:
            return _load_exported(spec, device)
        except Exception as exc:
            raise CLIError(f"cannot load torch.export archive {spec}: {str(exc).splitlines()[0]}") from exc
    if not trust_pickle:
        raise CLIError(
            f"{spec} is not a TorchScript or torch.export archive. Save the model with "
            "torch.jit.script(model).save(path) or torch.export.save, give 'package.module:factory' "
            "with --weights STATE_DICT, or pass --trust-pickle to unpickle it (this runs any code "
            "the file contains)."
        )
    warnings.warn(f"unpickling {spec} with --trust-pickle: only do this for files you trust.", UserWarning, stacklevel=2)
    try:
        model = torch.load(spec, map_location=device, weights_only=False)
    except Exception as exc:
        raise CLIError(f"cannot unpickle {spec}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(model, torch.nn.Module):
        raise CLIError(f"{spec} holds a {type(model).__name__}, not a torch.nn.Module (a state dict needs 'module:factory').")
    return model.eval()


def _load_exported(spec: str, device: str) -> torch.nn.Module:
    """A ``torch.export`` archive as a module with its named submodules, in eval mode.

    ``ExportedProgram.module()`` flattens the model into one graph (no submodules to hook, so
    no CAM layers) and reports training mode with ``eval()`` unsupported; ``torch.export.unflatten``
    restores the module hierarchy. The graph was fixed at export time, so the training flag only
    says what the exported program does; the CLI sets it to False on its own loaded copy so the
    explainers' training-mode warning (about BatchNorm/dropout) is not shown spuriously.
    """
    with warnings.catch_warnings():  # torch-internal deprecation noise of the pytree loader
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
        program = torch.export.load(spec)
        module = torch.export.unflatten(program)
    for m in module.modules():  # the CLI's own object: no user model is touched
        m.training = False
    return module.to(device)


def load_data(path: str, *, key: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read inputs as a float32 array (N, C, ...) from .npy, .npz or .csv.

    .npy/.npz: 3-5 dims are (N, C, T), (N, C, H, W), (N, C, T, H, W); 2 dims are (N, T)
    single-channel signals; .npz takes ``key`` (default: ``x`` or the only array) and optional
    ``fs``/``y`` arrays. .csv: one multichannel recording, rows = time steps, columns = channels
    (a header row is skipped), giving (1, C, T). .edf/.bdf (with pyedflib installed): one
    recording (1, C, T) of the channels at the highest sampling rate, with ``fs`` and channel
    names.
    """
    if not os.path.isfile(path):
        raise CLIError(f"data file not found: {path}")
    meta: dict[str, Any] = {}
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if key is None:
                    key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None or key not in keys:
                    raise CLIError(f"{path} holds arrays {keys}; choose one with --key.")
                arr = z[key]
                for extra in ("fs", "y"):
                    if extra in keys and extra != key:
                        meta[extra] = z[extra]
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
    except (ValueError, OSError) as exc:
        raise CLIError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
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
    return arr.astype(np.float32), meta


def _read_edf(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One EDF/BDF recording as (1, C, T) with its sampling rate and channel names (pyedflib)."""
    try:
        import pyedflib
    except ImportError as exc:
        raise CLIError("reading EDF files needs pyedflib: pip install pyedflib (or convert to .npy).") from exc
    reader = pyedflib.EdfReader(path)
    try:
        rates = np.asarray(reader.getSampleFrequencies(), dtype=float)
        if rates.size == 0:
            raise CLIError(f"{path} holds no signals.")
        keep = np.flatnonzero(rates == rates.max())  # channels at the main rate (annotations differ)
        if keep.size < rates.size:
            warnings.warn(f"{path}: {rates.size - keep.size} channel(s) at other sampling rates were left out.",
                          UserWarning, stacklevel=3)
        arr = np.stack([reader.readSignal(int(i)) for i in keep])[None]
        labels = reader.getSignalLabels()
        meta = {"fs": float(rates.max()), "channels": [labels[int(i)] for i in keep]}
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
        raise CLIError(f"--target must be 'predicted', an int or one int per sample separated by commas. Got {value!r}.") from exc
    if len(parts) == 1:
        return parts[0]
    if len(parts) != n:
        raise CLIError(f"--target lists {len(parts)} classes but the data has {n} samples.")
    return parts


__all__ = ["CLIError", "load_model", "load_data", "parse_target", "InputError", "ParameterError", "ShapeError"]
