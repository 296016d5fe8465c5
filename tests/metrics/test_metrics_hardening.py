"""Hardening of the metrics (issue #13, items 3 and 6): evaluate() keeps explainers and metrics
of one class apart; nonsense inputs (NaN/complex/integer attributions, bad masks, constant
similarities, a model where an explainer is expected, empty layer lists, no data, empty or
single-element axes) get typed errors naming what was expected and what was received;
faithfulness correlation draws its subsets chunk by chunk; markdown tables escape pipes."""

from __future__ import annotations

import re

import pytest
import torch

import salience as sl
from salience import metrics as M
from salience.errors import DTypeError, InputError, ParameterError, ShapeError
from toy_models import cnn, make_input

K = torch.tensor([1, 2])


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _setup():
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn(x.shape, generator=g(3), dtype=x.dtype)
    mask = torch.zeros(2, 1, 20, dtype=torch.bool)
    mask[..., 4:9] = True
    return model, x, a, mask


# ---------------------------------------------------------------------------- item 3: evaluate rows
def test_evaluate_keeps_two_explainers_of_one_class_apart():
    model, x, _, _ = _setup()
    coarse, fine = sl.IntegratedGradients(model, n_steps=2), sl.IntegratedGradients(model, n_steps=64)
    table = M.evaluate([coarse, fine], [M.CompletenessGap()], model, (x, K))
    assert len(table) == 2
    labels = [row["method"] for row in table]
    assert labels == [repr(coarse), repr(fine)] and labels[0] != labels[1]
    for explainer, row in zip((coarse, fine), table, strict=True):
        own = M.completeness_gap(model, x, explainer.explain(x, K), K)
        assert row["n"] == 2  # not the 4 values of both explainers pooled
        assert row["mean"] == pytest.approx(float(own.mean()), rel=1e-9, abs=1e-12)
    # the coarse rule leaves a much larger completeness gap than the fine one: the rows differ
    assert abs(table[0]["mean"]) > 10 * abs(table[1]["mean"])
    assert table.get(repr(fine), "CompletenessGap") is table[1]


def test_evaluate_labels_identical_explainers_with_a_suffix_and_metrics_by_repr():
    model, x, _, _ = _setup()
    grad = sl.Gradient(model)
    table = M.evaluate(
        [grad, sl.Gradient(model), grad],
        [M.Deletion(steps=2, progress=False), M.Deletion(steps=5, progress=False)],
        model,
        (x, K),
    )
    assert [r["method"] for r in table] == ["Gradient"] * 2 + ["Gradient#2"] * 2 + ["Gradient#3"] * 2
    metrics = [r["metric"] for r in table[:2]]
    assert metrics == [repr(M.Deletion(steps=2, progress=False)), repr(M.Deletion(steps=5, progress=False))]
    assert all(r["n"] == 2 for r in table)
    short = M.auc(M.deletion_curve(model, x, grad.explain(x, K), K, steps=2, progress=False))
    assert table[0]["mean"] == pytest.approx(float(short.mean()), rel=1e-9)
    # a dict key that collides with another after str() is made distinct too
    table = M.evaluate({1: grad, "1": grad}, [M.Sparseness()], model, x)
    assert [r["method"] for r in table] == ["1", "1#2"]


def test_metric_labels_are_deterministic_with_generators():
    a = M.FaithfulnessCorrelation(n_runs=4, generator=g(0))
    b = M.FaithfulnessCorrelation(n_runs=8, generator=g(1))
    assert " at 0x" not in repr(a) and "generator=torch.Generator(device='cpu')" in repr(a)
    model, x, _, _ = _setup()
    table = M.evaluate(
        [sl.Gradient(model)],
        [
            M.FaithfulnessCorrelation(n_runs=4, subset_size=5, generator=g(0), progress=False),
            M.FaithfulnessCorrelation(n_runs=8, subset_size=5, generator=g(1), progress=False),
        ],
        model,
        (x, K),
    )
    assert [r["metric"] for r in table] == [
        repr(M.FaithfulnessCorrelation(n_runs=4, subset_size=5, progress=False, generator=g(5))),
        repr(M.FaithfulnessCorrelation(n_runs=8, subset_size=5, progress=False, generator=g(5))),
    ]
    assert repr(a) != repr(b)


