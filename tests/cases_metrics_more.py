"""Hostile-use cases for the metric families of issue #20 (ordered perturbation, stability,
localisation, axioms, similarity between maps): the grid of tests/metrics/test_fuzz_metrics.py
runs over ``cases_metrics.METRICS + MORE``."""

from __future__ import annotations

from cases_metrics import (
    CONSTANT_DROPS,
    CONSTANT_MAP,
    EMPTY_MASK,
    EXPLAINER_BASED,
    MASKED,
    MODEL_BASED,
    NO_BAR,
    USER_NAN,
    ZERO_MAP,
    Call,
    M,
    MetricCase,
    Param,
    _class,
)

#: IROF divides by f(x): NaN where the score at x is 0
IROF_NAN: frozenset[str] = frozenset()
#: Sufficiency is NaN where no other sample is within the threshold (threshold 0 on distinct maps)
SUFFICIENCY_NAN = frozenset({"threshold:zero"})

STABILITY = {
    "n_perturbations": Param(2, "count"),
    "noise": Param("gaussian", "option"),
    "scale": Param(0.1, "float"),
    "keep_prediction": Param(True, "bool"),
    "generator": Param(None, "generator"),
}
RELATIVE = {**STABILITY, "eps_min": Param(1e-6, "float")}


def _same_maps(c: Call) -> None:
    """Consistency: both samples get the same map (one shared label, a defined value)."""
    c.attribution = c.attribution[:1].expand_as(c.attribution).clone()


#: a copy equal to x in the dtype (noise absorbed by huge values) is skipped; none left: NaN
ABSORBED = frozenset({"x:huge-values"})
#: Consistency is NaN for a sample no other sample shares a label with (random maps, B = 2)
UNSHARED = frozenset(
    {
        "x:one-step",
        "x:requires-grad",
        "x:non-contiguous",
        "x:inference",
        "x:huge-values",
        "attribution:other-input-same-batch",
    }
)


