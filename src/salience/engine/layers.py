"""Finding and describing layers: resolve a name, trace what every submodule returns, tell
channels x positions from tokens x features, pick the default CAM layer, and ``layers(model, x)``
for users."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .._validation import check_input
from ..errors import CompositionError, LayerError, ShapeError, current_caller
from ..layout import Layout, LayoutLike
from ..targets import Output
from ._hooks import own_thread, worker_thread_error
from ._token_layers import (
    TokenProbe,
    is_token_module,
    last_attention_input,
    lead_shape,
    makes_tokens,
    patch_transformer,
    token_layer_error,
    token_module,
    token_shaped,
)

if TYPE_CHECKING:
    from .score import ScoreFunction

__all__ = [
    "FINAL_ACTIVATIONS",
    "ModuleCall",
    "LayerInfo",
    "LayerTable",
    "find_layer",
    "trace",
    "layers",
    "is_token_module",
    "token_module",
    "default_layer",
    "target_layer",
    "TokenProbe",
    "lead_shape",
]

#: modules that, as a model's last operation, turn logits into (log-)probabilities
FINAL_ACTIVATIONS = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid, nn.Softmax2d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# modules whose own output is a tuple (refused as such when a CAM calls them)
_TUPLE_OUT = (nn.RNNBase, nn.MultiheadAttention)
# adaptive pooling only resamples the layer before it (VGG's 7x7 avgpool blows a 2x2 map up)
_RESAMPLE = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


@dataclass(frozen=True)
class LayerInfo:
    """One submodule seen in a dry run.

    Attributes
    ----------
    name : str
        Dotted name, as accepted by ``layer=...``.
    type : str
        The module's class name.
    shape : tuple of int or None
        Shape of its output for the traced batch (None when the output is not a tensor).
    conv : bool
        A convolution (Conv1d/2d/3d or transposed).
    spatial : bool
        Its output has the input's number of axes and more than one position, and the module
        does not work on token sequences (Linear, LayerNorm, attention, RNN): a CAM can be
        computed there without ``reshape``.
    final_activation : bool
        A Softmax/LogSoftmax/Sigmoid whose output is the model's output.
    default : bool
        The layer the CAM explainers use when ``layer=None``: the last spatial one before any
        token module, other than adaptive pooling.
    calls : int
        How many times it ran in the forward pass (a CAM uses the last call).
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    conv: bool
    spatial: bool
    final_activation: bool
    default: bool
    calls: int