def test_markdown_escapes_pipes_in_cells():
    table = M.Table(
        [
            {
                "method": "IG|fine",
                "metric": "a\\|b\nc",
                "mean": 1.0,
                "std": float("nan"),
                "n": 1,
                "higher_is_better": True,
            }
        ]
    )
    lines = table.to_markdown().splitlines()
    assert len(lines) == 3
    unescaped = re.compile(r"(?<!\\)(?:\\\\)*\|")  # a pipe after an even number of backslashes
    assert [len(unescaped.findall(line)) for line in lines] == [7, 7, 7]
    assert "IG\\|fine" in lines[2] and "a\\\\\\|b c" in lines[2]


# ---------------------------------------------------------------------------- item 6: attributions
def _attribution_metrics(model, x, mask):
    """Every metric that reads a precomputed attribution, as ``fn(attribution)``."""
    grad = sl.Gradient(model if model is not None else cnn(1))
    kw = dict(progress=False)
    return {
        "sparseness": M.sparseness,
        "complexity": M.complexity,
        "pointing_game": lambda a: M.pointing_game(a, mask),
        "energy_pointing_game": lambda a: M.energy_pointing_game(a, mask),
        "relevance_mass": lambda a: M.relevance_mass(a, mask),
        "relevance_rank_accuracy": lambda a: M.relevance_rank_accuracy(a, mask),
        "top_q_iou": lambda a: M.top_q_iou(a, mask),
        "deletion_curve": lambda a: M.deletion_curve(model, x, a, K, steps=3, **kw),
        "insertion_curve": lambda a: M.insertion_curve(model, x, a, K, steps=3, **kw),
        "faithfulness_correlation": lambda a: M.faithfulness_correlation(
            model, x, a, K, n_runs=3, subset_size=4, generator=g(), **kw
        ),
        "infidelity": lambda a: M.infidelity(model, x, a, K, n_perturbations=2, generator=g()),
        "completeness_gap": lambda a: M.completeness_gap(model, x, a, K),
        "max_sensitivity": lambda a: M.max_sensitivity(
            grad, x, K, n_perturbations=2, attribution=a, generator=g(), **kw
        ),
        "model_randomisation": lambda a: M.model_randomisation(grad, x, K, attribution=a, generator=g()),
        "random_logit": lambda a: M.random_logit(grad, x, K, attribution=a, generator=g()),
    }


_NAMES = list(_attribution_metrics(None, None, None))


@pytest.mark.parametrize("name", _NAMES)
def test_nan_and_inf_attributions_are_refused(name):
    model, x, a, mask = _setup()
    fn = _attribution_metrics(model, x, mask)[name]
    for bad in (float("nan"), float("inf")):
        b = a.clone()
        b[1, 0, 3] = bad
        with pytest.raises(InputError, match=rf"{name} expects attribution to be finite\. Got 1 NaN/inf"):
            fn(b)
    # the same Attribution object with finite values is scored
    assert torch.isfinite(
        fn(sl.Attribution(values=a, target=K, scores=torch.zeros(2), method="m", layout=sl.Layout("b c t")))
    ).any()


@pytest.mark.parametrize("name", _NAMES)
@pytest.mark.parametrize("dtype", [torch.complex128, torch.int64, torch.bool])
def test_complex_integer_and_boolean_attributions_are_refused(name, dtype):
    model, x, a, mask = _setup()
    fn = _attribution_metrics(model, x, mask)[name]
    bad = (a > 0).to(dtype) if dtype != torch.complex128 else a.to(dtype)
    with pytest.raises(
        DTypeError,
        match=rf"{name} expects attribution to have a real floating-point dtype .*"
        rf"Got {re.escape(str(dtype))} instead",
    ):
        fn(bad)


