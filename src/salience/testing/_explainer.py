"""The explainer checks: the contract every salience explainer, built-in or your own, satisfies."""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .. import Attribution, Class, Explainer, SalienceError
from ._common import (
    CheckFailed,
    difference,
    model_changes,
    model_state,
    rng_changed,
    rng_state,
    same,
    tensor_changes,
)
from ._models import CONV_LAYER, toy_input, toy_model, training_model

__all__ = ["EXPLAINER_CHECKS", "ModelFailure", "Setup"]

Factory = Callable[..., Explainer]
Passes = Callable[[int], Sequence[int]]


@dataclass
class Setup:
    make: Factory
    stochastic: bool | None
    expected_passes: Passes | None
    device: torch.device
    rtol: float
    atol: float
    seed: int

    def __post_init__(self) -> None:
        try:
            self.takes_generator = "generator" in inspect.signature(self.make).parameters
        except (TypeError, ValueError):  # builtins and some callables have no signature
            self.takes_generator = False
        self._names: dict[str, str] = {}

    # -------------------------------------------------------------------- building and running
    def build(self, model: Any, batch_size: int | None = None) -> Explainer:
        kwargs: dict[str, Any] = {}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        if self.takes_generator:
            kwargs["generator"] = torch.Generator(self.device).manual_seed(self.seed)
        explainer = self.make(model, **kwargs)
        if not isinstance(explainer, Explainer):
            raise CheckFailed(
                "factory",
                getattr(self.make, "__name__", repr(self.make)),
                f"expected make(model) to return a salience Explainer; found {type(explainer).__name__}.",
            )
        return explainer

    def model(self, kind: str) -> nn.Module:
        return toy_model(kind, device=self.device)

    def input(self, kind: str, batch: int = 2) -> torch.Tensor:
        return toy_input(kind, batch, device=self.device)

    def subject(self, kind: str, model: Any = None) -> str:
        """``"<explainer name> on a <kind> model"`` (the name read once per kind)."""
        if kind not in self._names:
            self._names[kind] = self.build(self.model(kind) if model is None else model).name
        return f"{self._names[kind]} on a {kind} model"

    def is_stochastic(self, kind: str) -> bool:
        if self.stochastic is not None:
            return bool(self.stochastic)
        return bool(self.build(self.model(kind)).is_stochastic)

    def explain(
        self, model: Any, x: torch.Tensor, target: Any = 1, batch_size: int | None = None
    ) -> Attribution:
        return self.build(model, batch_size).explain(x, target=target)


def _fail(check: str, subject: str, problem: str) -> CheckFailed:
    return CheckFailed(check, subject, problem)


# ------------------------------------------------------------------------------------- the checks
def check_output(s: Setup, kind: str) -> None:
    model, x = s.model(kind), s.input(kind)
    subject = s.subject(kind, model)
    attr = s.explain(model, x)
    name = "output"
    if not isinstance(attr, Attribution):
        raise _fail(
            name, subject, f"expected explain() to return an Attribution; found {type(attr).__name__}."
        )
    v = attr.values
    if v.dtype != x.dtype or v.device != x.device:
        raise _fail(
            name,
            subject,
            f"expected values of the input's dtype and device ({x.dtype}, {x.device}); "
            f"found {v.dtype} on {v.device}.",
        )
    if v.ndim == 0 or v.shape[0] != x.shape[0]:
        raise _fail(
            name,
            subject,
            f"expected one map per sample (batch axis {x.shape[0]}); found shape {tuple(v.shape)}.",
        )
    if attr.domain is None and attr.info.get("space") == "layer":
        # a layer attribution (LayerIntegratedGradients, ...): a map of the layer's output
        layer_shape = tuple(attr.info.get("layer_shape", ()))
        if tuple(v.shape[1:]) != layer_shape:
            raise _fail(
                name,
                subject,
                f"expected a map of the layer's output shape (B, *{layer_shape}); found {tuple(v.shape)}.",
            )
    elif attr.domain is None:
        try:
            torch.broadcast_shapes(v.shape, x.shape)
            ok = v.ndim == x.ndim
        except RuntimeError:
            ok = False
        if not ok:
            raise _fail(
                name,
                subject,
                f"expected values broadcastable to the input's shape {tuple(x.shape)} "
                f"(same number of axes); found {tuple(v.shape)}.",
            )
    if not torch.isfinite(v).all():
        raise _fail(
            name, subject, f"expected finite values; found {int((~torch.isfinite(v)).sum())} NaN/inf."
        )
    if not isinstance(attr.scores, torch.Tensor) or attr.scores.shape != (x.shape[0],):
        got = (
            tuple(attr.scores.shape) if isinstance(attr.scores, torch.Tensor) else type(attr.scores).__name__
        )
        raise _fail(name, subject, f"expected scores of shape ({x.shape[0]},); found {got}.")
    if not attr.method:
        raise _fail(name, subject, "expected the method's name in Attribution.method; found it empty.")


