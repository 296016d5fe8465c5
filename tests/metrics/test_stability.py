"""salience.metrics.stability: Local Lipschitz estimate, Continuity, Consistency and Relative
Input/Output/Representation Stability against direct implementations written here, analytic
cases (linear models), batch and chunk invariance, bounded memory, domains, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import salience as sl
from salience.errors import ParameterError, ShapeError
from salience.metrics import evaluate
from salience.metrics import stability as S
from toy_models import Counting, cnn, make_input

F64 = torch.float64


def _model():
    return cnn(1)


def _mlp():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(60, 8), nn.ReLU(), nn.Linear(8, 4))
    return model.to(F64).eval()


def _x(b=3):
    return make_input("signal", batch=b)


def _noise(x, n, scale=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((x.shape[0], n, *x.shape[1:]), generator=g, dtype=x.dtype) * scale


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rel(a, b, eps=1e-6):
    return ((a - b) / torch.where(a == 0, eps, a)).flatten().norm()


def _reference(expl, model, x, y, noise, kind, layer=None, keep=False):
    """Direct implementation: one copy at a time, each explained alone."""
    b, n = noise.shape[:2]
    out = torch.full((b, n), float("nan"), dtype=F64)
    acts = {}
    if layer is not None:
        dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    with torch.no_grad():
        for i in range(b):
            a0 = expl.explain(x[i : i + 1], y[i : i + 1]).values[0]
            h0 = model(x[i : i + 1])[0]
            l0 = acts.get("a")
            for j in range(n):
                xp = x[i] + noise[i, j]
                e = expl.explain(xp[None], y[i : i + 1]).values[0]
                h = model(xp[None])[0]
                if keep and h.argmax() != h0.argmax():
                    continue
                if kind == "lle":
                    out[i, j] = (a0 - e).flatten().norm() / (x[i] - xp).flatten().norm()
                elif kind == "ris":
                    out[i, j] = _rel(a0, e) / _rel(x[i], xp).clamp_min(1e-6)
                elif kind == "ros":
                    out[i, j] = _rel(a0, e) / (h0 - h).norm().clamp_min(1e-6)
                else:
                    out[i, j] = _rel(a0, e) / _rel(l0, acts["a"]).clamp_min(1e-6)
    kept = ~torch.isnan(out)
    return torch.where(kept, out, -torch.inf).amax(1).where(kept.any(1), torch.nan)


KINDS = {
    "lle": (S.local_lipschitz_estimate, {}),
    "ris": (S.relative_input_stability, {}),
    "ros": (S.relative_output_stability, {}),
    "rrs": (S.relative_representation_stability, {"layer": "2"}),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("keep", [False, True])
def test_reference(kind, keep):
    model, x = _mlp(), _x()
    y = torch.tensor([0, 2, 1])
    expl = sl.InputXGradient(model)
    fn, kw = KINDS[kind]
    noise = _noise(x, 4, 0.5)
    ours = fn(expl, x, y, n_perturbations=4, perturbation=noise, keep_prediction=keep, progress=False, **kw)
    ref = _reference(expl, model, x, y, noise, kind, layer=kw.get("layer"), keep=keep)
    if keep:  # some copies change class, not all of any sample
        assert torch.isfinite(ref).all()
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_keep_prediction_drops_changed_copies():
    model, x = _mlp(), _x(4)
    expl = sl.Gradient(model)
    noise = _noise(x, 6, 3.0, seed=1)
    kept = S.relative_input_stability(expl, x, n_perturbations=6, perturbation=noise, progress=False)
    every = S.relative_input_stability(
        expl, x, n_perturbations=6, perturbation=noise, keep_prediction=False, progress=False
    )
    pred = model(x).argmax(1)
    changed = (model((x[:, None] + noise).flatten(0, 1)).argmax(1).reshape(4, 6) != pred[:, None]).any(1)
    assert changed.any()  # the case is exercised
    assert (kept[~changed] == every[~changed]).all()
    assert (torch.isnan(kept[changed]) | (kept[changed] <= every[changed])).all()


def _linear(w):
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.numel(), 2, bias=False)).to(F64).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w.flatten(), -w.flatten()]))
    return model


def test_linear_model_analytic():
    """f(x) = w.x: Gradient is w everywhere (every ratio 0); InputXGradient is w*x, so with w = c
    the LLE is |c| and the relative input stability 1 exactly."""
    x = _x(2)
    model = _linear(torch.full(x.shape[1:], -0.5, dtype=F64))
    y = torch.tensor([0, 0])
    kw = {"n_perturbations": 5, "generator": _gen(), "progress": False, "keep_prediction": False}
    grad = sl.Gradient(model)
    for fn in (S.local_lipschitz_estimate, S.relative_input_stability):
        assert (fn(grad, x, y, **kw) == 0).all()
    assert (S.continuity(grad, x, y, n_steps=4, progress=False) == 0).all()
    ixg = sl.InputXGradient(model)
    torch.testing.assert_close(S.local_lipschitz_estimate(ixg, x, y, **kw), torch.full((2,), 0.5, dtype=F64))
    torch.testing.assert_close(S.relative_input_stability(ixg, x, y, **kw), torch.ones(2, dtype=F64))
    # ROS: ||(x - x')/x|| / ||h(x) - h(x')||, with h(x) - h(x') = (w.d, -w.d) for d = x - x'
    noise = _noise(x, 3, 0.1, seed=2)
    ros = S.relative_output_stability(ixg, x, y, n_perturbations=3, perturbation=noise, progress=False)
    d = noise.flatten(2)
    expected = ((d / x.flatten(1)[:, None]).norm(dim=2) / ((d * -0.5).sum(2).abs() * 2**0.5)).amax(1)
    torch.testing.assert_close(ros, expected)


def test_continuity_reference():
    model, x = _model(), _x(2)
    y = torch.tensor([1, 3])
    expl = sl.InputXGradient(model)
    ours = S.continuity(expl, x, y, n_steps=6, progress=False)
    size = x.shape[-1]
    shifts = S.continuity_shifts(size, 6)
    assert shifts == [-size + (k + 1) * ((2 * size + 1) // 6) for k in range(6)]
    for i in range(2):
        a0 = expl.explain(x[i : i + 1], y[i : i + 1]).values[0]
        vals = []
        for t in shifts:
            xt = torch.full_like(x[i], float(x[i].min()))
            if t >= 0:
                xt[..., t:] = x[i][..., : size - t]
            else:
                xt[..., :t] = x[i][..., -t:]
            if torch.equal(xt, x[i]):
                continue
            e = expl.explain(xt[None], y[i : i + 1]).values[0]
            vals.append(float((a0 - e).abs().sum() / (x[i] - xt).norm()))
        torch.testing.assert_close(ours[i], torch.tensor(max(vals), dtype=F64))
    # a fixed fill value and the other axis (images, Quantus' "y" direction)
    img = make_input("image", batch=2)
    m2 = cnn(2)
    v0 = S.continuity(sl.Gradient(m2), img, y, n_steps=3, axis=-2, fill=0.0, progress=False)
    assert v0.shape == (2,) and torch.isfinite(v0).all()


@pytest.mark.parametrize("kind", list(KINDS))
def test_chunk_and_batch_invariance(kind):
    model, x = _model(), _x(3)
    y = torch.tensor([0, 1, 2])
    fn, kw = KINDS[kind]
    kw = {"layer": "1"} if kw else kw
    expl = sl.Gradient(model)
    base = fn(expl, x, y, n_perturbations=5, generator=_gen(3), progress=False, **kw)
    for bs in (1, 4):
        other = fn(expl, x, y, n_perturbations=5, generator=_gen(3), batch_size=bs, progress=False, **kw)
        torch.testing.assert_close(other, base, rtol=1e-12, atol=1e-12)
    # each sample alone, with its own noise, equals its row of the batch
    noise = _noise(x, 5, 0.2, seed=4)
    full = fn(expl, x, y, n_perturbations=5, perturbation=noise, progress=False, **kw)
    for i in range(3):
        alone = fn(
            expl,
            x[i : i + 1],
            y[i : i + 1],
            n_perturbations=5,
            perturbation=noise[i : i + 1],
            progress=False,
            **kw,
        )
        torch.testing.assert_close(alone[0], full[i], rtol=1e-12, atol=1e-12)


def test_builtin_noise_is_per_row_draws():
    """Copy j of sample i is row i * n + j, each row one torch.randn(S) (or rand) in order."""
    model, x = _model(), _x(2)
    expl = sl.Gradient(model)
    n = 3
    for noise, scale in (("gaussian", 0.3), ("uniform", 0.2)):
        g = _gen(5)
        rows = [
            (torch.randn if noise == "gaussian" else torch.rand)(x.shape[1:], generator=g, dtype=F64)
            for _ in range(2 * n)
        ]
        draws = torch.stack(rows).reshape(2, n, *x.shape[1:])
        given = scale * (draws if noise == "gaussian" else 2 * draws - 1)
        a = S.local_lipschitz_estimate(
            expl, x, n_perturbations=n, noise=noise, scale=scale, generator=_gen(5), progress=False
        )
        b = S.local_lipschitz_estimate(expl, x, n_perturbations=n, perturbation=given, progress=False)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_memory_bounded_by_batch_size():
    counting = Counting(_model())
    x = _x(2)
    expl = sl.Gradient(counting, batch_size=64)
    out = S.relative_representation_stability(
        expl,
        x,
        torch.tensor([0, 1]),
        layer="model.1",
        n_perturbations=40,
        generator=_gen(),
        batch_size=3,
        progress=False,
    )
    assert out.shape == (2,)
    assert max(counting.rows) <= 3
    # explanations of 80 copies + their outputs and activations (80 + 80), plus the point itself
    assert sum(counting.rows) >= 3 * 80
    counting.rows.clear()
    S.continuity(sl.Gradient(counting, batch_size=2), x, n_steps=9, progress=False)
    assert max(counting.rows) <= 2


def test_domain_perturbs_coefficients():
    """With domain=, noise is added to z = forward(x) and the explainer sees inverse(z')."""

    class Double:
        exact = True

        def forward(self, x):
            return 2 * x

        def inverse(self, z, index=None):
            return z / 2

    model, x = _model(), _x(2)
    y = torch.tensor([0, 1])
    expl = sl.InputXGradient(model)
    noise = _noise(x, 3, 0.2, seed=6)
    ours = S.local_lipschitz_estimate(
        expl, x, y, n_perturbations=3, perturbation=noise, domain=Double(), progress=False
    )
    # the same as perturbing x by noise / 2 and measuring distances on 2 x
    plain = S.local_lipschitz_estimate(expl, x, y, n_perturbations=3, perturbation=noise / 2, progress=False)
    torch.testing.assert_close(ours, plain / 2)
    same = S.relative_input_stability(
        expl, x, y, n_perturbations=3, perturbation=noise, domain=sl.domains.Time(), progress=False
    )
    torch.testing.assert_close(
        same, S.relative_input_stability(expl, x, y, n_perturbations=3, perturbation=noise, progress=False)
    )
    fourier = S.local_lipschitz_estimate(
        expl, x, y, n_perturbations=3, domain=sl.domains.Fourier(), generator=_gen(), progress=False
    )
    assert fourier.shape == (2,) and torch.isfinite(fourier).all()


def test_consistency_by_hand():
    model = _linear(torch.linspace(-1, 1, 60, dtype=F64).reshape(3, 20))
    x = _x(5)
    pred = model(x).argmax(1)
    a = torch.zeros(5, 3, 20, dtype=F64)
    a[0, 0, 0] = a[1, 0, 0] = a[2, 0, 0] = 1.0  # samples 0-2 share their top-1 position and sign
    a[3, 1, 5] = a[4, 1, 5] = -2.0  # samples 3-4 share another
    a += 1e-3 * torch.arange(60, dtype=F64).reshape(3, 20) / 60  # no ties below the top
    ours = S.consistency(model, x, a, k=1)
    expected = []
    for i in range(5):
        group = [j for j in ((0, 1, 2) if i < 3 else (3, 4)) if j != i]
        expected.append(sum(float(pred[j] == pred[i]) for j in group) / len(group))
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=F64))
    a[4, 1, 5] = 2.0  # now sample 4's label differs in sign: no partner for 3 or 4
    alone = S.consistency(model, x, a, k=1, batch_size=1)
    assert torch.isnan(alone[3:]).all() and torch.equal(alone[:3], ours[:3])


