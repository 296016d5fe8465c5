"""Derived score functions: the same model and explain call, seen another way (a domain, noisy
copies, other targets, backward rules, a stripped final activation)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ..errors import CompositionError, LayerError
from ..layout import Layout
from ..targets import Target
from ._hooks import own_thread
from ._rows import CallState, ModelFn, PassContext
from .layers import FINAL_ACTIVATIONS

if TYPE_CHECKING:
    from .score import ScoreFunction

__all__ = ["Derivations"]


class Derivations:
    """The methods of :class:`~salience.engine.ScoreFunction` that derive new score functions."""

    model_fn: ModelFn
    select: Callable[[Any], Any] | None
    target: Target
    input: torch.Tensor
    layout: Layout
    model: Any
    caller: str
    composed: bool
    sample_map: torch.Tensor
    target_map: torch.Tensor
    contexts: tuple[PassContext, ...]
    _cache: dict[str, torch.Tensor]
    _affine: tuple[ModelFn, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None
    _call: CallState

    @property
    def n_samples(self) -> int:
        """The number of points in ``input``."""
        return int(self.input.shape[0])

    def _derive(self, **changes: Any) -> ScoreFunction:
        """A copy of this score function with ``changes`` applied to its attributes.

        The copy shares this explain call's record of the model's writes (``_call``); its cache
        of scores at the explained point is its own unless ``_cache`` is among the changes, and
        it is not affine unless :meth:`compose` says so.
        """
        derived = cast("ScoreFunction", copy.copy(self))
        derived._cache = {}
        derived._affine = None
        for name, value in changes.items():
            setattr(derived, name, value)
        device = derived.input.device
        derived.sample_map = derived.sample_map.to(device)
        derived.target_map = derived.target_map.to(device)
        self._call.protect(derived.input)  # one explain call: one record of what the model writes
        return derived

    def final_activation(
        self, *, strip: bool, found: Callable[[str, nn.Module], None] | None = None
    ) -> ScoreFunction:
        """The score with a final Softmax/LogSoftmax/Sigmoid module recognised at call time.

        During each model call, forward hooks on the model's activation modules of those types
        record what they return; the one whose output *is* the model's output is its final
        activation (whatever order the modules were registered in, and a Sigmoid used as a
        gate inside the network is not mistaken for it). ``found(name, module)`` is called once,
        at the first call where there is one. With ``strip=True`` the pre-activation tensor
        (that module's input) is returned as the model's output, so the logit is explained;
        nothing in the model's forward pass changes. Raises LayerError with ``strip=True`` when
        no such module produces the output.
        """
        model, caller = self.model, self.caller
        heads = (
            [(n, m) for n, m in model.named_modules() if n and isinstance(m, FINAL_ACTIVATIONS)]
            if isinstance(model, nn.Module)
            else []
        )

        def nothing() -> LayerError:
            return LayerError(
                f"{caller}: final_activation='strip' but no Softmax, LogSoftmax or Sigmoid module "
                "produces the model's output; there is nothing to strip. Explain the model as it "
                "is, or wrap it so that it returns the pre-activation output."
            )

        if not heads:
            if strip:
                raise nothing()
            return cast("ScoreFunction", self)
        inner = self.model_fn
        select = self.select
        reported = [found is None]

        def model_fn(rows: torch.Tensor, index: torch.Tensor) -> Any:
            seen: dict[str, tuple[nn.Module, Any, Any]] = {}

            def record(name: str) -> Callable[..., None]:
                def hook(mod: nn.Module, inp: Any, out: Any) -> None:
                    seen[name] = (mod, inp[0] if inp else None, out)

                return hook

            handles = [m.register_forward_hook(own_thread(record(n))) for n, m in heads]
            try:
                out = inner(rows, index)
            finally:
                for h in handles:
                    h.remove()
            if select is not None:  # the tensor explained inside a structured output
                out = select(out)
            hit = next(((n, m, i) for n, (m, i, o) in seen.items() if o is out), None)
            if hit is None:
                if strip:
                    raise nothing()
                return out
            if not reported[0]:
                reported[0] = True
                found(hit[0], hit[1])  # type: ignore[misc]
            return hit[2] if strip else out

        # the derived model function returns the selected tensor already
        return self._derive(model_fn=model_fn, select=None)

    def compose(
        self,
        transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        input: torch.Tensor,
        layout: Layout,
        *,
        affine: bool = False,
    ) -> ScoreFunction:
        """The score of ``transform(z_rows, index)``: explain in another space (a domain).

        ``input`` (B', *Z) has one point per point of this score's input (same order).
        ``transform`` receives rows (R, *Z) and, for each row, the position (R,) of its point in
        ``input`` (the original sample for a top-level score, the noisy copy inside
        :meth:`repeat`), so per-point state (a domain's residual) can be looked up.

        The transform must map ``input`` to this score's input (``transform(input, arange(B))``
        equals it, up to rounding): the derived score function shares the cached scores at the
        explained point.

        ``affine=True`` declares that ``transform(rows, index)`` is affine in ``rows`` for each
        ``index`` (its Jacobian does not depend on the rows): weighted gradient sums
        (:meth:`gradients` with ``weights``, Integrated Gradients) are then accumulated before
        the transform and mapped back once per point.
        """
        inner = self.model_fn

        def model_fn(rows: torch.Tensor, index: torch.Tensor) -> Any:
            return inner(transform(rows, index), index)

        # g(z) == f(x) by contract: the scores (and output) at the explained point are shared
        derived = self._derive(
            model_fn=model_fn, input=input, layout=layout, composed=True, _cache=self._cache
        )
        if affine:
            derived._affine = (inner, transform)
        return derived

    def under(self, context: PassContext) -> ScoreFunction:
        """The same score, with every pass of model calls run inside ``context(model)``.

        ``context`` receives the model and returns a context manager, entered once around each
        pass (all chunks of :meth:`values`, :meth:`gradients`, :meth:`layer_gradients`: forward
        *and* backward), and exited in every case, also when a model call raises. Modified
        backpropagation (Guided Backprop, DeconvNet, LRP) uses it to install module hooks that
        change backward rules for the duration of a pass only. The context must not change the
        forward values: the derived score function shares the cached scores at the input.
        """
        return self._derive(contexts=(*self.contexts, context), _cache=self._cache)

    def repeat(self, input: torch.Tensor, k: int) -> ScoreFunction:
        """A score function over ``input`` of shape (B*k, *S) whose point ``i`` derives from point ``i // k``."""
        inner = self.model_fn

        def model_fn(rows: torch.Tensor, index: torch.Tensor) -> Any:
            return inner(rows, torch.div(index, k, rounding_mode="floor"))

        return self._derive(
            model_fn=model_fn,
            input=input,
            sample_map=self.sample_map.repeat_interleave(k),
            target_map=self.target_map.repeat_interleave(k),
        )

    def retarget(
        self,
        target: Target,
        input: torch.Tensor,
        sample_map: torch.Tensor,
        parents: torch.Tensor | None = None,
        *,
        target_map: torch.Tensor | None = None,
    ) -> ScoreFunction:
        """Same model, another (bound) target over ``input`` with an explicit sample map.

        Parameters
        ----------
        target : Target
            A bound target.
        input : Tensor of shape (R, *S)
        sample_map : Tensor of shape (R,)
            The original sample of each new point.
        parents : Tensor of shape (R,), optional
            For each new point, the position in this score's ``input`` of the point it derives
            from (the index this score's model function receives). Defaults to ``sample_map``;
            required when this score is composed (inside a domain) and its points are not one
            per original sample.
        target_map : Tensor of shape (R,), optional
            The index handed to ``target`` for each point; defaults to ``sample_map``. Pass
            ``arange(R)`` with a target bound over ``R`` points to give every point its own
            target (several classes explained for one sample in one batched run, as
            ClassRelevant does).
        """
        if parents is None:
            n = self.n_samples
            identity = self.sample_map.numel() == n and bool(
                torch.equal(self.sample_map, torch.arange(n, device=self.sample_map.device))
            )
            if self.composed and not identity:
                raise CompositionError(
                    f"{self.caller}: retarget() on a composed score whose points are not one per "
                    "sample needs parents= (the parent point of each new point)."
                )
            parents = sample_map
        parent_rows = parents.to(self.input.device)
        inner = self.model_fn

        def model_fn(r: torch.Tensor, index: torch.Tensor) -> Any:
            return inner(r, parent_rows[index])

        return self._derive(
            model_fn=model_fn,
            target=target,
            input=input,
            sample_map=sample_map,
            target_map=sample_map if target_map is None else target_map,
        )
