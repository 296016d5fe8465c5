"""Re-running an explainer: on ``x`` (:func:`explain_with`) and on perturbed copies of its samples
with the target bound at ``x`` (:func:`reexplainer`), for the metrics that compare explanations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..attribution import Attribution
from ..engine import Explainer, make_score
from ..engine.explainer import as_parts
from ..errors import ParameterError, ShapeError, caller, current_caller
from ..layout import Layout
from ..targets import Target, TargetLike
from ._checks import check_explainer, check_forward, check_values, run_explainer


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