def check_batch_invariance(s: Setup, kind: str) -> None:
    model, x = s.model(kind), s.input(kind, batch=3)
    subject = s.subject(kind, model)
    whole = s.explain(model, x, target=torch.tensor([0, 1, 2], device=s.device)).values
    parts = torch.cat([s.explain(model, x[i : i + 1], target=i).values for i in range(3)])
    if not same(whole, parts, s.rtol, s.atol):
        raise _fail(
            "batch_invariance",
            subject,
            "expected explaining the 3 samples one by one to give the "
            f"maps of the whole batch (a sample's map must not depend on the others); found "
            f"{difference(whole, parts)}.",
        )


class _Counter:
    def __init__(self) -> None:
        self.rows: list[int] = []

    def __call__(self, _module: nn.Module, args: tuple) -> None:
        first = args[0] if args else None
        self.rows.append(int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else -1)


def check_chunk_invariance(s: Setup, kind: str) -> None:
    x = s.input(kind, batch=3)
    name = "chunk_invariance"
    ref, subject = None, ""
    for bs in (1, 2, None):
        model = s.model(kind)
        subject = subject or s.subject(kind, model)
        counter = _Counter()
        handle = model.register_forward_pre_hook(counter)
        try:
            out = s.explain(model, x, batch_size=bs).values
        finally:
            handle.remove()
        if ref is None:
            ref = out
        elif not same(out, ref, s.rtol, s.atol):
            raise _fail(
                name,
                subject,
                f"expected batch_size={bs} to give the values of batch_size=1; found {difference(out, ref)}.",
            )
        if bs is None:
            continue
        if max(counter.rows, default=0) > bs:
            raise _fail(
                name,
                subject,
                f"expected at most batch_size={bs} rows per model call; found calls "
                f"with {counter.rows} rows.",
            )
        if s.expected_passes is not None:
            passes = list(s.expected_passes(3))
            expected = sum(math.ceil(r / bs) for r in passes)
            if len(counter.rows) != expected:
                raise _fail(
                    name,
                    subject,
                    f"expected {expected} model calls for 3 samples with batch_size="
                    f"{bs} (passes of {passes} rows); found {len(counter.rows)} calls with "
                    f"{counter.rows} rows.",
                )


