"""The TensorFlow bridge: a Keras (TensorFlow backend) or ``tf.keras`` model, or a TensorFlow
callable, as a ``torch.nn.Module`` whose forward runs in TensorFlow and whose backward is the
vector-Jacobian product of a ``tf.GradientTape``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import LayerError, ParameterError
from ._common import (
    graph_layers,
    has_hooks,
    head_of,
    output_layer,
    register,
    stand_in,
    to_first,
    to_last,
)

try:
    import tensorflow as tf  # type: ignore[import-not-found,import-untyped,unused-ignore]
except ImportError as err:  # pragma: no cover - exercised only without TensorFlow
    raise ImportError(
        "salience.keras.wrap needs TensorFlow for a model that is not a Keras model of the torch "
        "backend: pip install 'salience[keras]' (or pip install tensorflow-cpu keras)."
    ) from err

__all__ = ["TFModel", "to_tf", "to_torch"]

_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def to_tf(t: torch.Tensor) -> Any:
    """A torch tensor as a TensorFlow tensor: shared memory through DLPack (contiguous, on the
    CPU), through a NumPy view when DLPack refuses it (never through Python lists)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    try:
        return tf.experimental.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(t))
    except Exception:  # an unaligned buffer, an unsupported dtype
        return tf.convert_to_tensor(t.numpy())


def to_torch(t: Any, device: torch.device) -> torch.Tensor:
    """A TensorFlow tensor as a torch tensor on ``device`` (DLPack, else a NumPy view)."""
    try:
        out = torch.from_dlpack(t)
    except Exception:
        out = torch.from_numpy(t.numpy())
    return out if out.device == device else out.to(device)


