"""Helpers shared by the frequency domains (:mod:`~salience.domains.fourier`,
:mod:`~salience.domains.stft`) and the band sums (:mod:`~salience.domains.bands`)."""

from __future__ import annotations

import torch

from ..errors import DTypeError
from ..layout import Layout


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
