"""Evaluation metrics: functional metrics returning per-sample tensors, and thin metric classes.

Functional metrics return one value per sample, shape (B,), or curves (B, K); they are
vectorised over the batch, call the model only through the engine (chunked by ``batch_size``)
and run on the input's device. Metric classes bundle configuration, declare
``higher_is_better``/``requires_model``/``requires_explainer``/``requires_mask``/``is_stochastic``
and share one call signature, so :func:`evaluate` can run any of them.
"""

from .axioms import (
    EffectiveComplexity,
    InputInvariance,
    NonSensitivity,
    effective_complexity,
    input_invariance,
    non_sensitivity,
    shift_first_layer,
)
from .base import Metric
from .complexity import Complexity, Sparseness, complexity, sparseness
from .curves import Deletion, Insertion, auc, deletion_curve, insertion_curve
from .evaluate import Table, evaluate
from .faithfulness import FaithfulnessCorrelation, Infidelity, faithfulness_correlation, infidelity
from .grid import Grid, GridBatch, make_grid
from .grid_pointing import GridPointingGame, grid_pointing_game
from .localisation import (
    EnergyPointingGame,
    PointingGame,
    RelevanceMass,
    RelevanceRankAccuracy,
    TopQIoU,
    energy_pointing_game,
    pointing_game,
    relevance_mass,
    relevance_rank_accuracy,
    top_q_iou,
)
from .localisation_more import (
    AttributionLocalisation,
    Focus,
    LocalisationAUC,
    TopKIntersection,
    attribution_localisation,
    focus,
    localisation_auc,
    top_k_intersection,
)
from .perturbation_curves import (
    IROF,
    Monotonicity,
    MonotonicityCorrelation,
    RegionPerturbation,
    Selectivity,
    SensitivityN,
    Sufficiency,
    irof,
    monotonicity,
    monotonicity_correlation,
    region_perturbation,
    region_perturbation_curve,
    selectivity,
    sensitivity_n,
    sufficiency,
)
from .robustness import AvgSensitivity, MaxSensitivity, avg_sensitivity, max_sensitivity
from .sanity import (
    CompletenessGap,
    ModelRandomisation,
    RandomLogit,
    completeness_gap,
    model_randomisation,
    random_logit,
    randomisation_layers,
)
from .similarity import cosine, kendall_tau, pearson, spearman, ssim, top_k_overlap
from .stability import (
    Consistency,
    Continuity,
    LocalLipschitzEstimate,
    RelativeInputStability,
    RelativeOutputStability,
    RelativeRepresentationStability,
    consistency,
    continuity,
    continuity_shifts,
    local_lipschitz_estimate,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)
from .substrates import NoisyLinearImputation, RiseBlur

__all__ = [
    "Metric",
    "evaluate",
    "Table",
    # localisation
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass",
    "relevance_rank_accuracy",
    "top_q_iou",
    "PointingGame",
    "EnergyPointingGame",
    "RelevanceMass",
    "RelevanceRankAccuracy",
    "TopQIoU",
    "Grid",
    "GridBatch",
    "make_grid",
    "grid_pointing_game",
    "GridPointingGame",
    "focus",
    "localisation_auc",
    "top_k_intersection",
    "attribution_localisation",
    "Focus",
    "LocalisationAUC",
    "TopKIntersection",
    "AttributionLocalisation",
    # faithfulness
    "deletion_curve",
    "insertion_curve",
    "auc",
    "faithfulness_correlation",
    "infidelity",
    "RiseBlur",
    "NoisyLinearImputation",
    "Deletion",
    "Insertion",
    "FaithfulnessCorrelation",
    "Infidelity",
    "irof",
    "selectivity",
    "region_perturbation",
    "region_perturbation_curve",
    "sensitivity_n",
    "monotonicity",
    "monotonicity_correlation",
    "sufficiency",
    "IROF",
    "Selectivity",
    "RegionPerturbation",
    "SensitivityN",
    "Monotonicity",
    "MonotonicityCorrelation",
    "Sufficiency",
    # robustness
    "max_sensitivity",
    "avg_sensitivity",
    "MaxSensitivity",
    "AvgSensitivity",
    "local_lipschitz_estimate",
    "LocalLipschitzEstimate",
    "continuity",
    "continuity_shifts",
    "Continuity",
    "consistency",
    "Consistency",
    "relative_input_stability",
    "RelativeInputStability",
    "relative_output_stability",
    "RelativeOutputStability",
    "relative_representation_stability",
    "RelativeRepresentationStability",
    # complexity
    "sparseness",
    "complexity",
    "Sparseness",
    "Complexity",
    "effective_complexity",
    "EffectiveComplexity",
    # axioms and sanity
    "non_sensitivity",
    "input_invariance",
    "shift_first_layer",
    "NonSensitivity",
    "InputInvariance",
    "completeness_gap",
    "randomisation_layers",
    "model_randomisation",
    "random_logit",
    "CompletenessGap",
    "ModelRandomisation",
    "RandomLogit",
    # similarity between maps
    "spearman",
    "kendall_tau",
    "pearson",
    "cosine",
    "ssim",
    "top_k_overlap",
]
