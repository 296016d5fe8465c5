"""Target objects: closed-form scores and gradients on a linear model."""

from __future__ import annotations

import pytest
import torch

import salience as sl
from toy_models import Linear

D = torch.float64


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(7)
    w = torch.randn(4, 2, 5, generator=g, dtype=D)
    model = Linear(w).eval()
    x = torch.randn(3, 2, 5, generator=g, dtype=D)
    return model, w, x


def grad(model, x, target):
    return sl.Gradient(model).explain(x, target)


def test_per_sample_targets(setup):
    model, w, x = setup
    attr = grad(model, x, [0, 3, 1])
    torch.testing.assert_close(attr.values, w[[0, 3, 1]])
    assert attr.target.tolist() == [0, 3, 1]


def test_contrast_single_and_mean_of_foils(setup):
    model, w, x = setup
    torch.testing.assert_close(grad(model, x, sl.Contrast(2, 0)).values, (w[2] - w[0]).expand_as(x))
    torch.testing.assert_close(
        grad(model, x, sl.Contrast(2, [0, 1])).values, (w[2] - (w[0] + w[1]) / 2).expand_as(x)
    )
    per_sample = grad(model, x, sl.Contrast([2, 2, 3], torch.tensor([0, 1, 0]))).values
    torch.testing.assert_close(per_sample, torch.stack([w[2] - w[0], w[2] - w[1], w[3] - w[0]]))
    a = grad(model, x, sl.Contrast(2, 0))
    assert a.target.tolist() == [2, 2, 2]


def test_contrast_quadratic_and_value(setup):
    model, w, x = setup
    d = model(x)[:, 2] - model(x)[:, 0]
    q = grad(model, x, sl.Contrast(2, 0, quadratic=True))
    torch.testing.assert_close(q.values, 2 * d[:, None, None] * (w[2] - w[0]))
    torch.testing.assert_close(q.scores, d**2)
    v = grad(model, x, sl.Contrast(sl.Output(1), value=0.5))
    torch.testing.assert_close(v.values, w[1].expand_as(x))
    torch.testing.assert_close(v.scores, model(x)[:, 1] - 0.5)
    with pytest.raises(sl.TargetError, match="exactly one of"):
        sl.Contrast(1)
    with pytest.raises(sl.TargetError, match="class-like target"):
        sl.Contrast(sl.Output(1), foils=[0])


def test_probability_and_log_probability(setup):
    model, w, x = setup
    p = torch.softmax(model(x), 1)
    attr = grad(model, x, sl.Probability(1))
    expected = p[:, 1, None, None, None] * (w[1] - torch.einsum("bk,kcs->bcs", p, w)[:, None])
    torch.testing.assert_close(attr.values, expected[:, 0])
    torch.testing.assert_close(attr.scores, p[:, 1])
    lp = grad(model, x, sl.LogProbability(1))
    torch.testing.assert_close(lp.values, w[1] - torch.einsum("bk,kcs->bcs", p, w))


def test_single_logit_binary_head():
    w = torch.randn(1, 2, 5, dtype=D, generator=torch.Generator().manual_seed(1))
    model = Linear(w).eval()
    x = torch.randn(2, 2, 5, dtype=D, generator=torch.Generator().manual_seed(2))
    z = model(x)[:, 0]
    # Class / None / Output(): the logit itself (plain indexing, Captum-compatible)
    for t in (0, None, sl.Output(), sl.Class(0)):
        torch.testing.assert_close(grad(model, x, t).values, w[0].expand_as(x))
    with pytest.raises(sl.TargetError, match="single-logit binary classifier"):
        grad(model, x, 1)
    # Probability / LogProbability: sigmoid semantics, class 0 = 1 - sigmoid(z)
    torch.testing.assert_close(grad(model, x, sl.Probability(1)).scores, torch.sigmoid(z))
    torch.testing.assert_close(grad(model, x, sl.Probability(0)).scores, 1 - torch.sigmoid(z))
    torch.testing.assert_close(grad(model, x, sl.LogProbability(0)).scores, torch.log(1 - torch.sigmoid(z)))
    with pytest.raises(sl.TargetError, match="must be 0 or 1"):
        grad(model, x, sl.Probability(2))


