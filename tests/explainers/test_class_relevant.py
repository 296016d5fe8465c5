"""ClassRelevant (VAR): the formula on fixed base attributions, tau edges, targets, cost, scale."""

from __future__ import annotations

import pytest
import torch

import salience as sl
from toy_models import Counting, Linear, cnn, make_input

D = torch.float64


def var_reference(
    maps: torch.Tensor, t: int, tau: float, use_abs: bool = True, inv_t: float = 10
) -> torch.Tensor:
    """VAR's ClassSpecificAttributionWrapper, literally: maps (K, *A) for the classes in K order."""
    s = maps.abs() if use_abs else maps
    m = torch.softmax(inv_t * s, dim=0)  # temperature 0.1, hard-coded in VAR
    m_t = m[t]
    return maps[t] * m_t * ((m_t - 1 / maps.shape[0]) > tau)


@pytest.fixture
def linear():
    g = torch.Generator().manual_seed(3)
    w = 0.3 * torch.randn(5, 2, 12, generator=g, dtype=D)  # five classes; gradients are exactly w[k]
    x = torch.randn(3, 2, 12, generator=g, dtype=D)
    return Linear(w).eval(), w, x


@pytest.mark.parametrize("tau", [0.01, 0.0, 0.3, -0.5])
@pytest.mark.parametrize("use_abs", [True, False])
def test_formula_exact_on_fixed_base_attributions(linear, tau, use_abs):
    model, w, x = linear
    classes = [4, 0, 2, 1]
    targets = torch.tensor([2, 0, 1])
    attr = sl.ClassRelevant(sl.Gradient(model), classes=classes, tau=tau, use_abs=use_abs).explain(x, targets)
    for b in range(3):
        ref = var_reference(w[classes], classes.index(int(targets[b])), tau, use_abs)
        torch.testing.assert_close(attr.values[b], ref, rtol=0, atol=0)
    assert attr.info["classes"].tolist() == [classes] * 3
    assert attr.target.tolist() == [2, 0, 1]


def test_formula_on_ig_of_a_cnn_matches_separate_runs():
    model = cnn(1)
    x = make_input("signal", batch=2)
    ig = sl.IntegratedGradients(model, n_steps=5)
    classes = [0, 1, 2, 3]
    maps = torch.stack([ig.explain(x, target=k).values for k in classes], 1)  # (B, K, C, T)
    # the toy CNN's maps are ~0.01: temperature 0.1 would give a flat softmax (all zeros)
    attr = sl.ClassRelevant(ig, classes=classes, temperature=0.004).explain(x, target=[3, 1])
    assert (attr.values != 0).float().mean() > 0.1
    for b, t in enumerate([3, 1]):
        ref = var_reference(maps[b], t, 0.01, inv_t=1 / 0.004)
        torch.testing.assert_close(attr.values[b], ref, rtol=1e-12, atol=1e-14)
    assert attr.delta is None  # the class-relevant map is not complete; no completeness gap


@pytest.mark.parametrize("k", [2, 3, 5])
def test_tau_at_or_above_one_minus_one_over_k_gives_zeros(linear, k):
    model, _, x = linear
    classes = list(range(k))
    for tau in (1 - 1 / k, 1.0, min(1.0, 1 - 1 / k + 1e-3)):
        attr = sl.ClassRelevant(sl.Gradient(model), classes=classes, tau=tau).explain(x, 0)
        assert torch.count_nonzero(attr.values) == 0


def test_tau_zero_keeps_exactly_the_above_uniform_share(linear):
    model, w, x = linear
    attr = sl.ClassRelevant(sl.Gradient(model), classes="all", tau=0.0).explain(x, 1)
    m = torch.softmax(10 * w.abs(), 0)[1]
    keep = m > 1 / 5
    assert keep.any() and (~keep).any()
    torch.testing.assert_close(attr.values[0] != 0, keep & (w[1] != 0), rtol=0, atol=0)
    torch.testing.assert_close(attr.info["share"][0], m, rtol=0, atol=0)


def test_target_outside_classes_is_added(linear):
    model, w, x = linear
    attr = sl.ClassRelevant(sl.Gradient(model), classes=[0, 1], tau=0.0).explain(x, [3, 0, 1])
    assert attr.info["n_classes"].tolist() == [3, 2, 2]
    assert attr.info["classes"].tolist() == [[0, 1, 3], [0, 1, -1], [0, 1, -1]]
    torch.testing.assert_close(attr.values[0], var_reference(w[[0, 1, 3]], 2, 0.0), rtol=0, atol=1e-15)
    torch.testing.assert_close(attr.values[1], var_reference(w[[0, 1]], 0, 0.0), rtol=0, atol=1e-15)


