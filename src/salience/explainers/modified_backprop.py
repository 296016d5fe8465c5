"""Modified ReLU backpropagation: Guided Backprop, DeconvNet and Guided Grad-CAM.

The ReLU backward rule is replaced inside the call only, by hooks on the model's ``nn.ReLU``
modules that exist for one pass of model calls (:meth:`ScoreFunction.under`) and are removed in
``finally``. ReLUs applied functionally (``torch.relu``, ``torch.nn.functional.relu``,
``Tensor.relu``) cannot be reached by module hooks: they are detected during the forward pass by a
``__torch_function__`` mode and reported in a :class:`ReLUCoverageWarning` naming the function
and the module that called it; they keep their plain gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..engine import Explainer, OutputLike, Parts, ScoreFunction, own_thread
from ..errors import SalienceWarning, current_caller, warn
from ..layout import LayoutLike
from .backward_rules import replace_backward, rewired
from .cam import GradCAM, LayerLike, Reshape

__all__ = ["GuidedBackprop", "DeconvNet", "GuidedGradCAM", "ReLUCoverageWarning"]


class ReLUCoverageWarning(SalienceWarning):
    """Some ReLUs of the model were not reached by a modified backward rule."""


_RELU_FUNCTIONS: dict[Any, str] = {
    torch.relu: "torch.relu",
    torch.relu_: "torch.relu_",
    F.relu: "torch.nn.functional.relu",
    F.relu_: "torch.nn.functional.relu_",
    torch.Tensor.relu: "Tensor.relu",
    torch.Tensor.relu_: "Tensor.relu_",
}


def _guided(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Springenberg et al.: pass only positive gradients, only where the input was positive
    positive = x > 0
    return replace_backward(x, y, lambda g: g.clamp(min=0) * positive.to(g.dtype))


def _deconv(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Zeiler & Fergus: the backward ReLU is a ReLU of the gradient, ignoring the forward input
    return replace_backward(x, y, lambda g: g.clamp(min=0))


class _FunctionalReLUs(TorchFunctionMode):
    """Records ReLUs called as functions outside the hooked ``nn.ReLU`` modules."""

    def __init__(self, stack: list[str], covered: Callable[[], bool]) -> None:
        super().__init__()
        self.stack = stack
        self.covered = covered
        self.found: dict[tuple[str, str], int] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = _RELU_FUNCTIONS.get(func)
        if name is not None and not self.covered():
            key = (name, self.stack[-1] if self.stack else "<model>")
            self.found[key] = self.found.get(key, 0) + 1
        return func(*args, **(kwargs or {}))


class _ReLURule:
    """Pass context: install a ReLU backward rule on every ``nn.ReLU`` of the model (its
    warnings name the explainer running, :func:`salience.errors.current_caller`)."""

    def __init__(self, handler: Callable[..., torch.Tensor]) -> None:
        self.handler = handler

    @contextmanager
    def __call__(self, model: Any) -> Iterator[None]:
        modules = dict(model.named_modules()) if isinstance(model, nn.Module) else {}
        relus = {m: n for n, m in modules.items() if isinstance(m, nn.ReLU)}
        stack: list[str] = []
        kinds: list[bool] = []
        handles: list[Any] = []

        def enter(name: str, is_relu: bool) -> Callable[..., None]:
            def pre(_m: nn.Module, _i: Any) -> None:
                stack.append(f"{name or '<model>'} ({type(_m).__name__})")
                kinds.append(is_relu)

            return pre

        def leave(_m: nn.Module, _i: Any, _o: Any) -> None:
            if stack:
                stack.pop()
                kinds.pop()

        watch = _FunctionalReLUs(stack, lambda: bool(kinds) and kinds[-1])
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_pre_hook(own_thread(enter(name, module in relus))))
                handles.append(module.register_forward_hook(own_thread(leave), always_call=True))
            with rewired(model, {m: self.handler for m in relus}), watch:
                yield
        finally:
            for handle in reversed(handles):
                handle.remove()
        if watch.found:
            where = "; ".join(
                f"{func} in {module}" + (f" (x{count})" if count > 1 else "")
                for (func, module), count in watch.found.items()
            )
            warn(
                f"{current_caller()}: the model applies ReLU functionally ({where}). The modified "
                f"backward rule reaches only nn.ReLU modules ({len(relus)} found), so these ReLUs "
                "were backpropagated as plain gradients. Use nn.ReLU modules to cover them.",
                ReLUCoverageWarning,
            )
        elif not relus:
            others = sorted({type(m).__name__ for m in modules.values() if isinstance(m, _OTHER_ACTIVATIONS)})
            warn(
                f"{current_caller()}: the model has no nn.ReLU module and calls no ReLU function "
                f"(activations found: {', '.join(others) if others else 'none'}), so the modified "
                "backward rule changed nothing: the result is the plain gradient.",
                ReLUCoverageWarning,
            )


# activation modules that are not nn.ReLU (named when a ReLU rule finds nothing to modify)
_OTHER_ACTIVATIONS = (
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
    nn.Tanh,
    nn.Sigmoid,
)


class GuidedBackprop(Explainer):
    """Guided Backpropagation: the gradient with every ReLU's backward rule made "guided".

    At each ``nn.ReLU`` the gradient is passed back only where both the forward input and the
    incoming gradient are positive: ``grad_in = max(grad_out, 0) * [x > 0]``. The rule is
    installed by hooks that live only inside the call; the model is never modified. ReLUs applied
    functionally (``torch.relu``, ``F.relu``, ``Tensor.relu``) cannot be reached: they keep the
    plain gradient and a :class:`ReLUCoverageWarning` names them. Other activations (GELU, ...)
    keep their gradient, as in Captum.

    Parameters
    ----------
    model, batch_size, layout
        See :class:`Explainer`.

    Returns
    -------
    Attribution of ``x.shape`` (signed; no absolute value or normalisation).

    References
    ----------
    Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All Convolutional
    Net", ICLR workshop 2015.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.Linear(4 * 14, 3)).eval()
    >>> GuidedBackprop(model).explain(torch.randn(5, 2, 16), target=0).values.shape
    torch.Size([5, 2, 16])
    """

    _handler = staticmethod(_guided)

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> torch.Tensor:
        return score.under(_ReLURule(self._handler)).gradient_at_input()


class DeconvNet(GuidedBackprop):
    """DeconvNet: the gradient with every ReLU's backward rule replaced by a ReLU of the gradient.

    At each ``nn.ReLU``: ``grad_in = max(grad_out, 0)``, whatever the forward input was. Hooks,
    coverage and the warning for functional ReLUs are as in :class:`GuidedBackprop`.

    References
    ----------
    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """

    _handler = staticmethod(_deconv)


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: Guided Backprop times the upsampled Grad-CAM of a layer.

    ``GuidedBackprop(x) * upsample(ReLU(sum_k mean(G_k) A_k))``: the Grad-CAM map (one channel,
    interpolated linearly, bilinearly or trilinearly to the input's spatial size,
    ``align_corners=False``) multiplies every input channel of the Guided Backprop map. Two
    passes per sample: one for Grad-CAM (plain gradients), one for Guided Backprop.

    Parameters
    ----------
    model, layer, relu, reshape, final_activation, batch_size, layout
        See :class:`~salience.explainers.cam.LayerExplainer` (the map is always upsampled).
        With ``final_activation="strip"`` both parts explain the pre-activation output.

    Returns
    -------
    Attribution of ``x.shape`` (signed, unnormalised); ``layer`` records the Grad-CAM layer and
    ``info["cam"]`` the upsampled Grad-CAM map.

    Notes
    -----
    Captum's ``GuidedGradCam`` upsamples with ``interpolate_mode="nearest"`` by default; the
    paper and this class interpolate (bilinear for images). With Captum's
    ``interpolate_mode="linear"/"bilinear"/"trilinear"`` the two agree.

    References
    ----------
    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017.
    """

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        relu: bool = True,
        reshape: Reshape = "auto",
        final_activation: str = "warn",
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            model,
            layer=layer,
            relu=relu,
            upsample=True,
            reshape=reshape,
            final_activation=final_activation,
            batch_size=batch_size,
            layout=layout,
            output=output,
        )

    def __repr__(self) -> str:
        layer = self.layer if not isinstance(self.layer, nn.Module) else type(self.layer).__name__
        return f"{self.name}(layer={layer!r}, relu={self.relu})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        # ``score`` is already the explained one (final_activation handled by GradCAM's
        # explained_score), so both parts explain the same function
        cam = super().attribute(x, score)
        gbp = score.under(_ReLURule(_guided)).gradient_at_input()
        info = dict(cam.info)
        info["cam"] = cam.values
        return Parts(gbp * cam.values, layout=cam.layout, layer=cam.layer, scores=cam.scores, info=info)
