"""DeepLift, DeepLiftShap, GradientShap and IG(multiply_by_inputs=False): closed forms on linear
models, a direct implementation of the rescale and maxpool rules written here, summation to
delta, coverage warnings, no side effects, batch and chunk invariance, validation, and the
public kit's checks on the cases of tests/cases_reference.py (until the registry runs them)."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import registry  # isort: skip (loads every case module first: cases_reference imports from it)
from cases_reference import INNER
from salience.errors import ModelCallError, ParameterError
from salience.explainers.deeplift import DeepLift, DeepLiftCoverageWarning, DeepLiftShap
from salience.explainers.gradient_shap import GradientShap
from salience.explainers.integrated_gradients import IntegratedGradients
from salience.testing import explainer_checks
from toy_models import Linear, cnn, make_input

F64 = dict(dtype=torch.float64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(seed: int = 0) -> tuple[Linear, torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    w = torch.randn(3, 2, 7, generator=g, **F64)
    model = Linear(w, torch.randn(3, generator=g, **F64)).eval()
    x = torch.randn(4, 2, 7, generator=g, **F64)
    x0 = torch.randn(4, 2, 7, generator=g, **F64)
    return model, x, x0


# ----------------------------------------------------------------------------- linear models
def test_linear_model_exact_and_equal_to_ig():
    model, x, x0 = _linear()
    t = torch.tensor([0, 1, 2, 1])
    exact = model.weight[t] * (x - x0)
    dl = DeepLift(model, baseline=x0).explain(x, t)
    ig = IntegratedGradients(model, n_steps=4, baseline=x0).explain(x, t)
    torch.testing.assert_close(dl.values, exact, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dl.values, ig.values, rtol=1e-12, atol=1e-14)
    local = DeepLift(model, baseline=x0, multiply_by_inputs=False).explain(x, t)
    torch.testing.assert_close(local.values, model.weight[t], rtol=1e-12, atol=1e-14)


def test_linear_model_shap_methods():
    model, x, _ = _linear()
    dist = torch.randn(5, 2, 7, generator=_gen(3), **F64)
    w = model.weight[1]
    dls = DeepLiftShap(model, baselines=dist).explain(x, 1)
    torch.testing.assert_close(dls.values, w * (x - dist.mean(0)), rtol=1e-12, atol=1e-13)
    # GradientShap with the draws redone here: (x + eps_k - b_k) * w averaged over the draws
    n, stdevs = 6, 0.3
    gs = GradientShap(model, baselines=dist, n_samples=n, stdevs=stdevs, generator=_gen(9)).explain(x, 1)
    g = _gen(9)
    idx = torch.randint(5, (4, n), generator=g)
    torch.rand((4, n), generator=g, **F64)
    noise = stdevs * torch.randn((4, n, 2, 7), generator=g, **F64)
    expected = ((x[:, None] + noise - dist[idx]) * w).mean(1)
    torch.testing.assert_close(gs.values, expected, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------- a direct implementation
class MLP(nn.Module):
    """f(x) = w3 . act2(W2 act1(W1 x + b1) + b2) + b3 on flattened inputs."""

    def __init__(self, act1: nn.Module, act2: nn.Module, seed: int = 0) -> None:
        super().__init__()
        g = _gen(seed)
        self.l1 = nn.Linear(8, 6).double()
        self.l2 = nn.Linear(6, 5).double()
        self.l3 = nn.Linear(5, 2).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, **F64))
        self.act1, self.act2 = act1, act2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l3(self.act2(self.l2(self.act1(self.l1(x.flatten(1))))))


def _rescale(f, z, z0, eps=1e-10):
    dz = z - z0
    small = dz.abs() < eps
    with torch.enable_grad():
        zz = z.clone().requires_grad_(True)
        (deriv,) = torch.autograd.grad(f(zz * 1).sum(), zz)
    return torch.where(small, deriv, (f(z) - f(z0)) / torch.where(small, torch.ones_like(dz), dz))


def _direct_deeplift(model: MLP, f1, f2, x, x0, k):
    """The rescale rule by hand: the chain of multipliers through two activations."""
    h, h0 = model.l1(x.flatten(1)), model.l1(x0.flatten(1))
    m1 = _rescale(f1, h, h0)
    u, u0 = model.l2(f1(h)), model.l2(f1(h0))
    m2 = _rescale(f2, u, u0)
    back = (model.l3.weight[k] * m2) @ model.l2.weight  # (B, 6)
    back = (back * m1) @ model.l1.weight  # (B, 8)
    return (x.flatten(1) - x0.flatten(1)) * back


@pytest.mark.parametrize(
    "act1, act2, f1, f2",
    [
        (nn.ReLU(), nn.ReLU(), torch.relu, torch.relu),
        (nn.Sigmoid(), nn.Tanh(), torch.sigmoid, torch.tanh),
        (nn.GELU(), nn.Softplus(), F.gelu, F.softplus),
        (nn.ReLU(inplace=True), nn.ELU(), torch.relu, F.elu),
    ],
)
def test_matches_direct_rescale_rule(act1, act2, f1, f2):
    model = MLP(act1, act2).eval()
    g = _gen(2)
    x = torch.randn(5, 2, 4, generator=g, **F64)
    x0 = torch.randn(5, 2, 4, generator=g, **F64)
    x0[0] = x[0]  # a sample equal to its reference: every unit takes the derivative branch
    x0[1, 0, :2] = x[1, 0, :2]
    with torch.no_grad():
        expected = _direct_deeplift(model, f1, f2, x, x0, 1).reshape(x.shape)
    attr = DeepLift(model, baseline=x0, batch_size=3).explain(x, 1)
    torch.testing.assert_close(attr.values, expected, rtol=1e-10, atol=1e-12)
    assert attr.delta.abs().max() < 1e-12


def _direct_maxpool(x, x0, w, k=2):
    """1-D max pooling (kernel = stride = k) then a linear read-out ``w``, by hand."""
    b, c, t = x.shape
    xw, x0w = x.reshape(b, c, t // k, k), x0.reshape(b, c, t // k, k)
    y, iy = xw.max(-1)
    y0, iy0 = x0w.max(-1)
    g = w.reshape(c, t // k).expand(b, c, t // k)
    top = torch.maximum(y, y0)
    num = torch.zeros_like(xw)
    num.scatter_add_(-1, iy[..., None], (g * (top - y0))[..., None])
    num.scatter_add_(-1, iy0[..., None], (g * (y - top))[..., None])
    num = num.reshape(b, c, t)
    # the attribution is num / dx * dx: num itself where dx != 0
    return num


def test_maxpool_rule_matches_direct():
    g = _gen(4)
    x = torch.randn(3, 2, 8, generator=g, **F64)
    x0 = torch.randn(3, 2, 8, generator=g, **F64)
    w = torch.randn(8, generator=g, **F64)
    model = nn.Sequential(nn.MaxPool1d(2), nn.Flatten(), nn.Linear(8, 1, bias=False)).double().eval()
    with torch.no_grad():
        model[2].weight.copy_(w[None])
    attr = DeepLift(model, baseline=x0).explain(x, 0)
    torch.testing.assert_close(attr.values, _direct_maxpool(x, x0, w), rtol=1e-12, atol=1e-13)
    # adaptive max pooling over the whole axis follows the same rule
    adaptive = nn.Sequential(nn.AdaptiveMaxPool1d(4), nn.Flatten(), model[2]).eval()
    torch.testing.assert_close(DeepLift(adaptive, baseline=x0).explain(x, 0).values, attr.values)


# ------------------------------------------------------------------ summation to delta
def _deep_net(dims: int) -> nn.Module:
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d}[dims]
    avg = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[dims]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return (
            nn.Sequential(
                conv(3, 6, 3, padding=1),
                nn.ReLU(),
                pool(2),  # directly after a ReLU: both rules in a row
                conv(6, 6, 3, padding=1),
                nn.BatchNorm1d(6) if dims == 1 else nn.BatchNorm2d(6),
                nn.Sigmoid(),
                avg(2),
                nn.Flatten(),
                nn.Linear(6 * 2**dims, 5),
                nn.Tanh(),
                nn.Linear(5, 4),
            )
            .double()
            .eval()
        )


@pytest.mark.parametrize("kind, dims", [("signal", 1), ("image", 2)])
def test_summation_to_delta(kind, dims):
    model = _deep_net(dims)
    x = make_input(kind, batch=4)
    x0 = 0.5 * make_input(kind, batch=4, seed=7)
    attr = DeepLift(model, baseline=x0).explain(x, 2)
    with torch.no_grad():
        gap = model(x)[:, 2] - model(x0)[:, 2]
    torch.testing.assert_close(attr.values.flatten(1).sum(1), gap, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(attr.info["baseline_scores"], model(x0)[:, 2].detach())
    assert attr.delta.abs().max() < 1e-12
    dist = torch.randn((3, *x.shape[1:]), generator=_gen(5), **F64)
    shap = DeepLiftShap(model, baselines=dist).explain(x, 2)
    with torch.no_grad():
        gap = model(x)[:, 2] - model(dist)[:, 2].mean()
    torch.testing.assert_close(shap.values.flatten(1).sum(1), gap, rtol=1e-10, atol=1e-12)


def test_module_used_twice():
    relu = nn.ReLU()

    class Twice(nn.Module):
        def __init__(self, act1: nn.Module, act2: nn.Module) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 2)
            self.act1, self.act2 = act1, act2

        def forward(self, x):
            return self.c(self.act2(self.b(self.act1(self.a(x.flatten(1))))))

    shared = Twice(relu, relu).double().eval()
    apart = Twice(nn.ReLU(), nn.ReLU()).double().eval()
    apart.load_state_dict(shared.state_dict())
    x = torch.randn(3, 2, 3, generator=_gen(1), **F64)
    a, b = DeepLift(shared, baseline=0.1).explain(x, 0), DeepLift(apart, baseline=0.1).explain(x, 0)
    torch.testing.assert_close(a.values, b.values, rtol=1e-12, atol=1e-14)
    assert a.delta.abs().max() < 1e-12


def test_batch_and_chunk_invariance():
    model = _deep_net(1)
    x = make_input("signal", batch=5)
    whole = DeepLift(model, baseline="mean").explain(x, 1).values
    alone = torch.cat([DeepLift(model, baseline="mean").explain(x[i : i + 1], 1).values for i in range(5)])
    torch.testing.assert_close(whole, alone, rtol=1e-12, atol=1e-14)
    for bs in (1, 3):
        torch.testing.assert_close(
            DeepLift(model, baseline="mean", batch_size=bs).explain(x, 1).values, whole
        )


def test_in_fourier_domain_completeness():
    import salience as sl

    model = _deep_net(1)
    x = make_input("signal", batch=3)
    attr = sl.InDomain(DeepLift(model), sl.Fourier()).explain(x, 0)
    assert attr.delta.abs().max() < 1e-10  # linear transforms carry exact multipliers


# ------------------------------------------------------------------------------- coverage
class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)
        self.out = nn.Linear(4 * 9, 2)

    def forward(self, x):
        h = F.max_pool1d(torch.relu(self.conv(x)), 2)
        return self.out(h.flatten(1))


def test_functional_nonlinearities_warn():
    model = Functional().double().eval()
    x = make_input("signal", batch=2)
    with pytest.warns(DeepLiftCoverageWarning, match=r"torch\.relu in <model> \(Functional\)") as caught:
        DeepLift(model).explain(x, 0)
    assert "max_pool1d" in str(caught[0].message)


def test_uncovered_modules_warn_and_covered_models_do_not():
    model = nn.Sequential(nn.Flatten(), nn.Linear(60, 4), nn.ReLU(), nn.Linear(4, 3), nn.Softmax(dim=1))
    model = model.double().eval()
    x = make_input("signal", batch=2)
    with pytest.warns(DeepLiftCoverageWarning, match=r"4 \(Softmax\)"):
        DeepLift(model).explain(x, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DeepLift(cnn(1)).explain(x, 0)
        DeepLift(_deep_net(1)).explain(x, 0)


def test_path_mismatch_is_an_error():
    class Branching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(60, 3)
            self.act = nn.Tanh()

        def forward(self, x):
            h = self.lin(x.flatten(1))
            return self.act(h) if bool(x.sum() > 0) else h

    model = Branching().double().eval()
    x = make_input("signal", batch=1).abs()
    with pytest.raises(ModelCallError, match="another path"):
        DeepLift(model, baseline=0.0).explain(x, 0)
    # one row per call: the reference of the second sample took the branch, the first did not
    x = torch.stack([x[0], -x[0]])
    x0 = -x
    with pytest.raises(ModelCallError, match="another path"):
        DeepLift(model, baseline=x0, batch_size=1).explain(x, 0)


# --------------------------------------------------------------------------- side effects
def _hooks(model: nn.Module) -> list[int]:
    return [
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda m: DeepLift(m, baseline=0.2),
        lambda m: DeepLiftShap(m, baselines=torch.zeros(2, 3, 20, **F64)),
        lambda m: GradientShap(m, baselines=torch.zeros(2, 3, 20, **F64), generator=_gen(0)),
    ],
)
def test_no_side_effects(make):
    model = _deep_net(1)
    model[1] = nn.ReLU(inplace=True)
    model[6] = nn.Sequential(nn.Dropout(0.0).train(), model[6])  # a submodule in another mode: kept
    flags = [p.requires_grad for p in model.parameters()]
    next(model.parameters()).requires_grad_(False)
    flags[0] = False
    hooks, modes = _hooks(model), [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = make_input("signal", batch=3)
    copy, version = x.clone(), x._version
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make(model).explain(x, 1)
    assert _hooks(model) == hooks
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(x, copy) and x._version == version
    assert torch.equal(torch.get_rng_state(), rng)


def test_other_threads_unaffected():
    # a thread running the model during the call sees its plain forward and gradient
    model = _deep_net(1)
    x = make_input("signal", batch=2)
    xg = x.clone().requires_grad_(True)
    expected = torch.autograd.grad(model(xg)[:, 0].sum(), xg)[0]
    seen: list[torch.Tensor] = []
    go = threading.Event()

    def other():
        go.wait()
        xt = x.clone().requires_grad_(True)
        seen.append(torch.autograd.grad(model(xt)[:, 0].sum(), xt)[0])

    thread = threading.Thread(target=other)
    thread.start()

    class Signal(nn.Module):
        calls = 0

        def forward(self, h):
            Signal.calls += 1
            if Signal.calls == 2:  # inside the input pass, the rules installed
                go.set()
                thread.join(timeout=10)
            return h

    wrapped = nn.Sequential(Signal(), model).eval()
    DeepLift(wrapped, baseline=0.3).explain(x, 0)
    thread.join()
    assert Signal.calls == 2
    torch.testing.assert_close(seen[0], expected)


# ----------------------------------------------------------------------- IG local, errors
def test_ig_multiply_by_inputs_false():
    model = cnn(1)
    x = make_input("signal", batch=3)
    x0 = 0.2 * make_input("signal", batch=3, seed=4)
    full = IntegratedGradients(model, n_steps=8, baseline=x0).explain(x, 1)
    local = IntegratedGradients(model, n_steps=8, baseline=x0, multiply_by_inputs=False).explain(x, 1)
    assert torch.equal(local.values * (x - x0), full.values)
    assert local.delta is None and full.delta is not None
    assert (
        repr(IntegratedGradients(model))
        == "IntegratedGradients(n_steps=50, rule='riemann_trapezoid', baseline='zeros')"
    )


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda m: DeepLift(m, multiply_by_inputs=1), "multiply_by_inputs"),
        (lambda m: DeepLift(m, eps=-1.0), "eps"),
        (lambda m: DeepLift(m, baseline="median"), "baseline"),
        (lambda m: DeepLiftShap(m, baselines=3.0), "baselines"),
        (lambda m: GradientShap(m, baselines=torch.zeros(2, 3, 20), n_samples=0), "n_samples"),
        (lambda m: GradientShap(m, baselines=torch.zeros(2, 3, 20), stdevs=-1.0), "stdevs"),
        (lambda m: GradientShap(m, baselines=torch.zeros(2, 3, 20), generator=0), "generator"),
        (lambda m: IntegratedGradients(m, multiply_by_inputs="no"), "multiply_by_inputs"),
    ],
)
def test_parameter_errors(build, match):
    with pytest.raises(ParameterError, match=match):
        build(cnn(1))


@pytest.mark.parametrize("baselines", [torch.zeros(2, 3, 19, **F64), lambda x: x[0], lambda x: "no"])
def test_distribution_shape_errors(baselines):
    x = make_input("signal", batch=2)
    with pytest.raises(ParameterError, match="baselines"):
        DeepLiftShap(cnn(1), baselines=baselines).explain(x, 0)


# ------------------------------------------------------------------ the public kit's checks
_REGISTERED = {case.id for case in registry.EXPLAINERS}
KIT = [
    pytest.param(check, id=f"{case.id}-{name}")
    for case in INNER
    for name, check in explainer_checks(
        case.make, kinds=("signal",), stochastic=case.stochastic, expected_passes=case.passes
    )
]


@pytest.mark.skipif("DeepLift" in _REGISTERED, reason="the contract suite runs these cases")
@pytest.mark.parametrize("check", KIT)
def test_kit(check):
    assert check()
