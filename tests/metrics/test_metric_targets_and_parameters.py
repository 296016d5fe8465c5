"""Metric targets and parameters: sensitivity and random-logit targets, substrates that keep their
state, completeness baselines, parameter names, tensor substrates, progress bars, grouping of
perturbations and validation in __init__."""

from __future__ import annotations

import pytest
import torch

import salience as sl
from salience import metrics as M
from toy_models import cnn, make_input


# ---------------------------------------------------------------------------- sensitivity targets
@pytest.mark.parametrize(
    "target",
    [sl.Probability(1), sl.LogProbability([0, 2]), sl.Contrast(1, foils=[0, 3]), sl.Class([0, 1]), 1, None],
    ids=["prob", "logprob-per-sample", "contrast", "class-per-sample", "int", "none"],
)
@pytest.mark.parametrize("fn", [M.max_sensitivity, M.avg_sensitivity])
def test_zero_radius_gives_zero_sensitivity_for_every_target_form(fn, target):
    # with radius 0 the perturbed copies equal x, so they must be explained with the same score
    model = cnn(1)
    x = make_input("signal", batch=2)
    out = fn(
        sl.Gradient(model),
        x,
        target,
        n_perturbations=3,
        radius=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out, torch.zeros(2, dtype=x.dtype), rtol=0, atol=1e-12)


def test_zero_radius_with_a_plain_callable_and_per_sample_target():
    model = cnn(1)
    x = make_input("signal", batch=2)
    grad = sl.Gradient(model)
    calls = []

    def explain(xx, t):  # a callable explainer: receives the target for the repeated rows
        calls.append(t)
        return grad.explain(xx, t).values

    out = M.max_sensitivity(
        explain,
        x,
        sl.Probability([2, 1]),
        n_perturbations=3,
        radius=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out, torch.zeros(2, dtype=x.dtype), rtol=0, atol=1e-12)
    assert torch.equal(calls[1].bind(6, None).explained(), torch.tensor([2, 2, 2, 1, 1, 1]))


