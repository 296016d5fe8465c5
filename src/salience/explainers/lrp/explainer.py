"""The LRP explainer: relevance propagated backwards with per-layer rules from a composite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ...engine import Explainer, OutputLike, Parts, ScoreFunction, own_thread
from ...errors import LayerError, ParameterError, SalienceWarning, current_caller, warn
from ...layout import LayoutLike
from ..backward_rules import replace_backward, rewired
from .composites import BATCHNORMS, COMPOSITES, Composite, epsilon_gamma_box, single
from .rules import AFFINE, LayerCall, Rule, divide

__all__ = ["LRP", "LRPCoverageWarning"]

CompositeLike = str | Composite | Rule
_MERGEABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class LRPCoverageWarning(SalienceWarning):
    """Some layers with parameters got no LRP rule and were backpropagated as plain gradients."""


def _merge_batchnorm(
    layer: nn.Linear | nn.modules.conv._ConvNd, bn: nn.modules.batchnorm._BatchNorm
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weight and bias of ``bn(layer(x))`` as one affine layer, or None if they do not compose."""
    weight = layer.weight.detach()
    if bn.training or bn.running_mean is None or bn.running_var is None or bn.num_features != weight.shape[0]:
        return None
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    bias = torch.zeros_like(scale) if layer.bias is None else layer.bias.detach()
    bias = (bias - bn.running_mean.detach()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.detach()
    return weight * scale.reshape(-1, *([1] * (weight.ndim - 1))), bias


def _seed(_module: nn.Module, out: torch.Tensor, _same: torch.Tensor) -> torch.Tensor:
    # relevance of the output: output * d score / d output (sums to the score for linear targets)
    value = out.detach()
    return replace_backward(out, out, lambda g: g * value)


class _Sum(torch.autograd.Function):
    """``a + b`` whose relevance is shared in proportion to ``a`` and ``b`` (epsilon rule)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, epsilon: float) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.epsilon = epsilon
        return a + b

    @staticmethod
    def backward(ctx: Any, r: torch.Tensor) -> tuple[Any, ...]:
        a, b = ctx.saved_tensors
        share = divide(r, a + b, ctx.epsilon)
        return a * share, b * share, None


def _activation(t: torch.Tensor) -> bool:
    """In the autograd graph of the input, and not a parameter."""
    return t.grad_fn is not None or (t.requires_grad and not isinstance(t, nn.Parameter))


_ADD = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_IADD = {torch.Tensor.add_, torch.Tensor.__iadd__}


class _FunctionalSums(TorchFunctionMode):
    """During the model's forward, ``a + b`` of two activations (residual connections) gets the
    epsilon rule instead of the gradient, which would hand the full relevance to both."""

    def __init__(self, epsilon: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.active = False
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.active and not kwargs and len(args) == 2 and (func in _ADD or func in _IADD):
            a, b = args
            if (
                isinstance(a, torch.Tensor)
                and isinstance(b, torch.Tensor)
                and _activation(a)
                and _activation(b)
                and a.shape == b.shape
                and a.is_floating_point()
            ):
                self.count += 1
                if func in _IADD:
                    out = _Sum.apply(a.clone(), b, self.epsilon)
                    return a.copy_(out)
                return _Sum.apply(a, b, self.epsilon)
        return func(*args, **kwargs)


def _rule_handler(rule: Rule) -> Callable[..., torch.Tensor]:
    def handler(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        call = LayerCall(module, x.detach())
        return replace_backward(x, y, lambda r: rule.relevance(call, r))

    return handler


class _LRPPass:
    """Pass context: the composite's rules on the model's layers, the relevance seed on its output
    (its errors name the explainer running, :func:`salience.errors.current_caller`)."""

    def __init__(self, composite: Composite) -> None:
        self.composite = composite

    def _plan(
        self, model: nn.Module, produced: dict[int, tuple[Any, ...]]
    ) -> dict[nn.Module, Callable[..., Any]]:
        comp = self.composite
        plan: dict[nn.Module, Callable[..., Any]] = {}
        uncovered: list[str] = []
        first_seen = False
        for name, module in model.named_modules():
            if isinstance(module, AFFINE):
                rule = comp.first if comp.first is not None and not first_seen else comp.rule_for(module)
                first_seen = True
                if rule is None:
                    uncovered.append(name or "<model>")
                else:
                    plan[module] = self._affine(rule, produced)
            elif isinstance(module, BATCHNORMS):
                plan[module] = self._batchnorm(comp.rule_for(module), produced)
            else:
                rule = comp.rule_for(module)
                if rule is not None:
                    if rule.needs_weights:
                        raise LayerError(
                            f"{current_caller()}: the composite {comp.name!r} maps {type(module).__name__} "
                            f"({name}) to {rule!r}, which needs a Linear or convolution layer."
                        )
                    plan[module] = _rule_handler(rule)
                elif any(True for _ in module.parameters(recurse=False)):
                    uncovered.append(f"{name or '<model>'} ({type(module).__name__})")
        if uncovered:
            warn(
                f"{current_caller()}: the composite {comp.name!r} has no rule for {', '.join(uncovered)}; "
                "plain gradients flow through them, so relevance is not conserved there.",
                LRPCoverageWarning,
            )
        return plan

    def _affine(self, rule: Rule, produced: dict[int, tuple[Any, ...]]) -> Callable[..., torch.Tensor]:
        merge = self.composite.merge_batchnorm

        def handler(
            module: nn.Linear | nn.modules.conv._ConvNd, x: torch.Tensor, y: torch.Tensor
        ) -> torch.Tensor:
            bias = None if module.bias is None else module.bias.detach()
            call = LayerCall(module, x.detach(), module.weight.detach(), bias)
            out = replace_backward(x, y, lambda r: rule.relevance(call, r))
            if merge and isinstance(module, _MERGEABLE):
                produced[id(out)] = (module, x, rule, out)
            return out

        return handler

    def _batchnorm(
        self, rule: Rule | None, produced: dict[int, tuple[Any, ...]]
    ) -> Callable[..., torch.Tensor]:
        merge = self.composite.merge_batchnorm

        def handler(
            module: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, y: torch.Tensor
        ) -> torch.Tensor:
            entry = produced.get(id(x))
            if merge and entry is not None and entry[3] is x:
                layer, x_layer, layer_rule, _ = entry
                merged = _merge_batchnorm(layer, module)
                if merged is not None:
                    call = LayerCall(layer, x_layer.detach(), *merged)
                    return replace_backward(x_layer, y, lambda r: layer_rule.relevance(call, r))
            if rule is None:
                return y
            return _rule_handler(rule)(module, x, y)

        return handler

    @contextmanager
    def __call__(self, model: Any) -> Iterator[None]:
        if not isinstance(model, nn.Module):
            raise ParameterError(
                f"{current_caller()} propagates relevance through the layers of an nn.Module; got a "
                f"{type(model).__name__}."
            )
        produced: dict[int, tuple[Any, ...]] = {}
        plan = self._plan(model, produced)
        sums = self.composite.sums
        mode = _FunctionalSums(sums.epsilon) if sums is not None else None

        def start(*_: Any) -> None:
            produced.clear()
            if mode is not None:
                mode.active = True

        def stop(*_: Any) -> None:
            if mode is not None:
                mode.active = False

        handles = [
            model.register_forward_pre_hook(own_thread(start)),
            model.register_forward_hook(own_thread(stop), always_call=True),
        ]
        try:
            with rewired(model, plan, output=_seed):
                if mode is None:
                    yield
                else:
                    with mode:
                        yield
        finally:
            for handle in handles:
                handle.remove()
            produced.clear()


def _resolve(composite: Any) -> Composite:
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, Rule):
        return single(composite)
    if isinstance(composite, str) and composite in COMPOSITES:
        return COMPOSITES[composite]()
    if isinstance(composite, str) and composite == "epsilon_gamma_box":
        raise ParameterError(
            f"The 'composite' parameter of {current_caller()}: 'epsilon_gamma_box' needs the input bounds; "
            "pass salience.lrp.epsilon_gamma_box(low=..., high=...) instead of the name."
        )
    hint = ""
    if isinstance(composite, type) and issubclass(composite, Rule):
        hint = f" (the class {composite.__name__}: pass an instance, e.g. {composite.__name__}())"
    elif callable(composite) and any(composite is f for f in (*COMPOSITES.values(), epsilon_gamma_box)):
        hint = f" (the function {composite.__name__}: pass its result, {composite.__name__}(...))"
    raise ParameterError(
        f"The 'composite' parameter of {current_caller()} must be one of "
        f"{', '.join(repr(n) for n in COMPOSITES)}, a salience.lrp.Composite or a rule such as "
        f"salience.lrp.Epsilon(1e-6). Got {composite!r} instead{hint}."
    )


class LRP(Explainer):
    """Layer-wise Relevance Propagation with per-layer rules (a composite).

    The explained output's relevance ``output * d score / d output`` (the score itself for
    ``Class`` targets) is propagated back to the input layer by layer: each Linear/convolution
    layer redistributes it with its rule, activations pass it through, average pooling uses the
    epsilon rule, and a BatchNorm that directly follows a Linear/convolution layer is merged into
    it for the computation (on detached copies of the weights; the model is not changed). The
    rules are installed by hooks that live only inside the call.

    Parameters
    ----------
    model : nn.Module
        See :class:`Explainer`.
    composite : str, Composite or Rule, default "epsilon"
        A named composite (``"epsilon"``, ``"epsilon_plus"``, ``"epsilon_plus_flat"``,
        ``"epsilon_alpha2_beta1"``, ``"epsilon_alpha2_beta1_flat"``), a
        :class:`~salience.lrp.Composite` (e.g. ``salience.lrp.epsilon_gamma_box(low, high)``), or
        one rule for every Linear/convolution layer. For deep conv nets ``"epsilon_plus_flat"``
        or ``epsilon_gamma_box`` give less noisy maps (Montavon et al. 2019).
    batch_size, layout
        See :class:`Explainer`.

    Returns
    -------
    Attribution of ``x.shape``: the relevance of each input element. ``delta`` is the
    conservation gap ``relevance.sum() - score`` per sample; it is the relevance absorbed by
    biases and stabilisers (0 up to float error for the epsilon rule on bias-free layers with
    ``epsilon -> 0``). For non-linear targets (Probability, ...) the relevance sums to
    ``output . d score / d output`` instead of the score.

    Notes
    -----
    Residual additions written functionally (``out = out + identity``, ``out += identity``,
    ``torch.add``, ``add_``) of two activations share the relevance in proportion to the two
    terms (``Composite.sums``, the epsilon rule; zennit needs a model-specific canonizer for
    this). Other functional operations carry their plain gradient: ``torch.relu`` and
    ``flatten``/``cat`` are harmless, but a functional ``x.mean(...)`` pooling spreads relevance
    uniformly, also onto zero activations where it is lost; use pooling modules
    (``nn.AdaptiveAvgPool1d``), which get the epsilon rule. Layers with parameters but no rule
    are named in an :class:`LRPCoverageWarning`; ``delta`` shows what was not conserved.

    References
    ----------
    Bach et al., PLoS ONE 2015; Montavon, Binder, Lapuschkin, Samek & Müller, "Layer-Wise
    Relevance Propagation: An Overview", LNCS 11700, 2019; Kohlbrenner et al., "Towards Best
    Practice in Explaining Neural Network Decisions with LRP", IJCNN 2020.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3, bias=False), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.Linear(4 * 14, 3, bias=False)).eval()
    >>> attr = LRP(model, composite="epsilon").explain(torch.randn(5, 2, 16), target=0)
    >>> attr.values.shape, bool(attr.delta.abs().max() < 1e-4)
    (torch.Size([5, 2, 16]), True)
    """

    def __init__(
        self,
        model: Any,
        *,
        composite: CompositeLike = "epsilon",
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.composite = _resolve(composite)

    def __repr__(self) -> str:
        return f"{self.name}(composite={self.composite.name!r}, batch_size={self.batch_size})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        lrp = score.under(_LRPPass(self.composite))
        relevance = lrp.gradient_at_input()
        delta = relevance.flatten(1).sum(1) - lrp.input_values()
        return Parts(relevance, delta=delta, info={"composite": self.composite.name})
