"""Class-relevant attributions (VAR): keep what distinguishes the target from competing classes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any, Union

import torch

from .._validation import check_bool, check_float, check_int, check_option
from ..engine import Explainer, Parts, ScoreFunction, Wrapper
from ..engine.explainer import as_parts
from ..errors import ParameterError, SalienceWarning, ShapeError, TargetError, current_caller, warn
from ..targets import ClassTarget

__all__ = ["ClassRelevant", "TopClasses"]

ClassesLike = Union[
    str, Sequence[int], Sequence[Sequence[int]], torch.Tensor, "TopClasses", Callable[..., Any]
]


class TopClasses:
    """Class rule: the ``k`` most likely classes plus the least likely one (VAR's contrastive set).

    Ranked by the model output at the explained input (logits and softmax give the same order).
    If the explained class is not among them it takes the place of the least likely class (for
    ``least_likely=True``) or of the ``k``-th class, so every sample compares the same number of
    classes (``k + 1`` or ``k``), as VAR's ``ContrastiveAttributionWrapper`` does for its default
    ``num_classes=2``.

    Parameters
    ----------
    k : int, default 2
        Number of top classes (>= 1).
    least_likely : bool, default True
        Add the least likely class.
    """

    def __init__(self, k: int = 2, *, least_likely: bool = True) -> None:
        self.k = check_int(k, "k", "TopClasses", low=1)
        self.least_likely = check_bool(least_likely, "least_likely", "TopClasses")

    def __repr__(self) -> str:
        return f"TopClasses(k={self.k}, least_likely={self.least_likely})"

    def select(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Classes per row, shape (R, k + least_likely), from per-class scores (R, C) and targets (R,)."""
        n_classes = scores.shape[1]
        k = min(self.k, n_classes)
        order = scores.argsort(dim=1, descending=True, stable=True)
        cols = [order[:, :k]]
        if self.least_likely and n_classes > k:
            cols.append(order[:, -1:])
        chosen = torch.cat(cols, dim=1)
        missing = ~(chosen == target[:, None]).any(dim=1)
        chosen[missing, -1] = target[missing]
        return chosen


def _dedupe(classes: Sequence[int]) -> list[int]:
    seen: list[int] = []
    for c in classes:
        if c not in seen:
            seen.append(c)
    return seen


def _int_list(value: Any, what: str) -> list[int]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool or value.ndim != 1:
            raise ParameterError(f"{what} must hold integer class indices. Got {value!r} instead.")
        return [int(v) for v in value.tolist()]
    out = []
    for v in value:
        if isinstance(v, torch.Tensor) and v.ndim == 0 and not (v.is_floating_point() or v.is_complex()):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise ParameterError(f"{what} must hold integer class indices. Got {v!r} instead.")
        out.append(int(v))
    return out


class ClassRelevant(Wrapper):
    """Class-relevant attribution (VAR): the part of the target's map that no other class claims.

    For each sample the wrapped explainer attributes every compared class ``k`` of a set ``K``
    (the target always included), giving maps ``H_k``. Element-wise (every position and
    channel of the attribution), the classes compete through a softmax
    ``M = softmax_k(|H_k| / temperature)``, and the result keeps the signed target map where the
    target's share exceeds the uniform share ``1/|K|`` by more than ``tau``::

        R = H_t * M_t * 1[M_t - 1/|K| > tau]        (strict ">")

    Cost: the ``|K|`` attributions of all samples are one batched run of the wrapped explainer
    over ``sum_b |K_b|`` rows (each row its own target), chunked by the engine like any other
    rows, plus one forward pass over the B samples (to pick and validate the classes).

    Targets: the wrapped target must be class-like (``int``, ``Class``, ``Probability``,
    ``LogProbability``, or None for the predicted class); the other classes are explained with
    the same kind of target (``Probability(3)`` compares ``Probability(k)`` for k in K).
    ``Contrast``, ``Output`` and ``Score`` targets raise TargetError.

    Scale: the softmax acts on raw attribution magnitudes, so its sharpness depends on their
    scale (a model whose logits are multiplied by 10 gives gradients 10 times larger and a much
    harder competition; inputs in [0, 255] instead of [0, 1] change IG maps likewise). With
    ``normalize`` the maps of a sample are divided by one per-sample scale before the softmax
    (the same for every class, so the classes still compete on their relative magnitudes), which
    makes the mask invariant to that scale; the returned values keep the raw scale of ``H_t``.
    Maps that are small compared with the temperature (max |H| ~ 1e-3 against 0.1: untrained
    models, long signals averaged by global pooling) give a nearly uniform softmax and all-zero
    results; a UserWarning says so.

    Parameters
    ----------
    explainer : Explainer
        Any explainer (Gradient, IntegratedGradients, a CAM, SmoothGrad(...), InDomain(...)).
    classes : "all", sequence of ints, sequence of sequences, Tensor, TopClasses or callable
        The compared classes. ``"all"``: every output class. A sequence (or 1-D tensor) of ints:
        the same classes for every sample. A sequence of B sequences, or a (B, K) tensor: one set
        per sample (sets may differ in size). ``TopClasses(k)``: the k most likely classes plus
        the least likely (VAR's contrastive variant). A callable ``fn(scores) -> (B, K)`` tensor
        of classes from the per-class scores (B, C) at the input. The target is added to a set
        that lacks it; repeated classes are counted once. Every set must hold >= 2 classes.
    tau : float, default 0.01
        Minimum excess of the target's share over the uniform share ``1/|K|``, in [-1, 1]
        (VAR's demo value). ``tau >= 1 - 1/|K|`` returns zeros; ``tau = 0`` keeps every element
        where the target's share is above uniform; ``tau < -1/|K|`` disables the threshold.
    temperature : float, default 0.1
        Softmax temperature (> 0); VAR hard-codes 0.1 (``softmax(10 * |H|)``).
    use_abs : bool, default True
        Compete on ``|H_k|`` (VAR's default); False competes on the signed maps.
    normalize : bool or {"max", "mean"}, default False
        Divide a sample's maps by one scale before the softmax: ``"max"`` (or True) the largest
        ``|H_k|`` over its classes and elements, ``"mean"`` their mean ``|H_k|``. Off by
        default, as in the paper.

    Notes
    -----
    Differences from VAR's ``ClassSpecificAttributionWrapper``: a target outside ``classes`` is
    added instead of raising ValueError; duplicated classes (possible in VAR's image grids) are
    compared once (VAR counts a duplicate twice, halving that class's share and the uniform
    share); the |K| attributions are batched instead of run one after another; the temperature
    is a parameter. With identical base attributions and no duplicates the result matches VAR's
    formula exactly.

    ``Attribution.info`` holds ``classes`` (B, max |K|) with -1 padding, ``n_classes`` (B,) and
    ``share``, the target's softmax share ``M_t`` (the shape of the values).

    References
    ----------
    Walter, Vreeken & Fischer, "Now you see me! A framework for obtaining class-relevant saliency
    maps", arXiv:2503.07346, 2025.

    Examples
    --------
    >>> import torch, salience as sl
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 16, 4)).eval()
    >>> cr = sl.ClassRelevant(sl.Gradient(model), classes="all")
    >>> cr.explain(torch.randn(3, 2, 16), target=1).values.shape
    torch.Size([3, 2, 16])
    """

    def __init__(
        self,
        explainer: Explainer,
        *,
        classes: ClassesLike,
        tau: float = 0.01,
        temperature: float = 0.1,
        use_abs: bool = True,
        normalize: bool | str = False,
    ) -> None:
        super().__init__(explainer)
        #: "all", a rule, a list of ints (shared) or a list of per-sample lists
        self.classes = self._check_classes(classes)
        self.tau = check_float(tau, "tau", low=-1.0, high=1.0)
        self.temperature = check_float(temperature, "temperature", low=0.0, closed="right")
        self.use_abs = check_bool(use_abs, "use_abs")
        norm = check_option(normalize, "normalize", options=(False, True, "max", "mean"))
        self.normalize = "max" if norm is True else norm

    @staticmethod
    def _check_classes(classes: Any) -> Any:
        what = f"The 'classes' parameter of {current_caller()}"
        if isinstance(classes, str):
            return check_option(classes, "classes", options=("all",))
        if isinstance(classes, TopClasses) or (callable(classes) and not isinstance(classes, torch.Tensor)):
            return classes
        if hasattr(classes, "__array__") and not isinstance(classes, torch.Tensor):
            classes = torch.as_tensor(classes)  # numpy arrays
        if isinstance(classes, torch.Tensor):
            if classes.ndim not in (1, 2) or classes.numel() == 0:
                raise ParameterError(
                    f"{what} as a tensor must have shape (K,) or (B, K). Got {tuple(classes.shape)} instead."
                )
            rows = [classes] if classes.ndim == 1 else list(classes)
            parsed = [_int_list(r, what) for r in rows]
            shared = classes.ndim == 1
        elif isinstance(classes, Sequence) and len(classes) > 0:
            nested = [
                (isinstance(c, Sequence) and not isinstance(c, str))
                or (isinstance(c, torch.Tensor) and c.ndim > 0)
                for c in classes
            ]
            if all(nested):
                parsed = [_int_list(c, what) for c in classes]
                shared = False
            elif not any(nested):
                parsed = [_int_list(classes, what)]
                shared = True
            else:
                raise ParameterError(
                    f"{what} must be a list of class indices or a list of per-sample lists, not a "
                    f"mix. Got {classes!r} instead."
                )
        else:
            raise ParameterError(
                f"{what} must be 'all', a sequence of class indices, one sequence per sample, a "
                f"tensor of shape (K,) or (B, K), TopClasses(k) or a callable. Got {classes!r} instead."
            )
        for row in parsed:
            if not row:
                raise ParameterError(f"{what} has an empty class set.")
            if min(row) < 0:
                raise ParameterError(f"{what} must hold class indices >= 0. Got {row} instead.")
        return parsed[0] if shared else parsed

    def __repr__(self) -> str:
        return (
            f"ClassRelevant({self.explainer!r}, tau={self.tau}, temperature={self.temperature}, "
            f"use_abs={self.use_abs}, normalize={self.normalize})"
        )

    # ------------------------------------------------------------------ class sets
    def _sets(
        self, out: torch.Tensor, target: ClassTarget, t_idx: torch.Tensor, score: ScoreFunction
    ) -> list[list[int]]:
        """The compared classes of every row of ``score.input`` (target included, no duplicates)."""
        n = out.shape[0]
        n_out = target.n_classes(out)
        spec = self.classes
        if isinstance(spec, list) and not isinstance(spec[0], list):
            sets = [list(spec) for _ in range(n)]
        elif isinstance(spec, list):
            per = spec
            n_orig = int(score.sample_map.max()) + 1
            if len(per) != n_orig:
                raise ParameterError(
                    f"The 'classes' parameter of {self.name} has {len(per)} per-sample class sets "
                    f"for a batch of {n_orig} samples."
                )
            sets = [list(per[int(s)]) for s in score.sample_map.tolist()]
        elif spec == "all":
            sets = [list(range(n_out)) for _ in range(n)]
        else:
            if out.ndim > 2 and out[0].numel() != 1:  # not (B, C) nor one output per sample
                raise TargetError(
                    f"{self.name}: a class rule needs per-class model outputs (B, C); got shape "
                    f"{tuple(out.shape)}."
                )
            # per-class scores in the target's own sense (logits, probabilities, log-probabilities)
            per_class = target.class_scores(out)
            if isinstance(spec, TopClasses):
                chosen = spec.select(per_class, t_idx)
            else:
                chosen = spec(per_class)
            if not isinstance(chosen, torch.Tensor) or chosen.ndim != 2 or chosen.shape[0] != n:
                raise ParameterError(
                    f"The class rule of {self.name} must return a tensor of shape ({n}, K). Got "
                    f"{tuple(chosen.shape) if isinstance(chosen, torch.Tensor) else type(chosen).__name__}."
                )
            sets = [_int_list(row, "The class rule's output") for row in chosen.cpu()]
        for i, t in enumerate(t_idx.tolist()):
            s = _dedupe(sets[i])
            if t not in s:
                s.append(t)
            if len(s) < 2:
                raise ParameterError(
                    f"{self.name} compares the target with other classes, but sample "
                    f"{int(score.sample_map[i])} has only class {s} to compare (the model has "
                    f"{n_out} output class(es)). Give at least two classes."
                )
            bad = [c for c in s if c >= n_out or c < 0]
            if bad:
                raise TargetError(
                    f"{self.name}: class {bad[0]} is out of range for a model with {n_out} "
                    f"classes (valid: 0..{n_out - 1})."
                )
            sets[i] = s
        return sets

    # ------------------------------------------------------------------ attribution
    def _combine(self, maps: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """VAR's combination for one sample: maps (K, *A) of the compared classes, target row t.

        Returns ``H_t * M_t * 1[M_t - 1/K > tau]`` and the share ``M_t``, both of shape (*A), and
        the softmax logits (K, *A).
        """
        s = maps.abs() if self.use_abs else maps
        if not s.is_floating_point():
            s = s.to(torch.get_default_dtype())
        if self.normalize == "max" or self.normalize == "mean":
            mag = maps.abs()
            scale = mag.amax() if self.normalize == "max" else mag.mean()
            if bool(scale > 0):
                s = s / scale.to(s.dtype)
        # multiply by 1/temperature (10.0 exactly for 0.1), as VAR's softmax(10 * S)
        logits = s * (1.0 / self.temperature)
        m_t = torch.softmax(logits, dim=0)[t]
        keep = (m_t - 1.0 / maps.shape[0]) > self.tau
        return maps[t] * m_t * keep, m_t, logits

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        target = score.target
        if not isinstance(target, ClassTarget):
            raise TargetError(
                f"{self.name} needs a class target (an int, Class, Probability, LogProbability, "
                f"or None for the predicted class) so that other classes can be explained the same "
                f"way. Got {target!r}."
            )
        n = x.shape[0]
        device = x.device
        out = score.reference_output()  # cached: input_values() reuses it
        t_idx = target.explained().to(device)[score.target_map]
        sets = self._sets(out, target, t_idx, score)

        counts = torch.tensor([len(s) for s in sets], device=device)
        flat = torch.tensor([c for s in sets for c in s], dtype=torch.long, device=device)
        group = torch.repeat_interleave(torch.arange(n, device=device), counts)
        rows = int(flat.shape[0])
        offsets = torch.cumsum(counts, 0) - counts
        pos = torch.arange(rows, device=device) - offsets[group]
        t_pos = torch.tensor([s.index(t) for s, t in zip(sets, t_idx.tolist(), strict=True)], device=device)

        # a wrapped explainer that maps every class from the same model calls (RISE) does so
        # once per sample; otherwise the B*K (sample, class) rows are explained in one run
        class_maps = getattr(self.explainer, "_class_maps", None)
        every = class_maps(x, score) if class_maps is not None else None
        if every is not None:
            parts = Parts(every[group, flat], layout=score.layout)
        else:
            xr = x[group]
            out_r = out[group]
            row_target = target.with_index(flat).bind(rows, lambda: out_r)
            inner = score.retarget(
                row_target, xr, score.sample_map[group], group, target_map=torch.arange(rows, device=device)
            )
            with torch.no_grad():
                inner.record_input_values(row_target(out_r, torch.arange(rows, device=device)))
            parts = as_parts(self.explainer.attribute(xr, inner), score.layout)
        h = parts.values
        if not isinstance(h, torch.Tensor) or h.shape[0] != rows:
            raise ShapeError(
                f"{self.name}: the wrapped explainer {self.explainer.name} must return one attribution "
                f"per explained row ({rows}); got {tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}."
            )

        k_max = int(counts.max())
        tau_reachable = (1.0 - 1.0 / counts.to(torch.float64) > self.tau).tolist()
        if h.is_complex() and not self.use_abs:
            raise ParameterError(
                f"{self.name}: the attributions are complex; use use_abs=True to compare magnitudes."
            )
        results, shares, flat_samples = [], [], []
        for b, (start, k) in enumerate(zip(offsets.tolist(), counts.tolist(), strict=True)):
            # one sample's maps (K_b, *A), contiguous as VAR stacks them: the same softmax call,
            # so equal base maps give bit-identical results; sets may differ in size per sample
            r, m_t, logits = self._combine(h[start : start + k], int(t_pos[b]))
            results.append(r)
            shares.append(m_t)
            if tau_reachable[b] and bool(h[start + int(t_pos[b])].any()) and not bool(r.any()):
                flat_samples.append((b, float(logits.amax() - logits.amin())))
        result = torch.stack(results)
        share = torch.stack(shares)
        flat_samples = [(b, spread) for b, spread in flat_samples if spread < 1.0]
        if flat_samples:
            b, spread = flat_samples[0]
            warn(
                f"{self.name}: the map of {len(flat_samples)} sample(s) is all zeros because the "
                f"classes' softmax is nearly uniform (e.g. sample {b}: |H| / temperature spans "
                f"only {spread:.2g}); the attribution magnitudes are small compared with "
                f"temperature={self.temperature}. Pass normalize=True (scale-free) or a smaller "
                "temperature.",
                SalienceWarning,
            )
        classes = torch.full((n, k_max), -1, dtype=torch.long, device=device)
        classes[group, pos] = flat
        info = {
            "classes": classes,
            "n_classes": counts,
            "share": share,
            "tau": self.tau,
            "temperature": self.temperature,
        }
        return Parts(result, layout=parts.layout, layer=parts.layer, domain=parts.domain, info=info)