def test_duplicates_are_compared_once(linear):
    model, w, x = linear
    a = sl.ClassRelevant(sl.Gradient(model), classes=[2, 0, 2, 0, 1]).explain(x, 0).values
    b = sl.ClassRelevant(sl.Gradient(model), classes=[2, 0, 1]).explain(x, 0).values
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_per_sample_sets_of_different_sizes_equal_single_sample_runs(linear):
    model, _, x = linear
    sets = [[0, 1], [1, 2, 3, 4], [4, 0, 3]]
    ig = sl.IntegratedGradients(model, n_steps=3)
    whole = sl.ClassRelevant(ig, classes=sets).explain(x, [1, 2, 3]).values
    for b in range(3):
        one = sl.ClassRelevant(ig, classes=sets[b]).explain(x[b : b + 1], [1, 2, 3][b]).values
        torch.testing.assert_close(whole[b : b + 1], one, rtol=1e-13, atol=1e-15)
    tensor_sets = sl.ClassRelevant(ig, classes=torch.tensor([[0, 1], [1, 2], [4, 3]])).explain(x, [1, 2, 3])
    assert tensor_sets.info["classes"].tolist() == [[0, 1], [1, 2], [4, 3]]


@pytest.mark.parametrize(
    "make, rows_per_sample",
    [(lambda m: sl.Gradient(m), 1), (lambda m: sl.IntegratedGradients(m, n_steps=4), 4)],
)
def test_one_batched_inner_run_of_k_times_b_rows(make, rows_per_sample):
    model = Counting(cnn(1))
    x = make_input("signal", batch=3)
    sl.ClassRelevant(make(model), classes="all", normalize=True).explain(x, target=1)
    # one forward over the B samples (classes, scores at x), then ONE run over B * K rows
    assert model.rows == [3, 3 * 4 * rows_per_sample]
    model = Counting(cnn(1))
    sl.ClassRelevant(make(model), classes="all", normalize=True).explain(x, target=None)
    # the forward that finds the prediction is cached by the engine and reused for the class sets
    assert model.rows == [3, 3 * 4 * rows_per_sample]


