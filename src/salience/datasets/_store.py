"""The Zarr v3 store of :func:`~salience.datasets.explain_dataset`: one group holding arrays
indexed by sample (chunked along samples), the fingerprint deciding whether a store may be
resumed, and the record of written chunks (one flag per chunk, set after the chunk's arrays).

Layout of a store::

    values   (N, *S)   the attributions (fill NaN until written), dims "sample" + the layout's axes
    score    (N,)      the explained scores
    target   (N,)      the explained class per sample (class targets)
    delta    (N,)      completeness gaps (the Integrated Gradients family)
    label    (N,)      the items' labels (when they carry labels)
    <axis>   (K,)      a domain axis's coordinates (frequencies, scales, times)
    written  (N/chunk,) 1 once chunk k is completely written (the manifest)

and the group attribute ``"salience"``: format, fingerprint, layout, method, hyperparameters,
domain, channel and class names, versions.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import SalienceError
from ._run import ChunkResult

FORMAT = 1
#: the per-sample arrays a chunk may write, besides ``values``
PER_SAMPLE = ("score", "target", "delta", "label")


class StoreError(SalienceError, ValueError):
    """An attribution store cannot be resumed (another explainer, other data) or read."""


def zarr_module() -> Any:
    try:
        import zarr
    except ImportError as err:
        raise ImportError(
            "salience.datasets needs zarr>=3 for attribution stores: pip install 'salience[datasets]'."
        ) from err
    return zarr


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """The paths where two JSON documents differ, with both values (at most a few)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old or k not in new:
                out.append(f"{sub}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}")
            else:
                out += diff(old[k], new[k], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in diff(a, b, f"{path}[{i}]")]
    if old != new:
        show = [repr(v) if len(repr(v)) <= 80 else repr(v)[:77] + "..." for v in (old, new)]
        return [f"{path or '<root>'}: {show[0]} -> {show[1]}"]
    return []


def _normal(doc: Any) -> Any:
    """``doc`` as it reads back from the store's JSON attributes (tuples as lists)."""
    import json

    return json.loads(json.dumps(doc))


class Store:
    """An attribution store being written: ``n`` samples in chunks of ``chunk``."""

    def __init__(self, path: str | os.PathLike[str], group: Any, attrs: dict[str, Any]) -> None:
        self.path = os.fspath(path)
        self.group = group
        self.attrs = attrs
        self.n = int(attrs["n"])
        self.chunk = int(attrs["chunk"])
        self.n_chunks = -(-self.n // self.chunk)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        n: int,
        chunk: int,
        fingerprint: dict[str, Any],
        resume: bool,
        **attrs: Any,
    ) -> Store:
        """Open ``path`` to resume it (``resume`` and a store with the same fingerprint), or
        create it afresh (an existing store there is replaced when ``resume`` is False)."""
        zarr = zarr_module()
        fingerprint = _normal(fingerprint)
        if resume and os.path.exists(path):
            try:
                group = zarr.open_group(path, mode="r+")
                found = dict(group.attrs).get("salience")
            except Exception as err:
                raise StoreError(
                    f"explain_dataset: {os.fspath(path)!r} exists but is not a readable Zarr store "
                    f"({type(err).__name__}: {err}). Delete it, or pass resume=False to replace it."
                ) from err
            if found is None:
                raise StoreError(
                    f"explain_dataset: {os.fspath(path)!r} is a Zarr store not written by explain_dataset; "
                    "pass another path, or resume=False to replace it."
                )
            changes = diff(found["fingerprint"], fingerprint)
            if changes:
                raise StoreError(
                    f"explain_dataset: the store {os.fspath(path)!r} was written by another explainer or "
                    f"from other data, so it cannot be resumed: {'; '.join(changes[:5])}"
                    f"{' (and more)' if len(changes) > 5 else ''}. Write to a new path, or pass "
                    "resume=False to replace it."
                )
            return cls(path, group, found)
        group = zarr.open_group(path, mode="w")
        doc = _normal({"format": FORMAT, "n": n, "chunk": chunk, "fingerprint": fingerprint, **attrs})
        group.attrs["salience"] = doc
        n_chunks = -(-n // chunk)
        group.create_array(
            "written", shape=(n_chunks,), chunks=(1,), dtype="uint8", fill_value=0, dimension_names=["chunk"]
        )
        return cls(path, group, doc)

    def missing(self) -> list[int]:
        """The chunks not yet completely written."""
        flags = self.group["written"][:]
        return [k for k in range(self.n_chunks) if not flags[k]]

    def bounds(self, k: int) -> tuple[int, int]:
        return k * self.chunk, min((k + 1) * self.chunk, self.n)

    def _create(self, result: ChunkResult) -> None:
        """Create the per-sample arrays from the first chunk written (shapes, dtypes, axes)."""
        meta = result.meta
        axes = meta["layout"].split()[1:]
        values = result.arrays["values"]
        if len(axes) != values.ndim - 1:
            axes = [f"axis_{i}" for i in range(1, values.ndim)]
        for name, arr in result.arrays.items():
            dims = (
                ["sample", *axes]
                if name == "values"
                else ["sample", *[f"{name}_{i}" for i in range(1, arr.ndim)]]
            )
            floating = np.issubdtype(arr.dtype, np.floating)
            self.group.create_array(
                name,
                shape=(self.n, *arr.shape[1:]),
                chunks=(self.chunk, *arr.shape[1:]),
                dtype=arr.dtype,
                fill_value=np.nan if floating else 0,
                dimension_names=dims,
            )
        for axis, coord in meta.get("coords", {}).items():
            if axis in axes and coord.ndim == 1 and len(coord) == values.shape[1 + axes.index(axis)]:
                self.group.create_array(axis, data=coord, dimension_names=[axis])
        doc = dict(self.attrs)
        doc.update(
            layout=" ".join(["b", *axes]),
            dims=["sample", *axes],
            domain=meta.get("domain"),
            layer=meta.get("layer"),
            info=meta.get("info", {}),
            explained=meta.get("target"),
            arrays=sorted(result.arrays),
        )
        self.attrs = _normal(doc)
        self.group.attrs["salience"] = self.attrs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # consolidated metadata is not yet in the v3 spec
            zarr_module().consolidate_metadata(self.path)

    def write(self, result: ChunkResult) -> None:
        """Write chunk ``result.k`` (every array, then its flag): a chunk whose flag is set is
        complete, and a chunk rewritten after a crash replaces whatever part was written."""
        if "values" not in self.group:
            self._create(result)
        start, stop = self.bounds(result.k)
        got = int(result.arrays["values"].shape[0])
        if got != stop - start:
            raise StoreError(
                f"explain_dataset: chunk {result.k} should hold samples {start}..{stop - 1} "
                f"({stop - start}); it holds {got}."
            )
        for name, arr in result.arrays.items():
            if name not in self.group:
                raise StoreError(
                    f"explain_dataset: chunk {result.k} has {name!r}, which the store's first chunk did "
                    f"not have (its arrays: {self.attrs.get('arrays')}); the items must all carry the same fields."
                )
            self.group[name][start:stop] = arr
        self.group["written"][result.k] = 1
