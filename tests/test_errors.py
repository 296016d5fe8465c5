"""Bad input raises the documented error classes with messages naming the problem."""

from __future__ import annotations

import warnings

import pytest
import torch

import salience as sl
from toy_models import Linear, cnn, make_input


@pytest.fixture
def model():
    return cnn(1)


@pytest.fixture
def x():
    return make_input("signal")


def test_wrong_ndim_for_layout(model, x):
    with pytest.raises(
        sl.ShapeError, match=r"must have 4 dims for Layout\('b c h w'\); got shape \(2, 3, 20\)"
    ):
        sl.Gradient(model, layout="b c h w").explain(x, 0)
    with pytest.raises(sl.ShapeError, match="Cannot infer a layout"):
        sl.Gradient(lambda t: t.flatten(1)).explain(torch.randn(2, 3, 4, 5, 6, 7, dtype=torch.float64), 0)
    with pytest.raises(sl.ShapeError, match="at least 2 dims"):
        sl.Gradient(model).explain(torch.randn(20, dtype=torch.float64), 0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_integer_bool_complex_dtype(model, dtype):
    x = torch.ones(2, 3, 20, dtype=dtype)
    with pytest.raises(sl.DTypeError, match="floating-point dtype") as info:
        sl.Gradient(model).explain(x, 0)
    assert isinstance(info.value, TypeError)


def test_not_a_tensor(model):
    with pytest.raises(sl.InputError, match="torch.Tensor"):
        sl.Gradient(model).explain([[1.0, 2.0]], 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf_input(model, x, bad):
    x = x.clone()
    x[1, 0, 3] = bad
    with pytest.raises(sl.InputError, match="finite. Got 1 NaN/inf"):
        sl.IntegratedGradients(model).explain(x, 0)


def test_target_out_of_range(model, x):
    with pytest.raises(sl.TargetError, match="Target class 7 is out of range for a model with 4 outputs"):
        sl.Gradient(model).explain(x, 7)
    with pytest.raises(sl.TargetError, match="out of range"):
        sl.Gradient(model).explain(x, -1)


def test_target_length_mismatch(model, x):
    with pytest.raises(sl.TargetError, match=r"one entry per sample \(length 2\). Got shape \(3,\)"):
        sl.Gradient(model).explain(x, torch.tensor([0, 1, 2]))


def test_float_target_rejected(model, x):
    with pytest.raises(sl.TargetError, match="integer class indices"):
        sl.Gradient(model).explain(x, torch.tensor([0.0, 1.0]))


def test_int_target_on_non_classifier_output(x):
    def seq_model(t):  # (B, C, T) -> (B, 2, T): a per-time-step output
        return t[:, :2] * 2

    with pytest.raises(
        sl.TargetError, match=r"needs a model output of shape \(B, K\); got shape \(2, 2, 20\)"
    ):
        sl.Gradient(seq_model).explain(x, 1)
    with pytest.raises(sl.TargetError, match="target=None needs a classifier output"):
        sl.Gradient(seq_model).explain(x)
    # the right way: Output((channel, step))
    attr = sl.Gradient(seq_model).explain(x, sl.Output((1, 5)))
    expected = torch.zeros_like(x)
    expected[:, 1, 5] = 2
    torch.testing.assert_close(attr.values, expected)


@pytest.mark.parametrize("n_steps", [0, -3, 2.5, "10", True])
def test_bad_n_steps(model, n_steps):
    with pytest.raises(
        sl.ParameterError,
        match=r"'n_steps' parameter of IntegratedGradients must be an int in the range \[1, inf\)",
    ):
        sl.IntegratedGradients(model, n_steps=n_steps)


def test_trapezoid_needs_two_steps(model):
    with pytest.raises(sl.ParameterError, match="must be >= 2 for rule 'riemann_trapezoid'"):
        sl.IntegratedGradients(model, n_steps=1, rule="riemann_trapezoid")


def test_unknown_rule(model):
    with pytest.raises(
        sl.ParameterError,
        match="'rule' parameter of IntegratedGradients must be one of 'riemann_left'.*Got 'simpson'",
    ):
        sl.IntegratedGradients(model, rule="simpson")


def test_baseline_not_broadcastable(model, x):
    ig = sl.IntegratedGradients(model, baseline=torch.zeros(2, 3, 7))
    with pytest.raises(
        sl.ParameterError, match=r"broadcastable to x of shape \(2, 3, 20\). Got shape \(2, 3, 7\)"
    ):
        ig.explain(x, 0)
    with pytest.raises(sl.ParameterError, match="'baseline' parameter of IntegratedGradients must be one of"):
        sl.IntegratedGradients(model, baseline="median")
    with pytest.raises(sl.ParameterError, match="must be 'zeros', 'mean', a float"):
        sl.IntegratedGradients(model, baseline=[0.0])


def test_model_output_nan(x):
    def nan_model(t):
        return t.flatten(1)[:, :3] * float("nan")

    with pytest.raises(sl.ModelOutputError, match="NaN or inf"):
        sl.Gradient(nan_model).explain(x, 0)


def test_model_failure_gets_context(x):
    model = cnn(1, in_channels=5)
    with pytest.raises(
        sl.ModelCallError, match=r"the model failed on a chunk of 2 rows of shape \(3, 20\)"
    ) as info:
        sl.Gradient(model).explain(x, 0)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value, RuntimeError)


def test_model_must_return_tensor(x):
    with pytest.raises(sl.ModelOutputError, match="must return a torch.Tensor; got ndarray"):
        sl.Gradient(lambda t: t.sum((1, 2)).detach().numpy()).explain(x)
    # a structured output must say which tensor to explain (a one-element tuple is unambiguous)
    with pytest.raises(sl.ModelOutputError, match=r"tuple of 2 elements; pass output=<index>"):
        sl.Gradient(lambda t: (t.sum((1, 2)), t)).explain(x)


def test_training_mode_warns_and_is_left_alone(x):
    model = cnn(1).train()
    with pytest.warns(UserWarning, match="training mode"):
        sl.Gradient(model).explain(x, 0)
    assert model.training


def test_eval_mode_does_not_warn(model, x):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sl.Gradient(model).explain(x, 0)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: sl.SmoothGrad(m), "must be a salience Explainer"),
        (lambda m: sl.SmoothGrad(sl.Gradient(m), n_samples=0), "'n_samples' parameter of SmoothGrad"),
        (
            lambda m: sl.SmoothGrad(sl.Gradient(m), sigma=-1.0),
            "'sigma' parameter of SmoothGrad must be a float",
        ),
        (
            lambda m: sl.SmoothGrad(sl.Gradient(m), kind="median"),
            "'kind' parameter of SmoothGrad must be one of",
        ),
        (lambda m: sl.SmoothGrad(sl.Gradient(m), generator=0), "'generator' parameter of SmoothGrad"),
        (lambda m: sl.Gradient(m, batch_size=0), "'batch_size' parameter of Gradient must be an int"),
        (lambda m: sl.Saliency(m, reduce_channels="max"), "'reduce_channels' parameter of Saliency"),
        (lambda m: sl.Gradient("not a model"), "'model' parameter of Gradient must be callable"),
    ],
)
def test_bad_hyperparameters(model, make, match):
    with pytest.raises(sl.ParameterError, match=match):
        make(model)