@pytest.mark.parametrize(
    "name",
    [
        "sparseness",
        "complexity",
        "pointing_game",
        "relevance_mass",
        "top_q_iou",
        "relevance_rank_accuracy",
        "energy_pointing_game",
    ],
)
@pytest.mark.parametrize("shape", [(2,), ()])
def test_attributions_without_a_feature_axis_are_refused(name, shape):
    model, x, _, _ = _setup()
    fn = _attribution_metrics(model, x, torch.ones(shape, dtype=torch.bool))[name]
    with pytest.raises(
        ShapeError,
        match=rf"{name} expects attribution to have a batch axis and at least 2 dims.*"
        rf"Got shape {re.escape(str(shape))}",
    ):
        fn(torch.ones(shape, dtype=torch.float64))


@pytest.mark.parametrize("name", _NAMES)
def test_attributions_with_an_empty_axis_are_refused(name):
    model, x, _, mask = _setup()
    fn = _attribution_metrics(model, x, mask[..., :0])[name]
    with pytest.raises(
        ShapeError,
        match=rf"{name} expects attribution to have at least one element along every "
        rf"axis\. Got shape \(2, 3, 0\)",
    ):
        fn(torch.zeros(2, 3, 0, dtype=torch.float64))


@pytest.mark.parametrize(
    "name",
    [
        "deletion_curve",
        "faithfulness_correlation",
        "infidelity",
        "completeness_gap",
        "max_sensitivity",
        "model_randomisation",
        "random_logit",
    ],
)
def test_inputs_with_an_empty_axis_are_refused(name):
    model, x, a, _ = _setup()
    fn = _attribution_metrics(model, x[..., :0], None)[name]
    with pytest.raises(ShapeError, match=r"x .*(?:at least one element|is empty)"):
        fn(a)


# ---------------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    "fn", [M.pointing_game, M.energy_pointing_game, M.relevance_mass, M.relevance_rank_accuracy, M.top_q_iou]
)
def test_masks_must_be_finite_boolean_or_zero_one(fn):
    _, _, a, mask = _setup()
    name = fn.__name__
    nan = mask.double()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=rf"{name} expects the mask to be finite\. Got 1 NaN/inf"):
        fn(a, nan)
    soft = mask.double() * 0.4
    with pytest.raises(
        InputError,
        match=rf"{name} expects the mask to be boolean or hold only 0 and 1 .*Got 10 "
        r"other value\(s\), e\.g\. 0\.4",
    ):
        fn(a, soft)
    labels = mask.long() * 2  # a label map, not a mask
    with pytest.raises(InputError, match=r"only 0 and 1 .*e\.g\. 2"):
        fn(a, labels)
    with pytest.raises(
        DTypeError,
        match=rf"{name} expects the mask to be boolean or hold 0/1 values\. Got dtype "
        r"torch\.complex128",
    ):
        fn(a, mask.to(torch.complex128))
    with pytest.raises(ShapeError, match=r"mask to have at least one element along every axis"):
        fn(a[..., :1], mask[..., :0])
    # 0/1 masks of any real dtype are the boolean mask
    want = fn(a, mask)
    for dtype in (torch.uint8, torch.int64, torch.float32, torch.float64):
        torch.testing.assert_close(fn(a, mask.to(dtype)), want, equal_nan=True)


def test_grid_pointing_game_refuses_nan_integer_and_empty_inputs():
    _, _, a, mask = _setup()
    cells = torch.stack([mask[0, 0], ~mask[0, 0]])  # 2 cells
    bad = a.clone()
    bad[0, 1, 1] = float("nan")
    with pytest.raises(InputError, match=r"grid_pointing_game expects attributions to be finite"):
        M.grid_pointing_game(bad, cells, [0, 1])
    with pytest.raises(
        DTypeError, match=r"grid_pointing_game expects attributions to have a real floating-point"
    ):
        M.grid_pointing_game(a.long(), cells, [0, 1])
    with pytest.raises(ShapeError, match=r"at least one cell"):
        M.grid_pointing_game(a, cells[:0])
    nan_mask = cells[[0, 1]].double()[:, None]
    nan_mask[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"GridPointingGame expects the mask to be finite"):
        M.GridPointingGame()(None, a, a, mask=nan_mask)


