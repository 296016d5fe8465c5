"""Every public metric of ``salience.metrics`` with a tiny valid call: the metric registry.

The hostile-use grid (``tests/metrics/test_fuzz_metrics.py``) runs over this list: for each case
it replaces one argument of the call (the input, the attribution, the mask, the target, the
model, the explainer or one hyperparameter) with a hostile value. Adding a metric = one
``MetricCase`` here; ``test_every_public_metric_is_registered`` fails until every name of
``salience.metrics.__all__`` is covered by some case.

The calls read their arguments from a :class:`Call`; the defaults (:func:`default_call`) are a
batch of 2 signals of shape (3, 16) in float64, the toy CNN ``toy_models.cnn(1)`` (4 classes),
a random attribution of the input's shape, a boolean mask (2, 1, 16), one class per sample and
``salience.Gradient(model)`` as the explainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import salience as sl
from salience import metrics as M
from toy_models import cnn

#: the signal length of the default input (short: the grid makes thousands of calls)
T = 16


@dataclass
class Call:
    """The arguments of one metric call; the grid swaps one of them for a hostile value."""

    model: Any
    x: Any
    attribution: Any
    target: Any
    mask: Any
    explainer: Any
    params: dict[str, Any]


@dataclass(frozen=True)
class Param:
    """A hyperparameter: its tiny valid value and the kind of hostile values it gets.

    Kinds (the hostile sets are in the grid): ``count`` (an int, or None where None is the
    default), ``float``, ``fraction`` (in (0, 1]), ``bool``, ``option`` (a string choice),
    ``substrate``, ``similarity``, ``baseline``, ``norm``, ``layers``, ``perturbation``,
    ``cells`` (make_grid's cells per axis), ``cell-index`` (grid_pointing_game's cells),
    ``metrics`` (evaluate's metric list), ``generator``.
    """

    value: Any
    kind: str


@dataclass
class MetricCase:
    """One public metric and a tiny valid call of it.

    Attributes
    ----------
    id : str
    covers : tuple of str
        The names of ``salience.metrics.__all__`` this call exercises.
    run : callable
        ``run(call) -> result``.
    reads : frozenset of str
        Which of ``model``, ``x``, ``attribution``, ``target``, ``mask``, ``explainer`` the call
        reads (the grid varies only those).
    params : dict of str to Param
        The hyperparameters the grid varies, passed as ``call.params[name]``.
    result : str
        What a successful call returns: ``"per-sample"`` (B,), ``"curve"`` (B, K),
        ``"per-curve"`` (the curve's leading shape, :func:`~salience.metrics.auc`), ``"table"``
        (:class:`~salience.metrics.Table`), ``"grid"`` (:class:`~salience.metrics.Grid`),
        ``"names"`` (a list of module names).
    nan : frozenset of str
        Variations (``axis:name``) for which NaN is the documented value (an empty mask, an
        all-zero or constant map).
    base : callable, optional
        Adjusts the default call in place (a curve instead of a map, cell masks, labels).
    """

    id: str
    covers: tuple[str, ...]
    run: Callable[[Call], Any]
    reads: frozenset[str]
    params: dict[str, Param] = field(default_factory=dict)
    result: str = "per-sample"
    nan: frozenset[str] = frozenset()
    base: Callable[[Call], None] | None = None


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def signal(batch: int = 2, t: int = T, seed: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, 3, t, generator=gen(seed), dtype=dtype)


def attribution_like(x: torch.Tensor) -> torch.Tensor:
    """A random map of ``x``'s shape (seeded), float64."""
    return torch.randn(tuple(x.shape), generator=gen(3), dtype=torch.float64)


def mask_like(x: torch.Tensor) -> torch.Tensor:
    """A boolean ground-truth mask (B, 1, *spatial): a third of the positions, from the start."""
    m = torch.zeros((x.shape[0], 1, *x.shape[2:]), dtype=torch.bool)
    if m.ndim > 2 and m.shape[-1] > 0:
        lo = m.shape[-1] // 4
        m[..., lo : lo + max(1, m.shape[-1] // 3)] = True
    return m


def default_call(case: MetricCase) -> Call:
    """The valid call of ``case`` (fresh objects: nothing is shared between calls)."""
    model = cnn(1)
    x = signal()
    params = {k: (gen() if p.kind == "generator" else p.value) for k, p in case.params.items()}
    call = Call(
        model=model,
        x=x,
        attribution=attribution_like(x),
        target=torch.tensor([1, 2]),
        mask=mask_like(x),
        explainer=sl.Gradient(model),
        params=params,
    )
    if case.base is not None:
        case.base(call)
    return call


# ---------------------------------------------------------------------------- helpers for the calls
MASKED = frozenset({"attribution", "mask"})
MODEL_BASED = frozenset({"model", "x", "attribution", "target"})
EXPLAINER_BASED = frozenset({"explainer", "x", "attribution", "target"})
NO_BAR = {"progress": False}

#: NaN is the documented value of the localisation metrics for an empty mask
EMPTY_MASK = frozenset({"mask:all-false"})
#: ... and of ratios over the attribution's sum or positive part for an all-zero map
ZERO_MAP = frozenset({"attribution:zero"})
#: correlations with a constant map (all-zero or constant) are NaN (Pearson and Spearman)
CONSTANT_MAP = frozenset({"attribution:zero", "attribution:constant"})
#: a similarity callable's values are returned as they are, NaN included
USER_NAN = frozenset({"similarity:nan"})
#: faithfulness correlation is NaN where the score drops do not vary: a model that reads 4 of
#: the 48 units (most subsets miss them) or rounds its outputs to integers
CONSTANT_DROPS = frozenset({"model:lambda", "model:integer"})


def _curve_base(call: Call) -> None:
    call.attribution = torch.randn(2, 5, generator=gen(5), dtype=torch.float64)  # 2 curves of 5 points


def _cells_base(call: Call) -> None:
    cells = torch.zeros(2, T, dtype=torch.bool)
    cells[0, : T // 2] = True
    cells[1, T // 2 :] = True
    call.mask = cells  # (n_cells, T): the cell masks of a 2-cell time grid


def _cell_of_each_map_base(call: Call) -> None:
    _cells_base(call)
    call.mask = call.mask[:, None]  # (M, 1, T): the explained cell of each of the 2 maps


def _labels_base(call: Call) -> None:
    call.target = [0, 1]


def _filter_base(call: Call) -> None:
    with torch.no_grad():
        call.target = call.model(call.x).argmax(1).tolist()  # the predicted classes pass the filter


def _class(metric: Callable[..., M.Metric]) -> Callable[[Call], Any]:
    """Run a metric class with the shared signature (constructed from the call's params)."""

    def run(c: Call) -> Any:
        return metric(**c.params)(c.model, c.x, c.attribution, c.target, explainer=c.explainer, mask=c.mask)

    return run


def _evaluate(c: Call) -> Any:
    data = (c.x, c.target, c.mask)
    return M.evaluate([c.explainer], c.params["metrics"], c.model, data)


STEPS = {
    "steps": Param(3, "count"),
    "max_fraction": Param(1.0, "fraction"),
    "batch_size": Param(None, "count"),
    "substrate": Param(0.0, "substrate"),
    "channel_reduction": Param(None, "option"),
}
RISE_STEP = {
    "step": Param(5, "count"),
    "batch_size": Param(None, "count"),
    "substrate": Param(0.0, "substrate"),
}
SENSITIVITY = {
    "n_perturbations": Param(2, "count"),
    "radius": Param(0.02, "float"),
    "norm": Param("fro", "norm"),
    "normalize": Param(False, "bool"),
    "generator": Param(None, "generator"),
}


METRICS: list[MetricCase] = [
    # ------------------------------------------------------------------ localisation
    MetricCase(
        "pointing_game",
        ("pointing_game",),
        lambda c: M.pointing_game(c.attribution, c.mask, **c.params),
        MASKED,
        {"tolerance": Param(1.5, "float")},
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "energy_pointing_game",
        ("energy_pointing_game",),
        lambda c: M.energy_pointing_game(c.attribution, c.mask),
        MASKED,
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    MetricCase(
        "relevance_mass",
        ("relevance_mass",),
        lambda c: M.relevance_mass(c.attribution, c.mask, **c.params),
        MASKED,
        {"positive": Param(False, "bool")},
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    MetricCase(
        "relevance_rank_accuracy",
        ("relevance_rank_accuracy",),
        lambda c: M.relevance_rank_accuracy(c.attribution, c.mask),
        MASKED,
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "top_q_iou",
        ("top_q_iou",),
        lambda c: M.top_q_iou(c.attribution, c.mask, **c.params),
        MASKED,
        {"q": Param(0.25, "fraction")},
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "PointingGame",
        ("PointingGame", "Metric"),
        _class(M.PointingGame),
        MASKED,
        {"tolerance": Param(0.0, "float")},
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "EnergyPointingGame",
        ("EnergyPointingGame",),
        _class(M.EnergyPointingGame),
        MASKED,
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    MetricCase(
        "RelevanceMass",
        ("RelevanceMass",),
        _class(M.RelevanceMass),
        MASKED,
        {"positive": Param(True, "bool")},
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    MetricCase(
        "RelevanceRankAccuracy",
        ("RelevanceRankAccuracy",),
        _class(M.RelevanceRankAccuracy),
        MASKED,
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "TopQIoU", ("TopQIoU",), _class(M.TopQIoU), MASKED, {"q": Param(0.1, "fraction")}, nan=EMPTY_MASK
    ),
    # ------------------------------------------------------------------ grid pointing game
    MetricCase(
        "make_grid",
        ("make_grid", "Grid", "GridBatch"),
        lambda c: M.make_grid(c.x, c.target, **c.params),
        frozenset({"x", "target"}),
        {
            "cells": Param(2, "cells"),
            "mode": Param("area", "option"),
            "resize": Param(None, "bool"),
            "distinct": Param(True, "bool"),
            "generator": Param(None, "generator"),
        },
        result="grid",
        base=_labels_base,
    ),
    MetricCase(
        "make_grid-confidence-filter",
        ("make_grid",),
        lambda c: M.make_grid(c.x, c.target, model=c.model, distinct=False, **c.params),
        frozenset({"x", "target", "model"}),
        {
            "cells": Param(2, "cells"),
            "min_confidence": Param(0.0, "fraction"),
            "batch_size": Param(None, "count"),
        },
        result="grid",
        base=_filter_base,
    ),
    MetricCase(
        "grid_pointing_game",
        ("grid_pointing_game",),
        lambda c: M.grid_pointing_game(c.attribution, c.mask, **c.params),
        MASKED,
        {"cells": Param([0, 1], "cell-index"), "reduce": Param("sum", "option")},
        base=_cells_base,
    ),
    MetricCase(
        "GridPointingGame",
        ("GridPointingGame",),
        _class(M.GridPointingGame),
        MASKED,
        {"reduce": Param("positive", "option")},
        base=_cell_of_each_map_base,
    ),
    # ------------------------------------------------------------------ faithfulness
    MetricCase(
        "deletion_curve",
        ("deletion_curve",),
        lambda c: M.deletion_curve(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        STEPS,
        result="curve",
    ),
    MetricCase(
        "insertion_curve",
        ("insertion_curve", "RiseBlur"),
        lambda c: M.insertion_curve(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {**RISE_STEP, "substrate": Param(None, "substrate")},
        result="curve",
    ),
    MetricCase(
        "RiseBlur",
        ("RiseBlur",),
        lambda c: M.insertion_curve(
            c.model,
            c.x,
            c.attribution,
            c.target,
            steps=3,
            substrate=M.RiseBlur(c.params["sigma"], size=c.params["size"]),
            **NO_BAR,
        ),
        MODEL_BASED,
        {"sigma": Param(2.0, "float"), "size": Param(5, "count")},
        result="curve",
    ),
    MetricCase(
        "NoisyLinearImputation",
        ("NoisyLinearImputation",),
        lambda c: M.deletion_curve(
            c.model,
            c.x,
            c.attribution,
            c.target,
            steps=3,
            substrate=M.NoisyLinearImputation(**c.params),
            **NO_BAR,
        ),
        MODEL_BASED,
        {
            "noise": Param(0.01, "float"),
            "max_iter": Param(50, "count"),
            "tol": Param(1e-10, "float"),
            "generator": Param(None, "generator"),
        },
        result="curve",
    ),
    MetricCase(
        "auc",
        ("auc",),
        lambda c: M.auc(c.attribution),
        frozenset({"attribution"}),
        result="per-curve",
        base=_curve_base,
    ),
    MetricCase(
        "faithfulness_correlation",
        ("faithfulness_correlation",),
        lambda c: M.faithfulness_correlation(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "n_runs": Param(3, "count"),
            "subset_size": Param(4, "count"),
            "substrate": Param(0.0, "substrate"),
            "similarity": Param("pearson", "similarity"),
            "batch_size": Param(None, "count"),
            "generator": Param(None, "generator"),
        },
        nan=CONSTANT_MAP | USER_NAN | CONSTANT_DROPS,
    ),
    MetricCase(
        "infidelity",
        ("infidelity",),
        lambda c: M.infidelity(c.model, c.x, c.attribution, c.target, **c.params),
        MODEL_BASED,
        {
            "n_perturbations": Param(2, "count"),
            "std": Param(0.1, "float"),
            "perturbation": Param(None, "perturbation"),
            "normalize": Param(False, "bool"),
            "batch_size": Param(None, "count"),
            "generator": Param(None, "generator"),
        },
    ),
    MetricCase(
        "Deletion",
        ("Deletion",),
        _class(M.Deletion),
        MODEL_BASED,
        {**RISE_STEP, "progress": Param(False, "bool")},
    ),
    MetricCase(
        "Insertion",
        ("Insertion",),
        _class(M.Insertion),
        MODEL_BASED,
        {**STEPS, "substrate": Param(None, "substrate"), "progress": Param(False, "bool")},
    ),
    MetricCase(
        "FaithfulnessCorrelation",
        ("FaithfulnessCorrelation",),
        _class(M.FaithfulnessCorrelation),
        MODEL_BASED,
        {
            "n_runs": Param(3, "count"),
            "subset_size": Param(5, "count"),
            "batch_size": Param(None, "count"),
            "similarity": Param("spearman", "similarity"),
            "generator": Param(None, "generator"),
            "progress": Param(False, "bool"),
        },
        nan=CONSTANT_MAP | USER_NAN | CONSTANT_DROPS,
    ),
    MetricCase(
        "Infidelity",
        ("Infidelity",),
        _class(M.Infidelity),
        MODEL_BASED,
        {
            "n_perturbations": Param(2, "count"),
            "std": Param(0.05, "float"),
            "normalize": Param(True, "bool"),
            "batch_size": Param(None, "count"),
            "generator": Param(None, "generator"),
        },
    ),
    # ------------------------------------------------------------------ robustness
    MetricCase(
        "max_sensitivity",
        ("max_sensitivity",),
        lambda c: M.max_sensitivity(
            c.explainer, c.x, c.target, attribution=c.attribution, **c.params, **NO_BAR
        ),
        EXPLAINER_BASED,
        SENSITIVITY,
    ),
    MetricCase(
        "avg_sensitivity",
        ("avg_sensitivity",),
        lambda c: M.avg_sensitivity(
            c.explainer, c.x, c.target, attribution=c.attribution, **c.params, **NO_BAR
        ),
        EXPLAINER_BASED,
        SENSITIVITY,
    ),
    MetricCase(
        "MaxSensitivity",
        ("MaxSensitivity",),
        _class(M.MaxSensitivity),
        EXPLAINER_BASED,
        {**SENSITIVITY, "progress": Param(False, "bool")},
    ),
    MetricCase(
        "AvgSensitivity",
        ("AvgSensitivity",),
        _class(M.AvgSensitivity),
        EXPLAINER_BASED,
        {**SENSITIVITY, "progress": Param(False, "bool")},
    ),
    # ------------------------------------------------------------------ complexity
    MetricCase(
        "sparseness",
        ("sparseness",),
        lambda c: M.sparseness(c.attribution),
        frozenset({"attribution"}),
        nan=ZERO_MAP,
    ),
    MetricCase(
        "complexity",
        ("complexity",),
        lambda c: M.complexity(c.attribution),
        frozenset({"attribution"}),
        nan=ZERO_MAP,
    ),
    MetricCase("Sparseness", ("Sparseness",), _class(M.Sparseness), frozenset({"attribution"}), nan=ZERO_MAP),
    MetricCase("Complexity", ("Complexity",), _class(M.Complexity), frozenset({"attribution"}), nan=ZERO_MAP),
    # ------------------------------------------------------------------ axioms and sanity
    MetricCase(
        "completeness_gap",
        ("completeness_gap",),
        lambda c: M.completeness_gap(c.model, c.x, c.attribution, c.target, **c.params),
        MODEL_BASED,
        {"baseline": Param(0.0, "baseline"), "batch_size": Param(None, "count")},
    ),
    MetricCase(
        "randomisation_layers",
        ("randomisation_layers",),
        lambda c: M.randomisation_layers(c.model),
        frozenset({"model"}),
        result="names",
    ),
    MetricCase(
        "model_randomisation",
        ("model_randomisation",),
        lambda c: M.model_randomisation(c.explainer, c.x, c.target, attribution=c.attribution, **c.params),
        EXPLAINER_BASED,
        {
            "layers": Param(None, "layers"),
            "similarity": Param("spearman", "similarity"),
            "use_abs": Param(False, "bool"),
            "generator": Param(None, "generator"),
        },
        result="curve",
        nan=CONSTANT_MAP | USER_NAN,
    ),
    MetricCase(
        "random_logit",
        ("random_logit",),
        lambda c: M.random_logit(c.explainer, c.x, c.target, attribution=c.attribution, **c.params),
        EXPLAINER_BASED,
        {
            "n_classes": Param(None, "count"),
            "similarity": Param("pearson", "similarity"),
            "generator": Param(None, "generator"),
        },
        nan=CONSTANT_MAP | USER_NAN,
    ),
    MetricCase(
        "CompletenessGap",
        ("CompletenessGap",),
        _class(M.CompletenessGap),
        MODEL_BASED,
        {"baseline": Param("mean", "baseline"), "batch_size": Param(None, "count")},
    ),
    MetricCase(
        "ModelRandomisation",
        ("ModelRandomisation",),
        _class(M.ModelRandomisation),
        EXPLAINER_BASED,
        {
            "layers": Param(["6", "2"], "layers"),
            "similarity": Param("cosine", "similarity"),
            "use_abs": Param(True, "bool"),
            "generator": Param(None, "generator"),
        },
        nan=USER_NAN,
    ),
    MetricCase(
        "RandomLogit",
        ("RandomLogit",),
        _class(M.RandomLogit),
        EXPLAINER_BASED,
        {
            "n_classes": Param(4, "count"),
            "similarity": Param("spearman", "similarity"),
            "generator": Param(None, "generator"),
        },
        nan=CONSTANT_MAP | USER_NAN,
    ),
    # ------------------------------------------------------------------ evaluate
    MetricCase(
        "evaluate",
        ("evaluate", "Table"),
        _evaluate,
        frozenset({"model", "x", "target", "mask", "explainer"}),
        {
            "metrics": Param(
                (M.Sparseness(), M.Deletion(steps=2, progress=False), M.PointingGame()), "metrics"
            )
        },
        result="table",
    ),
]