def test_errors_subclass_builtins():
    assert issubclass(sl.ParameterError, ValueError)
    assert issubclass(sl.TargetError, ValueError)
    assert issubclass(sl.ShapeError, ValueError)
    assert issubclass(sl.DTypeError, TypeError)
    assert issubclass(sl.CompositionError, TypeError)
    assert issubclass(sl.NotFittedError, RuntimeError)


def test_bad_target_type(model, x):
    with pytest.raises(sl.TargetError, match="target must be None, an int"):
        sl.Gradient(model).explain(x, 2.5)
    with pytest.raises(sl.TargetError, match="not a bool"):
        sl.Gradient(model).explain(x, True)


def test_linear_helper_sanity():
    # guards the analytic model used across the suite
    w = torch.ones(2, 3, 4, dtype=torch.float64)
    assert Linear(w)(torch.ones(1, 3, 4, dtype=torch.float64)).tolist() == [[12.0, 12.0]]


def test_target_out_of_range_in_a_later_chunk(model, x):
    # only the second sample's class is bad; with batch_size=1 it sits in the second chunk
    with pytest.raises(sl.TargetError, match="Target class 9 is out of range"):
        sl.Gradient(model, batch_size=1).explain(x, [0, 9])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_all_finite_matches_isfinite(dtype, bad):
    """The one-reduction finiteness check used on every input and model output."""
    from salience._validation import all_finite

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 70, generator=g).to(dtype)
    assert all_finite(x) and all_finite(x[:0]) and all_finite(torch.arange(3))
    for flat in (0, 17, x.numel() - 1):
        y = x.clone()
        y.view(-1)[flat] = bad
        assert not all_finite(y)
        assert not all_finite(y.transpose(0, 2))  # non-contiguous
    big = torch.full((4,), torch.finfo(dtype).max, dtype=dtype)  # finite, but its sum overflows
    assert all_finite(big)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_float_baseline_rejected_in_init(model, bad):
    with pytest.raises(
        sl.ParameterError,
        match=r"'baseline' parameter of IntegratedGradients must be a finite float\. Got (nan|inf|-inf)",
    ):
        sl.IntegratedGradients(model, baseline=bad)