def test_metric_classes_and_evaluate():
    model, x = _model(), _x(2)
    y = torch.tensor([0, 1])
    expl = sl.Gradient(model)
    lle = S.LocalLipschitzEstimate(n_perturbations=3, generator=_gen(1), progress=False)
    assert "LocalLipschitzEstimate(n_perturbations=3" in repr(lle)
    a = expl.explain(x, y)
    torch.testing.assert_close(
        lle(model, x, a, y, explainer=expl),
        S.local_lipschitz_estimate(expl, x, y, n_perturbations=3, generator=_gen(1), progress=False),
    )
    metrics = [
        S.LocalLipschitzEstimate(n_perturbations=2, generator=_gen(), progress=False),
        S.RelativeInputStability(n_perturbations=2, generator=_gen(), progress=False),
        S.RelativeOutputStability(n_perturbations=2, generator=_gen(), progress=False),
        S.RelativeRepresentationStability(layer="1", n_perturbations=2, generator=_gen(), progress=False),
        S.Continuity(n_steps=3, progress=False),
        S.Consistency(),
    ]
    table = evaluate({"grad": expl}, metrics, model, [(x, y)])
    assert len(table) == len(metrics)
    row = table.get("grad", "Continuity")
    direct = S.continuity(expl, x, y, n_steps=3, progress=False)
    assert row["higher_is_better"] is False and row["n"] == 2
    torch.testing.assert_close(torch.tensor(row["mean"], dtype=F64), direct.mean())
    assert table.get("grad", "Consistency")["higher_is_better"] is True


