"""Metrics on models with structured outputs (``output=``) and extra forward inputs
(``forward_args``/``forward_kwargs``): a dict or tuple output scores exactly as the plain model,
and per-sample inputs follow their rows through every chunking, every perturbed copy and every
re-run of the explainer (the reference: each sample computed alone, with a model that holds that
sample's inputs itself)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import salience as sl
from salience import metrics as M
from salience.engine import shared
from salience.errors import ModelOutputError, ParameterError

DT = torch.float64
N, C, T, K = 4, 2, 8, 3


def _net() -> nn.Module:
    """A tiny seeded classifier (N, 2, 8) -> (N, 3), float64; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv1d(C, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * T, K)).to(
            DT
        )
    return net.eval()


class DictOut(nn.Module):
    """Hugging Face style: a dict holding the logits and something else."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _net()
        self.eval()

    def forward(self, x):
        return {"logits": self.net(x), "other": x.mean(1)}


class TupleOut(DictOut):
    """Two tensors, the logits second: ``output=1`` (or a callable) is needed."""

    def forward(self, x):
        return (x.mean(1), self.net(x))


class Masked(nn.Module):
    """Scores depend on a per-sample gain (positional), a per-sample mask and id, a shared table
    whose first axis happens to have the batch's length, and a flag."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _net()
        self.eval()

    def forward(self, x, gain, *, mask, subject, table=None, double=False):
        g = gain[:, None, None] if isinstance(gain, torch.Tensor) else gain  # per sample, or a number
        h = x * mask[:, None, :] * g
        out = self.net(h) + subject[:, None].to(h.dtype)
        if table is not None:
            out = out + table[: out.shape[1]]
        return out * (2.0 if double else 1.0)


class Alone(Masked):
    """Sample ``i``'s model: it holds that sample's inputs itself (no forward inputs at all)."""

    def __init__(self, i: int) -> None:
        super().__init__()
        self.i = i

    def forward(self, x):  # type: ignore[override]
        r, i = x.shape[0], self.i
        return super().forward(
            x,
            GAIN[i : i + 1].expand(r),
            mask=MASK[i : i + 1].expand(r, T),
            subject=SUBJECT[i : i + 1].expand(r),
            table=TABLE,
            double=True,
        )


X = torch.randn(N, C, T, generator=torch.Generator().manual_seed(1), dtype=DT)
Y = torch.tensor([0, 1, 2, 1])
A = torch.randn(N, C, T, generator=torch.Generator().manual_seed(2), dtype=DT)
A_FOURIER = torch.randn(N, C, T // 2 + 1, generator=torch.Generator().manual_seed(3), dtype=DT)
MASK = (torch.rand(N, T, generator=torch.Generator().manual_seed(3)) > 0.3).to(DT)
GAIN = torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=DT)
SUBJECT = torch.tensor([0, 1, 2, 3])
TABLE = torch.arange(N, dtype=DT)  # first axis == batch size, yet the same for every row
ARGS = (GAIN,)
KWARGS = {"mask": MASK, "subject": SUBJECT, "table": shared(TABLE), "double": True}


def gen(skip: Callable[[torch.Generator], Any] | None = None, n: int = 0) -> torch.Generator:
    """A seeded generator, advanced by ``n`` calls of ``skip`` (the draws of earlier samples)."""
    g = torch.Generator().manual_seed(7)
    for _ in range(n):
        skip(g)  # type: ignore[misc]
    return g


# ------------------------------------------------------------------ the model-based metrics
# name -> (run(model, x, a, target, batch_size, generator, **kw), skip: one row's draws or None,
#          rows per sample drawn, the attribution)
def _deletion(model, x, a, t, bs, g, **kw):
    return M.deletion_curve(model, x, a, t, steps=4, batch_size=bs, progress=False, **kw)


def _insertion(model, x, a, t, bs, g, **kw):  # RISE's blurred start
    return M.insertion_curve(model, x, a, t, step=3, batch_size=bs, progress=False, **kw)


def _deletion_fourier(model, x, a, t, bs, g, **kw):  # a: Fourier bins (B, C, T // 2 + 1)
    return M.deletion_curve(model, x, a, t, domain=sl.Fourier(), steps=3, batch_size=bs, progress=False, **kw)