def test_complex_or_non_finite_tensor_baseline(model, x):
    with pytest.raises(sl.ParameterError, match=r"must be a real tensor.*Got dtype torch.complex128"):
        sl.IntegratedGradients(model, baseline=torch.zeros(3, 20, dtype=torch.complex128)).explain(x, 0)
    bad = torch.zeros(3, 20, dtype=torch.float64)
    bad[0, 0] = float("nan")
    with pytest.raises(sl.ParameterError, match="contains NaN or inf"):
        sl.IntegratedGradients(model, baseline=bad).explain(x, 0)


def test_explain_inside_inference_mode(model, x):
    """torch.inference_mode() forbids recording gradients; explain switches it off for the call."""
    ref = sl.IntegratedGradients(model, n_steps=4).explain(x, 1)
    other = cnn(1)
    with torch.inference_mode():
        xi = x.clone()  # an inference tensor
        got = sl.IntegratedGradients(model, n_steps=4).explain(xi, 1)
        cam = sl.GradCAM(other, layer="2").explain(xi, 1)
    torch.testing.assert_close(got.values, ref.values, rtol=0, atol=0)
    assert cam.values.shape == (x.shape[0], 1, x.shape[-1])


def test_inputs_made_in_inference_mode(model):
    """An inference tensor (made under torch.inference_mode()) is explained from a normal copy."""
    x = make_input("signal")
    with torch.inference_mode():
        xi = x.clone()
    assert xi.is_inference()
    for explainer in (
        sl.Gradient(model),
        sl.Saliency(model),
        sl.InputXGradient(model),
        sl.GuidedBackprop(model),
        sl.LRP(model),
    ):
        torch.testing.assert_close(
            explainer.explain(xi, 1).values, explainer.explain(x, 1).values, rtol=0, atol=0
        )
    out = sl.metrics.max_sensitivity(
        sl.Gradient(model),
        xi,
        1,
        n_perturbations=2,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert out.shape == (x.shape[0],)


def test_meta_input_and_mixed_device_model_are_named(model):
    with pytest.raises(sl.InputError, match="'meta' device"):
        sl.Gradient(model).explain(torch.empty(2, 3, 20, device="meta"), 1)
    half_loaded = cnn(1)
    half_loaded[0].to("meta")  # torch would compute garbage on the CPU from such a model
    with pytest.raises(
        sl.ParameterError, match=r"2 parameter\(s\)/buffer\(s\) on the 'meta' device \(e.g. '0.weight'\)"
    ):
        sl.Gradient(half_loaded).explain(make_input("signal"), 1)
    mixed = cnn(1)
    mixed[0].float()  # float32 first conv, float64 rest: the model fails, and the error says where things are
    with pytest.raises(
        sl.ModelCallError, match=r"model parameters on cpu \(torch.float32\) and cpu \(torch.float64\)"
    ):
        sl.Gradient(mixed).explain(make_input("signal"), 1)


def test_warnings_point_at_the_users_line():
    """Library warnings are attributed to the caller's line (not a hook inside salience, torch
    or contextlib) and have their own categories."""
    import pathlib

    with_softmax = torch.nn.Sequential(*cnn(1), torch.nn.Softmax(dim=1)).eval()
    x = make_input("signal")
    with pytest.warns(sl.FinalActivationWarning) as rec:
        sl.GradCAM(with_softmax, layer="2").explain(x, 1)
    assert pathlib.Path(rec[0].filename).name == "test_errors.py"
    no_relu = torch.nn.Sequential(
        torch.nn.Conv1d(3, 2, 3), torch.nn.SiLU(), torch.nn.Flatten(), torch.nn.Linear(36, 2)
    )
    with pytest.warns(sl.ReLUCoverageWarning) as rec:
        sl.GuidedBackprop(no_relu.double().eval()).explain(x, 1)
    assert pathlib.Path(rec[0].filename).name == "test_errors.py"
    with pytest.warns(sl.TrainingModeWarning) as rec:
        sl.Gradient(cnn(1).train()).explain(x, 1)
    assert pathlib.Path(rec[0].filename).name == "test_errors.py"
    assert issubclass(sl.ReLUCoverageWarning, sl.SalienceWarning) and issubclass(
        sl.SalienceWarning, UserWarning
    )
