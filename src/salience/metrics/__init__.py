"""Evaluation metrics: functional metrics returning per-sample tensors, and thin metric classes.

Functional metrics return one value per sample, shape (B,), or curves (B, K); they are
vectorised over the batch, call the model only through the engine (chunked by ``batch_size``)
and run on the input's device. Metric classes bundle configuration, declare
``higher_is_better``/``requires_model``/``requires_explainer``/``requires_mask``/``is_stochastic``
and share one call signature, so :func:`evaluate` can run any of them.
"""

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
    # robustness
    "max_sensitivity",
    "avg_sensitivity",
    "MaxSensitivity",
    "AvgSensitivity",
    # complexity
    "sparseness",
    "complexity",
    "Sparseness",
    "Complexity",
    # axioms and sanity
    "completeness_gap",
    "randomisation_layers",
    "model_randomisation",
    "random_logit",
    "CompletenessGap",
    "ModelRandomisation",
    "RandomLogit",
]
