"""``salience explain --bands``: frequency-bin attributions summed into named bands."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ._io import CLIError

#: --domain values whose attributions have a frequency axis 'f'
BAND_DOMAINS = ("fourier", "stft")

HELP = (
    "sum frequency bins into bands (--domain fourier or stft, needs --fs): a preset "
    "(octave, linear, linear:N, eeg) or a spec such as low:0-4,mid:4-12,high:12-50 (Hz)"
)


def check_bands(text: str | None, domain: str, fs: float | None) -> None:
    """Refuse a ``--bands`` that cannot apply, before the model runs (spec, domain, Nyquist)."""
    if text is None:
        return
    from ..domains.bands import resolve_bands

    if domain.lower() not in BAND_DOMAINS:
        raise CLIError(
            f"--bands applies to frequency bins (--domain {' or '.join(BAND_DOMAINS)}), not --domain {domain}."
        )
    if fs is None:
        raise CLIError(
            "--bands needs the sampling rate to place bins in bands: give --fs (or an 'fs' array in the .npz)."
        )
    try:
        resolve_bands(text, fs)
    except ParameterError as exc:
        raise CLIError(f"--bands {text!r}: {exc}") from exc


def band_outputs(
    text: str, attribution: Any, fs: float
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The band sums for the .npz (``bands``, ``band_names``, ``band_edges``) and report rows.

    A row per band (``"other"``: the bins outside every band): its edges in Hz and the mean
    over samples of the band's sum over channels (and STFT frames).
    """
    from ..domains.bands import aggregate_bands

    banded = aggregate_bands(attribution, text, fs=fs)
    names, table = list(banded.info["band_names"]), banded.info["bands"]
    values = banded.values.detach().cpu()
    axis = banded.layout.axes("band")[0]
    per_band = values.movedim(axis, -1).reshape(values.shape[0], -1, len(names)).sum(1).mean(0)
    edges = np.array([table.get(n, (np.nan, np.nan)) for n in names], dtype=float)
    save = {"bands": values.numpy(), "band_names": np.array(names), "band_edges": edges}
    rows = [
        {
            "band": n,
            "Hz": f"{table[n][0]:g}-{table[n][1]:g}" if n in table else "outside every band",
            "mean attribution": float(v),
        }
        for n, v in zip(names, per_band.tolist(), strict=True)
    ]
    return save, rows
