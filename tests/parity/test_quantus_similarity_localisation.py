"""Parity with Quantus 0.6: similarity functions, Focus, AUC, TopKIntersection,
AttributionLocalisation, EffectiveComplexity, NonSensitivity and InputInvariance.

Definitional differences pinned here (and stated in docs/metrics.md):
- Quantus' ``cosine`` is scipy's cosine *distance* ``1 - cos``; ours is the similarity.
- Quantus' ``ssim`` is skimage's default: a 7-tap uniform window, sample covariances
  (``N - 1``), data range = joint max - min of the pair; ours with ``window="uniform",
  win_size=7, sample_covariance=True``. Our default is Wang et al.'s Gaussian window.
- Quantus normalises attributions by the maximum of the *whole batch* (``normalise_by_max`` over
  every axis) before its ``eps`` thresholds; ours are relative to each sample's maximum. The
  tests give every sample the same maximum |a| (or switch normalisation off).
- Focus: Quantus adds 1e-9 to the denominator (a map without positive attribution scores 0,
  ours NaN); the maps here have positive mass, so agreement is to about 1e-9.
- AttributionLocalisation: Quantus takes ``|a|`` by default (``abs=True``), ours the positive
  part (Kohlbrenner et al.); compared with ``abs=False, positive_attributions=True`` and with our
  function on ``|a|``. Quantus' ``weighted`` multiplies by ``|mask| / x_batch[2:].size`` (the size
  of the batch from its third sample on, not the map's): not compared; ours multiplies by
  ``n / |mask|``.
- TopKIntersection: Quantus sorts with numpy's unstable argsort; continuous random maps have no
  ties, so both agree exactly.
- NonSensitivity: Quantus 0.6's batched version XORs a per-step array with a per-feature one,
  so it is defined only for ``features_in_step=1``, compared here; Quantus uses its ``eps`` for
  both thresholds (ours: ``eps`` and ``atol``) and scores softmax probabilities by default
  (``softmax=True``; ours the target's logit): compared with ``softmax=False``. Its PyTorch
  wrapper casts to float32.
- InputInvariance: Quantus 0.6 shifts every input element but the first of each sample
  (``perturb_batch`` passes ``indices[i][1:]``), so its shifted input is not ``x + shift``; the
  test zeroes the first conv's weight tap that reads that element, so it has no effect. Quantus'
  shifted model takes the smallest output of its first conv on a
  constant input as the correction; with ``padding=0`` every output is the same (to float32
  rounding), so both shifted models agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from salience.metrics import axioms as X
from salience.metrics import localisation_more as L
from salience.metrics import similarity as S

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.parity
QS = quantus.functions.similarity_func


def _maps(seed=0, b=4, shape=(1, 9, 10)):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn((b, *shape), generator=g, dtype=torch.float64)
    noise = torch.randn((b, *shape), generator=g, dtype=torch.float64)
    return a, a + noise


# ---------------------------------------------------------------------------- similarity
def test_correlations_match_quantus():
    a, b = _maps(1)
    fa, fb = a.flatten(1).numpy(), b.flatten(1).numpy()
    for ours, theirs in [
        (S.spearman, QS.correlation_spearman),
        (S.pearson, QS.correlation_pearson),
        (S.kendall_tau, QS.correlation_kendall_tau),
    ]:
        ref = torch.tensor(np.asarray(theirs(fa, fb, batched=True), dtype=np.float64))
        torch.testing.assert_close(ours(a, b), ref, rtol=1e-12, atol=1e-12)


def test_kendall_tau_with_ties_matches_quantus():
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 4, (5, 40), generator=g).double()
    b = torch.randint(0, 3, (5, 40), generator=g).double()
    ref = torch.tensor(QS.correlation_kendall_tau(a.numpy(), b.numpy(), batched=True))
    torch.testing.assert_close(S.kendall_tau(a, b), ref, rtol=1e-12, atol=1e-12)


def test_cosine_is_one_minus_quantus_distance():
    a, b = _maps(3)
    ref = torch.tensor(
        [QS.cosine(x, y) for x, y in zip(a.flatten(1).numpy(), b.flatten(1).numpy(), strict=True)]
    )
    torch.testing.assert_close(S.cosine(a, b), 1 - ref, rtol=1e-12, atol=1e-12)


def test_ssim_matches_quantus_uniform_window():
    a, b = _maps(4, shape=(12, 13))  # (B, H, W): Quantus passes each 2-D map to skimage
    ref = torch.tensor(QS.ssim(a.numpy(), b.numpy(), batched=True))
    ours = S.ssim(a[:, None], b[:, None], window="uniform", win_size=7, sample_covariance=True)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- localisation
def _q_loc(metric_cls, a, mask, **kw):
    m = metric_cls(normalise=False, disable_warnings=True, **kw)
    x = np.zeros(a.shape, dtype=np.float32)
    y = np.zeros(a.shape[0], dtype=np.int64)
    out = m(model=None, x_batch=x, y_batch=y, a_batch=a.numpy(), s_batch=mask.numpy().astype(np.float32))
    return torch.tensor(np.asarray(out, dtype=np.float64))


def _loc_batch(seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn((5, 1, 8, 8), generator=g, dtype=torch.float64)
    mask = torch.rand((5, 1, 8, 8), generator=g) > 0.6
    return a, mask


def test_focus_matches_quantus_on_a_2x2_mosaic():
    g = torch.Generator().manual_seed(5)
    a = torch.randn((4, 1, 10, 12), generator=g, dtype=torch.float64)  # H != W
    positions = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]])
    cells = torch.zeros(4, 10, 12, dtype=torch.bool)
    cells[0, :5, :6] = cells[1, :5, 6:] = cells[2, 5:, :6] = cells[3, 5:, 6:] = True
    m = quantus.Focus(normalise=False, disable_warnings=True)
    x = np.zeros((4, 1, 10, 12), dtype=np.float32)
    ref = m(
        model=nn.Identity(),
        x_batch=x,
        y_batch=np.zeros(4, dtype=np.int64),
        a_batch=a.numpy(),
        custom_batch=[tuple(p) for p in positions.tolist()],
    )
    ref = torch.tensor(np.asarray(ref, dtype=np.float64))
    torch.testing.assert_close(L.focus(a, positions, grid=cells), ref, rtol=1e-8, atol=1e-8)


def test_auc_matches_quantus():
    a, mask = _loc_batch(6)
    a[0, 0, :2] = 0.0  # ties
    torch.testing.assert_close(
        L.localisation_auc(a, mask), _q_loc(quantus.AUC, a, mask), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("concept_influence", [False, True])
def test_top_k_intersection_matches_quantus(concept_influence):
    a, mask = _loc_batch(7)
    ref = _q_loc(quantus.TopKIntersection, a, mask, k=10, concept_influence=concept_influence)
    ours = L.top_k_intersection(a, mask, k=10, concept_influence=concept_influence)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_attribution_localisation_matches_quantus():
    a, mask = _loc_batch(8)
    ref = _q_loc(quantus.AttributionLocalisation, a, mask, abs=False, positive_attributions=True)
    torch.testing.assert_close(L.attribution_localisation(a, mask), ref, rtol=1e-8, atol=1e-8)
    ref_abs = _q_loc(quantus.AttributionLocalisation, a, mask, abs=True)
    torch.testing.assert_close(L.attribution_localisation(a.abs(), mask), ref_abs, rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------- axioms
def test_effective_complexity_matches_quantus():
    g = torch.Generator().manual_seed(9)
    a = torch.randn((4, 1, 6, 6), generator=g, dtype=torch.float64)
    a = a * (torch.rand(a.shape, generator=g) > 0.5)
    a = a / a.flatten(1).abs().amax(1)[:, None, None, None]  # one maximum |a| for every sample
    eps = 0.3
    q = quantus.EffectiveComplexity(eps=eps, disable_warnings=True)
    x = np.zeros(a.shape, dtype=np.float32)
    ref = q(model=None, x_batch=x, y_batch=np.zeros(4, dtype=np.int64), a_batch=(a * 3).numpy())
    ref = torch.tensor(np.asarray(ref, dtype=np.float64))
    torch.testing.assert_close(X.effective_complexity(a * 3, eps=eps), ref)
    q_abs = quantus.EffectiveComplexity(eps=eps, normalise=False, disable_warnings=True)
    ref_abs = q_abs(model=None, x_batch=x, y_batch=np.zeros(4, dtype=np.int64), a_batch=(a * 3).numpy())
    ours_abs = X.effective_complexity(a * 3, eps=eps, relative=False)
    torch.testing.assert_close(ours_abs, torch.tensor(np.asarray(ref_abs, dtype=np.float64)))


def _model32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).float()
    return model.eval()


def test_non_sensitivity_matches_quantus():
    model = _model32()
    g = torch.Generator().manual_seed(10)
    x = torch.rand((3, 1, 6, 6), generator=g)
    x[:, :, :, 0] = 0.0  # removing an element already 0 leaves the output unchanged
    a = torch.randn((3, 1, 6, 6), generator=g)
    a[:, :, :2] = 0.0  # unattributed rows
    a = a / a.flatten(1).abs().amax(1)[:, None, None, None]
    y = torch.tensor([0, 1, 2])
    q = quantus.NonSensitivity(eps=1e-5, features_in_step=1, perturb_baseline=0.0, disable_warnings=True)
    ref = q(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", softmax=False)
    ref = torch.tensor(np.asarray(ref, dtype=np.float64))
    ours = X.non_sensitivity(model, x, a, y, eps=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.double(), ref)
    assert float(ref.min()) > 0  # violations exist, so the comparison can fail


def test_input_invariance_matches_quantus():
    model = _model32()
    with torch.no_grad():  # the first input element (which Quantus leaves unshifted) is ignored
        model[0].weight[:, :, 0, 0] = 0.0
    g = torch.Generator().manual_seed(11)
    x = torch.rand((3, 1, 6, 6), generator=g)
    y = torch.tensor([0, 1, 2])

    def gradient(model, inputs, targets, times_input=False, **kw):
        inputs = torch.as_tensor(inputs).float().requires_grad_(True)
        out = model(inputs)
        grad = torch.autograd.grad(out.gather(1, torch.as_tensor(targets)[:, None]).sum(), inputs)[0]
        return (grad * inputs if times_input else grad).detach().numpy()

    class Grad:
        def __init__(self, model, times_input):
            self.model, self.times_input = model, times_input

        def __call__(self, x, target):
            return torch.as_tensor(gradient(self.model, x, target, self.times_input))

    for times_input, expected in [(False, 1.0), (True, 0.0)]:
        q = quantus.InputInvariance(disable_warnings=True)
        ref = q(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=None,
            explain_func=gradient,
            explain_func_kwargs={"times_input": times_input},
            device="cpu",
        )
        ref = torch.tensor(np.asarray(ref, dtype=np.float64))
        ours = X.input_invariance(Grad(model, times_input), x, y)
        torch.testing.assert_close(ours.double(), ref)
        assert torch.all(ref == expected)