def test_no_side_effects():
    model, x = _model(), _x(2)
    before = x.clone()
    state = torch.random.get_rng_state()
    S.relative_representation_stability(sl.Gradient(model), x, layer="1", n_perturbations=3, progress=False)
    assert torch.equal(x, before) and torch.equal(torch.random.get_rng_state(), state)
    assert not model._forward_hooks and not model[1]._forward_hooks


def test_plain_callable_needs_model():
    model, x = _model(), _x(2)

    def fn(xs, target):
        return sl.Gradient(model).explain(xs, target).values

    v = S.local_lipschitz_estimate(
        fn, x, torch.tensor([0, 1]), n_perturbations=2, generator=_gen(), progress=False
    )
    assert v.shape == (2,)
    with pytest.raises(ParameterError, match="relative_output_stability.*model="):
        S.relative_output_stability(fn, x, torch.tensor([0, 1]), n_perturbations=2, progress=False)
    w = S.relative_output_stability(
        fn, x, torch.tensor([0, 1]), model=model, n_perturbations=2, generator=_gen(), progress=False
    )
    assert torch.isfinite(w).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda e, x: S.local_lipschitz_estimate(e, x, n_perturbations=0),
            "'n_perturbations'.*local_lipschitz_estimate",
        ),
        (lambda e, x: S.local_lipschitz_estimate(e, x, noise="laplace"), "'noise'"),
        (lambda e, x: S.relative_input_stability(e, x, scale=0.0), "'scale'.*relative_input_stability"),
        (lambda e, x: S.relative_output_stability(e, x, eps_min=-1.0), "'eps_min'"),
        (lambda e, x: S.relative_representation_stability(e, x, layer=3), "'layer'"),
        (lambda e, x: S.local_lipschitz_estimate(e, x, perturbation=[1.0]), "'perturbation'"),
        (lambda e, x: S.continuity(e, x, n_steps=100), "'n_steps'.*continuity"),
        (lambda e, x: S.continuity(e, x, axis=0), "'axis'"),
        (lambda e, x: S.continuity(e, x, fill="black"), "'fill'"),
        (lambda e, x: S.local_lipschitz_estimate(e.model, x), "'explainer'"),
        (lambda e, x: S.consistency(e.model, x, x, discretise="hash"), "'discretise'"),
        (lambda e, x: S.LocalLipschitzEstimate(scale=-1.0), "'scale'.*LocalLipschitzEstimate"),
        (
            lambda e, x: S.RelativeRepresentationStability(layer=None),
            "'layer'.*RelativeRepresentationStability",
        ),
        (lambda e, x: S.Continuity(fill="x"), "'fill'"),
        (lambda e, x: S.Consistency(k=0), "'k'.*Consistency"),
        (lambda e, x: S.Continuity()(e.model, x, None, explainer=e, domain=sl.domains.Fourier()), "domain"),
    ],
)
def test_errors(call, match):
    x = _x(2)
    with pytest.raises(ParameterError, match=match):
        call(sl.Gradient(_model()), x)