class _WithGain(nn.Module):
    """The kit's model with an extra per-sample input: ``forward(x, gain=g) = model(x * g)``.

    The model's children are registered under their own names (``"2"`` names the same layer as
    in the model), and ``.model`` is the model itself, as for the call-counting wrapper."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_net", model)
        for name, child in model.named_children():
            self.add_module(name, child)

    @property
    def model(self) -> nn.Module:
        return cast(nn.Module, self.__dict__["_net"])

    def __getitem__(self, index: int) -> Any:  # what an explainer indexing a Sequential reaches
        return self.model[index]  # type: ignore[index]

    def forward(self, x: torch.Tensor, *, gain: torch.Tensor) -> Any:
        return self.model(x * gain.reshape(-1, *([1] * (x.ndim - 1))))


def check_extra_inputs(s: Setup, kind: str) -> None:
    """A per-sample forward input (``forward_kwargs``) reaches every model call with the rows of
    its sample: the values do not depend on ``batch_size`` and, for deterministic methods, equal
    each sample explained alone."""
    x = s.input(kind, batch=3)
    gain = torch.tensor([0.5, 1.0, 2.0], dtype=x.dtype, device=x.device)
    name = "extra_inputs"
    model = _WithGain(s.model(kind)).to(x.device).eval()
    subject = s.subject(kind, model)
    try:
        ref = s.build(model).explain(x, 1, forward_kwargs={"gain": gain}).values
    except Exception as err:
        raise _fail(
            name,
            subject,
            "expected explain(x, 1, forward_kwargs={'gain': per-sample tensor}) to pass the input to "
            f"every model call; it raised {type(err).__name__}: {err} (does attribute() call the "
            "model itself instead of the score function?).",
        ) from err
    for bs in (1, 2):
        out = s.build(model, bs).explain(x, 1, forward_kwargs={"gain": gain}).values
        if not same(out, ref, s.rtol, s.atol):
            raise _fail(
                name,
                subject,
                f"expected batch_size={bs} with a per-sample forward input to give the values of "
                f"batch_size=None; found {difference(out, ref)}.",
            )
    if s.is_stochastic(kind):
        return
    for i in range(3):
        alone = s.build(model).explain(x[i : i + 1], 1, forward_kwargs={"gain": gain[i : i + 1]}).values
        if not same(alone, ref[i : i + 1], s.rtol, s.atol):
            raise _fail(
                name,
                subject,
                f"expected sample {i} explained alone (with its own forward input) to give its "
                f"values in the batch; found {difference(alone, ref[i : i + 1])}.",
            )


def check_determinism(s: Setup, kind: str) -> None:
    model, x = s.model(kind), s.input(kind)
    subject = s.subject(kind, model)
    explainer = s.build(model)
    a = explainer.explain(x, target=1).values
    if explainer.is_stochastic:  # a second explainer from the factory: the same seed
        b = s.explain(model, x).values
        how = (
            "two calls with the same generator seed"
            if s.takes_generator
            else "two explainers made by the factory"
        )
    else:  # one that draws nothing random keeps no state between calls
        b = explainer.explain(x, target=1).values
        how = "one explainer called twice"
    if not same(a, b, 0.0, 0.0):
        raise _fail(
            "determinism", subject, f"expected {how} to give identical values; found {difference(a, b)}."
        )


def _side_effects(
    s: Setup, check: str, subject: str, model: nn.Module, x: torch.Tensor, run: Callable[[], None]
) -> None:
    before, rng = model_state(model), rng_state(s.device)
    copy, version = x.detach().clone(), x._version
    run()
    found = model_changes(before, model_state(model))
    found += tensor_changes(x, copy, version)
    if rng_changed(rng, rng_state(s.device)):
        found.append("the global torch RNG state changed (random methods must draw from their own generator)")
    if found:
        raise _fail(
            check,
            subject,
            "expected the model, the input and the global RNG to be left as they "
            "were; found: " + "; ".join(found) + ".",
        )


def check_no_side_effects(s: Setup, kind: str) -> None:
    model, x = s.model(kind), s.input(kind)
    first = next(model.parameters())
    first.grad = torch.ones_like(first)  # a stale gradient of the user's: must stay as it is
    subject = s.subject(kind, model)

    def run() -> None:
        with torch.no_grad():  # gradient methods must work inside no_grad too
            s.explain(model, x)

    _side_effects(s, "no_side_effects", subject, model, x, run)


class ModelFailure(RuntimeError):
    """The error the kit's model raises on purpose in the ``no_side_effects_after_error`` check."""


def _caused_by(error: BaseException, kind: type) -> bool:
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _after_error(s: Setup, kind: str, n: int) -> None:
    name = "no_side_effects_after_error"
    model, x = s.model(kind), s.input(kind)
    subject = s.subject(kind, model)
    calls = [0]

    def explode(_m: nn.Module, _i: Any, _o: Any) -> None:
        calls[0] += 1
        if calls[0] >= n:
            raise ModelFailure(f"the model failed on its call {calls[0]}")

    handle = model.get_submodule(CONV_LAYER).register_forward_hook(
        explode
    )  # the user's own hook: must be kept
    first = next(model.parameters())
    first.grad = torch.ones_like(first)

    def run() -> None:
        try:
            s.explain(model, x, batch_size=1)
        except Exception as error:  # noqa: BLE001 - checked below
            if not _caused_by(error, ModelFailure):
                raise _fail(
                    name,
                    subject,
                    f"expected the model's error on its call {n} to propagate "
                    f"(itself or as the cause); found {type(error).__name__}: {error}",
                ) from error
        else:
            raise _fail(
                name,
                subject,
                f"expected the model's error on its call {n} to propagate; the explainer returned a result.",
            )

    try:
        _side_effects(s, name, f"{subject}, the model raising on its call {n}", model, x, run)
    finally:
        handle.remove()


