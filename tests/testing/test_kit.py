"""The kit itself (salience.testing): broken explainers and domains fail it with messages naming
the check and the problem; correct custom ones, written against the public API, pass."""

from __future__ import annotations

import pytest
import torch

import salience as sl
from salience.testing import (
    DOMAIN_CHECKS,
    EXPLAINER_CHECKS,
    CheckFailed,
    check_domain,
    check_explainer,
    domain_checks,
    explainer_checks,
    toy_input,
    toy_model,
)

D = torch.float64


# ------------------------------------------------------------------ correct custom explainers
class GradTimesInput(sl.Explainer):
    """Gradient times input, written against the public API only."""

    def attribute(self, x, score):
        return x * score.gradient_at_input()


def make_gxi(model, batch_size=None):
    return GradTimesInput(model, batch_size=batch_size)


class NoisyGradient(sl.Explainer):
    """The gradient at x plus noise drawn from its own generator (one draw per row)."""

    is_stochastic = True

    def __init__(self, model, *, generator=None, batch_size=None):
        super().__init__(model, batch_size=batch_size)
        self.generator = generator

    def attribute(self, x, score):
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        _, grads = score.gradients((x + 0.1 * noise).unsqueeze(1))
        return grads[:, 0]


GXI_CHECKS = list(
    explainer_checks(make_gxi, kinds=("signal", "image", "video"), expected_passes=lambda b: [b])
)


@pytest.mark.parametrize("name, check", GXI_CHECKS, ids=[name for name, _ in GXI_CHECKS])
def test_custom_gradient_times_input_passes_every_check(name, check):
    assert check()


def test_check_names_and_order():
    names = [name for name, _ in GXI_CHECKS]
    assert names[: len(EXPLAINER_CHECKS)] == [f"{c}[signal]" for c in EXPLAINER_CHECKS]
    assert len(names) == 3 * len(EXPLAINER_CHECKS)
    assert repr(GXI_CHECKS[0][1]) == "Check('output[signal]')"


def test_stochastic_explainer_gets_seeded_generators_and_skips_batch_invariance():
    def make(model, batch_size=None, generator=None):
        return NoisyGradient(model, batch_size=batch_size, generator=generator)

    names = [name for name, _ in explainer_checks(make)]
    assert "batch_invariance[signal]" not in names and "determinism[signal]" in names
    check_explainer(make, expected_passes=lambda b: [b, b])  # the noisy rows, then the score at x


def test_stochastic_explainer_without_a_seed_fails_determinism():
    make = lambda model, **kw: NoisyGradient(model, **kw)  # noqa: E731 - generator=None: fresh entropy
    with pytest.raises(
        CheckFailed,
        match=r"^\[determinism\] NoisyGradient on a signal model: expected two explainers made by the factory",
    ):
        check_explainer(make, checks=["determinism"])


def test_built_in_explainers_pass():
    check_explainer(
        lambda m, **kw: sl.IntegratedGradients(m, n_steps=4, **kw), expected_passes=lambda b: [4 * b]
    )
    check_explainer(lambda m, **kw: sl.GradCAM(m, layer="2", **kw), expected_passes=lambda b: [b])


def test_wrong_call_count_is_reported():
    with pytest.raises(CheckFailed) as info:
        check_explainer(make_gxi, expected_passes=lambda b: [2 * b])
    assert info.value.check == "chunk_invariance"
    assert "expected 6 model calls for 3 samples with batch_size=1" in str(info.value)
    assert "found 3 calls" in str(info.value)


def test_factory_must_return_an_explainer():
    with pytest.raises(CheckFailed, match=r"\[factory\].*Explainer; found Sequential"):
        check_explainer(lambda model, **kw: model)


def test_unknown_kinds_and_checks_are_refused():
    with pytest.raises(ValueError, match="kinds"):
        list(explainer_checks(make_gxi, kinds=("audio",)))
    with pytest.raises(ValueError, match="unknown check"):
        list(explainer_checks(make_gxi, checks=["speed"]))
    with pytest.raises(ValueError, match="unknown check"):
        list(domain_checks(sl.Fourier(), checks=["speed"]))


