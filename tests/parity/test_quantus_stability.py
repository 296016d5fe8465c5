"""Parity with Quantus 0.6 for the stability metrics (salience.metrics.stability).

Both sides get the same perturbations: ours through ``perturbation=`` (a tensor (B, n, *S) of
additive noise), Quantus through a ``perturb_func`` that adds step ``j``'s slice of the same
tensor. Quantus' PyTorch wrapper casts inputs to float32 for its own model calls, so the model
is float32 and the tolerance 1e-4 (relative).

Definitional differences pinned (the tests switch Quantus' defaults off or avoid the case):
- Quantus normalises attributions by their maximum by default for LocalLipschitzEstimate,
  Continuity and Consistency and takes ``abs`` for Continuity and Consistency; ours keeps sign
  and scale (``normalise=False, abs=False`` here).
- Denominators: Quantus adds 1e-10 (LLE) or 1e-9 (Continuity) to ``||x - x'||``; ours divides
  exactly and skips a copy at distance 0 (a translation of 0). The relative stabilities: Quantus
  replaces a zero denominator by ``eps_min``, ours takes ``max(den, eps_min)`` (Agarwal et al.);
  both agree whenever the denominator exceeds ``eps_min``, as here.
- Prediction changes (RIS/ROS/RRS, ``return_nan_when_prediction_changes=True`` by default):
  Quantus sets the copy to NaN and then takes ``np.max``, so one changed prediction makes the
  sample NaN; ours (``keep_prediction=True``) takes the maximum over the copies that keep the
  prediction (Agarwal et al.'s constraint) and is NaN only when none does
  (``test_prediction_change_differs``).
- Continuity with ``return_nan_when_prediction_changes`` compares with the label ``y``; ours
  with the prediction at ``x`` (not exercised here: off on both sides).
- Consistency: Quantus' default discretisation ``top_n_sign`` hashes the signs of the *first*
  five elements of the flattened map; ours defaults to the positions and signs of the five
  largest ``|a|`` and takes Quantus' as a callable here. A sample no other sample shares a label
  with scores 0 in Quantus (0 / 1e-9) and NaN in ours.
- Max-/Avg-Sensitivity: Quantus divides by the Frobenius norm of the explanation at ``x`` by
  default (ours with ``normalize=True``; Yeh et al. and our default do not) and draws uniform
  noise of bound 0.2 (ours: ``radius=0.02``, Captum's default). With
  ``return_nan_when_prediction_changes`` one changed prediction makes Quantus' sample NaN; ours
  (``keep_prediction=True``) reduces over the copies kept.
- RelativeOutputStability: Quantus' ``softmax=True`` default compares probabilities; Agarwal et
  al. compare logits, as ours does (``softmax=False`` here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import salience as sl
from salience.metrics import stability as S
from toy_models import cnn, make_input

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.parity

F32 = torch.float32


def _setup(b=3, seed=1):
    model = cnn(2, dtype=F32)
    x = make_input("image", batch=b, seed=seed, dtype=F32)
    y = model(x).argmax(1)
    return model, x, y


def _explain_func(expl):
    def explain(model, inputs, targets, **kwargs):
        xs = torch.as_tensor(np.asarray(inputs), dtype=F32)
        return expl.explain(xs, torch.as_tensor(np.asarray(targets))).values.numpy()

    return explain


def _feeder(noise):
    """Quantus perturb_func adding step j's noise (called once per step, the batch at once)."""
    step = [0]

    def perturb(arr, indices=None, **kwargs):
        j = step[0]
        step[0] += 1
        return arr + noise[:, j].reshape(arr.shape[0], -1).numpy().astype(arr.dtype)

    return perturb


def _noise(x, n, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((x.shape[0], n, *x.shape[1:]), generator=g, dtype=F32) * scale


def _quantus(metric, model, x, y, a, expl):
    out = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=a.numpy(),
        explain_func=_explain_func(expl),
        device="cpu",
        channel_first=True,
        softmax=False,
        batch_size=x.shape[0],
    )
    return torch.tensor(np.asarray(out, dtype=np.float64))


def _close(ours, ref) -> bool:
    """True when ours equals Quantus's within float32 (raises with the difference otherwise)."""
    torch.testing.assert_close(ours.double(), ref, rtol=1e-4, atol=1e-6)
    return True


