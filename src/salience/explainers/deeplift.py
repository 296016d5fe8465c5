"""DeepLift (rescale rule) and DeepLiftShap: reference-based attribution through modified backward
rules (Shrikumar et al. 2017; Lundberg & Lee 2017)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validation import all_finite, check_bool, check_float
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError, SalienceError, current_caller
from ..layout import LayoutLike
from ._deeplift_rules import DeepLiftCoverageWarning, References
from .integrated_gradients import BaselineLike, _check_baseline, resolve_baseline

__all__ = ["DeepLift", "DeepLiftShap", "DeepLiftCoverageWarning"]

#: a distribution of baselines: a tensor (K, *S) or a callable ``x -> (K, *S)``
Distribution = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def multipliers(
    x: torch.Tensor, refs: torch.Tensor, score: ScoreFunction, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeepLift's multipliers of ``x`` (B, *S) against each of its references ``refs`` (B, K, *S).

    Two passes of ``B * K`` rows: the references (recording their activations at the covered
    modules), then the inputs with the multiplier rules as backward rules.

    Returns
    -------
    f_x : Tensor of shape (B,)
        Scores at ``x``.
    f_ref : Tensor of shape (B, K)
        Scores at the references.
    m : Tensor of shape (B, K, *S)
        The multipliers ``d score / d x`` of the rescale rules, one per reference.
    """
    b, k = refs.shape[0], refs.shape[1]
    if k == 1:
        points, s = x, score
    else:
        points = x.repeat_interleave(k, 0)
        s = score.repeat(points, k)
    references = References(eps, n_points=points.shape[0])
    tagged = s.compose(references.tag, points, s.layout)
    f_ref = tagged.under(references.recording).values(refs.reshape(b * k, 1, *refs.shape[2:]))
    f_x, m = tagged.under(references.rescaling).gradients(points.unsqueeze(1))
    f_x = f_x.reshape(b, k)[:, 0]
    score.record_input_values(f_x)
    return f_x, f_ref.reshape(b, k), m.reshape(b, k, *x.shape[1:])


