"""The Fourier domain: the one-sided FFT along one axis, with a real/imaginary axis.

:class:`~salience.domains.STFT` (:mod:`salience.domains.stft`) and
:func:`~salience.domains.aggregate_bands` (:mod:`salience.domains.bands`) are importable from
here too.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_float, check_input, check_int, check_option
from ..errors import NotFittedError, ParameterError, ShapeError
from ..layout import Layout, LayoutLike, as_layout
from ._spectral import _complex, _compute_dtype, _drop
from .bands import EEG_BANDS, aggregate_bands
from .base import Domain
from .stft import STFT

__all__ = ["Fourier", "STFT", "aggregate_bands", "EEG_BANDS"]


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
        if not isinstance(axis, str):
            raise ParameterError(
                f"The 'axis' parameter of {self.name} must be an axis name such as 't'. Got {axis!r} instead."
            )
        self.axis = axis
        self.output = check_option(output, "output", options=("onesided", "full"))
        self.norm = check_option(norm, "norm", options=("backward", "ortho", "forward"))
        self.fs = None if fs is None else check_float(fs, "fs", low=0.0, closed="neither")
        self.n = None if n is None else check_int(n, "n", low=1)

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
