"""Parity with Quantus 0.6 for IROF, Selectivity, RegionPerturbation, SensitivityN, Monotonicity,
MonotonicityCorrelation and Sufficiency.

Definitional differences pinned (the tests switch Quantus' defaults off or reproduce them):
- Quantus normalises attributions by their maximum and, for the monotonicity metrics and
  Sufficiency, takes ``abs`` itself (``abs=True, normalise=True``); we keep sign and scale, so
  the tests pass ``abs=False, normalise=False``.
- Quantus' baselines: "black" is each sample's minimum, "mean" its mean, "uniform" U(0, 1) from
  the global numpy RNG; ours are explicit substrates (0.0 by default; IROF each channel's mean;
  MonotonicityCorrelation U(low, high) from a torch generator). The tests use a 0.0 baseline.
- Quantus' PyTorch wrapper casts inputs to float32: float32 models, tolerance 1e-4; softmax=False.
- IROF: Quantus segments images with skimage's SLIC; ours with a dependency-free SLIC-like
  clustering. The test hands Quantus our segments. Ours defaults to ``normalize=True`` (area over
  the relative-score curve on [0, 1], comparable across segment counts); ``normalize=False`` is
  Quantus' ``L - trapz(p_1..p_L)``.
- Selectivity: Quantus returns the curve and ``get_auc_score`` its unit-spaced trapezoid;
  ``normalize=False`` gives that per sample.
- RegionPerturbation: Quantus returns the curve, ours ``region_perturbation_curve``;
  ``region_perturbation`` is Samek's AOPC of it. ``order="random"``: Quantus draws from NumPy's
  global RNG, ours from ``generator=``.
- SensitivityN: Quantus 0.6 removes single features cumulatively in MoRF order and, for each
  step, correlates over the samples of the batch (one value per step, first batch only); Ancona
  et al.'s definition, ours, correlates per sample over random subsets of size n. The test
  rebuilds Quantus' value from our region perturbation curve (each element its own region).
- Monotonicity: Quantus 0.6's batched loop writes the baseline value at the indices of each
  step into a copy of the baseline, so every state is the baseline and every sample scores True.
  The test shows this, then passes Quantus a perturb_func that puts the input's values back at
  those indices (Arya et al.'s step) and compares with that.
- Sufficiency: no neighbour within the threshold gives 0 in Quantus, NaN in ours; seuclidean
  features without variance give NaN distances in scipy and are left out in ours (the test's
  attributions all vary).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salience.metrics import perturbation_curves as P
from toy_models import Linear, cnn

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.parity

OFF = dict(abs=False, normalise=False, disable_warnings=True)


def _data(seed=0, b=4, shape=(3, 7, 7)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((b, *shape), generator=g, dtype=torch.float32)
    a = torch.randn((b, *shape), generator=g, dtype=torch.float32)
    return cnn(len(shape) - 1, in_channels=shape[0], dtype=torch.float32), x, a, torch.arange(b) % 4


def _q(metric, model, x, a, y):
    out = metric(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", channel_first=True,
        softmax=False,
    )  # fmt: skip
    return out


def _t(v):
    return torch.tensor(np.asarray(v, dtype=np.float64))


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation(order):
    model, x, a, y = _data(1)
    ref = _q(quantus.RegionPerturbation(patch_size=3, order=order, regions_evaluation=6, perturb_baseline=0.0,
                                        **OFF), model, x, a, y)  # fmt: skip
    ours = P.region_perturbation_curve(model, x, a, y, patch_size=3, order=order, n_regions=6, progress=False)
    torch.testing.assert_close(ours.double(), _t(ref), rtol=1e-4, atol=1e-4)


def test_region_perturbation_random_order():
    """Quantus' order="random" draws np.random.permutation(L) per sample from NumPy's global RNG;
    ours draws from a generator. The same permutations, fed to ours as an attribution whose
    patch sums rank the patches in that order (MoRF), give Quantus' curve: the orders differ
    only in their source of randomness."""
    model, x, a, y = _data(4, shape=(3, 9, 9))  # a 3 x 3 grid of 3 x 3 patches, no padding
    np.random.seed(11)
    ref = _q(quantus.RegionPerturbation(patch_size=3, order="random", regions_evaluation=6, perturb_baseline=0.0,
                                        **OFF), model, x, a, y)  # fmt: skip
    np.random.seed(11)
    perms = [np.random.permutation(9) for _ in range(x.shape[0])]
    ranked = torch.zeros_like(a)
    for i, perm in enumerate(perms):
        for rank, p in enumerate(perm):
            r, c = divmod(int(p), 3)
            ranked[i, :, 3 * r : 3 * r + 3, 3 * c : 3 * c + 3] = 10.0 ** (9 - rank)
    ours = P.region_perturbation_curve(
        model, x, ranked, y, patch_size=3, order="morf", n_regions=6, progress=False
    )
    torch.testing.assert_close(ours.double(), _t(ref), rtol=1e-4, atol=1e-4)


def test_selectivity():
    model, x, a, y = _data(2)
    metric = quantus.Selectivity(patch_size=3, perturb_baseline=0.0, **OFF)
    ref = [np.trapezoid(np.asarray(c)) for c in _q(metric, model, x, a, y)]
    ours = P.selectivity(model, x, a, y, patch_size=3, normalize=False, progress=False)
    torch.testing.assert_close(ours.double(), _t(ref), rtol=1e-4, atol=1e-4)


def test_irof(monkeypatch):
    model, x, a, y = _data(3, shape=(1, 8, 8))  # Quantus' IROF masks with one channel only
    if not hasattr(np, "trapz"):  # Quantus calls np.trapz, removed in numpy 2.4
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    labels = (torch.arange(8)[:, None] // 3 * 3 + torch.arange(8)[None] // 3).reshape(1, 1, 8, 8)
    monkeypatch.setattr(
        quantus.helpers.utils, "get_superpixel_segments", lambda img, **kw: labels[0, 0].numpy()
    )
    ref = _q(quantus.IROF(perturb_baseline=0.0, return_aggregate=False, **OFF), model, x, a, y)
    ours = P.irof(model, x, a, y, segments=labels, substrate=0.0, normalize=False, progress=False)
    torch.testing.assert_close(ours.double(), _t(ref), rtol=1e-4, atol=1e-4)


def test_monotonicity():
    g = torch.Generator().manual_seed(4)
    w = torch.rand((2, 1, 10), generator=g) + 0.1
    x = torch.rand((4, 1, 10), generator=g) + 0.5
    x[:, 0, 3] = -3.0  # one negative contribution: monotone iff it is put back first
    model = Linear(w).eval()
    a = w[0] * x
    a[1::2] = -a[1::2]  # perfect for samples 0 and 2, inverted for 1 and 3
    y = torch.zeros(4, dtype=torch.long)
    flat = x.flatten(1).numpy()

    def put_back(arr, indices, **kw):  # Arya's step: the input's values return at ``indices``
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = flat[rows, indices]
        return out

    for step in (1, 2):
        bugged = _q(quantus.Monotonicity(features_in_step=step, perturb_baseline=0.0, **OFF), model, x, a, y)
        assert list(bugged) == [True] * 4  # Quantus 0.6 never leaves the baseline (see module doc)
        metric = quantus.Monotonicity(
            features_in_step=step, perturb_baseline=0.0, perturb_func=put_back, **OFF
        )
        ref = [float(v) for v in _q(metric, model, x, a, y)]
        ours = P.monotonicity(model, x, a, y, features_in_step=step, progress=False)
        assert ours.tolist() == ref
        if step == 1:
            assert ref == [1.0, 0.0, 1.0, 0.0]


def test_monotonicity_correlation():
    model, x, a, y = _data(5, shape=(1, 6, 6))
    metric = quantus.MonotonicityCorrelation(nr_samples=2, features_in_step=3, perturb_baseline=0.0, **OFF)
    ref = _q(metric, model, x, a, y)
    ours = P.monotonicity_correlation(
        model, x, a, y, n_samples=2, features_in_step=3, substrate=0.0, progress=False
    )
    torch.testing.assert_close(ours.double(), _t(ref), rtol=1e-4, atol=1e-4)


def test_sensitivity_n_quantus_estimator():
    model, x, a, y = _data(6, b=5, shape=(1, 12))
    ref = _q(quantus.SensitivityN(perturb_baseline=0.0, return_aggregate=False, **OFF), model, x, a, y)
    n_max = int(0.8 * 12)
    labels = torch.arange(12).reshape(1, 1, 12)
    drops = P.region_perturbation_curve(
        model, x, a, y, segments=labels, n_regions=n_max, progress=False
    ).double()
    sums = a.flatten(1).double().sort(1, descending=True).values[:, :n_max]
    per_step = torch.stack(
        [torch.corrcoef(torch.stack([drops[:, k], sums[:, k]]))[0, 1] for k in range(n_max)]
    )
    torch.testing.assert_close(per_step, _t(ref), rtol=1e-3, atol=1e-4)


def test_sufficiency():
    model, x, a, y = _data(7, b=8, shape=(1, 6))
    for threshold in (0.3, 0.6):
        ref = _q(quantus.Sufficiency(threshold=threshold, **OFF), model, x, a, y)
        ours = P.sufficiency(model, x, a, y, threshold=threshold)
        torch.testing.assert_close(ours.double().nan_to_num(0.0), _t(ref), rtol=1e-6, atol=1e-6)