MORE: list[MetricCase] = [
    # ------------------------------------------------------------------ perturbation curves
    MetricCase(
        "irof",
        ("irof",),
        lambda c: M.irof(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "n_segments": Param(4, "count"),
            "substrate": Param(0.0, "substrate"),
            "normalize": Param(True, "bool"),
            "batch_size": Param(None, "count"),
        },
        nan=IROF_NAN,
    ),
    MetricCase(
        "selectivity",
        ("selectivity",),
        lambda c: M.selectivity(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "patch_size": Param(4, "count"),
            "substrate": Param(0.0, "substrate"),
            "normalize": Param(True, "bool"),
            "batch_size": Param(None, "count"),
        },
    ),
    MetricCase(
        "region_perturbation_curve",
        ("region_perturbation_curve",),
        lambda c: M.region_perturbation_curve(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "patch_size": Param(4, "count"),
            "order": Param("lerf", "option"),
            "n_regions": Param(3, "count"),
            "substrate": Param(0.0, "substrate"),
            "batch_size": Param(None, "count"),
        },
        result="curve",
    ),
    MetricCase(
        "region_perturbation",
        ("region_perturbation",),
        lambda c: M.region_perturbation(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "patch_size": Param(4, "count"),
            "order": Param("morf", "option"),
            "n_regions": Param(3, "count"),
            "substrate": Param(0.0, "substrate"),
            "batch_size": Param(None, "count"),
        },
    ),
    MetricCase(
        "sensitivity_n",
        ("sensitivity_n",),
        lambda c: M.sensitivity_n(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "n": Param(4, "count"),
            "n_runs": Param(3, "count"),
            "substrate": Param(0.0, "substrate"),
            "similarity": Param("pearson", "similarity"),
            "batch_size": Param(None, "count"),
            "generator": Param(None, "generator"),
        },
        nan=CONSTANT_MAP | USER_NAN | CONSTANT_DROPS,
    ),
    MetricCase(
        "monotonicity",
        ("monotonicity",),
        lambda c: M.monotonicity(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "features_in_step": Param(8, "count"),
            "substrate": Param(0.0, "substrate"),
            "batch_size": Param(None, "count"),
        },
    ),
    MetricCase(
        "monotonicity_correlation",
        ("monotonicity_correlation",),
        lambda c: M.monotonicity_correlation(c.model, c.x, c.attribution, c.target, **c.params, **NO_BAR),
        MODEL_BASED,
        {
            "n_samples": Param(2, "count"),
            "features_in_step": Param(8, "count"),
            "eps": Param(1e-5, "float"),
            "similarity": Param("spearman", "similarity"),
            "batch_size": Param(None, "count"),
            "generator": Param(None, "generator"),
        },
        nan=CONSTANT_MAP | USER_NAN | CONSTANT_DROPS,
    ),
    MetricCase(
        "sufficiency",
        ("sufficiency",),
        lambda c: M.sufficiency(c.model, c.x, c.attribution, c.target, **c.params),
        frozenset({"model", "x", "attribution"}),
        {
            "threshold": Param(1.0, "float"),
            "distance": Param("euclidean", "option"),
            "batch_size": Param(None, "count"),
        },
        nan=SUFFICIENCY_NAN,
    ),
    MetricCase(
        "IROF",
        ("IROF",),
        _class(M.IROF),
        MODEL_BASED,
        {"n_segments": Param(4, "count"), "progress": Param(False, "bool")},
        nan=IROF_NAN,
    ),
    MetricCase(
        "Selectivity",
        ("Selectivity",),
        _class(M.Selectivity),
        MODEL_BASED,
        {"patch_size": Param(4, "count"), "progress": Param(False, "bool")},
    ),
    MetricCase(
        "RegionPerturbation",
        ("RegionPerturbation",),
        _class(M.RegionPerturbation),
        MODEL_BASED,
        {"patch_size": Param(4, "count"), "order": Param("lerf", "option"), "progress": Param(False, "bool")},
    ),
    MetricCase(
        "SensitivityN",
        ("SensitivityN",),
        _class(M.SensitivityN),
        MODEL_BASED,
        {
            "n": Param(4, "count"),
            "n_runs": Param(3, "count"),
            "generator": Param(None, "generator"),
            "progress": Param(False, "bool"),
        },
        nan=CONSTANT_MAP | USER_NAN | CONSTANT_DROPS,
    ),
    MetricCase(
        "Monotonicity",
        ("Monotonicity",),
        _class(M.Monotonicity),
        MODEL_BASED,
        {"features_in_step": Param(8, "count"), "progress": Param(False, "bool")},
    ),
    MetricCase(
        "MonotonicityCorrelation",
        ("MonotonicityCorrelation",),
        _class(M.MonotonicityCorrelation),
        MODEL_BASED,
        {
            "n_samples": Param(2, "count"),
            "features_in_step": Param(8, "count"),
            "generator": Param(None, "generator"),
            "progress": Param(False, "bool"),
        },
        nan=CONSTANT_MAP | USER_NAN | CONSTANT_DROPS,
    ),
    MetricCase(
        "Sufficiency",
        ("Sufficiency",),
        _class(M.Sufficiency),
        frozenset({"model", "x", "attribution"}),
        {"threshold": Param(1.0, "float")},
        nan=SUFFICIENCY_NAN,
    ),
    # ------------------------------------------------------------------ similarity between maps (issue #20)
    MetricCase(
        "spearman",
        ("spearman",),
        lambda c: M.spearman(c.attribution, c.x),
        frozenset({"attribution", "x"}),
        nan=CONSTANT_MAP,
    ),
    MetricCase(
        "kendall_tau",
        ("kendall_tau",),
        lambda c: M.kendall_tau(c.attribution, c.x),
        frozenset({"attribution", "x"}),
        nan=CONSTANT_MAP,
    ),
    MetricCase(
        "pearson",
        ("pearson",),
        lambda c: M.pearson(c.attribution, c.x),
        frozenset({"attribution", "x"}),
        nan=CONSTANT_MAP,
    ),
    MetricCase(
        "cosine", ("cosine",), lambda c: M.cosine(c.attribution, c.x), frozenset({"attribution", "x"})
    ),
    MetricCase(
        "ssim",
        ("ssim",),
        lambda c: M.ssim(c.attribution, c.x, **c.params),
        frozenset({"attribution", "x"}),
        {
            "window": Param("gaussian", "option"),
            "sigma": Param(1.5, "float"),
            "k1": Param(0.01, "float"),
            "k2": Param(0.03, "float"),
            "sample_covariance": Param(False, "bool"),
        },
    ),
    MetricCase(
        "top_k_overlap",
        ("top_k_overlap",),
        lambda c: M.top_k_overlap(c.attribution, c.x, **c.params),
        frozenset({"attribution", "x"}),
        {"k": Param(4, "count")},
    ),
    # ------------------------------------------------------------------ more localisation (issue #20)
    MetricCase(
        "focus",
        ("focus",),
        lambda c: M.focus(c.attribution, c.mask),
        MASKED,
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    MetricCase(
        "localisation_auc",
        ("localisation_auc",),
        lambda c: M.localisation_auc(c.attribution, c.mask),
        MASKED,
        nan=EMPTY_MASK | frozenset({"mask:all-true"}),
    ),
    MetricCase(
        "top_k_intersection",
        ("top_k_intersection",),
        lambda c: M.top_k_intersection(c.attribution, c.mask, **c.params),
        MASKED,
        {"k": Param(5, "count"), "concept_influence": Param(False, "bool")},
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "attribution_localisation",
        ("attribution_localisation",),
        lambda c: M.attribution_localisation(c.attribution, c.mask, **c.params),
        MASKED,
        {"positive": Param(True, "bool"), "weighted": Param(True, "bool")},
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    MetricCase("Focus", ("Focus",), _class(M.Focus), MASKED, nan=EMPTY_MASK | ZERO_MAP),
    MetricCase(
        "LocalisationAUC",
        ("LocalisationAUC",),
        _class(M.LocalisationAUC),
        MASKED,
        nan=EMPTY_MASK | frozenset({"mask:all-true"}),
    ),
    MetricCase(
        "TopKIntersection",
        ("TopKIntersection",),
        _class(M.TopKIntersection),
        MASKED,
        {"k": Param(0.25, "fraction"), "concept_influence": Param(True, "bool")},
        nan=EMPTY_MASK,
    ),
    MetricCase(
        "AttributionLocalisation",
        ("AttributionLocalisation",),
        _class(M.AttributionLocalisation),
        MASKED,
        {"positive": Param(False, "bool"), "weighted": Param(False, "bool")},
        nan=EMPTY_MASK | ZERO_MAP,
    ),
    # ------------------------------------------------------------------ complexity and axioms (issue #20)
    MetricCase(
        "effective_complexity",
        ("effective_complexity",),
        lambda c: M.effective_complexity(c.attribution, **c.params),
        frozenset({"attribution"}),
        {"eps": Param(1e-5, "float"), "relative": Param(True, "bool")},
    ),
    MetricCase(
        "EffectiveComplexity",
        ("EffectiveComplexity",),
        _class(M.EffectiveComplexity),
        frozenset({"attribution"}),
        {"eps": Param(0.1, "float")},
    ),
    MetricCase(
        "non_sensitivity",
        ("non_sensitivity",),
        lambda c: M.non_sensitivity(c.model, c.x, c.attribution, c.target, **c.params),
        MODEL_BASED,
        {
            "eps": Param(1e-5, "float"),
            "atol": Param(1e-5, "float"),
            "features_in_step": Param(4, "count"),
            "substrate": Param(0.0, "substrate"),
            "batch_size": Param(None, "count"),
        },
    ),
    MetricCase(
        "NonSensitivity",
        ("NonSensitivity",),
        _class(M.NonSensitivity),
        MODEL_BASED,
        {"features_in_step": Param(3, "count"), "batch_size": Param(5, "count")},
    ),
    MetricCase(
        "input_invariance",
        ("input_invariance", "shift_first_layer"),
        lambda c: M.input_invariance(c.explainer, c.x, c.target, attribution=c.attribution, **c.params),
        EXPLAINER_BASED,
        {"shift": Param(-1.0, "float"), "atol": Param(1e-4, "float")},
    ),
    MetricCase(
        "InputInvariance",
        ("InputInvariance",),
        _class(M.InputInvariance),
        EXPLAINER_BASED,
        {"shift": Param(0.5, "float")},
    ),
    # ------------------------------------------------------------------ stability (metrics/stability.py)
    MetricCase(
        "local_lipschitz_estimate",
        ("local_lipschitz_estimate",),
        lambda c: M.local_lipschitz_estimate(
            c.explainer, c.x, c.target, attribution=c.attribution, **c.params, **NO_BAR
        ),
        EXPLAINER_BASED,
        STABILITY,
        nan=USER_NAN | ABSORBED,
    ),
    MetricCase(
        "relative_input_stability",
        ("relative_input_stability",),
        lambda c: M.relative_input_stability(
            c.explainer, c.x, c.target, attribution=c.attribution, **c.params, **NO_BAR
        ),
        EXPLAINER_BASED,
        RELATIVE,
        nan=USER_NAN,
    ),
    MetricCase(
        "relative_output_stability",
        ("relative_output_stability",),
        lambda c: M.relative_output_stability(
            c.explainer, c.x, c.target, attribution=c.attribution, **c.params, **NO_BAR
        ),
        EXPLAINER_BASED,
        RELATIVE,
        nan=USER_NAN,
    ),
    MetricCase(
        "relative_representation_stability",
        ("relative_representation_stability",),
        lambda c: M.relative_representation_stability(
            c.explainer, c.x, c.target, attribution=c.attribution, layer="1", **c.params, **NO_BAR
        ),
        EXPLAINER_BASED,
        RELATIVE,
        nan=USER_NAN,
    ),
    MetricCase(
        "continuity",
        ("continuity", "continuity_shifts"),
        lambda c: M.continuity(c.explainer, c.x, c.target, attribution=c.attribution, **c.params, **NO_BAR),
        EXPLAINER_BASED,
        {"n_steps": Param(3, "count"), "keep_prediction": Param(False, "bool")},
        nan=USER_NAN,
    ),
    MetricCase(
        "consistency",
        ("consistency",),
        lambda c: M.consistency(c.model, c.x, c.attribution, **c.params),
        frozenset({"model", "x", "attribution"}),
        {"k": Param(2, "count"), "batch_size": Param(None, "count")},
        base=_same_maps,
        nan=UNSHARED,
    ),
    MetricCase(
        "LocalLipschitzEstimate",
        ("LocalLipschitzEstimate",),
        _class(M.LocalLipschitzEstimate),
        EXPLAINER_BASED,
        {**STABILITY, "progress": Param(False, "bool")},
        nan=USER_NAN | ABSORBED,
    ),
    MetricCase(
        "RelativeInputStability",
        ("RelativeInputStability",),
        _class(M.RelativeInputStability),
        EXPLAINER_BASED,
        {**RELATIVE, "progress": Param(False, "bool")},
        nan=USER_NAN,
    ),
    MetricCase(
        "RelativeOutputStability",
        ("RelativeOutputStability",),
        _class(M.RelativeOutputStability),
        EXPLAINER_BASED,
        {**RELATIVE, "progress": Param(False, "bool")},
        nan=USER_NAN,
    ),
    MetricCase(
        "RelativeRepresentationStability",
        ("RelativeRepresentationStability",),
        _class(lambda **kw: M.RelativeRepresentationStability(layer="1", **kw)),
        EXPLAINER_BASED,
        {**RELATIVE, "progress": Param(False, "bool")},
        nan=USER_NAN,
    ),
    MetricCase(
        "Continuity",
        ("Continuity",),
        _class(M.Continuity),
        EXPLAINER_BASED,
        {"n_steps": Param(3, "count"), "progress": Param(False, "bool")},
        nan=USER_NAN,
    ),
    MetricCase(
        "Consistency",
        ("Consistency",),
        _class(M.Consistency),
        frozenset({"model", "x", "attribution"}),
        {"k": Param(2, "count")},
        base=_same_maps,
        nan=UNSHARED,
    ),
]
