"""The score function: a model composed with a bound target, and the one place that calls the
model.

It owns flattening (samples x steps) into rows, chunking to ``batch_size`` rows per model call,
grad mode, target reduction, the error context of failed model calls, and hook lifetimes.
Explainers never see the model: they receive a :class:`ScoreFunction`.

Row convention: a call over ``B`` samples with ``N`` rows each (IG steps, noise draws, masks)
numbers its rows ``r = b * N + n``; row ``r`` belongs to sample ``r // N``.

Index convention: ``model_fn(rows, index)`` receives, for each row, the position in the score
function's own ``input`` of the point the row belongs to (so a domain transform can look up
per-point state such as a residual), while the target receives ``target_map[index]`` (by default
the original sample, ``sample_map[index]``). Derived score functions translate the index to
their parent's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from .._validation import all_finite
from ..errors import (
    ModelCallError,
    ModelOutputError,
    SalienceError,
    ShapeError,
    TargetError,
    current_caller,
)
from ..layout import Layout
from ..targets import Score, Target
from ._derive import Derivations
from ._hooks import LayerCapture
from ._rows import (
    CallState,
    ModelFn,
    PassContext,
    RowSource,
    cat,
    default_batch_size,
    leaf_written,
    model_device,
    state_kept,
    version_of,
)
from .layers import ModuleCall, find_layer, trace

__all__ = ["ScoreFunction", "make_score"]


class ScoreFunction(LayerCapture, Derivations):
    """``x -> one score per row``: a model composed with a bound target, plus the batching rules.

    What a method sees instead of the model. :meth:`Explainer.explain` builds one (through
    :func:`make_score`) and hands it to :meth:`Explainer.attribute`; the method calls
    :meth:`values` (scores of many rows per sample, no gradients), :meth:`gradients` (scores
    and their gradients with respect to the rows, optionally summed with weights),
    :meth:`outputs` (raw model outputs), :meth:`layer_gradients` (a layer's activations and the
    score's gradient there) and :meth:`input_values` (scores at the explained point). Every one
    of them chunks its rows to ``batch_size`` per model call, keeps the model, the input and the
    global RNG unchanged, and raises the library's errors with the caller's name.

    Wrappers derive new score functions with :meth:`compose` (domains), :meth:`repeat` (noise
    draws), :meth:`retarget` (several targets per sample), :meth:`under` (backward rules) and
    :meth:`final_activation`.

    Parameters
    ----------
    model_fn : callable
        ``model_fn(rows, index) -> output`` with rows (R, *S) and, for each row, the position (R,)
        in ``input`` of the point it belongs to (the original sample for a top-level score).
    target : Target
        A bound target (see :meth:`salience.targets.Target.bind`).
    input : Tensor of shape (B, *S)
        The point being explained (``x``, or ``z`` inside a domain).
    layout : Layout
        Axis names of ``input``.
    batch_size : int, optional
        Maximum rows per model call; None picks :func:`default_batch_size`.
    model : object, optional
        The model behind ``model_fn`` (for layer methods, hooks and the error messages).
    caller : str, optional
        The explainer or metric named in error messages; by default the one running
        (:func:`salience.errors.caller`).
    select : callable, optional
        ``select(output) -> Tensor``: the tensor to explain in what ``model_fn`` returns (a
        structured output's logits, see :class:`~salience.engine.Selector`); None when
        ``model_fn`` returns it already. A target with ``raw = True``
        (:class:`~salience.targets.Score` with ``raw=True``) receives the unselected output.

    Attributes
    ----------
    sample_map : Tensor of shape (B,)
        The original sample of each point of ``input`` (``arange(B)`` at the top; derived score
        functions map their points back to it). ``model_fn`` receives positions in ``input``.
    target_map : Tensor of shape (B,)
        The index handed to ``target`` for each point; ``sample_map`` unless retargeted.
    composed : bool
        Whether ``input`` lives in another space than the model's input (a domain): layer
        methods refuse such scores.
    """

    #: whether a model output of the current pass held NaN/inf (on the device; see _pass)
    _non_finite: torch.Tensor | None = None

    def __init__(
        self,
        model_fn: ModelFn,
        target: Target,
        *,
        input: torch.Tensor,
        layout: Layout,
        batch_size: int | None = None,
        model: Any = None,
        caller: str | None = None,
        select: Callable[[Any], Any] | None = None,
    ) -> None:
        self.model_fn = model_fn
        self.select = select
        self.target = target
        self.input = input
        self.layout = layout
        self.caller = current_caller() if caller is None else caller
        self.model = model
        self.composed = False
        self.sample_map = torch.arange(input.shape[0], device=input.device)
        # the index handed to the target for each row: the original sample by default; a
        # per-row index when several targets share one sample (see ``retarget``)
        self.target_map = self.sample_map
        row_numel = int(math.prod(input.shape[1:]))
        self.batch_size = (
            batch_size if batch_size is not None else default_batch_size(row_numel, input.device)
        )
        #: pass contexts entered around every pass of model calls (see ``under``)
        self.contexts: tuple[PassContext, ...] = ()
        # scores at the explained point; shared with score functions made by `under`/`compose`
        self._cache: dict[str, torch.Tensor] = {}
        # set by compose(affine=True): (the parent's model function, the transform); lets
        # weighted gradient sums skip the backward through the transform on every row
        self._affine: tuple[ModelFn, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None
        # what this explain call knows about the model's writes into its input; shared by every
        # score function derived from this one (see _derive)
        self._call = CallState(model)
        self._call.protect(input)

    def record_input_values(self, values: torch.Tensor) -> torch.Tensor:
        """Record the scores at the explained point, shape (B,), unless some are cached already.

        For methods whose model calls include the explained point itself (the last step of an
        IG path, a forward pass made to pick classes), so that :meth:`input_values` costs no
        further model call. Returns the cached scores.
        """
        if "input_values" not in self._cache:
            values = values.detach()
            if values.shape != (self.n_samples,):
                raise ShapeError(
                    f"{self.caller}: scores at the explained point must have shape "
                    f"({self.n_samples},); got {tuple(values.shape)}."
                )
            self._cache["input_values"] = values
        return self._cache["input_values"]

    # ------------------------------------------------------------------ model calls
    def _output(
        self,
        rows: torch.Tensor,
        index: torch.Tensor,
        model_fn: ModelFn | None = None,
        *,
        raw: bool = False,
    ) -> torch.Tensor:
        """The model's output for ``rows`` (the selected tensor, checked), on rows the model may
        overwrite (see :class:`~salience.engine._rows.CallState` for when the model receives a
        copy). ``raw=True`` returns what the model returned, unselected and unchecked."""
        call = self._call
        fn = model_fn or self.model_fn
        try:
            arg = call.argument(rows)
            version = version_of(arg)
            try:
                with state_kept(self.model):
                    out = fn(arg, index)
            except RuntimeError as err:
                if arg is not rows or not leaf_written(err):
                    raise
                # the model writes into its input only on some calls: hand it a copy from now on
                call.writes_input = True
                arg = rows.clone()
                version = version_of(arg)
                with state_kept(self.model):
                    out = fn(arg, index)
            call.observe(arg, version)
        except SalienceError:
            raise
        except Exception as err:
            raise ModelCallError(
                f"{self.caller}: the model failed on a chunk of {rows.shape[0]} rows of shape "
                f"{tuple(rows.shape[1:])}, dtype {rows.dtype}, on {rows.device} (model parameters "
                f"on {model_device(self.model)}): {type(err).__name__}: {err}"
            ) from err
        if raw:
            return out
        if self.select is not None:
            out = self.select(out)
        if not isinstance(out, torch.Tensor):
            raise ModelOutputError(
                f"{self.caller}: the model must return a torch.Tensor; got {type(out).__name__}. "
                "Wrap it so that it returns the tensor to explain."
            )
        if out.is_complex():
            raise ModelOutputError(
                f"{self.caller}: the model returned a complex tensor ({out.dtype}); a score must be "
                "real, and dropping the imaginary part would be silently wrong. Wrap the model so "
                "that it returns a real tensor (e.g. out.abs(), out.real or torch.view_as_real(out))."
            )
        if out.ndim == 0 or out.shape[0] != rows.shape[0]:
            raise ModelOutputError(
                f"{self.caller}: the model returned shape {tuple(out.shape)} for {rows.shape[0]} "
                "input rows; the first axis must be the batch."
            )
        if out.is_floating_point() and out.numel():
            # accumulated on the output's device and checked once per pass (see _pass): a check
            # per call would wait for every model call of a GPU pipeline to finish
            lo, hi = torch.aminmax(out.detach())
            bad = ~(torch.isfinite(lo) & torch.isfinite(hi))
            self._non_finite = bad if self._non_finite is None else self._non_finite | bad
        return out

    def _scores(
        self,
        rows: torch.Tensor,
        index: torch.Tensor,
        target_rows: torch.Tensor,
        model_fn: ModelFn | None = None,
    ) -> torch.Tensor:
        raw = bool(getattr(self.target, "raw", False))
        out = self._output(rows, index, model_fn, raw=raw)
        try:
            s = self.target(out, target_rows)
        except TargetError as err:
            kind = getattr(self.select, "structured", None)
            if kind is None or raw or not isinstance(self.target, Score):
                raise
            raise TargetError(
                f"{err} The model returns a {kind}; the target received the selected tensor "
                f"(output={getattr(self.select, 'output', None)!r}). Score(fn, raw=True) hands fn the "
                f"model's whole {kind} instead."
            ) from err
        if raw and isinstance(s, torch.Tensor) and s.shape == (rows.shape[0],) and not all_finite(s):
            raise ModelOutputError(
                f"{self.caller}: the target {self.target!r} returned NaN or inf scores for a chunk of "
                f"{rows.shape[0]} rows; attributions would be meaningless."
            )
        if s.shape != (rows.shape[0],):
            raise ModelOutputError(
                f"{self.caller}: the target {self.target!r} returned shape {tuple(s.shape)}; "
                f"expected ({rows.shape[0]},)."
            )
        return s

    def _no_gradient(self, what: str, *, layer: bool = False) -> ModelOutputError:
        """The error for a score that carries no gradient (see :meth:`gradients`)."""
        others = "ScoreCAM, RISE, Occlusion or MaskUpdate" if layer else "RISE, Occlusion or MaskUpdate"
        return ModelOutputError(
            f"{self.caller} needs the gradient of the score with respect to {what}, but the "
            "model's output carries none: it is detached, of an integer or bool dtype, constant, "
            f"computed outside autograd (NumPy, a NumpyModel), or cut from {what} (a frozen "
            "encoder run under torch.no_grad(), a .detach() in forward). Forward-only methods "
            f"explain such models: {others}."
        )

    def _chunks(self, n_rows: int) -> Iterator[tuple[int, int]]:
        for start in range(0, n_rows, self.batch_size):
            yield start, min(start + self.batch_size, n_rows)

    def _source(self, source: RowSource, n: int | None) -> tuple[Callable[[int, int], torch.Tensor], int]:
        if isinstance(source, torch.Tensor):
            b = self.n_samples
            if source.ndim < 2 or source.shape[0] != b:
                raise ShapeError(
                    f"{self.caller}: rows must have shape (B={b}, N, ...); got {tuple(source.shape)}."
                )
            flat = source.reshape(b * source.shape[1], *source.shape[2:])
            self._call.protect(flat)  # the caller keeps these rows: the model gets copies
            return (lambda a, z: flat[a:z]), int(source.shape[1])
        if n is None:
            raise TypeError("n (rows per sample) is required when rows are generated lazily")
        return source, int(n)

    def _positions(self, start: int, stop: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For rows ``start..stop``: their points' positions in ``input`` and target indices."""
        local = torch.arange(start, stop, device=self.input.device) // n
        return local, self.target_map[local]

    @contextmanager
    def _pass(self) -> Iterator[None]:
        """Enter the pass contexts (see :meth:`under`) around one pass of model calls."""
        try:
            with ExitStack() as stack:
                for context in self.contexts:
                    stack.enter_context(context(self.model))
                yield
        finally:
            bad, self._non_finite = self._non_finite, None
        if bad is not None and bool(bad):  # one host synchronisation per pass
            raise ModelOutputError(
                f"{self.caller}: the model output contains NaN or inf (in a pass of model calls "
                "over chunks of rows); attributions would be meaningless."
            )

    # ------------------------------------------------------------------ public API
    def values(self, source: RowSource, n: int | None = None) -> torch.Tensor:
        """Scores of many rows per sample, without gradients.

        Parameters
        ----------
        source : Tensor of shape (B, N, *S), or callable ``(start, stop) -> rows``
            The rows, or a generator of rows ``start..stop`` (of ``B * n``) for bounded memory.
        n : int, optional
            Rows per sample, required with a callable source.

        Returns
        -------
        Tensor of shape (B, N)
        """
        make, n = self._source(source, n)
        b = self.n_samples
        out = torch.empty(b * n, dtype=self.input.dtype, device=self.input.device)
        with torch.no_grad(), self._pass():
            for start, stop in self._chunks(b * n):
                local, tmap = self._positions(start, stop, n)
                out[start:stop] = self._scores(make(start, stop), local, tmap).to(out.dtype)
        return out.reshape(b, n)

    def outputs(self, source: RowSource, n: int | None = None) -> torch.Tensor:
        """Raw model outputs of many rows per sample, without gradients and without the target.

        For methods that explain every output at once from the same forward passes (RISE with
        ``all_classes=True``).

        Parameters
        ----------
        source : Tensor of shape (B, N, *S), or callable ``(start, stop) -> rows``
        n : int, optional
            Rows per sample, required with a callable source.

        Returns
        -------
        Tensor of shape (B, N, *O)
        """
        make, n = self._source(source, n)
        b = self.n_samples
        out: torch.Tensor | None = None
        with torch.no_grad(), self._pass():
            for start, stop in self._chunks(b * n):
                local, _ = self._positions(start, stop, n)
                o = self._output(make(start, stop), local)
                if out is None:
                    out = torch.empty((b * n, *o.shape[1:]), dtype=self.input.dtype, device=self.input.device)
                out[start:stop] = o.to(out.dtype)
        if out is None:
            raise ShapeError(f"{self.caller}: outputs() needs at least one row per sample; got n={n}.")
        return out.reshape(b, n, *out.shape[1:])

    def gradients(
        self, source: RowSource, n: int | None = None, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores and their gradients w.r.t. the rows.

        Parameters
        ----------
        source : Tensor of shape (B, N, *S), or callable ``(start, stop) -> rows``
        n : int, optional
            Rows per sample, required with a callable source.
        weights : Tensor of shape (N,), optional
            If given, the gradients are accumulated as ``sum_n weights[n] * grad[b, n]``
            (memory bounded by ``batch_size``, not by N; each row's backward is seeded with its
            weight, so no weighted copy of the gradients is made).
            Inside an affine domain (see :meth:`compose`) the sum is accumulated in the
            parent's space and mapped back once per point with the transform's adjoint: by
            linearity this equals the sum of the per-row gradients, and the transform is never
            differentiated row by row.

        Returns
        -------
        values : Tensor of shape (B, N)
        grads : Tensor of shape (B, N, *S), or (B, *S) with ``weights``
        """
        make, n = self._source(source, n)
        b = self.n_samples
        values = torch.empty(b * n, dtype=self.input.dtype, device=self.input.device)
        grads: torch.Tensor | None = None
        if weights is not None:
            weights = weights.to(device=self.input.device, dtype=self.input.dtype)
        # an affine transform's Jacobian is the same at every row: differentiate the parent
        # model on the transformed rows and apply the adjoint once to the weighted sum
        affine = self._affine if weights is not None else None
        model_fn = affine[0] if affine is not None else None
        with torch.enable_grad(), self._pass():
            for start, stop in self._chunks(b * n):
                local, tmap = self._positions(start, stop, n)
                rows = make(start, stop)
                if affine is not None:
                    with torch.no_grad():
                        rows = affine[1](rows, local)
                # the leaf must not view memory kept beyond the call: a model may still write
                # into it unseen (through .data, or under no_grad only on some inputs)
                kept = self._call.kept(rows)
                rows = (rows.detach().clone() if kept else rows.detach()).requires_grad_(True)
                s = self._scores(rows, local, tmap, model_fn)
                if not s.requires_grad:
                    raise self._no_gradient("its input")
                if weights is not None:
                    # seed the backward with each row's weight: g = w_r * d s_r / d row_r
                    w = weights[torch.arange(start, stop, device=s.device) % n].to(s.dtype)
                    (g,) = torch.autograd.grad(s, rows, grad_outputs=w, allow_unused=True)
                else:
                    (g,) = torch.autograd.grad(s.sum(), rows, allow_unused=True)
                if g is None:  # the graph of the score never reaches the rows
                    raise self._no_gradient("its input")
                values[start:stop] = s.detach().to(values.dtype)
                if grads is None:
                    shape = (b, *g.shape[1:]) if weights is not None else (b * n, *g.shape[1:])
                    grads = torch.zeros(shape, dtype=g.dtype, device=g.device)
                if weights is not None:
                    grads.index_add_(0, local, g)
                else:
                    grads[start:stop] = g
        if grads is None:
            raise ShapeError(f"{self.caller}: gradients() needs at least one row per sample; got n={n}.")
        if affine is not None:
            with torch.enable_grad():
                points = self.input.detach().requires_grad_(True)
                mapped = affine[1](points, torch.arange(b, device=points.device))
                (grads,) = torch.autograd.grad(mapped, points, grad_outputs=grads.to(mapped.dtype))
        if weights is None:
            grads = grads.reshape(b, n, *grads.shape[1:])
        return values.reshape(b, n), grads

    def gradient_at_input(self) -> torch.Tensor:
        """d score / d input at the explained point, shape (B, *S); caches the scores there."""
        values, grads = self.gradients(self.input.unsqueeze(1))
        self.record_input_values(values[:, 0])
        return grads[:, 0]

    def input_values(self) -> torch.Tensor:
        """Scores at the explained point, shape (B,) (cached)."""
        cached = self._cache.get("input_values")
        if cached is not None:
            return cached
        output = self._cache.get("reference_output")
        if output is not None:
            with torch.no_grad():
                return self.record_input_values(self.target(output, self.target_map))
        return self.record_input_values(self.values(self.input.unsqueeze(1))[:, 0])

    def reference_output(self) -> torch.Tensor:
        """The raw model output at the explained point, shape (B, *O) (for binding targets).

        Cached: later calls, and :meth:`input_values`, cost no further model call.
        """
        cached = self._cache.get("reference_output")
        if cached is not None:
            return cached
        outs = []
        b = self.n_samples
        with torch.no_grad(), self._pass():
            for start, stop in self._chunks(b):
                outs.append(
                    self._output(self.input[start:stop], torch.arange(start, stop, device=self.input.device))
                )
        out = cat(outs)
        self._cache["reference_output"] = out
        return out

    def trace(self, n_rows: int | None = None) -> list[ModuleCall]:
        """Run the model once (no gradients) on the first ``n_rows`` inputs and report what
        every submodule returned, in the order their last call finished (see
        :func:`salience.engine.layers.trace`)."""
        return trace(self, n_rows)

    def find_layer(self, layer: str | nn.Module) -> tuple[str, nn.Module]:
        """Resolve a dotted module name or a module of the model to ``(name, module)``.

        Raises LayerError when the model is not an ``nn.Module`` or has no such layer.
        """
        return find_layer(self.model, layer)


from ._make_score import make_score  # noqa: E402  (the factory, beside the class it builds)