def test_local_lipschitz_estimate():
    model, x, y = _setup()
    expl = sl.Gradient(model)
    a = expl.explain(x, y).values
    n, noise = 4, _noise(x, 4, 0.1, 2)
    ours = S.local_lipschitz_estimate(expl, x, y, n_perturbations=n, perturbation=noise, progress=False)
    metric = quantus.LocalLipschitzEstimate(
        nr_samples=n, perturb_func=_feeder(noise), normalise=False, abs=False, disable_warnings=True
    )
    assert _close(ours, _quantus(metric, model, x, y, a, expl))


def test_relative_input_stability():
    model, x, y = _setup()
    expl = sl.InputXGradient(model)
    a = expl.explain(x, y).values
    n, noise = 3, _noise(x, 3, 0.01, 3)
    ours = S.relative_input_stability(expl, x, y, n_perturbations=n, perturbation=noise, progress=False)
    metric = quantus.RelativeInputStability(nr_samples=n, perturb_func=_feeder(noise), disable_warnings=True)
    ref = _quantus(metric, model, x, y, a, expl)
    assert torch.isfinite(ref).all()  # no prediction changed at this noise
    assert _close(ours, ref)


def test_relative_output_stability():
    model, x, y = _setup()
    expl = sl.Gradient(model)
    a = expl.explain(x, y).values
    n, noise = 3, _noise(x, 3, 0.01, 4)
    ours = S.relative_output_stability(expl, x, y, n_perturbations=n, perturbation=noise, progress=False)
    metric = quantus.RelativeOutputStability(nr_samples=n, perturb_func=_feeder(noise), disable_warnings=True)
    ref = _quantus(metric, model, x, y, a, expl)
    assert torch.isfinite(ref).all()
    assert _close(ours, ref)


@pytest.mark.parametrize("layer", ["1", "3"])
def test_relative_representation_stability(layer):
    model, x, y = _setup()
    expl = sl.Gradient(model)
    a = expl.explain(x, y).values
    n, noise = 3, _noise(x, 3, 0.01, 5)
    ours = S.relative_representation_stability(
        expl, x, y, layer=layer, n_perturbations=n, perturbation=noise, progress=False
    )
    metric = quantus.RelativeRepresentationStability(
        nr_samples=n, perturb_func=_feeder(noise), layer_names=[layer], disable_warnings=True
    )
    ref = _quantus(metric, model, x, y, a, expl)
    assert torch.isfinite(ref).all()
    assert _close(ours, ref)


def test_prediction_change_differs():
    """Large noise: Quantus' np.max makes a sample NaN as soon as one copy changes class; ours
    keeps the maximum over the copies that do not (equal to Quantus where none changed)."""
    model, x, y = _setup(b=6, seed=3)
    expl = sl.Gradient(model)
    a = expl.explain(x, y).values
    n, noise = 6, _noise(x, 6, 1.5, 6)
    ours = S.relative_input_stability(expl, x, y, n_perturbations=n, perturbation=noise, progress=False)
    metric = quantus.RelativeInputStability(nr_samples=n, perturb_func=_feeder(noise), disable_warnings=True)
    ref = _quantus(metric, model, x, y, a, expl)
    nan = torch.isnan(ref)
    assert nan.any() and not torch.isnan(ours[nan]).all()
    assert _close(ours[~nan], ref[~nan])
    # ours where Quantus is NaN: the maximum over the copies keeping the prediction, by hand
    xp = x[:, None] + noise
    kept = model(xp.flatten(0, 1)).argmax(1).reshape(x.shape[0], n) == y[:, None]
    for i in nan.nonzero().flatten().tolist():
        vals = []
        for j in range(n):
            if kept[i, j]:
                e = expl.explain(xp[i, j][None], y[i : i + 1]).values[0]
                num = ((a[i] - e) / torch.where(a[i] == 0, 1e-6, a[i])).norm()
                den = ((x[i] - xp[i, j]) / torch.where(x[i] == 0, 1e-6, x[i])).norm().clamp_min(1e-6)
                vals.append(float(num / den))
        expected = max(vals) if vals else float("nan")
        torch.testing.assert_close(
            ours[i].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=0, equal_nan=True
        )


