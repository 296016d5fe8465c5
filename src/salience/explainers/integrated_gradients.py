"""Integrated Gradients with named quadrature rules and baselines."""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np
import torch

from .._validation import all_finite, check_bool, check_int, check_option
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..errors import ParameterError, SalienceError, current_caller
from ..layout import LayoutLike

__all__ = ["IntegratedGradients"]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")

BaselineLike = str | float | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def quadrature(rule: str, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``alpha`` in [0, 1] and weights of a rule for the integral over the path, float64.

    The names and nodes are Captum's (``riemann_right``: ``alpha_k = k / n``, k = 1..n, the rule
    of the cross-domain reference implementation and of zennit), so parity can be pinned.

    Returns
    -------
    alphas, weights : Tensors of shape (n_steps,)
    """
    n = n_steps
    k = np.arange(n, dtype=np.float64)
    if rule == "riemann_left":
        a, w = k / n, np.full(n, 1.0 / n)
    elif rule == "riemann_right":
        a, w = (k + 1) / n, np.full(n, 1.0 / n)
    elif rule == "riemann_middle":
        a, w = (k + 0.5) / n, np.full(n, 1.0 / n)
    elif rule == "riemann_trapezoid":
        if n < 2:
            raise ParameterError(
                f"The 'n_steps' parameter of IntegratedGradients must be >= 2 for rule "
                f"'riemann_trapezoid'. Got {n} instead."
            )
        a = k / (n - 1)
        w = np.full(n, 1.0 / (n - 1))
        w[0] = w[-1] = 0.5 / (n - 1)
    elif rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        a, w = (nodes + 1) / 2, weights / 2
    else:
        raise ParameterError(
            f"The 'rule' parameter of IntegratedGradients must be one of {', '.join(map(repr, RULES))}. "
            f"Got {rule!r} instead."
        )
    return torch.from_numpy(a), torch.from_numpy(w)


def _check_baseline(baseline: Any, owner: str | None = None) -> Any:
    """``baseline`` if it is a valid :data:`BaselineLike`; errors name ``owner``, by default the
    explainer or metric being built (:func:`salience.errors.current_caller`)."""
    owner = owner or current_caller()
    if isinstance(baseline, str):
        return check_option(baseline, "baseline", owner, ("zeros", "mean"))
    if isinstance(baseline, bool) or not (isinstance(baseline, (Real, torch.Tensor)) or callable(baseline)):
        raise ParameterError(
            f"The 'baseline' parameter of {owner} must be 'zeros', 'mean', a float, a tensor "
            f"broadcastable to x, or a callable x -> baseline. Got {type(baseline).__name__} instead."
        )
    if isinstance(baseline, Real) and not math.isfinite(float(baseline)):
        raise ParameterError(
            f"The 'baseline' parameter of {owner} must be a finite float. Got {baseline!r} instead."
        )
    return baseline


def resolve_baseline(
    baseline: BaselineLike, x: torch.Tensor, score: ScoreFunction, owner: str | None = None
) -> torch.Tensor:
    """The baseline as a tensor of ``x.shape`` on ``x``'s device and dtype.

    ``"mean"`` is the per-sample, per-channel mean over the non-channel axes. Errors name
    ``owner``, by default the explainer or metric running (:func:`salience.errors.current_caller`).
    """
    owner = owner or current_caller()
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(x)
        axes = [i for i, n in enumerate(score.layout.names) if n not in ("b", "c")]
        return x.mean(dim=axes, keepdim=True).expand_as(x) if axes else x.clone()
    if isinstance(baseline, Real):
        return torch.full_like(x, float(baseline))
    b: object  # checked to be a tensor below
    if callable(baseline) and not isinstance(baseline, torch.Tensor):
        try:
            b = baseline(x)
        except SalienceError:
            raise
        except Exception as err:
            raise ParameterError(
                f"The baseline callable of {owner} raised {type(err).__name__}: {err} (on x of "
                f"shape {tuple(x.shape)}, dtype {x.dtype})."
            ) from err
    else:
        b = baseline
    if not isinstance(b, torch.Tensor):
        raise ParameterError(
            f"The baseline callable of {owner} must return a tensor. Got {type(b).__name__}."
        )
    try:
        ok = torch.broadcast_shapes(b.shape, x.shape) == x.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ParameterError(
            f"The 'baseline' parameter of {owner} must be broadcastable to x of shape "
            f"{tuple(x.shape)}. Got shape {tuple(b.shape)} instead."
        )
    if b.is_complex():
        raise ParameterError(
            f"The 'baseline' parameter of {owner} must be a real tensor (a complex baseline "
            f"belongs in a domain's real coefficients). Got dtype {b.dtype} instead."
        )
    if not all_finite(b):
        raise ParameterError(f"The 'baseline' parameter of {owner} contains NaN or inf.")
    return b.detach().to(device=x.device, dtype=x.dtype).expand_as(x)


# interpolants of at most this many samples in one chunk are built sample by sample
_MAX_SEGMENTS = 16


class IntegratedGradients(Explainer):
    """Integrated Gradients: ``(x - x0) * integral_0^1 grad f(x0 + a (x - x0)) da``.

    The path integral is computed with a named quadrature rule; the ``B * n_steps`` interpolants
    are generated chunk by chunk (memory bounded by ``batch_size``, not by ``n_steps``), and the
    gradients are accumulated with the rule's weights. ``Attribution.delta`` is the completeness
    gap ``sum(attr) - (f(x) - f(x0))`` per sample.

    Parameters
    ----------
    model, batch_size, layout
        See :class:`Explainer`.
    n_steps : int, default 50
        Number of quadrature nodes (>= 2 for ``riemann_trapezoid``).
    rule : str, default "riemann_trapezoid"
        One of ``riemann_left``, ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid``,
        ``gausslegendre`` (Captum's names and nodes; Captum defaults to ``gausslegendre``, the
        cross-domain reference implementation and zennit use ``riemann_right``).
    baseline : "zeros", "mean", float, Tensor or callable, default "zeros"
        ``x0``: zeros, the per-sample per-channel mean over the non-channel axes, a constant, a
        tensor broadcastable to x, or a function ``x -> x0``.
    multiply_by_inputs : bool, default True
        False returns the path-integrated gradient ``integral_0^1 grad f(x0 + a (x - x0)) da``
        without the factor ``x - x0`` (Captum's "local" attribution); ``delta`` is then None.

    References
    ----------
    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 10, 2)).eval()
    >>> attr = IntegratedGradients(model, n_steps=16).explain(torch.randn(3, 4, 10), target=0)
    >>> attr.values.shape, bool(attr.delta.abs().max() < 1e-4)
    (torch.Size([3, 4, 10]), True)
    """

    def __init__(
        self,
        model: Any,
        *,
        n_steps: int = 50,
        rule: str = "riemann_trapezoid",
        baseline: BaselineLike = "zeros",
        multiply_by_inputs: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.multiply_by_inputs = check_bool(multiply_by_inputs, "multiply_by_inputs")
        self.n_steps = check_int(n_steps, "n_steps", low=1)
        self.rule = check_option(rule, "rule", options=RULES)
        quadrature(self.rule, self.n_steps)  # validates n_steps against the rule
        self.baseline = _check_baseline(baseline)

    def __repr__(self) -> str:
        local = "" if self.multiply_by_inputs else ", multiply_by_inputs=False"
        return f"IntegratedGradients(n_steps={self.n_steps}, rule={self.rule!r}, baseline={self.baseline!r}{local})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        x0 = resolve_baseline(self.baseline, x, score)
        alphas, weights = quadrature(self.rule, self.n_steps)
        alphas = alphas.to(device=x.device, dtype=x.dtype)
        n = self.n_steps
        diff = x - x0
        view = (-1,) + (1,) * (x.ndim - 1)

        def make(start: int, stop: int) -> torch.Tensor:
            first, last = start // n, (stop - 1) // n
            if last - first >= _MAX_SEGMENTS:  # many samples per chunk (few steps): gather
                r = torch.arange(start, stop, device=x.device)
                rb, k = r // n, r % n
                return torch.addcmul(x0[rb], alphas[k].reshape(view), diff[rb])
            # a sample's rows are consecutive: one broadcast addcmul per sample, written in
            # place, instead of gathering x0 and x - x0 row by row (10x faster on a CPU)
            rows = torch.empty((stop - start, *x.shape[1:]), dtype=x.dtype, device=x.device)
            with torch.no_grad():
                for b in range(first, last + 1):
                    lo, hi = max(start, b * n), min(stop, (b + 1) * n)
                    torch.addcmul(
                        x0[b],
                        alphas[lo - b * n : hi - b * n].reshape(view),
                        diff[b],
                        out=rows[lo - start : hi - start],
                    )
            return rows

        values, grad_sum = score.gradients(make, n=n, weights=weights)
        if not self.multiply_by_inputs:
            if float(alphas[-1]) == 1.0:
                score.record_input_values(values[:, -1])
            return Parts(grad_sum, info={"rule": self.rule, "n_steps": n, "multiply_by_inputs": False})
        attr = diff * grad_sum
        f_x = values[:, -1] if float(alphas[-1]) == 1.0 else score.input_values()
        f_0 = values[:, 0] if float(alphas[0]) == 0.0 else score.values(x0.unsqueeze(1))[:, 0]
        score.record_input_values(f_x)
        delta = attr.flatten(1).sum(1) - (f_x - f_0)
        return Parts(attr, delta=delta, info={"rule": self.rule, "n_steps": n, "baseline_scores": f_0})
