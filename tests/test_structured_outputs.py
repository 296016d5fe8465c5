"""Models that return more than one tensor (``output=``) and take more than one input
(``forward_args``/``forward_kwargs``), through every kind of method."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import salience as sl
from salience.engine import shared
from salience.errors import ModelOutputError, ParameterError, TargetError


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
        )
        .double()
        .eval()
    )


class ModelOutputLike(OrderedDict):
    """What Hugging Face returns: an ordered dict whose values are also reachable by index."""

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, int):
            return list(self.values())[k]
        return super().__getitem__(k)


class Structured(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = cnn()
        self.kind = kind
        self.eval()

    def forward(self, x):
        logits = self.net(x)
        hidden = x.mean(1)
        if self.kind == "dict":
            return {"logits": logits, "hidden": hidden}
        if self.kind == "modeloutput":
            return ModelOutputLike(loss=None, logits=logits, hidden_states=(hidden,))
        if self.kind == "nologits":
            return {"scores": logits, "hidden": hidden}
        if self.kind == "tuple":
            return (hidden, logits)
        return (logits,)


X = torch.randn(4, 2, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def reference(method, **kw):
    return method(cnn(), **kw).explain(X, 1).values


@pytest.mark.parametrize("kind", ["dict", "modeloutput", "single"])
@pytest.mark.parametrize(
    "method",
    [
        lambda m, **kw: sl.Gradient(m, **kw),
        lambda m, **kw: sl.IntegratedGradients(m, n_steps=4, **kw),
        lambda m, **kw: sl.GradCAM(m, layer="net.1" if not isinstance(m, nn.Sequential) else "1", **kw),
        lambda m, **kw: sl.RISE(m, n_masks=8, cells=4, generator=torch.Generator().manual_seed(0), **kw),
        lambda m, **kw: sl.GuidedBackprop(m, **kw),
        lambda m, **kw: sl.LRP(m, **kw),
    ],
    ids=["Gradient", "IG", "GradCAM", "RISE", "GBP", "LRP"],
)
def test_default_output_is_the_logits(kind, method):
    got = method(Structured(kind)).explain(X, 1)
    torch.testing.assert_close(got.values, reference(method))
    # the predicted class is taken from the logits too
    pred = method(Structured(kind)).explain(X).target
    torch.testing.assert_close(torch.as_tensor(pred), cnn()(X).argmax(1))


@pytest.mark.parametrize(
    "output", [1, "logits", lambda o: o[1]], ids=["index", "key-on-tuple-fails", "callable"]
)
def test_output_option_selects_the_tensor(output):
    model = Structured("tuple")
    if output == "logits":
        with pytest.raises(ModelOutputError, match=r"output='logits' cannot be taken.*\[0\] \(4, 16\)"):
            sl.Gradient(model, output=output).explain(X, 1)
        return
    got = sl.Gradient(model, output=output).explain(X, 1).values
    torch.testing.assert_close(got, reference(sl.Gradient))


def test_output_key_on_a_mapping():
    got = sl.Saliency(Structured("nologits"), output="scores").explain(X, 1).values
    torch.testing.assert_close(got, reference(sl.Saliency))


def test_ambiguous_outputs_are_refused_with_what_they_hold():
    with pytest.raises(ModelOutputError, match=r"tuple of 2 elements.*\[0\] \(4, 16\), \[1\] \(4, 3\)"):
        sl.Gradient(Structured("tuple")).explain(X, 1)
    with pytest.raises(ModelOutputError, match=r"without 'logits'.*'scores' \(4, 3\), 'hidden' \(4, 16\)"):
        sl.Gradient(Structured("nologits")).explain(X, 1)
    with pytest.raises(ModelOutputError, match=r"output='nope' cannot be taken.*KeyError"):
        sl.Gradient(Structured("dict"), output="nope").explain(X, 1)
    with pytest.raises(ModelOutputError, match="output='boom' raised ZeroDivisionError"):

        def boom(o):
            return 1 / 0

        sl.Gradient(Structured("dict"), output=boom).explain(X, 1)


@pytest.mark.parametrize("bad", [1.5, True, ["logits"]])
def test_output_option_is_validated(bad):
    with pytest.raises(ParameterError, match="'output' parameter of Gradient"):
        sl.Gradient(cnn(), output=bad)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence")  # the failing lambda indexes a tensor by str
def test_raw_score_reads_the_whole_output():
    model = Structured("modeloutput")
    got = sl.Gradient(model).explain(
        X, sl.Score(lambda o: o["logits"][:, 1] - o["hidden_states"][0][:, 0], raw=True)
    )
    net = cnn()
    want = sl.Gradient(lambda x: net(x)[:, 1] - x.mean(1)[:, 0]).explain(X, sl.Score(lambda o: o)).values
    torch.testing.assert_close(got.values, want)
    # without raw=True the callable receives the logits, and the error says how to get the rest
    with pytest.raises(
        TargetError, match=r"ModelOutputLike; the target received the selected tensor.*raw=True"
    ):
        sl.Gradient(model).explain(X, sl.Score(lambda o: o["logits"][:, 1]))
    assert repr(sl.Score(len, raw=True)) == "Score(len, raw=True)"
    with pytest.raises(TargetError, match="'raw' must be True or False"):
        sl.Score(len, raw=1)


def test_raw_score_must_return_finite_scores():
    with pytest.raises(ModelOutputError, match="NaN or inf scores"):
        sl.Gradient(Structured("dict")).explain(X, sl.Score(lambda o: o["logits"][:, 0] / 0.0, raw=True))


def test_final_activation_is_found_inside_a_structured_output():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(cnn(), nn.Softmax(dim=1))
            self.eval()

        def forward(self, x):
            return {"logits": self.net(x), "x": x}

    stripped = sl.GradCAM(Head(), layer="net.0.1", final_activation="strip").explain(X, 1).values
    torch.testing.assert_close(stripped, sl.GradCAM(cnn(), layer="1").explain(X, 1).values)


def test_layers_lists_a_structured_model():
    table = sl.engine.layers(Structured("dict"), X[:1])
    assert [c.name for c in table if c.default] == ["net.1"]


# ---------------------------------------------------------------------------- extra inputs
class Masked(nn.Module):
    """Scores depend on a per-sample mask, a per-sample id, a flag and a shared table."""

    def __init__(self):
        super().__init__()
        self.net = cnn()
        self.eval()

    def forward(self, x, gain, *, mask, subject, table=None, double=False):
        h = x * mask[:, None, :] * gain
        out = self.net(h) + subject[:, None].to(h.dtype)
        if table is not None:
            out = out + table[: out.shape[1]]
        return out * (2.0 if double else 1.0)


MASK = (torch.rand(4, 16, generator=torch.Generator().manual_seed(3)) > 0.3).to(torch.float64)
SUBJECT = torch.tensor([0, 1, 2, 3])
TABLE = torch.arange(4, dtype=torch.float64)  # first axis == batch size, but shared


def one_by_one(method, **kw):
    """Each sample explained alone, with its own mask: the ground truth for chunking."""
    rows = []
    for i in range(4):
        model = Masked()
        extras = {
            "mask": MASK[i : i + 1],
            "subject": SUBJECT[i : i + 1],
            "table": shared(TABLE),
            "double": True,
        }
        rows.append(
            method(model, **kw).explain(X[i : i + 1], 1, forward_args=(2.0,), forward_kwargs=extras).values
        )
    return torch.cat(rows)


@pytest.mark.parametrize("batch_size", [None, 1, 3, 5])
@pytest.mark.parametrize(
    "method",
    [
        lambda m, **kw: sl.Gradient(m, **kw),
        lambda m, **kw: sl.IntegratedGradients(m, n_steps=5, **kw),
        lambda m, **kw: sl.GradCAM(m, layer="net.1", **kw),
        lambda m, **kw: sl.Occlusion(m, window={"t": 4}, **kw),
        lambda m, **kw: sl.InDomain(sl.IntegratedGradients(m, n_steps=3, **kw), sl.Fourier()),
        lambda m, **kw: sl.ClassRelevant(sl.Gradient(m, **kw), classes=[0, 2]),
    ],
    ids=["Gradient", "IG", "GradCAM", "Occlusion", "InDomain", "ClassRelevant"],
)
def test_per_sample_inputs_follow_their_rows_whatever_the_chunking(method, batch_size):
    extras = {"mask": MASK, "subject": SUBJECT, "table": shared(TABLE), "double": True}
    got = method(Masked(), batch_size=batch_size).explain(X, 1, forward_args=(2.0,), forward_kwargs=extras)
    torch.testing.assert_close(got.values, one_by_one(method, batch_size=batch_size))


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_noise_draws_and_masks_are_chunked_with_their_inputs(batch_size):
    """Stochastic methods draw per call, so compare chunkings of one call (same draws)."""
    extras = {"mask": MASK, "subject": SUBJECT}

    def run(bs):
        sg = sl.SmoothGrad(
            sl.Gradient(Masked(), batch_size=bs), n_samples=3, generator=torch.Generator().manual_seed(0)
        )
        rise = sl.RISE(
            Masked(), n_masks=6, cells=4, batch_size=bs, generator=torch.Generator().manual_seed(0)
        )
        return [m.explain(X, 1, forward_args=(2.0,), forward_kwargs=extras).values for m in (sg, rise)]

    for got, want in zip(run(batch_size), run(None), strict=True):
        torch.testing.assert_close(got, want)


def test_per_sample_inputs_in_nested_containers():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cnn()
            self.eval()

        def forward(self, x, extra):
            return self.net(x * extra["masks"][0][:, None, :])

    got = sl.Gradient(Nested()).explain(X, 1, forward_kwargs={"extra": {"masks": [MASK]}}).values
    want = (
        sl.Gradient(Masked())
        .explain(X, 1, forward_args=(1.0,), forward_kwargs={"mask": MASK, "subject": torch.zeros(4)})
        .values
    )
    torch.testing.assert_close(got, want)


def test_extra_inputs_are_validated():
    with pytest.raises(ParameterError, match="'forward_kwargs' parameter of Gradient must be a dict"):
        sl.Gradient(Masked()).explain(X, 1, forward_kwargs=[("mask", MASK)])
    with pytest.raises(ParameterError, match="'forward_args' parameter of Gradient must be a tuple"):
        sl.Gradient(Masked()).explain(X, 1, forward_args=MASK)


def test_the_inputs_are_not_modified():
    mask, subject = MASK.clone(), SUBJECT.clone()
    sl.IntegratedGradients(Masked(), n_steps=3, batch_size=2).explain(
        X, 1, forward_args=(2.0,), forward_kwargs={"mask": mask, "subject": subject}
    )
    assert torch.equal(mask, MASK) and torch.equal(subject, SUBJECT)


def test_layers_with_extra_inputs():
    table = sl.engine.layers(
        Masked(), X, forward_args=(1.0,), forward_kwargs={"mask": MASK, "subject": SUBJECT}
    )
    assert [c.name for c in table if c.default] == ["net.1"]
