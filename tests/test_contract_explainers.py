"""The contract every explainer in the registry satisfies (sklearn-style common checks)."""

from __future__ import annotations

import pytest
import torch

import salience as sl
from registry import EXPLAINERS, Case
from toy_models import DIMS, Counting, cnn, make_input

CASES = [pytest.param(c, k, id=f"{c.id}-{k}") for c in EXPLAINERS for k in c.kinds]


def _run(case: Case, model, x, target=1, **kw):
    return case.make(model, **kw).explain(x, target=target)


@pytest.mark.parametrize("case, kind", CASES)
def test_output_shape_dtype_device(case: Case, kind: str):
    model = cnn(DIMS[kind])
    x = make_input(kind)
    attr = _run(case, model, x)
    assert isinstance(attr, sl.Attribution)
    assert attr.values.dtype == x.dtype and attr.values.device == x.device
    assert attr.values.shape[0] == x.shape[0]
    if attr.domain is None:
        assert attr.values.ndim == x.ndim
        torch.broadcast_shapes(attr.values.shape, x.shape)
    assert attr.scores.shape == (x.shape[0],)
    assert torch.isfinite(attr.values).all()
    assert attr.method


@pytest.mark.parametrize("case, kind", CASES)
def test_batch_invariance(case: Case, kind: str):
    if case.stochastic:
        pytest.skip("stochastic: each call draws its own noise/masks")
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=3)
    whole = _run(case, model, x, target=torch.tensor([0, 1, 2])).values
    parts = torch.cat([_run(case, model, x[i : i + 1], target=i).values for i in range(3)])
    torch.testing.assert_close(whole, parts, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case, kind", CASES)
def test_chunk_invariance_and_call_count(case: Case, kind: str):
    x = make_input(kind, batch=3)
    ref = None
    for bs in (1, 2, None):
        model = Counting(cnn(DIMS[kind]))
        out = _run(case, model, x, batch_size=bs).values
        if ref is None:
            ref = out
        else:
            torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
        if bs is not None:
            expected = case.expected_calls(3, bs)
            if expected is not None:
                assert model.calls == expected, (model.rows, expected)
            assert max(model.rows) <= bs


@pytest.mark.parametrize("case, kind", CASES)
def test_determinism(case: Case, kind: str):
    model = cnn(DIMS[kind])
    x = make_input(kind)
    a = _run(case, model, x).values
    b = _run(case, model, x).values
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _snapshot(model):
    return (
        model.training,
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        {n: (p.requires_grad, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()},
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
    )


def _assert_same(before, after):
    assert before[0] == after[0]
    for k in before[1]:
        assert torch.equal(before[1][k], after[1][k]), k
    assert before[2].keys() == after[2].keys()
    for n, (rg, g) in before[2].items():
        rg2, g2 = after[2][n]
        assert rg == rg2
        assert (g is None and g2 is None) or torch.equal(g, g2), n
    assert before[3] == after[3]


@pytest.mark.parametrize("case, kind", CASES)
def test_no_side_effects(case: Case, kind: str):
    model = cnn(DIMS[kind])
    # a stale .grad on one parameter must stay exactly as it is
    next(model.parameters()).grad = torch.ones_like(next(model.parameters()))
    x = make_input(kind)
    x_copy = x.clone()
    before = _snapshot(model)
    rng = torch.random.get_rng_state()
    with torch.no_grad():  # gradient methods must work inside no_grad too
        _run(case, model, x)
    _assert_same(before, _snapshot(model))
    assert torch.equal(rng, torch.random.get_rng_state()), "the global RNG was used"
    assert torch.equal(x, x_copy) and not x.requires_grad and x.grad is None


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("case, kind", CASES)
def test_no_side_effects_after_exception(case: Case, kind: str):
    model = cnn(DIMS[kind])
    calls = {"n": 0}

    def explode(_m, _i, out):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise _Boom("boom")

    handle = model[2].register_forward_hook(explode)  # a hook of the user's own, kept
    next(model.parameters()).grad = torch.ones_like(next(model.parameters()))
    before = _snapshot(model)
    x = make_input(kind)
    x_copy = x.clone()
    rng = torch.random.get_rng_state()
    try:
        with pytest.raises(Exception) as info:
            _run(case, model, x, batch_size=1)
        assert isinstance(info.value, _Boom) or isinstance(info.value.__cause__, _Boom)
        _assert_same(before, _snapshot(model))
        assert torch.equal(rng, torch.random.get_rng_state()), "the global RNG was used"
        assert torch.equal(x, x_copy) and not x.requires_grad and x.grad is None
    finally:
        handle.remove()


def _training_cnn(dims: int):
    """toy_models.cnn with BatchNorm and Dropout after the first conv (layer "2" is still the
    second conv), in training mode."""
    model = cnn(dims)
    norm = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d}[dims](6)
    model[1] = torch.nn.Sequential(norm.to(torch.float64), torch.nn.ReLU(), torch.nn.Dropout(0.3))
    return model.train()


@pytest.mark.parametrize("case, kind", CASES)
def test_training_mode_model_and_rng_left_alone(case: Case, kind: str):
    """A model left in training mode gets a warning, and every model call restores its buffers
    (BatchNorm running statistics) and the global RNG its dropout draws from."""
    model = _training_cnn(DIMS[kind])
    x = make_input(kind, batch=3)
    before = _snapshot(model)
    rng = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match="training mode"):
        try:
            _run(case, model, x)
        except sl.SalienceError:
            pass  # a method may refuse a training-mode model; the state must still be kept
    _assert_same(before, _snapshot(model))
    assert torch.equal(rng, torch.random.get_rng_state()), "the global RNG was used"


@pytest.mark.parametrize("case, kind", CASES)
def test_equivalent_target_forms(case: Case, kind: str):
    model = cnn(DIMS[kind])
    x = make_input(kind)
    a = _run(case, model, x, target=3).values
    b = _run(case, model, x, target=torch.tensor([3, 3])).values
    c = _run(case, model, x, target=sl.Class(3)).values
    d = _run(case, model, x, target=[3, 3]).values
    for other in (b, c, d):
        torch.testing.assert_close(a, other, rtol=0, atol=0)


@pytest.mark.parametrize("case, kind", CASES)
def test_target_recorded(case: Case, kind: str):
    model = cnn(DIMS[kind])
    x = make_input(kind)
    attr = _run(case, model, x, target=None)
    pred = model(x).argmax(1)
    assert torch.equal(torch.as_tensor(attr.target), pred)
    torch.testing.assert_close(attr.scores, model(x).gather(1, pred[:, None])[:, 0])


def test_every_public_explainer_is_registered():
    import inspect

    public = {
        name
        for name, obj in vars(sl).items()
        if inspect.isclass(obj) and issubclass(obj, sl.Explainer) and obj not in (sl.Explainer, sl.Wrapper)
    }
    registered = set()
    for case in EXPLAINERS:
        e = case.make(cnn(1))
        while True:
            registered.add(type(e).__name__)
            if not isinstance(e, sl.Wrapper):
                break
            e = e.explainer
    assert public <= registered, f"not in tests/registry.py: {sorted(public - registered)}"