def _faithfulness(model, x, a, t, bs, g, **kw):
    return M.faithfulness_correlation(
        model, x, a, t, n_runs=5, subset_size=4, generator=g, batch_size=bs, progress=False, **kw
    )


def _infidelity(model, x, a, t, bs, g, **kw):
    return M.infidelity(model, x, a, t, n_perturbations=3, generator=g, batch_size=bs, **kw)


def _completeness(model, x, a, t, bs, g, **kw):
    return M.completeness_gap(model, x, a, t, baseline="mean", batch_size=bs, **kw)


FUNCTIONAL = {
    "deletion_curve": (_deletion, None, 0, A),
    "insertion_curve": (_insertion, None, 0, A),
    "deletion_curve-in-a-domain": (_deletion_fourier, None, 0, A_FOURIER),
    "faithfulness_correlation": (_faithfulness, lambda g: torch.rand(C * T, generator=g), 5, A),
    "infidelity": (_infidelity, lambda g: torch.randn((C, T), generator=g, dtype=DT), 3, A),
    "completeness_gap": (_completeness, None, 0, A),
}


def one_by_one(run, skip, rows, bs, a) -> torch.Tensor:
    """Each sample alone, with a model holding its inputs, and the generator at its draws."""
    outs = [
        run(Alone(i), X[i : i + 1], a[i : i + 1], Y[i : i + 1], bs, gen(skip, i * rows)) for i in range(N)
    ]
    return torch.cat(outs)


STRUCTURED = [
    (DictOut, None),
    (DictOut, "logits"),
    (TupleOut, 1),
    (TupleOut, lambda o: o[1]),
]
STRUCTURED_IDS = ["dict-default", "dict-key", "tuple-index", "tuple-callable"]


@pytest.mark.parametrize(("kind", "output"), STRUCTURED, ids=STRUCTURED_IDS)
@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_a_structured_output_scores_as_the_plain_model(name, kind, output):
    run, _, _, a = FUNCTIONAL[name]
    want = run(_net(), X, a, Y, None, gen())
    got = run(kind(), X, a, Y, None, gen(), output=output)
    assert torch.equal(got, want)


@pytest.mark.parametrize("batch_size", [1, 3, None])
@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_per_sample_inputs_give_each_sample_alone(name, batch_size):
    run, skip, rows, a = FUNCTIONAL[name]
    got = run(Masked(), X, a, Y, batch_size, gen(), forward_args=ARGS, forward_kwargs=KWARGS)
    torch.testing.assert_close(got, one_by_one(run, skip, rows, batch_size, a), rtol=1e-10, atol=1e-10)


def test_the_reference_sees_the_inputs():
    """The per-sample inputs change the values (the tests above could not pass by ignoring them)."""
    plain = M.deletion_curve(
        Masked(),
        X,
        A,
        Y,
        steps=4,
        progress=False,
        forward_args=(torch.ones(N, dtype=DT),),
        forward_kwargs={"mask": torch.ones(N, T, dtype=DT), "subject": SUBJECT},
    )
    masked = M.deletion_curve(
        Masked(), X, A, Y, steps=4, progress=False, forward_args=ARGS, forward_kwargs=KWARGS
    )
    assert not torch.allclose(plain, masked)
    swapped = {**KWARGS, "mask": MASK.flip(0)}
    other = M.deletion_curve(
        Masked(), X, A, Y, steps=4, progress=False, forward_args=ARGS, forward_kwargs=swapped
    )
    assert not torch.allclose(other, masked)


# ------------------------------------------------------------------ the metrics that re-run an explainer
def _explainer(model, bs, **kw):
    return sl.IntegratedGradients(model, n_steps=3, batch_size=bs, **kw)


def _max_sensitivity(e, x, t, g, **kw):
    return M.max_sensitivity(e, x, t, n_perturbations=3, radius=0.1, generator=g, progress=False, **kw)


def _avg_sensitivity(e, x, t, g, **kw):
    return M.avg_sensitivity(e, x, t, n_perturbations=3, radius=0.1, generator=g, progress=False, **kw)


def _randomisation(e, x, t, g, **kw):
    return M.model_randomisation(e, x, t, generator=g, **kw)


def _random_logit(e, x, t, g, **kw):  # n_classes inferred from the model's output at x
    return M.random_logit(e, x, t, generator=g, **kw)


