"""The complex cepstrum domain of Kechris et al.: ``ifft(log(fft(x) + eps))``, with a path that converges."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._validation import check_float, check_input, check_int, check_option
from ..errors import NotFittedError, ParameterError, ShapeError
from ..layout import Layout, LayoutLike, as_layout
from ._spectral import _compute_dtype, _drop
from .base import Domain
from .in_domain import CrossDomainIG

__all__ = ["ComplexCepstrum", "ComplexCepstrumIG", "unwrapped_phase"]


def unwrapped_phase(spectrum: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The phase of the full FFT of a real signal, unwrapped along frequency and kept odd.

    Along the one-sided bins ``k = 0 .. T // 2`` every jump of the principal phase larger
    than pi is removed by adding a multiple of 2 pi (numpy's ``unwrap``); bins above ``T / 2``
    take minus the phase of their mirror ``T - k``, as the spectrum of a real signal demands.
    The result differs from ``angle(spectrum)`` by a multiple of 2 pi in every bin, so
    ``exp(1j * phase)`` is unchanged.

    Parameters
    ----------
    spectrum : complex Tensor
        The full T-point FFT of real signals along ``dim`` (Hermitian along it).
    dim : int, default -1

    Returns
    -------
    phase : real Tensor of the shape of ``spectrum``
    """
    ang = torch.angle(spectrum).movedim(dim, -1)
    n = ang.shape[-1]
    half = ang[..., : n // 2 + 1]
    step = torch.diff(half, dim=-1)
    wrapped = torch.remainder(step + math.pi, 2 * math.pi) - math.pi
    # a jump of exactly pi keeps its sign (numpy's convention), so a wrap never turns pi into -pi
    wrapped = torch.where((wrapped == -math.pi) & (step > 0), torch.full_like(wrapped, math.pi), wrapped)
    one_sided = torch.cat([half[..., :1], half[..., :1] + torch.cumsum(wrapped, -1)], -1)
    mirror = -one_sided[..., 1 : (n + 1) // 2].flip(-1)  # bins T-k for k = (T-1)//2 .. 1
    return torch.cat([one_sided, mirror], -1).movedim(-1, dim)


class ComplexCepstrum(Domain):
    """The complex cepstrum along one axis, as real and imaginary parts.

    ``forward(x) = ifft(log(fft(x) + eps))`` (full T-point transforms, as the reference
    implementation of Kechris et al.) and ``inverse(c) = real(ifft(exp(fft(c)) - eps))``: the
    reference's inverse without the ``eps`` it leaves in (its round trip returns
    ``x + eps`` at the first sample; this one is exact to float64 rounding). ``z`` is the
    complex cepstrum as a real tensor with an axis ``r`` (real, imaginary) right after the
    quefrency axis ``q``: ``"b c t"`` becomes ``"b c q r"`` of shape (B, C, T, 2). Reported
    attributions (:meth:`reduce`) are one signed value per quefrency bin, the sum of the real
    and imaginary parts' attributions (the reference's ``Re((X - X') * conj(grad))``).

    The logarithm's imaginary part, the phase, is defined up to multiples of 2 pi; ``exp``
    does not see them, so the inverse is the same for every choice, but the coefficients, and
    hence the straight line IG integrates along, are not:

    - ``phase="principal"`` (default): the principal branch ``(-pi, pi]`` of ``torch.log``, as
      the reference implementation. Along a straight line each bin's phase turns by at most pi.
    - ``phase="unwrapped"``: the phase unwrapped along frequency (:func:`unwrapped_phase`), the
      textbook complex cepstrum (without removing the linear-phase term, which would change the
      inverse). It is continuous in frequency, so the cepstrum does not carry the wrapped
      phase's jumps; a straight line turns a bin by as many turns as its unwrapped phase has.

    For a real signal the imaginary part of ``z`` comes only from the DC and Nyquist bins (real,
    with a phase that is a multiple of pi): ``Im z[q] = (p_0 + p_{T/2} (-1)**q) / T``.

    ``origin`` places zero coefficients:

    - ``origin="zero_signal"`` (default): ``z`` is the cepstrum minus the zero signal's,
      ``log(eps)`` at quefrency 0, so zero coefficients are the zero signal, as in every other
      domain, and IG's default baseline is the reference's ``x' = 0``. Attributions are the same
      as the reference's (IG's ``(z - z0) * gradient`` is unchanged by a shift of both).
    - ``origin="impulse"``: the reference's coefficients exactly; zero coefficients are a flat
      unit spectrum, the impulse ``(1 - eps)`` at the first sample.

    The path from the zero signal is steep near its end: each bin of the spectrum moves as
    ``eps**(1 - a) * X**a``, about 16 e-folds of magnitude for ``eps = 1e-7``. The reference's
    right Riemann sum errs by about ``16 / (2 n)`` of ``f(x) - f(0)``;
    :class:`ComplexCepstrumIG` uses the Gauss-Legendre rule, which integrates this smooth path
    to float64 rounding in a few dozen steps for a smooth model.

    ``float16`` and ``bfloat16`` signals are transformed in ``float32``.

    Parameters
    ----------
    axis : str, default "t"
        Name of the transformed axis in the input layout.
    phase : {"unwrapped", "principal"}, default "unwrapped"
    eps : float, default 1e-7
        Added to the spectrum before the logarithm (the reference's value); it keeps the
        logarithm finite for a zero bin.
    fs : float, optional
        Sampling rate in Hz, for :meth:`coordinates` (quefrencies in seconds).
    layout : str or Layout, optional
        Input layout (default: inferred, or the explainer's).

    References
    ----------
    Oppenheim & Schafer, "Discrete-Time Signal Processing", ch. 13 (the complex cepstrum and
    phase unwrapping); Kechris, Dan & Atienza, cross-domain saliency maps, arXiv 2505.13100.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 16, dtype=torch.float64)
    >>> d = ComplexCepstrum().fit(x)
    >>> z = d.forward(x)
    >>> z.shape, bool(torch.allclose(d.inverse(z), x, rtol=0, atol=1e-12))
    (torch.Size([2, 3, 16, 2]), True)
    """

    exact = True
    affine = False

    def __init__(
        self,
        *,
        axis: str = "t",
        phase: str = "principal",
        origin: str = "zero_signal",
        eps: float = 1e-7,
        fs: float | None = None,
        layout: LayoutLike | None = None,
    ) -> None:
        super().__init__(layout=layout)
        if not isinstance(axis, str):
            raise ParameterError(
                f"The 'axis' parameter of {self.name} must be an axis name such as 't'. Got {axis!r} instead."
            )
        self.axis = axis
        self.phase = check_option(phase, "phase", options=("unwrapped", "principal"))
        self.origin = check_option(origin, "origin", options=("zero_signal", "impulse"))
        self.eps = check_float(eps, "eps", low=0.0, closed="neither")
        self.fs = None if fs is None else check_float(fs, "fs", low=0.0, closed="neither")

    def __repr__(self) -> str:
        return (
            f"ComplexCepstrum(axis={self.axis!r}, phase={self.phase!r}, origin={self.origin!r}, "
            f"eps={self.eps:g})"
        )

    def fit(self, x: torch.Tensor) -> ComplexCepstrum:
        """Record the signal length ``n_`` (the transform itself has nothing to learn)."""
        x = check_input(x, self.name)
        self._bind(x)
        return self

    def _bind(self, x: torch.Tensor) -> None:
        self.n_ = int(x.shape[self._axis(x, self.axis)])

    def _in_axis(self, ndim_in: int) -> int:
        layout = self.layout or Layout.infer(torch.empty((1,) * ndim_in))
        if self.axis not in layout.names:
            raise ShapeError(f"{self.name} acts on the axis {self.axis!r}, which is not in {layout!r}.")
        return layout.axes(self.axis)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients (B, ..., T, 2, ...) in ``x``'s dtype (half inputs: computed in float32)."""
        x = check_input(x, self.name)
        a = self._axis(x, self.axis)
        work = _compute_dtype(x, self.name, "x")
        spec = torch.fft.fft(x.to(work), dim=a) + self.eps
        if self.phase == "principal":
            log = torch.log(spec)
        else:
            log = torch.complex(torch.log(spec.abs()), unwrapped_phase(spec, a))
        ceps = torch.fft.ifft(log, dim=a)
        if self.origin == "zero_signal":
            ceps = ceps - self._shift(ceps, a)
        return torch.view_as_real(ceps).movedim(-1, a + 1).to(x.dtype)

    def inverse(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The signal of ``z`` in ``z``'s dtype (half: computed in float32, differentiable)."""
        a = self._in_axis(z.ndim - 1)
        if z.ndim < a + 2 or z.shape[a + 1] != 2:
            raise ShapeError(
                f"{self.name}.inverse expects coefficients with a real/imaginary axis of size 2 "
                f"after the quefrency axis; got shape {tuple(z.shape)}."
            )
        work = _compute_dtype(z, self.name, "z")
        ceps = torch.view_as_complex(z.to(work).movedim(a + 1, -1).contiguous())
        if self.origin == "zero_signal":
            ceps = ceps + self._shift(ceps, a)
        spec = torch.exp(torch.fft.fft(ceps, dim=a)) - self.eps
        return torch.fft.ifft(spec, dim=a).real.to(z.dtype)

    def _shift(self, ceps: torch.Tensor, a: int) -> torch.Tensor:
        """The cepstrum of the zero signal: ``log(eps)`` at quefrency 0, broadcast along ``a``."""
        view = [1] * ceps.ndim
        view[a] = ceps.shape[a]
        shift = torch.zeros(ceps.shape[a], dtype=ceps.dtype, device=ceps.device)
        shift[0] = math.log(self.eps)
        return shift.reshape(view)

    def output_layout(self, layout: LayoutLike) -> Layout:
        return as_layout(layout).replace(self.axis, "q", "r")

    def reduce(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        if "r" not in layout.names:
            return values, layout
        return values.sum(layout.axes("r")[0]), _drop(layout, "r")

    def expand(self, values: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        """Per-quefrency values split evenly between the real and imaginary parts (``q`` ->
        ``q r``), so sums are kept."""
        if "r" in layout.names or "q" not in layout.names:
            return values, layout
        q = layout.axes("q")[0]
        values = (values / 2).unsqueeze(q + 1)
        shape = list(values.shape)
        shape[q + 1] = 2
        return values.expand(shape).contiguous(), layout.replace("q", "q", "r")

    def coordinates(self, fs: float | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Quefrencies of the reported bins: ``k / fs`` in seconds (samples without fs)."""
        fs = fs if fs is not None else self.fs
        n = getattr(self, "n_", None)
        if n is None:
            raise NotFittedError(f"{self.name} needs the signal length: call fit(x) (or bind(x)) first.")
        q = torch.arange(check_int(n, "n", low=1), dtype=torch.float64)
        return {"q": q / fs if fs is not None else q}


class ComplexCepstrumIG(CrossDomainIG):
    """Integrated Gradients over complex cepstrum coefficients: one signed score per quefrency bin.

    ``ComplexCepstrumIG(model, ...)`` is ``CrossDomainIG(model, ComplexCepstrum(...), ...)``
    with the Gauss-Legendre rule by default. Returns (B, C, T): each bin the sum of the IG of
    its real and imaginary parts, as the reference's ``ComplexCepstrumIG``. The default
    baseline, zero coefficients, is the zero signal (``origin="zero_signal"``), the reference's
    ``x' = 0``.

    Along the straight line from the zero signal's cepstrum, each bin of the spectrum moves as
    ``eps**(1 - a) * X**a``: its magnitude grows geometrically over ``log(|X| / eps)``, about 16
    e-folds for ``eps = 1e-7``, so the integrand is concentrated near ``a = 1``. The
    reference's right Riemann sum errs by about that number over ``2 n`` (its tests need 5000
    steps for an absolute 5e-2); the Gauss-Legendre rule integrates this smooth path to
    float64 rounding in a few dozen steps for a smooth model (see docs/domains.md for the
    measured gaps). The phase branch does not cause the slow convergence: the principal phase
    rotates each bin by at most pi along the path, the unwrapped phase by more.

    Parameters
    ----------
    model : callable
    phase : {"principal", "unwrapped"}, default "principal"
        See :class:`ComplexCepstrum`.
    origin : {"zero_signal", "impulse"}, default "zero_signal"
        See :class:`ComplexCepstrum`.
    eps : float, default 1e-7
    fs : float, optional
        Sampling rate, for ``attr.domain.coordinates()``.
    axis : str, default "t"
    n_steps : int, default 50
    rule : str, default "gausslegendre"
        ``"riemann_right"`` is the reference's rule.
    **kwargs
        ``baseline``, ``reduce``, ``batch_size``, ``layout`` (see :class:`CrossDomainIG`).

    References
    ----------
    Kechris, Dan & Atienza, arXiv 2505.13100; Sundararajan, Taly & Yan, ICML 2017.
    """

    def __init__(
        self,
        model: Any,
        *,
        phase: str = "principal",
        origin: str = "zero_signal",
        eps: float = 1e-7,
        fs: float | None = None,
        axis: str = "t",
        n_steps: int = 50,
        rule: str = "gausslegendre",
        **kwargs: Any,
    ) -> None:
        domain = ComplexCepstrum(axis=axis, phase=phase, origin=origin, eps=eps, fs=fs)
        super().__init__(model, domain, n_steps=n_steps, rule=rule, **kwargs)
