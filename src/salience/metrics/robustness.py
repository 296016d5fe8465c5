"""Robustness metrics: how much an explanation changes under small input noise."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, ClassVar

import torch

from .._engine import default_batch_size, make_score
from .._validation import check_bool, check_float, check_generator, check_input, check_int, make_generator
from ..attribution import Attribution
from ..errors import ParameterError
from .._progress import progress_bar
from ..explainers.base import Explainer, as_parts
from ..layout import Layout
from ..targets import Target, TargetLike
from .base import Metric

__all__ = ["max_sensitivity", "avg_sensitivity", "MaxSensitivity", "AvgSensitivity", "explain_with"]


def explain_with(explainer: Any, x: torch.Tensor, target: TargetLike) -> tuple[torch.Tensor, Any]:
    """Run an Explainer (or a callable ``(x, target) -> Tensor | Attribution``); values and the
    explained target (per-sample class indices where recorded, else ``target``)."""
    if not callable(explainer):
        raise ParameterError(
            f"explainer must be a salience Explainer or a callable (x, target) -> attribution. "
            f"Got {type(explainer).__name__} instead."
        )
    out = explainer(x, target)
    if isinstance(out, Attribution):
        return out.values.detach(), out.target
    if not isinstance(out, torch.Tensor):
        raise ParameterError(f"The explainer returned {type(out).__name__}; expected a Tensor or an Attribution.")
    return out.detach(), target


class _Repeated(Target):
    """``target`` for ``x.repeat_interleave(k, 0)``: row ``r`` is scored as sample ``r // k``.

    Only used for plain callables (``(x, target) -> attribution``); a salience Explainer is
    re-run through :meth:`ScoreFunction.repeat` instead, with the target bound at ``x``.
    """

    def __init__(self, target: Target, k: int) -> None:
        self.target, self.k = target, k

    def bind(self, n_samples: int, reference: Any) -> Target:
        # a target resolved from the output (Predicted) reads the first copy of each sample
        inner = self.target.bind(n_samples // self.k, lambda: reference()[:: self.k])
        return _Repeated(inner, self.k)

    def __call__(self, output: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        return self.target(output, torch.div(samples, self.k, rounding_mode="floor"))

    def explained(self) -> Any:
        e = self.target.explained()
        return e.repeat_interleave(self.k) if isinstance(e, torch.Tensor) else e

    def __repr__(self) -> str:
        return f"{self.target!r} (each sample repeated {self.k} times)"


def repeat_target(target: TargetLike, k: int) -> Any:
    """The target for ``x.repeat_interleave(k, 0)``: per-sample indices repeated, ints and
    per-sample-free forms kept, Target objects scored on the sample each copy comes from."""
    if isinstance(target, torch.Tensor) and target.ndim == 1:
        return target.repeat_interleave(k)
    if isinstance(target, (list, tuple)):
        return torch.as_tensor(target).repeat_interleave(k)
    if isinstance(target, Target):
        return _Repeated(target, k)
    return target


def reexplainer(explainer: Any, x: torch.Tensor, target: TargetLike) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``explain(xp, k)``: the explanation of ``xp`` (B*k, *S), whose row ``r`` is a perturbed copy
    of ``x[r // k]``, with ``target`` bound at ``x``: copy ``r`` is scored exactly as sample
    ``r // k`` (same class, same foils, same probability), whatever the target form.

    A salience :class:`~salience.explainers.base.Explainer` is run on the engine's
    :meth:`~salience._engine.ScoreFunction.repeat` of the score bound at ``x``; a plain callable
    gets ``repeat_target(target, k)``.
    """
    if isinstance(explainer, Explainer):
        lay = Layout.infer(x, explainer.layout)
        score = make_score(explainer.model, x, target, batch_size=explainer.batch_size, layout=lay,
                           owner=explainer.name)
        score = explainer._explained_score(score)  # as Explainer.explain (e.g. a stripped softmax)

        def run(xp: torch.Tensor, k: int) -> torch.Tensor:
            parts = as_parts(explainer._attribute(xp, score.repeat(xp, k)), lay)
            return parts.values.detach().to(dtype=xp.dtype)

        return run

    def call(xp: torch.Tensor, k: int) -> torch.Tensor:
        return explain_with(explainer, xp, repeat_target(target, k))[0]

    return call