def test_toy_models_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    model = toy_model("image")
    assert torch.equal(state, torch.random.get_rng_state())
    assert not model.training and model(toy_input("image")).shape == (2, 4)
    assert next(model.parameters()).dtype == D


# ------------------------------------------------------------------ broken explainers fail
class LeavesHook(GradTimesInput):
    handles: list = []

    def attribute(self, x, score):
        self.handles.append(self.model[0].register_forward_hook(lambda *args: None))
        return super().attribute(x, score)


class LeavesGlobalHook(GradTimesInput):
    handles: list = []

    def attribute(self, x, score):
        self.handles.append(torch.nn.modules.module.register_module_forward_hook(lambda *args: None))
        return super().attribute(x, score)


class NormalisesOverBatch(GradTimesInput):
    def attribute(self, x, score):
        values = super().attribute(x, score)
        return values / values.abs().amax()  # one scale for the whole batch


class MutatesInput(GradTimesInput):
    def attribute(self, x, score):
        values = super().attribute(x, score)
        x.mul_(1.0)  # the same values, but written in place
        return values


class ClampsInput(GradTimesInput):
    def attribute(self, x, score):
        values = super().attribute(x, score)
        x.clamp_(min=0.0)
        return values


class UsesGlobalRNG(GradTimesInput):
    def attribute(self, x, score):
        jitter = torch.rand(()) * 0  # draws from the global RNG
        return super().attribute(x, score) + jitter


class CallsTheModel(GradTimesInput):
    def attribute(self, x, score):
        out = super().attribute(x, score)
        if score.model.training:  # (called in training mode it would fail training_mode first)
            return out
        baseline = score.model(torch.zeros_like(x[:1]))  # around the score: no extra inputs
        return out + 0 * baseline.sum()


class SetsEval(GradTimesInput):
    def attribute(self, x, score):
        self.model.eval()
        return super().attribute(x, score)