@pytest.mark.parametrize("n_steps", [5, 8])
def test_continuity(n_steps):
    model, x, y = _setup()
    expl = sl.Gradient(model)
    a = expl.explain(x, y).values
    ours = S.continuity(expl, x, y, n_steps=n_steps, progress=False)
    metric = quantus.Continuity(nr_steps=n_steps, normalise=False, abs=False, disable_warnings=True)
    assert _close(ours, _quantus(metric, model, x, y, a, expl))


def test_consistency():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    x = make_input("image", batch=10, seed=7, dtype=F32)
    assert len(set(model(x).argmax(1).tolist())) > 1  # predictions differ: fractions strictly inside (0, 1)
    g = torch.Generator().manual_seed(8)
    a = torch.randn(x.shape, generator=g, dtype=F32)
    # three sign patterns on the first five elements, so labels are shared
    patterns = torch.tensor([[1, 1, -1, 1, -1], [-1, 1, 1, 1, 1], [1, -1, -1, -1, 1]], dtype=F32)
    flat = a.reshape(10, -1)
    flat[:, :5] = flat[:, :5].abs() * patterns[torch.tensor([0, 0, 1, 1, 1, 2, 0, 1, 2, 2])]
    flat[9, 0] = -flat[9, 0].abs()  # a label no other sample shares
    ours = S.consistency(model, x, a, discretise=lambda v: torch.sign(v[:, :5]))
    metric = quantus.Consistency(normalise=False, abs=False, disable_warnings=True)
    ref = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=np.zeros(10, dtype=np.int64),
        a_batch=a.numpy(),
        device="cpu",
        channel_first=True,
        batch_size=10,
    )
    ref = torch.tensor(np.asarray(ref, dtype=np.float64))
    assert torch.isnan(ours[9]) and ref[9] == 0
    assert ((ours[:9] > 0) & (ours[:9] < 1)).any()
    assert _close(ours[:9], ref[:9])


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("which", ["max", "avg"])
def test_max_avg_sensitivity(which, keep):
    """Max-/Avg-Sensitivity on the stability loop: Quantus' defaults (difference, Frobenius norm
    over the Frobenius norm of the explanation at x: ours with ``normalize=True``), the same
    noise on both sides. With ``keep_prediction``/``return_nan_when_prediction_changes``, large
    noise on two samples changes some of their predictions: Quantus then takes np.max/np.mean
    (one change makes the sample NaN), ours the max/mean over the copies kept; the samples where
    no copy changed agree, and ours is finite wherever a copy was kept."""
    from salience.metrics import avg_sensitivity, max_sensitivity

    model, x, y = _setup(b=4, seed=3)
    expl = sl.Gradient(model)
    a = expl.explain(x, y).values
    n = 6
    scale = torch.tensor([0.05, 0.05, 3.0, 3.0] if keep else [0.05] * 4).reshape(4, 1, 1, 1, 1)
    noise = _noise(x, n, 1.0, 6) * scale
    fn = max_sensitivity if which == "max" else avg_sensitivity
    ours = fn(
        expl,
        x,
        y,
        n_perturbations=n,
        perturbation=noise,
        normalize=True,
        keep_prediction=keep,
        progress=False,
    )
    cls = quantus.MaxSensitivity if which == "max" else quantus.AvgSensitivity
    metric = cls(
        nr_samples=n,
        perturb_func=_feeder(noise),
        normalise=False,
        abs=False,
        return_nan_when_prediction_changes=keep,
        disable_warnings=True,
    )
    ref = _quantus(metric, model, x, y, a, expl)
    if not keep:
        assert _close(ours, ref)
        return
    with torch.no_grad():
        same = torch.stack([model(x + noise[:, j]).argmax(1) == y for j in range(n)], 1)
    whole = same.all(1)
    assert whole.any() and not whole.all(), "the noise must change some predictions, not all"
    assert _close(ours[whole], ref[whole])
    assert torch.isnan(ref[~whole]).all()
    # the partly kept samples, by hand: the max/mean over the kept copies
    sens = torch.stack(
        [
            (expl.explain(x + noise[:, j], y).values - a).flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)
            for j in range(n)
        ],
        1,
    ).double()
    kept = torch.where(same, sens, torch.nan)
    by_hand = kept.nan_to_num(-torch.inf).amax(1) if which == "max" else torch.nanmean(kept, 1)
    assert (same.any(1) & ~whole).any()
    torch.testing.assert_close(ours.double(), by_hand, rtol=1e-4, atol=1e-6)
