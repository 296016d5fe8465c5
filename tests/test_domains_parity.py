"""Parity with the reference implementation, PyPI ``cross-domain-saliency-maps`` (torch part).

The package is not in the ``test`` extra: version 0.0.8 pins ``tqdm==4.67.1`` exactly (and its
``torch`` extra pins torch<=2.7), which fights the rest of the test environment. Install it by
hand with ``pip install --no-deps cross-domain-saliency-maps`` (it needs only tqdm at runtime);
these tests are skipped without it.

Definitional differences neutralised here:

- quadrature: the reference uses the right Riemann sum (alpha = i/n, i = 1..n), which is the
  default of our cross-domain classes (``rule="riemann_right"``);
- the reference runs one sample per call in float32 (complex64 FFT), so the comparison is in
  float32 at rtol ~1e-4, sample by sample against our batched call;
- Fourier: the reference reports per bin of the full T-point FFT; ours with ``output="full"``
  is compared directly, and our default one-sided form against the reference folded (DC and
  Nyquist once, every other bin k plus bin T-k);
- ICA: the reference's per-sample mode (mixing weights as coefficients, sources of the sample
  fixed, zero baseline, summed over channels) is our ``ICAIG(mode="sample")``;
- STFT: the reference's rectangular window is our ``window="boxcar"``; wavelets: its Haar DWT
  with circular padding and band order [A_L, D_1..D_L] is our ``Wavelet("haar")``.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import salience as sl
from toy_models import cnn

cdsm = pytest.importorskip("cross_domain_saliency_maps.torch_ig.cross_domain_integrated_gradients")

pytestmark = pytest.mark.parity

N_STEPS, TARGET, C, T = 16, 1, 2, 32


def _data(b=3):
    g = torch.Generator().manual_seed(11)
    t = torch.arange(T, dtype=torch.float64) / 8
    src = torch.stack([torch.cos(2 * np.pi * 1.0 * t), torch.sign(torch.sin(2 * np.pi * 0.5 * t))])
    mix = torch.tensor([[0.5, 0.75], [0.9, 0.1]], dtype=torch.float64)
    x = torch.einsum("ck,kt->ct", mix, src).expand(b, C, T) + 0.3 * torch.randn(
        b, C, T, generator=g, dtype=torch.float64
    )
    return x.to(torch.float32)


def _model():
    return cnn(1, in_channels=C, n_classes=3, seed=4, dtype=torch.float32)


def _theirs(cls, model, x, *args):
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(x.shape[0]):
            ref = (
                cls(copy.deepcopy(model), *args[:1], N_STEPS, TARGET, torch.device("cpu"))
                if args
                else cls(copy.deepcopy(model), N_STEPS, TARGET, torch.device("cpu"))
            )
            xi = x[i : i + 1].numpy()
            out.append(ref.run(xi, np.zeros_like(xi)).detach())
    return torch.stack(out)


def _matches(ours, theirs) -> bool:
    """Raise unless ours equals the reference at its scale; True when the reference is not
    trivially zero (a zero map on both sides would match vacuously)."""
    scale = float(theirs.abs().max())
    torch.testing.assert_close(ours, theirs.reshape(ours.shape), rtol=1e-4, atol=1e-5 * scale)
    return scale > 0


def test_time_ig_parity():
    model, x = _model(), _data()
    ours = sl.TimeIG(model, n_steps=N_STEPS).explain(x, target=TARGET).values
    assert _matches(ours, _theirs(cdsm.TimeIG, model, x)[:, 0])


def test_fourier_ig_parity_full_and_folded():
    model, x = _model(), _data()
    theirs = _theirs(cdsm.FourierIG, model, x)[:, 0]  # (B, C, T), bins k and T-k equal
    full = sl.FourierIG(model, n_steps=N_STEPS, output="full").explain(x, target=TARGET).values
    assert _matches(full, theirs)
    folded = theirs[..., : T // 2 + 1].clone()
    folded[..., 1 : T // 2] += theirs[..., T // 2 + 1 :].flip(-1)
    one = sl.FourierIG(model, n_steps=N_STEPS).explain(x, target=TARGET).values
    assert _matches(one, folded)


def test_ica_ig_parity_per_sample():
    pytest.importorskip("sklearn")
    from sklearn.decomposition import FastICA

    model, x = _model(), _data()
    theirs, ours, icas = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(x.shape[0]):
            ica = FastICA(random_state=0, tol=1e-6, whiten="unit-variance").fit(
                x[i].T.numpy().astype(np.float64)
            )
            icas.append(ica)
            ref = cdsm.ICAIG(copy.deepcopy(model), ica, N_STEPS, TARGET, torch.device("cpu"))
            xi = x[i : i + 1].numpy()
            theirs.append(ref.run(xi, np.zeros_like(xi)).detach())
            ours.append(sl.ICAIG(model, ica, n_steps=N_STEPS).explain(x[i : i + 1], target=TARGET).values[0])
        # batched: one FastICA per sample fitted inside the domain with the same settings
        batched = sl.ICAIG(model, FastICA(random_state=0, tol=1e-6, whiten="unit-variance"), n_steps=N_STEPS)
        batched = batched.explain(x, target=TARGET).values
        # batched: the per-sample fitted ICAs given as a list
        listed = sl.ICAIG(model, icas, n_steps=N_STEPS).explain(x, target=TARGET).values
    theirs_t = torch.stack(theirs)
    assert _matches(torch.stack(ours), theirs_t)
    assert _matches(batched, theirs_t)
    assert _matches(listed, theirs_t)


def test_wavelet_ig_parity_haar_bands():
    # reference DWTIG: circular padding to a multiple of 2**levels, orthonormal Haar, one score
    # per band [A_L, D_1..D_L] (it returns a trailing axis of size 1)
    model, x = _model(), _data()
    theirs = _theirs_kw(cdsm.DWTIG, model, x, levels=3)[..., 0]
    ours = sl.WaveletIG(model, n_steps=N_STEPS, levels=3).explain(x, target=TARGET).values
    assert _matches(ours, theirs)


def test_stft_ig_parity_boxcar():
    # reference STFTIG: rectangular window (ours: window="boxcar"), center=True, reflect padding
    model, x = _model(), _data()
    theirs = _theirs_kw(cdsm.STFTIG, model, x, n_fft=8, hop_length=4, win_length=8)
    ours = sl.STFTIG(model, n_steps=N_STEPS, n_fft=8, hop_length=4, window="boxcar").explain(x, target=TARGET)
    assert _matches(ours.values, theirs)


def _theirs_kw(cls, model, x, **kw):
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(x.shape[0]):
            ref = cls(copy.deepcopy(model), N_STEPS, TARGET, torch.device("cpu"), **kw)
            xi = x[i : i + 1].numpy()
            r = ref.run(xi, np.zeros_like(xi)).detach()
            out.append(r.reshape(1, *r.shape[-3:]))
    return torch.cat(out)