def test_shape_errors():
    model, x = _model(), _x(2)
    expl = sl.Gradient(model)
    with pytest.raises(ShapeError, match="perturbation tensor"):
        S.local_lipschitz_estimate(
            expl, x, n_perturbations=2, perturbation=torch.zeros(2, 3, 3, 20, dtype=F64), progress=False
        )
    with pytest.raises(ShapeError, match="one map per input"):
        S.local_lipschitz_estimate(
            expl, x, n_perturbations=2, attribution=torch.zeros(3, 3, 20, dtype=F64), progress=False
        )
    with pytest.raises(ShapeError, match="discretise"):
        S.consistency(model, x, x, discretise=lambda a: a[:1])


def test_sensitivities_are_this_loop():
    """Max-/Avg-Sensitivity (robustness.py) equal the shared loop with uniform noise of the same
    radius and the ratio ||e(x) - e(x')||: a later unification keeps their values."""
    from salience.errors import caller
    from salience.metrics import _stability as core
    from salience.metrics import avg_sensitivity, max_sensitivity

    model, x = _model(), _x(3)
    expl = sl.Gradient(model)
    kw = {"n_perturbations": 5, "radius": 0.05, "progress": False}
    ms = max_sensitivity(expl, x, generator=_gen(1), **kw)
    avg = avg_sensitivity(expl, x, generator=_gen(1), **kw)
    with caller("test"):
        v = core.run(
            expl,
            x,
            None,
            n=5,
            draw=core.noise_rows("uniform", 0.05, None, _gen(1), 3, 5),
            ratio=lambda r: core.distance(r.ref, r.expl),
            attribution=None,
            model=None,
            output=None,
            outputs=False,
            layer=None,
            keep_prediction=False,
            domain=None,
            layout=None,
            batch_size=None,
            progress=False,
            forward_args=(),
            forward_kwargs=None,
        )
    torch.testing.assert_close(v.amax(1), ms, rtol=0, atol=0)
    torch.testing.assert_close(v.mean(1), avg, rtol=0, atol=0)


