"""Reading attributions as ``xarray.Dataset``: a store lazily (:func:`open_attributions`, dask
arrays read chunk by chunk) and an in-memory :class:`~salience.Attribution` (:func:`to_xarray`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import SalienceWarning, warn
from ._run import jsonable
from ._store import StoreError, zarr_module

__all__ = ["open_attributions", "to_xarray"]


def xarray_module() -> Any:
    try:
        import xarray
    except ImportError as err:
        raise ImportError(
            "Reading attributions as xarray needs xarray (and dask for stores): pip install "
            "'salience[datasets]'."
        ) from err
    return xarray


def _names(ds: Any, axis: str, names: Sequence[str] | None) -> Any:
    if names is not None and axis in ds.dims and ds.sizes[axis] == len(names):
        ds = ds.assign_coords({axis: [str(n) for n in names]})
    return ds


def open_attributions(path: str | os.PathLike[str]) -> Any:
    """The attribution store at ``path`` as a lazy ``xarray.Dataset``.

    Parameters
    ----------
    path : str or path
        A store written by :func:`explain_dataset`.

    Returns
    -------
    xarray.Dataset
        ``values`` with dims ``("sample", *axes)`` (the layout's axes after the batch: ``c``,
        ``t``, ``f``, ``h``, ``w``...), and ``score``, ``target``, ``delta``, ``label`` with dim
        ``sample`` when the store has them; coordinates: a domain's axes (frequencies, scales) and
        the channel names on ``c``. Arrays are dask arrays: nothing is read until computed, then
        chunk by chunk. ``attrs`` hold the method, layout, hyperparameters, versions, the number
        of samples written (``n_written``) and ``complete``. Samples of chunks not yet written
        (an interrupted run) read as NaN; a warning says how many.
    """
    xr = xarray_module()
    zarr = zarr_module()
    path = os.fspath(path)
    try:
        doc = dict(zarr.open_group(path, mode="r").attrs).get("salience")
    except Exception as err:
        raise StoreError(f"open_attributions: {path!r} is not a readable Zarr store ({err}).") from err
    if doc is None or "dims" not in doc:
        raise StoreError(
            f"open_attributions: {path!r} holds no attributions (not written by explain_dataset, or "
            "no chunk written yet)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # consolidated metadata (not in the v3 spec)
        warnings.simplefilter("ignore", UserWarning)
        ds = xr.open_zarr(path, consolidated=None)
    written = np.asarray(ds["written"].values).astype(bool)
    ds = ds.drop_vars("written")
    chunk, n = int(doc["chunk"]), int(doc["n"])
    n_written = int(sum(min((k + 1) * chunk, n) - k * chunk for k in np.flatnonzero(written)))
    if n_written < n:
        warn(
            f"open_attributions: {path!r} is incomplete: {n_written} of {n} samples are written (the "
            "others read as NaN). Run explain_dataset again with the same arguments to finish it.",
            SalienceWarning,
        )
    ds = _names(ds, "c", doc.get("channel_names"))
    ds = ds.assign_coords(sample=np.arange(n))
    keep = (
        "method",
        "explainer",
        "layout",
        "domain",
        "layer",
        "stochastic",
        "seed",
        "class_names",
        "versions",
    )
    ds.attrs = {k: doc[k] for k in keep if doc.get(k) is not None}
    ds.attrs.update(n_written=n_written, complete=n_written == n, chunk=chunk, salience=doc)
    return ds


def to_xarray(
    attribution: Any, *, channel_names: Sequence[str] | None = None, class_names: Sequence[str] | None = None
) -> Any:
    """An :class:`~salience.Attribution` as an ``xarray.Dataset`` with the same variables, dims
    and coordinates as :func:`open_attributions` gives for a store (in memory, numpy-backed).

    Parameters
    ----------
    attribution : Attribution
        The result of ``explain``.
    channel_names, class_names : sequence of str, optional
        Coordinates of the channel axis ``c`` and the names of the classes (in ``attrs``).

    Returns
    -------
    xarray.Dataset
    """
    import torch

    xr = xarray_module()
    a = attribution
    axes = list(a.layout.names[1:])
    values = a.numpy()
    if len(axes) != values.ndim - 1:
        axes = [f"axis_{i}" for i in range(1, values.ndim)]
    data: dict[str, Any] = {"values": (["sample", *axes], values)}

    def host(t: torch.Tensor) -> np.ndarray:
        t = t.detach().cpu()
        return (t.to(torch.float32) if t.dtype == torch.bfloat16 else t).numpy()

    data["score"] = (["sample"], host(a.scores))
    if isinstance(a.target, torch.Tensor) and a.target.shape == (values.shape[0],):
        data["target"] = (["sample"], host(a.target).astype(np.int64))
    if a.delta is not None:
        data["delta"] = (["sample"], host(a.delta))
    coords: dict[str, Any] = {"sample": np.arange(values.shape[0])}
    if a.domain is not None and callable(getattr(a.domain, "coordinates", None)):
        for axis, coord in a.domain.coordinates().items():
            arr = host(torch.as_tensor(coord))
            if axis in axes and arr.ndim == 1 and len(arr) == values.shape[1 + axes.index(axis)]:
                coords[axis] = arr
    ds = xr.Dataset(data, coords=coords)
    ds = _names(ds, "c", channel_names)
    attrs = {"method": a.method, "layout": str(a.layout), "domain": jsonable(a.domain), "layer": a.layer}
    attrs["info"] = jsonable(a.info)
    if class_names is not None:
        attrs["class_names"] = [str(c) for c in class_names]
    if not isinstance(a.target, torch.Tensor):
        attrs["target"] = jsonable(a.target)
    ds.attrs = {k: v for k, v in attrs.items() if v is not None}
    return ds