@pytest.mark.parametrize(
    "cls, check, problem",
    [
        (LeavesHook, "no_side_effects", "1 forward_hooks of module '0' (Conv1d) added and left behind"),
        (LeavesGlobalHook, "no_side_effects", "1 global forward_hooks added and left behind"),
        (
            NormalisesOverBatch,
            "batch_invariance",
            "expected explaining the 3 samples one by one to give the maps of the whole batch",
        ),
        (
            MutatesInput,
            "no_side_effects",
            "the input was written in place (its version counter went from 0 to 1)",
        ),
        (UsesGlobalRNG, "no_side_effects", "the global torch RNG state changed"),
        (SetsEval, "training_mode", "module '(root)' went from training to eval mode"),
        (CallsTheModel, "extra_inputs", "to pass the input to every model call; it raised TypeError"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_broken_explainer_fails_with_a_clear_message(cls, check, problem):
    cls.handles = []
    try:
        with pytest.raises(CheckFailed) as info:
            check_explainer(lambda model, **kw: cls(model, **kw))
    finally:
        for handle in getattr(cls, "handles", []):
            handle.remove()
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert info.value.check == check
    assert message.startswith(f"[{check}] {cls.__name__} on a signal model")
    assert problem in message, message


def test_explainer_that_changes_input_values_fails():
    with pytest.raises(CheckFailed) as info:
        check_explainer(lambda m, **kw: ClampsInput(m, **kw), checks=["no_side_effects"])
    assert "[no_side_effects] ClampsInput on a signal model" in str(info.value)
    assert "the input's values changed (largest difference" in str(info.value)
    # with every check, an earlier one already sees the damage: the second call explains other values
    with pytest.raises(CheckFailed, match="batch_invariance"):
        check_explainer(lambda m, **kw: ClampsInput(m, **kw))


def test_explainer_that_swallows_model_errors_fails():
    class Swallows(GradTimesInput):
        def explain(self, x, target=None):
            try:
                return super().explain(x, target)
            except Exception:  # noqa: BLE001 - the bug under test: a silent fallback
                zeros = torch.zeros(x.shape[0], dtype=x.dtype)
                return sl.Attribution(torch.zeros_like(x), zeros, zeros, "Swallows", sl.Layout("b c t"))

    with pytest.raises(
        CheckFailed,
        match=r"^\[no_side_effects_after_error\] Swallows .* on its call 1 to propagate; the explainer returned",
    ):
        check_explainer(lambda m, **kw: Swallows(m, **kw), checks=["no_side_effects_after_error"])


# ------------------------------------------------------------------ domains
class Mix(sl.Domain):
    """A custom linear domain: z = A x over the channels (A invertible), x = A^-1 z."""

    affine = True

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.matrix = torch.randn(3, 3, generator=g, dtype=D) + 3 * torch.eye(3, dtype=D)

    def forward(self, x):
        return torch.einsum("ij,bjt->bit", self.matrix.to(x.dtype), x)

    def inverse(self, z, index=None):
        return torch.einsum("ij,bjt->bit", torch.linalg.inv(self.matrix).to(z.dtype), z)


def test_custom_linear_domain_passes():
    check_domain(Mix())
    assert [name for name, _ in domain_checks(Mix())] == list(DOMAIN_CHECKS)


@pytest.mark.parametrize(
    "make",
    [
        sl.Fourier,
        lambda: sl.Wavelet("haar", levels=2),
        lambda: sl.ICA.from_matrices(torch.eye(3, dtype=D) * 2, torch.zeros(3, dtype=D)),
    ],
)
def test_built_in_domains_pass_on_other_data(make):
    check_domain(make(), toy_input("signal", 4, seed=5) * 3)


def test_domain_on_images_and_a_duck_typed_domain():
    check_domain(sl.Time(), toy_input("image", 2))

    class Scale:  # forward/inverse only: adapted, counted as lossy
        def forward(self, x):
            return 2 * x

        def inverse(self, z):
            return z / 2

    check_domain(Scale())


class WrongGradient(Mix):
    """Right values, wrong gradients: the inverse's backward uses A^T instead of A^-1."""

    def inverse(self, z, index=None):
        right = super().inverse(z)
        wrong = torch.einsum("ij,bjt->bit", self.matrix.T.to(z.dtype), z)
        return right.detach() + wrong - wrong.detach()


class NotExact(Mix):
    def inverse(self, z, index=None):
        return super().inverse(z) * 1.001


class BatchCentred(sl.Domain):
    """Subtracts the batch mean: a sample's coefficients depend on the others."""

    affine = True

    def _bind(self, x):
        self.mean_ = x.mean(0, keepdim=True)

    def forward(self, x):
        return x - self.mean_

    def inverse(self, z, index=None):
        return z + self.mean_


class TouchesInput(Mix):
    def forward(self, x):
        x.mul_(1.0)
        return super().forward(x)


class DropsReduceTotal(Mix):
    def reduce(self, values, layout):
        return values.amax(-1), sl.Layout("b c")


@pytest.mark.parametrize(
    "domain, check, problem",
    [
        (WrongGradient(), "adjoint", "expected <J v, w> = <v, J^T w>"),
        (NotExact(), "round_trip", "expected inverse(forward(x)) == x"),
        (
            BatchCentred(),
            "batch_invariance",
            "expected forward of sample 0 alone to equal its row of forward(x)",
        ),
        (TouchesInput(), "input_unchanged", "the input was written in place"),
        (DropsReduceTotal(), "reduce", "each sample's total kept"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, sl.Domain) else None,
)
def test_broken_domain_fails_with_a_clear_message(domain, check, problem):
    with pytest.raises(CheckFailed) as info:
        check_domain(domain)
    assert info.value.check == check
    assert str(info.value).startswith(f"[{check}] domain {type(domain).__name__}: ")
    assert problem in str(info.value), str(info.value)


@pytest.mark.filterwarnings("ignore:FastICA did not converge")
def test_user_domain_object_is_not_modified():
    d = sl.ICA(mode="dataset")  # unfitted: the kit fits its own copy
    check_domain(d, checks=["round_trip"])
    assert not hasattr(d, "mixing_")
