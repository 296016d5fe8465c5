"""Loading user models for ``salience explain`` / ``salience layers`` / ``salience explain-dataset``."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
import zipfile
from collections.abc import Iterator
from typing import Any

import torch

from ._io import CLIError


def load_model(
    spec: str,
    *,
    weights: str | None = None,
    trust_pickle: bool = False,
    device: str = "cpu",
    quiet: bool = False,
) -> Any:
    """Load a model from a TorchScript archive, a ``torch.export`` archive (.pt2),
    ``package.module:factory`` (+ a state dict read with ``weights_only=True``), or, only with
    ``trust_pickle``, a fully pickled module.

    What torch's loggers print while the files are read is held back: when a file is refused
    its cause is in the :class:`CLIError` message instead (``torch.export.load`` logs the
    traceback of a failed read, then raises a generic error that points at that log); after a
    successful load the records are shown unless ``quiet``.
    """
    records: list[logging.LogRecord] = []
    with _held_torch_logs(records):
        model = _load_model(spec, weights, trust_pickle, device, records)
    if not quiet:
        for record in records:
            logging.getLogger(record.name).handle(record)
    return model


@contextlib.contextmanager
def _held_torch_logs(records: list[logging.LogRecord]) -> Iterator[None]:
    """Send what torch's loggers emit to ``records`` instead of their handlers, for the duration.

    torch gives its loggers their own stderr handlers (and stops their propagation); the
    ``torch`` logger and every ``torch.*`` logger with handlers get one collecting handler, and
    the ``torch`` logger stops propagating (so nothing reaches the root logger's fallback output).
    """

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    hold = _Hold()
    saved = []
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (
            name == "torch" or (name.startswith("torch.") and logger.handlers)
        ):
            saved.append((logger, logger.handlers, logger.propagate))
            logger.handlers = [hold]
    top = logging.getLogger("torch")
    if not any(entry[0] is top for entry in saved):
        saved.append((top, top.handlers, top.propagate))
        top.handlers = [hold]
    top.propagate = False
    try:
        yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate


def _cause(exc: BaseException, records: list[logging.LogRecord]) -> str:
    """The first line of the error torch logged while failing (the real cause), else of ``exc``."""
    for record in reversed(records):
        if record.exc_info and record.exc_info[1] is not None and str(record.exc_info[1]).strip():
            return str(record.exc_info[1]).strip().splitlines()[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _zip_names(path: str) -> list[str]:
    """The member names of a zip archive ([] for any other file)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return []


def _archive_kind(names: list[str]) -> str | None:
    """'TorchScript' or 'torch.export' for the member names of such an archive, else None."""
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "TorchScript"
    if any("serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
        return "torch.export"
    return None


def _load_model(
    spec: str, weights: str | None, trust_pickle: bool, device: str, records: list[logging.LogRecord]
) -> Any:
    """:func:`load_model` without the log handling; ``records`` holds what torch logged so far."""
    if ":" in spec and not os.path.exists(spec):
        module_name, _, factory_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CLIError(f"cannot import module {module_name!r} for model {spec!r}: {exc}") from exc
        factory = getattr(module, factory_name, None)
        if factory is None or not callable(factory):
            raise CLIError(f"{module_name!r} has no callable {factory_name!r} (model spec {spec!r}).")
        try:
            model = factory()
        except Exception as exc:  # the user's own code
            text = str(exc).strip()
            detail = f": {text.splitlines()[0]}" if text else ""
            raise CLIError(f"{spec}() raised {type(exc).__name__}{detail}") from exc
        if not isinstance(model, torch.nn.Module):
            raise CLIError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module.")
        if weights is not None:
            if not os.path.isfile(weights):
                raise CLIError(f"weights file not found: {weights}")
            kind = _archive_kind(_zip_names(weights))
            if kind is not None:
                raise CLIError(
                    f"{weights} is a {kind} archive (a whole model), not a state dict: give it as "
                    "the MODEL argument, without --weights."
                )
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise CLIError(
                    f"cannot read {weights} as a state dict with weights_only=True: {_cause(exc, records)}"
                ) from exc
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            try:
                model.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as exc:
                raise CLIError(
                    f"the weights in {weights} do not fit {spec}: {str(exc).splitlines()[0]}"
                ) from exc
        return model.to(device).eval()
    if weights is not None:
        raise CLIError("--weights goes with a 'package.module:factory' model spec.")
    if not os.path.isfile(spec):
        raise CLIError(f"model file not found: {spec}")
    names = _zip_names(spec)
    kind = _archive_kind(names)
    if kind == "TorchScript":
        try:
            with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript; archives still load
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.load.*")
                return torch.jit.load(spec, map_location=device).eval()
        except Exception as exc:
            raise CLIError(f"cannot load TorchScript archive {spec}: {_cause(exc, records)}") from exc
    if kind == "torch.export" or spec.endswith(".pt2"):
        if not names:
            raise CLIError(f"{spec} is not a torch.export archive (not a zip file).")
        try:
            return _load_exported(spec, device)
        except Exception as exc:
            raise CLIError(f"cannot load torch.export archive {spec}: {_cause(exc, records)}") from exc
    if not trust_pickle:
        raise CLIError(
            f"{spec} is not a TorchScript or torch.export archive. Save the model with "
            "torch.jit.script(model).save(path) or torch.export.save, give 'package.module:factory' "
            "with --weights STATE_DICT, or pass --trust-pickle to unpickle it (this runs any code "
            "the file contains)."
        )
    warnings.warn(
        f"unpickling {spec} with --trust-pickle: only do this for files you trust.", UserWarning, stacklevel=3
    )
    try:
        model = torch.load(spec, map_location=device, weights_only=False)
    except Exception as exc:
        raise CLIError(f"cannot unpickle {spec}: {_cause(exc, records)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise CLIError(
            f"{spec} holds a {type(model).__name__}, not a torch.nn.Module (a state dict needs 'module:factory')."
        )
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
