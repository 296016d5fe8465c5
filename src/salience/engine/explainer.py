"""The base classes a method subclasses: :class:`Explainer` (the template ``explain``, one method to
implement, :meth:`Explainer.attribute`) and :class:`Wrapper` (a method built around another)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .._inputs import as_input, named_target, with_names
from .._validation import check_batch_size, check_input, non_finite
from ..attribution import Attribution
from ..errors import NamedInit, NumericalError, ParameterError, ShapeError, TrainingModeWarning, caller, warn
from ..layout import Layout, LayoutLike, as_layout
from ..targets import TargetLike
from ._forward import OutputLike, check_output
from .layers import unwrap
from .score import ScoreFunction, make_score

__all__ = ["Explainer", "Wrapper", "Parts", "as_parts"]


@dataclass
class Parts:
    """What :meth:`Explainer.attribute` may return instead of a bare tensor, to report more
    than values.

    Attributes
    ----------
    values : Tensor of shape (B, ...)
        The attribution.
    delta : Tensor of shape (B,), optional
        A completeness gap (Integrated Gradients), recorded as ``Attribution.delta``.
    layout : Layout, optional
        The axes of ``values`` when they differ from the input's (a CAM at layer resolution, a
        map in a domain).
    layer : str, optional
        The explained layer's name (layer methods).
    domain : Domain, optional
        The domain ``values`` live in.
    info : dict
        Anything else worth recording (hyperparameters in effect, shapes).
    scores : Tensor of shape (B,), optional
        The explained scores at ``x``, when they differ from ``score.input_values()`` of the
        score function ``attribute`` received (rarely needed; see
        :meth:`Explainer.explained_score`).
    """

    values: torch.Tensor
    delta: torch.Tensor | None = None
    layout: Layout | None = None
    layer: str | None = None
    domain: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    scores: torch.Tensor | None = None


def as_parts(result: torch.Tensor | Parts, layout: Layout) -> Parts:
    """The result of :meth:`Explainer.attribute` as :class:`Parts` with a layout (``layout``
    unless the result names its own)."""
    parts = result if isinstance(result, Parts) else Parts(values=result)
    if parts.layout is None:
        parts.layout = layout
    return parts


class Explainer(NamedInit):
    """Base class of every explainer: validate, build the score function, attribute.

    A new method subclasses it, stores its validated keyword-only hyperparameters in
    ``__init__`` (no hooks, no ``.eval()``, no tensors: construction is cheap and has no side
    effects) and implements one method, :meth:`attribute` ``(x, score)``, where ``score`` is a
    :class:`~salience.engine.ScoreFunction`: it never sees the model. :meth:`explain` does the
    rest (input checks, layout, target binding, the no-side-effects guarantees, the result);
    the method then works in every domain (:class:`~salience.InDomain`), with several classes
    (:class:`~salience.ClassRelevant`) and under every metric. See docs/extending.md.

    Parameters
    ----------
    model : callable
        Maps a batch (B, *S) to outputs (B, *O); usually an ``nn.Module`` in eval mode. Never
        modified: its mode, parameters, gradients and hooks are left as they were.
    batch_size : int, optional
        Maximum rows (samples x steps/draws/masks) per model call. None picks a bounded size
        (at most 256 rows and about 512K input elements on a CPU, 4M on a GPU).
    layout : str or Layout, optional
        Axis names of the input; inferred from ``x.ndim`` when None ((N, C, T), (N, C, H, W),
        (N, C, T, H, W)).
    output : str, int or callable, optional
        The tensor to explain when the model returns a tuple, a list, a dict or a Hugging Face
        ``ModelOutput``: a key (``"logits"``), an index (``0``) or a callable ``output -> tensor``.
        None (the default) takes a tensor as it is, a mapping's or ``ModelOutput``'s ``"logits"``
        and the element of a one-element tuple, and otherwise raises an error naming what the
        output holds. Targets then see that tensor (``Score(fn, raw=True)`` sees the whole output).
    """

    #: methods whose output depends on a random generator (opt out of batch invariance)
    is_stochastic: ClassVar[bool] = False

    def __init__(
        self,
        model: Any,
        *,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        if not callable(model):
            raise ParameterError(
                f"The 'model' parameter of {type(self).__name__} must be callable (an nn.Module or "
                f"a function of a batch). Got {type(model).__name__} instead."
            )
        self.model = model
        self.batch_size = check_batch_size(batch_size, type(self).__name__)
        self.layout = as_layout(layout) if layout is not None else None
        self.output = check_output(output, type(self).__name__)

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}(batch_size={self.batch_size})"

    def explain(
        self,
        x: torch.Tensor,
        target: TargetLike = None,
        *,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
        channel_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> Attribution:
        """Explain ``target`` at ``x``.

        Parameters
        ----------
        x : Tensor of shape (N, C, T), (N, C, H, W) or (N, C, T, H, W), or MNE data
            Floating-point, finite, channels-first; not modified. ``mne.Epochs``/``EpochsArray``
            and ``mne.Evoked`` are converted by :func:`salience.mne.from_mne` (data channels,
            MNE's SI units, the model's dtype); their channel names, ``sfreq``, montage and
            event names go into the result's ``info``.
        target : int, sequence of ints, Tensor of shape (N,), Target, callable, class name(s) or None
            What to explain; None explains the predicted class (or the single output of a model
            with one output per sample), recorded in the result. A str (or one str per sample)
            is a class name, looked up in ``class_names``.
        forward_args : sequence, optional
            Extra positional inputs of every model call, after ``x``'s rows: ``model(rows, *forward_args)``.
        forward_kwargs : dict, optional
            Extra keyword inputs of every model call (an attention mask, a padding mask, a
            subject id, flags). Tensors whose first axis has length N are per-sample (also
            inside lists, tuples and dicts): each model call receives the entries of the samples
            its rows belong to, whatever the chunking (IG steps, noise draws, masks). Wrap a
            tensor in :func:`salience.engine.shared` to pass it to every call unchanged.
        channel_names : sequence of str, optional
            One name per channel (the layout's ``"c"`` axis), recorded in ``info`` for the plots
            (overrides an MNE object's).
        class_names : sequence of str, optional
            The model's classes in output order: recorded in ``info`` and used to read a
            target given by name (default for ``mne.Epochs``: the event names by code).

        Returns
        -------
        Attribution
        """
        if torch.is_inference_mode_enabled():
            # gradients cannot be recorded in inference mode: switch it off for the call
            # (check_input then explains a normal copy of an inference tensor)
            with torch.inference_mode(False):
                return self.explain(
                    x,
                    target,
                    forward_args=forward_args,
                    forward_kwargs=forward_kwargs,
                    channel_names=channel_names,
                    class_names=class_names,
                )
        with caller(self.name):
            return self._explain(x, target, forward_args, forward_kwargs, channel_names, class_names)

    def _explain(
        self,
        x: torch.Tensor,
        target: TargetLike,
        forward_args: Sequence[Any] = (),
        forward_kwargs: Mapping[str, Any] | None = None,
        channel_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> Attribution:
        owner = self.name
        x, meta = as_input(x, self.model)  # an MNE object: its tensor and metadata
        x = check_input(x, owner)
        layout = Layout.infer(x, self.layout)
        meta = with_names(meta, x, layout, channel_names, class_names)
        target = named_target(target, meta.get("class_names"))
        model = unwrap(self.model)  # the network inside torch.compile / DataParallel
        if isinstance(model, nn.Module) and model.training:
            warn(
                f"{owner}: the model is in training mode; BatchNorm and dropout make attributions "
                "depend on the rest of the batch and on chance. Call model.eval() first (salience "
                "never changes the model's mode; its buffers, such as BatchNorm running "
                "statistics, and the global RNG are restored after every model call).",
                TrainingModeWarning,
            )
        x = x.detach()
        score = make_score(
            self.model,
            x,
            target,
            batch_size=self.batch_size,
            layout=layout,
            output=self.output,
            forward_args=forward_args,
            forward_kwargs=forward_kwargs,
        )
        score = self.explained_score(score)
        parts = as_parts(self.attribute(x, score), layout)
        values = parts.values
        if not isinstance(values, torch.Tensor) or values.ndim == 0 or values.shape[0] != x.shape[0]:
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ShapeError(
                f"{owner}.attribute must return a tensor (or Parts) whose first axis is the batch "
                f"of {x.shape[0]} sample(s); it returned {got}."
            )
        bad = non_finite(values)
        if bad:
            raise NumericalError(
                f"{owner} produced {bad} NaN/inf attribution value(s): a computation overflowed "
                f"{values.dtype} (the input's largest magnitude is {float(x.abs().max()):.3g}). "
                "Rescale the input (standardise it as the model was trained), or explain in float64."
            )
        return Attribution(
            values=values.detach().to(dtype=x.dtype),
            target=score.target.explained(),
            scores=(parts.scores if parts.scores is not None else score.input_values()).detach(),
            method=owner,
            layout=parts.layout or layout,
            domain=parts.domain,
            delta=None if parts.delta is None else parts.delta.detach(),
            layer=parts.layer,
            info={**meta, **parts.info},
        )

    __call__ = explain

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> torch.Tensor | Parts:
        """The attribution of ``score`` at ``x``: the one method a new explainer implements.

        Called by :meth:`explain` (and by wrappers such as SmoothGrad, InDomain and
        ClassRelevant, with score functions derived from it), never by users directly.

        Parameters
        ----------
        x : Tensor of shape (B, *S)
            The explained point, detached; inside a domain, its coefficients. Do not modify it.
        score : ScoreFunction
            ``x -> one score per sample`` with the target bound: call ``score.values``,
            ``score.gradients``, ``score.layer_gradients`` and friends; it batches, chunks and
            keeps the model unchanged. ``score.layout`` names the axes of ``x``.

        Returns
        -------
        Tensor of shape (B, ...) or Parts
            Usually the shape of ``x``; a :class:`Parts` to report a completeness gap, a layer,
            another layout or extra information.
        """
        legacy = getattr(type(self), "_attribute", None)
        if legacy is not None:  # written against salience 0.1, where the hook was private
            warn(
                f"{type(self).__name__} implements _attribute(x, score); the method is now public: "
                "rename it to attribute(x, score). _attribute will stop working in a later release.",
                DeprecationWarning,
            )
            return legacy(self, x, score)
        raise NotImplementedError(
            f"{type(self).__name__} must implement attribute(self, x, score) (see "
            "salience.engine.Explainer.attribute and docs/extending.md)."
        )

    def explained_score(self, score: ScoreFunction) -> ScoreFunction:
        """The score function this explainer explains, derived from the model's (an optional
        second method to implement).

        The identity by default. ``explain`` applies it once, before ``attribute``, and records
        the scores of the result (so ``Attribution.scores`` match what was explained); wrappers
        delegate to the wrapped explainer, so noisy copies, domains and retargeted classes are
        derived from it. The CAM family uses it for ``final_activation="strip"``.
        """
        return score


class Wrapper(Explainer):
    """An explainer built around another one (SmoothGrad, InDomain, ClassRelevant).

    The model, ``batch_size`` and ``layout`` are the wrapped explainer's.
    """

    def __init__(self, explainer: Explainer) -> None:
        if not isinstance(explainer, Explainer):
            raise ParameterError(
                f"The 'explainer' parameter of {type(self).__name__} must be a salience Explainer "
                f"(e.g. IntegratedGradients(model)). Got {type(explainer).__name__} instead."
            )
        self.explainer = explainer
        super().__init__(
            explainer.model, batch_size=explainer.batch_size, layout=explainer.layout, output=explainer.output
        )

    def explained_score(self, score: ScoreFunction) -> ScoreFunction:
        return self.explainer.explained_score(score)

    @property
    def is_stochastic(self) -> bool:  # type: ignore[override]
        return bool(getattr(type(self), "_stochastic", False)) or self.explainer.is_stochastic

    @property
    def name(self) -> str:
        return f"{type(self).__name__}({self.explainer.name})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.explainer!r})"
