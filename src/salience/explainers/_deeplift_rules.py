"""DeepLift's multiplier rules as pass contexts: the reference activations and the rescale rule.

DeepLift needs, at every nonlinearity, the activation of the reference (the baseline) beside the
activation of the input. Two passes of model calls share one :class:`References` object:

1. the *reference pass* (``References.recording``) runs the baselines and stores, for every call
   of every covered module, its input and output row by row;
2. the *input pass* (``References.rescaling``) runs the inputs with each covered module's backward
   rule replaced by its DeepLift multiplier, reading the reference activations of the same rows.

Rows are matched through the index the score function hands to every model call (the position of
each row's point, see :meth:`salience.engine.ScoreFunction.compose`), and calls of a module
through their order inside one model call, so any ``batch_size`` (one row per call included), a
module used several times in one forward pass and every domain work alike. Hooks exist only
inside a pass (removed in ``finally``) and act only in the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..engine import own_thread
from ..errors import ModelCallError, SalienceWarning, current_caller, warn
from .backward_rules import replace_backward, rewired

__all__ = ["DeepLiftCoverageWarning", "References", "ELEMENTWISE", "MAXPOOLS"]


class DeepLiftCoverageWarning(SalienceWarning):
    """Some nonlinearities of the model were not reached by a DeepLift rule."""


#: elementwise nonlinearities: the rescale rule ``dy / dx`` (the derivative where ``|dx| < eps``)
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Softsign,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Tanh,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
)

#: max-pooling modules: Captum's maxpool rule (the change of each window's maximum, given to the
#: position of the input's or the reference's maximum, whichever is larger)
MAXPOOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)

#: nonlinear modules no rule covers (named in the coverage warning)
UNCOVERED: tuple[type[nn.Module], ...] = (
    nn.Softmax,
    nn.Softmax2d,
    nn.LogSoftmax,
    nn.Softmin,
    nn.GLU,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.MultiheadAttention,
)

# nonlinear functions that module hooks cannot reach when called outside a module
_FUNCTIONS: dict[Any, str] = {
    torch.relu: "torch.relu",
    torch.relu_: "torch.relu_",
    F.relu: "torch.nn.functional.relu",
    F.relu_: "torch.nn.functional.relu_",
    torch.Tensor.relu: "Tensor.relu",
    torch.Tensor.relu_: "Tensor.relu_",
    torch.sigmoid: "torch.sigmoid",
    torch.Tensor.sigmoid: "Tensor.sigmoid",
    torch.tanh: "torch.tanh",
    torch.Tensor.tanh: "Tensor.tanh",
    F.gelu: "torch.nn.functional.gelu",
    F.silu: "torch.nn.functional.silu",
    F.elu: "torch.nn.functional.elu",
    F.leaky_relu: "torch.nn.functional.leaky_relu",
    F.softplus: "torch.nn.functional.softplus",
    F.hardtanh: "torch.nn.functional.hardtanh",
    F.mish: "torch.nn.functional.mish",
    F.max_pool1d: "torch.nn.functional.max_pool1d",
    F.max_pool2d: "torch.nn.functional.max_pool2d",
    F.max_pool3d: "torch.nn.functional.max_pool3d",
    torch.max_pool1d: "torch.max_pool1d",
    torch.max_pool2d: "torch.max_pool2d",
    torch.max_pool3d: "torch.max_pool3d",
    F.adaptive_max_pool1d: "torch.nn.functional.adaptive_max_pool1d",
    F.adaptive_max_pool2d: "torch.nn.functional.adaptive_max_pool2d",
    F.adaptive_max_pool3d: "torch.nn.functional.adaptive_max_pool3d",
    F.softmax: "torch.nn.functional.softmax",
    torch.softmax: "torch.softmax",
    torch.Tensor.softmax: "Tensor.softmax",
    F.log_softmax: "torch.nn.functional.log_softmax",
    torch.log_softmax: "torch.log_softmax",
    torch.Tensor.log_softmax: "Tensor.log_softmax",
}
# the functions F.max_poolNd dispatch to (boolean_dispatch wrappers)
for _name in (
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "_max_pool1d",
    "_max_pool2d",
    "_max_pool3d",
):
    if hasattr(F, _name):
        _FUNCTIONS[getattr(F, _name)] = f"torch.nn.functional.{_name.lstrip('_')}"


def _covered(module: nn.Module) -> bool:
    if isinstance(module, MAXPOOLS):
        return not getattr(module, "return_indices", False)
    return isinstance(module, ELEMENTWISE)


def _argmax(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Flat positions (over the pooled axes) of each window's maximum, shape of the output."""
    dims = x.ndim - 2
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        adaptive = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[dims]
        return adaptive(x, module.output_size, return_indices=True)[1]  # type: ignore[call-overload]
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
    m: Any = module
    return pool(
        x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode, return_indices=True
    )[1]