def test_sensitivity_with_precomputed_attribution_keeps_the_user_target():
    model = cnn(1)
    x = make_input("signal", batch=2)
    att = sl.Gradient(model).explain(x, sl.Probability(1))
    out = M.MaxSensitivity(n_perturbations=2, radius=0.0, generator=torch.Generator().manual_seed(0))(
        model, x, att, sl.Probability(1), explainer=sl.Gradient(model)
    )
    torch.testing.assert_close(out, torch.zeros(2, dtype=x.dtype), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- substrates keep their state
def test_noisy_linear_imputation_without_generator_leaves_the_substrate_unchanged():
    from salience.layout import Layout

    sub = M.NoisyLinearImputation(noise=0.1)
    x = make_input("signal", batch=1)
    keep = torch.ones_like(x)
    keep[..., 3:6] = 0
    sub(x, Layout("b c t"), keep)
    assert sub.generator is None


# ---------------------------------------------------------------------------- random logit targets
@pytest.mark.parametrize("target", [sl.Probability(1), sl.LogProbability([1, 3]), sl.Class(2)])
def test_random_logit_scores_the_other_class_like_the_target(target):
    model = cnn(1)
    x = make_input("signal", batch=2)
    grad = sl.Gradient(model)
    seen = []

    def explain(xx, t):
        seen.append(t)
        return grad.explain(xx, t)

    out = M.random_logit(explain, x, target, n_classes=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2,)
    other = seen[1]
    assert type(other) is type(target)
    k = torch.as_tensor(target.k).expand(2)
    assert bool((torch.as_tensor(other.k) != k).all())
    # the metric equals the similarity of the two maps computed by hand
    ref = grad.explain(x, target).values.flatten(1)
    alt = grad.explain(x, other).values.flatten(1)
    torch.testing.assert_close(out, M._stats.similarity(ref, alt, "spearman"))


def test_random_logit_rejects_non_class_targets_with_a_parameter_error():
    model = cnn(1)
    x = make_input("signal", batch=2)
    with pytest.raises(sl.ParameterError, match="class target"):
        M.random_logit(sl.Gradient(model), x, sl.Output(0))


# ---------------------------------------------------------------------------- completeness baselines
def _linear():
    from toy_models import Linear

    w = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return Linear(w).eval(), w


@pytest.mark.parametrize("baseline", ["zeros", "mean", 0.5, lambda x: x.flip(-1), "tensor"])
def test_completeness_gap_accepts_every_ig_baseline(baseline):
    # on a linear model, IG with the same baseline is exact: the gap is zero
    model, _ = _linear()
    x = make_input("signal", batch=2)[:, :2, :5]
    if baseline == "tensor":
        baseline = torch.linspace(-1, 1, 5, dtype=x.dtype)[None, None]
    att = sl.IntegratedGradients(model, baseline=baseline, n_steps=4).explain(x, 1)
    gap = M.completeness_gap(model, x, att, 1, baseline=baseline)
    torch.testing.assert_close(gap, torch.zeros(2, dtype=x.dtype), rtol=0, atol=1e-12)
    torch.testing.assert_close(M.CompletenessGap(baseline=baseline)(model, x, att, 1), gap)


def test_completeness_gap_validates_its_baseline():
    with pytest.raises(sl.ParameterError, match="baseline"):
        M.CompletenessGap(baseline="median")
    with pytest.raises(sl.ParameterError, match="batch_size"):
        M.CompletenessGap(batch_size=0)
    model, _ = _linear()
    x = make_input("signal", batch=2)[:, :2, :5]
    with pytest.raises(sl.ParameterError, match="baseline"):
        M.completeness_gap(model, x, torch.zeros_like(x), 1, baseline=torch.zeros(3))


# ---------------------------------------------------------------------------- one name per meaning
def test_parameter_names_do_not_clash_with_other_components():
    import inspect

    for fn in (M.deletion_curve, M.insertion_curve, M.Deletion, M.Insertion):
        params = inspect.signature(fn).parameters
        assert "channel_reduction" in params and "reduce_channels" not in params  # Saliency's is a bool
    for fn in (
        M.model_randomisation,
        M.random_logit,
        M.ModelRandomisation,
        M.RandomLogit,
        M.faithfulness_correlation,
        M.FaithfulnessCorrelation,
    ):
        params = inspect.signature(fn).parameters
        assert "similarity" in params and "similarity_fn" not in params
    for fn in (M.model_randomisation, M.ModelRandomisation):
        assert "use_abs" in inspect.signature(fn).parameters  # as ClassRelevant
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn_like(x)
    mean = M.deletion_curve(model, x, a, 1, steps=4, channel_reduction="mean", progress=False)
    torch.testing.assert_close(
        mean, M.deletion_curve(model, x, a.mean(1, keepdim=True), 1, steps=4, progress=False)
    )
    with pytest.raises(sl.ParameterError, match="channel_reduction"):
        M.Deletion(channel_reduction="median")


# ---------------------------------------------------------------------------- one row builder
def test_tensor_substrate_is_a_reference_for_metrics_and_explainers():
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn_like(x)
    ref = torch.randn_like(x)  # one reference per sample
    curve = M.deletion_curve(model, x, a, 1, steps=5, substrate=ref, progress=False)
    assert torch.equal(
        curve, M.deletion_curve(model, x, a, 1, steps=5, substrate=sl.masking.Reference(ref), progress=False)
    )
    # by hand: the last state replaces everything with the reference
    torch.testing.assert_close(curve[:, -1], model(ref)[:, 1])
    occ = sl.Occlusion(model, window={"t": 4}, substrate=ref[:1], progress=False).explain(x, 1)
    occ_ref = sl.Occlusion(model, window={"t": 4}, substrate=sl.masking.Reference(ref[:1]), progress=False)
    assert torch.equal(occ.values, occ_ref.explain(x, 1).values)


@pytest.mark.parametrize("substrate", [0.0, 0.3, "mean", "interpolate", sl.masking.Blur(1.0)])
def test_filler_bool_and_float_masks_agree(substrate):
    from salience.masking import Filler

    x = make_input("signal", batch=3)
    keep = torch.rand(5, 1, x.shape[-1], generator=torch.Generator().manual_seed(0)) > 0.5
    f = Filler(x, substrate, "b c t")
    idx = torch.tensor([0, 2, 2, 1, 0])
    exact = f(idx, keep)
    torch.testing.assert_close(f(idx, keep.to(x.dtype)), exact, rtol=0, atol=1e-12)
    # a run of masks against one sample equals the per-row form
    torch.testing.assert_close(
        f(2, keep.to(x.dtype)), f(torch.full((5,), 2), keep.to(x.dtype)), rtol=0, atol=0
    )
    torch.testing.assert_close(exact[keep.expand_as(exact)], x[idx][keep.expand_as(exact)], rtol=0, atol=0)


# ---------------------------------------------------------------------------- progress bars
@pytest.mark.parametrize("enabled", [True, False])
def test_progress_bars_on_faithfulness_correlation_and_sensitivity(enabled, capsys):
    pytest.importorskip("tqdm")
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn_like(x)
    M.FaithfulnessCorrelation(
        n_runs=3, subset_size=4, generator=torch.Generator().manual_seed(0), progress=enabled
    )(model, x, a, 1)
    M.MaxSensitivity(n_perturbations=2, generator=torch.Generator().manual_seed(0), progress=enabled)(
        model, x, a, 1, explainer=sl.Gradient(model)
    )
    err = capsys.readouterr().err
    assert ("faithfulness_correlation" in err and "max_sensitivity" in err) == enabled
    assert (err == "") == (not enabled)


def test_sensitivity_does_not_depend_on_how_perturbations_are_grouped():
    model = cnn(1)
    x = make_input("signal", batch=2)
    kw = dict(n_perturbations=5, radius=0.1, progress=False)
    one = M.avg_sensitivity(
        sl.Gradient(model, batch_size=2), x, 1, generator=torch.Generator().manual_seed(0), **kw
    )
    all_ = M.avg_sensitivity(sl.Gradient(model), x, 1, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(one, all_, rtol=1e-12, atol=1e-12)
    assert bool((one > 0).all())


# ---------------------------------------------------------------------------- validated parameters
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: M.MaxSensitivity(norm="l2"), "norm"),
        (lambda: M.MaxSensitivity(normalize="yes"), "normalize"),
        (lambda: M.AvgSensitivity(generator=0), "generator"),
        (lambda: M.Deletion(batch_size=0), "batch_size"),
        (lambda: M.Deletion(substrate="median"), "substrate"),
        (lambda: M.Insertion(progress=1), "progress"),
        (lambda: M.FaithfulnessCorrelation(similarity="kendall"), "similarity"),
        (lambda: M.FaithfulnessCorrelation(batch_size=-1), "batch_size"),
        (lambda: M.FaithfulnessCorrelation(substrate=object()), "substrate"),
        (lambda: M.Infidelity(perturbation=3), "perturbation"),
        (lambda: M.Infidelity(normalize=None), "normalize"),
        (lambda: M.Infidelity(batch_size=1.5), "batch_size"),
        (lambda: M.ModelRandomisation(use_abs="no"), "use_abs"),
        (lambda: M.ModelRandomisation(layers="0"), "layers"),
        (lambda: M.ModelRandomisation(generator=1), "generator"),
        (lambda: M.RandomLogit(n_classes=1), "n_classes"),
        (lambda: M.RandomLogit(similarity="kendall"), "similarity"),
    ],
)
def test_metric_classes_validate_in_init(make, match):
    with pytest.raises(sl.ParameterError, match=match):
        make()


def test_zero_radius_sensitivity_of_an_explainer_with_a_stripped_final_activation():
    # the perturbed copies must see the same explained function as Explainer.explain
    model = torch.nn.Sequential(cnn(1), torch.nn.Softmax(-1)).eval()
    x = make_input("signal", batch=2)
    cam = sl.GradCAM(model, layer="0.2", final_activation="strip")
    out = M.max_sensitivity(
        cam, x, 1, n_perturbations=2, radius=0.0, generator=torch.Generator().manual_seed(0), progress=False
    )
    torch.testing.assert_close(out, torch.zeros(2, dtype=x.dtype), rtol=0, atol=1e-12)


def test_random_logit_on_a_single_logit_binary_model_uses_two_classes():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 1)).double().eval()
    x = make_input("signal", batch=2)
    out = M.random_logit(sl.Gradient(model), x, sl.Probability(1), generator=torch.Generator().manual_seed(0))
    # Probability(0) = 1 - sigmoid(z): its gradient is the negated gradient of Probability(1)
    torch.testing.assert_close(out, torch.full((2,), -1.0, dtype=x.dtype))
