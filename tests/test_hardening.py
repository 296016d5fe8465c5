"""Hardening (#13): models that write into their input, threads sharing a model, outputs without
gradients or with complex values, token layers read as channels, zero-length and one-step axes.

Each test fails on the code before the fix it covers.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from registry import EXPLAINERS, Case
from toy_models import DIMS, cnn, make_input

# ---------------------------------------------------------------- models that work in place


class CentreInPlace(nn.Module):
    """Subtracts each channel's mean from the input in place (``x -= mean``)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
        if self.inplace:
            x -= mean
            return x
        return x - mean


def _front(kind: str, first: str, inplace: bool) -> nn.Module:
    """toy_models.cnn behind a first layer that overwrites its input (or its out-of-place twin).

    The body is reachable as ``.model`` so the CAM cases find their layer by module."""
    layer = nn.ReLU(inplace=inplace) if first == "relu" else CentreInPlace(inplace)

    class Front(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = layer
            self.model = cnn(DIMS[kind])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(self.first(x))

    return Front().eval()


_KIND_OF = {c.id: c.kinds[0] for c in EXPLAINERS}
INPLACE_CASES = [pytest.param(c, c.kinds[0], id=f"{c.id}-{c.kinds[0]}") for c in EXPLAINERS]


def _explain(case: Case, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return case.make(model).explain(x, target=1).values


@pytest.mark.parametrize("first", ["relu", "centre"])
@pytest.mark.parametrize("case, kind", INPLACE_CASES)
def test_models_writing_into_their_input(case: Case, kind: str, first: str):
    """The caller's x is never changed, repeated calls explain the same point, and the result
    equals the one for the same model written out of place (gradient methods included)."""
    x = make_input(kind)
    before = x.clone()
    got = _explain(case, _front(kind, first, inplace=True), x)
    assert torch.equal(x, before), "the model's in-place write reached the caller's input"
    again = _explain(case, _front(kind, first, inplace=True), x)
    want = _explain(case, _front(kind, first, inplace=False), x)
    if not case.stochastic:
        torch.testing.assert_close(again, got, rtol=0, atol=0)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    assert torch.equal(x, before)


def test_in_place_gradient_is_the_true_gradient():
    """Autograd through the model's in-place ReLU: the gradient of relu(x) @ w is w where x > 0."""
    w = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    model = nn.Sequential(
        nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3, 1, bias=False, dtype=torch.float64)
    )
    with torch.no_grad():
        model[2].weight.copy_(w)
    x = torch.tensor([[[0.5, -1.0, 2.0]]], dtype=torch.float64)
    g = sl.Gradient(model).explain(x, target=sl.Output(0)).values
    torch.testing.assert_close(g, torch.tensor([[[1.0, 0.0, 3.0]]], dtype=torch.float64))
    assert torch.equal(x, torch.tensor([[[0.5, -1.0, 2.0]]], dtype=torch.float64))


def test_model_writing_in_place_only_sometimes():
    """A model that writes into its input only on some calls still gets rows it may overwrite
    (the first gradient call saw no write; a later one writes into the leaf)."""
    calls = [0]

    def model(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        if calls[0] > 1:
            x.mul_(1.0)
        return x.flatten(1).sum(1, keepdim=True) * 2

    x = torch.randn(4, 2, 5, dtype=torch.float64)
    before = x.clone()
    g = sl.Gradient(model, batch_size=1).explain(x, target=sl.Output(0)).values
    torch.testing.assert_close(g, torch.full_like(x, 2.0))
    assert torch.equal(x, before)


def test_in_place_model_in_metrics_and_layers():
    """Model-calling metrics and layers() hand the model copies of the caller's input."""
    model = _front("signal", "relu", inplace=True)
    x = make_input("signal", batch=3)
    before = x.clone()
    attr = sl.Gradient(model).explain(x, target=1)
    sl.metrics.deletion_curve(model, x, attr, target=1, steps=4, progress=False)
    sl.metrics.insertion_curve(model, x, attr, target=1, steps=4, progress=False)
    sl.metrics.faithfulness_correlation(
        model,
        x,
        attr,
        target=1,
        n_runs=4,
        subset_size=5,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    sl.metrics.infidelity(
        model, x, attr, target=1, n_perturbations=3, generator=torch.Generator().manual_seed(0)
    )
    sl.layers(model, x)
    assert torch.equal(x, before)


def test_user_baseline_not_written():
    """IG hands the model a copy of a user's baseline tensor too."""
    model = _front("signal", "relu", inplace=True)
    x = make_input("signal")
    baseline = -torch.ones_like(x)
    sl.IntegratedGradients(model, n_steps=3, rule="riemann_right", baseline=baseline).explain(x, target=1)
    assert torch.equal(baseline, -torch.ones_like(x))


# ---------------------------------------------------------------- threads


def _shared_model() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv1d(2, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(8, 3),
            nn.Softmax(1),
        )
        .double()
        .eval()
    )


THREADED = {
    "GradCAM": lambda m: sl.GradCAM(m, layer="2", batch_size=2, final_activation="keep"),
    "GradCAM-default-strip": lambda m: sl.GradCAM(m, batch_size=2, final_activation="strip"),
    "ScoreCAM": lambda m: sl.ScoreCAM(m, layer="2", batch_size=3, progress=False, final_activation="keep"),
    "GuidedGradCAM": lambda m: sl.GuidedGradCAM(m, layer="2", batch_size=2, final_activation="keep"),
    "GuidedBackprop": lambda m: sl.GuidedBackprop(m, batch_size=2),
    "DeconvNet": lambda m: sl.DeconvNet(m, batch_size=2),
    "LRP": lambda m: sl.LRP(m, batch_size=2),
    "IG": lambda m: sl.IntegratedGradients(m, n_steps=4, batch_size=3),
}


@pytest.mark.parametrize("name", list(THREADED))
def test_threads_sharing_one_model(name: str):
    """Four threads explaining different inputs with one model (and one explainer) at once get
    exactly the maps of sequential calls: hooks act only in the thread that installed them."""
    model = _shared_model()
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(6, 2, 48, generator=g, dtype=torch.float64) for _ in range(2)]
    explainer = THREADED[name](model)
    ref = [explainer.explain(x, target=1).values for x in xs]
    errors: list[BaseException] = []
    wrong = [0]
    start = threading.Barrier(4)

    def work(i: int) -> None:
        try:
            start.wait()
            for _ in range(12):
                if not torch.equal(explainer.explain(xs[i], target=1).values, ref[i]):
                    wrong[0] += 1
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:2]
    assert wrong[0] == 0
    assert all(len(m._forward_hooks) == len(m._forward_pre_hooks) == 0 for m in model.modules())


