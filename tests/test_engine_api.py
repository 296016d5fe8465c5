"""The extension API (salience.engine): the public method, the compatibility path of the old
private one, errors naming the caller from one context."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import salience as sl
from salience.engine import Explainer, ScoreFunction, caller, current_caller, make_score


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6, 2)).double().eval()


class GradTimesInput(Explainer):
    def attribute(self, x, score):
        return x * score.gradient_at_input()


def test_a_method_is_one_public_method():
    x = torch.randn(3, 2, 8, dtype=torch.float64)
    att = GradTimesInput(_model()).explain(x, target=1)
    ref = sl.InputXGradient(_model()).explain(x, target=1)
    torch.testing.assert_close(att.values, ref.values)
    assert att.method == "GradTimesInput"


def test_the_old_private_method_still_works_with_a_deprecation_warning():
    class Old(Explainer):
        def _attribute(self, x, score):
            return x * score.gradient_at_input()

    x = torch.randn(2, 2, 8, dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="rename it to attribute"):
        att = Old(_model()).explain(x, target=0)
    torch.testing.assert_close(att.values, sl.InputXGradient(_model()).explain(x, target=0).values)


def test_missing_attribute_names_the_method():
    class Empty(Explainer):
        pass

    with pytest.raises(NotImplementedError, match=r"Empty must implement attribute\(self, x, score\)"):
        Empty(_model()).explain(torch.randn(1, 2, 8, dtype=torch.float64))


def test_wrong_batch_from_attribute_is_named():
    class Wrong(Explainer):
        def attribute(self, x, score):
            return x[:1]

    with pytest.raises(sl.ShapeError, match=r"Wrong.attribute must return .* batch of 3 sample"):
        Wrong(_model()).explain(torch.randn(3, 2, 8, dtype=torch.float64))


def test_engine_errors_name_the_running_explainer():
    def broken(x):
        raise RuntimeError("boom")

    with pytest.raises(sl.ModelCallError, match=r"^GradTimesInput: the model failed"):
        GradTimesInput(broken).explain(torch.randn(1, 2, 8), target=0)


def test_caller_context_is_per_thread_and_restored():
    seen = {}

    def worker():
        seen["thread"] = current_caller()

    with caller("Outer"):
        with caller("Inner"):
            assert current_caller() == "Inner"
        assert current_caller() == "Outer"
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert current_caller() == "salience"
    assert seen["thread"] == "salience"


def test_score_function_from_make_score_names_its_caller():
    x = torch.randn(2, 2, 8, dtype=torch.float64)
    score = make_score(_model(), x, 1, batch_size=None, layout=sl.Layout("b c t"), caller="mine")
    assert isinstance(score, ScoreFunction) and score.caller == "mine"
    with caller("ctx"):
        assert make_score(_model(), x, 1, batch_size=None, layout=sl.Layout("b c t")).caller == "ctx"