def _unpool(values: torch.Tensor, index: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``values`` summed into the positions ``index`` of a zero tensor of ``shape`` (overlapping
    windows accumulate)."""
    out = torch.zeros(
        (*shape[:2], int(torch.Size(shape[2:]).numel())), dtype=values.dtype, device=values.device
    )
    out.scatter_add_(2, index.flatten(2), values.flatten(2))
    return out.reshape(shape)


def _derivative(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The elementwise derivative of ``module`` at ``x`` (its forward, without hooks)."""
    with torch.enable_grad():
        leaf = x.detach().clone().requires_grad_(True)
        (d,) = torch.autograd.grad(module.forward(leaf * 1).sum(), leaf)
    return d.detach()


class References:
    """The reference activations of one explain call and the two pass contexts that use them.

    Parameters
    ----------
    eps : float
        Below this ``|x - x0|`` a rule uses the module's own gradient instead of the
        difference quotient (Captum's ``eps``).
    n_points : int
        The points of the score function the passes run on (the range of the row index).
    """

    def __init__(self, eps: float, n_points: int) -> None:
        self.eps = eps
        self.n_points = n_points
        self.index: torch.Tensor | None = None  # the positions of the running model call's rows
        self.calls: dict[nn.Module, int] = {}  # calls of each module in the running model call
        self.store: dict[tuple[nn.Module, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.written: dict[tuple[nn.Module, int], torch.Tensor] = {}  # rows recorded, per call
        self.busy = False  # a rule is running (its own torch calls are not the model's)

    def tag(self, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The identity transform of :meth:`ScoreFunction.compose`: note which rows follow."""
        self.index = index
        self.calls.clear()
        return rows

    def _ordinal(self, module: nn.Module) -> int:
        k = self.calls.get(module, 0)
        self.calls[module] = k + 1
        return k

    def _record(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        key, index = (module, self._ordinal(module)), self.index
        if index is None:
            return y
        if key not in self.store:
            n = self.n_points
            self.store[key] = (x.new_empty((n, *x.shape[1:])), y.new_empty((n, *y.shape[1:])))
            self.written[key] = torch.zeros(n, dtype=torch.bool, device=index.device)
        x0, y0 = self.store[key]
        x0[index] = x.detach().to(x0.dtype)
        y0[index] = y.detach().to(y0.dtype)
        self.written[key][index] = True
        return y

    def _lookup(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._ordinal(module)
        found = self.store.get((module, k))
        if (
            found is None
            or self.index is None
            or found[0].shape[1:] != x.shape[1:]
            or found[1].shape[1:] != y.shape[1:]
            or not bool(self.written[(module, k)][self.index].all())  # a sample's path differed
        ):
            raise ModelCallError(
                f"{current_caller()}: the model took another path on the input than on the baseline "
                f"(call {k + 1} of {type(module).__name__} has no reference activation of shape "
                f"{tuple(x.shape[1:])}); DeepLift needs the same modules called in the same order "
                "for the input and its reference."
            )
        return found[0][self.index], found[1][self.index]

    def _rescale(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0, y0 = self._lookup(module, x, y)
        self.busy = True
        try:
            dx, dy = x.detach() - x0, y.detach() - y0
            small = dx.abs() < self.eps
            m = dy / dx.masked_fill(small, 1.0)
            if bool(small.any()):
                m = torch.where(small, _derivative(module, x), m)
        finally:
            self.busy = False
        return replace_backward(x, y, lambda g: g * m)

    def _maxpool(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0, y0 = self._lookup(module, x, y)
        self.busy = True
        try:
            xd, yd = x.detach(), y.detach()
            at_x, at_0 = _argmax(module, xd), _argmax(module, x0)
            top = torch.maximum(yd, y0)
            dx = xd - x0
            small = dx.abs() < self.eps
            safe = dx.masked_fill(small, 1.0)
        finally:
            self.busy = False

        def rule(g: torch.Tensor) -> torch.Tensor:
            # the window's change y - y0 goes to the maximum of the larger of the two windows
            moved = _unpool(g * (top - y0), at_x, x.shape) + _unpool(g * (yd - top), at_0, x.shape)
            return torch.where(small, _unpool(g, at_x, x.shape), moved / safe)

        return replace_backward(x, y, rule)

    def _handler(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if isinstance(module, MAXPOOLS):
            return self._maxpool(module, x, y)
        return self._rescale(module, x, y)

    # ---------------------------------------------------------------------------- pass contexts
    @contextmanager
    def recording(self, model: Any) -> Iterator[None]:
        """Pass context: store the covered modules' inputs and outputs on the reference rows."""
        covered = _modules(model)
        with rewired(model, {m: self._record for m in covered}):
            yield

    @contextmanager
    def rescaling(self, model: Any) -> Iterator[None]:
        """Pass context: the DeepLift multipliers as the covered modules' backward rules, and a
        :class:`DeepLiftCoverageWarning` for the nonlinearities no rule reaches."""
        covered = _modules(model)
        named = dict(model.named_modules()) if isinstance(model, nn.Module) else {}
        stack: list[tuple[str, bool]] = []
        handles: list[Any] = []

        def enter(name: str, known: bool) -> Callable[..., None]:
            def pre(module: nn.Module, _i: Any) -> None:
                stack.append((f"{name or '<model>'} ({type(module).__name__})", known))

            return pre

        def leave(_m: nn.Module, _i: Any, _o: Any) -> None:
            if stack:
                stack.pop()

        watch = _Functions(stack, lambda: self.busy)
        with rewired(model, {m: self._handler for m in covered}):
            try:
                # registered after the rules: a module leaves the stack after its rule ran
                for name, module in named.items():
                    known = module in covered or isinstance(module, UNCOVERED)
                    handles.append(module.register_forward_pre_hook(own_thread(enter(name, known))))
                    handles.append(module.register_forward_hook(own_thread(leave), always_call=True))
                with watch:
                    yield
            finally:
                for handle in reversed(handles):
                    handle.remove()
        found = [f"{n} ({type(m).__name__})" for n, m in named.items() if isinstance(m, UNCOVERED)]
        found += [
            f"{func} in {where}" + (f" (x{count})" if count > 1 else "")
            for (func, where), count in watch.found.items()
        ]
        if found:
            warn(
                f"{current_caller()}: no DeepLift rule reaches these nonlinearities of the model: "
                f"{'; '.join(found)}. They were backpropagated as plain gradients, so the "
                "attributions need not sum to f(x) - f(baseline). Rules cover the nn modules of "
                "elementwise activations (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, ...) and max "
                "pooling (nn.MaxPool1d/2d/3d, nn.AdaptiveMaxPool1d/2d/3d); use such modules.",
                DeepLiftCoverageWarning,
            )


def _modules(model: Any) -> list[nn.Module]:
    if not isinstance(model, nn.Module):
        return []
    return [m for m in model.modules() if _covered(m)]


class _Functions(TorchFunctionMode):
    """Records nonlinear functions the model calls outside the modules the rules know."""

    def __init__(self, stack: list[tuple[str, bool]], busy: Callable[[], bool]) -> None:
        super().__init__()
        self.stack = stack
        self.busy = busy
        self.found: dict[tuple[str, str], int] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = _FUNCTIONS.get(func)
        if name is not None and not self.busy() and not (self.stack and self.stack[-1][1]):
            key = (name, self.stack[-1][0] if self.stack else "<model>")
            self.found[key] = self.found.get(key, 0) + 1
        return func(*args, **(kwargs or {}))