class LayerTable(list[LayerInfo]):
    """A list of :class:`LayerInfo` in execution order that prints as a table."""

    def names(self) -> list[str]:
        return [info.name for info in self]

    def __str__(self) -> str:
        rows = [("name", "type", "output shape", "marks")]
        for i in self:
            marks = [
                m
                for m, on in (
                    ("conv", i.conv),
                    ("spatial", i.spatial),
                    ("default", i.default),
                    ("final activation", i.final_activation),
                )
                if on
            ]
            if i.calls > 1:
                marks.append(f"called {i.calls}x")
            shape = "-" if i.shape is None else str(tuple(i.shape))
            rows.append((i.name, i.type, shape, ", ".join(marks)))
        widths = [max(len(r[k]) for r in rows) for k in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(str(self))


#: attributes through which wrappers hold the network they run: torch.compile's OptimizedModule
#: (``_orig_mod``), nn.DataParallel and DistributedDataParallel (``module``)
_WRAPPED = ("_orig_mod", "module")


def _compiled(model: Any) -> nn.Module | None:
    """The original module of a ``torch.compile``'d module, else None."""
    inner = getattr(model, "_orig_mod", None) if type(model).__name__ == "OptimizedModule" else None
    return inner if isinstance(inner, nn.Module) else None


def _wrapped(model: Any) -> nn.Module | None:
    """The network a wrapper runs, or None when ``model`` is not a known wrapper."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return _compiled(model)


def unwrap(model: Any) -> Any:
    """The network inside ``torch.compile``, ``nn.DataParallel`` and
    ``DistributedDataParallel`` wrappers (nested ones too); ``model`` itself otherwise.

    Salience hooks, names and checks the network itself: layer names are its own (``"layer4"``,
    not ``"_orig_mod.layer4"`` or ``"module.layer4"``), and its mode is the one that counts.
    """
    while (inner := _wrapped(model)) is not None:
        model = inner
    return model


def eager(model: Any) -> Any:
    """What the engine calls for ``model``: a ``torch.compile``'d module's original module (the
    same function run eagerly, so that the hooks of a call are seen; Dynamo does not see hooks
    added after compilation), ``model`` itself otherwise."""
    while (inner := _compiled(model)) is not None:
        model = inner
    return model


def find_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Resolve a dotted module name or a module to ``(name, module)``.

    ``model`` may be a wrapper (``torch.compile``, DataParallel): names are resolved in the
    network it runs, with or without the wrapper's prefix (``"_orig_mod."``, ``"module."``).
    """
    model = unwrap(model)
    if not isinstance(model, nn.Module):
        raise LayerError(f"Layer methods need an nn.Module model. Got {type(model).__name__}.")
    if isinstance(layer, nn.Module):
        for name, mod in model.named_modules():
            if mod is layer:
                return name, mod
        raise LayerError(f"The module {type(layer).__name__} passed as layer is not part of the model.")
    if isinstance(layer, str):
        mods = dict(model.named_modules())
        name = layer
        while name not in mods and name.startswith(tuple(w + "." for w in _WRAPPED)):
            name = name.split(".", 1)[1]  # a wrapper's prefix, as its named_modules() print it
        if name in mods:
            return name, mods[name]
        close = [n for n in mods if n and (layer in n or n.endswith(layer))][:5]
        hint = f" Did you mean one of {close}?" if close else ""
        raise LayerError(
            f"Layer {layer!r} not found in {type(model).__name__}.{hint} "
            "List the candidates with salience.layers(model, x)."
        )
    raise LayerError(f"layer must be a dotted module name or an nn.Module. Got {type(layer).__name__}.")


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


def trace(score: ScoreFunction, n_rows: int | None = None) -> list[ModuleCall]:
    """Run the score's model once (no gradients) on the first ``n_rows`` points of its input and
    report what every submodule returned, in the order their last call finished.

    Hooks on every submodule exist only inside this call (removed in ``finally``).
    """
    if score.composed:
        raise CompositionError(
            f"{score.caller} inspects the model's layers, which has no meaning inside a "
            "domain (InDomain) or other input transform."
        )
    model = score.model
    if not isinstance(model, nn.Module):
        raise LayerError(
            f"{score.caller}: layer methods need an nn.Module model. Got {type(model).__name__}."
        )
    n = score.n_samples if n_rows is None else min(int(n_rows), score.n_samples)
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
        with torch.no_grad(), score._pass():
            out = score._output(score.input[:n], torch.arange(n, device=score.input.device))
    finally:
        for h in handles:
            h.remove()
    elsewhere = [name for name, (here, other) in tallies.items() if other and not here]
    if elsewhere:
        raise worker_thread_error(elsewhere)
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


def _spatial(calls: Sequence[ModuleCall], ndim: int, n_rows: int) -> list[ModuleCall]:
    """Modules whose output has the input's number of axes and more than one position, other
    than those whose output is tokens x features (see :func:`~salience.engine._token_layers.token_shaped`)."""
    token = token_shaped(calls, ndim)
    return [
        c
        for c in calls
        if c.shape is not None
        and (len(c.shape) == ndim or (len(c.shape) == ndim + 1 and 1 in c.shape[2:]))
        and c.shape[0] == n_rows
        and math.prod(c.shape[2:]) > 1
        and c.name not in token
    ]


def _default_candidates(
    calls: Sequence[ModuleCall], spatial: Sequence[ModuleCall], ndim: int
) -> list[ModuleCall]:
    """Spatial layers a CAM may pick by itself: those finished before the first module that
    makes a token sequence (a transformer or recurrent part must be named, with ``reshape=``),
    adaptive pooling left out.

    A token sequence has three axes (B, L, D) whatever the input: for images and video, a
    token module's output with the input's number of axes is a channels-last map (B, H, W, C),
    as inside a ConvNeXt block, after which the network may return to channels-first maps. Such
    outputs are not spatial (:func:`~salience.engine._token_layers.token_shaped`) but do not end the search; the first
    (B, L, D) sequence (a ViT's or Swin's first norm or projection) does."""
    first_token = min(
        (c.order for c in calls if makes_tokens(c.module, c.lead_shape, 3)),
        default=math.inf,
    )
    return [c for c in spatial if c.order < first_token and not isinstance(c.module, _RESAMPLE)]


def target_layer(
    score: ScoreFunction, layer: None | str | nn.Module, sizes: tuple[int, ...], *, tokens: bool = False
) -> tuple[str, nn.Module, TokenProbe | None]:
    """The layer a layer method explains: ``(name, module, probe)``.

    ``layer=None`` picks :func:`default_layer` from a dry run on one sample (refused when the
    input has a single position, ``sizes`` being its spatial sizes). A named layer whose output
    is tokens x features is refused unless the method reads tokens (``tokens=True``, a CAM's
    ``reshape``): a token module or a module inside one now, and, through the returned
    :class:`TokenProbe` (enter it around the pass with ``score.under(probe)``, then call
    ``probe.check(name)``), a module passing tokens along after one.
    """
    ndim = score.input.ndim
    if layer is None:
        if math.prod(sizes) == 1:
            raise ShapeError(
                f"{current_caller()}: the input has a single position (spatial size {sizes}), so "
                "no layer can hold a map over positions and there is no default layer; a class "
                "activation map needs a signal with several time points (or an image with "
                "several pixels). For per-channel importance use a gradient method."
            )
        calls = trace(score, n_rows=1)
        if tokens and patch_transformer(score.model, len(sizes)):
            before = last_attention_input(calls)
            if before is not None:
                return before.name, before.module, None
        call = default_layer(calls, ndim, 1)
        return call.name, call.module, None
    name, module = score.find_layer(layer)
    if tokens or isinstance(module, _CONV):
        return name, module, None
    token = token_module(score.model, name)
    # (an RNN or attention module itself returns a tuple, refused as such when called)
    if token is not None and not (token is module and isinstance(token, _TUPLE_OUT)):
        raise token_layer_error(name, f"is (or is inside) a {type(token).__name__}, whose output")
    return name, module, TokenProbe(module, ndim)


def default_layer(calls: Sequence[ModuleCall], ndim: int, n_rows: int) -> ModuleCall:
    """The last module (in execution order) whose output is spatial like the input, before any
    token module (Linear on sequences, attention, LayerNorm, RNN) and other than adaptive pooling."""
    candidates = _default_candidates(calls, _spatial(calls, ndim, n_rows), ndim)
    if not candidates:
        raise LayerError(
            f"{current_caller()}: no layer of the model returns a spatial output with {ndim} axes like the "
            "input before its first token or recurrent module, so there is no default layer. Pass "
            "layer='name' (list the candidates with salience.layers(model, x)), and reshape=... "
            "for token outputs."
        )
    return candidates[-1]


def layers(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layout: LayoutLike | None = None,
    output: Any = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> LayerTable:
    """List the layers a CAM can explain, from one dry run of ``model`` on ``x``.

    Every submodule gets a forward hook for the duration of one forward pass without
    gradients (the hooks are removed afterwards, also if the model raises); the model is
    otherwise untouched.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (N, C, T), (N, C, H, W) or (N, C, T, H, W)
        An example batch (one sample is enough).
    layout : str or Layout, optional
        Axis names of ``x``; inferred from ``x.ndim`` when None.
    output : str, int or callable, optional
        The tensor a structured model output is explained by (see
        :class:`~salience.engine.Explainer`); its producer is marked as the output.
    forward_args, forward_kwargs : optional
        Extra inputs of the model call (see :meth:`~salience.engine.Explainer.explain`).

    Returns
    -------
    LayerTable
        A list of :class:`LayerInfo` in execution order (printing it shows a table), marking
        convolutions, layers with a spatial output, the default CAM layer (the last spatial
        one) and a final Softmax/Sigmoid.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
    ...                       nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1)).eval()
    >>> print(layers(model, torch.randn(1, 2, 16)))
    name  type               output shape  marks
    0     Conv1d             (1, 4, 14)    conv, spatial
    1     ReLU               (1, 4, 14)    spatial, default
    2     AdaptiveAvgPool1d  (1, 4, 1)
    3     Flatten            (1, 4)
    4     Linear             (1, 3)
    5     Softmax            (1, 3)        final activation
    """
    x = check_input(x, "layers")
    lay = Layout.infer(x, layout)
    if not isinstance(model, nn.Module):
        raise LayerError(f"layers() needs an nn.Module model. Got {type(model).__name__}.")
    from .score import make_score  # (score.py imports this module)

    score = make_score(
        model,
        x.detach(),
        Output(),
        batch_size=None,
        layout=lay,
        caller="layers",
        output=output,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    )
    calls = trace(score)
    n = x.shape[0]
    spatial_calls = _spatial(calls, x.ndim, n)
    candidates = _default_candidates(calls, spatial_calls, x.ndim)
    default = candidates[-1].name if candidates else None
    spatial = {c.name for c in spatial_calls}
    table = LayerTable()
    for c in calls:
        table.append(
            LayerInfo(
                name=c.name,
                type=type(c.module).__name__,
                shape=c.shape,
                conv=isinstance(c.module, _CONV),
                spatial=c.name in spatial,
                final_activation=c.is_output and isinstance(c.module, FINAL_ACTIVATIONS),
                default=c.name == default,
                calls=c.calls,
            )
        )
    return table
