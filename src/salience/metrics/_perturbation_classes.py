"""The metric classes of :mod:`~salience.metrics.perturbation_curves`: validated keyword-only
configuration around the functions, with the common ``__call__`` signature of
:class:`~salience.metrics.Metric`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from .._validation import (
    check_batch_size,
    check_bool,
    check_float,
    check_generator,
    check_int,
    check_option,
)
from ..engine._forward import OutputLike, check_output
from ..errors import ParameterError, current_caller
from ..masking import as_substrate
from ..targets import TargetLike
from . import _feature_order as F
from ._checks import check_count
from .base import _Perturbation


def _check_segments(segments: Any) -> torch.Tensor | None:
    if segments is None or (isinstance(segments, torch.Tensor) and not segments.is_floating_point()):
        return segments
    raise ParameterError(
        f"The 'segments' parameter of {current_caller()} must be None or an integer tensor of segment "
        f"labels. Got {type(segments).__name__} instead."
    )


def _check_patch(patch_size: Any) -> int | tuple[int, ...]:
    if isinstance(patch_size, (tuple, list)):
        return tuple(check_int(p, "patch_size", low=1) for p in patch_size)
    return check_int(patch_size, "patch_size", low=1)


def _check_similarity(similarity: Any) -> str | Callable:
    if callable(similarity):
        return similarity
    return check_option(similarity, "similarity", options=("pearson", "spearman"))


class _Ordered(_Perturbation):
    """Calls ``_fn`` with the public attributes as keyword arguments (plus ``domain``)."""

    _fn: ClassVar[Any]
    _has_domain: ClassVar[bool] = True

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
        kw = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        if self._has_domain:
            kw["domain"] = domain
        fn = type(self)._fn
        return fn(
            model, x, attribution, target, forward_args=forward_args, forward_kwargs=forward_kwargs, **kw
        )

    def _common(self, batch_size: Any, progress: Any, output: Any) -> None:
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")
        self.output = check_output(output, type(self).__name__)


class IROF(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.irof` as a metric class (higher is better)."""

    higher_is_better: ClassVar[bool | None] = True

    def __init__(
        self,
        *,
        segments: torch.Tensor | None = None,
        n_segments: int = 16,
        substrate: Any = "mean",
        normalize: bool = True,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.segments = _check_segments(segments)
        self.n_segments = check_int(n_segments, "n_segments", low=1)
        self.substrate = as_substrate(substrate)
        self.normalize = check_bool(normalize, "normalize")
        self._common(batch_size, progress, output)


class Selectivity(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.selectivity` as a metric class (lower is
    better)."""

    higher_is_better: ClassVar[bool | None] = False

    def __init__(
        self,
        *,
        patch_size: int | Sequence[int] = 8,
        segments: torch.Tensor | None = None,
        substrate: Any = 0.0,
        normalize: bool = True,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.patch_size = _check_patch(patch_size)
        self.segments = _check_segments(segments)
        self.substrate = as_substrate(substrate)
        self.normalize = check_bool(normalize, "normalize")
        self._common(batch_size, progress, output)


class RegionPerturbation(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.region_perturbation` (AOPC) as a metric class:
    higher is better with ``order="morf"``, lower with ``"lerf"``; ``"random"`` is a baseline
    (neither)."""

    def __init__(
        self,
        *,
        patch_size: int | Sequence[int] = 8,
        segments: torch.Tensor | None = None,
        order: str = "morf",
        n_regions: int = 100,
        substrate: Any = 0.0,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.patch_size = _check_patch(patch_size)
        self.segments = _check_segments(segments)
        self.order = check_option(order, "order", options=("morf", "lerf", "random"))
        self.n_regions = check_count(n_regions, "n_regions")
        self.substrate = as_substrate(substrate)
        self.generator = check_generator(generator)
        self._common(batch_size, progress, output)

    @property
    def higher_is_better(self) -> bool | None:  # type: ignore[override]
        return {"morf": True, "lerf": False}.get(self.order)

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return self.order == "random"


class SensitivityN(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.sensitivity_n` as a metric class (higher is
    better)."""

    higher_is_better: ClassVar[bool | None] = True
    is_stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n: int,
        n_runs: int = 100,
        substrate: Any = 0.0,
        similarity: str | Callable = "pearson",
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.n = check_int(n, "n", low=1)
        self.n_runs = check_count(n_runs, "n_runs", low=2)
        self.substrate = as_substrate(substrate)
        self.similarity = _check_similarity(similarity)
        self.generator = check_generator(generator)
        self._common(batch_size, progress, output)


class Monotonicity(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.monotonicity` as a metric class (higher is
    better: the fraction of monotonic samples is the mean)."""

    higher_is_better: ClassVar[bool | None] = True

    def __init__(
        self,
        *,
        features_in_step: int = 1,
        substrate: Any = 0.0,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.features_in_step = check_int(features_in_step, "features_in_step", low=1)
        self.substrate = as_substrate(substrate)
        self._common(batch_size, progress, output)


class MonotonicityCorrelation(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.monotonicity_correlation` as a metric class
    (higher is better)."""

    higher_is_better: ClassVar[bool | None] = True

    def __init__(
        self,
        *,
        n_samples: int = 100,
        features_in_step: int = 1,
        substrate: Any = "uniform",
        low: float = 0.0,
        high: float = 1.0,
        eps: float = 1e-5,
        similarity: str | Callable = "spearman",
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        progress: bool = True,
        output: OutputLike = None,
    ) -> None:
        self.n_samples = check_count(n_samples, "n_samples")
        self.features_in_step = check_int(features_in_step, "features_in_step", low=1)
        uniform = isinstance(substrate, str) and substrate == "uniform"
        self.substrate = "uniform" if uniform else as_substrate(substrate)
        self.low = check_float(low, "low")
        self.high = check_float(high, "high")
        self.eps = check_float(eps, "eps", low=0.0)
        self.similarity = _check_similarity(similarity)
        self.generator = check_generator(generator)
        self._common(batch_size, progress, output)

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return self.substrate == "uniform" or bool(getattr(self.substrate, "is_random", False))


class Sufficiency(_Ordered):
    """:func:`~salience.metrics.perturbation_curves.sufficiency` as a metric class (higher is
    better; the batch is the data set)."""

    higher_is_better: ClassVar[bool | None] = True
    _has_domain: ClassVar[bool] = False

    def __init__(
        self,
        *,
        threshold: float = 0.6,
        distance: str | Callable = "seuclidean",
        batch_size: int | None = None,
        output: OutputLike = None,
    ) -> None:
        self.threshold = check_float(threshold, "threshold", low=0.0)
        self.distance = F._check_distance(distance)
        self.batch_size = check_batch_size(batch_size)
        self.output = check_output(output, type(self).__name__)


IROF._fn = staticmethod(lambda *a, **k: _fns().irof(*a, **k))
Selectivity._fn = staticmethod(lambda *a, **k: _fns().selectivity(*a, **k))
RegionPerturbation._fn = staticmethod(lambda *a, **k: _fns().region_perturbation(*a, **k))
SensitivityN._fn = staticmethod(F.sensitivity_n)
Monotonicity._fn = staticmethod(F.monotonicity)
MonotonicityCorrelation._fn = staticmethod(F.monotonicity_correlation)
Sufficiency._fn = staticmethod(F.sufficiency)


def _fns() -> Any:
    from . import perturbation_curves

    return perturbation_curves
