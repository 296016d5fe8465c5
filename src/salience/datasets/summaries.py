"""Dataset summaries computed from an attribution store chunk by chunk (never loading it whole):
class-wise mean maps, mean |attribution| along an axis (channels, bands, frequencies,
components), metric tables over the dataset, and a dataset section for the HTML report."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError
from ._store import StoreError, zarr_module

__all__ = ["class_means", "importance", "metric_table", "summarise", "dataset_section"]


def _open(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    path = os.fspath(path)
    try:
        group = zarr_module().open_group(path, mode="r")
    except Exception as err:
        raise StoreError(f"{path!r} is not a readable Zarr store ({err}).") from err
    doc = dict(group.attrs).get("salience")
    if doc is None or "dims" not in doc:
        raise StoreError(f"{path!r} holds no attributions (not written by explain_dataset, or empty).")
    return group, doc


def _chunks(group: Any, doc: dict[str, Any]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of every written chunk, in order."""
    chunk, n = int(doc["chunk"]), int(doc["n"])
    written = group["written"][:]
    for k in np.flatnonzero(written):
        yield int(k) * chunk, min((int(k) + 1) * chunk, n)


def _coords(group: Any, doc: dict[str, Any], axes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for axis in axes:
        if axis in group and axis != "values":
            out[axis] = group[axis][:]
    names = doc.get("channel_names")
    if "c" in axes and names is not None and len(names) == group["values"].shape[1 + list(axes).index("c")]:
        out["c"] = list(names)
    return out


def _by(group: Any, by: str, start: int, stop: int) -> np.ndarray:
    if by not in ("target", "label"):
        raise ParameterError(f"The 'by' parameter must be 'target' or 'label'; got {by!r}.")
    if by not in group:
        raise StoreError(f"The store has no {by!r} array (its arrays: {sorted(group.array_keys())}).")
    return np.asarray(group[by][start:stop]).reshape(stop - start).astype(np.int64)


def class_means(path: str | os.PathLike[str], *, by: str = "target", absolute: bool = False) -> Any:
    """The mean attribution map of each class, read chunk by chunk.

    Parameters
    ----------
    path : str or path
        A store written by :func:`~salience.datasets.explain_dataset`.
    by : {"target", "label"}
        Group samples by the explained class or by the items' labels.
    absolute : bool
        Average ``|values|`` instead of the signed values.

    Returns
    -------
    xarray.DataArray of dims ("class", *axes)
        The mean map of each class present (the ``count`` coordinate says how many samples),
        with the store's coordinates. Only written chunks count.
    """
    from .read import xarray_module

    group, doc = _open(path)
    axes = doc["dims"][1:]
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for start, stop in _chunks(group, doc):
        values = np.asarray(group["values"][start:stop], dtype=np.float64)
        if absolute:
            values = np.abs(values)
        keys = _by(group, by, start, stop)
        for c in np.unique(keys):
            sel = values[keys == c]
            sums[int(c)] = sums.get(int(c), 0) + sel.sum(axis=0)
            counts[int(c)] = counts.get(int(c), 0) + int(sel.shape[0])
    classes = sorted(sums)
    if not classes:
        raise StoreError(f"{os.fspath(path)!r} has no written chunk to summarise.")
    data = np.stack([sums[c] / counts[c] for c in classes])
    xr = xarray_module()
    coords: dict[str, Any] = {"class": classes, "count": ("class", [counts[c] for c in classes])}
    coords.update(_coords(group, doc, axes))
    names = doc.get("class_names")
    if names is not None and all(0 <= c < len(names) for c in classes):
        coords["class_name"] = ("class", [names[c] for c in classes])
    return xr.DataArray(data, dims=["class", *axes], coords=coords, name="mean_abs" if absolute else "mean")


def importance(
    path: str | os.PathLike[str],
    axis: str = "c",
    *,
    by: str | None = None,
    bands: Mapping[str, tuple[float, float]] | None = None,
) -> Any:
    """Mean ``|attribution|`` per coordinate of ``axis``, averaged over samples and every other
    axis: per channel (``"c"``), per frequency or band (``"f"``), per scale, per component.

    Parameters
    ----------
    path : str or path
        A store written by :func:`~salience.datasets.explain_dataset`.
    axis : str
        An axis of the store's layout (``open_attributions(path).values.dims[1:]``).
    by : {"target", "label"}, optional
        One row per class instead of one over the dataset.
    bands : mapping of str to (low, high), optional
        Named ranges of the axis's coordinates (e.g. ``{"alpha": (8, 13)}`` on a frequency axis
        ``"f"``): the result has one entry per band, the sum over the coordinates in
        ``[low, high)`` (the attribution mass of the band).

    Returns
    -------
    xarray.DataArray of dims (axis,) or ("class", axis)
        With ``bands``, the dim is ``"band"``.
    """
    from .read import xarray_module

    group, doc = _open(path)
    axes = list(doc["dims"][1:])
    if axis not in axes:
        raise ParameterError(f"The 'axis' parameter must be one of the store's axes {axes}; got {axis!r}.")
    other = tuple(1 + i for i, a in enumerate(axes) if a != axis)
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for start, stop in _chunks(group, doc):
        per = np.abs(np.asarray(group["values"][start:stop], dtype=np.float64)).mean(axis=other)
        keys = _by(group, by, start, stop) if by is not None else np.zeros(stop - start, np.int64)
        for c in np.unique(keys):
            sums[int(c)] = sums.get(int(c), 0) + per[keys == c].sum(axis=0)
            counts[int(c)] = counts.get(int(c), 0) + int((keys == c).sum())
    if not sums:
        raise StoreError(f"{os.fspath(path)!r} has no written chunk to summarise.")
    xr = xarray_module()
    coords = {k: v for k, v in _coords(group, doc, axes).items() if k == axis}
    if bands is not None:
        if axis not in coords or isinstance(coords[axis], list):
            raise ParameterError(
                f"'bands' needs numeric coordinates on the axis {axis!r}; the store has none."
            )
        values = np.asarray(coords[axis], dtype=np.float64)
        sel = {name: (values >= lo) & (values < hi) for name, (lo, hi) in bands.items()}
        sums = {c: np.array([v[m].sum() for m in sel.values()]) for c, v in sums.items()}
        coords = {"band": list(sel)}
        axis = "band"
    if by is None:
        return xr.DataArray(sums[0] / counts[0], dims=[axis], coords=coords, name="mean_abs")
    classes = sorted(sums)
    coords.update({"class": classes, "count": ("class", [counts[c] for c in classes])})
    data = np.stack([sums[c] / counts[c] for c in classes])
    return xr.DataArray(data, dims=["class", axis], coords=coords, name="mean_abs")


def metric_table(
    path: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    *,
    model: Any = None,
    data: Any = None,
    domain: Any = None,
) -> Any:
    """Evaluate metrics on every written sample of a store, chunk by chunk.

    Parameters
    ----------
    path : str or path
        A store written by :func:`~salience.datasets.explain_dataset`.
    metrics : mapping of str to Metric
        Metric objects of :mod:`salience.metrics` (e.g. ``{"sparseness": Sparseness(),
        "deletion": Deletion()}``), or callables with their signature
        ``metric(model, x, attribution, target)`` returning one value per sample.
    model : callable, optional
        The explained model, for metrics that call it.
    data : optional
        The explained data (as given to ``explain_dataset``), for metrics that read the input;
        checked against the store's fingerprint.
    domain : Domain, optional
        The domain the attributions live in, for metrics that perturb in it.

    Returns
    -------
    xarray.Dataset
        One variable per metric, dim ``sample`` (NaN for samples not written); ``.mean()`` gives
        the table over the dataset.
    """
    import torch

    from ._sources import as_source
    from .read import xarray_module

    group, doc = _open(path)
    n = int(doc["n"])
    source = None
    if data is not None:
        source = as_source(data)
        if source.describe() != doc["fingerprint"]["data"]:
            raise StoreError("metric_table: 'data' is not the data the store was written from.")
    out = {name: np.full(n, np.nan) for name in metrics}
    for start, stop in _chunks(group, doc):
        attribution = torch.from_numpy(np.asarray(group["values"][start:stop]))
        target = torch.from_numpy(_by(group, "target", start, stop)) if "target" in group else None
        x = source.read(start, stop).x if source is not None and source.random_access else None
        if source is not None and x is None:
            x = next(iter(source.chunks(stop - start, [start // (stop - start)])))[1].x
        for name, metric in metrics.items():
            kwargs = {"domain": domain} if domain is not None else {}
            vals = metric(model, x, attribution, target, **kwargs)
            out[name][start:stop] = torch.as_tensor(vals).detach().cpu().double().reshape(-1).numpy()
    xr = xarray_module()
    return xr.Dataset({k: (["sample"], v) for k, v in out.items()}, coords={"sample": np.arange(n)})


def summarise(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-able summary of a store: method, samples written, layout, mean |attribution| per
    coordinate of each axis, the explained classes with their counts and mean scores."""
    group, doc = _open(path)
    written = [b - a for a, b in _chunks(group, doc)]
    out: dict[str, Any] = {
        "path": os.fspath(path),
        "method": doc.get("method"),
        "explainer": doc.get("explainer"),
        "layout": doc.get("layout"),
        "n": int(doc["n"]),
        "n_written": int(sum(written)),
        "versions": doc.get("versions"),
    }
    if not written:
        return out
    for axis in doc["dims"][1:]:
        imp = importance(path, axis)
        coord = imp.coords[axis].values.tolist() if axis in imp.coords else list(range(imp.sizes[axis]))
        out.setdefault("mean_abs", {})[axis] = dict(zip(map(str, coord), imp.values.tolist(), strict=True))
    if "target" in group:
        classes: dict[int, list[float]] = {}
        for start, stop in _chunks(group, doc):
            keys = _by(group, "target", start, stop)
            score = np.asarray(group["score"][start:stop], dtype=np.float64) if "score" in group else None
            for c in np.unique(keys):
                row = classes.setdefault(int(c), [0.0, 0.0])
                row[0] += int((keys == c).sum())
                row[1] += float(score[keys == c].sum()) if score is not None else float("nan")
        out["classes"] = {
            str(c): {"count": int(v[0]), "mean_score": v[1] / v[0]} for c, v in sorted(classes.items())
        }
    if "delta" in group:
        worst = max(float(np.nanmax(np.abs(group["delta"][a:b]))) for a, b in _chunks(group, doc))
        out["max_abs_delta"] = worst
    return out


def dataset_section(
    report: Any, path: str | os.PathLike[str], *, metrics: Any = None, title: str = "Dataset"
) -> Any:
    """Add a section on the store at ``path`` to a :class:`~salience.viz.report.Report`.

    The section names the method and the samples written, tabulates the mean |attribution| per
    coordinate of each axis of the layout (channels, frequencies, bands) and the explained
    classes, plots the class-wise mean maps (when matplotlib is installed) and, given a
    :func:`metric_table` result as ``metrics``, its means over the dataset.

    Returns
    -------
    Report
        ``report``, for chaining.
    """
    s = summarise(path)
    report.section(
        title,
        f"{s['method']} on {s['n_written']} of {s['n']} samples (layout {s['layout']!r}); store {s['path']}.",
    )
    for axis, per in (s.get("mean_abs") or {}).items():
        if len(per) <= 64:
            rows = [{axis: k, "mean |attribution|": v} for k, v in per.items()]
            report.table(rows, caption=f"Mean |attribution| per {axis}")
    if s.get("classes"):
        rows = [{"class": k, **v} for k, v in s["classes"].items()]
        report.table(rows, caption="Explained classes")
    if metrics is not None:
        rows = [
            {
                "metric": k,
                "mean": float(metrics[k].mean()),
                "std": float(metrics[k].std()),
                "n": int(metrics[k].count()),
            }
            for k in metrics.data_vars
        ]
        report.table(rows, caption="Metrics over the dataset")
    if s["n_written"] and "target" in zarr_module().open_group(os.fspath(path), mode="r"):
        try:
            fig = _class_figure(class_means(path))
        except ImportError:
            fig = None
        if fig is not None:
            import matplotlib.pyplot as plt

            report.figure(fig, caption="Class-wise mean attribution (mean over channels for maps)")
            plt.close(fig)
    return report


def _class_figure(means: Any) -> Any:
    """Class-wise mean maps: a curve per class for 1-D maps, one image per class for 2-D maps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    data = means.values
    if data.ndim >= 3:  # (class, c, ...): average the channels
        data = data.mean(axis=1)
    k = data.shape[0]
    if data.ndim == 2:
        fig, ax = plt.subplots(figsize=(6, 3))
        for i in range(k):
            ax.plot(data[i], label=str(means.coords["class"].values[i]))
        ax.legend(title="class", fontsize="small")
        return fig
    if data.ndim == 3:
        fig, axs = plt.subplots(1, k, figsize=(2.5 * k, 2.5), squeeze=False)
        lim = float(np.abs(data).max()) or 1.0
        for i in range(k):
            axs[0, i].imshow(data[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
            axs[0, i].set_title(f"class {means.coords['class'].values[i]}")
            axs[0, i].axis("off")
        return fig
    return None
