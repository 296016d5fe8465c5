"""Band sums: per-bin frequency attributions summed into named bands.

Band sets are data: a dict ``{name: (low_hz, high_hz)}``. Presets resolve against the data's
sampling rate (:func:`resolve_bands`): ``"octave"`` (the default, for any signal),
``"linear"`` and, only when asked for, ``"eeg"``. Attribution outside every band is reported
as an ``"other"`` entry, never dropped.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ParameterError, ShapeError, caller, current_caller, warn
from ._spectral import _drop

__all__ = ["aggregate_bands", "resolve_bands", "octave_bands", "linear_bands", "EEG_BANDS"]

EEG_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "beta": (12.0, 30.0),
    "gamma": (30.0, 100.0),
}
"""The classical EEG bands in Hz, half-open ``[low, high)``. Used only when asked for
(``bands="eeg"``); DC and 0-0.5 Hz lie outside them and go to the ``"other"`` entry."""

OTHER = "other"
"""Name of the entry that collects the attribution of bins outside every band."""

OUTSIDE_WARNING = 0.1
"""A warning is issued when more than this share of the absolute attribution lies outside
every band (summed over the whole batch, channels and bins)."""

BandsLike = str | Mapping[str, Sequence[float]] | Sequence[float] | None

_PRESET = re.compile(r"^\s*(eeg|octave|linear)\s*(?::\s*(\d+)\s*)?$", re.IGNORECASE)
_RANGE = re.compile(r"^\s*(?:([^:,]+?)\s*:)?\s*([0-9.eE+]+|inf)\s*-\s*([0-9.eE+]+|inf)\s*$")


def octave_bands(
    fs: float, *, resolution: float | None = None, max_bands: int = 8
) -> dict[str, tuple[float, float]]:
    """Octave bands from 0 Hz up to the Nyquist frequency ``fs / 2``, for any signal.

    The inner edges are powers of two in Hz (..., 0.5, 1, 2, 4, ...) below Nyquist; the top
    band ends at Nyquist (a partial octave when Nyquist is not a power of two) and the lowest
    band starts at 0 Hz, so DC and the slowest bins belong to it. At most ``max_bands`` bands:
    the lowest band absorbs the octaves below them. With ``resolution`` (the bin spacing
    ``fs / T``) the lowest band's upper edge lies above it, so it holds DC and at least one
    more bin.

    Examples
    --------
    >>> octave_bands(10.0, max_bands=4)
    {'0-1': (0.0, 1.0), '1-2': (1.0, 2.0), '2-4': (2.0, 4.0), '4-5': (4.0, 5.0)}
    """
    nyq = _positive(fs, "fs") / 2
    if not isinstance(max_bands, int) or isinstance(max_bands, bool) or max_bands < 1:
        raise ParameterError(f"The 'max_bands' parameter must be an int >= 1. Got {max_bands!r}.")
    floor = 0.0 if resolution is None else float(resolution)
    powers: list[float] = []
    k = math.ceil(math.log2(nyq)) - 1
    while len(powers) < max_bands - 1 and 2.0**k > floor and k > -60:
        if 2.0**k < nyq:
            powers.append(2.0**k)
        k -= 1
    edges = [0.0, *sorted(powers), nyq]
    return {f"{a:g}-{b:g}": (a, b) for a, b in zip(edges, edges[1:], strict=False)}


def linear_bands(fs: float, n: int = 8) -> dict[str, tuple[float, float]]:
    """``n`` equal-width bands from 0 Hz to the Nyquist frequency ``fs / 2``.

    Examples
    --------
    >>> linear_bands(100.0, 2)
    {'0-25': (0.0, 25.0), '25-50': (25.0, 50.0)}
    """
    nyq = _positive(fs, "fs") / 2
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParameterError(f"The number of linear bands must be an int >= 1. Got {n!r}.")
    edges = [nyq * i / n for i in range(n + 1)]
    return {f"{a:g}-{b:g}": (a, b) for a, b in zip(edges, edges[1:], strict=False)}


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise ParameterError(f"The '{name}' parameter must be a positive finite number in Hz. Got {value!r}.")
    return v


def _spec_string(spec: str) -> tuple[str, int | None] | dict[str, tuple[float, float]]:
    """A preset ``(name, n)`` or a table parsed from ``"low:0-4,mid:4-12"`` / ``"0,4,8"``."""
    preset = _PRESET.match(spec)
    if preset:
        return preset.group(1).lower(), None if preset.group(2) is None else int(preset.group(2))
    items = spec.split(",")
    edges: list[float] | None = None
    out: dict[str, tuple[float, float]] = {}
    try:
        if all(_RANGE.match(s) is None for s in items):  # plain edges "0,4,8"
            edges = [float(s) for s in items]
        for s in items if edges is None else ():
            m = _RANGE.match(s)
            if m is None:
                raise ValueError(s)
            lo, hi = float(m.group(2)), float(m.group(3))
            name = m.group(1) or f"{lo:g}-{hi:g}"
            if name in out:
                raise ParameterError(f"Band {name!r} is named twice in the spec {spec!r}.")
            out[name] = (lo, hi)
    except ParameterError:
        raise
    except ValueError as exc:
        raise ParameterError(
            f"The 'bands' parameter of {current_caller()} must be a preset ('octave', 'linear', "
            "'linear:N', 'eeg'), a spec such as 'low:0-4,mid:4-12,high:12-50', a dict name -> "
            f"(low, high) or a list of increasing edges. Got {spec!r} instead."
        ) from exc
    return _table(out) if edges is None else _edges(edges, spec)


def _edges(edges: Sequence[float], given: Any) -> dict[str, tuple[float, float]]:
    if len(edges) < 2 or any(not b > a for a, b in zip(edges, edges[1:], strict=False)):
        raise ParameterError(f"Band edges must be at least two increasing numbers. Got {given!r} instead.")
    return _table({f"{a:g}-{b:g}": (a, b) for a, b in zip(edges, edges[1:], strict=False)})


def _table(bands: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    if not bands:
        raise ParameterError(f"The 'bands' parameter of {current_caller()} names no band.")
    out = {}
    for k, v in bands.items():
        try:
            lo, hi = (float(e) for e in v)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"Band {k!r} must be a pair (low, high) in Hz. Got {v!r}.") from exc
        if str(k) == OTHER:
            raise ParameterError(
                f"Band name {OTHER!r} is reserved for the attribution outside every band; rename it."
            )
        if not (math.isfinite(lo) and lo >= 0 and hi > lo):
            raise ParameterError(
                f"Band {k!r} must have 0 <= low < high (frequencies are |f| in Hz; high may be inf). "
                f"Got ({lo:g}, {hi:g})."
            )
        out[str(k)] = (lo, hi)
    return out


@caller("resolve_bands")
def resolve_bands(
    bands: BandsLike = None, fs: float | None = None, *, resolution: float | None = None
) -> dict[str, tuple[float, float]]:
    """The band table ``{name: (low, high)}`` that ``bands`` means for data sampled at ``fs``.

    Parameters
    ----------
    bands : None, str, dict name -> (low, high), or increasing edges, default None
        None or ``"octave"`` (``"octave:N"``: at most N bands): :func:`octave_bands`;
        ``"linear"`` / ``"linear:N"``: :func:`linear_bands` (8 by default); ``"eeg"``:
        :data:`EEG_BANDS`; a spec string ``"low:0-4,mid:4-12,high:12-50"`` (names optional,
        ``"0-4,4-12"``) or edges ``"0,4,12"``; a dict; a list of edges.
    fs : float, optional
        Sampling rate in Hz; needed by the generic splits and for the Nyquist check.
    resolution : float, optional
        The bin spacing ``fs / T``, for the octave split's lowest band.

    Returns
    -------
    dict of str to (float, float)
        Half-open ``[low, high)`` bands in Hz, in the order given. With ``fs``, a band reaching
        past Nyquist is clipped to ``(low, fs / 2)`` (it includes the Nyquist bin).

    Raises
    ------
    ParameterError
        A band lies at or above Nyquist (``low >= fs / 2``): the message names it, the
        sampling rate and Nyquist. A generic split without ``fs``.

    Examples
    --------
    >>> resolve_bands("low:0-4,high:4-50", fs=100.0)
    {'low': (0.0, 4.0), 'high': (4.0, 50.0)}
    """
    table = _resolve(bands, fs, resolution)
    return table if fs is None else _clip(table, _positive(fs, "fs") / 2, f"sampled at {fs:g} Hz")


def _resolve(bands: BandsLike, fs: float | None, resolution: float | None) -> dict[str, tuple[float, float]]:
    """The table ``bands`` names, not yet checked against Nyquist."""
    spec: Any = bands
    if spec is None:
        spec = ("octave", None)
    elif isinstance(spec, str):
        spec = _spec_string(spec)
    elif isinstance(spec, Mapping):
        spec = _table(spec)
    else:
        try:
            edges = [float(e) for e in spec]
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"The 'bands' parameter of {current_caller()} must be None, a preset name, a spec "
                f"string, a dict name -> (low, high) or a list of edges. Got {bands!r} instead."
            ) from exc
        spec = _edges(edges, bands)
    if not isinstance(spec, tuple):
        return spec
    name, n = spec
    if name == "eeg":
        if n is not None:
            raise ParameterError(f"The 'eeg' bands are a fixed set; got {bands!r} (no ':N' count).")
        return dict(EEG_BANDS)
    if fs is None:
        raise ParameterError(
            f"{current_caller()}: the {name!r} bands split 0 Hz to Nyquist and need the "
            "sampling rate; pass fs=... (in Hz)."
        )
    if name == "octave":
        return octave_bands(fs, resolution=resolution, max_bands=8 if n is None else n)
    return linear_bands(fs, 8 if n is None else n)


def _clip(table: dict[str, tuple[float, float]], nyq: float, source: str) -> dict[str, tuple[float, float]]:
    above = [f"{k!r} ({lo:g}-{hi:g} Hz)" for k, (lo, hi) in table.items() if lo >= nyq]
    if above:
        raise ParameterError(
            f"{current_caller()}: band{'s' if len(above) > 1 else ''} {', '.join(above)} "
            f"lie{'' if len(above) > 1 else 's'} at or above the Nyquist frequency {nyq:g} Hz of "
            f"data {source}: no bin can fall in {'them' if len(above) > 1 else 'it'}. Choose "
            f"bands below {nyq:g} Hz (drop {'them' if len(above) > 1 else 'it'} from the set), or "
            f"bands='octave' (a split of 0-{nyq:g} Hz)."
        )
    return {k: (lo, min(hi, nyq)) for k, (lo, hi) in table.items()}


def _ranges(freqs: torch.Tensor) -> str:
    """Contiguous runs of (sorted, unique) bin frequencies, written '0-0.5 Hz, 100-128 Hz'."""
    f = torch.unique(freqs).tolist()
    if len(f) == 1:
        return f"{f[0]:g} Hz"
    step = min(b - a for a, b in zip(f, f[1:], strict=False)) if len(f) > 1 else 0.0
    runs, start = [], f[0]
    for a, b in zip(f, f[1:], strict=False):
        if b - a > 1.5 * step:
            runs.append((start, a))
            start = b
    runs.append((start, f[-1]))
    return ", ".join(f"{a:g} Hz" if a == b else f"{a:g}-{b:g} Hz" for a, b in runs)


@caller("aggregate_bands")
def aggregate_bands(
    attribution: Any,
    bands: BandsLike = None,
    *,
    fs: float | None = None,
    freqs: torch.Tensor | None = None,
    other: bool = True,
) -> Any:
    """Sum per-bin frequency attributions into named bands.

    Bin ``k`` with frequency ``f_k`` (Hz) belongs to band ``[low, high)`` when
    ``low <= |f_k| < high`` (half-open: a bin exactly on an edge goes to the upper band; a band
    reaching Nyquist also takes the Nyquist bin). The reference notebook's slice also drops the
    last bin below ``high``, which we do not. With ``Fourier(output="full")`` attributions the
    negative frequencies fold onto the positive ones through ``|f_k|``, so both output forms
    give the same band sums. Bins outside every band (e.g. DC and 0-0.5 Hz for
    ``bands="eeg"``) are summed into a last entry ``"other"``, so the entries add up to the
    attribution's total; a :class:`~salience.errors.SalienceWarning` names their frequencies
    when they hold more than 10% (:data:`OUTSIDE_WARNING`) of the absolute attribution.

    Parameters
    ----------
    attribution : Attribution or Tensor
        Per-bin attributions with a frequency axis ``f`` (e.g. from ``FourierIG``, or from
        ``InDomain(..., Compose(ICA(...), Fourier()))``). A raw tensor needs ``freqs`` and has
        the frequency axis last.
    bands : None, str, dict name -> (low, high), or increasing edges, default None
        See :func:`resolve_bands`. None: octave bands from 0 Hz to Nyquist, fit for any
        signal. EEG band names only when asked for: ``bands="eeg"`` (delta 0.5-4, theta 4-8,
        alpha 8-12, beta 12-30, gamma 30-100 Hz). A band at or above Nyquist raises
        ParameterError; one reaching past it is clipped to Nyquist.
    fs : float, optional
        Sampling rate, if the domain was built without ``fs`` (on a tensor: gives the exact
        Nyquist frequency; without it the highest bin stands in for Nyquist).
    freqs : Tensor of shape (F,), optional
        Bin frequencies (overrides the domain's coordinates).
    other : bool, default True
        Append the ``"other"`` entry when some bin lies outside every band. False drops it
        (its share is still reported in ``info`` and warned about).

    Returns
    -------
    Attribution or Tensor
        The frequency axis replaced by ``band``: one value per band in the order given, then
        ``"other"`` if present. An Attribution records in ``info`` the ``"bands"`` table
        (edges in Hz, clipped to Nyquist), the ``"band_names"`` along the axis and
        ``"outside_share"`` (the share of absolute attribution outside every band).
    """
    from ..attribution import Attribution

    other = bool(other)
    is_attr = isinstance(attribution, Attribution)
    values = attribution.values if is_attr else attribution
    if not isinstance(values, torch.Tensor):
        raise ParameterError(
            f"{current_caller()} expects an Attribution or a Tensor. Got {type(attribution).__name__}."
        )
    rate = None if fs is None else _positive(fs, "fs")
    if is_attr:
        layout = attribution.layout
        if "r" in layout.names:
            values, layout = values.sum(layout.axes("r")[0]), _drop(layout, "r")
        if "f" not in layout.names:
            raise ShapeError(
                f"{current_caller()} needs a frequency axis 'f'; the attribution has layout {layout!r}."
            )
        f_axis = layout.axes("f")[0]
        dom = attribution.domain
        outer = dom
        while hasattr(outer, "second"):  # Compose: the reported units are the outer domain's
            outer = outer.second
        if rate is None and getattr(outer, "fs", None) is not None:
            rate = float(outer.fs)
        if freqs is None:
            if dom is None:
                raise ParameterError(f"{current_caller()}: the attribution has no domain; pass freqs=... .")
            if rate is None:
                raise ParameterError(
                    f"{current_caller()}: the domain was built without fs; pass fs=... (the sampling "
                    "rate in Hz) so bins can be placed in bands."
                )
            freqs = dom.coordinates(fs=rate).get("f")
            if freqs is None:
                raise ParameterError(f"{current_caller()}: the domain {dom!r} has no frequency coordinates.")
    else:
        if freqs is None:
            raise ParameterError(f"{current_caller()} on a tensor needs freqs=... (the bin frequencies).")
        f_axis = values.ndim - 1
    freqs = torch.as_tensor(freqs, dtype=torch.float64).detach().cpu().abs()
    if freqs.ndim != 1 or freqs.shape[0] != values.shape[f_axis]:
        raise ShapeError(
            f"{current_caller()}: {tuple(freqs.shape)} frequencies for a frequency axis of "
            f"{values.shape[f_axis]} bins."
        )
    uniq = torch.unique(freqs)
    resolution = float((uniq[1:] - uniq[:-1]).min()) if uniq.numel() > 1 else None
    if rate is None:  # a tensor without fs: the highest bin stands in for Nyquist
        nyq = float(freqs.max())
        if not nyq > 0:
            raise ShapeError(f"{current_caller()}: the bin frequencies are all 0; pass freqs= in Hz.")
        table = _resolve(bands, 2 * nyq, resolution)
        table = _clip(table, nyq, f"whose highest bin is {nyq:g} Hz (pass fs= for the exact Nyquist)")
    else:
        nyq = rate / 2
        table = _clip(_resolve(bands, rate, resolution), nyq, f"sampled at {rate:g} Hz")
    member = torch.stack(
        [(freqs >= lo) & ((freqs < hi) | (hi >= nyq)) for lo, hi in table.values()], 1
    )  # (F, n_bands)
    outside = ~member.any(1)
    names = list(table)
    if other and bool(outside.any()):
        member = torch.cat([member, outside[:, None]], 1)
        names.append(OTHER)
    a = values.detach().abs().movedim(f_axis, -1).reshape(-1, values.shape[f_axis]).sum(0).cpu()
    total = float(a.sum())
    share = float(a[outside].sum()) / total if total > 0 else 0.0
    if share > OUTSIDE_WARNING:
        warn(
            f"{current_caller()}: {100 * share:.0f}% of the absolute attribution lies outside every "
            f"band, at {_ranges(freqs[outside])}"
            + (" (reported as the 'other' entry)" if other else " (dropped: other=False)")
            + "; choose bands that cover it, e.g. bands='octave' or a band starting at 0 Hz."
        )
    weights = member.to(device=values.device, dtype=values.dtype)
    out = torch.tensordot(values.movedim(f_axis, -1), weights, dims=1).movedim(-1, f_axis)
    if not is_attr:
        return out
    info = dict(attribution.info)
    info.update(bands=table, band_names=names, outside_share=share)
    return dataclasses.replace(attribution, values=out, layout=layout.replace("f", "band"), info=info)
