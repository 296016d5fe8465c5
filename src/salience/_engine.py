"""The engine: the one place that calls the model.

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
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Union

import torch
from torch import nn

from .errors import (
    CompositionError,
    LayerError,
    ModelCallError,
    ModelOutputError,
    ParameterError,
    SalienceError,
    SalienceWarning,
    ShapeError,
    warn,
)
from ._validation import all_finite
from .layout import Layout
from .targets import Target, TargetLike, as_target

__all__ = [
    "ScoreFunction", "ModuleCall", "default_batch_size", "find_layer", "make_score", "own_thread",
    "worker_thread_error",
]

# rows x elements per row targeted by the automatic batch size: on a CPU about 2 MiB of float32
# input per call (cache-sized chunks ran fastest in benchmarks/bench_core.py: for a small 2-D CNN
# on 3x64x64 images 32-64 rows ran about 1.9x faster than 256), elsewhere about 16 MiB
_AUTO_ELEMENTS_CPU = 2**19
_AUTO_ELEMENTS = 2**22
_AUTO_MAX_ROWS = 256

ModelFn = Callable[[torch.Tensor, torch.Tensor], Any]
#: modules that, as a model's last operation, turn logits into (log-)probabilities
FINAL_ACTIVATIONS = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid, nn.Softmax2d)
#: ``context(model) -> context manager`` entered around each pass (forward and backward)
PassContext = Callable[[Any], ContextManager[Any]]
RowSource = Union[torch.Tensor, Callable[[int, int], torch.Tensor]]


def default_batch_size(row_numel: int, device: torch.device | str | None = None) -> int:
    """Rows per model call when ``batch_size=None``.

    At most 256 rows and about 512K input elements per call on a CPU (``device`` None or
    ``"cpu"``), 4M elsewhere. Memory stays bounded whatever the number of steps, samples or masks;
    on a CPU, chunks whose activations fit the caches run fastest (larger batches are slower per
    row, see ``benchmarks/RESULTS.md``).
    """
    on_cpu = device is None or torch.device(device).type == "cpu"
    budget = _AUTO_ELEMENTS_CPU if on_cpu else _AUTO_ELEMENTS
    return int(max(1, min(_AUTO_MAX_ROWS, budget // max(1, row_numel))))


def own_thread(hook: Callable[..., Any], tally: list[int] | None = None) -> Callable[..., Any]:
    """``hook`` made to act only in the thread that wraps it (the one running the call).

    Hooks on a module are seen by every thread that calls the module. Each salience call
    registers its own hooks for its own duration; wrapped this way, they ignore the forward
    passes that other threads run on the same model at the same time, so concurrent calls on one
    model neither read nor change each other's activations, gradients or backward rules.

    ``tally``, a list ``[here, elsewhere]``, counts the calls in this thread and the ignored
    calls from other threads: a module that ran only elsewhere during a call belongs to a model
    that runs its modules in worker threads (see :func:`worker_thread_error`).
    """
    ident = threading.get_ident()

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != ident:
            if tally is not None:
                tally[1] += 1
            return None
        if tally is not None:
            tally[0] += 1
        return hook(*args, **kwargs)

    return wrapped


def worker_thread_error(owner: str, names: list[str]) -> CompositionError:
    """The error for modules that ran only in threads other than the caller's."""
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return CompositionError(
        f"{owner}: the module(s) {shown} ran only in other threads during the call: the model runs "
        "its modules in worker threads (nn.DataParallel on several GPUs, an ensemble on a thread "
        "pool). The hooks this method needs act only in the calling thread (so that threads "
        "sharing a model stay apart). Explain the wrapped network itself (model.module), or run "
        "the members in the calling thread."
    )