class _Residual(nn.Module):
    """A functional residual sum (LRP shares its relevance by the epsilon rule)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv1d(2, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv1d(4, 4, 3, padding=1))
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(h + self.body(h))


def test_threads_sharing_a_residual_model_under_lrp():
    """LRP's residual rule is switched on per forward pass: one thread's pass never switches it
    off (or on) for another's."""
    model = _Residual().double().eval()
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(4, 2, 32, generator=g, dtype=torch.float64) for _ in range(2)]
    explainer = sl.LRP(model, batch_size=1)
    ref = [explainer.explain(x, target=0).values for x in xs]
    wrong, errors = [0], []

    def work(i: int) -> None:
        try:
            for _ in range(15):
                if not torch.equal(explainer.explain(xs[i], target=0).values, ref[i]):
                    wrong[0] += 1
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and wrong[0] == 0


# ---------------------------------------------------------------- outputs without gradients


class _Model(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv1d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.relu(self.conv(x)).mean(-1))
        if self.kind == "detached":
            return out.detach()
        if self.kind == "int":
            return (out * 100).long()
        if self.kind == "bool":
            return out > 0
        if self.kind == "constant":
            return torch.ones(x.shape[0], 3)
        if self.kind == "complex":
            return torch.complex(out, out)
        return out


GRADIENT_METHODS = {
    "Gradient": lambda m: sl.Gradient(m),
    "IG": lambda m: sl.IntegratedGradients(m, n_steps=3),
    "SmoothGrad": lambda m: sl.SmoothGrad(
        sl.Gradient(m), n_samples=2, generator=torch.Generator().manual_seed(0)
    ),
    "FourierIG": lambda m: sl.FourierIG(m, n_steps=3),
    "GuidedBackprop": lambda m: sl.GuidedBackprop(m),
    "LRP": lambda m: sl.LRP(m),
    "GradCAM": lambda m: sl.GradCAM(m, layer="conv"),
    "LayerCAM": lambda m: sl.LayerCAM(m, layer="relu"),
}