# ---------------------------------------------------------------------------- similarities
@pytest.mark.parametrize("which", ["model_randomisation", "random_logit", "faithfulness_correlation"])
def test_a_similarity_returning_a_constant_is_refused(which):
    model, x, a, _ = _setup()
    grad = sl.Gradient(model)

    def run(sim):
        if which == "model_randomisation":
            return M.model_randomisation(grad, x, K, similarity=sim, generator=g())
        if which == "random_logit":
            return M.random_logit(grad, x, K, similarity=sim, generator=g())
        return M.faithfulness_correlation(
            model, x, a, K, n_runs=3, subset_size=4, similarity=sim, generator=g(), progress=False
        )

    with pytest.raises(
        ParameterError,
        match=rf"'similarity' callable of {which} must return a tensor of shape "
        r"\(2,\), one value per sample\. Got float 1\.0",
    ):
        run(lambda u, v: 1.0)
    with pytest.raises(ShapeError, match=r"must return a tensor of shape \(2,\).*Got shape \(\)"):
        run(lambda u, v: torch.tensor(1.0))
    with pytest.raises(DTypeError, match=r"real floating-point values\. Got dtype torch\.int64"):
        run(lambda u, v: torch.ones(u.shape[0], dtype=torch.long))
    ok = run(lambda u, v: torch.nn.functional.cosine_similarity(u, v, dim=1))
    assert ok.shape[0] == 2


@pytest.mark.parametrize("which", ["model_randomisation", "random_logit"])
def test_correlations_of_a_single_element_map_are_refused(which):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 3)).double().eval()
    x = torch.randn(2, 1, 1, generator=g(1), dtype=torch.float64)  # one channel, one time step
    grad = sl.Gradient(model)
    fn = M.model_randomisation if which == "model_randomisation" else M.random_logit
    with pytest.raises(
        ShapeError, match=rf"{which}: a spearman correlation needs at least 2 values per sample\. Got 1"
    ):
        fn(grad, x, K, generator=g())
    # the cosine of one element is defined (its sign)
    assert fn(grad, x, K, similarity="cosine", generator=g()).shape[0] == 2


# ---------------------------------------------------------------------------- explainers
@pytest.mark.parametrize(
    "which", ["max_sensitivity", "avg_sensitivity", "model_randomisation", "random_logit"]
)
def test_a_model_passed_as_the_explainer_is_refused(which):
    model, x, _, _ = _setup()
    fn = getattr(M, which)
    with pytest.raises(
        ParameterError,
        match=rf"The 'explainer' parameter of {which} must be a salience Explainer "
        r"or a callable \(x, target\) -> attribution\. Got the model Sequential "
        r"\(an nn.Module\) instead; wrap it",
    ):
        fn(model, x, K)


def test_metric_classes_and_evaluate_refuse_a_model_as_the_explainer():
    model, x, a, _ = _setup()
    for metric in (
        M.MaxSensitivity(progress=False),
        M.AvgSensitivity(progress=False),
        M.ModelRandomisation(),
        M.RandomLogit(),
    ):
        with pytest.raises(ParameterError, match=r"Got the model Sequential \(an nn.Module\)"):
            metric(model, x, a, K, explainer=model)
    with pytest.raises(
        ParameterError, match=r"explainers\['grad'\].* parameter of evaluate .*Got the model Sequential"
    ):
        M.evaluate({"grad": model}, [M.Sparseness()], model, (x, K))
    # and an explainer where the model is expected
    with pytest.raises(
        ParameterError,
        match=r"The 'model' parameter of deletion_curve must be the model.*Got the "
        r"explainer Gradient",
    ):
        M.deletion_curve(sl.Gradient(model), x, a, K, steps=2, progress=False)