def check_norm(norm: Any, owner: str) -> "str | float":
    """``"fro"`` or a float order for :func:`torch.linalg.vector_norm` (``inf`` allowed)."""
    if isinstance(norm, str) and norm == "fro":
        return norm
    if isinstance(norm, Real) and not isinstance(norm, bool) and not math.isnan(float(norm)):
        return float(norm)
    raise ParameterError(
        f"The 'norm' parameter of {owner} must be 'fro' or a float order (2, 1, inf, ...). "
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
    owner: str,
) -> torch.Tensor:

    x = check_input(x, owner).detach()
    n = check_int(n_perturbations, "n_perturbations", owner, low=1)
    radius = check_float(radius, "radius", owner, low=0.0)
    norm = check_norm(norm, owner)
    ordv = 2.0 if norm == "fro" else norm
    normalize = check_bool(normalize, "normalize", owner)
    progress = check_bool(progress, "progress", owner)
    gen = make_generator(check_generator(generator, owner))
    if attribution is None:
        ref, explained = explain_with(explainer, x, target)
    else:
        ref = attribution.values.detach() if isinstance(attribution, Attribution) else attribution.detach()
        explained = attribution.target if (isinstance(attribution, Attribution) and target is None) else target
    b, shape = x.shape[0], x.shape[1:]
    # uniform in the L-infinity ball, as Captum's default_perturb_func; copy j of sample i is
    # noise row i * n + j
    noise = torch.rand((b * n, *shape), generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    xp = x[:, None] + ((2 * noise - 1) * radius).reshape(b, n, *shape)
    explain = reexplainer(explainer, x, explained if target is None else target)
    rows = getattr(explainer, "batch_size", None) or default_batch_size(int(x[0].numel()), x.device)
    group = max(1, rows // b)  # perturbations per explainer call
    ref_flat = ref.reshape(b, 1, -1)
    parts = []
    with progress_bar(n, f"{owner} perturbations", progress) as bar:
        for j0 in range(0, n, group):
            k = min(n, j0 + group) - j0
            pert = explain(xp[:, j0 : j0 + k].reshape(b * k, *shape), k)
            parts.append(torch.linalg.vector_norm(pert.reshape(b, k, -1) - ref_flat, ord=ordv, dim=2))
            bar.update(k)
    sens = torch.cat(parts, 1)
    if normalize:
        den = torch.linalg.vector_norm(ref.reshape(b, -1), ord=ordv, dim=1)
        sens = sens / torch.where(den == 0, torch.ones_like(den), den)[:, None]
    return sens


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
        Show a tqdm bar over the perturbations (if tqdm is installed). The perturbed copies are
        explained in groups of about the explainer's ``batch_size`` rows.

    Returns
    -------
    Tensor of shape (B,)

    References
    ----------
    Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.
"""


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
) -> torch.Tensor:
    """Max-sensitivity: the largest change of the explanation over random perturbations."""
    return _sensitivities(explainer, x, target, n_perturbations=n_perturbations, radius=radius, norm=norm,
                          normalize=normalize, attribution=attribution, generator=generator,
                          progress=progress, owner="max_sensitivity").amax(1)


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
) -> torch.Tensor:
    """Average sensitivity: the mean change of the explanation over random perturbations."""
    return _sensitivities(explainer, x, target, n_perturbations=n_perturbations, radius=radius, norm=norm,
                          normalize=normalize, attribution=attribution, generator=generator,
                          progress=progress, owner="avg_sensitivity").mean(1)


max_sensitivity.__doc__ = (max_sensitivity.__doc__ or "") + _DOC
avg_sensitivity.__doc__ = (avg_sensitivity.__doc__ or "") + _DOC


class MaxSensitivity(Metric):
    """:func:`max_sensitivity` as a metric class (lower is better)."""

    higher_is_better: ClassVar[bool | None] = False
    requires_explainer: ClassVar[bool] = True
    is_stochastic: ClassVar[bool] = True
    _reduce = staticmethod(max_sensitivity)

    def __init__(self, *, n_perturbations: int = 10, radius: float = 0.02, norm: Any = "fro",
                 normalize: bool = False, generator: torch.Generator | None = None,
                 progress: bool = True) -> None:
        owner = type(self).__name__
        self.n_perturbations = check_int(n_perturbations, "n_perturbations", owner, low=1)
        self.radius = check_float(radius, "radius", owner, low=0.0)
        self.norm = check_norm(norm, owner)
        self.normalize = check_bool(normalize, "normalize", owner)
        self.generator = check_generator(generator, owner)
        self.progress = check_bool(progress, "progress", owner)

    def __call__(self, model: Any, x: torch.Tensor, attribution: Any, target: TargetLike = None, *,
                 explainer: Any = None, mask: Any = None, domain: Any = None) -> torch.Tensor:
        explainer = self._need(explainer, "the explainer to re-run (explainer=...)")
        return type(self)._reduce(explainer, x, target, n_perturbations=self.n_perturbations, radius=self.radius,
                                  norm=self.norm, normalize=self.normalize, attribution=attribution,
                                  generator=self.generator, progress=self.progress)


class AvgSensitivity(MaxSensitivity):
    """:func:`avg_sensitivity` as a metric class (lower is better)."""

    _reduce = staticmethod(avg_sensitivity)
