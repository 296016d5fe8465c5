"""MaskUpdate with link=None checks that the explained score is a probability: through the
target, the model's head (module or functional) or the row sums of its output; values in [0, 1]
alone are not enough (issue #13, item 9)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience as sl
from salience.errors import ModelOutputError
from toy_models import Counting

D = torch.float64


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(batch: int = 2, t: int = 12) -> torch.Tensor:
    return torch.rand((batch, 1, t), generator=_g(1), dtype=D)


def _linear(k: int, scale: float = 0.02, bias: float = 0.5) -> nn.Linear:
    """Logits that lie in [0, 1] for inputs in [0, 1]: small weights around a bias of 0.5."""
    lin = nn.Linear(12, k).to(D)
    with torch.no_grad():
        lin.weight.copy_(scale * torch.randn(lin.weight.shape, generator=_g(2), dtype=D))
        lin.bias.fill_(bias)
    return lin


def _run(model, link=None, target=1, **kw):
    mu = sl.MaskUpdate(model, n_steps=6, cells={"t": 4}, link=link, generator=_g(3), progress=False, **kw)
    return mu(_x(), target=target)


class FunctionalSigmoid(nn.Module):
    """A multi-label head written in the forward: ``torch.sigmoid(fc(x))`` (rows sum to ~K/2)."""

    def __init__(self, k: int = 3, squeeze: bool = False) -> None:
        super().__init__()
        self.fc, self.squeeze = _linear(k, scale=1.0, bias=0.0), squeeze

    def forward(self, x):
        out = torch.sigmoid(self.fc(x.flatten(1)))
        return out[:, :1].squeeze(-1) if self.squeeze else out


class FunctionalSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = _linear(3, scale=1.0, bias=0.0)

    def forward(self, x):
        return F.softmax(self.fc(x.flatten(1)), dim=-1)


# ---------------------------------------------------------------------------------- refused
def test_logits_that_happen_to_lie_in_0_1_are_refused():
    model = nn.Sequential(nn.Flatten(), _linear(3)).eval()
    with torch.no_grad():
        out = model(_x())
    assert bool(((out > 0) & (out < 1)).all())  # every logit looks like a probability
    with pytest.raises(ModelOutputError, match=r"nothing shows that it is one.*link='clamp'"):
        _run(model)
    # a single logit in [0, 1] (no head, nothing to sum) is refused too
    single = nn.Sequential(nn.Flatten(), _linear(1)).eval()
    with pytest.raises(ModelOutputError, match="must be a probability"):
        _run(single, target=None)


def test_log_softmax_head_is_refused_by_name():
    model = nn.Sequential(nn.Flatten(), _linear(3, scale=1.0), nn.LogSoftmax(-1)).eval()
    with pytest.raises(ModelOutputError, match="ends in LogSoftmax"):
        _run(model)


def test_plain_function_with_a_sigmoid_cannot_be_inspected_and_is_refused():
    """A plain callable (not an nn.Module) exposes no forward to watch; a multi-label sigmoid
    output does not sum to 1 either, so it is refused with the link='clamp' way out."""
    head = FunctionalSigmoid()
    with pytest.raises(ModelOutputError, match="link='clamp'"):
        _run(lambda x: head(x))
    assert _run(lambda x: head(x), link="clamp").values.shape == (2, 1, 12)


# --------------------------------------------------------------------------------- accepted
@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Flatten(), _linear(3, scale=1.0), nn.Sigmoid()),  # multi-label module head
        lambda: FunctionalSigmoid(),  # multi-label torch.sigmoid in the forward
        lambda: nn.Sequential(nn.Flatten(), _linear(3, scale=1.0), nn.Softmax(-1)),  # softmax module head
        lambda: FunctionalSoftmax(),  # F.softmax in the forward
    ],
    ids=["sigmoid-module", "sigmoid-functional", "softmax-module", "softmax-functional"],
)
def test_probability_heads_are_used_as_they_are(make):
    model = make().eval()
    with torch.no_grad():
        out = model(_x())
    assert bool(((out >= 0) & (out <= 1)).all())
    got = _run(model).values
    # clamping is the identity on probabilities: the same chain, the same map
    torch.testing.assert_close(got, _run(model, link="clamp").values, rtol=0, atol=0)


def test_sigmoid_head_is_recognised_through_indexing_and_squeeze():
    model = FunctionalSigmoid(squeeze=True).eval()  # one probability per sample, shape (B,)
    got = _run(model, target=None).values
    torch.testing.assert_close(got, _run(model, link="clamp", target=None).values, rtol=0, atol=0)


def test_rows_summing_to_one_are_probabilities_for_any_callable():
    """predict_proba-like outputs of plain callables (float32 here) pass through the row sums."""
    lin = _linear(5, scale=1.0, bias=0.0).float()
    model = sl.NumpyModel(lambda a: torch.softmax(lin(torch.as_tensor(a)), -1).detach().numpy())
    mu = sl.MaskUpdate(model, n_steps=4, cells={"t": 4}, generator=_g(), progress=False)
    assert mu(_x().float(), target=2).values.shape == (2, 1, 12)


def test_probability_target_needs_no_inspection():
    model = Counting(nn.Sequential(nn.Flatten(), _linear(3, scale=5.0, bias=0.0)).eval())
    x = _x(batch=3)
    sl.MaskUpdate(model, n_steps=4, cells={"t": 4}, generator=_g(), progress=False)(
        x, target=sl.Probability(0)
    )
    assert model.rows == [3] * 4 + [3]  # the chain, then the score at x: no extra call


def test_the_check_costs_no_extra_model_call():
    """The output at x read for the row sums is the one the recorded scores reuse."""
    model = Counting(FunctionalSigmoid().eval())
    x = _x(batch=3)
    attr = sl.MaskUpdate(model, n_steps=4, n_chains=2, cells={"t": 4}, generator=_g(), progress=False)(
        x, target=1
    )
    assert model.rows == [3] + [6] * 4
    with torch.no_grad():
        torch.testing.assert_close(attr.scores, model.model(x)[:, 1])


def test_the_probe_leaves_no_hook_and_no_mode_behind():
    model = nn.Sequential(nn.Flatten(), _linear(3)).eval()
    depth = torch.overrides._len_torch_function_stack()
    with pytest.raises(ModelOutputError):
        _run(model)
    assert torch.overrides._len_torch_function_stack() == depth
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    sig = FunctionalSigmoid().eval()
    _run(sig)
    assert torch.overrides._len_torch_function_stack() == depth
    assert all(not m._forward_hooks for m in sig.modules())