@pytest.mark.parametrize("kind", ["detached", "int", "bool", "constant"])
@pytest.mark.parametrize("method", list(GRADIENT_METHODS))
def test_outputs_without_gradient_are_refused(method: str, kind: str):
    x = torch.randn(2, 2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(sl.ModelOutputError, match="carries none.*RISE, Occlusion"):
            GRADIENT_METHODS[method](_Model(kind).eval()).explain(x, target=1)


@pytest.mark.parametrize("kind", ["detached", "int", "constant"])
def test_forward_only_methods_explain_outputs_without_gradient(kind: str):
    x = torch.randn(2, 2, 16)
    model = _Model(kind).eval()
    gen = torch.Generator().manual_seed(0)
    assert sl.RISE(model, n_masks=8, generator=gen, progress=False).explain(x, target=1).values.shape == (
        2,
        1,
        16,
    )
    assert sl.Occlusion(model, window=4).explain(x, target=1).values.shape[0] == 2
    assert sl.ScoreCAM(model, layer="conv", progress=False).explain(x, target=1).values.shape == (2, 1, 16)


def test_numpy_model_gradient_methods_name_the_cause():
    class Clf:
        def predict_proba(self, a: np.ndarray) -> np.ndarray:
            s = a.reshape(len(a), -1).sum(1, keepdims=True)
            return np.concatenate([1 / (1 + np.exp(s)), 1 / (1 + np.exp(-s))], 1)

    model = sl.NumpyModel(Clf().predict_proba)
    x = torch.randn(2, 1, 8)
    with pytest.raises(sl.ModelOutputError, match="NumpyModel"):
        sl.IntegratedGradients(model, n_steps=2).explain(x, target=1)
    assert sl.Occlusion(model, window=2).explain(x, target=1).values.shape[0] == 2


@pytest.mark.parametrize("method", ["Gradient", "GradCAM"])
def test_complex_outputs_are_refused(method: str):
    x = torch.randn(2, 2, 16)
    with pytest.raises(sl.ModelOutputError, match="complex"):
        GRADIENT_METHODS[method](_Model("complex").eval()).explain(x, target=1)
    with pytest.raises(sl.ModelOutputError, match="complex"):
        sl.RISE(_Model("complex").eval(), n_masks=4, progress=False).explain(x, target=1)


def test_score_cut_from_the_input_is_refused():
    """A score whose graph never reaches the input (a constant plus a parameter, or a frozen
    encoder run under no_grad before a trainable head) is refused rather than returned as an
    all-zero map (autograd cannot tell "independent" from "cut")."""
    bias = nn.Parameter(torch.ones(3))
    model = lambda x: bias.expand(x.shape[0], 3) * 2  # noqa: E731
    with pytest.raises(sl.ModelOutputError, match="carries none"):
        sl.Gradient(model).explain(torch.randn(2, 2, 5), target=1)

    class LinearProbe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten()
            )
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                feats = self.encoder(x)
            return self.head(feats)

    probe = LinearProbe().eval()
    x = torch.randn(2, 2, 64)
    for explainer in (
        sl.Gradient(probe),
        sl.IntegratedGradients(probe, n_steps=4),
        sl.GuidedBackprop(probe),
        sl.FourierIG(probe, n_steps=2),
        sl.GradCAM(probe, layer="encoder.0"),
    ):
        with pytest.raises(sl.ModelOutputError, match="no_grad"):
            explainer.explain(x, target=1)


class _DataWrite(nn.Module):
    """Normalises its input through ``.data`` (no version bump) or clips it under no_grad only
    when an artefact is present: writes the engine cannot see coming."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.net = cnn(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "data":
            x.data.sub_(0.5).mul_(2.0)
        else:
            with torch.no_grad():
                if x.abs().max() > 3:
                    x.clamp_(-3, 3)
        return self.net(x)


@pytest.mark.parametrize("how", ["data", "sometimes"])
@pytest.mark.parametrize(
    "method", ["Gradient", "Saliency", "InputXGradient", "GuidedBackprop", "DeconvNet", "LRP"]
)
def test_unseen_writes_never_reach_the_input(method: str, how: str):
    """Gradient leaves that view the caller's tensor are copies, whatever the model writes and
    however (several chunks: the first one sees no write)."""
    x = make_input("image", batch=6)
    x[2:, :, :2, :2] = 5.0
    before = x.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(sl, method)(_DataWrite(how).eval(), batch_size=2).explain(x, target=1)
    assert torch.equal(x, before)


# ---------------------------------------------------------------- token layers


class _TokenNet(nn.Module):
    """(B, C, T) -> conv stem -> (B, T, D) tokens -> transformer layer -> mean -> classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 8, 3, padding=1)
        self.encoder = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).transpose(1, 2)
        return self.head(self.norm(self.encoder(tokens)).mean(1))


