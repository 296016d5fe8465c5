"""Whole datasets: explain every sample into a resumable, chunked Zarr store
(:func:`explain_dataset`, locally or on Ray), read it back lazily as an ``xarray.Dataset``
(:func:`open_attributions`) and summarise it chunk by chunk (:mod:`salience.datasets.summaries`).

Zarr, xarray, dask and Ray are optional (``pip install 'salience[datasets]'``, ``'salience[ray]'``)
and imported only when used.
"""

from ._store import StoreError
from .explain import explain_dataset
from .read import open_attributions, to_xarray
from .summaries import class_means, dataset_section, importance, metric_table, summarise

__all__ = [
    "explain_dataset",
    "open_attributions",
    "to_xarray",
    "StoreError",
    "class_means",
    "importance",
    "metric_table",
    "summarise",
    "dataset_section",
]