def _storage(t: torch.Tensor) -> int:
    """Address of the memory a tensor views (0 for tensors without storage)."""
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
        return 0


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate chunk results without copying when there is a single chunk."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _model_device(model: Any) -> str:
    """Where the model's parameters and buffers live, e.g. "cpu (torch.float32)", or every
    device/dtype pair when they are mixed."""
    if isinstance(model, nn.Module):
        seen = dict.fromkeys(f"{t.device} ({t.dtype})" for t in (*model.parameters(), *model.buffers()))
        if seen:
            return " and ".join(seen) if len(seen) <= 3 else ", ".join(list(seen)[:3]) + ", ..."
    return "unknown"


@contextmanager
def _state_kept(model: Any) -> Iterator[None]:
    """Around one model call: a module in training mode gets its buffers (BatchNorm running
    statistics, ``num_batches_tracked``) and the global RNGs its dropout draws from restored
    afterwards, so explaining never changes the model or the caller's random streams. Nothing
    happens for modules in eval mode or plain callables."""
    if not (isinstance(model, nn.Module) and model.training):
        yield
        return
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        # through .data: the backward of this call is still to come, and autograd saved the
        # running statistics with the graph (their values unused in training mode); a tracked
        # in-place write would invalidate it
        for buffer, value in saved:
            buffer.data.copy_(value)


