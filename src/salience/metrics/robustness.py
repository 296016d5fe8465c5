"""Robustness metrics: how much an explanation changes under small input noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any, ClassVar

import torch

from .._progress import progress_bar
from .._validation import check_bool, check_float, check_generator, make_generator
from ..attribution import Attribution
from ..engine import Explainer, default_batch_size, make_score
from ..engine.explainer import as_parts
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..layout import Layout
from ..targets import Target, TargetLike
from ._checks import (
    check_count,
    check_explainer,
    check_finite_result,
    check_forward,
    check_rows,
    check_values,
    check_x,
    run_explainer,
    unpack,
)
from .base import Metric

__all__ = ["max_sensitivity", "avg_sensitivity", "MaxSensitivity", "AvgSensitivity", "explain_with"]


def explain_with(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, Any]:
    """Run an Explainer (or a callable ``(x, target) -> Tensor | Attribution``); values and the
    explained target (per-sample class indices where recorded, else ``target``).

    ``forward_args``/``forward_kwargs`` are the model's extra inputs for the rows of ``x``
    (see :func:`~salience.metrics._checks.run_explainer`).

    The values are checked (:func:`~salience.metrics._checks.check_values`: finite, floating point,
    one map per row of ``x``); an exception raised by a plain callable becomes a
    :class:`~salience.errors.ModelCallError`.
    """
    check_explainer(explainer)
    out = run_explainer(explainer, x, target, forward_args, forward_kwargs)
    if isinstance(out, Attribution):
        values, explained = out.values, out.target
    elif isinstance(out, torch.Tensor):
        values, explained = out, target
    else:
        raise ParameterError(
            f"{current_caller()}: the explainer returned {type(out).__name__}; expected a Tensor or an Attribution."
        )
    values = check_values(values, "the explainer's attribution")
    if values.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{current_caller()}: the explainer returned {values.shape[0]} maps (shape {tuple(values.shape)}) for "
            f"{x.shape[0]} inputs; expected one per input."
        )
    return values, explained


class _Rows(Target):
    """``target`` for perturbed rows of ``x``: row ``r`` is scored as sample ``samples[r]``.

    Only used for plain callables (``(x, target) -> attribution``); a salience Explainer is
    re-run through :meth:`ScoreFunction.retarget` instead, with the target bound at ``x``.
    Bound over the ``n_samples`` samples of ``x``; a target resolved from the output
    (Predicted) reads the first row of each sample present in the chunk (the rows of the other
    samples are never scored by this binding).
    """

    def __init__(self, target: Target, samples: torch.Tensor, n_samples: int) -> None:
        self.target, self.samples, self.n_samples = target, samples, n_samples

    def bind(self, n_rows: int, reference: Any) -> Target:
        samples = self.samples.cpu()
        first = torch.zeros(self.n_samples, dtype=torch.long)
        first.scatter_reduce_(0, samples, torch.arange(samples.numel()), reduce="amin", include_self=False)

        def sample_reference() -> torch.Tensor:
            out = reference()
            return out[first.to(out.device)]

        return _Rows(self.target.bind(self.n_samples, sample_reference), self.samples, self.n_samples)

    def __call__(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.target(output, self.samples.to(index.device)[index])

    def explained(self) -> Any:
        e = self.target.explained()
        return e[self.samples.to(e.device)] if isinstance(e, torch.Tensor) else e

    def __repr__(self) -> str:
        return f"{self.target!r} (on perturbed rows of its samples)"


def repeat_target(target: TargetLike, samples: torch.Tensor, n_samples: int) -> Any:
    """The target for rows ``x[samples]`` (perturbed copies): per-sample indices gathered, ints
    and per-sample-free forms kept, Target objects scored on the sample each row comes from."""
    if isinstance(target, torch.Tensor) and target.ndim == 1:
        return target[samples.to(target.device)]
    if isinstance(target, (list, tuple)):
        return torch.as_tensor(target)[samples.cpu()]
    if isinstance(target, Target):
        return _Rows(target, samples, n_samples)
    return target


def reexplainer(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``explain(xp, samples)``: the explanation of ``xp`` (R, *S), whose row ``r`` is a perturbed
    copy of ``x[samples[r]]``, with ``target`` bound at ``x``: each row is scored exactly as its
    sample (same class, same foils, same probability), whatever the target form.

    A salience :class:`~salience.engine.Explainer` is run on the engine's
    :meth:`~salience.engine.ScoreFunction.retarget` of the score bound at ``x`` (the bound
    target, with each row mapped to its sample); a plain callable gets
    ``repeat_target(target, samples, len(x))``. The explainer's errors name it, as in
    :meth:`~salience.engine.Explainer.explain`.

    ``forward_args``/``forward_kwargs`` are the model's extra inputs at ``x``: row ``r`` gets
    the entries of sample ``samples[r]`` (the retargeted score keeps each row's parent sample,
    so the engine cuts them per chunk; a plain callable receives them indexed by ``samples``).
    An Explainer scores the tensor its own ``output`` selects.
    """
    if isinstance(explainer, Explainer):
        lay = Layout.infer(x, explainer.layout)
        score = make_score(
            explainer.model,
            x,
            target,
            batch_size=explainer.batch_size,
            layout=lay,
            caller=explainer.name,
            output=explainer.output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
        score = explainer.explained_score(score)  # as Explainer.explain (e.g. a stripped softmax)

        def run(xp: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
            samples = samples.to(score.input.device)
            rows = score.retarget(
                score.target,
                xp,
                score.sample_map[samples],
                parents=samples,
                target_map=score.target_map[samples],
            )
            with caller(explainer.name):
                parts = as_parts(explainer.attribute(xp, rows), lay)
            return parts.values.detach().to(dtype=xp.dtype)

        return run

    extras = check_forward(forward_args, forward_kwargs, x.shape[0])

    def call(xp: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        args, kwargs = extras.rows(samples)
        return explain_with(explainer, xp, repeat_target(target, samples, x.shape[0]), args, kwargs)[0]

    return call


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


def _sensitivities(
    explainer: Any,
    x: torch.Tensor,
    target: TargetLike,
    *,
    n_perturbations: int,
    radius: float,
    norm: Any,
    normalize: bool,
    attribution: Any,
    generator: torch.Generator | None,
    progress: bool,
    forward_args: Sequence[Any],
    forward_kwargs: Mapping[str, Any] | None,
) -> torch.Tensor:
    x = check_x(x)
    check_explainer(explainer)
    check_forward(forward_args, forward_kwargs, x.shape[0])  # errors name the metric
    n = check_count(n_perturbations, "n_perturbations")
    radius = check_float(radius, "radius", low=0.0)
    norm = check_norm(norm)
    ordv = 2.0 if norm == "fro" else norm
    normalize = check_bool(normalize, "normalize")
    progress = check_bool(progress, "progress")
    gen = make_generator(check_generator(generator))
    if attribution is None:
        ref, explained = explain_with(explainer, x, target, forward_args, forward_kwargs)
    else:
        ref, explained, _ = unpack(attribution, target, None)
        if ref.shape[0] != x.shape[0]:
            raise ShapeError(
                f"{current_caller()}: the attribution must hold one map per input, {x.shape[0]} here. Got shape "
                f"{tuple(ref.shape)} instead."
            )
    b, shape = x.shape[0], x.shape[1:]
    check_rows(b, n, "n_perturbations")
    explain = reexplainer(explainer, x, explained if target is None else target, forward_args, forward_kwargs)
    # perturbed copies are drawn and explained chunk by chunk, at most `rows` per explainer call
    # (memory bounded by the explainer's batch_size, not by B * n); copy j of sample i is row
    # i * n + j, and each row draws its noise with torch.rand(S, generator=...) in row order,
    # so the values do not depend on the chunking (on a CPU generator, the draws equal one
    # torch.rand((B * n, *S)))
    rows = getattr(explainer, "batch_size", None) or default_batch_size(int(x[0].numel()), x.device)
    total = b * n
    ref_flat = ref.reshape(b, -1)
    parts = []
    with progress_bar(total, f"{current_caller()} perturbations", progress) as bar:
        for start in range(0, total, rows):
            stop = min(total, start + rows)
            samples = torch.arange(start, stop, device=x.device) // n
            # uniform in the L-infinity ball, as Captum's default_perturb_func
            noise = torch.stack(
                [
                    torch.rand(shape, generator=gen, device=gen.device, dtype=x.dtype)
                    for _ in range(stop - start)
                ]
            ).to(x.device)
            xp = x[samples] + (2 * noise - 1) * radius
            pert = check_values(explain(xp, samples), "the explanations of the perturbed copies")
            if pert.shape != (stop - start, *ref.shape[1:]):
                raise ShapeError(
                    f"{current_caller()}: the explanations of {stop - start} perturbed copies have shape "
                    f"{tuple(pert.shape)}, but the attribution at x has shape {tuple(ref.shape)}; "
                    f"expected {(stop - start, *ref.shape[1:])}."
                )
            parts.append(
                torch.linalg.vector_norm(
                    pert.reshape(stop - start, -1) - ref_flat[samples.to(ref_flat.device)], ord=ordv, dim=1
                )
            )
            bar.update(stop - start)
    sens = torch.cat(parts).reshape(b, n)
    if normalize:
        den = torch.linalg.vector_norm(ref.reshape(b, -1), ord=ordv, dim=1)
        sens = sens / torch.where(den == 0, torch.ones_like(den), den)[:, None]
    return check_finite_result(
        sens, "the explanations (or their differences) are too large for the norm in this dtype."
    )


_DOC = """
    Parameters
    ----------
    explainer : Explainer or callable ``(x, target) -> Tensor | Attribution``
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
    attribution : Tensor or Attribution, optional
        The explanation at ``x`` if already computed.
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
    Memory is bounded: the perturbed copies are drawn and explained chunk by chunk, at most the
    explainer's ``batch_size`` rows per call (the default batch size for plain callables). Copy
    ``j`` of sample ``i`` is row ``i * n + j``; each row draws its noise as ``torch.rand(S,
    generator=generator)`` in row order, so the result does not depend on the chunking, and on
    a CPU generator the draws equal one ``torch.rand((B * n, *S), generator=generator)``.

    References
    ----------
    Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
"""


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
    attribution: Any = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Max-sensitivity: the largest change of the explanation over random perturbations."""
    return _sensitivities(
        explainer,
        x,
        target,
        n_perturbations=n_perturbations,
        radius=radius,
        norm=norm,
        normalize=normalize,
        attribution=attribution,
        generator=generator,
        progress=progress,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    ).amax(1)


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
    attribution: Any = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Average sensitivity: the mean change of the explanation over random perturbations."""
    return _sensitivities(
        explainer,
        x,
        target,
        n_perturbations=n_perturbations,
        radius=radius,
        norm=norm,
        normalize=normalize,
        attribution=attribution,
        generator=generator,
        progress=progress,
        forward_args=forward_args,
        forward_kwargs=forward_kwargs,
    ).mean(1)


max_sensitivity.__doc__ = (max_sensitivity.__doc__ or "") + _DOC
avg_sensitivity.__doc__ = (avg_sensitivity.__doc__ or "") + _DOC


class MaxSensitivity(Metric):
    """:func:`max_sensitivity` as a metric class (lower is better)."""

    higher_is_better: ClassVar[bool | None] = False
    requires_explainer: ClassVar[bool] = True
    is_stochastic: ClassVar[bool] = True
    _reduce = staticmethod(max_sensitivity)

    def __init__(
        self,
        *,
        n_perturbations: int = 10,
        radius: float = 0.02,
        norm: Any = "fro",
        normalize: bool = False,
        generator: torch.Generator | None = None,
        progress: bool = True,
    ) -> None:
        self.n_perturbations = check_count(n_perturbations, "n_perturbations")
        self.radius = check_float(radius, "radius", low=0.0)
        self.norm = check_norm(norm)
        self.normalize = check_bool(normalize, "normalize")
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: Any,
        target: TargetLike = None,
        *,
        explainer: Any = None,
        mask: Any = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        explainer = self._need(explainer, "the explainer to re-run (explainer=...)")
        return type(self)._reduce(
            explainer,
            x,
            target,
            n_perturbations=self.n_perturbations,
            radius=self.radius,
            norm=self.norm,
            normalize=self.normalize,
            attribution=attribution,
            generator=self.generator,
            progress=self.progress,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )


class AvgSensitivity(MaxSensitivity):
    """:func:`avg_sensitivity` as a metric class (lower is better)."""

    _reduce = staticmethod(avg_sensitivity)
