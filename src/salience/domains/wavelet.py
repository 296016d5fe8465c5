"""Multi-level orthonormal discrete wavelet transform (Haar, Daubechies, and PyWavelets' orthogonal
families) with periodic extension, coefficient for coefficient PyWavelets' ``mode="periodization"``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from math import comb
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_input, check_int, check_option
from ..errors import NotFittedError, ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike, as_layout
from .base import Domain

__all__ = ["Wavelet", "daubechies"]


def daubechies(order: int) -> np.ndarray:
    """Low-pass filter of the Daubechies wavelet with ``order`` vanishing moments (2*order taps).

    Computed by spectral factorisation (minimum phase); ``order=1`` is Haar. The taps sum to
    sqrt(2) and are orthonormal to their even shifts.
    """
    n = int(order)
    p = [comb(n - 1 + k, k) for k in range(n)]  # P(y) = sum_k C(n-1+k, k) y^k
    zeros = []
    for y in np.roots(p[::-1]) if n > 1 else []:
        r = np.roots([1.0, -(2.0 - 4.0 * y), 1.0])  # z + 1/z = 2 - 4y
        zeros.append(r[np.argmin(np.abs(r))])
    poly = np.array([1.0 + 0j])
    for _ in range(n):
        poly = np.convolve(poly, [1.0, 1.0])
    for z in zeros:
        poly = np.convolve(poly, [1.0, -z])
    h = np.real(poly)
    return h / h.sum() * np.sqrt(2.0)


def _pywt_lowpass(name: str) -> np.ndarray:
    """``rec_lo`` of the orthogonal wavelet ``name`` of PyWavelets (optional dependency)."""
    try:
        pywt: Any = importlib.import_module("pywt")  # optional, untyped
    except ImportError:
        raise ParameterError(
            f"The 'wavelet' parameter of {current_caller()} is {name!r}: 'haar' and 'db1'..'db20' are "
            "built in; other orthogonal wavelets ('symN', 'coifN', 'dbN' above 20) are read from "
            "PyWavelets, which is not installed (pip install PyWavelets)."
        ) from None
    try:
        w = pywt.Wavelet(name)
    except ValueError:
        w = None
    if w is None or not w.orthogonal:
        raise ParameterError(
            f"The 'wavelet' parameter of {current_caller()} must name an orthogonal discrete wavelet "
            f"('haar', 'dbN', 'symN', 'coifN'). Got {name!r} instead."
        )
    return _checked(np.asarray(w.rec_lo, dtype=np.float64), name)


def _checked(h: np.ndarray, what: str = "taps") -> np.ndarray:
    """``h`` if it has an even number of taps orthonormal to their even shifts (to 1e-8)."""
    ok = h.size >= 2 and h.size % 2 == 0
    if ok:
        shifts = [float(np.dot(h[: h.size - 2 * m], h[2 * m :])) for m in range(h.size // 2)]
        ok = abs(shifts[0] - 1) < 1e-8 and all(abs(s) < 1e-8 for s in shifts[1:])
    if not ok:
        raise ParameterError(
            f"The 'wavelet' parameter of {current_caller()} must give an even number of orthonormal "
            f"low-pass taps (unit norm, orthogonal to their even shifts, to 1e-8); {what} does not "
            "(PyWavelets' 'dmey' is an FIR approximation, orthonormal only to about 2e-3)."
        )
    return h


def _lowpass(wavelet: Any) -> np.ndarray:
    """The low-pass taps ``h`` in PyWavelets' ``rec_lo`` order (``dec_lo`` reversed)."""
    if isinstance(wavelet, str):
        name = wavelet.lower()
        if name == "haar":
            return daubechies(1)
        if name.startswith("db") and name[2:].isdigit() and 1 <= int(name[2:]) <= 20:
            return daubechies(int(name[2:]))
        return _pywt_lowpass(name)
    if getattr(wavelet, "orthogonal", True) is False:
        raise ParameterError(
            f"The 'wavelet' parameter of {current_caller()} must be an orthogonal wavelet; "
            f"{getattr(wavelet, 'name', type(wavelet).__name__)!r} is not (biorthogonal wavelets are "
            "not supported)."
        )
    if hasattr(wavelet, "rec_lo"):
        taps = wavelet.rec_lo
    elif hasattr(wavelet, "dec_lo"):
        taps = np.asarray(wavelet.dec_lo, dtype=np.float64)[::-1]
    else:
        taps = wavelet
    return _checked(
        np.asarray(taps, dtype=np.float64).reshape(-1), repr(getattr(wavelet, "name", "the taps"))
    )


