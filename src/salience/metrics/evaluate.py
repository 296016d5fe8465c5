"""One call to score several explainers with several metrics over a dataset: a tidy table."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from .._inputs import is_mne, model_dtype
from ..errors import ParameterError, caller
from ._checks import check_explainer, check_forward, run_explainer
from .base import Metric

__all__ = ["evaluate", "Table"]


class Table:
    """A small tidy table: one row (a dict) per method x metric; no pandas needed.

    Columns: ``method``, ``metric``, ``mean``, ``std`` (sample standard deviation over the
    finite per-sample values, NaN for fewer than two), ``n`` (finite values), ``higher_is_better``.
    ``pandas.DataFrame(table.rows)`` converts it.
    """

    columns = ("method", "metric", "mean", "std", "n", "higher_is_better")

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    def get(self, method: str, metric: str) -> dict[str, Any]:
        """The row of ``method`` x ``metric``."""
        for row in self.rows:
            if row["method"] == method and row["metric"] == metric:
                return row
        raise KeyError((method, metric))

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def to_markdown(self, digits: int = 4) -> str:
        r"""A GitHub-flavoured markdown table.

        In a cell, ``|`` is escaped as ``\|`` (and ``\`` as ``\\``, so a backslash cannot
        unescape a pipe) and line breaks become spaces: labels such as an explainer's repr
        cannot break the table's columns.

        Parameters
        ----------
        digits : int, default 4
            Significant digits of the numbers.

        Returns
        -------
        str
        """

        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return "nan" if math.isnan(v) else f"{v:.{digits}g}"
            if v is None:
                return ""
            if isinstance(v, bool):
                return "higher" if v else "lower"
            return " ".join(str(v).replace("\\", "\\\\").replace("|", "\\|").splitlines())

        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(fmt(r[c]) for c in self.columns) + " |" for r in self.rows]
        return "\n".join([head, sep, *body])

    def __repr__(self) -> str:
        return self.to_markdown()


def _label(o: Any) -> str:
    name = getattr(o, "name", None)
    return name if isinstance(name, str) else type(o).__name__


def _labels(objs: list[Any]) -> list[str]:
    """One distinct row label per object, deterministic and in order.

    An object whose ``name`` is unique keeps it. Objects sharing a name are labelled by their
    repr when those reprs differ and hold no memory address (``IntegratedGradients(n_steps=2,
    ...)`` and ``IntegratedGradients(n_steps=64, ...)``); otherwise by ``name``, ``name#2``,
    ``name#3``, ... in order. Any label still taken gets the next free ``#k`` suffix.
    """
    names = [_label(o) for o in objs]
    labels = list(names)
    for name in dict.fromkeys(names):
        group = [i for i, n in enumerate(names) if n == name]
        if len(group) < 2:
            continue
        reprs = [repr(objs[i]) for i in group]
        if len(set(reprs)) == len(reprs) and not any(" at 0x" in r for r in reprs):
            for i, r in zip(group, reprs, strict=True):
                labels[i] = r
        else:
            for k, i in enumerate(group, 1):
                labels[i] = name if k == 1 else f"{name}#{k}"
    return _distinct(labels)


def _distinct(labels: list[str]) -> list[str]:
    """``labels`` with each repeat suffixed ``#2``, ``#3``, ... (the first free one)."""
    seen: set[str] = set()
    out = []
    for label in labels:
        new, k = label, 2
        while new in seen:
            new, k = f"{label}#{k}", k + 1
        seen.add(new)
        out.append(new)
    return out


def _named(objs: Any, what: str) -> list[tuple[str, Any]]:
    """``(label, object)`` pairs, one per object given (see :func:`_labels`)."""
    if isinstance(objs, Mapping):
        pairs = [(str(k), v) for k, v in objs.items()]
        pairs = list(zip(_distinct([k for k, _ in pairs]), [v for _, v in pairs], strict=True))
    elif isinstance(objs, Sequence) and not isinstance(objs, str):
        objs = list(objs)
        pairs = list(zip(_labels(objs), objs, strict=True))
    else:
        raise ParameterError(
            f"The {what!r} parameter of evaluate must be a dict of name -> object or a list. Got "
            f"{type(objs).__name__} instead."
        )
    if not pairs:
        raise ParameterError(f"The {what!r} parameter of evaluate must hold at least one object. Got none.")
    return pairs


_DATA = "a tensor x, a tuple (x, y) or (x, y, mask), or an iterable of those (a DataLoader)"
#: appended to the messages about data: what else a batch may hold
_KWARGS_HINT = " (a batch may also end with a dict of its keyword model inputs, (x, y, forward_kwargs))"


