"""The ``Metric`` base class: configuration around a functional metric, one call signature.

The argument checks the metrics share are in :mod:`~salience.metrics._checks`, the preamble of
the model-based metrics in :mod:`~salience.metrics._setup`, and the scale-exact statistics
(rescaling, correlations) in :mod:`~salience.metrics._stats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from ..attribution import Attribution
from ..errors import NamedInit, ParameterError
from ..targets import TargetLike

__all__ = ["Metric"]

AttributionLike = "torch.Tensor | Attribution"


class Metric(NamedInit):
    """Base class of the metric classes: a bundle of configuration around a functional metric.

    A metric class only stores validated keyword-only parameters in ``__init__`` and calls its
    functional counterpart in ``__call__``. Every class has the same call signature, so
    :func:`~salience.metrics.evaluate` can run any of them:

    ``metric(model, x, attribution, target=None, *, explainer=None, mask=None, domain=None,
    forward_args=(), forward_kwargs=None)`` returns one value per sample, shape (B,) (NaN where
    the metric is undefined for a sample).

    ``forward_args`` and ``forward_kwargs`` are extra inputs of every model call
    (``model(rows, *forward_args, **forward_kwargs)``: an attention mask, a padding mask, a
    subject id, flags). Tensors whose first axis has length B are per-sample: every model call,
    and every re-run of the explainer, receives the entries of the samples its rows derive from
    (perturbed copies, deletion states, noise draws), whatever the chunking; wrap a tensor in
    :func:`salience.engine.shared` to pass it unchanged. Metrics that call the model take
    ``output=`` in their constructor (the tensor to score in a structured output); metrics that
    re-run an explainer use the explainer's own ``output``; metrics that call neither ignore
    the extra inputs.

    Class attributes declare what a metric needs and how to read it (torchmetrics-style).
    """

    #: True if larger values are better, False if smaller are, None if neither (e.g. sanity curves)
    higher_is_better: ClassVar[bool | None] = None
    #: the metric calls the model
    requires_model: ClassVar[bool] = False
    #: the metric re-explains perturbed inputs or models (robustness, randomisation)
    requires_explainer: ClassVar[bool] = False
    #: the metric needs a ground-truth mask (localisation)
    requires_mask: ClassVar[bool] = False
    #: the metric draws random numbers (through its ``generator``)
    is_stochastic: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_param_repr(v)}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{self.name}({params})"

    def __call__(
        self,
        model: Any,
        x: torch.Tensor,
        attribution: torch.Tensor | Attribution,
        target: TargetLike = None,
        *,
        explainer: Any = None,
        mask: torch.Tensor | None = None,
        domain: Any = None,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    # helpers for subclasses ------------------------------------------------------------
    def _need(self, value: Any, what: str) -> Any:
        if value is None:
            raise ParameterError(f"{self.name} needs {what}; got None.")
        return value


def _param_repr(value: Any) -> str:
    """A parameter in a metric's repr; generators without their memory address (the repr labels
    rows of :func:`~salience.metrics.evaluate`'s table and must not change from run to run)."""
    if isinstance(value, torch.Generator):
        return f"torch.Generator(device={str(value.device)!r})"
    return repr(value)


class _Perturbation(Metric):
    """A metric that scores perturbed copies of the input with the model (``self.output``
    selects the scored tensor of a structured output)."""

    requires_model: ClassVar[bool] = True
