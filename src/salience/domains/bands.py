"""Band sums: per-bin frequency attributions summed into named bands (EEG bands by default)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import ParameterError, ShapeError, caller, current_caller
from ._spectral import _drop

__all__ = ["aggregate_bands", "EEG_BANDS"]

EEG_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "beta": (12.0, 30.0),
    "gamma": (30.0, 100.0),
}
"""The classical EEG bands in Hz, half-open ``[low, high)``."""


BandsLike = str | Mapping[str, Sequence[float]] | Sequence[float]


def _bands(bands: BandsLike) -> dict[str, tuple[float, float]]:
    if isinstance(bands, str):
        if bands.lower() != "eeg":
            raise ParameterError(
                f"The 'bands' parameter of {current_caller()} must be 'eeg', a dict name -> (low, high) or a list of edges. Got {bands!r} instead."
            )
        return dict(EEG_BANDS)
    if isinstance(bands, Mapping):
        out = {}
        for k, v in bands.items():
            lo, hi = (float(e) for e in v)
            if not lo < hi:
                raise ParameterError(f"Band {k!r} must have low < high. Got ({lo}, {hi}).")
            out[str(k)] = (lo, hi)
        return out
    edges = [float(e) for e in bands]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ParameterError(
            f"Band edges must be at least two increasing numbers. Got {list(bands)!r} instead."
        )
    return {f"{a:g}-{b:g}": (a, b) for a, b in zip(edges, edges[1:], strict=False)}


@caller("aggregate_bands")
def aggregate_bands(
    attribution: Any,
    bands: BandsLike = "eeg",
    *,
    fs: float | None = None,
    freqs: torch.Tensor | None = None,
) -> Any:
    """Sum per-bin frequency attributions into named bands.

    Bin ``k`` with frequency ``f_k`` (Hz) belongs to band ``[low, high)`` when
    ``low <= |f_k| < high`` (half-open: a bin exactly on an edge goes to the upper band; the
    reference notebook's slice also drops the last bin below ``high``, which we do not). Bins
    outside every band are left out. With ``Fourier(output="full")`` attributions the negative
    frequencies fold onto the positive ones through ``|f_k|``, so both output forms give the
    same band sums.

    Parameters
    ----------
    attribution : Attribution or Tensor
        Per-bin attributions with a frequency axis ``f`` (e.g. from ``FourierIG``, or from
        ``InDomain(..., Compose(ICA(...), Fourier()))``). A raw tensor needs ``freqs`` and has
        the frequency axis last.
    bands : "eeg", dict name -> (low, high), or increasing edges, default "eeg"
        ``"eeg"``: delta 0.5-4, theta 4-8, alpha 8-12, beta 12-30, gamma 30-100 Hz.
    fs : float, optional
        Sampling rate, if the domain was built without ``fs``.
    freqs : Tensor of shape (F,), optional
        Bin frequencies (overrides the domain's coordinates).

    Returns
    -------
    Attribution or Tensor
        The frequency axis replaced by ``band`` (one value per band, in the order given);
        an Attribution records the band names and edges in ``info["bands"]``.
    """
    table = _bands(bands)
    from ..attribution import Attribution

    is_attr = isinstance(attribution, Attribution)
    values = attribution.values if is_attr else attribution
    if not isinstance(values, torch.Tensor):
        raise ParameterError(
            f"{current_caller()} expects an Attribution or a Tensor. Got {type(attribution).__name__}."
        )
    if is_attr:
        layout = attribution.layout
        if "r" in layout.names:
            values, layout = values.sum(layout.axes("r")[0]), _drop(layout, "r")
        if "f" not in layout.names:
            raise ShapeError(
                f"{current_caller()} needs a frequency axis 'f'; the attribution has layout {layout!r}."
            )
        f_axis = layout.axes("f")[0]
        if freqs is None:
            dom = attribution.domain
            if dom is None:
                raise ParameterError(f"{current_caller()}: the attribution has no domain; pass freqs=... .")
            outer = dom
            while hasattr(outer, "second"):  # Compose: the reported units are the outer domain's
                outer = outer.second
            if fs is None and getattr(outer, "fs", None) is None:
                raise ParameterError(
                    f"{current_caller()}: the domain was built without fs; pass fs=... (the sampling "
                    "rate in Hz) so bins can be placed in bands."
                )
            freqs = dom.coordinates(fs=fs).get("f")
            if freqs is None:
                raise ParameterError(f"{current_caller()}: the domain {dom!r} has no frequency coordinates.")
    else:
        if freqs is None:
            raise ParameterError(f"{current_caller()} on a tensor needs freqs=... (the bin frequencies).")
        f_axis = values.ndim - 1
    freqs = torch.as_tensor(freqs, dtype=torch.float64).abs()
    if freqs.shape[0] != values.shape[f_axis]:
        raise ShapeError(
            f"{current_caller()}: {freqs.shape[0]} frequencies for a frequency axis of {values.shape[f_axis]} bins."
        )
    membership = torch.stack([((freqs >= lo) & (freqs < hi)) for lo, hi in table.values()], 1)
    membership = membership.to(device=values.device, dtype=values.dtype)  # (F, n_bands)
    out = torch.tensordot(values.movedim(f_axis, -1), membership, dims=1).movedim(-1, f_axis)
    if not is_attr:
        return out
    info = dict(attribution.info)
    info["bands"] = table
    return dataclasses.replace(attribution, values=out, layout=layout.replace("f", "band"), info=info)
