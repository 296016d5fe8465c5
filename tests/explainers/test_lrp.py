"""LRP: closed forms per rule, conservation, BatchNorm merging, zennit parity, no side effects."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

import salience as sl
from salience.explainers.lrp import AlphaBeta, Composite, Epsilon, Flat, Gamma, Pass, WSquare, ZBox, ZPlus
from toy_models import bn_cnn, make_input


def seeded(seed: int, build):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def _linear_case(bias: bool = True):
    g = torch.Generator().manual_seed(11)
    w = torch.randn(2, 6, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64) if bias else torch.zeros(2, dtype=torch.float64)
    x = torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    model = seeded(0, lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 2, bias=bias))).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(w)
        if bias:
            model[1].bias.copy_(b)
    return model, w, b, x


def _sign(z):
    return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


# ---------------------------------------------------------------- closed forms on one Linear layer
def test_epsilon_closed_form_and_delta():
    model, w, b, x = _linear_case()
    eps = 0.01
    attr = sl.LRP(model, composite=Epsilon(eps)).explain(x, 1)
    xf = x.flatten(1)
    z = xf @ w[1] + b[1]
    expected = xf * w[1] * (z / (z + eps * _sign(z)))[:, None]
    torch.testing.assert_close(attr.values.flatten(1), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(attr.scores, z, rtol=1e-12, atol=1e-14)
    # conservation gap = relevance absorbed by bias and stabiliser
    torch.testing.assert_close(attr.delta, expected.sum(1) - z, rtol=1e-12, atol=1e-14)
    assert attr.info["composite"] == "Epsilon(epsilon=0.01)"


def test_alpha_beta_and_zplus_closed_form():
    model, w, b, x = _linear_case()
    xf = x.flatten(1)
    c = xf * w[1]  # contributions
    z = xf @ w[1] + b[1]
    pos = c.clamp(min=0).sum(1) + b[1].clamp(min=0)
    neg = c.clamp(max=0).sum(1) + b[1].clamp(max=0)
    ab = 2 * c.clamp(min=0) / pos[:, None] - 1 * c.clamp(max=0) / neg[:, None]
    got = sl.LRP(model, composite=AlphaBeta(2, 1, stabilizer=0.0)).explain(x, 1).values.flatten(1)
    torch.testing.assert_close(got, ab * z[:, None], rtol=1e-12, atol=1e-14)
    got = sl.LRP(model, composite=ZPlus(stabilizer=0.0)).explain(x, 1).values.flatten(1)
    torch.testing.assert_close(got, c.clamp(min=0) / pos[:, None] * z[:, None], rtol=1e-12, atol=1e-14)


def test_gamma_closed_form():
    model, w, b, x = _linear_case()
    g = 0.5
    xf = x.flatten(1)
    z = xf @ w[1] + b[1]
    wk, bk = w[1], b[1]
    up = xf.clamp(min=0) * (wk + g * wk.clamp(min=0)) + xf.clamp(max=0) * (wk + g * wk.clamp(max=0))
    dn = xf.clamp(min=0) * (wk + g * wk.clamp(max=0)) + xf.clamp(max=0) * (wk + g * wk.clamp(min=0))
    share = torch.where(
        (z > 0)[:, None],
        up / (up.sum(1) + bk + g * bk.clamp(min=0))[:, None],
        dn / (dn.sum(1) + bk + g * bk.clamp(max=0))[:, None],
    )
    got = sl.LRP(model, composite=Gamma(g, stabilizer=0.0)).explain(x, 1).values.flatten(1)
    torch.testing.assert_close(got, share * z[:, None], rtol=1e-12, atol=1e-14)
    # gamma = 0 is LRP-0
    got0 = sl.LRP(model, composite=Gamma(0.0, stabilizer=0.0)).explain(x, 1).values
    torch.testing.assert_close(
        got0, sl.LRP(model, composite=Epsilon(0.0)).explain(x, 1).values, rtol=1e-12, atol=1e-14
    )


def test_flat_wsquare_zbox_closed_form():
    model, w, b, x = _linear_case()
    xf = x.flatten(1)
    z = xf @ w[1] + b[1]
    flat = sl.LRP(model, composite=Composite(rules=(), first=Flat(0.0))).explain(x, 1).values.flatten(1)
    torch.testing.assert_close(flat, (z / 6)[:, None].expand(-1, 6), rtol=1e-12, atol=1e-14)
    wsq = sl.LRP(model, composite=Composite(rules=(), first=WSquare(0.0))).explain(x, 1).values.flatten(1)
    torch.testing.assert_close(wsq, w[1] ** 2 / (w[1] ** 2).sum() * z[:, None], rtol=1e-12, atol=1e-14)
    lo, hi = -3.0, 2.0
    wk, bk = w[1], b[1]
    contrib = xf * wk - lo * wk.clamp(min=0) - hi * wk.clamp(max=0)
    denom = contrib.sum(1) + bk - bk.clamp(min=0) - bk.clamp(max=0)
    box = (
        sl.LRP(model, composite=Composite(rules=(), first=ZBox(lo, hi, 0.0))).explain(x, 1).values.flatten(1)
    )
    torch.testing.assert_close(box, contrib / denom[:, None] * z[:, None], rtol=1e-12, atol=1e-14)
    # tensor bounds broadcast against one sample of the first layer's input (6 features here)
    lo_f = torch.tensor([-3.0, -4.0]).repeat_interleave(3).double()
    hi_f = torch.tensor([2.0, 1.0]).repeat_interleave(3).double()
    box_t = (
        sl.LRP(model, composite=Composite(rules=(), first=ZBox(lo_f, hi_f, 0.0)))
        .explain(x, 1)
        .values.flatten(1)
    )
    with pytest.raises(sl.ShapeError, match=r"ZBox bounds of shape \(2, 1\)"):
        sl.LRP(model, composite=Composite(rules=(), first=ZBox(torch.zeros(2, 1), 1.0))).explain(x, 1)
    contrib = xf * wk - lo_f * wk.clamp(min=0) - hi_f * wk.clamp(max=0)
    torch.testing.assert_close(
        box_t, contrib / contrib.sum(1, keepdim=True) * z[:, None], rtol=1e-12, atol=1e-14
    )


# ---------------------------------------------------------------- conservation on conv nets
@pytest.mark.parametrize("kind", ["signal", "image", "video"])
@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_plus_flat", "gamma_box"])
def test_conservation_bias_free(kind, composite):
    """Bias-free layers: the input relevance sums to the score up to the stabiliser (1e-9 here).

    Not for alpha-beta: a neuron whose contributions are all positive has no negative part, so
    it passes on alpha * R instead of R (a property of the rule, as in zennit).
    """
    model = bn_cnn({"signal": 1, "image": 2, "video": 3}[kind], bias=False, batchnorm=False)
    x = make_input(kind, batch=3)
    if composite == "gamma_box":
        comp = sl.lrp.epsilon_gamma_box(-5.0, 5.0, epsilon=1e-9, stabilizer=1e-9)
    else:
        comp = sl.lrp.COMPOSITES[composite](epsilon=1e-9, stabilizer=1e-9)
    attr = sl.LRP(model, composite=comp).explain(x, torch.tensor([0, 1, 3]))
    torch.testing.assert_close(attr.values.flatten(1).sum(1), attr.scores, rtol=1e-6, atol=1e-9)
    assert attr.delta.abs().max() < 1e-6 * attr.scores.abs().max() + 1e-9


def test_conservation_gap_grows_with_epsilon():
    model = bn_cnn(1, bias=False, batchnorm=False)
    x = make_input("signal")
    gaps = [
        sl.LRP(model, composite=sl.lrp.epsilon(e, stabilizer=1e-12)).explain(x, 2).delta.abs().max().item()
        for e in (1e-9, 1e-3, 1e-1)
    ]
    assert gaps[0] < 1e-8 and gaps[0] < gaps[1] < gaps[2]


# ---------------------------------------------------------------- BatchNorm merging
def _merged_copy(model: nn.Sequential) -> nn.Sequential:
    """The same network with every BatchNorm folded by hand into the preceding convolution."""
    layers, mods = [], list(model)
    i = 0
    while i < len(mods):
        m = mods[i]
        if i + 1 < len(mods) and isinstance(mods[i + 1], nn.modules.batchnorm._BatchNorm):
            bn = mods[i + 1]
            new = seeded(
                0, lambda m=m: type(m)(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
            ).double()
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            with torch.no_grad():
                new.weight.copy_(m.weight * s.reshape(-1, *([1] * (m.weight.ndim - 1))))
                b0 = m.bias if m.bias is not None else torch.zeros_like(s)
                new.bias.copy_((b0 - bn.running_mean) * s + bn.bias)
            layers.append(new)
            i += 2
        else:
            layers.append(m)
            i += 1
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_batchnorm_merged_equals_hand_folded(composite):
    model = bn_cnn(2, bias=True, batchnorm=True)
    x = make_input("image")
    ours = sl.LRP(model, composite=composite).explain(x, 1)
    folded = sl.LRP(_merged_copy(model), composite=composite).explain(x, 1)
    torch.testing.assert_close(ours.values, folded.values, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.scores, folded.scores, rtol=1e-12, atol=1e-12)


def test_batchnorm_not_merged_is_pass():
    model = bn_cnn(1, bias=True, batchnorm=True)
    x = make_input("signal")
    merged = sl.LRP(model, composite="epsilon").explain(x, 1).values
    comp = dataclasses.replace(sl.lrp.epsilon(), merge_batchnorm=False)
    unmerged = sl.LRP(model, composite=comp).explain(x, 1).values
    assert not torch.allclose(merged, unmerged)
    # unmerged BN passes relevance: same as an explicit Pass rule mapped onto BatchNorm
    comp2 = Composite(rules=(((nn.BatchNorm1d,), Pass()), *comp.rules), merge_batchnorm=False, name="x")
    torch.testing.assert_close(sl.LRP(model, composite=comp2).explain(x, 1).values, unmerged, rtol=0, atol=0)


# ---------------------------------------------------------------- side effects, warnings, errors
def _state(model):
    return (
        [(type(m), m.training) for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [
            (
                dict(m._forward_hooks),
                dict(m._forward_pre_hooks),
                dict(m._backward_hooks),
                dict(m._backward_pre_hooks),
            )
            for m in model.modules()
        ],
        [(p.requires_grad, p.grad) for p in model.parameters()],
    )


def _same(a, b):
    assert a[0] == b[0] and a[2] == b[2]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert all(ra == rb and ga is gb for (ra, ga), (rb, gb) in zip(a[3], b[3], strict=True))


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus_flat"])
def test_model_unchanged_after_call_and_after_exception(composite):
    model = bn_cnn(2, bias=True, batchnorm=True)
    x = make_input("image")
    before = _state(model)
    reference = model(x).detach()
    sl.LRP(model, composite=composite).explain(x, 1)
    _same(before, _state(model))
    calls = {"n": 0}

    def boom(_m, _i, _o):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")

    handle = model[4].register_forward_hook(boom)  # the second BatchNorm
    before = _state(model)
    stack = torch._C._len_torch_function_stack()  # the functional-sum mode must be popped too
    with pytest.raises(sl.ModelCallError):
        sl.LRP(model, composite=composite, batch_size=1).explain(x, 1)
    _same(before, _state(model))
    assert torch._C._len_torch_function_stack() == stack
    handle.remove()
    torch.testing.assert_close(model(x), reference, rtol=0, atol=0)


def test_uncovered_layers_warn():
    model = (
        seeded(
            0,
            lambda: nn.Sequential(
                nn.Conv1d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LayerNorm(72), nn.Linear(72, 2)
            ),
        )
        .double()
        .eval()
    )
    with pytest.warns(sl.lrp.LRPCoverageWarning, match=r"3 \(LayerNorm\)"):
        sl.LRP(model).explain(make_input("signal"), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sl.LRP(bn_cnn(1, bias=True, batchnorm=True)).explain(make_input("signal"), 0)


def test_errors():
    with pytest.raises(sl.ParameterError, match="low=..., high="):
        sl.LRP(bn_cnn(1, bias=True, batchnorm=False), composite="epsilon_gamma_box")
    with pytest.raises(sl.ParameterError, match="'composite'.*'nope'"):
        sl.LRP(bn_cnn(1, bias=True, batchnorm=False), composite="nope")
    with pytest.raises(sl.ParameterError, match="alpha - beta = 1"):
        AlphaBeta(alpha=1.0, beta=1.0)
    with pytest.raises(sl.ParameterError, match="'epsilon'"):
        Epsilon(-1.0)
    with pytest.raises(sl.ParameterError, match="'gamma'"):
        Gamma(gamma="big")
    with pytest.raises(sl.ParameterError, match="nn.Module"):
        sl.LRP(lambda t: t.flatten(1)[:, :2]).explain(make_input("signal"), 0)
    bad = Composite(
        rules=(((nn.AdaptiveAvgPool1d,), Gamma()),), name="bad"
    )  # weights rule on a pooling layer
    with pytest.raises(sl.LayerError, match="needs a Linear or convolution"):
        sl.LRP(bn_cnn(1, bias=True, batchnorm=False), composite=bad).explain(make_input("signal"), 0)


def test_rules_are_data():
    assert Epsilon(0.1) == Epsilon(0.1) and Epsilon(0.1) != Epsilon(0.2)
    assert repr(AlphaBeta()) == "AlphaBeta(alpha=2.0, beta=1.0, stabilizer=1e-06)"
    assert ZPlus() == ZPlus() and ZPlus().alpha == 1.0 and ZPlus().beta == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        Epsilon().epsilon = 3  # type: ignore[misc]
    comp = sl.lrp.epsilon_plus_flat()
    assert comp.first == Flat() and comp.name == "epsilon_plus_flat"
    conv, lin = seeded(0, lambda: (nn.Conv2d(1, 1, 1), nn.Linear(1, 1)))
    assert comp.rule_for(conv) == ZPlus() and comp.rule_for(lin) == Epsilon()
    assert comp.rule_for(nn.MaxPool1d(2)) is None


# ---------------------------------------------------------------- residual additions
class Residual(nn.Module):
    """A bias-free 1-D residual net using every functional form of addition."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 4, 3, padding=1, bias=False)
        self.c2 = nn.Conv1d(4, 4, 3, padding=1, bias=False)
        self.c3 = nn.Conv1d(4, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        h = self.relu(self.c1(x))
        h = h + self.relu(self.c2(h))  # Tensor.__add__
        g = self.relu(self.c3(h))
        g += h  # Tensor.__iadd__ (in place)
        g = torch.add(g, self.relu(self.c2(g)))
        g.add_(h)  # in place, result not rebound
        return self.head(self.pool(g).flatten(1))


def test_residual_sums_conserve_and_keep_forward_values():
    model = seeded(1, Residual).double().eval()
    x = make_input("signal", batch=3)
    attr = sl.LRP(model, composite=sl.lrp.epsilon(1e-12, stabilizer=1e-12)).explain(x, 2)
    torch.testing.assert_close(attr.scores, model(x)[:, 2], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(attr.values.flatten(1).sum(1), attr.scores, rtol=1e-9, atol=1e-12)
    # without the sum rule, each addition hands the full relevance to both terms
    plain = dataclasses.replace(sl.lrp.epsilon(1e-12, stabilizer=1e-12), sums=None)
    gap = sl.LRP(model, composite=plain).explain(x, 2).delta.abs()
    assert (gap > 1e-3 * attr.scores.abs()).all()


def test_sum_rule_closed_form():
    """out = a + b with a = relu(W1 x), b = relu(W2 x): R_a = a / (a + b) * R, per element."""

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 4, bias=False), nn.Linear(6, 4, bias=False)
            self.head = nn.Linear(4, 2, bias=False)

        def forward(self, x):
            return self.head(self.a(x.flatten(1)) + self.b(x.flatten(1)))

    model = seeded(2, Two).double().eval()
    x = make_input("signal")[:, :2, :3]
    lrp0 = dataclasses.replace(sl.lrp.single(Epsilon(0.0)), sums=Epsilon(0.0))
    attr = sl.LRP(model, composite=lrp0).explain(x, 0).values.flatten(1)
    xf = x.flatten(1)
    za, zb = xf @ model.a.weight.T, xf @ model.b.weight.T
    r = (za + zb) * model.head.weight[0]  # relevance of each hidden unit (LRP-0 at the head)
    ra, rb = za / (za + zb) * r, zb / (za + zb) * r
    expected = xf * ((ra / za) @ model.a.weight) + xf * ((rb / zb) @ model.b.weight)
    torch.testing.assert_close(attr, expected, rtol=1e-9, atol=1e-12)


def test_lrp0_passes_no_relevance_through_units_without_pre_activation():
    """Epsilon(0) is LRP-0: a unit whose pre-activation is exactly 0 (dead ReLU inputs, zero
    padding) passes nothing, instead of spreading NaN through the map."""
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 1.0, -1.0], [0, 0, 0, 1.0]]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]))
    x = torch.tensor([[[1.0, 2.0, 3.0, 3.0]]]).reshape(1, 4).double()  # unit 1: z = 3 - 3 = 0
    wrapped = nn.Sequential(nn.Flatten(), model).eval()
    attr = sl.LRP(wrapped, composite=Composite(rules=(((nn.Linear,), Epsilon(0.0)),), name="lrp0")).explain(
        x[:, None], 0
    )
    assert bool(torch.isfinite(attr.values).all())
    # closed form: R(unit) = z_unit * w2[0, unit]; unit 1 has z = 0 and passes nothing
    # unit 0: z = 3 -> R = 3, split as x_i w_i / z: (1/3, 2/3) * 3; unit 2: z = 3 -> R = 9, all to x_3
    torch.testing.assert_close(attr.values[0, 0], torch.tensor([1.0, 2.0, 0.0, 9.0], dtype=torch.float64))