class Wavelet(Domain):
    """Multi-level orthonormal DWT along one axis, with periodic extension.

    The signal is first extended to a multiple of ``2**levels`` samples by wrapping it
    (circular padding on the right, as the reference implementation does); each level splits
    its input into approximation ``a[n] = sum_k h[k] x[2n+k-s]`` and detail
    ``d[n] = sum_k g[k] x[2n+k-s]`` (indices modulo the length, ``s = L/2 - 1`` for ``L`` taps,
    ``h`` PyWavelets' ``rec_lo``, ``g[k] = (-1)^k h[L-1-k]`` its ``rec_hi``). These are exactly
    PyWavelets' ``wavedec(x, wavelet, mode="periodization", level=levels)`` coefficients for a
    length that is a multiple of ``2**levels`` (for other lengths: of the wrapped signal), with
    the bands in the order below; ``inverse`` is ``waverec``. The transform is orthonormal, so
    ``inverse`` is its transpose (transposed convolutions) followed by cropping the padding:
    exact, differentiable, torch only.

    One convention for every way of naming a wavelet: ``Wavelet("db2")``,
    ``Wavelet(pywt.Wavelet("db2"))`` (its ``rec_lo``; an object with only ``dec_lo`` is read
    reversed) and ``Wavelet(pywt.Wavelet("db2").rec_lo)`` are the same transform. ``"haar"``
    and ``"db1"``..``"db20"`` are computed here (:func:`daubechies`, equal to PyWavelets'
    tables to 1e-12); other orthogonal names (``"symN"``, ``"coifN"``, ``"dbN"`` above 20) are
    read from PyWavelets when it is installed. Biorthogonal wavelets are refused.

    ``z`` concatenates the bands along a coefficient axis ``coef`` in the reference band order
    ``[A_L, D_1, D_2, ..., D_L]`` (``D_1`` the finest): ``"b c t"`` becomes ``"b c coef"``.
    Reported attributions (``per="band"``) are one score per band, (B, C, levels + 1), layout
    ``"b c band"``; ``per="coefficient"`` keeps every coefficient. Zero coefficients are the
    zero signal.

    ``wavelet`` is the one positional parameter (``Wavelet("db2")``, as in PyWavelets); every
    other parameter is keyword-only.

    Parameters
    ----------
    wavelet : str, sequence of floats, or ``pywt.Wavelet``, default "haar"
        A name (``"haar"``, ``"dbN"``, ``"symN"``, ``"coifN"``), the low-pass taps in
        PyWavelets' ``rec_lo`` order, or an object with ``rec_lo`` (or ``dec_lo``).
    levels : int, default 3
    per : {"band", "coefficient"}, default "band"
    axis : str, default "t"
    layout : str or Layout, optional

    References
    ----------
    Mallat, "A theory for multiresolution signal decomposition", 1989; Daubechies, "Ten
    Lectures on Wavelets", 1992.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 30, dtype=torch.float64)
    >>> d = Wavelet("db2", levels=2).fit(x)
    >>> z = d.forward(x)
    >>> z.shape, bool(torch.allclose(d.inverse(z), x))
    (torch.Size([2, 3, 32]), True)
    """

    exact = True
    affine = True

    def __init__(
        self,
        wavelet: str | Sequence[float] | Any = "haar",
        *,
        levels: int = 3,
        per: str = "band",
        axis: str = "t",
        layout: LayoutLike | None = None,
    ) -> None:
        super().__init__(layout=layout)
        self.wavelet = wavelet
        self.h = _lowpass(wavelet)
        k = np.arange(self.h.size)
        self.g = ((-1.0) ** k) * self.h[::-1]
        self.levels = check_int(levels, "levels", low=1)
        self.per = check_option(per, "per", options=("band", "coefficient"))
        self.axis = axis

    def __repr__(self) -> str:
        name = self.wavelet if isinstance(self.wavelet, str) else f"{self.h.size} taps"
        return f"Wavelet({name!r}, levels={self.levels}, per={self.per!r})"

    def fit(self, x: torch.Tensor) -> Wavelet:
        """Record the signal length ``n_`` and check that ``levels`` fit it."""
        x = check_input(x, self.name)
        self._bind(x)
        return self

    def _bind(self, x: torch.Tensor) -> None:
        n = int(x.shape[self._axis(x, self.axis)])
        step = 2**self.levels
        padded = -(-n // step) * step
        if padded // 2 ** (self.levels - 1) < self.h.size - 2:
            raise ParameterError(
                f"Wavelet: {self.levels} levels of a {self.h.size}-tap filter do not fit a "
                f"signal of {n} samples; use fewer levels or a shorter wavelet."
            )
        if padded - n > n:
            raise ParameterError(
                f"Wavelet: {self.levels} levels need a signal of at least {padded - n} samples to "
                f"wrap-pad to {padded}; got {n}. Use fewer levels."
            )
        self.n_ = n

    def _length(self) -> tuple[int, int]:
        n = getattr(self, "n_", None)
        if n is None:
            raise NotFittedError("Wavelet needs the signal length: call fit(x) (or bind(x)) first.")
        step = 2**self.levels
        return int(n), -(-int(n) // step) * step

    def _sizes(self, padded: int) -> list[int]:
        return [padded // 2**self.levels] + [padded // 2**lv for lv in range(1, self.levels + 1)]

    def _filters(self, ref: torch.Tensor) -> torch.Tensor:
        w = torch.as_tensor(np.stack([self.h, self.g]), dtype=ref.dtype, device=ref.device)
        return w.unsqueeze(1)  # (2, 1, L)

    def _in_axis(self, ndim: int) -> int:
        layout = self.layout or Layout.infer(torch.empty((1,) * ndim))
        return layout.axes(self.axis)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.name)
        n, padded = self._length()
        a = self._axis(x, self.axis)
        moved = x.movedim(a, -1)
        if moved.shape[-1] != n:
            raise ShapeError(
                f"This Wavelet domain is bound to signals of {n} samples; got {moved.shape[-1]}."
            )
        lead = moved.shape[:-1]
        cur = moved.reshape(-1, 1, n)
        if padded > n:
            cur = torch.cat([cur, cur[..., : padded - n]], -1)
        w = self._filters(cur)
        s = w.shape[-1] // 2 - 1  # PyWavelets' "periodization" alignment
        details = []
        for _ in range(self.levels):
            ext = torch.cat([cur[..., cur.shape[-1] - s :], cur, cur[..., :s]], -1) if s else cur
            out = F.conv1d(ext, w, stride=2)  # (M, 2, len/2)
            cur, d = out[:, :1], out[:, 1:]
            details.append(d)
        z = torch.cat([cur, *details], -1).reshape(*lead, padded)
        return z.movedim(-1, a)

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        n, padded = self._length()
        a = self._in_axis(z.ndim)
        moved = z.movedim(a, -1)
        lead = moved.shape[:-1]
        flat = moved.reshape(-1, 1, padded)
        bands = torch.split(flat, self._sizes(padded), dim=-1)
        w = self._filters(flat)
        s = w.shape[-1] // 2 - 1
        cur = bands[0]
        for level in range(self.levels, 0, -1):
            coeffs = torch.cat([cur, bands[level]], 1)  # (M, 2, len)
            y = F.conv_transpose1d(coeffs, w, stride=2)  # (M, 1, 2 len + 2 s)
            size = 2 * coeffs.shape[-1]
            if s:  # fold the wrapped ends back: y[j] is sample (j - s) mod size
                mid = y[..., s : s + size]
                cur = torch.cat(
                    [
                        mid[..., :s] + y[..., s + size :],
                        mid[..., s : size - s],
                        mid[..., size - s :] + y[..., :s],
                    ],
                    -1,
                )
            else:
                cur = y
        return cur[..., :n].reshape(*lead, n).movedim(-1, a)

    def output_layout(self, layout: LayoutLike) -> Layout:
        return as_layout(layout).replace(self.axis, "coef")

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        if self.per == "coefficient" or "coef" not in layout.names:
            return values, layout
        axis = layout.axes("coef")[0]
        if values.shape[axis] == 1:  # shared by every coefficient (a mask not split by band)
            return values, layout.replace("coef", "band")
        _, padded = self._length()
        sums = [v.sum(axis, keepdim=True) for v in torch.split(values, self._sizes(padded), dim=axis)]
        return torch.cat(sums, axis), layout.replace("coef", "band")

    def expand(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        """A band's value shared evenly by its coefficients (layout ``band`` -> ``coef``).

        The pseudo-inverse of :meth:`reduce`'s sum: sums over any set of bands are kept (what
        faithfulness correlation and infidelity add up), every coefficient of a band has the same
        value, so deletion removes bands whole, ranked by their value per coefficient.
        """
        if "band" not in layout.names:
            return values, layout
        axis = layout.axes("band")[0]
        if values.shape[axis] > 1:
            _, padded = self._length()
            sizes = torch.tensor(self._sizes(padded), device=values.device)
            view = [1] * values.ndim
            view[axis] = -1
            values = (values / sizes.to(values.dtype).reshape(view)).repeat_interleave(sizes, dim=axis)
        return values, layout.replace("band", "coef")

    def coordinates(self, **kwargs: Any) -> dict[str, torch.Tensor]:
        """``band``: the level of each reported band (band 0 is the approximation at ``levels``);
        with ``per="coefficient"``, ``coef``: the level of each coefficient."""
        levels = torch.tensor([self.levels, *range(1, self.levels + 1)])
        if self.per == "band":
            return {"band": levels}
        _, padded = self._length()
        return {"coef": torch.repeat_interleave(levels, torch.tensor(self._sizes(padded)))}
