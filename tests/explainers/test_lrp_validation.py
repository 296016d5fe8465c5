"""LRP rules and composites check every parameter when they are built (issue #13, item 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from salience.explainers.lrp import Composite, Epsilon, Flat, Gamma, Pass, ZBox, ZPlus
from toy_models import bn_cnn, make_input


# ------------------------------------------------------------------------ rule names in a Composite
def test_unknown_rule_name_is_refused_when_the_composite_is_built():
    with pytest.raises(sl.ParameterError, match=r"'rules\[1\]'.*unknown LRP rule 'epsilonn'.*'zplus'"):
        Composite(rules=(((nn.Conv1d,), "zplus"), ((nn.Linear,), "epsilonn")))
    with pytest.raises(sl.ParameterError, match=r"'first'.*unknown LRP rule 'flatt'"):
        Composite(rules=(), first="flatt")
    with pytest.raises(sl.ParameterError, match=r"ZBox needs the input bounds"):
        Composite(rules=(), first="zbox")


def test_rule_names_build_the_rule_with_its_defaults():
    from salience.explainers.lrp.rules import RULES

    comp = Composite(
        rules=(((nn.Conv1d,), "ZPlus"), ((nn.Linear,), "epsilon"), ((nn.ReLU,), "pass")), first="flat"
    )
    assert comp.rules == (((nn.Conv1d,), ZPlus()), ((nn.Linear,), Epsilon()), ((nn.ReLU,), Pass()))
    assert comp.first == Flat()
    assert set(RULES) == {"epsilon", "gamma", "alphabeta", "zplus", "flat", "wsquare", "pass"}
    # the named composite and the one built from instances give the same relevance
    model, x = bn_cnn(1, bias=True, batchnorm=False), make_input("signal")
    by_object = Composite(
        rules=(((nn.Conv1d,), ZPlus()), ((nn.Linear,), Epsilon()), ((nn.ReLU,), Pass())), first=Flat()
    )
    a = sl.LRP(model, composite=comp).explain(x, 0).values
    b = sl.LRP(model, composite=by_object).explain(x, 0).values
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # single() takes a name as well
    assert sl.lrp.single("gamma").rule_for(nn.Linear(1, 1)) == Gamma()


@pytest.mark.parametrize(
    "rules, match",
    [
        ((((nn.Linear,), Gamma),), r"rule instance.*class Gamma.*Gamma\(\)"),
        ((((nn.Linear,), 0.1),), r"'rules\[0\]'.*LRP rule"),
        ((((nn.Linear,), None),), r"'rules\[0\]'.*LRP rule"),
        (((int, Epsilon()),), r"entry 0 must match an nn.Module subclass"),
        ((("Linear", Epsilon()),), r"entry 0 must match an nn.Module subclass"),
        ((((), Epsilon()),), r"entry 0 must match an nn.Module subclass"),
        ((((nn.Linear,),),), r"entry 0 must be a \(types, rule\) pair"),
        (((nn.Linear, Epsilon(), Pass()),), r"entry 0 must be a \(types, rule\) pair"),
        ("epsilon", r"sequence of \(types, rule\) pairs"),
        (Epsilon(), r"sequence of \(types, rule\) pairs"),
    ],
)
def test_malformed_rules_are_refused_when_the_composite_is_built(rules, match):
    with pytest.raises(sl.ParameterError, match=match):
        Composite(rules=rules)


def test_rules_are_stored_as_tuples_of_types_and_rules():
    comp = Composite(rules=[[nn.Linear, Epsilon(0.1)], [(nn.Conv1d, nn.Conv2d), Gamma()]])
    assert comp.rules == (((nn.Linear,), Epsilon(0.1)), ((nn.Conv1d, nn.Conv2d), Gamma()))
    mapped = Composite(rules={(nn.Linear,): "epsilon", nn.Conv1d: Gamma(0.5)})
    assert mapped.rules == (((nn.Linear,), Epsilon()), ((nn.Conv1d,), Gamma(0.5)))
    assert mapped.rule_for(nn.Conv1d(1, 1, 1)) == Gamma(0.5)


def test_other_composite_fields_are_checked():
    with pytest.raises(sl.ParameterError, match="'merge_batchnorm'.*bool"):
        Composite(rules=(), merge_batchnorm=1)  # type: ignore[arg-type]
    with pytest.raises(sl.ParameterError, match="'name'.*non-empty str"):
        Composite(rules=(), name=3)  # type: ignore[arg-type]
    with pytest.raises(sl.ParameterError, match="'name'.*non-empty str"):
        Composite(rules=(), name="")
    with pytest.raises(sl.ParameterError, match="'sums'"):
        Composite(rules=(), sums=Gamma())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ ZBox bounds
@pytest.mark.parametrize(
    "low, high, match",
    [
        (1.0, 0.0, r"low <= high.*low=1 > high=0 instead"),
        (torch.tensor([0.0, 2.0]), 1.0, r"low=2 > high=1 at index \(1,\)"),
        (torch.zeros(2, 1, 1), torch.tensor([[[1.0]], [[-1.0]]]), r"low=0 > high=-1 at index \(1, 0, 0\)"),
        (float("nan"), 1.0, r"'low'.*Got nan"),
        (0.0, float("inf"), r"'high'.*Got inf"),
        (torch.tensor([0.0, float("nan")]), 1.0, r"'low'.*1 NaN/inf"),
        (0.0, torch.tensor([1.0, float("-inf")]), r"'high'.*1 NaN/inf"),
        (torch.tensor([True]), 1.0, r"'low'.*torch.bool"),
        (0.0, torch.zeros(0), r"'high'.*non-empty"),
        (0.0, torch.ones(2, dtype=torch.complex64), r"'high'.*complex64"),
        ("0", 1.0, r"'low'.*Got '0'"),
        (0.0, None, r"'high'.*Got None"),
    ],
)
def test_zbox_bounds_are_finite_real_and_ordered(low, high, match):
    with pytest.raises(sl.ParameterError, match=match):
        ZBox(low, high)
    with pytest.raises(sl.ParameterError, match=match):
        sl.lrp.epsilon_gamma_box(low, high)


def test_zbox_bounds_that_do_not_broadcast_are_refused():
    with pytest.raises(sl.ShapeError, match=r"broadcast against each other.*\(2,\) and \(3,\)"):
        ZBox(torch.zeros(2), torch.ones(3))


def test_epsilon_gamma_box_names_itself_in_its_errors():
    with pytest.raises(sl.ParameterError, match=r"'low' and 'high' parameters of epsilon_gamma_box"):
        sl.lrp.epsilon_gamma_box(5.0, -5.0)
    with pytest.raises(sl.ParameterError, match=r"'gamma' parameter of epsilon_gamma_box"):
        sl.lrp.epsilon_gamma_box(-5.0, 5.0, gamma=-0.1)
    with pytest.raises(sl.ParameterError, match=r"'stabilizer' parameter of epsilon_gamma_box"):
        sl.lrp.epsilon_gamma_box(-5.0, 5.0, stabilizer=-1.0)


def test_zbox_keeps_its_own_copy_of_tensor_bounds():
    low, high = torch.full((3, 1), -1.0), torch.full((3, 1), 1.0)
    rule = ZBox(low, high)
    low.fill_(5.0)  # the caller changes its tensor afterwards
    assert float(rule.low.max()) == -1.0
    equal = ZBox(torch.zeros(2), torch.zeros(2))  # equal bounds are allowed
    assert torch.equal(equal.low, equal.high)
    bounded = torch.tensor([0.0, 1.0], requires_grad=True)
    assert not ZBox(bounded, 2.0).low.requires_grad


# --------------------------------------------------------------------- single(), LRP(composite=)
def test_single_checks_its_rule_name_and_stabilizer():
    with pytest.raises(sl.ParameterError, match=r"'stabilizer' parameter of single"):
        sl.lrp.single(Epsilon(), stabilizer=-1.0)
    with pytest.raises(sl.ParameterError, match=r"'rule' parameter of single"):
        sl.lrp.single(nn.Linear(1, 1))  # type: ignore[arg-type]
    with pytest.raises(sl.ParameterError, match=r"'name' parameter of single"):
        sl.lrp.single(Epsilon(), name=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "composite, match",
    [
        (np.array([1, 2]), r"Got array\(\[1, 2\]\) instead\.$"),
        (torch.tensor([1.0]), r"Got tensor\(\[1\.\]\) instead\.$"),
        (Epsilon, r"the class Epsilon: pass an instance"),
        (sl.lrp.epsilon_plus, r"the function epsilon_plus: pass its result"),
        (sl.lrp.epsilon_gamma_box, r"the function epsilon_gamma_box: pass its result"),
    ],
)
def test_lrp_composite_argument_errors(composite, match):
    with pytest.raises(sl.ParameterError, match=match):
        sl.LRP(bn_cnn(1, bias=True, batchnorm=False), composite=composite)
