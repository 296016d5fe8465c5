"""Inputs that carry their own description (MNE objects) and the names given with a call.

:func:`as_input` is the seam between the data users hold and the tensors every explainer and
metric works on: a tensor passes through unchanged; an MNE ``Epochs``/``Evoked`` object becomes a
float tensor (epochs, channels, times) with its metadata (channel names, ``sfreq``, montage,
class names; see :mod:`salience.mne`), imported only when such an object is given.
:func:`with_names` merges and checks the ``channel_names=``/``class_names=`` a caller gives.
The metadata ends up in ``Attribution.info``, where the plots and the report read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .errors import ParameterError, ShapeError, TargetError, current_caller

__all__ = ["as_input", "is_mne", "with_names", "check_names", "model_dtype", "named_target"]


def is_mne(x: Any) -> bool:
    """Whether ``x`` is an MNE-Python data object (Epochs, Evoked, Raw), without importing MNE."""
    module = type(x).__module__ or ""
    return (module == "mne" or module.startswith("mne.")) and hasattr(x, "info") and hasattr(x, "get_data")


def model_dtype(model: Any) -> torch.dtype:
    """The floating dtype of a module's first floating parameter (float32 otherwise)."""
    for p in getattr(model, "parameters", lambda: iter(()))():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def as_input(x: Any, model: Any = None) -> tuple[Any, dict[str, Any]]:
    """``(x, {})`` for anything but an MNE object, else its tensor and metadata.

    Parameters
    ----------
    x : Tensor, mne.Epochs, mne.EpochsArray, mne.Evoked or anything else
        Non-MNE values are returned unchanged (the caller's own checks then apply).
    model : callable, optional
        The tensor takes the dtype of its first floating parameter (float32 without one).

    Returns
    -------
    x : Tensor or the value given
    metadata : dict
        :func:`salience.mne.describe`'s keys for an MNE object, else empty.
    """
    if not is_mne(x):
        return x, {}
    from .mne import from_mne

    return from_mne(x, dtype=model_dtype(model))


def check_names(
    names: Any, what: str, count: int | None = None, owner: str | None = None
) -> list[str] | None:
    """``names`` as a list of str (None stays None), of length ``count`` when given."""
    if names is None:
        return None
    owner = owner or current_caller()
    if isinstance(names, (str, bytes)) or not (isinstance(names, Sequence) or hasattr(names, "tolist")):
        raise ParameterError(
            f"The {what!r} parameter of {owner} must be a sequence of str (one per "
            f"{'channel' if what == 'channel_names' else 'class'}). Got {type(names).__name__} instead."
        )
    out = [str(n) for n in (names.tolist() if hasattr(names, "tolist") else names)]
    if count is not None and len(out) != count:
        raise ShapeError(
            f"The {what!r} parameter of {owner} has {len(out)} name(s) for {count} "
            f"{'channels' if what == 'channel_names' else 'classes'}: {out[:6]}{'...' if len(out) > 6 else ''}."
        )
    if len(set(out)) != len(out):
        dup = sorted({n for n in out if out.count(n) > 1})
        raise ParameterError(f"The {what!r} parameter of {owner} repeats the name(s) {dup}.")
    return out


def with_names(
    meta: dict[str, Any],
    x: torch.Tensor,
    layout: Any,
    channel_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The metadata with the given names (they override an MNE object's), checked against ``x``.

    Channel names must have one entry per element of the layout's channel axis ``"c"``.
    """
    meta = dict(meta)
    if channel_names is not None:
        names = getattr(layout, "names", ())
        count = int(x.shape[names.index("c")]) if "c" in names else None
        meta["channel_names"] = check_names(channel_names, "channel_names", count)
    if class_names is not None:
        meta["class_names"] = check_names(class_names, "class_names")
    return meta


def _is_name(v: Any) -> bool:
    return isinstance(v, str) or (
        hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "US" and not isinstance(v, torch.Tensor)
    )


def named_target(target: Any, class_names: Sequence[str] | None, owner: str | None = None) -> Any:
    """A target given as class names (a str, or one str per sample) as class indices.

    Any other target is returned unchanged (:func:`~salience.targets.as_target` coerces it).

    Parameters
    ----------
    target : str, sequence of str, numpy array of str, or any target
    class_names : sequence of str or None
        The model's classes in output order (``class_names=`` of the call, or an MNE
        ``Epochs``'s event names).

    Raises
    ------
    TargetError
        A name without ``class_names``, or a name not among them (the message lists them).
    """
    names: list[Any]
    if _is_name(target) and getattr(target, "ndim", 0) == 0:
        names, single = [str(target)], True
    elif (_is_name(target) and getattr(target, "ndim", 0) == 1) or (
        isinstance(target, (list, tuple)) and target and all(isinstance(t, str) for t in target)
    ):
        names, single = [str(t) for t in target], False
    else:
        return target
    owner = owner or current_caller()
    if class_names is None:
        raise TargetError(
            f"{owner}: the target {target!r} names a class, but no class names are known. Pass "
            "class_names=[...] (the model's classes in output order) with the call, or explain "
            "mne.Epochs whose event_id names the classes."
        )
    known = [str(n) for n in class_names]
    index = {n: i for i, n in enumerate(known)}
    missing = [n for n in names if n not in index]
    if missing:
        raise TargetError(f"{owner}: unknown class name {missing[0]!r}; the known class names are {known}.")
    return index[names[0]] if single else [index[n] for n in names]
