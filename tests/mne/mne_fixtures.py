"""MNE objects built in the tests (no downloads): EpochsArray on a 10-20 montage, a fitted ICA."""

from __future__ import annotations

import importlib
import inspect
import warnings

import numpy as np
import pytest
import torch
from torch import nn


def need_mne():
    """Import MNE-Python or skip the module (a folder named mne on sys.path is not MNE)."""
    try:
        mne = importlib.import_module("mne")
    except ImportError as error:
        pytest.skip(f"mne is not installed ({error})", allow_module_level=True)
    if getattr(mne, "__file__", None) is None or not hasattr(mne, "EpochsArray"):
        pytest.skip("mne is not installed (only a namespace folder named mne)", allow_module_level=True)
    return mne


mne = need_mne()

NAMES = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]
SFREQ = 100.0
MONTAGE = next(
    (m for m in ("colin27_1020", "standard_1020") if m in mne.channels.get_builtin_montages()),
    "standard_1020",
)


def hook_wired() -> bool:
    """Whether Explainer.explain takes MNE objects and names (the engine hook of issue #16)."""
    import salience as sl

    return "channel_names" in inspect.signature(sl.Explainer.explain).parameters


def sources(n: int, t: int, seed: int = 0) -> np.ndarray:
    """Non-Gaussian sources (n, t): FastICA separates them."""
    rng = np.random.default_rng(seed)
    time = np.arange(t) / SFREQ
    base = [
        np.sign(np.sin(2 * np.pi * 3 * time)),
        np.sin(2 * np.pi * 10 * time),
        ((time * 7) % 1) - 0.5,
    ]
    out = [base[i % 3] * (1 + 0.3 * i) + 0.2 * rng.laplace(size=t) for i in range(n)]
    return np.asarray(out)


def epochs(n_epochs: int = 8, times: int = 200, seed: int = 0, stim: bool = False, montage: bool = True):
    """EpochsArray (volts, ~10 uV) of mixed non-Gaussian sources, classes 'left'/'right' by event code."""
    rng = np.random.default_rng(seed)
    c = len(NAMES)
    mixing = rng.standard_normal((c, c))
    data = np.stack([mixing @ sources(c, times, seed + i) for i in range(n_epochs)]) * 1e-5
    names, types = list(NAMES), ["eeg"] * c
    if stim:
        data = np.concatenate([data, np.zeros((n_epochs, 1, times))], 1)
        names, types = names + ["STI"], types + ["stim"]
    info = mne.create_info(names, SFREQ, types)
    codes = np.where(np.arange(n_epochs) % 2 == 0, 7, 3)  # 'right' has the smaller code
    events = np.column_stack([np.arange(n_epochs) * times, np.zeros(n_epochs, int), codes])
    ep = mne.EpochsArray(
        data, info, events=events, event_id={"left": 7, "right": 3}, tmin=-0.5, verbose="error"
    )
    if montage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ep.set_montage(MONTAGE)
    return ep


def fitted_ica(ep, n_components: int | None = None, **kw):
    """mne.preprocessing.ICA fitted with a fixed seed (FastICA)."""
    params = inspect.signature(mne.preprocessing.ICA).parameters
    seed = {"rng": 0} if "rng" in params else {"random_state": 0}
    ica = mne.preprocessing.ICA(n_components=n_components, max_iter=2000, **seed, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ica.fit(ep, verbose="error")
    return ica


def model(n_channels: int = len(NAMES), n_classes: int = 2, scale: float = 1e5) -> nn.Module:
    """A tiny float64 CNN for signals in volts (scaled to order 1 inside)."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(n_channels, 6, 7, padding=3)
            self.head = nn.Linear(6, n_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.conv(x * scale))
            return self.head(h.mean(-1))

    return Net().double().eval()