def find_layer(model: nn.Module, layer: Union[str, nn.Module]) -> tuple[str, nn.Module]:
    """Resolve a dotted module name or a module to ``(name, module)``."""
    if not isinstance(model, nn.Module):
        raise LayerError(f"Layer methods need an nn.Module model. Got {type(model).__name__}.")
    if isinstance(layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return name, mod
        raise LayerError(f"The module {type(layer).__name__} passed as layer is not part of the model.")
    if isinstance(layer, str):
        mods = dict(model.named_modules())
        if layer in mods:
            return layer, mods[layer]
        close = [n for n in mods if n and (layer in n or n.endswith(layer))][:5]
        hint = f" Did you mean one of {close}?" if close else ""
        raise LayerError(
            f"Layer {layer!r} not found in {type(model).__name__}.{hint} "
            "List the candidates with salience.layers(model, x)."
        )
    raise LayerError(f"layer must be a dotted module name or an nn.Module. Got {type(layer).__name__}.")


def _reads_only(model: Any) -> bool:
    """Whether ``model`` provably never writes into its input: an ``nn.Module`` made only of
    torch.nn's own modules (whose forward code is known), none with ``inplace=True``, and no
    forward hooks of the caller's (which could write). Custom modules are not inspected: their
    forward may write (``x -= mean``, ``x.data.clamp_()``)."""
    if not isinstance(model, nn.Module):
        return False
    from torch.nn.modules import module as _module

    if _module._global_forward_pre_hooks or _module._global_forward_hooks:
        return False
    for m in model.modules():
        if (
            not type(m).__module__.startswith("torch.nn.modules.")
            or getattr(m, "inplace", False)
            or m._forward_pre_hooks
            or m._forward_hooks
        ):
            return False
    return True


class _CallState:
    """What one explain call knows about its model's writes into the rows it is given.

    A model may overwrite its input in place (``nn.ReLU(inplace=True)`` as its first layer,
    ``x.clamp_(...)``, normalisation written as ``x -= mean``, ``x.data.sub_(...)``). Every model
    call must therefore receive rows the model may overwrite without harm:

    * a model made only of torch.nn's own modules without ``inplace=True`` cannot write into
      its input (:func:`_reads_only`): it gets every row as it is, at no cost;
    * for any other model, rows that view memory the caller or the explainer keeps (the
      explained input, a user's baseline, the inputs of derived score functions, tensor row
      sources) are copied before the call; rows made for the call (masked copies, path points)
      are handed over as they are;
    * gradient rows are autograd leaves, which the model may not write into: the first gradient
      call hands the model a copy and watches its version counter; when the model did not
      write into it, later calls hand over the leaf itself (no copy); a model found writing in
      place keeps getting copies.
    """

    __slots__ = ("protected", "writes_input", "reads_only")

    def __init__(self, model: Any = None) -> None:
        self.protected: set[int] = set()
        #: None until a model call showed whether the model writes into its input
        self.writes_input: bool | None = None
        self.reads_only = _reads_only(model)

    def kept(self, rows: torch.Tensor) -> bool:
        """Whether ``rows`` view memory kept beyond the call that the model might write into."""
        return not self.reads_only and _storage(rows) in self.protected

    def protect(self, t: torch.Tensor) -> None:
        ptr = _storage(t)
        if ptr:
            self.protected.add(ptr)

    def argument(self, rows: torch.Tensor) -> torch.Tensor:
        """The tensor handed to the model for ``rows``."""
        if self.reads_only:
            return rows
        if rows.requires_grad:  # a leaf of gradients()
            return rows if self.writes_input is False else rows.clone()
        if _storage(rows) in self.protected:
            return rows.clone()
        return rows

    def observe(self, arg: torch.Tensor, version: int | None) -> None:
        """Record whether the model wrote into ``arg`` (its version counter moved)."""
        if version is None:  # an inference tensor keeps no version counter
            return
        if arg._version != version:
            self.writes_input = True
        elif self.writes_input is None:
            self.writes_input = False


def _version(t: torch.Tensor) -> int | None:
    """The version counter of ``t`` (bumped by every in-place write), None for inference tensors."""
    return None if t.is_inference() else t._version


def _leaf_written(err: BaseException) -> bool:
    """Autograd's refusal of an in-place write into a leaf that requires grad."""
    return isinstance(err, RuntimeError) and "leaf Variable that requires grad" in str(err)


def lead_shape(out: Any) -> tuple[int, ...] | None:
    """Shape of a module output, or of the tensor leading a tuple/list output."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return tuple(out.shape) if isinstance(out, torch.Tensor) else None


@dataclass
class ModuleCall:
    """What one submodule did during a traced forward pass (see :meth:`ScoreFunction.trace`).

    ``shape`` is the shape of its (last) output, or None when that output is not a tensor;
    ``order`` ranks modules by when their last call finished; ``is_output`` says whether that
    output is the model's output tensor itself.
    """

    name: str
    module: nn.Module
    shape: tuple[int, ...] | None
    output_type: str
    calls: int
    order: int
    is_output: bool
    #: shape of the output, or of its first element when it is a tuple/list led by a tensor
    #: (an RNN's (output, state)); None otherwise
    lead_shape: tuple[int, ...] | None = None


class ScoreFunction:
    """``x -> one score per row``: a model composed with a bound target, plus the batching rules.

    Built by :meth:`Explainer.explain`; explainers call :meth:`values`, :meth:`gradients` and
    :meth:`layer_gradients`. Wrappers derive new score functions with :meth:`compose` (domains),
    :meth:`repeat` (noise draws) and :meth:`retarget` (several targets per sample).

    Parameters
    ----------
    model_fn : callable
        ``model_fn(rows, index) -> output`` with rows (R, *S) and, for each row, the position (R,)
        in ``input`` of the point it belongs to (the original sample for a top-level score).
    target : Target
        A bound target.
    input : Tensor of shape (B, *S)
        The point being explained (``x``, or ``z`` inside a domain).
    layout : Layout
        Axis names of ``input``.
    batch_size : int or None
        Maximum rows per model call; None picks :func:`default_batch_size`.
    sample_map : Tensor of shape (B,), optional
        The original sample of each row of ``input`` (recorded for bookkeeping and the default
        ``target_map``; ``model_fn`` receives positions in ``input``, see the module docstring);
        default ``arange(B)``.
    target_map : Tensor of shape (B,), optional
        The index handed to ``target`` for each row; default ``sample_map``.
    """

    def __init__(
        self,
        model_fn: ModelFn,
        target: Target,
        *,
        input: torch.Tensor,
        layout: Layout,
        batch_size: int | None,
        owner: str,
        model: Any = None,
        sample_map: torch.Tensor | None = None,
        composed: bool = False,
        contexts: tuple[PassContext, ...] = (),
        cache: dict[str, torch.Tensor] | None = None,
        target_map: torch.Tensor | None = None,
    ) -> None:
        self.model_fn = model_fn
        self.target = target
        self.input = input
        self.layout = layout
        self.owner = owner
        self.model = model
        self.composed = composed
        n = input.shape[0]
        self.sample_map = (
            torch.arange(n, device=input.device) if sample_map is None else sample_map.to(input.device)
        )
        # the index handed to the target for each row: the original sample by default; a
        # per-row index when several targets share one sample (see ``retarget``)
        self.target_map = self.sample_map if target_map is None else target_map.to(input.device)
        row_numel = int(math.prod(input.shape[1:]))
        self.batch_size = batch_size if batch_size is not None else default_batch_size(row_numel, input.device)
        self.contexts = tuple(contexts)
        # scores at the explained point; shared with score functions made by `under`
        self._cache: dict[str, torch.Tensor] = {} if cache is None else cache
        # set by compose(affine=True): (the parent's model function, the transform); lets
        # weighted gradient sums skip the backward through the transform on every row
        self._affine: tuple[ModelFn, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None
        # what this explain call knows about the model's writes into its input; shared by every
        # score function derived from this one (see _derive)
        self._call = _CallState(model)
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
                    f"{self.owner}: scores at the explained point must have shape "
                    f"({self.n_samples},); got {tuple(values.shape)}."
                )
            self._cache["input_values"] = values
        return self._cache["input_values"]

    # ------------------------------------------------------------------ model calls
    @property
    def n_samples(self) -> int:
        return int(self.input.shape[0])

    def _output(
        self,
        rows: torch.Tensor,
        index: torch.Tensor,
        model_fn: ModelFn | None = None,
    ) -> torch.Tensor:
        """The model's output for ``rows`` (checked), on rows the model may overwrite (see
        :class:`_CallState` for when the model receives a copy)."""
        call = self._call
        fn = model_fn or self.model_fn
        try:
            arg = call.argument(rows)
            version = _version(arg)
            try:
                with _state_kept(self.model):
                    out = fn(arg, index)
            except RuntimeError as err:
                if arg is not rows or not _leaf_written(err):
                    raise
                # the model writes into its input only on some calls: hand it a copy from now on
                call.writes_input = True
                arg = rows.clone()
                version = _version(arg)
                with _state_kept(self.model):
                    out = fn(arg, index)
            call.observe(arg, version)
        except SalienceError:
            raise
        except Exception as err:
            raise ModelCallError(
                f"{self.owner}: the model failed on a chunk of {rows.shape[0]} rows of shape "
                f"{tuple(rows.shape[1:])}, dtype {rows.dtype}, on {rows.device} (model parameters "
                f"on {_model_device(self.model)}): {type(err).__name__}: {err}"
            ) from err
        if not isinstance(out, torch.Tensor):
            raise ModelOutputError(
                f"{self.owner}: the model must return a torch.Tensor; got {type(out).__name__}. "
                "Wrap it so that it returns the tensor to explain."
            )
        if out.is_complex():
            raise ModelOutputError(
                f"{self.owner}: the model returned a complex tensor ({out.dtype}); a score must be "
                "real, and dropping the imaginary part would be silently wrong. Wrap the model so "
                "that it returns a real tensor (e.g. out.abs(), out.real or torch.view_as_real(out))."
            )
        if out.ndim == 0 or out.shape[0] != rows.shape[0]:
            raise ModelOutputError(
                f"{self.owner}: the model returned shape {tuple(out.shape)} for {rows.shape[0]} "
                "input rows; the first axis must be the batch."
            )
        if not all_finite(out):
            raise ModelOutputError(
                f"{self.owner}: the model output contains NaN or inf for a chunk of "
                f"{rows.shape[0]} rows; attributions would be meaningless."
            )
        return out

    def _scores(
        self, rows: torch.Tensor, index: torch.Tensor, target_rows: torch.Tensor, model_fn: ModelFn | None = None
    ) -> torch.Tensor:
        out = self._output(rows, index, model_fn)
        s = self.target(out, target_rows)
        if s.shape != (rows.shape[0],):
            raise ModelOutputError(
                f"{self.owner}: the target {self.target!r} returned shape {tuple(s.shape)}; "
                f"expected ({rows.shape[0]},)."
            )
        return s

    def _no_gradient(self, what: str, *, layer: bool = False) -> ModelOutputError:
        """The error for a score that carries no gradient (see :meth:`gradients`)."""
        others = "ScoreCAM, RISE, Occlusion or MaskUpdate" if layer else "RISE, Occlusion or MaskUpdate"
        return ModelOutputError(
            f"{self.owner} needs the gradient of the score with respect to {what}, but the "
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
                    f"{self.owner}: rows must have shape (B={b}, N, ...); got {tuple(source.shape)}."
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
        with ExitStack() as stack:
            for context in self.contexts:
                stack.enter_context(context(self.model))
            yield

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
            raise ShapeError(f"{self.owner}: outputs() needs at least one row per sample; got n={n}.")
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
            raise ShapeError(f"{self.owner}: gradients() needs at least one row per sample; got n={n}.")
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
                outs.append(self._output(self.input[start:stop], torch.arange(start, stop, device=self.input.device)))
        out = _cat(outs)
        self._cache["reference_output"] = out
        return out

    @contextmanager
    def _capture(self, module: nn.Module, *, grad: bool) -> Iterator[dict[str, torch.Tensor]]:
        """A forward hook on ``module`` storing its output as ``store["a"]``.

        With ``grad=True`` the model is called without gradients and the hook switches them on
        at the layer: its output becomes a leaf that requires grad, so only the rest of the
        network records a graph (the backward stops at the layer anyway). Everything before
        the layer runs as fast as inference (e.g. max pooling without indices); the grad mode
        is restored by the caller's ``torch.no_grad()`` block.
        """
        store: dict[str, torch.Tensor] = {}

        def hook(_mod: nn.Module, _inp: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor):
                raise LayerError(
                    f"The target layer returned {type(out).__name__}, not a tensor; pick a layer "
                    "whose output is a single tensor (list the candidates and their output types "
                    "with salience.layers(model, x))."
                )
            if grad:
                torch.set_grad_enabled(True)
                out = out.detach().requires_grad_(True)
            store["a"] = out
            store["calls"] = store.get("calls", 0) + 1
            # hand a copy downstream so an in-place op after the layer cannot alter `out`
            return out.clone()

        tally = [0, 0]
        store["tally"] = tally  # type: ignore[assignment]
        handle = module.register_forward_hook(own_thread(hook, tally))
        try:
            yield store
        finally:
            handle.remove()

    def layer_gradients(
        self, module: nn.Module, *, grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Activations of ``module`` at the explained input and the score's gradient w.r.t. them.

        The forward hook exists only inside this call (removed in ``finally``); the backward pass
        stops at the layer. Chunked over the batch.

        Returns
        -------
        values : Tensor of shape (B,)
        activations : Tensor of shape (B, *A)
        grads : Tensor of shape (B, *A), or None with ``grad=False``
        """
        if self.composed:
            raise CompositionError(
                f"{self.owner} explains a layer of the model, which has no meaning inside a "
                "domain (InDomain) or other input transform."
            )
        b = self.n_samples
        vals, acts, grads = [], [], []
        with self._pass(), self._capture(module, grad=grad) as store:
            for start, stop in self._chunks(b):
                for key in ("a", "calls"):
                    store.pop(key, None)
                local = torch.arange(start, stop, device=self.input.device)
                with torch.no_grad():  # gradients start at the layer (see _capture)
                    s = self._scores(self.input[start:stop], local, self.target_map[start:stop])
                if "a" not in store:
                    if store["tally"][1]:  # type: ignore[index]
                        name = next((n for n, m in self.model.named_modules() if m is module), "?")
                        raise worker_thread_error(self.owner, [name])
                    raise LayerError(
                        f"{self.owner}: the target layer was not called during the forward pass."
                    )
                a = store["a"]
                if start == 0 and store["calls"] > 1:
                    warn(
                        f"{self.owner}: the target layer ran {store['calls']} times in one forward "
                        "pass (a module reused, e.g. a shared ReLU); only its last call is "
                        "explained. Pick a module that runs once (see salience.layers(model, x)).",
                        SalienceWarning,
                    )
                if grad:
                    if not s.requires_grad:
                        raise self._no_gradient("the target layer", layer=True)
                    with torch.enable_grad():
                        (g,) = torch.autograd.grad(s.sum(), a, allow_unused=True)
                    if g is None:
                        raise self._no_gradient("the target layer", layer=True)
                    grads.append(g.detach())
                vals.append(s.detach())
                acts.append(a.detach())
        values = _cat(vals)
        self.record_input_values(values)  # the scores at the explained point, as input_values()
        return values, _cat(acts), (_cat(grads) if grad else None)

    def trace(self, n_rows: int | None = None) -> list[ModuleCall]:
        """Run the model once (no gradients) on the first ``n_rows`` inputs and report what
        every submodule returned, in the order their last call finished.

        Hooks on every submodule exist only inside this call (removed in ``finally``).
        """
        if self.composed:
            raise CompositionError(
                f"{self.owner} inspects the model's layers, which has no meaning inside a "
                "domain (InDomain) or other input transform."
            )
        model = self.model
        if not isinstance(model, nn.Module):
            raise LayerError(
                f"{self.owner}: layer methods need an nn.Module model. Got {type(model).__name__}."
            )
        n = self.n_samples if n_rows is None else min(int(n_rows), self.n_samples)
        seen: dict[str, list[Any]] = {}  # name -> [module, last output, calls, order]
        counter = [0]

        def make_hook(name: str) -> Callable[..., None]:
            def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
                rec = seen.setdefault(name, [mod, None, 0, 0])
                rec[1] = out
                rec[2] += 1
                rec[3] = counter[0]
                counter[0] += 1

            return hook

        handles = []
        tallies: dict[str, list[int]] = {}
        try:
            for name, mod in model.named_modules():
                if name:
                    tallies[name] = [0, 0]
                    handles.append(mod.register_forward_hook(own_thread(make_hook(name), tallies[name])))
            with torch.no_grad(), self._pass():
                out = self._output(self.input[:n], torch.arange(n, device=self.input.device))
        finally:
            for h in handles:
                h.remove()
        elsewhere = [name for name, (here, other) in tallies.items() if other and not here]
        if elsewhere:
            raise worker_thread_error(self.owner, elsewhere)
        calls = [
            ModuleCall(
                name=name,
                module=mod,
                shape=tuple(o.shape) if isinstance(o, torch.Tensor) else None,
                output_type=type(o).__name__,
                calls=k,
                order=order,
                is_output=o is out,
                lead_shape=lead_shape(o),
            )
            for name, (mod, o, k, order) in seen.items()
        ]
        return sorted(calls, key=lambda c: c.order)

    def find_layer(self, layer: Union[str, nn.Module]) -> tuple[str, nn.Module]:
        """Resolve a dotted module name or a module of the model to ``(name, module)``.

        Raises LayerError when the model is not an ``nn.Module`` or has no such layer.
        """
        return find_layer(self.model, layer)

    # ------------------------------------------------------------------ derived score functions
    def _derive(self, **changes: Any) -> "ScoreFunction":
        kw = dict(
            model_fn=self.model_fn,
            target=self.target,
            input=self.input,
            layout=self.layout,
            batch_size=self.batch_size,
            owner=self.owner,
            model=self.model,
            sample_map=self.sample_map,
            composed=self.composed,
            contexts=self.contexts,
            target_map=self.target_map,
        )
        kw.update(changes)
        derived = ScoreFunction(**kw)  # type: ignore[arg-type]
        derived._call = self._call  # one explain call: one record of what the model writes
        self._call.protect(derived.input)
        return derived

    def final_activation(
        self, *, strip: bool, found: Callable[[str, nn.Module], None] | None = None
    ) -> "ScoreFunction":
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
        model, owner = self.model, self.owner
        heads = (
            [(n, m) for n, m in model.named_modules() if n and isinstance(m, FINAL_ACTIVATIONS)]
            if isinstance(model, nn.Module)
            else []
        )

        def nothing() -> LayerError:
            return LayerError(
                f"{owner}: final_activation='strip' but no Softmax, LogSoftmax or Sigmoid module "
                "produces the model's output; there is nothing to strip. Explain the model as it "
                "is, or wrap it so that it returns the pre-activation output."
            )

        if not heads:
            if strip:
                raise nothing()
            return self
        inner = self.model_fn
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
            hit = next(((n, m, i) for n, (m, i, o) in seen.items() if o is out), None)
            if hit is None:
                if strip:
                    raise nothing()
                return out
            if not reported[0]:
                reported[0] = True
                found(hit[0], hit[1])  # type: ignore[misc]
            return hit[2] if strip else out

        return self._derive(model_fn=model_fn)

    def compose(
        self,
        transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        input: torch.Tensor,
        layout: Layout,
        *,
        affine: bool = False,
    ) -> "ScoreFunction":
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
        derived = self._derive(model_fn=model_fn, input=input, layout=layout, composed=True, cache=self._cache)
        if affine:
            derived._affine = (inner, transform)
        return derived

    def under(self, context: PassContext) -> "ScoreFunction":
        """The same score, with every pass of model calls run inside ``context(model)``.

        ``context`` receives the model and returns a context manager, entered once around each
        pass (all chunks of :meth:`values`, :meth:`gradients`, :meth:`layer_gradients`: forward
        *and* backward), and exited in every case, also when a model call raises. Modified
        backpropagation (Guided Backprop, DeconvNet, LRP) uses it to install module hooks that
        change backward rules for the duration of a pass only. The context must not change the
        forward values: the derived score function shares the cached scores at the input.
        """
        return self._derive(contexts=(*self.contexts, context), cache=self._cache)

    def repeat(self, input: torch.Tensor, k: int) -> "ScoreFunction":
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
    ) -> "ScoreFunction":
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
                    f"{self.owner}: retarget() on a composed score whose points are not one per "
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


