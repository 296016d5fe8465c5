"""InDomain: any explainer in any domain; the cross-domain IG convenience classes."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_bool
from ..engine import Explainer, Parts, ScoreFunction, Wrapper
from ..engine.explainer import as_parts
from ..errors import ParameterError
from ..explainers.integrated_gradients import BaselineLike, IntegratedGradients
from ..layout import LayoutLike
from .base import Compose, Domain, Time, into
from .fourier import Fourier
from .ica import ICA
from .stft import STFT
from .wavelet import Wavelet

__all__ = ["InDomain", "CrossDomainIG", "TimeIG", "FourierIG", "ICAIG", "STFTIG", "WaveletIG"]


def _broadcasts(shape: torch.Size, full: torch.Size) -> bool:
    """``shape`` is ``full`` with some axes (not the batch axis) shared, i.e. of size 1."""
    return (
        len(shape) == len(full)
        and shape[0] == full[0]
        and all(s == n or s == 1 for s, n in zip(shape[1:], full[1:], strict=True))
    )


class InDomain(Wrapper):
    """Run any explainer in the coefficients of a domain: explain ``g(z) = f(inverse(z))``.

    At ``z = domain.forward(x)`` the wrapped explainer sees the score ``g``, so its gradients,
    baselines, noise and masks all live in ``z``: IG's zero baseline is the zero spectrum in
    :class:`Fourier`, the mean signal in :class:`ICA`; ``InDomain(SmoothGrad(m), Fourier())``
    adds noise to spectra while ``SmoothGrad(InDomain(m, Fourier()))`` adds noise to signals.

    For a lossy domain (``exact`` False, e.g. ICA with fewer components than channels) the
    fixed residual ``r = x - inverse(forward(x))`` is added to every reconstruction, so
    ``g(forward(x)) == f(x)`` and IG completeness holds in ``z``.

    Parameters
    ----------
    explainer : Explainer
        Any explainer that needs no layer of the model (layer methods raise CompositionError).
    domain : Domain
        Bound to each batch with :meth:`Domain.bind`; the user's object is not modified.
    reduce : bool, default True
        Report the domain's units (:meth:`Domain.reduce`: one value per frequency bin, per ICA
        component, per wavelet band); False keeps one value per coordinate of ``z`` (e.g. the
        real and imaginary parts separately). Reduction sums, so ``delta`` is unchanged.

    Returns (from ``explain``)
    --------------------------
    Attribution whose ``values`` live in the domain's coordinates, ``layout`` names them and
    ``domain`` is the bound domain (use ``attr.domain.coordinates(fs=...)`` for plot axes).

    References
    ----------
    Kechris, Dan & Atienza, cross-domain saliency maps, arXiv 2505.13100 (IG in any invertible
    domain with a differentiable inverse); generalised here to every explainer.

    Examples
    --------
    >>> import torch
    >>> from salience import IntegratedGradients
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 32, 3)).double().eval()
    >>> x = torch.randn(4, 2, 32, dtype=torch.float64)
    >>> attr = InDomain(IntegratedGradients(model, n_steps=8), Fourier(fs=32.0)).explain(x, target=0)
    >>> attr.values.shape, str(attr.layout), bool(attr.delta.abs().max() < 1e-8)
    (torch.Size([4, 2, 17]), 'b c f', True)
    """

    def __init__(self, explainer: Explainer, domain: Domain, *, reduce: bool = True) -> None:
        super().__init__(explainer)
        if not isinstance(domain, Domain):
            raise ParameterError(
                f"The 'domain' parameter of {type(self).__name__} must be a salience Domain "
                f"(Time(), Fourier(), ICA(...), ...). Got {type(domain).__name__} instead."
            )
        self.domain = domain
        self.reduce = check_bool(reduce, "reduce")

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({self.explainer.name}, {self.domain.name})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.explainer!r}, {self.domain!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        z, z_layout, g, d = into(score, x, self.domain, score.layout)  # g(z) == f(x)
        parts = as_parts(self.explainer.attribute(z, g), z_layout)
        values, layout = parts.values, parts.layout
        if self.reduce and layout == z_layout and _broadcasts(values.shape, z.shape):
            # a full-shape map, or one shared along some axes (size 1: a RISE/Occlusion map whose
            # masks do not split a bin's real and imaginary parts, or a source's samples)
            values, layout = d.reduce(values, z_layout)
        domain: Domain = d if parts.domain is None else Compose(d, parts.domain)
        info = dict(parts.info)
        info["domain_exact"] = bool(d.exact)
        return Parts(values, delta=parts.delta, layout=layout, domain=domain, info=info)


class CrossDomainIG(InDomain):
    """Integrated Gradients in a domain (Kechris, Dan & Atienza), batched and device-aware.

    ``CrossDomainIG(model, domain, ...)`` is ``InDomain(IntegratedGradients(model, ...),
    domain)``. The default quadrature is the reference implementation's right Riemann sum
    (``alpha_k = k / n``); every rule of :class:`~salience.IntegratedGradients` is available.
    The baseline is given in the domain's coordinates (``"zeros"``: zero coefficients).
    ``Attribution.delta`` is the completeness gap in ``z``.

    Parameters
    ----------
    model : callable
    domain : Domain
    n_steps : int, default 50
    rule : str, default "riemann_right"
    baseline : "zeros", "mean", float, Tensor or callable, default "zeros"
        In ``z`` (a tensor of ``z``'s shape, or a function ``z -> z0``).
    reduce : bool, default True
        See :class:`InDomain`.
    batch_size : int, optional
        Maximum rows per model call (all samples x steps are batched together).
    layout : str or Layout, optional
        Input layout.

    References
    ----------
    Kechris, Dan & Atienza, arXiv 2505.13100; Sundararajan, Taly & Yan, ICML 2017.
    """

    def __init__(
        self,
        model: Any,
        domain: Domain,
        *,
        n_steps: int = 50,
        rule: str = "riemann_right",
        baseline: BaselineLike = "zeros",
        reduce: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
    ) -> None:
        ig = IntegratedGradients(
            model, n_steps=n_steps, rule=rule, baseline=baseline, batch_size=batch_size, layout=layout
        )
        super().__init__(ig, domain, reduce=reduce)


class TimeIG(CrossDomainIG):
    """Integrated Gradients in the time domain (identity), right Riemann rule by default.

    Parameters: see :class:`CrossDomainIG` (without ``domain``).
    """

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, Time(), **kwargs)


class FourierIG(CrossDomainIG):
    """Integrated Gradients over the Fourier coefficients: one signed score per frequency bin.

    Returns (B, C, T//2+1) for ``output="onesided"`` (each bin the sum of the IG of its real and
    imaginary parts), or (B, C, T) for ``output="full"``, the reference implementation's
    full-FFT values (bins k and T-k equal, half the one-sided value).

    Parameters
    ----------
    model : callable
    output : {"onesided", "full"}, default "onesided"
    fs : float, optional
        Sampling rate, for ``attr.domain.coordinates()`` and :func:`aggregate_bands`.
    axis : str, default "t"
    norm : str, default "backward"
    **kwargs
        ``n_steps``, ``rule``, ``baseline``, ``reduce``, ``batch_size``, ``layout`` (see
        :class:`CrossDomainIG`).
    """

    def __init__(
        self,
        model: Any,
        *,
        output: str = "onesided",
        fs: float | None = None,
        axis: str = "t",
        norm: str = "backward",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, Fourier(output=output, fs=fs, axis=axis, norm=norm), **kwargs)


class ICAIG(CrossDomainIG):
    """Integrated Gradients over independent components.

    ``mode="sample"`` (default, the reference implementation): IG over the mixing weights with
    each sample's sources fixed, zero baseline (the mean signal), one score per component
    (B, K). ``mode="dataset"``: IG over the sources (B, K, T) of a dataset-level ICA.

    ``model`` and ``ica`` are positional (as in the reference implementation's
    ``ICAIG(model, ica, ...)``); every other parameter is keyword-only.

    Parameters
    ----------
    model : callable
    ica : fitted FastICA-like object or estimator, optional
        See :class:`ICA`; None fits one FastICA per sample (``mode="sample"``).
    mode : {"sample", "dataset"}, default "sample"
    n_components, random_state, generator : optional
        For the FastICA fitted here (see :class:`ICA`; numpy's global RNG is never used).
    **kwargs
        See :class:`CrossDomainIG`.
    """

    def __init__(
        self,
        model: Any,
        ica: Any = None,
        *,
        mode: str = "sample",
        n_components: int | None = None,
        random_state: int | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        domain = (
            ica
            if isinstance(ica, ICA)
            else ICA(
                ica, mode=mode, n_components=n_components, random_state=random_state, generator=generator
            )
        )
        super().__init__(model, domain, **kwargs)


class STFTIG(CrossDomainIG):
    """Integrated Gradients over STFT coefficients: (B, C, F, frames) per time-frequency cell.

    Parameters
    ----------
    model : callable
    n_fft, hop_length, win_length, window, center, fs
        See :class:`STFT` (the reference implementation uses ``window="boxcar"``).
    **kwargs
        See :class:`CrossDomainIG`.
    """

    def __init__(
        self,
        model: Any,
        *,
        n_fft: int = 64,
        hop_length: int | None = None,
        win_length: int | None = None,
        window: str | torch.Tensor = "hann",
        center: bool = True,
        fs: float | None = None,
        **kwargs: Any,
    ) -> None:
        domain = STFT(
            n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, fs=fs
        )
        super().__init__(model, domain, **kwargs)


class WaveletIG(CrossDomainIG):
    """Integrated Gradients over DWT coefficients: one score per band (or per coefficient).

    Parameters
    ----------
    model : callable
    wavelet : str, default "haar"
    levels : int, default 3
    per : {"band", "coefficient"}, default "band"
    **kwargs
        See :class:`CrossDomainIG`.
    """

    def __init__(
        self, model: Any, *, wavelet: Any = "haar", levels: int = 3, per: str = "band", **kwargs: Any
    ) -> None:
        super().__init__(model, Wavelet(wavelet, levels=levels, per=per), **kwargs)