@pytest.mark.parametrize("layer", ["encoder", "norm", "encoder.linear2", "encoder.norm2"])
def test_token_layer_without_reshape_is_refused(layer: str):
    x = torch.randn(2, 2, 8)  # tokens (2, 8, 8): D == T, so shapes alone cannot tell
    with pytest.raises(sl.LayerError, match="reshape"):
        sl.GradCAM(_TokenNet().eval(), layer=layer).explain(x, target=0)


def test_token_layer_with_reshape_is_explained():
    torch.manual_seed(0)
    model = _TokenNet().eval()
    x = torch.randn(2, 2, 12)
    attr = sl.HiResCAM(model, layer="encoder", reshape=lambda a: a.transpose(1, 2), relu=False).explain(
        x, target=0
    )
    assert attr.values.shape == (2, 1, 12)
    # the (B, T, D) map read the right way: position t's value uses token t
    conv_cam = sl.HiResCAM(model, layer="stem", relu=False).explain(x, target=0)
    assert conv_cam.values.shape == attr.values.shape


# ---------------------------------------------------------------- degenerate axes


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EXPLAINERS if "signal" in c.kinds])
def test_zero_length_axis_is_a_shape_error(case: Case):
    model = cnn(1)
    x = torch.zeros(2, 3, 0, dtype=torch.float64)
    with pytest.raises(sl.ShapeError, match="empty"):
        case.make(model).explain(x, target=1)
    with pytest.raises(sl.ShapeError, match="empty"):
        case.make(model).explain(torch.zeros(2, 0, 5, dtype=torch.float64), target=1)


@pytest.mark.parametrize("cls", [sl.GradCAM, sl.ScoreCAM, sl.HiResCAM])
def test_cam_default_layer_on_a_single_time_step_names_it(cls):
    model = cnn(1)
    with pytest.raises(sl.ShapeError, match="single position"):
        cls(model).explain(torch.randn(2, 3, 1, dtype=torch.float64), target=1)


@pytest.mark.parametrize("t", [1, 2])
def test_ica_on_too_short_signals_is_a_shape_error(t: int):
    pytest.importorskip("sklearn")
    model = cnn(1)
    with pytest.raises(sl.ShapeError, match="ICA"):
        sl.ICAIG(model, n_steps=2).explain(torch.randn(2, 3, t, dtype=torch.float64), target=1)


# ---------------------------------------------------------------- interrupts


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EXPLAINERS if "signal" in c.kinds])
def test_keyboard_interrupt_leaves_no_trace(case: Case):
    """Ctrl-C inside the model (its second call) propagates as it is, and leaves no hook, no
    changed parameter or input behind."""
    model = cnn(1)
    calls = [0]

    def interrupt(_m, _i, _o):
        calls[0] += 1
        if calls[0] >= 2:
            raise KeyboardInterrupt

    handle = model[2].register_forward_hook(interrupt)
    try:
        hooks = [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ]
        state = {k: v.clone() for k, v in model.state_dict().items()}
        x = make_input("signal")
        before = x.clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(KeyboardInterrupt):
                case.make(model, batch_size=1).explain(x, target=1)
        assert hooks == [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ]
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
        assert torch.equal(x, before) and not x.requires_grad
    finally:
        handle.remove()


# ---------------------------------------------------------------- domains used directly

DOMAINS = {
    "Time": lambda: sl.Time(),
    "Fourier": lambda: sl.Fourier(fs=100.0),
    "STFT": lambda: sl.STFT(n_fft=8),
    "Wavelet": lambda: sl.Wavelet(),
    "ICA": lambda: sl.ICA(random_state=0),
    "Compose": lambda: sl.Compose(sl.ICA(random_state=0), sl.Fourier()),
}
BAD_SIGNALS = {
    "zero-length": lambda: torch.zeros(2, 3, 0),
    "no-channels": lambda: torch.zeros(2, 0, 8),
    "empty-batch": lambda: torch.zeros(0, 3, 8),
    "nan": lambda: torch.full((2, 3, 16), float("nan")),
    "int": lambda: torch.ones(2, 3, 16, dtype=torch.long),
    "list": lambda: [[1.0, 2.0]],
    "1d": lambda: torch.randn(16),
}