RERUN = {
    "max_sensitivity": (_max_sensitivity, lambda g: torch.rand((C, T), generator=g, dtype=DT), 3),
    "avg_sensitivity": (_avg_sensitivity, lambda g: torch.rand((C, T), generator=g, dtype=DT), 3),
    "model_randomisation": (_randomisation, None, 0),  # one draw per layer, whatever the batch
    "random_logit": (_random_logit, lambda g: torch.randint(1, K, (1,), generator=g), 1),
}


@pytest.mark.parametrize(("kind", "output"), STRUCTURED, ids=STRUCTURED_IDS)
@pytest.mark.parametrize("name", list(RERUN))
def test_a_rerun_explainer_scores_its_own_output(name, kind, output):
    run, _, _ = RERUN[name]
    want = run(_explainer(_net(), None), X, Y, gen())
    got = run(_explainer(kind(), None, output=output), X, Y, gen())
    assert torch.equal(got, want)


@pytest.mark.parametrize("batch_size", [1, 3, None])
@pytest.mark.parametrize("name", list(RERUN))
def test_per_sample_inputs_follow_the_perturbed_rows(name, batch_size):
    run, skip, rows = RERUN[name]
    got = run(_explainer(Masked(), batch_size), X, Y, gen(), forward_args=ARGS, forward_kwargs=KWARGS)
    want = torch.cat(
        [
            run(_explainer(Alone(i), batch_size), X[i : i + 1], Y[i : i + 1], gen(skip, i * rows))
            for i in range(N)
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_a_plain_callable_explainer_gets_the_inputs_of_its_rows():
    """``explainer(x_rows, target, *forward_args, **forward_kwargs)``, cut to the perturbed rows."""
    seen = []

    def explain(xx, t, gain, *, mask, subject, table, double):
        seen.append(subject.tolist())
        kw = {"mask": mask, "subject": subject, "table": shared(table), "double": double}
        return sl.Gradient(Masked()).explain(xx, t, forward_args=(gain,), forward_kwargs=kw)

    got = M.max_sensitivity(
        explain,
        X,
        Y,
        n_perturbations=3,
        radius=0.1,
        generator=gen(),
        progress=False,
        forward_args=ARGS,
        forward_kwargs=KWARGS,
    )
    skip = RERUN["max_sensitivity"][1]
    want = torch.cat(
        [
            M.max_sensitivity(
                sl.Gradient(Alone(i)),
                X[i : i + 1],
                Y[i : i + 1],
                n_perturbations=3,
                radius=0.1,
                generator=gen(skip, 3 * i),
                progress=False,
            )
            for i in range(N)
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert seen[0] == [0, 1, 2, 3]  # the explanation at x
    assert sorted(s for rows in seen[1:] for s in rows) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


# ------------------------------------------------------------------ the metric classes and evaluate
# class name -> (factory, the functional metric it runs)
MODEL_CLASSES = {
    "Deletion": (lambda **kw: M.Deletion(steps=4, progress=False, **kw), "deletion_curve"),
    "Insertion": (lambda **kw: M.Insertion(step=3, progress=False, **kw), "insertion_curve"),
    "FaithfulnessCorrelation": (
        lambda **kw: M.FaithfulnessCorrelation(
            n_runs=5, subset_size=4, generator=gen(), progress=False, **kw
        ),
        "faithfulness_correlation",
    ),
    "Infidelity": (lambda **kw: M.Infidelity(n_perturbations=3, generator=gen(), **kw), "infidelity"),
    "CompletenessGap": (lambda **kw: M.CompletenessGap(baseline="mean", **kw), "completeness_gap"),
}


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_metric_classes_take_output_and_the_extra_inputs(name):
    make, function = MODEL_CLASSES[name]
    want = make()(_net(), X, A, Y)
    assert torch.equal(make(output=1)(TupleOut(), X, A, Y), want)
    assert "output=1" in repr(make(output=1)) and "output=None" in repr(make())
    with pytest.raises(ParameterError, match=f"The 'output' parameter of {name} must be None, a key"):
        make(output=1.5)
    got = make()(Masked(), X, A, Y, forward_args=ARGS, forward_kwargs=KWARGS)
    run, skip, rows, a = FUNCTIONAL[function]
    ref = one_by_one(run, skip, rows, None, a)
    if name in ("Deletion", "Insertion"):
        ref = M.auc(ref)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "metric",
    [
        M.MaxSensitivity(n_perturbations=3, radius=0.1, generator=gen(), progress=False),
        M.ModelRandomisation(generator=gen()),
        M.RandomLogit(generator=gen()),
        M.Sparseness(),
        M.PointingGame(),
    ],
    ids=lambda m: m.name,
)
def test_every_metric_class_accepts_the_extra_inputs(metric):
    explainer = _explainer(Masked(), 3)
    att = explainer.explain(X, Y, forward_args=ARGS, forward_kwargs=KWARGS)
    mask = torch.zeros(N, 1, T, dtype=torch.bool)
    mask[..., :3] = True
    got = metric(
        Masked(), X, att, Y, explainer=explainer, mask=mask, forward_args=ARGS, forward_kwargs=KWARGS
    )
    assert got.shape == (N,) and bool(torch.isfinite(got).any())


def _table_means(table: M.Table) -> list[float]:
    return [row["mean"] for row in table]


def test_evaluate_passes_the_inputs_of_in_memory_data():
    metrics = [M.Deletion(steps=4, progress=False), M.CompletenessGap(), M.Sparseness()]
    table = M.evaluate(
        {"IG": _explainer(Masked(), 3)}, metrics, Masked(), (X, Y), forward_args=ARGS, forward_kwargs=KWARGS
    )
    want = []
    atts = [_explainer(Alone(i), 3).explain(X[i : i + 1], Y[i : i + 1]) for i in range(N)]
    for metric in metrics:
        vals = torch.cat([metric(Alone(i), X[i : i + 1], atts[i], Y[i : i + 1]) for i in range(N)])
        want.append(float(vals.mean()))
    torch.testing.assert_close(torch.tensor(_table_means(table)), torch.tensor(want), rtol=1e-10, atol=1e-10)


def test_evaluate_takes_per_sample_inputs_with_each_batch():
    metrics = [M.Deletion(steps=4, progress=False), M.MaxSensitivity(n_perturbations=2, progress=False)]
    whole = M.evaluate(
        [_explainer(Masked(), None)], metrics, Masked(), (X, Y), forward_args=(2.0,), forward_kwargs=KWARGS
    )
    one = {"double": True, "table": shared(TABLE)}
    batches = [
        (X[:2], Y[:2], {"mask": MASK[:2], "subject": SUBJECT[:2]}),
        (X[2:], Y[2:], None, {"mask": MASK[2:], "subject": SUBJECT[2:]}),
    ]
    table = M.evaluate(
        [_explainer(Masked(), None)], metrics[:1], Masked(), batches, forward_args=(2.0,), forward_kwargs=one
    )
    torch.testing.assert_close(table[0]["mean"], whole[0]["mean"], rtol=1e-10, atol=1e-10)
    # per-sample inputs given once for an iterable of batches cannot be cut: refused
    with pytest.raises(ParameterError, match="per-sample extra inputs must come with their batch"):
        M.evaluate(
            [_explainer(Masked(), None)],
            metrics[:1],
            Masked(),
            batches,
            forward_args=(2.0,),
            forward_kwargs={"table": TABLE[:2], "double": True},
        )
    with pytest.raises(ParameterError, match="The 'forward_kwargs' parameter of evaluate must be a dict"):
        M.evaluate(
            [_explainer(Masked(), None)], metrics[:1], Masked(), (X, Y), forward_kwargs=[("mask", MASK)]
        )
    with pytest.raises(ParameterError, match=r"both give \['mask'\]"):
        M.evaluate(
            [_explainer(Masked(), None)],
            metrics[:1],
            Masked(),
            batches,
            forward_args=(2.0,),
            forward_kwargs={**one, "mask": shared(MASK[:2])},
        )


# ------------------------------------------------------------------ nonsense is refused, naming the metric
FUNCTION_NAMES = [n for n in FUNCTIONAL if "domain" not in n]


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_bad_options_name_the_parameter_and_the_metric(name):
    run = FUNCTIONAL[name][0]
    with pytest.raises(ParameterError, match=f"The 'output' parameter of {name} must be"):
        run(DictOut(), X, A, Y, None, gen(), output=1.5)
    with pytest.raises(ParameterError, match=f"The 'forward_kwargs' parameter of {name} must be a dict"):
        run(Masked(), X, A, Y, None, gen(), forward_args=ARGS, forward_kwargs=[("mask", MASK)])
    with pytest.raises(ParameterError, match=f"The 'forward_args' parameter of {name} must be a tuple"):
        run(Masked(), X, A, Y, None, gen(), forward_args=GAIN, forward_kwargs=KWARGS)
    with pytest.raises(
        ModelOutputError, match=f"{name}: output='nope' cannot be taken.*'logits' \\(\\d+, 3\\)"
    ):
        run(DictOut(), X, A, Y, None, gen(), output="nope")
    with pytest.raises(ModelOutputError, match=f"{name}: the model returned a tuple of 2 elements"):
        run(TupleOut(), X, A, Y, None, gen())


@pytest.mark.parametrize("name", list(RERUN))
def test_bad_extra_inputs_of_a_rerun_name_the_metric(name):
    run, _, _ = RERUN[name]
    with pytest.raises(ParameterError, match=f"The 'forward_kwargs' parameter of {name} must be a dict"):
        run(_explainer(Masked(), None), X, Y, gen(), forward_args=ARGS, forward_kwargs=[("mask", MASK)])
    with pytest.raises(ParameterError, match=f"The 'forward_args' parameter of {name} must be a tuple"):
        run(_explainer(Masked(), None), X, Y, gen(), forward_args=GAIN, forward_kwargs=KWARGS)


# ------------------------------------------------------------------ make_grid's confidence filter
@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_the_grid_filter_classifies_each_input_with_its_own_inputs(batch_size):
    with torch.no_grad():
        p = torch.softmax(Masked()(X, GAIN, mask=MASK, subject=SUBJECT, table=TABLE, double=True), 1)
    labels = p.argmax(1)
    conf = p.max(1).values
    threshold = float(conf.median())
    grid = M.make_grid(
        X,
        labels,
        cells=1,
        distinct=False,
        model=Masked(),
        min_confidence=threshold,
        batch_size=batch_size,
        forward_args=ARGS,
        forward_kwargs=KWARGS,
    )
    kept = [i for i in range(N) if conf[i] >= threshold]
    assert 0 < len(kept) < N and grid.sources.flatten().tolist() == kept
    plain = _net()(X).argmax(1)
    structured = M.make_grid(
        X, plain, cells=1, distinct=False, model=TupleOut(), min_confidence=0.0, output=1
    )
    assert structured.sources.flatten().tolist() == list(range(N))
    with pytest.raises(ParameterError, match="pass model=... and min_confidence=... with them"):
        M.make_grid(X, labels, cells=1, forward_kwargs=KWARGS)
    with pytest.raises(ParameterError, match="The 'output' parameter of make_grid"):
        M.make_grid(X, labels, cells=1, model=DictOut(), min_confidence=0.5, output=2.5)


def test_evaluate_scores_the_tensor_each_explainer_explained():
    """A metric left at output=None takes the explainer's output= (a copy: the metric object is
    not changed); one with its own output keeps it."""
    model = TupleOut()  # the logits are element 1: no default applies
    explainer = sl.IntegratedGradients(model, n_steps=4, output=1)
    metric = M.Deletion(steps=4, progress=False)
    table = M.evaluate({"IG": explainer}, [metric, M.CompletenessGap()], model, (X, Y))
    att = explainer.explain(X, Y)
    want = [
        float(M.Deletion(steps=4, progress=False, output=1)(model, X, att, Y).mean()),
        float(M.CompletenessGap(output=1)(model, X, att, Y).mean()),
    ]
    torch.testing.assert_close(torch.tensor(_table_means(table)), torch.tensor(want), rtol=1e-12, atol=1e-12)
    assert metric.output is None
    # a metric given its own output keeps it (element 0, the channel mean, scores otherwise)
    own = M.evaluate({"IG": explainer}, [M.Deletion(steps=4, progress=False, output=0)], model, (X, Y))
    direct = M.Deletion(steps=4, progress=False, output=0)(model, X, att, Y)
    assert _table_means(own)[0] == pytest.approx(float(direct.mean()), rel=1e-12)
    assert _table_means(own)[0] != pytest.approx(want[0], rel=1e-6)
