"""Layer attributions: how much each unit of a layer's output contributed to the score.

:class:`LayerIntegratedGradients`, :class:`LayerGradientXActivation` and
:class:`LayerConductance` attribute the explained score to the output of one layer of the model
(an embedding, a patch embedding, a convolution), not to the input. Their maps have the shape of
that output, (B, *A), and are returned as an :class:`~salience.Attribution` whose ``layout``
names the layer's axes, whose ``layer`` is the layer's name and whose ``info["space"]`` is
``"layer"``.

The layer is found as the CAMs find theirs (a dotted name, the module, or None for the last
layer with a spatial output). Hooks exist only inside a call, are removed in ``finally`` and act
only in the calling thread. Every model call goes through the score function, chunked to
``batch_size`` rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .._validation import check_bool, check_int, check_option
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..engine._hooks import own_thread
from ..engine.layers import target_layer
from ..errors import LayerError, ParameterError, ShapeError, current_caller
from ..layout import Layout, LayoutLike, as_layout
from .integrated_gradients import RULES, BaselineLike, _check_baseline, quadrature, resolve_baseline

__all__ = ["LayerIntegratedGradients", "LayerGradientXActivation", "LayerConductance"]

LayerLike = None | str | nn.Module


class _LayerAttribution(Explainer):
    """Base of the layer attributions: the layer, the layer's layout and the result."""

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        layer_layout: LayoutLike | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        if not (layer is None or isinstance(layer, (str, nn.Module))):
            raise ParameterError(
                f"The 'layer' parameter of {self.name} must be None, a dotted module name or an "
                f"nn.Module. Got {type(layer).__name__} instead."
            )
        self.layer = layer
        self.layer_layout = None if layer_layout is None else as_layout(layer_layout)

    def __repr__(self) -> str:
        layer = self.layer if not isinstance(self.layer, nn.Module) else type(self.layer).__name__
        return f"{self.name}(layer={layer!r})"

    def _find(self, x: torch.Tensor, score: ScoreFunction) -> tuple[str, nn.Module]:
        """The explained layer: the named one, or the CAMs' default (the last spatial layer)."""
        if self.layer is None:
            sizes = tuple(x.shape[i] for i in score.layout.spatial_axes)
            name, module, _ = target_layer(score, None, sizes)
            return name, module
        return score.find_layer(self.layer)

    def _layout(self, values: torch.Tensor, input_layout: Layout) -> Layout:
        """The axes of the layer's output: ``layer_layout``, else the input's channel and
        spatial names when the output has as many axes (a channels-first feature map), else
        ``b a1 a2 ...``."""
        if self.layer_layout is not None:
            if self.layer_layout.ndim != values.ndim:
                raise ShapeError(
                    f"The 'layer_layout' parameter of {self.name} names {self.layer_layout.ndim} axes "
                    f"({self.layer_layout}), but the layer's output has shape {tuple(values.shape)}."
                )
            return self.layer_layout
        canonical = ("b", "c", *input_layout.spatial)
        if len(canonical) == values.ndim:
            return Layout(" ".join(canonical))
        return Layout(" ".join(["b", *(f"a{i}" for i in range(1, values.ndim))]))

    def _parts(
        self,
        values: torch.Tensor,
        score: ScoreFunction,
        name: str,
        delta: torch.Tensor | None = None,
        **info: Any,
    ) -> Parts:
        return Parts(
            values,
            delta=delta,
            layout=self._layout(values, score.layout),
            layer=name,
            info={"space": "layer", "layer_shape": tuple(values.shape[1:]), **info},
        )


def _check_rule(rule: str, n_points: int) -> str:
    rule = check_option(rule, "rule", options=RULES)
    if rule == "riemann_trapezoid" and n_points < 2:
        raise ParameterError(
            f"The 'n_steps' parameter of {current_caller()} must give at least 2 points for rule "
            f"'riemann_trapezoid'. Got {n_points} point(s)."
        )
    return rule