class _Graph:
    """A program traced as ``tf.function``s: the forward pass, its vector-Jacobian product (the
    forward pass again and the tape's backward in one graph, traced at the first backward), and a
    fused pass giving the outputs with the gradient of one output column.

    Recording a tape around a traced forward pass makes TensorFlow export every intermediate
    tensor of the graph (measured 1.6x slower than the two graphs together). Scores of a class
    target seed the backward with one column of the output per row (``c_r * e_k``): once a
    backward has shown such seeds, the next forward passes run the fused graph for column ``k``,
    and the backward, when its seeds are again ``c_r * e_k``, scales those gradients by ``c_r``
    (the product is linear in the seed) instead of running the model again; other seeds take the
    vector-Jacobian product.
    """

    def __init__(self, fn: Callable[..., list[Any]], specs: list[Any]) -> None:
        self.fn, self.specs = fn, specs
        self.forward = tf.function(fn, input_signature=specs, autograph=False)
        self._vjp: Any = None
        self._fused: Any = None
        self.column: int | None = None

    def __call__(self, *xs: Any) -> Any:
        return self.forward(*xs)

    def _taped(self, ins: list[Any], seeds: Callable[[list[Any]], list[Any]]) -> tuple[list[Any], Any]:
        with tf.GradientTape() as tape:
            for t in ins:
                tape.watch(t)
            ys = list(self.fn(*ins))
        grads = tape.gradient(
            ys, ins, output_gradients=seeds(ys), unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return ys, grads

    def _column(self, xs: list[Any], k: int) -> tuple[list[Any], list[Any]]:
        """The outputs and the gradients of output column ``k`` (one fused graph)."""
        if self._fused is None:
            n = len(self.specs)

            def fused(*args: Any) -> Any:
                col = args[n]

                def unit(ys: list[Any]) -> list[Any]:
                    rows, width = tf.shape(ys[0])[0], tf.shape(ys[0])[1]
                    return [tf.one_hot(tf.fill([rows], col), width, dtype=ys[0].dtype)]

                return self._taped(list(args[:n]), unit)

            self._fused = tf.function(
                fused, input_signature=[*self.specs, tf.TensorSpec((), tf.int32)], autograph=False
            )
        ys, grads = self._fused(*xs, tf.constant(k, tf.int32))
        return list(ys), list(grads)

    def for_gradient(self, xs: list[Any]) -> tuple[list[Any], Any]:
        """The outputs, and ``(k, gradients of column k)`` when a class column is expected."""
        k = self.column
        if k is None:
            return list(self.forward(*xs)), None
        ys, grads = self._column(xs, k)
        return ys, (k, grads)

    def backward(self, xs: list[Any], outs: list[Any], seeds: list[Any], guess: Any) -> Any:
        single = len(outs) == 1 and seeds[0].shape.rank == 2
        if single:
            s = seeds[0]
            used = tf.where(tf.reduce_any(tf.not_equal(s, 0), axis=0))[:, 0].numpy()
            self.column = int(used[0]) if len(used) == 1 else None
            if self.column is not None:  # seeds c_r * e_k: the gradients of column k, scaled
                k = self.column
                grads = guess[1] if guess is not None and guess[0] == k else self._column(xs, k)[1]
                c = s[:, k]
                return [g * tf.reshape(tf.cast(c, g.dtype), (-1, *([1] * (g.shape.rank - 1)))) for g in grads]
        if self._vjp is None:
            n = len(self.specs)
            specs = [tf.TensorSpec((None, *o.shape[1:]), o.dtype) for o in outs]
            self._vjp = tf.function(
                lambda *args: self._taped(list(args[:n]), lambda _ys: list(args[n:]))[1],
                input_signature=[*self.specs, *specs],
                autograph=False,
            )
        return self._vjp(*xs, *seeds)


class _TFCall(torch.autograd.Function):
    """``fn`` (TensorFlow tensors -> a list of TensorFlow tensors) as a torch function; its
    backward seeds the tape recorded in the forward pass with the incoming gradients."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., Sequence[Any]], *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        device = xs[0].device
        tf_in = [to_tf(x) for x in xs]
        if any(ctx.needs_input_grad[1:]) and isinstance(fn, _Graph):
            outs, ctx.guess = fn.for_gradient(tf_in)
            ctx.graph, ctx.tf_in, ctx.tf_out = fn, tf_in, outs
            ctx.in_dtypes = [x.dtype for x in xs]
        elif any(ctx.needs_input_grad[1:]):
            ctx.graph = None
            with tf.GradientTape(persistent=True) as tape:
                for t in tf_in:
                    tape.watch(t)
                outs = list(fn(*tf_in))
            ctx.tape, ctx.tf_in, ctx.tf_out = tape, tf_in, outs
            ctx.in_dtypes = [x.dtype for x in xs]
        else:
            outs = list(fn(*tf_in))
        ctx.device = device
        return tuple(to_torch(o, device) for o in outs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        seeds = [
            to_tf(g.to(_DTYPES.get(o.dtype.name, g.dtype))) for g, o in zip(grads, ctx.tf_out, strict=True)
        ]
        if ctx.graph is not None:
            res = ctx.graph.backward(ctx.tf_in, ctx.tf_out, seeds, ctx.guess)
        else:
            res = ctx.tape.gradient(
                ctx.tf_out,
                ctx.tf_in,
                output_gradients=seeds,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
        out = [to_torch(r, ctx.device).to(d) for r, d in zip(res, ctx.in_dtypes, strict=True)]
        return (None, *out)


def _model_class(model: Any) -> Any:
    """The functional-model class of ``model``'s Keras (Keras 3 or tf_keras)."""
    module = type(model).__module__.split(".")[0]
    if module == "tf_keras":
        import tf_keras  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return tf_keras.Model
    import keras  # type: ignore[import-not-found,import-untyped,unused-ignore]

    return keras.Model


def _spec(kt: Any) -> Any:
    return tf.TensorSpec(tuple(kt.shape), tf.as_dtype(kt.dtype))


class TFModel(nn.Module):
    """A Keras/TensorFlow model as a torch module (see :func:`salience.keras.wrap`).

    Parameters
    ----------
    model : keras.Model, tf_keras.Model or callable
    data_format : {"channels_last", "channels_first"}, optional
    graph : bool, default True
        Run each program (the model, or a part of it for a layer) as a ``tf.function`` traced
        once for any number of rows; False runs it eagerly.
    """

    def __init__(self, model: Any, *, data_format: str | None = None, graph: bool = True) -> None:
        super().__init__()
        if not callable(model):
            raise ParameterError(
                "The 'model' parameter of salience.keras.wrap must be a Keras model or a TensorFlow "
                f"callable. Got {type(model).__name__} instead."
            )
        object.__setattr__(self, "_keras_model", model)  # not a torch submodule
        self.graph = bool(graph)
        inputs: Any = getattr(model, "inputs", None)
        outputs: Any = getattr(model, "outputs", None)
        self._functional = bool(inputs) and bool(outputs) and len(inputs) == 1
        self._layers: dict[str, Any] = {}
        self._head: tuple[str, Any] | None = None
        self._programs: dict[Any, Callable[..., Sequence[Any]]] = {}
        self._dtype = torch.float32
        if self._functional:
            self._dtype = _DTYPES.get(tf.as_dtype(inputs[0].dtype).name, torch.float32)
            for layer in graph_layers(model):
                register(self, layer.name, stand_in(layer, data_format))
                self._layers[layer.name] = layer
            last = output_layer(model)
            found = head_of(last) if last is not None else None
            if found is not None:
                register(self, found[0], found[1])
                self._head = (found[0], last)
        self.eval()

    @property
    def keras_model(self) -> Any:
        """The wrapped Keras model (or TensorFlow callable)."""
        return self.__dict__["_keras_model"]

    def extra_repr(self) -> str:
        return f"model={getattr(self.keras_model, 'name', type(self.keras_model).__name__)!r}"

    # ----------------------------------------------------------------------- programs
    def _call_model(self, fn: Any, x: Any) -> Any:
        try:
            return fn(x, training=False)
        except TypeError:
            return fn(x)

    def _function(self, fn: Callable[..., list[Any]], specs: list[Any] | None) -> Callable[..., list[Any]]:
        if not self.graph or specs is None:
            return fn
        return _Graph(fn, specs)

    def _logits(self, h: Any) -> Any:
        """The pre-activation output of the model's last layer from that layer's input."""
        layer: Any = self._head[1] if self._head is not None else None
        if type(layer).__name__ != "Dense":
            return h
        z = tf.tensordot(h, tf.convert_to_tensor(layer.kernel), axes=[[h.shape.rank - 1], [0]])
        return z + tf.convert_to_tensor(layer.bias) if layer.use_bias else z

    def _finals(self, head: bool) -> list[Any]:
        model = self.keras_model
        if head:
            return [self._head[1].input]  # type: ignore[index]
        return list(model.outputs)

    def _program(self, watched: tuple[str, ...], head: bool) -> Callable[..., Sequence[Any]]:
        """x -> [activations of the watched layers..., final output(s)] in one pass."""
        key = ("all", watched, head)
        if key in self._programs:
            return self._programs[key]
        model = self.keras_model
        if not self._functional:
            if watched or head:
                raise LayerError(
                    "salience.keras: the wrapped model is not a functional or sequential Keras model "
                    "with one input, so its layers cannot be read; build it with keras.Input."
                )

            def whole(x: Any) -> list[Any]:
                out = self._call_model(model, x)
                return list(out) if isinstance(out, (list, tuple)) else [out]

            prog = self._function(whole, None)
        else:
            outs = [self._output_of(n) for n in watched] + self._finals(head)
            sub = _model_class(model)(model.inputs, outs, name="salience_program")

            def part(x: Any) -> list[Any]:
                got = sub(x, training=False)
                got = list(got) if isinstance(got, (list, tuple)) else [got]
                if head:
                    got[-1] = self._logits(got[-1])
                return got

            prog = self._function(part, [_spec(model.inputs[0])])
        self._programs[key] = prog
        return prog

    def _output_of(self, name: str) -> Any:
        try:
            return self._layers[name].output
        except (AttributeError, ValueError, RuntimeError) as err:
            raise LayerError(
                f"salience.keras: the output of layer {name!r} cannot be read from the model's graph "
                f"({type(err).__name__}: {err}); a layer called more than once has no single output."
            ) from err

    def _split(self, name: str, head: bool) -> tuple[Callable[..., Any], Callable[..., Any], bool] | None:
        """(x -> [a], tail, tail needs x) for a layer ``name``, or None when the model cannot be
        cut there (the layer produces the output itself)."""
        key = ("split", name, head)
        if key in self._programs:
            return self._programs[key]  # type: ignore[return-value]
        model, cls = self.keras_model, _model_class(self.keras_model)
        a = self._output_of(name)
        finals = self._finals(head)
        if any(f is a for f in finals):
            return None
        first = cls(model.inputs, [a], name="salience_head")
        try:
            rest, needs_x = cls([a], finals, name="salience_tail"), False
        except Exception:  # the part after the layer also reads the input (a skip around it)
            rest, needs_x = cls([*model.inputs, a], finals, name="salience_tail"), True

        def head_fn(x: Any) -> list[Any]:
            return [first(x, training=False)]

        def tail_fn(*ins: Any) -> list[Any]:
            got = rest(list(ins) if len(ins) > 1 else ins[0], training=False)
            got = list(got) if isinstance(got, (list, tuple)) else [got]
            if head:
                got[-1] = self._logits(got[-1])
            return got

        tail_specs = [_spec(model.inputs[0]), _spec(a)] if needs_x else [_spec(a)]
        split = (
            self._function(head_fn, [_spec(model.inputs[0])]),
            self._function(tail_fn, tail_specs),
            needs_x,
        )
        self._programs[key] = split  # type: ignore[assignment]
        return split

    # ----------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Any:
        watched = tuple(n for n in self._layers if has_hooks(self._modules[n]))  # type: ignore[arg-type]
        head = self._head is not None and has_hooks(self._modules[self._head[0]])  # type: ignore[arg-type]
        xin = x if x.dtype == self._dtype or not self._functional else x.to(self._dtype)
        split = self._split(watched[0], head) if len(watched) == 1 else None
        if split is not None:
            first, rest, needs_x = split
            (a,) = _TFCall.apply(first, xin)
            a = self._through(watched[0], a, replace=True)
            finals = _TFCall.apply(rest, xin, a) if needs_x else _TFCall.apply(rest, a)
        else:
            outs = _TFCall.apply(self._program(watched, head), xin)
            for n, a in zip(watched, outs[: len(watched)], strict=True):
                self._through(n, a, replace=False)
            finals = outs[len(watched) :]
        if head:
            return self._modules[self._head[0]](finals[0])  # type: ignore[index,misc]
        return finals[0] if len(finals) == 1 else tuple(finals)

    def _through(self, name: str, a: torch.Tensor, *, replace: bool) -> torch.Tensor:
        """Pass a layer's activations through its stand-in (channels-first for the hooks)."""
        proxy = self._modules[name]
        last = bool(getattr(proxy, "channels_last", False))
        shown = to_first(a, last)
        got = proxy(shown)  # type: ignore[misc]
        if not isinstance(got, torch.Tensor) or got.shape != shown.shape:
            raise LayerError(
                f"salience.keras: a hook on layer {name!r} returned "
                f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}; "
                f"expected a tensor of shape {tuple(shown.shape)}."
            )
        if not replace and got is not shown and not torch.equal(got, shown):
            raise LayerError(
                f"salience.keras: hooks on several layers at once ({name!r} among them) may read the "
                "activations but not replace them; replace one layer's output per call."
            )
        return to_last(got, last)
