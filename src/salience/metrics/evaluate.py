"""One call to score several explainers with several metrics over a dataset: a tidy table."""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch

from ..errors import ParameterError
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
        """A GitHub-flavoured markdown table."""

        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return "nan" if math.isnan(v) else f"{v:.{digits}g}"
            if v is None:
                return ""
            if isinstance(v, bool):
                return "higher" if v else "lower"
            return str(v)

        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(fmt(r[c]) for c in self.columns) + " |" for r in self.rows]
        return "\n".join([head, sep, *body])

    def __repr__(self) -> str:
        return self.to_markdown()


def _named(objs: Any, what: str) -> list[tuple[str, Any]]:
    if isinstance(objs, Mapping):
        return [(str(k), v) for k, v in objs.items()]
    if isinstance(objs, Sequence) and not isinstance(objs, str):
        out = []
        for o in objs:
            name = getattr(o, "name", type(o).__name__)
            out.append((name if isinstance(name, str) else type(o).__name__, o))
        return out
    raise ParameterError(f"{what} must be a dict of name -> object or a list. Got {type(objs).__name__}.")


def _batches(data: Any) -> Iterable[tuple[torch.Tensor, Any, Any]]:
    """(x, target, mask) triples from a tensor, an (x, y[, mask]) tuple, or an iterable of them."""
    if isinstance(data, torch.Tensor):
        yield data, None, None
        return
    if isinstance(data, tuple) and data and isinstance(data[0], torch.Tensor):
        data = [data]
    for item in data:
        if isinstance(item, torch.Tensor):
            yield item, None, None
        elif isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
            x = item[0]
            y = item[1] if len(item) > 1 else None
            m = item[2] if len(item) > 2 else None
            yield x, y, m
        else:
            raise ParameterError(
                "data must be a tensor x, a tuple (x, y) or (x, y, mask), or an iterable of those "
                f"(a DataLoader). Got an item of type {type(item).__name__}."
            )


def evaluate(
    explainers: "Mapping[str, Any] | Sequence[Any]",
    metrics: "Mapping[str, Metric] | Sequence[Metric]",
    model: Any,
    data: Any,
    *,
    domain: Any = None,
) -> Table:
    """Run every metric on every explainer's attributions over ``data``; return a tidy table.

    Parameters
    ----------
    explainers : dict of name -> Explainer, or list of Explainers (named by ``.name``)
    metrics : dict of name -> Metric, or list of Metrics (named by their class)
    model : callable
        The model the perturbation metrics evaluate (usually the explainers' model).
    data : Tensor x, tuple (x, y) or (x, y, mask), or an iterable of such batches
        ``y`` is the target (None: predicted class); ``mask`` the ground truth for localisation.
    domain : optional
        Passed to the metrics (attributions computed in a domain also carry it themselves).

    Returns
    -------
    Table
        One row per (explainer, metric), in the given order.

    Examples
    --------
    >>> table = evaluate({"IG": IntegratedGradients(model)}, [Deletion(steps=20), Sparseness()],
    ...                  model, (x, y))  # doctest: +SKIP
    >>> print(table.to_markdown())  # doctest: +SKIP
    """
    ex = _named(explainers, "explainers")
    ms = _named(metrics, "metrics")
    for name, m in ms:
        if not isinstance(m, Metric):
            raise ParameterError(f"metrics must be salience Metric objects; {name!r} is {type(m).__name__}.")
    values: dict[tuple[str, str], list[torch.Tensor]] = {(e, m): [] for e, _ in ex for m, _ in ms}
    for x, y, mask in _batches(data):
        for ename, explainer in ex:
            att = explainer.explain(x, y) if hasattr(explainer, "explain") else explainer(x, y)
            for mname, metric in ms:
                if metric.requires_mask and mask is None:
                    raise ParameterError(f"{mname} needs ground-truth masks: pass data as (x, y, mask).")
                v = metric(model, x, att, y, explainer=explainer, mask=mask, domain=domain)
                values[(ename, mname)].append(v.detach().reshape(-1).to("cpu", torch.float64))
    rows = []
    for ename, _ in ex:
        for mname, metric in ms:
            v = torch.cat(values[(ename, mname)]) if values[(ename, mname)] else torch.zeros(0, dtype=torch.float64)
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