@pytest.mark.parametrize("bad", list(BAD_SIGNALS))
@pytest.mark.parametrize("name", list(DOMAINS))
def test_domains_refuse_bad_signals_with_salience_errors(name: str, bad: str):
    """fit, bind and forward of every built-in domain check their input (raw FFT, reshape and
    attribute errors before)."""
    if name in ("ICA", "Compose"):
        pytest.importorskip("sklearn")
    x = BAD_SIGNALS[bad]()
    good = torch.randn(4, 3, 64)
    with pytest.raises(sl.SalienceError):
        DOMAINS[name]().fit(x)
    fitted = DOMAINS[name]().fit(good)
    with pytest.raises(sl.SalienceError):
        fitted.bind(x)
    with pytest.raises(sl.SalienceError):
        fitted.bind(good).forward(x)


def test_in_place_model_under_inference_mode():
    """Inside torch.inference_mode() (inference tensors keep no version counter) explainers,
    metrics and layers() still run, and the caller's inference tensor is kept."""
    model = _front("signal", "relu", inplace=True)
    attr = sl.Gradient(model).explain(make_input("signal"), target=1)
    with torch.inference_mode():
        x = make_input("signal")
        before = x.clone()
        sl.Gradient(model).explain(x, target=1)
        sl.RISE(model, n_masks=4, progress=False, generator=torch.Generator().manual_seed(0)).explain(
            x, target=1
        )
        sl.metrics.deletion_curve(model, x, attr, target=1, steps=3, progress=False)
        sl.layers(model, x)
        assert torch.equal(x, before)


# ---------------------------------------------------------------- user callables and huge targets


@pytest.mark.parametrize("target", [2**64, 2**63, [0, 2**64], np.array([1, 2**63], dtype=np.uint64)])
def test_targets_beyond_int64_are_target_errors(target):
    with pytest.raises(sl.TargetError, match="int64"):
        sl.Gradient(cnn(1)).explain(make_input("signal"), target=target)


def test_raising_baseline_callable_is_a_parameter_error():
    with pytest.raises(sl.ParameterError, match="baseline callable.*ZeroDivisionError"):
        sl.IntegratedGradients(cnn(1), n_steps=2, baseline=lambda z: 1 / 0).explain(
            make_input("signal"), target=1
        )


# ---------------------------------------------------------------- token outputs passed along


class _EEGTransformer(nn.Module):
    def __init__(self, d: int = 24) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv1d(8, d, 8, stride=8)
        self.enc = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, 2, 48, 0.0, batch_first=True), 2, enable_nested_tensor=False
        )
        self.act = nn.GELU()
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.enc(self.stem(x).transpose(1, 2))).mean(1))


class _Block(nn.Module):
    """A transformer block of one's own (no token module type of its own)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t + self.mlp(self.norm(t))


class _GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(2, 6, batch_first=True)
        self.drop = nn.Dropout(0.0)
        self.blocks = nn.Sequential(_Block(6), _Block(6))
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.gru(x.transpose(1, 2))[0])
        return self.head(self.blocks(h).mean(1))


@pytest.mark.parametrize(
    "model, layer",
    [
        (_EEGTransformer, "act"),
        (_GRUNet, "drop"),
        (_GRUNet, "blocks.1"),
        (_GRUNet, "blocks.0.mlp.1"),
    ],
)
def test_layers_passing_tokens_along_are_refused(model, layer):
    """A GELU, dropout or custom block after a transformer or RNN passes (B, L, D) tokens on:
    refused without reshape, and layers() does not mark it spatial."""
    m = model().eval()
    x = torch.randn(2, 8 if model is _EEGTransformer else 2, 64)
    with pytest.raises(sl.LayerError, match="token"):
        sl.GradCAM(m, layer=layer).explain(x, target=0)
    info = {i.name: i for i in sl.layers(m, x[:1])}
    assert not info[layer].spatial
    assert sl.GradCAM(
        m,
        layer="stem" if model is _EEGTransformer else layer,
        reshape=None if model is _EEGTransformer else (lambda a: a.transpose(1, 2)),
    ).explain(x, 0)


class _SE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // 2), nn.ReLU(), nn.Linear(c // 2, c), nn.Sigmoid())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.fc(h.mean(-1)).unsqueeze(-1)


def test_squeeze_excitation_blocks_keep_the_default_layer_last():
    """A Linear on pooled (B, C) features is not a token sequence: the default CAM layer is the
    last spatial layer, not the first block's."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1),
        nn.ReLU(),
        _SE(8),
        nn.Conv1d(8, 16, 3, padding=1),
        nn.ReLU(),
        _SE(16),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()
    assert sl.GradCAM(model).explain(torch.randn(2, 2, 32), target=0).layer == "5"