def test_engine_chunks_the_stacked_rows():
    model = Counting(cnn(1))
    x = make_input("signal", batch=3)
    a = sl.ClassRelevant(
        sl.IntegratedGradients(model, n_steps=4, batch_size=5), classes="all", normalize=True
    ).explain(x, 2)
    assert max(model.rows) <= 5 and sum(model.rows) == 3 + 48
    b = sl.ClassRelevant(sl.IntegratedGradients(cnn(1), n_steps=4), classes="all", normalize=True).explain(
        x, 2
    )
    assert torch.count_nonzero(a.values) > 0
    torch.testing.assert_close(a.values, b.values, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", [sl.Probability, sl.LogProbability, sl.Class])
def test_other_classes_follow_the_kind_of_target(kind):
    model = cnn(1)
    x = make_input("signal")
    g = sl.Gradient(model)
    maps = torch.stack([g.explain(x, kind(k)).values for k in range(4)], 1)
    attr = sl.ClassRelevant(g, classes="all", tau=0.0).explain(x, kind(2))
    for b in range(2):
        torch.testing.assert_close(attr.values[b], var_reference(maps[b], 2, 0.0), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(attr.scores, g.explain(x, kind(2)).scores)


def test_predicted_target_is_recorded():
    model = cnn(2)
    x = make_input("image", batch=3)
    attr = sl.ClassRelevant(sl.Gradient(model), classes=[0, 1], normalize=True).explain(x)
    pred = model(x).argmax(1)
    assert torch.equal(attr.target, pred)
    for b in range(3):  # the predicted class was added where it was missing
        assert int(pred[b]) in attr.info["classes"][b].tolist()


@pytest.mark.parametrize("target", [sl.Contrast(1, 0), sl.Output(1), sl.Score(lambda o: o.sum(1))])
def test_non_class_targets_are_refused(target):
    model = cnn(1)
    with pytest.raises(sl.TargetError, match="class target"):
        sl.ClassRelevant(sl.Gradient(model), classes="all").explain(make_input("signal"), target)


def test_top_classes_rule_is_var_contrastive_set():
    out = torch.tensor([[0.1, 3.0, 2.0, -1.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    rule = sl.TopClasses(2)
    assert rule.select(out, torch.tensor([1, 4])).tolist() == [[1, 2, 3], [0, 1, 4]]
    # a target that is neither top-k nor least likely takes the least likely's place
    assert rule.select(out, torch.tensor([0, 2])).tolist() == [[1, 2, 0], [0, 1, 2]]
    assert sl.TopClasses(1, least_likely=False).select(out, torch.tensor([4, 0])).tolist() == [[4], [0]]


def test_top_classes_and_callable_rules_in_the_wrapper(linear):
    model, w, x = linear
    out = model(x).detach()
    attr = sl.ClassRelevant(sl.Gradient(model), classes=sl.TopClasses(2)).explain(x)
    assert (attr.info["n_classes"] == 3).all()
    assert attr.info["classes"][:, 0].tolist() == out.argmax(1).tolist()
    assert attr.info["classes"][:, 2].tolist() == out.argmin(1).tolist()
    rule = lambda scores: scores.argsort(1)[:, :2]  # noqa: E731  (the two least likely classes)
    attr = sl.ClassRelevant(sl.Gradient(model), classes=rule).explain(x, 0)
    for b in range(3):
        expect = out[b].argsort()[:2].tolist()
        assert attr.info["classes"][b].tolist()[:2] == expect
        assert 0 in attr.info["classes"][b].tolist()


def test_binary_single_logit_model_with_probability_target():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 2, 6, generator=g, dtype=D)
    model = Linear(w).eval()
    x = torch.randn(2, 2, 6, generator=g, dtype=D)
    attr = sl.ClassRelevant(sl.Gradient(model), classes="all", tau=0.0).explain(x, sl.Probability(1))
    assert attr.info["classes"].tolist() == [[0, 1], [0, 1]]
    maps = torch.stack([sl.Gradient(model).explain(x, sl.Probability(k)).values for k in (0, 1)], 1)
    for b in range(2):
        torch.testing.assert_close(attr.values[b], var_reference(maps[b], 1, 0.0), rtol=0, atol=1e-15)
    with pytest.raises(sl.ParameterError, match="at least two classes"):
        sl.ClassRelevant(sl.Gradient(model), classes="all").explain(x, 0)  # Class: one output only


def test_scale_dependence_and_normalize(linear):
    """Multiplying the logits by c multiplies every gradient map by c: the raw softmax gets sharper
    (a different mask), the normalised one does not (the result is exactly c times)."""
    model, w, x = linear
    c = 20.0
    scaled = Linear(c * w).eval()
    t = [0, 1, 2]
    raw = sl.ClassRelevant(sl.Gradient(model), classes="all").explain(x, t)
    raw_c = sl.ClassRelevant(sl.Gradient(scaled), classes="all").explain(x, t)
    assert not torch.allclose(raw_c.values, c * raw.values)
    assert not torch.allclose(raw_c.info["share"], raw.info["share"])
    # the sharper competition: the target's share is pushed towards 0 or 1
    spread = lambda s: (s - 0.5).abs().mean()  # noqa: E731
    assert spread(raw_c.info["share"]) > spread(raw.info["share"])
    for norm in (True, "max", "mean"):
        a = sl.ClassRelevant(sl.Gradient(model), classes="all", normalize=norm).explain(x, t)
        b = sl.ClassRelevant(sl.Gradient(scaled), classes="all", normalize=norm).explain(x, t)
        torch.testing.assert_close(b.values, c * a.values, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b.info["share"], a.info["share"], rtol=1e-12, atol=1e-14)
    # "max": the softmax sees |H| / max|H| of the sample, i.e. values in [0, 1]
    a = sl.ClassRelevant(sl.Gradient(model), classes="all", normalize="max", tau=-1).explain(x, t)
    s = w.abs() / w.abs().max()
    torch.testing.assert_close(a.info["share"][0], torch.softmax(10 * s, 0)[0], rtol=1e-13, atol=1e-15)


def test_temperature_parameter(linear):
    model, w, x = linear
    attr = sl.ClassRelevant(sl.Gradient(model), classes="all", temperature=0.5, tau=0.0).explain(x, 3)
    m = torch.softmax(w.abs() / 0.5, 0)[3]
    torch.testing.assert_close(attr.values[0], w[3] * m * (m > 0.2), rtol=1e-14, atol=1e-16)


def test_inside_and_around_smoothgrad():
    model = cnn(1)
    x = make_input("signal")
    base = sl.ClassRelevant(sl.Gradient(model), classes=[0, 2, 3], normalize=True).explain(x, 2).values
    assert torch.count_nonzero(base) > 0
    inner = (
        sl.ClassRelevant(
            sl.SmoothGrad(
                sl.Gradient(model), n_samples=2, sigma=0.0, generator=torch.Generator().manual_seed(0)
            ),
            classes=[0, 2, 3],
            normalize=True,
        )
        .explain(x, 2)
        .values
    )
    outer = (
        sl.SmoothGrad(
            sl.ClassRelevant(sl.Gradient(model), classes=[0, 2, 3], normalize=True),
            n_samples=2,
            sigma=0.0,
            generator=torch.Generator().manual_seed(0),
        )
        .explain(x, 2)
        .values
    )
    torch.testing.assert_close(inner, base, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(outer, base, rtol=1e-12, atol=1e-14)
    # per-sample sets follow the original sample of each noisy row
    noisy = (
        sl.SmoothGrad(
            sl.ClassRelevant(sl.Gradient(model), classes=[[0, 1], [2, 3]], normalize=True),
            n_samples=3,
            sigma=0.0,
            generator=torch.Generator().manual_seed(0),
        )
        .explain(x, [1, 3])
        .values
    )
    direct = (
        sl.ClassRelevant(sl.Gradient(model), classes=[[0, 1], [2, 3]], normalize=True)
        .explain(x, [1, 3])
        .values
    )
    assert torch.count_nonzero(direct[0]) > 0 and torch.count_nonzero(direct[1]) > 0
    torch.testing.assert_close(noisy, direct, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(classes="some"), "classes"),
        (dict(classes=[]), "classes"),
        (dict(classes=[0, -1]), ">= 0"),
        (dict(classes=[0, 1.5]), "integer"),
        (dict(classes=[[0, 1], 2]), "not a mix"),
        (dict(classes=[[0, 1], []]), "empty"),
        (dict(classes=torch.zeros(2, 2, 2, dtype=torch.long)), "shape"),
        (dict(classes="all", tau=1.5), "tau"),
        (dict(classes="all", temperature=0.0), "temperature"),
        (dict(classes="all", use_abs=1), "use_abs"),
        (dict(classes="all", normalize="l2"), "normalize"),
        (dict(classes=3), "classes"),
    ],
)
def test_parameter_errors(kw, match):
    with pytest.raises(sl.ParameterError, match=match):
        sl.ClassRelevant(sl.Gradient(cnn(1)), **kw)


def test_call_time_errors():
    model = cnn(1)
    x = make_input("signal")
    with pytest.raises(sl.TargetError, match="out of range"):
        sl.ClassRelevant(sl.Gradient(model), classes=[0, 7]).explain(x, 0)
    with pytest.raises(sl.ParameterError, match="3 per-sample class sets"):
        sl.ClassRelevant(sl.Gradient(model), classes=[[0, 1]] * 3).explain(x, 0)
    with pytest.raises(sl.ParameterError, match="at least two"):
        sl.ClassRelevant(sl.Gradient(model), classes=[1]).explain(x, 1)
    with pytest.raises(sl.ParameterError, match="class rule"):
        sl.ClassRelevant(sl.Gradient(model), classes=lambda s: s.argmax(1)).explain(x, 1)
    with pytest.raises(sl.ParameterError, match="Explainer"):
        sl.ClassRelevant(model, classes="all")


def test_engine_per_row_targets_through_retarget(linear):
    """ScoreFunction.retarget(target_map=...): rows of one sample, each with its own class."""
    from salience.engine import ScoreFunction
    from salience.layout import Layout

    model, w, x = linear
    score = ScoreFunction(
        lambda rows, samples: model(rows),
        sl.Class(0).bind(3, lambda: None),
        input=x,
        layout=Layout("b c t"),
        batch_size=2,
        caller="test",
    )
    rows = x.repeat_interleave(2, 0)  # (6, ...): sample b twice
    classes = torch.tensor([0, 4, 1, 3, 2, 2])
    per_row = score.retarget(
        sl.Class(classes).bind(6, lambda: None),
        rows,
        score.sample_map.repeat_interleave(2),
        target_map=torch.arange(6),
    )
    torch.testing.assert_close(per_row.gradient_at_input(), w[classes], rtol=0, atol=0)
    torch.testing.assert_close(per_row.input_values(), model(rows).gather(1, classes[:, None])[:, 0].detach())
    # repeat() carries the per-row target along (row i // k)
    torch.testing.assert_close(
        per_row.repeat(rows.repeat_interleave(3, 0), 3).gradient_at_input(),
        w[classes.repeat_interleave(3)],
        rtol=0,
        atol=0,
    )
    # without target_map the target is indexed by the original sample, as before
    shared = score.retarget(
        sl.Class([1, 2, 3]).bind(3, lambda: None), rows, score.sample_map.repeat_interleave(2)
    )
    torch.testing.assert_close(shared.gradient_at_input(), w[[1, 1, 2, 2, 3, 3]], rtol=0, atol=0)


def test_class_forms_are_equivalent(linear):
    import numpy as np

    model, _, x = linear
    g = sl.Gradient(model)
    ref = sl.ClassRelevant(g, classes=[0, 3, 4]).explain(x, 3).values
    for form in (
        (0, 3, 4),
        torch.tensor([0, 3, 4]),
        np.array([0, 3, 4]),
        [[0, 3, 4]] * 3,
        torch.tensor([[0, 3, 4]] * 3),
        [torch.tensor(0), torch.tensor(3), 4],
    ):
        cr = sl.ClassRelevant(g, classes=form)
        torch.testing.assert_close(cr.explain(x, 3).values, ref, rtol=0, atol=0)
        assert not any(isinstance(v, torch.Tensor) for v in vars(cr).values())  # no tensors stored


def test_warns_when_small_magnitudes_flatten_the_softmax(linear):
    model, w, x = linear
    tiny = Linear(1e-4 * w).eval()
    with pytest.warns(UserWarning, match="nearly uniform"):
        out = sl.ClassRelevant(sl.Gradient(tiny), classes="all").explain(x, 0)
    assert torch.count_nonzero(out.values) == 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.count_nonzero(
            sl.ClassRelevant(sl.Gradient(tiny), classes="all", normalize=True).explain(x, 0).values
        )
        sl.ClassRelevant(sl.Gradient(model), classes="all").explain(x, 0)
        sl.ClassRelevant(sl.Gradient(tiny), classes="all", tau=0.8).explain(x, 0)  # zeros on purpose


def test_grad_cam_maps_compete_at_the_cam_resolution():
    model = cnn(2)
    x = make_input("image", batch=2)
    cam = sl.GradCAM(model, layer="2", upsample=False)
    maps = torch.stack([cam.explain(x, k).values for k in range(4)], 1)  # (B, K, 1, h, w)
    counting = Counting(model)
    attr = sl.ClassRelevant(
        sl.GradCAM(counting, layer=model[2], upsample=False), classes="all", normalize=True, tau=0.0
    ).explain(x, [1, 3])
    assert counting.rows == [2, 8] and attr.layer is not None
    for b, t in enumerate([1, 3]):
        s = maps[b].abs() / maps[b].abs().amax()
        m = torch.softmax(10 * s, 0)[t]
        torch.testing.assert_close(attr.values[b], maps[b, t] * m * (m > 0.25), rtol=1e-12, atol=1e-15)
    assert torch.count_nonzero(attr.values) > 0


@pytest.mark.parametrize("target_cls", [sl.Class, sl.Probability, sl.LogProbability])
def test_class_relevant_rise_maps_every_class_from_one_set_of_masks(target_cls):
    """ClassRelevant(RISE) scores all classes from the same masked forwards (1/K of the model
    calls); the maps equal RISE run once per class with the same masks (same generator seed)."""
    model = Counting(cnn(1))
    x = make_input("signal", batch=3, seed=4)
    classes, targets = [0, 1, 2, 3], torch.tensor([1, 0, 2])

    def rise():
        return sl.RISE(
            model, n_masks=40, cells=5, generator=torch.Generator().manual_seed(11), progress=False
        )

    model.calls, model.rows = 0, []
    got = sl.ClassRelevant(rise(), classes=classes, temperature=1e-3).explain(x, target_cls(targets))
    assert sum(model.rows) == 3 + 40 * 3  # the forward at x, then B * n_masks rows (not K times more)
    base = torch.stack([rise().explain(x, target_cls(k)).values for k in classes], 1)  # (B, K, 1, T)
    ref = torch.stack([var_reference(base[i], int(targets[i]), tau=0.01, inv_t=1e3) for i in range(3)])
    assert ref.abs().amax() > 0 and (ref == 0).any()  # neither all kept nor all dropped
    torch.testing.assert_close(got.values, ref, rtol=1e-10, atol=1e-12)
