"""Domains: explain in the coefficients of an invertible transform (Fourier, ICA, STFT, wavelets,
complex cepstrum)."""

from .bands import EEG_BANDS, aggregate_bands, linear_bands, octave_bands, resolve_bands
from .base import Compose, Domain, Time, as_domain, into
from .cepstrum import ComplexCepstrum, ComplexCepstrumIG
from .fourier import Fourier
from .ica import ICA
from .in_domain import ICAIG, STFTIG, CrossDomainIG, FourierIG, InDomain, TimeIG, WaveletIG
from .stft import STFT
from .wavelet import Wavelet, daubechies

__all__ = [
    "Domain",
    "Time",
    "Fourier",
    "STFT",
    "ICA",
    "Wavelet",
    "ComplexCepstrum",
    "Compose",
    "InDomain",
    "CrossDomainIG",
    "TimeIG",
    "FourierIG",
    "ICAIG",
    "STFTIG",
    "WaveletIG",
    "ComplexCepstrumIG",
    "aggregate_bands",
    "resolve_bands",
    "octave_bands",
    "linear_bands",
    "EEG_BANDS",
    "daubechies",
    "as_domain",
    "into",
]
