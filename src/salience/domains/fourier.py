"""Frequency domains: Fourier (one-sided FFT with a real/imaginary axis), STFT, and band sums."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._validation import check_bool, check_float, check_input, check_int, check_option
from ..errors import DTypeError, NotFittedError, ParameterError, ShapeError
from ..layout import Layout, LayoutLike, as_layout
from .base import Domain

__all__ = ["Fourier", "STFT", "aggregate_bands", "EEG_BANDS"]

EEG_BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "beta": (12.0, 30.0),
    "gamma": (30.0, 100.0),
}
"""The classical EEG bands in Hz, half-open ``[low, high)``."""


def _drop(layout: Layout, name: str) -> Layout:
    return Layout(" ".join(n for n in layout.names if n != name))


def _edge_mask(n_bins: int, n: int, ref: torch.Tensor) -> torch.Tensor:
    """1 for bins whose imaginary part is meaningful, 0 for DC (and Nyquist when n is even)."""
    mask = torch.ones(n_bins, dtype=ref.dtype, device=ref.device)
    mask[0] = 0
    if n % 2 == 0:
        mask[-1] = 0
    return mask


#: dtypes torch.fft has no (CPU) kernels for: transformed in float32, returned in their dtype
_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(t: torch.Tensor, owner: str, name: str) -> torch.dtype:
    """The dtype ``owner`` computes its FFTs in for a tensor ``t`` (named ``name``).

    float32 and float64 as they are; float16 and bfloat16 in float32 (``torch.fft`` has no
    half-precision kernels on the CPU, and on CUDA only for power-of-two lengths; float32 is
    also more accurate), the result cast back to ``t``'s dtype by the caller. Anything else
    raises :class:`~salience.errors.DTypeError`.
    """
    if t.is_complex() or not t.is_floating_point():
        raise DTypeError(
            f"{owner} expects {name} to have a real floating-point dtype (float16/32/64, "
            f"bfloat16). Got {t.dtype} instead; cast with {name}.float()."
        )
    return torch.float32 if t.dtype in _HALF else t.dtype


def _complex(z: torch.Tensor, f_axis: int, n: int) -> torch.Tensor:
    """(..., F, ..., 2) real/imag pairs (r axis right after f) -> complex, DC/Nyquist imag zeroed."""
    zr = z.movedim(f_axis + 1, -1)
    view = [1] * (zr.ndim - 1)
    view[f_axis] = -1
    mask = _edge_mask(zr.shape[f_axis], n, zr).reshape(view)
    return torch.complex(zr[..., 0], zr[..., 1] * mask)


class Fourier(Domain):
    """The discrete Fourier transform along one axis, as real and imaginary parts.

    ``z = rfft(x)`` along ``axis`` (one-sided: bins ``k = 0 .. T // 2``), exposed as a real
    tensor with an extra axis ``r`` of size 2 (real, imaginary) right after the frequency axis
    ``f``: an input ``"b c t"`` gives ``z`` of layout ``"b c f r"`` and shape (B, C, T//2+1, 2).
    ``inverse`` is ``irfft(., n=T)``; the imaginary parts of the DC bin (and of the Nyquist bin
    for even T) do not exist for real signals: ``inverse`` ignores them, so gradient-based
    attributions there are exactly 0 and perturbing them changes nothing.

    Reported attributions (:meth:`reduce`) are one signed value per bin, the sum of the real
    and imaginary parts' attributions (not a magnitude), as in the reference implementation of
    Kechris et al. With ``output="full"`` they are spread over the full T-point FFT as that
    implementation reports them: bin ``k`` and bin ``T - k`` both get half of the one-sided
    value (DC and Nyquist unchanged), so ``A[k] == A[T-k]``; the sum over bins is the same in
    both forms.

    Zero coefficients are the zero signal, so IG's default zero baseline in this domain is the
    zero signal.

    ``float16`` and ``bfloat16`` signals are transformed in ``float32`` (``torch.fft`` has no
    half-precision CPU kernels); ``forward`` and ``inverse`` return their results in the
    dtype of their argument, so a half-precision model receives half-precision rows.

    Parameters
    ----------
    axis : str, default "t"
        Name of the transformed axis in the input layout.
    output : {"onesided", "full"}, default "onesided"
        Reporting form of :meth:`reduce` (``z`` is one-sided in both cases).
    norm : {"backward", "ortho", "forward"}, default "backward"
        ``torch.fft`` normalisation (``"backward"``: unscaled forward, as numpy and the
        reference implementation).
    fs : float, optional
        Sampling rate in Hz, for :meth:`coordinates`.
    n : int, optional
        Signal length; otherwise learned by :meth:`fit` / :meth:`bind` (``n_``).
    layout : str or Layout, optional
        Input layout (default: inferred, or the explainer's).

    References
    ----------
    Kechris, Dan & Atienza, "Time is Not Enough: Time-Frequency based Explanation for
    Time-Series Black-Box Models" / cross-domain saliency maps, arXiv 2505.13100.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 16, dtype=torch.float64)
    >>> d = Fourier().fit(x)
    >>> z = d.forward(x)
    >>> z.shape, bool(torch.allclose(d.inverse(z), x))
    (torch.Size([2, 3, 9, 2]), True)
    """

    exact = True
    affine = True

    def __init__(
        self,
        *,
        axis: str = "t",
        output: str = "onesided",
        norm: str = "backward",
        fs: float | None = None,
        n: int | None = None,
        layout: LayoutLike | None = None,
    ) -> None:
        super().__init__(layout=layout)
        owner = type(self).__name__
        if not isinstance(axis, str):
            raise ParameterError(f"The 'axis' parameter of {owner} must be an axis name such as 't'. Got {axis!r} instead.")
        self.axis = axis
        self.output = check_option(output, "output", owner, ("onesided", "full"))
        self.norm = check_option(norm, "norm", owner, ("backward", "ortho", "forward"))
        self.fs = None if fs is None else check_float(fs, "fs", owner, low=0.0, closed="neither")
        self.n = None if n is None else check_int(n, "n", owner, low=1)

    def __repr__(self) -> str:
        return f"Fourier(axis={self.axis!r}, output={self.output!r}, fs={self.fs})"

    def fit(self, x: torch.Tensor) -> Fourier:
        """Record the signal length ``n_`` (the transform itself has nothing to learn)."""
        x = check_input(x, self.name)
        self._bind(x)
        return self

    def _bind(self, x: torch.Tensor) -> None:
        n = int(x.shape[self._axis(x, self.axis)])
        if self.n is not None and n != self.n:
            # the inverse would return signals of n samples: another signal than x, explained
            # silently (the domain claims to be exact, so no residual corrects it)
            raise ShapeError(
                f"The 'n' parameter of Fourier is {self.n}, but x has {n} samples along axis "
                f"{self.axis!r}; pass n={n} or leave n=None to take the length from x."
            )
        self.n_ = n

    def _length(self) -> int:
        if self.n is not None:
            return self.n
        n = getattr(self, "n_", None)
        if n is None:
            raise NotFittedError(
                "Fourier needs the signal length to invert the one-sided spectrum: call "
                "fit(x) (or bind(x)) first, or pass n=... ."
            )
        return int(n)

    def _in_axis(self, ndim_in: int) -> int:
        layout = self.layout or Layout.infer(torch.empty((1,) * ndim_in))
        if self.axis not in layout.names:
            raise ShapeError(f"Fourier acts on the axis {self.axis!r}, which is not in {layout!r}.")
        return layout.axes(self.axis)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients (B, ..., F, 2, ...) in ``x``'s dtype (half inputs: computed in float32)."""
        x = check_input(x, self.name)
        a = self._axis(x, self.axis)
        work = _compute_dtype(x, "Fourier", "x")
        spec = torch.fft.rfft(x.to(work), dim=a, norm=self.norm)
        return torch.view_as_real(spec).movedim(-1, a + 1).to(x.dtype)

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The signal of ``z`` in ``z``'s dtype (half: computed in float32, differentiable)."""
        a = self._in_axis(z.ndim - 1)
        n = self._length()
        work = _compute_dtype(z, "Fourier", "z")
        return torch.fft.irfft(_complex(z.to(work), a, n), n=n, dim=a, norm=self.norm).to(z.dtype)

    def output_layout(self, layout: LayoutLike) -> Layout:
        return as_layout(layout).replace(self.axis, "f", "r")

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        if "r" not in layout.names:
            return values, layout
        values = values.sum(layout.axes("r")[0])
        layout = _drop(layout, "r")
        f = layout.axes("f")[0]
        if self.output == "full" and values.shape[f] > 1:  # size 1: shared by every bin
            n = self._length()
            k = torch.arange(n, device=values.device)
            idx = torch.minimum(k, n - k)
            scale = torch.full((n,), 0.5, dtype=values.dtype, device=values.device)
            scale[0] = 1.0
            if n % 2 == 0:
                scale[n // 2] = 1.0
            view = [1] * values.ndim
            view[f] = -1
            values = values.index_select(f, idx) * scale.reshape(view)
        return values, layout

    def expand(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        """Full-spectrum reports (``output="full"``) folded back onto the one-sided bins: bin k
        gets the values of k and T-k (the two halves :meth:`reduce` split it into)."""
        if self.output != "full" or "r" in layout.names or "f" not in layout.names:
            return values, layout
        f = layout.axes("f")[0]
        n = self._length()
        if values.shape[f] != n:
            return values, layout
        k = torch.arange(n, device=values.device)
        idx = torch.minimum(k, n - k)
        shape = list(values.shape)
        shape[f] = n // 2 + 1
        out = torch.zeros(shape, dtype=values.dtype, device=values.device)
        return out.index_add_(f, idx, values), layout

    def coordinates(self, fs: float | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Frequencies of the reported bins: ``k * fs / T`` in Hz (cycles per sample without fs).

        With ``output="full"`` bins above T/2 have negative frequencies (``fftfreq`` order).
        """
        fs = fs if fs is not None else self.fs
        d = 1.0 / fs if fs is not None else 1.0
        n = self._length()
        freqs = torch.fft.fftfreq(n, d=d) if self.output == "full" else torch.fft.rfftfreq(n, d=d)
        return {"f": freqs.to(torch.float64)}


def _window(window: Any, win_length: int, owner: str) -> torch.Tensor:
    if isinstance(window, torch.Tensor):
        if window.ndim != 1 or window.shape[0] != win_length:
            raise ParameterError(
                f"The 'window' parameter of {owner} must be a 1-D tensor of length win_length="
                f"{win_length}. Got shape {tuple(window.shape)} instead."
            )
        return window.detach().to(torch.float64)
    name = check_option(window, "window", owner, ("hann", "hamming", "blackman", "boxcar"))
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
        owner = type(self).__name__
        self.n_fft = check_int(n_fft, "n_fft", owner, low=2)
        self.hop_length = self.n_fft // 4 if hop_length is None else check_int(hop_length, "hop_length", owner, low=1)
        self.hop_length = max(1, self.hop_length)
        self.win_length = self.n_fft if win_length is None else check_int(win_length, "win_length", owner, low=1, high=self.n_fft)
        self.window = _window(window, self.win_length, owner)
        self._window_name = window if isinstance(window, str) else None
        self.center = check_bool(center, "center", owner)
        self.pad_mode = check_option(pad_mode, "pad_mode", owner, ("reflect", "constant", "replicate", "circular"))
        self.normalized = check_bool(normalized, "normalized", owner)
        self.axis = axis
        self.fs = None if fs is None else check_float(fs, "fs", owner, low=0.0, closed="neither")

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
            raise ShapeError(f"STFT with center=False needs signals of at least n_fft={self.n_fft} samples; got {n}.")
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
        hops = [h for h in range(self.hop_length - 1, 0, -1) if _nola_ok(n, self.n_fft, h, self.window, self.center)]
        if hops:
            smaller = " (or smaller)" if len(hops) == hops[0] else ""  # every hop below passes too
            fixes.append(f"hop_length={hops[0]}{smaller} instead of {self.hop_length}")
        reflect_ok = self.pad_mode != "reflect" or n > self.n_fft // 2
        if not self.center and reflect_ok and _nola_ok(n, self.n_fft, self.hop_length, self.window, True):
            fixes.append("center=True (frames centred on the samples, covering both ends)")
        ends_zero = bool(self.window[0].abs() < 1e-11 or self.window[-1].abs() < 1e-11)
        if ends_zero:
            for name in ("hamming", "boxcar"):
                w = _window(name, self.win_length, "STFT")
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
            moved.reshape(-1, moved.shape[-1]), pad_mode=self.pad_mode, return_complex=True, **self._kwargs(moved)
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


BandsLike = str | Mapping[str, Sequence[float]] | Sequence[float]


def _bands(bands: BandsLike) -> dict[str, tuple[float, float]]:
    if isinstance(bands, str):
        if bands.lower() != "eeg":
            raise ParameterError(f"The 'bands' parameter of aggregate_bands must be 'eeg', a dict name -> (low, high) or a list of edges. Got {bands!r} instead.")
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
        raise ParameterError(f"Band edges must be at least two increasing numbers. Got {list(bands)!r} instead.")
    return {f"{a:g}-{b:g}": (a, b) for a, b in zip(edges, edges[1:], strict=False)}


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
        raise ParameterError(f"aggregate_bands expects an Attribution or a Tensor. Got {type(attribution).__name__}.")
    if is_attr:
        layout = attribution.layout
        if "r" in layout.names:
            values, layout = values.sum(layout.axes("r")[0]), _drop(layout, "r")
        if "f" not in layout.names:
            raise ShapeError(f"aggregate_bands needs a frequency axis 'f'; the attribution has layout {layout!r}.")
        f_axis = layout.axes("f")[0]
        if freqs is None:
            dom = attribution.domain
            if dom is None:
                raise ParameterError("aggregate_bands: the attribution has no domain; pass freqs=... .")
            outer = dom
            while hasattr(outer, "second"):  # Compose: the reported units are the outer domain's
                outer = outer.second
            if fs is None and getattr(outer, "fs", None) is None:
                raise ParameterError(
                    "aggregate_bands: the domain was built without fs; pass fs=... (the sampling "
                    "rate in Hz) so bins can be placed in bands."
                )
            freqs = dom.coordinates(fs=fs).get("f")
            if freqs is None:
                raise ParameterError(f"aggregate_bands: the domain {dom!r} has no frequency coordinates.")
    else:
        if freqs is None:
            raise ParameterError("aggregate_bands on a tensor needs freqs=... (the bin frequencies).")
        f_axis = values.ndim - 1
    freqs = torch.as_tensor(freqs, dtype=torch.float64).abs()
    if freqs.shape[0] != values.shape[f_axis]:
        raise ShapeError(
            f"aggregate_bands: {freqs.shape[0]} frequencies for a frequency axis of {values.shape[f_axis]} bins."
        )
    membership = torch.stack([((freqs >= lo) & (freqs < hi)) for lo, hi in table.values()], 1)
    membership = membership.to(device=values.device, dtype=values.dtype)  # (F, n_bands)
    out = torch.tensordot(values.movedim(f_axis, -1), membership, dims=1).movedim(-1, f_axis)
    if not is_attr:
        return out
    info = dict(attribution.info)
    info["bands"] = table
    return dataclasses.replace(attribution, values=out, layout=layout.replace("f", "band"), info=info)