def test_explainer_outputs_are_checked():
    model, x, a, _ = _setup()
    grad = sl.Gradient(model)

    def nan_explainer(xx, t):
        return torch.full_like(xx, float("nan"))

    with pytest.raises(InputError, match=r"max_sensitivity expects the explainer's attribution to be finite"):
        M.max_sensitivity(nan_explainer, x, K, n_perturbations=2, generator=g(), progress=False)
    with pytest.raises(
        ShapeError,
        match=r"max_sensitivity: the explanations of 4 perturbed copies have shape "
        r"\(4, 3, 19\), but the attribution at x has shape \(2, 3, 20\)",
    ):
        M.max_sensitivity(
            lambda xx, t: grad.explain(xx, t).values[..., 1:],
            x,
            K,
            n_perturbations=2,
            attribution=a,
            generator=g(),
            progress=False,
        )
    with pytest.raises(
        ShapeError,
        match=r"avg_sensitivity: the attribution must hold one map per input, 2 here\. "
        r"Got shape \(1, 3, 20\)",
    ):
        M.avg_sensitivity(grad, x, K, n_perturbations=2, attribution=a[:1], generator=g(), progress=False)
    # a precomputed map of another batch size would be broadcast by the cosine similarity
    with pytest.raises(
        ShapeError,
        match=r"model_randomisation: the maps of the randomised model have shape "
        r"\(2, 60\), but the attribution at x has shape \(1, 60\)",
    ):
        M.model_randomisation(grad, x, K, attribution=a[:1], similarity="cosine", generator=g())
    with pytest.raises(ShapeError, match=r"random_logit: the explainer returned 1 maps .* for 2 inputs"):
        M.random_logit(lambda xx, t: grad.explain(xx, t).values[:1], x, K, n_classes=4, generator=g())


# ---------------------------------------------------------------------------- randomisation layers
def test_model_randomisation_refuses_empty_and_parameter_free_layer_lists():
    model, x, _, _ = _setup()
    grad = sl.Gradient(model)
    with pytest.raises(
        ParameterError,
        match=r"The 'layers' parameter of model_randomisation must be None .* or a "
        r"non-empty list of module names .*Got \[\] instead",
    ):
        M.model_randomisation(grad, x, K, layers=[], generator=g())
    with pytest.raises(ParameterError, match=r"'layers' parameter of ModelRandomisation .*Got \(\) instead"):
        M.ModelRandomisation(layers=())
    with pytest.raises(ParameterError, match=r"must name modules that hold parameters .*\['1'\] hold none"):
        M.model_randomisation(grad, x, K, layers=["2", "1"], generator=g())
    free = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Softmax(-1)).eval()
    with pytest.raises(ParameterError, match=r"the model Sequential has no module with parameters"):
        M.model_randomisation(sl.Gradient(free), x, 0, generator=g())


# ---------------------------------------------------------------------------- evaluate's data
@pytest.mark.parametrize("data, got", [(None, "NoneType"), (3, "int"), ("x", "str")])
def test_evaluate_refuses_data_that_is_not_batches(data, got):
    model, _, _, _ = _setup()
    with pytest.raises(
        ParameterError,
        match=rf"The 'data' parameter of evaluate must be a tensor x, a tuple \(x, y\) "
        rf"or \(x, y, mask\), or an iterable of those \(a DataLoader\)\. Got {got}",
    ):
        M.evaluate([sl.Gradient(model)], [M.Sparseness()], model, data)


def test_evaluate_refuses_empty_data_explainers_and_metrics():
    model, x, _, _ = _setup()
    with pytest.raises(ParameterError, match=r"'data' parameter of evaluate must yield at least one batch"):
        M.evaluate([sl.Gradient(model)], [M.Sparseness()], model, [])
    with pytest.raises(ParameterError, match=r"'explainers' parameter of evaluate must hold at least one"):
        M.evaluate([], [M.Sparseness()], model, x)
    with pytest.raises(ParameterError, match=r"'metrics' parameter of evaluate must hold at least one"):
        M.evaluate([sl.Gradient(model)], {}, model, x)


# ---------------------------------------------------------------------------- degenerate sizes
def test_faithfulness_correlation_needs_a_proper_subset_of_at_least_two_units():
    model, x, a, _ = _setup()
    with pytest.raises(
        ParameterError,
        match=r"'subset_size' .*must be smaller than the number of attribution units, "
        r"60 here .*Got 60",
    ):
        M.faithfulness_correlation(model, x, a, K, n_runs=4, subset_size=60, generator=g(), progress=False)
    one = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 3)).double().eval()
    x1 = torch.randn(2, 1, 1, dtype=torch.float64, generator=g(2))
    with pytest.raises(
        ShapeError,
        match=r"faithfulness_correlation needs at least 2 attribution units per sample.*"
        r"Got attributions of shape \(2, 1, 1\)",
    ):
        M.faithfulness_correlation(
            one, x1, torch.ones_like(x1), K, n_runs=4, subset_size=1, generator=g(), progress=False
        )


