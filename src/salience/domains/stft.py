"""The short-time Fourier transform domain, and the NOLA check of its window."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_bool, check_float, check_input, check_int, check_option
from ..errors import NotFittedError, ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike, as_layout
from ._spectral import _compute_dtype, _drop, _edge_mask
from .base import Domain

__all__ = ["STFT"]


def _window(window: Any, win_length: int) -> torch.Tensor:
    if isinstance(window, torch.Tensor):
        if window.ndim != 1 or window.shape[0] != win_length:
            raise ParameterError(
                f"The 'window' parameter of {current_caller()} must be a 1-D tensor of length win_length="
                f"{win_length}. Got shape {tuple(window.shape)} instead."
            )
        return window.detach().to(torch.float64)
    name = check_option(window, "window", options=("hann", "hamming", "blackman", "boxcar"))
    if name == "boxcar":
        return torch.ones(win_length, dtype=torch.float64)
    fn = {"hann": torch.hann_window, "hamming": torch.hamming_window, "blackman": torch.blackman_window}[name]
    return fn(win_length, periodic=True, dtype=torch.float64)


def _nola_ok(n: int, n_fft: int, hop: int, window: torch.Tensor, center: bool) -> bool:
    """Whether the squared window's overlap-add is non-zero on every one of the ``n`` samples
    (the NOLA condition ``torch.istft`` needs), for the given hop and centring."""
    if center:
        frames = 1 + n // hop
    elif n < n_fft:
        return False  # not a single frame fits (STFT._n_frames raises a ShapeError)
    else:
        frames = 1 + (n - n_fft) // hop
    w = torch.zeros(n_fft, dtype=torch.float64)
    left = (n_fft - window.shape[0]) // 2
    w[left : left + window.shape[0]] = window.to(torch.float64)
    total = n_fft + hop * (frames - 1)
    idx = (torch.arange(frames)[:, None] * hop + torch.arange(n_fft)[None, :]).reshape(-1)
    env = torch.zeros(total, dtype=torch.float64).index_add_(0, idx, (w * w).repeat(frames))
    start = n_fft // 2 if center else 0
    region = env[start : start + n]
    return region.numel() >= n and not bool((region.abs() < 1e-11).any())


class STFT(Domain):
    """The short-time Fourier transform (``torch.stft``/``torch.istft``) along one axis.

    ``z`` has the transformed axis replaced by ``f`` (bins ``0 .. n_fft // 2``), ``frame`` and
    ``r`` (real, imaginary): an input ``"b c t"`` gives ``"b c f frame r"``. The inverse is
    ``istft(., length=T)``, exact whenever the window satisfies the NOLA condition (non-zero
    overlap-add of the squared window over the whole signal), which is checked when the domain
    is bound to a signal length: a window that fails it raises ``ParameterError``.

    The ``z`` space is redundant (more coefficients than samples): ``inverse`` projects any
    ``z`` onto consistent spectrograms, so perturbations in ``z`` are projected too. Reported
    attributions sum the real and imaginary parts: (B, C, F, frames).

    As for :class:`Fourier`, ``float16`` and ``bfloat16`` signals are transformed in
    ``float32`` and the results returned in the dtype of the argument. A window failing NOLA
    raises ``ParameterError`` naming the changes of ``hop_length``, ``center`` or ``window``
    that would satisfy it.

    Parameters
    ----------
    n_fft : int, default 64
    hop_length : int, optional
        Default ``n_fft // 4``.
    win_length : int, optional
        Default ``n_fft``.
    window : {"hann", "hamming", "blackman", "boxcar"} or Tensor, default "hann"
        The reference implementation uses a rectangular (``"boxcar"``) window.
    center : bool, default True
        Pad the signal by ``n_fft // 2`` on both sides (``pad_mode``) so frames are centred.
    pad_mode : str, default "reflect"
    normalized : bool, default False
    axis : str, default "t"
    fs : float, optional
        Sampling rate in Hz, for :meth:`coordinates`.
    layout : str or Layout, optional

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 64, dtype=torch.float64)
    >>> d = STFT(n_fft=16, hop_length=4).fit(x)
    >>> z = d.forward(x)
    >>> z.shape, bool(torch.allclose(d.inverse(z), x))
    (torch.Size([2, 3, 9, 17, 2]), True)
    """

    exact = True
    affine = True

    def __init__(
        self,
        *,
        n_fft: int = 64,
        hop_length: int | None = None,
        win_length: int | None = None,
        window: str | torch.Tensor = "hann",
        center: bool = True,
        pad_mode: str = "reflect",
        normalized: bool = False,
        axis: str = "t",
        fs: float | None = None,
        layout: LayoutLike | None = None,
    ) -> None:
        super().__init__(layout=layout)
        self.n_fft = check_int(n_fft, "n_fft", low=2)
        self.hop_length = (
            self.n_fft // 4 if hop_length is None else check_int(hop_length, "hop_length", low=1)
        )
        self.hop_length = max(1, self.hop_length)
        self.win_length = (
            self.n_fft if win_length is None else check_int(win_length, "win_length", low=1, high=self.n_fft)
        )
        self.window = _window(window, self.win_length)
        self._window_name = window if isinstance(window, str) else None
        self.center = check_bool(center, "center")
        self.pad_mode = check_option(
            pad_mode, "pad_mode", options=("reflect", "constant", "replicate", "circular")
        )
        self.normalized = check_bool(normalized, "normalized")
        self.axis = axis
        self.fs = None if fs is None else check_float(fs, "fs", low=0.0, closed="neither")

    def __repr__(self) -> str:
        return f"STFT(n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, center={self.center})"

    def fit(self, x: torch.Tensor) -> STFT:
        """Record the signal length ``n_`` and check the NOLA condition for it."""
        x = check_input(x, self.name)
        self._bind(x)
        return self

    def _bind(self, x: torch.Tensor) -> None:
        n = int(x.shape[self._axis(x, self.axis)])
        self._check_nola(n)
        self.n_ = n

    def _n_frames(self, n: int) -> int:
        if self.center:
            return 1 + n // self.hop_length
        if n < self.n_fft:
            raise ShapeError(
                f"STFT with center=False needs signals of at least n_fft={self.n_fft} samples; got {n}."
            )
        return 1 + (n - self.n_fft) // self.hop_length

    def _check_nola(self, n: int) -> None:
        if self.center and self.pad_mode == "reflect" and n <= self.n_fft // 2:
            raise ShapeError(
                f"STFT with center=True and reflect padding needs signals longer than n_fft // 2 = "
                f"{self.n_fft // 2} samples; got {n}."
            )
        self._n_frames(n)  # ShapeError when not a single frame fits
        if _nola_ok(n, self.n_fft, self.hop_length, self.window, self.center):
            return
        name = self._window_name
        window = f"{name!r}" if name is not None else "a custom tensor"
        raise ParameterError(
            f"The STFT window fails the NOLA condition for signals of {n} samples (n_fft="
            f"{self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
            f"window={window}, center={self.center}): some samples are covered by no window "
            f"weight, so the inverse does not exist. {self._nola_remedy(n)}"
        )

    def _nola_remedy(self, n: int) -> str:
        """What to change so that the NOLA condition holds for ``n`` samples, from the settings
        that actually pass it (each change tried on its own, the others kept)."""
        fixes = []
        hops = [
            h
            for h in range(self.hop_length - 1, 0, -1)
            if _nola_ok(n, self.n_fft, h, self.window, self.center)
        ]
        if hops:
            smaller = " (or smaller)" if len(hops) == hops[0] else ""  # every hop below passes too
            fixes.append(f"hop_length={hops[0]}{smaller} instead of {self.hop_length}")
        reflect_ok = self.pad_mode != "reflect" or n > self.n_fft // 2
        if not self.center and reflect_ok and _nola_ok(n, self.n_fft, self.hop_length, self.window, True):
            fixes.append("center=True (frames centred on the samples, covering both ends)")
        ends_zero = bool(self.window[0].abs() < 1e-11 or self.window[-1].abs() < 1e-11)
        if ends_zero:
            for name in ("hamming", "boxcar"):
                w = _window(name, self.win_length)
                if name != self._window_name and _nola_ok(n, self.n_fft, self.hop_length, w, self.center):
                    fixes.append(f"window={name!r} (no zeros at its ends)")
                    break
        if not fixes:
            return (
                "No single change of hop_length, center or window fixes it; use a smaller "
                "hop_length together with a window without zeros at its ends, or a larger "
                "win_length."
            )
        return "Use " + "; or ".join(fixes) + "."

    def _length(self) -> int:
        n = getattr(self, "n_", None)
        if n is None:
            raise NotFittedError("STFT needs the signal length to invert: call fit(x) (or bind(x)) first.")
        return int(n)

    def _kwargs(self, ref: torch.Tensor) -> dict[str, Any]:
        real = ref.real if ref.is_complex() else ref
        return dict(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(device=ref.device, dtype=real.dtype),
            center=self.center,
            normalized=self.normalized,
            onesided=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients in ``x``'s dtype (float16/bfloat16 inputs: computed in float32)."""
        x = check_input(x, self.name)
        a = self._axis(x, self.axis)
        moved = x.to(_compute_dtype(x, "STFT", "x")).movedim(a, -1)
        lead = moved.shape[:-1]
        spec = torch.stft(
            moved.reshape(-1, moved.shape[-1]),
            pad_mode=self.pad_mode,
            return_complex=True,
            **self._kwargs(moved),
        )
        z = torch.view_as_real(spec).reshape(*lead, *spec.shape[1:], 2)  # (..., F, frames, 2)
        return z.movedim((-3, -2, -1), (a, a + 1, a + 2)).to(x.dtype)

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        layout = self.layout or Layout.infer(torch.empty((1,) * (z.ndim - 2)))
        a = layout.axes(self.axis)[0]
        n = self._length()
        moved = z.to(_compute_dtype(z, "STFT", "z")).movedim((a, a + 1, a + 2), (-3, -2, -1))
        lead = moved.shape[:-3]
        flat = moved.reshape(-1, *moved.shape[-3:])
        mask = _edge_mask(flat.shape[1], self.n_fft, flat).reshape(1, -1, 1)
        spec = torch.complex(flat[..., 0], flat[..., 1] * mask)
        out = torch.istft(spec, length=n, return_complex=False, **self._kwargs(flat))
        return out.reshape(*lead, n).movedim(-1, a).to(z.dtype)

    def output_layout(self, layout: LayoutLike) -> Layout:
        return as_layout(layout).replace(self.axis, "f", "frame", "r")

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        if "r" not in layout.names:
            return values, layout
        return values.sum(layout.axes("r")[0]), _drop(layout, "r")

    def coordinates(self, fs: float | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Bin frequencies ``k * fs / n_fft`` and frame centre times (seconds; samples without fs)."""
        fs = fs if fs is not None else self.fs
        d = 1.0 / fs if fs is not None else 1.0
        frames = torch.arange(self._n_frames(self._length()), dtype=torch.float64) * self.hop_length
        if not self.center:
            frames = frames + self.n_fft / 2
        return {"f": torch.fft.rfftfreq(self.n_fft, d=d).to(torch.float64), "frame": frames * d}