@pytest.mark.parametrize("layer", [nn.LayerNorm([4, 16]), nn.Conv1d(4, 4, 1)])
def test_channel_position_layers_are_not_refused(layer):
    """LayerNorm over (C, T) and convolutions work on channels x positions."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        layer,
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    assert sl.GradCAM(model, layer="1").explain(torch.randn(2, 2, 16), target=0).values.shape == (2, 1, 16)


# ---------------------------------------------------------------- models that use worker threads


class _ThreadedEnsemble(nn.Module):
    """Runs its members on a thread pool (as nn.DataParallel does on several GPUs)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.members = nn.ModuleList(cnn(1, seed=s) for s in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            outs = list(pool.map(lambda m: m(x), self.members))
        return torch.stack(outs).mean(0)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: sl.GuidedBackprop(m),
        lambda m: sl.DeconvNet(m),
        lambda m: sl.LRP(m),
        lambda m: sl.GradCAM(m, layer="members.0.2"),
        lambda m: sl.GradCAM(m),
    ],
    ids=["GuidedBackprop", "DeconvNet", "LRP", "GradCAM", "GradCAM-default"],
)
def test_models_running_modules_in_worker_threads_are_named(make):
    """Hooks act only in the calling thread: a model that runs its modules in worker threads
    gets an error that says so, never plain gradients passed off as a modified backprop."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(sl.CompositionError, match="worker threads"):
            make(_ThreadedEnsemble().eval()).explain(make_input("signal"), target=1)


def test_gradient_methods_explain_models_using_worker_threads():
    """Plain autograd crosses threads: gradient methods need no hook and explain such models."""
    model = _ThreadedEnsemble().eval()
    x = make_input("signal")
    want = sum(sl.Gradient(m).explain(x, target=1).values for m in model.members) / 2
    torch.testing.assert_close(sl.Gradient(model).explain(x, target=1).values, want)


# ---------------------------------------------------------------- copies only where needed


def test_models_of_torch_nn_modules_only_get_rows_uncopied():
    """A model made only of torch.nn's own modules without inplace=True cannot write into its
    input, so it is handed rows without copies; anything else may write and gets copies."""
    from salience.engine._rows import reads_only as _reads_only

    plain = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6, 2))
    assert _reads_only(plain)
    assert not _reads_only(nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(inplace=True)))
    assert not _reads_only(nn.Sequential(CentreInPlace(), nn.Conv1d(2, 3, 3)))
    assert not _reads_only(lambda x: x)
    handle = plain[0].register_forward_pre_hook(lambda m, i: None)  # a hook of the user's may write
    try:
        assert not _reads_only(plain)
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "make",
    [
        lambda m: sl.GradCAM(m, layer="1"),
        lambda m: sl.RISE(m, n_masks=4, progress=False),
        lambda m: sl.Gradient(m, batch_size=1),
        lambda m: sl.LRP(m),
        lambda m: sl.ScoreCAM(m, layer="1", progress=False),
    ],
    ids=["GradCAM", "RISE", "Gradient", "LRP", "ScoreCAM"],
)
def test_sequential_with_in_place_first_layer(make):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ReLU(inplace=True),
        nn.Conv1d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    x = torch.randn(3, 2, 16)
    before = x.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make(model).explain(x, target=1)
    assert torch.equal(x, before)


@pytest.mark.parametrize("method", ["Gradient", "IG"])
def test_batchnorm_left_training_inside_an_eval_model_keeps_its_statistics(method: str):
    """A BatchNorm left in training mode inside a model in eval mode updates its running
    statistics on every forward; explaining restores them (and num_batches_tracked)."""
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8, 2))
    model.eval()
    model[1].train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 2, 10)
    expl = sl.Gradient(model) if method == "Gradient" else sl.IntegratedGradients(model, n_steps=4)
    expl.explain(x, 0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model[1].training and not model.training
