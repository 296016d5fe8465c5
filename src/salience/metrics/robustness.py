"""Robustness metrics: how much an explanation changes under small input noise.

Max- and Avg-Sensitivity run on the loop of :mod:`salience.metrics.stability`
(:func:`salience.metrics._stability.run`): uniform noise in an L-infinity ball, perturbed copies
explained chunk by chunk with the target bound at ``x``, optionally in a domain's coefficients
and dropping the copies whose prediction changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch

from .._validation import check_batch_size, check_bool, check_float, check_generator, make_generator
from ..errors import ParameterError, caller, current_caller
from ..targets import TargetLike
from . import _stability as core
from ._checks import check_count, check_x
from ._reexplain import explain_with
from .stability import _Stability

__all__ = ["max_sensitivity", "avg_sensitivity", "MaxSensitivity", "AvgSensitivity", "explain_with"]


def check_norm(norm: Any) -> str | float:
    """``"fro"`` or a float order for :func:`torch.linalg.vector_norm` (``inf`` allowed)."""
    if isinstance(norm, str) and norm == "fro":
        return norm
    if isinstance(norm, Real) and not isinstance(norm, bool) and not math.isnan(float(norm)):
        return float(norm)
    raise ParameterError(
        f"The 'norm' parameter of {current_caller()} must be 'fro' or a float order (2, 1, inf, ...). "
        f"Got {norm!r} instead."
    )


def _sensitivities(explainer: Any, x: torch.Tensor, target: TargetLike, kw: dict[str, Any]) -> torch.Tensor:
    """The (B, n) sensitivities ``||e(x') - e(x)||`` (over ``||e(x)||`` with ``normalize``);
    NaN for a copy dropped by ``keep_prediction``."""
    n = check_count(kw["n_perturbations"], "n_perturbations")
    radius = check_float(kw["radius"], "radius", low=0.0)
    norm = check_norm(kw["norm"])
    ordv = 2.0 if isinstance(norm, str) else norm  # "fro": the 2-norm of the flattened map
    normalize = check_bool(kw["normalize"], "normalize")
    keep = check_bool(kw["keep_prediction"], "keep_prediction")
    progress = check_bool(kw["progress"], "progress")
    gen = make_generator(check_generator(kw["generator"]))

    def ratio(r: core.Rows) -> torch.Tensor:
        sens = core.distance(r.expl, r.ref, ordv)
        if normalize:
            den = torch.linalg.vector_norm(r.ref.reshape(r.ref.shape[0], -1), ord=ordv, dim=1)
            sens = sens / torch.where(den == 0, torch.ones_like(den), den)
        return sens

    # uniform in the L-infinity ball (Captum's default_perturb_func): x + (2 U(0, 1) - 1) * radius,
    # one torch.rand(S) per row in row order, whatever the chunking
    b = check_x(x).shape[0]
    return core.run(
        explainer,
        x,
        target,
        n=n,
        draw=core.noise_rows("uniform", radius, core.check_perturbation(kw["perturbation"]), gen, b, n),
        ratio=ratio,
        attribution=kw["attribution"],
        model=kw["model"],
        output=kw["output"],
        outputs=False,
        layer=None,
        keep_prediction=keep,
        domain=kw["domain"],
        layout=kw["layout"],
        batch_size=check_batch_size(kw["batch_size"]),
        progress=progress,
        forward_args=kw["forward_args"],
        forward_kwargs=kw["forward_kwargs"],
    )


@caller("max_sensitivity")
def max_sensitivity(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_perturbations: int = 10,
    radius: float = 0.02,
    norm: Any = "fro",
    normalize: bool = False,
    perturbation: torch.Tensor | None = None,
    keep_prediction: bool = False,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    domain: Any = None,
    layout: str | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Max-sensitivity: the largest change of the explanation over random perturbations.

    ``max_j ||e(x_j) - e(x)||`` with ``x_j = x + U(-radius, radius)`` element-wise.

    Parameters
    ----------
    explainer : Explainer or callable ``(x, target) -> Tensor | Attribution``
        Re-run on every perturbed copy, with ``target`` bound at ``x``.
    x : Tensor of shape (B, *S)
    target : int, Tensor (B,), Target or None
        Bound at ``x`` and reused for every perturbed copy of a sample (the same class, foils or
        probability); None: the class the explainer records at ``x`` is kept.
    n_perturbations : int, default 10
    radius : float, default 0.02
        Perturbations are uniform in the L-infinity ball of this radius (Captum's default).
    norm : "fro" or float, default "fro"
        Norm of the flattened explanation difference.
    normalize : bool, default False
        Divide by the norm of the explanation at ``x`` (Captum's ``sensitivity_max`` does; Yeh
        et al.'s definition does not).
    perturbation : Tensor (B, n_perturbations, *S), optional
        Additive noise given explicitly instead of the uniform draws (in the domain's
        coefficients with ``domain=``); ``radius`` is then unused.
    keep_prediction : bool, default False
        Drop the copies whose predicted class (argmax of the model's output) differs from the
        one at ``x`` (Quantus's ``return_nan_when_prediction_changes``); a sample with none left
        is NaN.
    attribution : Tensor or Attribution, optional
        The explanation at ``x`` if already computed.
    model : callable, optional
        For the predicted class with ``keep_prediction``; default: the Explainer's model.
    output : str, int or callable, optional
        The tensor of a structured output that call reads; default: the Explainer's ``output``.
    domain : Domain, optional
        Perturb the domain's coefficients ``z = forward(x)`` (the explainer sees
        ``inverse(z')``, plus the residual of a lossy domain).
    layout : str, optional
        Axis names of ``x`` (for ``domain``).
    batch_size : int, optional
        Rows per explainer call (default: the Explainer's ``batch_size``, else the default
        batch size).
    generator : torch.Generator, optional
    progress : bool, default True
        Show a tqdm bar over the ``B * n_perturbations`` perturbed copies (if tqdm is installed).
    forward_args : sequence, optional
        Extra positional inputs of every model call: ``model(rows, *forward_args)``.
    forward_kwargs : dict, optional
        Extra keyword inputs of every model call (an attention mask, a padding mask, flags).
        Tensors whose first axis has length B are per-sample: the explanation of each perturbed
        copy of sample ``i`` is computed with sample ``i``'s entries, whatever the chunking (a
        plain callable is called as ``explainer(x_rows, target, *forward_args,
        **forward_kwargs)`` with them indexed by sample); wrap a tensor in
        :func:`salience.engine.shared` to pass it unchanged. A salience Explainer scores the
        tensor its own ``output=`` selects.

    Returns
    -------
    Tensor of shape (B,)
        Lower is more robust; NaN where ``keep_prediction`` kept no copy.

    Raises
    ------
    ParameterError
        A model, a class or a non-callable as ``explainer``; ``n_perturbations`` outside
        ``[1, 2**63 - 1]`` (or ``B * n_perturbations`` rows beyond int64); a negative or
        non-finite ``radius``.
    ModelCallError
        A plain callable ``explainer`` raised (the original exception is the cause).
    NumericalError
        The norms overflowed the dtype (explanations near its largest value).

    Notes
    -----
    Memory is bounded: the perturbed copies are drawn and explained chunk by chunk, at most
    ``batch_size`` rows per call. Copy ``j`` of sample ``i`` is row ``i * n + j``; each row draws
    its noise as ``torch.rand(S, generator=generator)`` in row order, so the result does not
    depend on the chunking, and on a CPU generator the draws equal one ``torch.rand((B * n, *S),
    generator=generator)``. The loop is the one of the stability metrics
    (:func:`~salience.metrics.local_lipschitz_estimate` and the relative stabilities).

    References
    ----------
    Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
    """
    return core.nanmax(_sensitivities(explainer, x, target, dict(locals())))


@caller("avg_sensitivity")
def avg_sensitivity(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike = None,
    *,
    n_perturbations: int = 10,
    radius: float = 0.02,
    norm: Any = "fro",
    normalize: bool = False,
    perturbation: torch.Tensor | None = None,
    keep_prediction: bool = False,
    attribution: Any = None,
    model: Any = None,
    output: Any = None,
    domain: Any = None,
    layout: str | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Average sensitivity: the mean change of the explanation over random perturbations.

    ``mean_j ||e(x_j) - e(x)||`` over the copies kept; every parameter, the noise and the loop
    are those of :func:`max_sensitivity`.

    Returns
    -------
    Tensor of shape (B,)
        Lower is more robust; NaN where ``keep_prediction`` kept no copy.

    References
    ----------
    Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
    """
    return torch.nanmean(_sensitivities(explainer, x, target, dict(locals())), dim=1)


class MaxSensitivity(_Stability):
    """:func:`max_sensitivity` as a metric class (lower is better)."""

    _fn = staticmethod(max_sensitivity)

    def __init__(
        self,
        *,
        n_perturbations: int = 10,
        radius: float = 0.02,
        norm: Any = "fro",
        normalize: bool = False,
        keep_prediction: bool = False,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        output: Any = None,
    ) -> None:
        self.n_perturbations = check_count(n_perturbations, "n_perturbations")
        self.radius = check_float(radius, "radius", low=0.0)
        self.norm = check_norm(norm)
        self.normalize = check_bool(normalize, "normalize")
        self.keep_prediction = check_bool(keep_prediction, "keep_prediction")
        self.batch_size = check_batch_size(batch_size)
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")
        self.output = output


class AvgSensitivity(MaxSensitivity):
    """:func:`avg_sensitivity` as a metric class (lower is better)."""

    _fn = staticmethod(avg_sensitivity)
