"""Every public explainer with tiny budgets: the contract suite runs over this list.

Adding an explainer = one ``Case`` here. ``passes(B)`` lists the number of rows of each engine
pass the explainer makes for a batch of B samples (for the model-call count test).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

import salience as sl


@dataclass
class Case:
    id: str
    make: Callable[..., sl.Explainer]  # make(model, batch_size=None) -> Explainer
    passes: Callable[[int], list[int]] | None = None
    stochastic: bool = False
    kinds: tuple[str, ...] = ("signal", "image", "video")
    needs_layer: bool = False
    tags: dict = field(default_factory=dict)

    def expected_calls(self, b: int, batch_size: int) -> int | None:
        if self.passes is None:
            return None
        return sum(math.ceil(r / batch_size) for r in self.passes(b))


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


CORE: list[Case] = [
    Case("Gradient", lambda m, **kw: sl.Gradient(m, **kw), passes=lambda b: [b]),
    Case("Saliency", lambda m, **kw: sl.Saliency(m, **kw), passes=lambda b: [b]),
    Case("InputXGradient", lambda m, **kw: sl.InputXGradient(m, **kw), passes=lambda b: [b]),
    Case(
        "IG-trapezoid",
        lambda m, **kw: sl.IntegratedGradients(m, n_steps=4, **kw),
        passes=lambda b: [4 * b],
    ),
    Case(
        "IG-gausslegendre-mean",
        lambda m, **kw: sl.IntegratedGradients(m, n_steps=3, rule="gausslegendre", baseline="mean", **kw),
        passes=lambda b: [3 * b, b, b],
    ),
    Case(
        "SmoothGrad(Gradient)",
        lambda m, **kw: sl.SmoothGrad(sl.Gradient(m, **kw), n_samples=3, generator=_gen()),
        passes=lambda b: [3 * b, b],  # noisy rows, then the score at x itself
        stochastic=True,
    ),
    Case(
        "VarGrad(IG)",
        lambda m, **kw: sl.SmoothGrad(
            sl.IntegratedGradients(m, n_steps=2, rule="riemann_right", **kw),
            n_samples=2,
            kind="var",
            generator=_gen(),
        ),
        passes=lambda b: [4 * b, 2 * b, b],
        stochastic=True,
    ),
]


# Each family adds its cases in its own module (tests/cases_<family>.py) and one line here.
from cases_cam import CAM  # noqa: E402
from cases_cam_more import CAM_MORE  # noqa: E402
from cases_classrel import CLASSREL  # noqa: E402
from cases_domains import DOMAIN_CASES  # noqa: E402
from cases_groups import GROUPS  # noqa: E402
from cases_integration import INTEGRATION  # noqa: E402
from cases_layer_sobol import LAYER, SOBOL_HSIC  # noqa: E402
from cases_modbp import MODBP  # noqa: E402
from cases_perturbation import PERTURBATION  # noqa: E402
from cases_reference import REFERENCE  # noqa: E402

EXPLAINERS: list[Case] = [
    *CORE,
    *CAM,
    *CAM_MORE,
    *CLASSREL,
    *PERTURBATION,
    *DOMAIN_CASES,
    *MODBP,
    *INTEGRATION,
    *REFERENCE,
    *LAYER,
    *SOBOL_HSIC,
    *GROUPS,
]

# Methods that need a transformer: the contract suite runs them on tests/transformer_models.py
# (cases_attention.transformer_checks), not on the CNNs the EXPLAINERS cases are run on.
from cases_attention import ATTENTION, ON_TRANSFORMERS  # noqa: E402

TRANSFORMER_EXPLAINERS: list[Case] = [*ATTENTION, *ON_TRANSFORMERS]
