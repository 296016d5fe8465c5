"""MNE objects as tensors with their metadata (channel names, sfreq, montage, classes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError, ParameterError

#: SI units of MNE's channel unit codes (FIFF_UNIT_V, FIFF_UNIT_T, FIFF_UNIT_T_M, ...)
_SI = {107: "V", 112: "T", 201: "T/m", 202: "Am", 0: "AU", -1: "AU"}


def _mne() -> Any:
    try:
        import mne
    except ImportError as exc:  # pragma: no cover - exercised only without mne
        raise ImportError(
            "salience.mne needs MNE-Python: pip install 'salience[mne]' (or pip install mne)."
        ) from exc
    if getattr(mne, "__file__", None) is None:  # a folder named mne on sys.path, not the library
        raise ImportError("salience.mne needs MNE-Python: pip install 'salience[mne]' (or pip install mne).")
    return mne


def _kind(inst: Any) -> str:
    mne = _mne()
    if isinstance(inst, mne.BaseEpochs):
        return "epochs"
    if isinstance(inst, mne.Evoked):
        return "evoked"
    if isinstance(inst, mne.io.BaseRaw):
        return "raw"
    return type(inst).__name__


def unit_factors(info: Any, units: Any = None) -> tuple[np.ndarray, list[str]]:
    """Per-channel factors from MNE's SI units to ``units`` and the unit names.

    Parameters
    ----------
    info : mne.Info
    units : None, str or dict of channel type -> str
        As MNE's ``get_data(units=...)``: None keeps SI units (V for EEG, T for MEG); ``"uV"``
        scales every channel of the one channel type that has a unit.

    Returns
    -------
    factors : ndarray of shape (C,)
        ``data_in_units = factors[:, None] * data_in_SI``.
    names : list of str
        Each channel's unit after scaling.
    """
    mne = _mne()
    si = [_SI.get(int(ch["unit"]), "AU") for ch in info["chs"]]
    if units is None:
        return np.ones(len(si)), si
    ones = mne.EvokedArray(np.ones((len(si), 1)), info, verbose="error")
    try:
        factors = ones.get_data(units=units)[:, 0]
    except (ValueError, TypeError, KeyError) as exc:
        raise ParameterError(
            f"The 'units' parameter must be None, a unit MNE knows for the channels (e.g. 'uV' for "
            f"EEG) or a dict channel type -> unit. Got {units!r}: {exc}"
        ) from exc
    types = ones.get_channel_types()
    given = (
        dict(units)
        if isinstance(units, dict)
        else {t: units for t, u in zip(types, si, strict=True) if u != "AU"}
    )
    names = [str(given.get(t, u)) for t, u in zip(types, si, strict=True)]
    return np.asarray(factors, dtype=np.float64), names


def positions(info: Any) -> np.ndarray | None:
    """Channel positions (C, 3) in metres (head coordinates), None when any channel has none."""
    locs = np.array([ch["loc"][:3] for ch in info["chs"]], dtype=np.float64)
    if locs.size == 0 or not np.isfinite(locs).all() or (np.abs(locs).sum(1) == 0).any():
        return None
    return locs


def class_names_of(inst: Any) -> list[str] | None:
    """The event names of an Epochs object ordered by event code (class k is the k-th smallest
    code, as :func:`labels` numbers them); None with fewer than two event types."""
    event_id = getattr(inst, "event_id", None) or {}
    if len(event_id) < 2:
        return None
    return [name for name, _ in sorted(event_id.items(), key=lambda kv: kv[1])]


def labels(epochs: Any) -> torch.Tensor:
    """The class of every epoch, shape (E,): its event code's rank among ``epochs.event_id``'s
    codes (the order of :func:`describe`'s ``class_names``).

    Parameters
    ----------
    epochs : mne.Epochs or mne.EpochsArray
    """
    if _kind(epochs) != "epochs":
        raise InputError(f"labels() needs an mne.Epochs object. Got {type(epochs).__name__} instead.")
    codes = sorted(epochs.event_id.values())
    rank = {c: i for i, c in enumerate(codes)}
    return torch.tensor([rank[int(c)] for c in epochs.events[:, 2]], dtype=torch.long)


def _picked(inst: Any, picks: Any) -> Any:
    """A copy of ``inst`` with the ``picks`` channels (MNE's selection rules)."""
    try:
        return inst.copy().pick(picks)
    except (ValueError, TypeError, IndexError) as exc:
        raise ParameterError(
            f"The 'picks' parameter {picks!r} does not select channels of this {type(inst).__name__}: {exc}"
        ) from exc


def describe(inst: Any, picks: Any = "data", units: Any = None) -> dict[str, Any]:
    """The metadata salience keeps with an MNE object's data (``Attribution.info`` keys).

    Parameters
    ----------
    inst : mne.Epochs or mne.Evoked
    picks : str, list or None, default "data"
        MNE's channel selection (``"data"``: every data channel, no stim/misc channels).
    units : None, str or dict
        See :func:`unit_factors`.

    Returns
    -------
    dict with keys
        ``channel_names`` (list of str), ``sfreq`` (float, Hz), ``ch_types``, ``units`` (one per
        channel), ``positions`` ((C, 3) metres, head coordinates, or None), ``montage``
        (``mne.channels.DigMontage`` or None), ``mne_info`` (the picked ``mne.Info``, for
        topomaps), ``tmin`` (s), and for Epochs ``event_id`` and ``class_names`` (event names
        ordered by code, with two or more event types).
    """
    return _describe(_picked(inst, picks), units)


def _describe(inst: Any, units: Any) -> dict[str, Any]:
    info = inst.info
    _, unit_names = unit_factors(info, units)
    meta: dict[str, Any] = {
        "channel_names": list(info["ch_names"]),
        "sfreq": float(info["sfreq"]),
        "ch_types": list(info.get_channel_types()),
        "units": unit_names,
        "positions": positions(info),
        "montage": info.get_montage(),
        "mne_info": info,
        "tmin": float(getattr(inst, "tmin", 0.0)),
    }
    if _kind(inst) == "epochs":
        meta["event_id"] = dict(inst.event_id)
        names = class_names_of(inst)
        if names is not None:
            meta["class_names"] = names
    return meta


def from_mne(
    inst: Any, *, picks: Any = "data", units: Any = None, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """An MNE object's data as a float tensor and its metadata.

    Parameters
    ----------
    inst : mne.Epochs, mne.EpochsArray or mne.Evoked
        Epochs give (epochs, channels, times); an Evoked gives one sample (1, channels, times).
        A continuous ``Raw`` is refused: cut it into windows with :func:`windows` first.
    picks : str, list or None, default "data"
        MNE's channel selection; ``"data"`` leaves out stim, misc and other non-data channels.
    units : None, str or dict, default None
        The units of the tensor. None keeps MNE's SI units (volts for EEG, tesla for MEG), what
        ``get_data()`` returns; give the units the model was trained on, e.g. ``"uV"`` (many
        EEG models, braindecode's usual scaling, expect microvolts).
    dtype : torch.dtype, optional
        Default: ``torch.get_default_dtype()`` (float32).

    Returns
    -------
    x : Tensor of shape (E, C, T)
    metadata : dict
        See :func:`describe`.
    """
    kind = _kind(inst)
    if kind == "raw":
        raise InputError(
            "An mne.io.Raw recording is continuous; a model explains fixed-length windows. Cut it "
            "first: salience.mne.windows(raw, length=2.0, step=1.0) gives mne.Epochs."
        )
    if kind not in ("epochs", "evoked"):
        raise InputError(
            f"salience.mne expects mne.Epochs, mne.EpochsArray or mne.Evoked. Got {type(inst).__name__}."
        )
    if kind == "epochs" and not getattr(inst, "preload", True):
        inst = inst.copy().load_data()
    picked = _picked(inst, picks)
    meta = _describe(picked, units)
    factors, _ = unit_factors(picked.info, units)
    data = np.asarray(picked.get_data(), dtype=np.float64)
    if kind == "evoked":
        data = data[None]
    data = data * factors[None, :, None]
    if data.shape[0] == 0:
        raise InputError("The MNE object holds no epochs (all were dropped?): nothing to explain.")
    return torch.as_tensor(data, dtype=dtype or torch.get_default_dtype()), meta


def windows(raw: Any, length: float, step: float | None = None, *, reject_by_annotation: bool = True) -> Any:
    """Cut a continuous recording into fixed-length windows (``mne.Epochs``).

    Parameters
    ----------
    raw : mne.io.Raw
    length : float
        Window length in seconds.
    step : float, optional
        Seconds between window starts (default ``length``: back to back; less overlaps).
    reject_by_annotation : bool, default True
        Leave out windows overlapping ``BAD_*`` annotations (MNE's rule).

    Returns
    -------
    mne.Epochs
        Preloaded; explain it directly (``explainer.explain(epochs)``) or convert it with
        :func:`from_mne`.
    """
    mne = _mne()
    if _kind(raw) != "raw":
        raise InputError(f"windows() cuts an mne.io.Raw recording. Got {type(raw).__name__} instead.")
    if isinstance(length, bool) or not isinstance(length, (int, float)) or not length > 0:
        raise ParameterError(
            f"The 'length' parameter of windows must be a positive number of seconds. Got {length!r}."
        )
    step = float(length) if step is None else step
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
        raise ParameterError(
            f"The 'step' parameter of windows must be a positive number of seconds. Got {step!r}."
        )
    overlap = max(float(length) - float(step), 0.0)
    if step > length:
        raise ParameterError(
            f"The 'step' parameter of windows ({step} s) is longer than a window ({length} s); "
            "gaps between windows are not supported."
        )
    return mne.make_fixed_length_epochs(
        raw,
        duration=float(length),
        overlap=overlap,
        preload=True,
        reject_by_annotation=reject_by_annotation,
        verbose="error",
    )