def _batches(data: Any) -> Iterable[tuple[torch.Tensor, Any, Any, Mapping[str, Any] | None]]:
    """(x, target, mask, forward_kwargs) from a tensor, an (x, y[, mask][, kwargs]) tuple, or an
    iterable of them."""
    if isinstance(data, torch.Tensor):
        yield data, None, None, None
        return
    if isinstance(data, tuple) and data and isinstance(data[0], torch.Tensor):
        data = [data]
    if data is None or isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ParameterError(
            f"The 'data' parameter of evaluate must be {_DATA}. Got {type(data).__name__} instead{_KWARGS_HINT}."
        )
    for item in data:
        if isinstance(item, torch.Tensor):
            yield item, None, None, None
            continue
        kwargs = None
        if isinstance(item, (tuple, list)) and len(item) > 1 and isinstance(item[-1], Mapping):
            item, kwargs = item[:-1], item[-1]
        if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
            x = item[0]
            y = item[1] if len(item) > 1 else None
            m = item[2] if len(item) > 2 else None
            yield x, y, m, kwargs
        else:
            raise ParameterError(
                f"The 'data' parameter of evaluate must be {_DATA}. Got an item of type "
                f"{type(item).__name__} instead{_KWARGS_HINT}."
            )


def _forward_inputs(
    x: Any,
    forward_args: Sequence[Any],
    forward_kwargs: Mapping[str, Any] | None,
    batch_kwargs: Mapping[str, Any] | None,
    in_memory: bool,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The extra model inputs of one batch: evaluate's own, checked, merged with the batch's."""
    n = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim else 0
    extras = check_forward(forward_args, forward_kwargs, n)
    if not in_memory and extras.per_sample:
        raise ParameterError(
            "The 'forward_kwargs'/'forward_args' parameters of evaluate hold a tensor whose first axis has "
            f"the length of a batch ({n}), a per-sample input, but data is an iterable of batches: "
            "per-sample extra inputs must come with their batch. Yield (x, y, forward_kwargs) or "
            "(x, y, mask, forward_kwargs) items, or wrap a tensor that is the same for every batch in "
            "salience.engine.shared(...)."
        )
    kwargs = dict(extras.kwargs)
    if batch_kwargs is not None:
        batch = check_forward((), batch_kwargs, n).kwargs
        both = sorted(set(kwargs) & set(batch))
        if both:
            raise ParameterError(
                f"The 'forward_kwargs' parameter of evaluate and the batch's own keyword inputs both give "
                f"{both}; pass each input once."
            )
        kwargs.update(batch)
    return extras.args, kwargs


def _with_output(metric: Metric, explainer: Any) -> Metric:
    """``metric`` scoring the tensor the explainer explained: a metric left at ``output=None``
    takes the explainer's ``output`` (a copy; the user's metric object is not changed)."""
    chosen = getattr(explainer, "output", None)
    if chosen is None or getattr(metric, "output", chosen) is not None:
        return metric
    scored = copy.copy(metric)
    scored.output = chosen  # type: ignore[attr-defined]
    return scored


@caller("evaluate")
def evaluate(
    explainers: Mapping[str, Any] | Sequence[Any],
    metrics: Mapping[str, Metric] | Sequence[Metric],
    model: Any,
    data: Any,
    *,
    domain: Any = None,
    forward_args: Sequence[Any] = (),
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Table:
    """Run every metric on every explainer's attributions over ``data``; return a tidy table.

    Parameters
    ----------
    explainers : dict of name -> Explainer, or list of Explainers
        Each explainer object gets its own rows, labelled by the dict key, or in a list by its
        ``.name``; explainers sharing a name (``IntegratedGradients(n_steps=2)`` and
        ``IntegratedGradients(n_steps=64)``) are labelled by their reprs, or ``name``,
        ``name#2``, ... where the reprs coincide.
    metrics : dict of name -> Metric, or list of Metrics
        Labelled as the explainers (a list: by class name, then repr, then ``#k``).
    model : callable
        The model the perturbation metrics evaluate (usually the explainers' model).
    data : Tensor x, tuple (x, y) or (x, y, mask), or an iterable of such batches
        ``y`` is the target (None: predicted class); ``mask`` the ground truth for localisation.
        ``mne.Epochs`` give their data (:func:`salience.mne.from_mne`, the model's dtype) and,
        with two or more event types, :func:`salience.mne.labels` as targets.
        A batch may end with a dict of its own extra keyword inputs of the model, ``(x, y,
        forward_kwargs)`` or ``(x, y, mask, forward_kwargs)`` (per-sample tensors such as an
        attention mask, with the batch's rows), merged with ``forward_kwargs``.
    domain : optional
        Passed to the metrics (attributions computed in a domain also carry it themselves).
    forward_args : sequence, optional
        Extra positional inputs of every model call, ``model(rows, *forward_args,
        **forward_kwargs)``, passed to every explainer and metric.
    forward_kwargs : dict, optional
        Extra keyword inputs of every model call, passed to every explainer and metric. With
        in-memory data (a tensor or one tuple), tensors whose first axis has length B are
        per-sample and follow their rows through every explainer and metric. With an iterable
        of batches, per-sample inputs must come with their batch (a dict ending each item):
        here only inputs that are the same for every batch are accepted (flags, and tensors
        wrapped in :func:`salience.engine.shared`).

    Returns
    -------
    Table
        One row per (explainer, metric), in the given order. A model-calling metric left at
        ``output=None`` scores the tensor each explainer's ``output=`` selects.

    Raises
    ------
    ParameterError
        Empty ``explainers`` or ``metrics``, a model where an explainer is expected, an object
        that is not a Metric, ``data`` that is None or not an iterable of batches, ``data``
        that yields no batch, per-sample ``forward_args``/``forward_kwargs`` with an iterable of
        batches, or a batch's keyword input that ``forward_kwargs`` also gives.

    Examples
    --------
    >>> table = evaluate({"IG": IntegratedGradients(model)}, [Deletion(steps=20), Sparseness()],
    ...                  model, (x, y))  # doctest: +SKIP
    >>> print(table.to_markdown())  # doctest: +SKIP
    """
    ex = _named(explainers, "explainers")
    ms = _named(metrics, "metrics")
    for name, e in ex:
        check_explainer(e, f"explainers[{name!r}]")
    for name, m in ms:
        if not isinstance(m, Metric):
            raise ParameterError(f"metrics must be salience Metric objects; {name!r} is {type(m).__name__}.")
    # keyed by position: each explainer and metric object has its own rows, whatever its name
    values: dict[tuple[int, int], list[torch.Tensor]] = {
        (i, j): [] for i in range(len(ex)) for j in range(len(ms))
    }
    if is_mne(data):  # mne.Epochs: its data in the model's dtype, its event classes as targets
        from ..mne import from_mne, labels

        x_mne, meta = from_mne(data, dtype=model_dtype(model))
        data = (x_mne, labels(data)) if "class_names" in meta else x_mne
    in_memory = isinstance(data, torch.Tensor) or (
        isinstance(data, tuple) and bool(data) and isinstance(data[0], torch.Tensor)
    )
    n_batches = 0
    for x, y, mask, batch_kwargs in _batches(data):
        n_batches += 1
        args, kwargs = _forward_inputs(x, forward_args, forward_kwargs, batch_kwargs, in_memory)
        # passed only when there are some: explainers and metrics written before these
        # options existed keep working
        extra: dict[str, Any] = {"forward_args": args, "forward_kwargs": kwargs} if args or kwargs else {}
        for i, (_, explainer) in enumerate(ex):
            if hasattr(explainer, "explain"):
                att = explainer.explain(x, y, **extra)
            else:
                att = run_explainer(explainer, x, y, args, kwargs)
            for j, (mname, metric) in enumerate(ms):
                if metric.requires_mask and mask is None:
                    raise ParameterError(f"{mname} needs ground-truth masks: pass data as (x, y, mask).")
                scorer = _with_output(metric, explainer)
                v = scorer(model, x, att, y, explainer=explainer, mask=mask, domain=domain, **extra)
                values[(i, j)].append(v.detach().reshape(-1).to("cpu", torch.float64))
    if not n_batches:
        raise ParameterError("The 'data' parameter of evaluate must yield at least one batch. Got none.")
    rows = []
    for i, (ename, _) in enumerate(ex):
        for j, (mname, metric) in enumerate(ms):
            v = torch.cat(values[(i, j)])
            v = v[torch.isfinite(v)]
            n = int(v.numel())
            rows.append(
                {
                    "method": ename,
                    "metric": mname,
                    "mean": float(v.mean()) if n else float("nan"),
                    "std": float(v.std()) if n > 1 else float("nan"),
                    "n": n,
                    "higher_is_better": metric.higher_is_better,
                }
            )
    return Table(rows)
