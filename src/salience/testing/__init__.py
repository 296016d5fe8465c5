"""Check your own explainers and domains against salience's contract (like sklearn's ``check_estimator``).

The project's own contract suite runs every built-in explainer and domain through these
checks; run them on yours::

    import salience as sl
    from salience.testing import check_explainer, check_domain

    class GradTimesInput(sl.Explainer):
        def attribute(self, x, score):
            return x * score.gradient_at_input()

    check_explainer(lambda model, **kw: GradTimesInput(model, **kw), expected_passes=lambda b: [b])
    check_domain(MyDomain(), x)   # any Domain, with your data or seeded signals

or one test per check with pytest::

    CHECKS = list(explainer_checks(make))

    @pytest.mark.parametrize("name, check", CHECKS, ids=[name for name, _ in CHECKS])
    def test_my_explainer(name, check):
        assert check()

A failed check raises :class:`CheckFailed` (an ``AssertionError``) whose message names the
check, what was expected and what was found. The checks use tiny float64 models and inputs
built here (:func:`toy_model`, :func:`toy_input`) and are deterministic.
"""

from ._api import check_domain, check_explainer, domain_checks, explainer_checks
from ._common import Check, CheckFailed
from ._domain import DOMAIN_CHECKS
from ._explainer import EXPLAINER_CHECKS, ModelFailure
from ._models import CONV_LAYER, KINDS, toy_input, toy_model, training_model

__all__ = [
    "CheckFailed",
    "Check",
    "check_explainer",
    "explainer_checks",
    "check_domain",
    "domain_checks",
    "EXPLAINER_CHECKS",
    "DOMAIN_CHECKS",
    "ModelFailure",
    "toy_model",
    "toy_input",
    "training_model",
    "KINDS",
    "CONV_LAYER",
]