class DeepLift(Explainer):
    """DeepLift with the rescale rule: ``(x - x0) * m``, ``m`` the gradient with every
    nonlinearity's derivative replaced by its difference quotient against the baseline.

    The input and its baseline ``x0`` are run through the model; at each covered module the
    backward rule becomes DeepLift's multiplier (Shrikumar et al. 2017, as in Captum):

    - elementwise activations (``nn.ReLU``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.GELU``, ``nn.ELU``,
      ``nn.Softplus``, ... every ``torch.nn`` elementwise activation): the rescale rule
      ``(y - y0) / (x - x0)``, and the module's own derivative where ``|x - x0| < eps``;
    - max pooling (``nn.MaxPool1d/2d/3d``, ``nn.AdaptiveMaxPool1d/2d/3d``): each window's change
      ``max(x) - max(x0)`` is given to the position of the maximum of whichever window is larger
      (Captum's maxpool rule) and divided by that position's ``x - x0``.

    Linear layers (convolutions, linear, average pooling, batch norm in eval mode) keep their
    gradient, which is their exact multiplier. The attributions then sum to ``f(x) - f(x0)``
    (``Attribution.delta`` is the gap, zero up to rounding when every nonlinearity is covered).

    Two passes of B rows each: the baselines (forward only), recording the covered modules'
    inputs and outputs, then the inputs with the rules. Rows are matched by position, so every
    ``batch_size`` (1 included) gives the same result; the recorded activations of all B rows
    are kept until the call ends. The rules are installed by hooks that exist only inside the
    call and act only in its thread; the model is never modified. Nonlinearities no rule reaches
    (functional calls such as ``torch.relu`` or ``F.max_pool2d``, ``nn.Softmax``,
    ``nn.LayerNorm``, attention) keep their plain gradient and a
    :class:`DeepLiftCoverageWarning` names them.

    Parameters
    ----------
    model, batch_size, layout, output
        See :class:`Explainer`.
    baseline : "zeros", "mean", float, Tensor or callable, default "zeros"
        ``x0``, as in :class:`~salience.IntegratedGradients`: zeros, the per-sample per-channel
        mean over the non-channel axes, a constant, a tensor broadcastable to x, or a function
        ``x -> x0``. Inside a domain it is given in the domain's coefficients.
    multiply_by_inputs : bool, default True
        ``(x - x0) * m`` (Captum's "global" attribution); False returns the multipliers ``m``
        themselves (then ``delta`` is None).
    eps : float, default 1e-10
        Below this ``|x - x0|`` at a module's input, the module's own derivative is used
        (Captum's ``eps``).

    Returns
    -------
    Attribution of ``x.shape`` (signed); ``delta`` (B,) the gap ``sum(attr) - (f(x) - f(x0))``;
    ``info["baseline_scores"]`` the scores ``f(x0)``.

    Notes
    -----
    Differences from Captum's ``DeepLift``: the rules also cover the elementwise activations
    Captum leaves at their plain gradient (GELU, SiLU, ...) and adaptive max pooling; a module
    used several times in one forward pass is supported (Captum raises); with overlapping
    max-pool windows the contributions of the windows sharing a maximum are summed (Captum's
    ``max_unpool`` keeps one); Captum's ``nn.Softmax`` rule is not reproduced (softmax keeps its
    gradient and is reported). With ``multiply_by_inputs=False`` no delta is reported.

    References
    ----------
    Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating Activation
    Differences", ICML 2017.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.Linear(4 * 14, 3)).double().eval()
    >>> attr = DeepLift(model).explain(torch.randn(5, 2, 16, dtype=torch.float64), target=0)
    >>> attr.values.shape, bool(attr.delta.abs().max() < 1e-10)
    (torch.Size([5, 2, 16]), True)
    """

    def __init__(
        self,
        model: Any,
        *,
        baseline: BaselineLike = "zeros",
        multiply_by_inputs: bool = True,
        eps: float = 1e-10,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.baseline = _check_baseline(baseline)
        self.multiply_by_inputs = check_bool(multiply_by_inputs, "multiply_by_inputs")
        self.eps = check_float(eps, "eps", low=0.0)

    def __repr__(self) -> str:
        return f"{self.name}(baseline={self.baseline!r}, multiply_by_inputs={self.multiply_by_inputs})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        x0 = resolve_baseline(self.baseline, x, score)
        f_x, f_0, m = multipliers(x, x0.unsqueeze(1), score, self.eps)
        m, f_0 = m[:, 0], f_0[:, 0]
        if not self.multiply_by_inputs:
            return Parts(m, info={"baseline_scores": f_0})
        attr = (x - x0) * m
        delta = attr.flatten(1).sum(1) - (f_x - f_0)
        return Parts(attr, delta=delta, info={"baseline_scores": f_0})


def check_distribution(baselines: Any, owner: str | None = None) -> Any:
    """``baselines`` if it is a tensor (K, *S) with K >= 1 or a callable, else ParameterError."""
    owner = owner or current_caller()
    if callable(baselines) and not isinstance(baselines, torch.Tensor):
        return baselines
    if not isinstance(baselines, torch.Tensor) or baselines.ndim < 1 or baselines.shape[0] < 1:
        got = (
            f"shape {tuple(baselines.shape)}"
            if isinstance(baselines, torch.Tensor)
            else type(baselines).__name__
        )
        raise ParameterError(
            f"The 'baselines' parameter of {owner} must be a tensor (K, *S) of K >= 1 reference "
            f"samples or a callable x -> (K, *S). Got {got} instead."
        )
    return baselines


def resolve_distribution(baselines: Distribution, x: torch.Tensor, owner: str | None = None) -> torch.Tensor:
    """The baseline distribution as a tensor (K, *S) on ``x``'s device and dtype."""
    owner = owner or current_caller()
    if callable(baselines) and not isinstance(baselines, torch.Tensor):
        try:
            d: object = baselines(x)
        except SalienceError:
            raise
        except Exception as err:
            raise ParameterError(
                f"The baselines callable of {owner} raised {type(err).__name__}: {err} (on x of "
                f"shape {tuple(x.shape)}, dtype {x.dtype})."
            ) from err
    else:
        d = baselines
    if not isinstance(d, torch.Tensor):
        raise ParameterError(
            f"The baselines callable of {owner} must return a tensor. Got {type(d).__name__}."
        )
    if d.ndim != x.ndim or d.shape[0] < 1 or d.shape[1:] != x.shape[1:]:
        raise ParameterError(
            f"The 'baselines' parameter of {owner} must have shape (K, {', '.join(map(str, x.shape[1:]))}) "
            f"with K >= 1: one reference sample per row, shaped like a sample of x {tuple(x.shape)}. "
            f"Got shape {tuple(d.shape)} instead."
        )
    if d.is_complex() or not all_finite(d):
        raise ParameterError(f"The 'baselines' parameter of {owner} must be real and finite.")
    return d.detach().to(device=x.device, dtype=x.dtype)


class DeepLiftShap(Explainer):
    """DeepLiftShap: DeepLift averaged over a distribution of baselines.

    ``mean_k (x - b_k) * m_k`` over the K reference samples ``b_k`` of ``baselines``, ``m_k``
    the DeepLift multipliers of ``x`` against ``b_k`` (see :class:`DeepLift`): an estimate of
    SHAP values with the baselines as background data (Lundberg & Lee 2017). Two passes of
    ``B * K`` rows: the baselines, then the inputs with the rules.

    Parameters
    ----------
    model, batch_size, layout, output
        See :class:`Explainer`.
    baselines : Tensor of shape (K, *S), or callable ``x -> (K, *S)``
        The background samples (in the domain's coefficients inside a domain); all of them are
        used for every sample.
    multiply_by_inputs : bool, default True
        False averages the multipliers ``m_k`` instead (no delta).
    eps : float, default 1e-10
        See :class:`DeepLift`.

    Returns
    -------
    Attribution of ``x.shape``; ``delta`` (B,) the gap ``sum(attr) - (f(x) - mean_k f(b_k))``
    (the mean of the per-baseline gaps); ``info["baseline_scores"]`` the scores ``f(b_k)``
    (B, K).

    Notes
    -----
    Captum's ``DeepLiftShap`` returns one delta per (sample, baseline) pair and requires
    K > 1; here the delta is their mean per sample and K = 1 is DeepLift. The rule differences
    of :class:`DeepLift` apply.

    References
    ----------
    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    Shrikumar, Greenside & Kundaje, ICML 2017.
    """

    def __init__(
        self,
        model: Any,
        *,
        baselines: Distribution,
        multiply_by_inputs: bool = True,
        eps: float = 1e-10,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.baselines = check_distribution(baselines)
        self.multiply_by_inputs = check_bool(multiply_by_inputs, "multiply_by_inputs")
        self.eps = check_float(eps, "eps", low=0.0)

    def __repr__(self) -> str:
        k = self.baselines.shape[0] if isinstance(self.baselines, torch.Tensor) else "callable"
        return f"{self.name}(baselines={k}, multiply_by_inputs={self.multiply_by_inputs})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        dist = resolve_distribution(self.baselines, x)
        b, k = x.shape[0], dist.shape[0]
        refs = dist.unsqueeze(0).expand(b, *dist.shape)
        f_x, f_ref, m = multipliers(x, refs, score, self.eps)
        info = {"baseline_scores": f_ref, "n_baselines": k}
        if not self.multiply_by_inputs:
            return Parts(m.mean(1), info=info)
        attr = ((x.unsqueeze(1) - refs) * m).mean(1)
        delta = attr.flatten(1).sum(1) - (f_x - f_ref.mean(1))
        return Parts(attr, delta=delta, info=info)