def make_score(
    model: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    batch_size: int | None,
    layout: Layout,
    owner: str,
) -> ScoreFunction:
    """The score function of ``model`` at ``x`` with ``target`` bound there (what ``explain`` uses).

    The target is coerced with :func:`~salience.targets.as_target` and bound once at ``x``
    (``target=None`` freezes each sample's predicted class); when binding needed the model output
    at ``x``, the scores there are cached so that :meth:`ScoreFunction.input_values` costs no
    further model call.

    Parameters
    ----------
    model : callable
        Maps rows (R, *S) to outputs (R, *O).
    x : Tensor of shape (B, *S)
        The explained point (detached by the caller).
    target : TargetLike
    batch_size : int or None
    layout : Layout
    owner : str
        Name used in error messages (the explainer or metric).
    """
    if isinstance(model, nn.Module):
        meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
        if meta:
            raise ParameterError(
                f"The 'model' parameter of {owner} has {len(meta)} parameter(s)/buffer(s) on the "
                f"'meta' device (e.g. {meta[0]!r}), which hold no data; materialise and load the "
                "weights first (model.to_empty(device=...), then load_state_dict)."
            )
    unbound = as_target(target)
    score = ScoreFunction(
        lambda rows, index: model(rows),
        unbound,
        input=x,
        layout=layout,
        batch_size=batch_size,
        owner=owner,
        model=model,
    )
    # the reference output is cached by the score function: when binding needed it,
    # input_values() reuses it
    score.target = unbound.bind(x.shape[0], score.reference_output)
    return score