def test_sensitivities_take_the_loop_options():
    """Max-/Avg-Sensitivity gained the loop's options: a domain (noise on the coefficients),
    explicit noise, the prediction filter and batch_size, with values checked by hand."""
    from salience.metrics import MaxSensitivity, avg_sensitivity, max_sensitivity

    class Double:
        exact = True

        def forward(self, x):
            return 2 * x

        def inverse(self, z, index=None):
            return z / 2

    model, x = _model(), _x(2)
    y = torch.tensor([0, 1])
    expl = sl.InputXGradient(model)
    noise = _noise(x, 3, 0.2, seed=6)
    a = expl.explain(x, y).values
    by_hand = torch.stack(
        [(expl.explain(x + noise[:, j] / 2, y).values - a).flatten(1).norm(dim=1) for j in range(3)], 1
    )
    kw = {"n_perturbations": 3, "perturbation": noise, "domain": Double(), "progress": False}
    torch.testing.assert_close(max_sensitivity(expl, x, y, batch_size=2, **kw), by_hand.amax(1))
    torch.testing.assert_close(avg_sensitivity(expl, x, y, **kw), by_hand.mean(1))
    # keep_prediction: a copy whose class changes is dropped; none kept -> NaN
    flip = torch.zeros_like(noise)
    flip[0, 1] = 1e3 * torch.sign(torch.randn(x.shape[1:], generator=_gen(2)))
    with torch.no_grad():
        changed = model(x[:1] + flip[0, 1:2]).argmax(1) != model(x[:1]).argmax(1)
    kept = max_sensitivity(
        expl, x, y, n_perturbations=3, perturbation=flip, keep_prediction=True, progress=False
    )
    every = max_sensitivity(expl, x, y, n_perturbations=3, perturbation=flip, progress=False)
    assert bool(changed)  # the flipped copy changes the class
    assert kept[0] == 0 and every[0] > 0
    torch.testing.assert_close(kept[1:], every[1:])
    # the class forwards domain= and the stored options
    m = MaxSensitivity(n_perturbations=3, generator=_gen(3), progress=False, batch_size=1)
    v = m(model, x, a, y, explainer=expl, domain=sl.domains.Fourier())
    assert v.shape == (2,) and torch.isfinite(v).all()


class _Scaled(nn.Module):
    """model(x, s=...) with a per-sample scale s (B,): extra inputs must follow each copy."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _mlp()

    def forward(self, x, s):
        return self.inner(x * s[:, None, None])


def test_forward_kwargs_follow_each_copy():
    model, x = _Scaled().eval(), _x(3)
    s = torch.tensor([0.5, 2.0, -1.0], dtype=F64)
    expl = sl.Gradient(model)
    noise = _noise(x, 4, 0.3, seed=9)
    kw = {"n_perturbations": 4, "perturbation": noise, "progress": False, "layer": "inner.2"}
    full = S.relative_representation_stability(expl, x, forward_kwargs={"s": s}, batch_size=5, **kw)
    for i in range(3):
        alone = S.relative_representation_stability(
            expl,
            x[i : i + 1],
            forward_kwargs={"s": s[i : i + 1]},
            **{**kw, "perturbation": noise[i : i + 1]},
        )
        torch.testing.assert_close(alone[0], full[i], rtol=1e-12, atol=1e-12, equal_nan=True)
    assert not torch.equal(
        full, S.relative_representation_stability(expl, x, forward_kwargs={"s": s.flip(0)}, **kw)
    )
