"""The contract every explainer in the registry satisfies, checked through ``salience.testing``.

Each registered ``Case`` (tests/registry.py) runs every explainer check of the public kit (the
checks users run on their own explainers, as scikit-learn's ``check_estimator``) on each of its
kinds: output shape/dtype/device, batch invariance, chunk invariance with the model-call counts
of ``Case.passes``, determinism, no side effects (also when the model raises, and on a
training-mode model), equivalent target forms, the recorded target. The kit's own tests are in
tests/testing/.
"""

from __future__ import annotations

import inspect

import pytest

import salience as sl

from registry import EXPLAINERS, TRANSFORMER_EXPLAINERS  # isort: skip (registry imports the cases)
from cases_attention import transformer_checks  # isort: skip
from salience.testing import explainer_checks, toy_model

CHECKS = [
    pytest.param(check, id=f"{case.id}-{name}")
    for case in EXPLAINERS
    for name, check in explainer_checks(
        case.make, kinds=case.kinds, stochastic=case.stochastic, expected_passes=case.passes
    )
] + [
    pytest.param(check, id=f"{case.id}-{name}")
    for case in TRANSFORMER_EXPLAINERS
    for name, check in transformer_checks(case)
]


@pytest.mark.parametrize("check", CHECKS)
def test_contract(check):
    assert check()


# the public base classes, for subclassing (their subclasses are registered)
BASES = {sl.Explainer, sl.Wrapper, getattr(sl, "LayerExplainer", sl.Explainer)}


def test_every_public_explainer_is_registered():
    public = {
        name
        for name, obj in vars(sl).items()
        if inspect.isclass(obj) and issubclass(obj, sl.Explainer) and obj not in BASES
    }
    registered = set()
    for case in [*EXPLAINERS, *TRANSFORMER_EXPLAINERS]:
        e = case.make(toy_model("signal"))
        while True:
            registered.add(type(e).__name__)
            if not isinstance(e, sl.Wrapper):
                break
            e = e.explainer
    assert public <= registered, f"not in tests/registry.py: {sorted(public - registered)}"
