"""Parity with Quantus 0.6 for localisation, complexity and faithfulness correlation.

Definitional differences pinned (Quantus defaults differ from ours; the tests switch them off):
- Quantus normalises attributions by their maximum (``normalise=True``) and, for Sparseness and
  Complexity, takes ``abs`` itself; we compare with ``normalise=False`` (the localisation ratios
  and the complexity measures are scale-invariant, so only Quantus' epsilons remain).
- Sparseness: Quantus adds 1e-7 to every |a| (an all-zero map scores 0, ours NaN), so the
  Gini indices agree to about 1e-7 / mean|a|. Complexity: Quantus uses log(p + 1e-12).
- PointingGame: Quantus has no tolerance; ours with ``tolerance=0`` is the same (any maximum on
  the mask is a hit).
- RelevanceRankAccuracy: Quantus sorts with numpy's unstable argsort; with continuous random
  attributions there are no ties, so both agree exactly.
- FaithfulnessCorrelation: Quantus draws subsets with the global numpy RNG (run by run, sample
  by sample); ours from a torch generator (sample by sample). The test feeds Quantus our
  subsets through ``np.random.choice``. Quantus' PyTorch wrapper casts inputs to float32, so the
  model is float32 and the tolerance is 1e-4. Our subsets range over attribution elements;
  Quantus broadcasts the attribution to the input's shape first: both coincide for a
  full-shape attribution, used here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salience import metrics as M
from toy_models import cnn, make_input

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.parity


def _batch(seed=0, b=5, shape=(1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn((b, *shape), generator=g, dtype=torch.float64)
    mask = torch.rand((b, *shape), generator=g) > 0.7
    mask[0].view(-1)[int(a[0].argmax())] = True  # at least one hit
    return a, mask


def _q(metric_cls, a, mask, **kw):
    m = metric_cls(normalise=False, disable_warnings=True, **kw)
    x = np.zeros(a.shape, dtype=np.float32)
    y = np.zeros(a.shape[0], dtype=np.int64)
    out = m(model=None, x_batch=x, y_batch=y, a_batch=a.numpy(), s_batch=mask.numpy().astype(np.float32))
    return torch.tensor(np.asarray(out, dtype=np.float64))


def test_pointing_game():
    a, mask = _batch(1)
    ref = _q(quantus.PointingGame, a, mask, abs=False)
    torch.testing.assert_close(M.pointing_game(a, mask), ref, rtol=0, atol=0)


def test_relevance_mass_and_rank_accuracy():
    a, mask = _batch(2)
    torch.testing.assert_close(
        M.relevance_mass(a, mask),
        _q(quantus.RelevanceMassAccuracy, a, mask, abs=False),
        rtol=1e-12,
        atol=1e-12,
    )
    torch.testing.assert_close(
        M.relevance_rank_accuracy(a, mask),
        _q(quantus.RelevanceRankAccuracy, a, mask, abs=False),
        rtol=1e-12,
        atol=1e-12,
    )


def test_sparseness_and_complexity():
    a, mask = _batch(3, shape=(3, 10, 10))
    torch.testing.assert_close(
        M.sparseness(a), _q(quantus.Sparseness, a, mask, abs=True), rtol=1e-6, atol=1e-6
    )
    torch.testing.assert_close(
        M.complexity(a), _q(quantus.Complexity, a, mask, abs=True), rtol=1e-9, atol=1e-9
    )


def test_faithfulness_correlation(monkeypatch):
    model = cnn(1, dtype=torch.float32)
    x = make_input("signal", batch=3, dtype=torch.float32)
    a = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float32)
    y = torch.tensor([0, 1, 3])
    n_runs, size = 12, 9
    ours = M.faithfulness_correlation(
        model, x, a, y, n_runs=n_runs, subset_size=size, generator=torch.Generator().manual_seed(7)
    )
    # our draws, in our documented order, handed to Quantus in its own order (run, then sample)
    g = torch.Generator().manual_seed(7)
    n = a[0].numel()
    idx = [torch.rand((n_runs, n), generator=g).argsort(-1)[:, :size].numpy() for _ in range(3)]
    feed = iter([idx[b][r] for r in range(n_runs) for b in range(3)])
    monkeypatch.setattr(np.random, "choice", lambda *args, **kw: next(feed))
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=n_runs,
        subset_size=size,
        perturb_baseline=0.0,
        abs=False,
        normalise=False,
        return_aggregate=False,
        disable_warnings=True,
    )
    ref = metric(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", channel_first=True
    )
    torch.testing.assert_close(ours.double(), torch.tensor(ref, dtype=torch.float64), rtol=1e-4, atol=1e-4)