def check_no_side_effects_after_error(s: Setup, kind: str) -> None:
    for n in (1, 2):
        _after_error(s, kind, n)


def check_training_mode(s: Setup, kind: str) -> None:
    name = "training_mode"
    model, x = training_model(kind, device=s.device), s.input(kind, batch=3)
    subject = s.subject(kind, model) + " in training mode"
    messages: list[str] = []

    def run() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # a method may refuse a training-mode model; the state must still be kept
            with contextlib.suppress(SalienceError):
                s.explain(model, x)
        messages.extend(str(w.message) for w in caught)

    _side_effects(s, name, subject, model, x, run)
    if not any("training mode" in m for m in messages):
        raise _fail(
            name,
            subject,
            "expected a TrainingModeWarning about the model's training mode; found "
            f"{len(messages)} warning(s){': ' + messages[0] if messages else ''}.",
        )


def check_target_forms(s: Setup, kind: str) -> None:
    model, x = s.model(kind), s.input(kind)
    subject = s.subject(kind, model)
    attr = s.explain(model, x, target=3)
    ref = attr.values
    recorded = torch.as_tensor(attr.target).tolist() if attr.target is not None else None
    if recorded != [3, 3]:
        raise _fail(
            "target_forms", subject, f"expected Attribution.target [3, 3] for target=3; found {recorded}."
        )
    forms: list[tuple[str, Any]] = [
        ("a tensor of one class per sample", torch.tensor([3, 3], device=s.device)),
        ("a list of one class per sample", [3, 3]),
        ("Class(3)", Class(3)),
        ("a callable (output -> output[:, 3])", lambda out: out[:, 3]),
    ]
    for what, target in forms:
        try:
            values = s.explain(model, x, target=target).values
        except SalienceError:
            if callable(target) and not isinstance(target, Class):
                continue  # a method may refuse a score it cannot read classes from; never a wrong map
            raise
        if not same(values, ref, 0.0, 0.0):
            raise _fail(
                "target_forms",
                subject,
                f"expected target={what} to give the maps of target=3; found {difference(values, ref)}.",
            )


def check_target_recorded(s: Setup, kind: str) -> None:
    name = "target_recorded"
    model, x = s.model(kind), s.input(kind)
    subject = s.subject(kind, model)
    with torch.no_grad():
        out = model(x)
    pred = out.argmax(1)
    attr = s.explain(model, x, target=None)
    got = torch.as_tensor(attr.target, device=pred.device) if attr.target is not None else None
    if got is None or got.shape != pred.shape or not torch.equal(got, pred):
        found = None if got is None else got.tolist()
        raise _fail(
            name,
            subject,
            f"expected Attribution.target {pred.tolist()} (the predicted classes) for "
            f"target=None; found {found}.",
        )
    scores = out.gather(1, pred[:, None])[:, 0]
    if not same(attr.scores.detach(), scores, 1e-7, 1e-9):
        raise _fail(
            name,
            subject,
            f"expected Attribution.scores to be the model's outputs for the predicted classes at x "
            f"({scores.tolist()}); found {attr.scores.tolist()}.",
        )


#: the explainer checks in the order they run: name -> function(setup, kind)
EXPLAINER_CHECKS: dict[str, Callable[[Setup, str], None]] = {
    "output": check_output,
    "batch_invariance": check_batch_invariance,
    "chunk_invariance": check_chunk_invariance,
    "determinism": check_determinism,
    "no_side_effects": check_no_side_effects,
    "no_side_effects_after_error": check_no_side_effects_after_error,
    "training_mode": check_training_mode,
    "target_forms": check_target_forms,
    "target_recorded": check_target_recorded,
    "extra_inputs": check_extra_inputs,
}