@pytest.mark.parametrize("fn", [M.deletion_curve, M.insertion_curve])
def test_curves_that_would_change_no_unit_are_refused(fn):
    model, x, a, _ = _setup()
    with pytest.raises(
        ParameterError,
        match=rf"The 'max_fraction' parameter of {fn.__name__} must change at least one "
        r"of the 20 attribution units .*max_fraction >= 0\.05 here\)\. Got 0\.04",
    ):
        fn(model, x, a[:, :1], K, steps=3, max_fraction=0.04, progress=False)
    # a single time step is a valid (two-state) curve
    one = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 4)).double().eval()
    curve = fn(one, x[..., :1], a[..., :1].sum(1, keepdim=True), K, substrate=0.0, progress=False)
    assert curve.shape == (2, 2) and torch.isfinite(curve).all()


# ---------------------------------------------------------------------------- infidelity perturbations
def test_infidelity_refuses_nonsense_perturbations():
    model, x, a, _ = _setup()
    pert = torch.randn((2, 3, *x.shape[1:]), generator=g(1), dtype=x.dtype) * 0.1
    bad = pert.clone()
    bad[1, 2, 0, 0] = float("nan")
    with pytest.raises(
        InputError, match=r"infidelity expects the perturbation tensor to be finite\. Got 1 NaN/inf"
    ):
        M.infidelity(model, x, a, K, n_perturbations=3, perturbation=bad)
    with pytest.raises(
        DTypeError, match=r"infidelity expects the perturbation tensor to have a real floating-point"
    ):
        M.infidelity(model, x, a, K, n_perturbations=3, perturbation=pert.long())
    with pytest.raises(InputError, match=r"infidelity expects perturbation\(x, k, generator\) to be finite"):
        M.infidelity(
            model,
            x,
            a,
            K,
            n_perturbations=3,
            generator=g(),
            perturbation=lambda xs, k, gen: torch.full((1, k, *xs.shape[1:]), float("inf"), dtype=xs.dtype),
        )


# ---------------------------------------------------------------------------- bounded faithfulness correlation
def test_faithfulness_correlation_draws_subsets_chunk_by_chunk(monkeypatch):
    model, x, a, _ = _setup()
    n_runs, size, bs = 50, 7, 8
    drawn = []
    rand = torch.rand

    def spy(*args, **kw):
        out = rand(*args, **kw)
        drawn.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "rand", spy)
    small = M.faithfulness_correlation(
        model, x, a, K, n_runs=n_runs, subset_size=size, batch_size=bs, generator=g(11), progress=False
    )
    monkeypatch.setattr(torch, "rand", rand)
    # no table of n_runs random orders per sample: at most batch_size rows of n_units at a time
    assert drawn and max(s[0] for s in drawn) <= bs and sum(s[0] for s in drawn) == 2 * n_runs
    assert all(s[1:] == (60,) for s in drawn)
    # the same subsets (bit for bit) whatever the chunking, as the documented per-sample draws
    big = M.faithfulness_correlation(
        model, x, a, K, n_runs=n_runs, subset_size=size, batch_size=1000, generator=g(11), progress=False
    )
    assert torch.equal(small, big)
    gen = g(11)
    subsets = [torch.rand((n_runs, 60), generator=gen).argsort(-1)[:, :size] for _ in range(2)]
    with torch.no_grad():
        f0 = model(x).gather(1, K[:, None])[:, 0]
        ref = []
        for b in range(2):
            rows = x[b].flatten().repeat(n_runs, 1).scatter(1, subsets[b], 0.0).reshape(n_runs, *x.shape[1:])
            drops = f0[b] - model(rows)[:, K[b]]
            sums = a[b].flatten()[subsets[b]].sum(-1)
            ref.append(torch.corrcoef(torch.stack([sums, drops]))[0, 1])
    torch.testing.assert_close(small, torch.stack(ref), rtol=1e-10, atol=1e-12)