def test_score_callable_and_validation(setup):
    model, w, x = setup
    attr = grad(model, x, lambda out: out[:, 0] + 2 * out[:, 3])
    torch.testing.assert_close(attr.values, (w[0] + 2 * w[3]).expand_as(x))
    with pytest.raises(sl.TargetError, match="must return one score per row"):
        grad(model, x, sl.Score(lambda out: out))


def test_regression_output_index():
    def forecaster(t):  # (B, C, T) -> (B, horizon=4, channels=2)
        return t[:, :, -4:].transpose(1, 2) * 3

    x = torch.randn(2, 2, 10, dtype=D)
    attr = grad(forecaster, x, sl.Output((2, 1)))
    expected = torch.zeros_like(x)
    expected[:, 1, 8] = 3
    torch.testing.assert_close(attr.values, expected)
    with pytest.raises(sl.TargetError, match="out of range"):
        grad(forecaster, x, sl.Output((9, 0)))
    with pytest.raises(sl.TargetError, match="one value per sample"):
        grad(forecaster, x, sl.Output(2))


def test_user_target_object_not_mutated(setup):
    model, w, x = setup
    t = sl.Class([1, 2, 3])
    grad(model, x, t)
    assert t._index is None  # binding returns a copy


def test_numpy_integer_and_array_targets(setup):
    """Targets straight from numpy (``np.argmax`` returns a numpy integer) mean what ints mean."""
    import numpy as np

    model, w, x = setup
    ref = grad(model, x, 2).values
    for t in (np.int64(2), np.array([2, 2, 2]), sl.Class(np.int64(2)), [np.int64(2)] * 3):
        torch.testing.assert_close(grad(model, x, t).values, ref, rtol=0, atol=0)
    assert repr(sl.Class(np.int64(2))) == "Class(2)"
    with pytest.raises(sl.TargetError, match="one entry per sample"):
        grad(model, x, np.array([0, 1]))
    with pytest.raises(sl.TargetError, match="integer class indices"):
        grad(model, x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(sl.TargetError, match="class index"):
        sl.Class("2")


def test_output_repr_reads_as_its_constructor():
    assert [repr(sl.Output(i)) for i in ((), 3, (6, 1))] == ["Output()", "Output(3)", "Output((6, 1))"]
    with pytest.raises(sl.TargetError, match=r"^Output\(10\) is out of range"):
        sl.Output(10)(torch.zeros(2, 3), torch.arange(2))


def test_output_accepts_numpy_integers():
    import numpy as np

    out = torch.arange(2 * 12 * 2, dtype=torch.float64).reshape(2, 12, 2)
    for index in (np.int64(6), np.unravel_index(13, (12, 2)), (np.int32(6), 1)):
        t = sl.Output(index)
        assert all(type(i) is int for i in t.index)
    torch.testing.assert_close(sl.Output(np.unravel_index(13, (12, 2)))(out, torch.arange(2)), out[:, 6, 1])
    with pytest.raises(sl.TargetError, match="an int or a tuple of ints"):
        sl.Output(1.5)


def test_contrast_foils_numpy_like_tensor_and_foil_equal_to_target_refused():
    import numpy as np

    out = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])
    ref = sl.Contrast(1, foils=torch.tensor([0, 2])).bind(2, lambda: out)
    got = sl.Contrast(1, foils=np.array([0, 2])).bind(2, lambda: out)
    torch.testing.assert_close(got(out, torch.arange(2)), ref(out, torch.arange(2)))  # one foil per sample
    torch.testing.assert_close(got(out, torch.arange(2)), torch.tensor([1.0, -16.0]))
    shared = sl.Contrast(1, foils=[0, 2]).bind(2, lambda: out)  # a list: both foils for every sample
    torch.testing.assert_close(shared(out, torch.arange(2)), torch.tensor([2.0 - 2.5, 16.0 - 20.0]))
    with pytest.raises(sl.TargetError, match="foil class 1 is the target class itself"):
        sl.Contrast(1, foils=1).bind(2, lambda: out)