class LayerGradientXActivation(_LayerAttribution):
    """Gradient times activation at a layer: ``A * dS/dA`` for the layer's output ``A``.

    One forward and backward pass over the batch (the backward stops at the layer).

    Parameters
    ----------
    model : nn.Module
        Never modified; the forward hook exists only during a call.
    layer : str or nn.Module, optional
        The layer whose output is explained, as a dotted name or the module; None picks the CAMs'
        default (the last layer whose output is spatial like the input, see
        :func:`salience.layers`).
    multiply_by_inputs : bool, default True
        False returns the gradient ``dS/dA`` alone (Captum's ``LayerGradientXActivation`` with
        ``multiply_by_inputs=False``).
    layer_layout : str or Layout, optional
        Names of the layer output's axes (e.g. ``"b t c"`` for an embedding's (B, L, D)). By
        default, an output with the input's number of axes is read channels-first with the
        input's spatial names (``"b c t"``, ``"b c h w"``); any other as ``"b a1 a2 ..."``.
    batch_size, layout, output
        See :class:`~salience.engine.Explainer`.

    Returns
    -------
    Attribution
        ``values`` of the layer output's shape (B, *A), ``layout`` naming its axes, ``layer`` the
        layer's name, ``info["space"] == "layer"``.

    References
    ----------
    Shrikumar et al., "Not Just a Black Box: Learning Important Features Through Propagating
    Activation Differences", 2016 (gradient x input), applied at a layer as in Captum.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
    ...                       nn.Flatten(), nn.Linear(8, 2)).eval()
    >>> attr = LayerGradientXActivation(model, layer="0").explain(torch.randn(2, 3, 50), target=1)
    >>> attr.values.shape, str(attr.layout), attr.layer
    (torch.Size([2, 8, 50]), 'b c t', '0')
    """

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        multiply_by_inputs: bool = True,
        layer_layout: LayoutLike | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            model, layer=layer, layer_layout=layer_layout, batch_size=batch_size, layout=layout, output=output
        )
        self.multiply_by_inputs = check_bool(multiply_by_inputs, "multiply_by_inputs")

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        name, module = self._find(x, score)
        _, a, g = score.layer_gradients(module)
        if g is None:  # grad=True always returns gradients
            raise LayerError(f"{self.name}: no gradient at layer {name!r}.")
        values = a * g if self.multiply_by_inputs else g
        return self._parts(values, score, name, multiply_by_inputs=self.multiply_by_inputs)


class _Swap:
    """Replaces a layer's output by given rows during the model calls of one pass.

    ``transform`` (a score function transform, see :meth:`ScoreFunction.compose`) receives the
    layer-space rows, keeps them for the hook and returns the input rows of their samples; the
    forward hook then returns the kept rows (a copy, so that in-place operations after the layer
    leave them intact) instead of what the layer computed. The rows are the leaves the score
    function differentiates, so the gradient is taken with respect to the layer's output.
    """

    def __init__(self, module: nn.Module, name: str, inputs: torch.Tensor) -> None:
        self.module, self.name, self.inputs = module, name, inputs
        self.pending: torch.Tensor | None = None
        self.owner = current_caller()

    def transform(self, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        self.pending = rows
        return self.inputs[index]

    def _hook(self, _module: nn.Module, _inputs: Any, out: Any) -> torch.Tensor:
        rows = self.pending
        if rows is None:
            raise LayerError(
                f"{self.owner}: the layer {self.name!r} ran more than once in one forward pass (a module "
                "reused); its output cannot be replaced by one path point. Pick a module that runs once "
                "(see salience.layers(model, x))."
            )
        self.pending = None
        if not isinstance(out, torch.Tensor) or out.shape != rows.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise LayerError(
                f"{self.owner}: the layer {self.name!r} returned {got} for {rows.shape[0]} rows, not the "
                f"shape of its output at the explained input {tuple(rows.shape)}."
            )
        return rows.to(out.dtype).clone()

    @contextmanager
    def _hooked(self) -> Iterator[None]:
        handle = self.module.register_forward_hook(own_thread(self._hook))
        try:
            yield
        finally:
            handle.remove()
            self.pending = None

    def __call__(self, _model: Any) -> Any:  # a PassContext
        return self._hooked()


class LayerIntegratedGradients(_LayerAttribution):
    """Integrated Gradients at a layer's output, along the straight path between the layer's
    outputs at the baseline and at the input.

    ``attr = (A(x) - A(x0)) * integral_0^1 dS/dA (A(x0) + a (A(x) - A(x0))) da``, where the
    layer's output is *replaced* by the path point (the layers before it run on ``x``, as in
    Captum's ``LayerIntegratedGradients``). The integral uses a named quadrature rule (as
    :class:`~salience.IntegratedGradients`), the path points are built chunk by chunk and the
    gradients accumulated with the rule's weights. ``Attribution.delta`` is the completeness gap
    ``sum(attr) - (f(x) - f(x0))``, exact up to the rule's error when the layer is a cut of the
    network (every path from the input to the output goes through it).

    Costs a pass of B rows for ``A(x)``, one for ``A(x0)`` and ``n_steps * B`` rows for the path.

    Parameters
    ----------
    model : nn.Module
        Never modified; hooks exist only during a call.
    layer : str or nn.Module, optional
        See :class:`LayerGradientXActivation`.
    n_steps : int, default 50
    rule : str, default "riemann_trapezoid"
        Captum's names and nodes (see :class:`~salience.IntegratedGradients`); Captum defaults to
        ``"gausslegendre"``.
    baseline : "zeros", "mean", float, Tensor or callable, default "zeros"
        The baseline *input* ``x0`` (as for :class:`~salience.IntegratedGradients`); its layer
        output is the start of the path.
    multiply_by_inputs : bool, default True
        False returns the path-averaged gradient without the factor ``A(x) - A(x0)`` (Captum's
        option), and no ``delta``.
    layer_layout, batch_size, layout, output
        See :class:`LayerGradientXActivation`.

    References
    ----------
    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017; at a layer
    as in Captum's ``LayerIntegratedGradients`` (Kokhlikyan et al., 2020).
    """

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        n_steps: int = 50,
        rule: str = "riemann_trapezoid",
        baseline: BaselineLike = "zeros",
        multiply_by_inputs: bool = True,
        layer_layout: LayoutLike | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            model, layer=layer, layer_layout=layer_layout, batch_size=batch_size, layout=layout, output=output
        )
        self.n_steps = check_int(n_steps, "n_steps", low=1)
        self.rule = _check_rule(rule, self.n_steps)
        self.baseline = _check_baseline(baseline)
        self.multiply_by_inputs = check_bool(multiply_by_inputs, "multiply_by_inputs")

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, n_steps={self.n_steps}, rule={self.rule!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        name, module = self._find(x, score)
        x0 = resolve_baseline(self.baseline, x, score)
        _, a_x, _ = score.layer_gradients(module, grad=False)
        f_0, a_0, _ = score.repeat(x0, 1).layer_gradients(module, grad=False)
        if a_0.shape != a_x.shape:
            raise LayerError(
                f"{self.name}: the layer {name!r} returned {tuple(a_0.shape)} at the baseline and "
                f"{tuple(a_x.shape)} at the input; the path between them needs one shape."
            )
        n = self.n_steps
        alphas, weights = quadrature(self.rule, n)
        alphas = alphas.to(device=a_x.device, dtype=a_x.dtype)
        diff = a_x - a_0
        view = (-1,) + (1,) * (a_x.ndim - 1)

        def path(start: int, stop: int) -> torch.Tensor:  # rows start..stop of the B * n points
            r = torch.arange(start, stop, device=a_x.device)
            rb, k = r // n, r % n
            return torch.addcmul(a_0[rb], alphas[k].reshape(view), diff[rb])

        swap = _Swap(module, name, score.input)
        on_layer = score.compose(swap.transform, a_x, self._layout(a_x, score.layout)).under(swap)
        _, grad_sum = on_layer.gradients(path, n=n, weights=weights)
        if not self.multiply_by_inputs:
            return self._parts(grad_sum, score, name, rule=self.rule, n_steps=n, multiply_by_inputs=False)
        values = diff * grad_sum
        f_x = score.input_values()  # cached by layer_gradients
        delta = values.flatten(1).sum(1) - (f_x - f_0)
        return self._parts(values, score, name, delta=delta, rule=self.rule, n_steps=n, baseline_scores=f_0)


class LayerConductance(_LayerAttribution):
    """Conductance of each unit of a layer's output (Dhamdhere, Sundararajan & Yan, 2018).

    ``cond_j = integral_0^1 dS/dA_j (x_a) * dA_j(x_a)/da da`` along the straight input path
    ``x_a = x0 + a (x - x0)``: the flow of Integrated Gradients through unit ``j``. Discretised as
    in the paper and in Captum: with the nodes ``a_0 < ... < a_n`` of ``rule`` for ``n_steps + 1``
    points, ``cond = sum_k dS/dA (x_{a_k}) * (A(x_{a_{k+1}}) - A(x_{a_k}))``. With the default
    ``"riemann_trapezoid"`` (``a_k = k / n``) the differences telescope to ``A(x) - A(x0)``, the
    conductances of a layer that is a cut of the network sum to ``f(x) - f(x0)`` up to the
    discretisation error, and ``Attribution.delta`` records that gap.

    Costs ``(n_steps + 1) * B`` rows of forward and backward passes (the backward stops at the
    layer), plus one pass of B rows for the score at ``x`` with a rule that does not end at 1.
    The path's points and the layer's activations and gradients at them are held at once.

    Parameters
    ----------
    model : nn.Module
    layer : str or nn.Module, optional
        See :class:`LayerGradientXActivation`.
    n_steps : int, default 50
        Number of steps; the path has ``n_steps + 1`` points.
    rule : str, default "riemann_trapezoid"
        Which nodes (Captum's names, see :class:`~salience.IntegratedGradients`); the weights
        are not used, only the node placement. Captum defaults to ``"gausslegendre"``, whose
        nodes stop short of both ends, so its conductances do not add up to ``A(x) - A(x0)``.
    baseline : "zeros", "mean", float, Tensor or callable, default "zeros"
    layer_layout, batch_size, layout, output
        See :class:`LayerGradientXActivation`.

    References
    ----------
    Dhamdhere, Sundararajan & Yan, "How Important Is a Neuron?", ICLR 2019 (arXiv:1805.12233,
    2018).
    """

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        n_steps: int = 50,
        rule: str = "riemann_trapezoid",
        baseline: BaselineLike = "zeros",
        layer_layout: LayoutLike | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            model, layer=layer, layer_layout=layer_layout, batch_size=batch_size, layout=layout, output=output
        )
        self.n_steps = check_int(n_steps, "n_steps", low=1)
        self.rule = _check_rule(rule, self.n_steps + 1)
        self.baseline = _check_baseline(baseline)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, n_steps={self.n_steps}, rule={self.rule!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        name, module = self._find(x, score)
        x0 = resolve_baseline(self.baseline, x, score)
        m = self.n_steps + 1
        alphas = quadrature(self.rule, m)[0].to(device=x.device, dtype=x.dtype)
        b = x.shape[0]
        view = (1, m) + (1,) * (x.ndim - 1)
        path = torch.addcmul(x0.unsqueeze(1), alphas.reshape(view), (x - x0).unsqueeze(1))
        values, a, g = score.repeat(path.reshape(b * m, *x.shape[1:]), m).layer_gradients(module)
        if g is None:  # grad=True always returns gradients
            raise LayerError(f"{self.name}: no gradient at layer {name!r}.")
        a = a.reshape(b, m, *a.shape[1:])
        g = g.reshape(b, m, *g.shape[1:])
        cond = (g[:, :-1] * a.diff(dim=1)).sum(1)
        values = values.reshape(b, m)
        delta = None
        if float(alphas[-1]) == 1.0 and float(alphas[0]) == 0.0:
            f_x = score.record_input_values(values[:, -1])
            delta = cond.flatten(1).sum(1) - (f_x - values[:, 0])
        return self._parts(cond, score, name, delta=delta, rule=self.rule, n_steps=self.n_steps)
