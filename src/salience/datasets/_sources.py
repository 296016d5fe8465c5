"""What :func:`~salience.datasets.explain_dataset` reads: arrays (numpy, memory-mapped ``.npy``,
Zarr), torch ``Dataset``/``DataLoader``, each seen as a sized sequence of samples read one chunk
of samples at a time."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ParameterError

__all__ = ["Batch", "Source", "as_source"]

#: keys of a mapping item that hold the input and the label (the other keys are forward inputs)
INPUT_KEYS = ("x", "input", "inputs")
LABEL_KEYS = ("label", "labels", "y", "target")


@dataclass
class Batch:
    """A chunk of consecutive samples: the input, the labels (if the items carry them) and the
    per-sample forward inputs (keyword inputs of every model call, first axis the sample)."""

    x: torch.Tensor
    labels: torch.Tensor | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise InputError(
            f"explain_dataset: the {what} of an item must be a tensor or an array; got {type(value).__name__}."
        ) from err


def parse_items(batch: Any) -> Batch:
    """A collated batch as :class:`Batch`: a tensor (the input), a tuple ``(x,)``, ``(x, label)``
    or ``(x, label, forward_kwargs)``, or a mapping with ``"x"`` (or ``"input"``), an optional
    ``"label"`` (or ``"y"``, ``"target"``) and per-sample forward inputs under the other keys."""
    if isinstance(batch, Mapping):
        keys = [k for k in INPUT_KEYS if k in batch]
        if not keys:
            raise InputError(
                "explain_dataset: a mapping item must hold its input under 'x' (or 'input'); "
                f"got the keys {sorted(map(str, batch))}."
            )
        lkeys = [k for k in LABEL_KEYS if k in batch]
        labels = _tensor(batch[lkeys[0]], "label") if lkeys else None
        rest = {str(k): v for k, v in batch.items() if k not in (keys[0], *lkeys[:1])}
        return Batch(_tensor(batch[keys[0]], "input"), labels, rest)
    if isinstance(batch, (tuple, list)):
        if not 1 <= len(batch) <= 3 or (len(batch) == 3 and not isinstance(batch[2], Mapping)):
            raise InputError(
                "explain_dataset: a tuple item must be (x,), (x, label) or (x, label, forward_kwargs "
                f"dict); got a {type(batch).__name__} of {len(batch)} element(s)."
            )
        labels = _tensor(batch[1], "label") if len(batch) > 1 and batch[1] is not None else None
        kwargs = dict(batch[2]) if len(batch) == 3 else {}
        return Batch(_tensor(batch[0], "input"), labels, kwargs)
    return Batch(_tensor(batch, "input"))


class Source:
    """A sized sequence of ``n`` samples of shape ``sample_shape``, read chunk by chunk."""

    n: int
    #: the channel names the data carry (MNE epochs), recorded unless the caller gives some
    channel_names: list[str] | None = None
    #: whether chunk k can be read without reading chunks 0..k-1
    random_access: bool = True

    def read(self, start: int, stop: int) -> Batch:
        """Samples ``start..stop`` (random-access sources)."""
        raise NotImplementedError

    def chunks(self, size: int, wanted: Sequence[int]) -> Iterator[tuple[int, Batch]]:
        """``(k, batch)`` for each chunk ``k`` of ``wanted`` (chunks of ``size`` samples), in order."""
        for k in sorted(wanted):
            yield k, self.read(k * size, min((k + 1) * size, self.n))

    def describe(self) -> dict[str, Any]:
        """What identifies the data: its kind, length, sample shape and dtype and a hash of a
        few samples (the first, the last and some in between)."""
        picks = sorted({int(i) for i in np.linspace(0, self.n - 1, num=min(self.n, 5))})
        digest = hashlib.sha256()
        shape: tuple[int, ...] = ()
        dtype = ""
        for i in picks:
            b = self.sample(i)
            shape, dtype = tuple(b.x.shape[1:]), str(b.x.dtype)
            digest.update(np.ascontiguousarray(b.x.detach().cpu().numpy()).tobytes())
            if b.labels is not None:
                digest.update(np.ascontiguousarray(b.labels.detach().cpu().numpy()).tobytes())
        return {
            "kind": type(self).__name__,
            "n": self.n,
            "sample_shape": list(shape),
            "dtype": dtype,
            "sample_hash": digest.hexdigest()[:16],
        }

    def sample(self, i: int) -> Batch:
        return self.read(i, i + 1)


class ArraySource(Source):
    """A numpy array, a memory-mapped ``.npy`` (by path: pickled as the path, so Ray workers map
    the file themselves) or a Zarr array, with optional labels of shape (N,)."""

    def __init__(self, array: Any, labels: Any = None, path: str | None = None) -> None:
        self.array = array
        self.path = path
        self.n = int(array.shape[0])
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and self.labels.shape[:1] != (self.n,):
            raise ParameterError(
                f"explain_dataset: the labels must have one entry per sample ({self.n}); got shape "
                f"{self.labels.shape}."
            )

    def read(self, start: int, stop: int) -> Batch:
        if self.path is not None and self.array.flags.c_contiguous:
            x = torch.from_numpy(self._pread(start, stop))
        else:
            x = torch.from_numpy(np.array(self.array[start:stop]))
        labels = None if self.labels is None else torch.as_tensor(self.labels[start:stop])
        return Batch(x, labels)

    def _pread(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start..stop`` of the .npy file read with a plain file read: pages touched
        through the memory map would stay resident (counted in the process's memory) until the
        system evicts them; a read keeps memory bounded by the chunk."""
        arr = self.array
        row = arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))
        with open(self.path, "rb") as fh:  # type: ignore[arg-type]
            fh.seek(arr.offset + start * row)
            data = np.fromfile(fh, dtype=arr.dtype, count=(stop - start) * (row // arr.dtype.itemsize))
        return data.reshape(stop - start, *arr.shape[1:])

    def __reduce__(self) -> Any:
        if self.path is not None:
            return (_load_npy, (self.path, self.labels))
        return (ArraySource, (self.array, self.labels))


def _load_npy(path: str, labels: Any = None) -> ArraySource:
    return ArraySource(np.load(path, mmap_mode="r"), labels, path=path)


class DatasetSource(Source):
    """A map-style torch ``Dataset`` (``len`` and ``dataset[i]``), items collated by
    ``collate_fn`` (torch's default collation when None)."""

    def __init__(self, dataset: Any, collate_fn: Any = None) -> None:
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.n = len(dataset)

    def read(self, start: int, stop: int) -> Batch:
        from torch.utils.data import default_collate

        collate = self.collate_fn or default_collate
        return parse_items(collate([self.dataset[i] for i in range(start, stop)]))


class EpochsSource(Source):
    """MNE ``Epochs`` (or ``EpochsArray``): chunks read with ``get_data(item=...)`` (epochs that
    are not preloaded are read from disk chunk by chunk), the event codes ``events[:, 2]`` as
    labels, the channel names recorded in the store."""

    def __init__(self, epochs: Any) -> None:
        self.epochs = epochs
        self.n = len(epochs)
        self.channel_names = [str(c) for c in epochs.ch_names]

    def read(self, start: int, stop: int) -> Batch:
        x = np.asarray(self.epochs.get_data(item=np.arange(start, stop)))
        labels = torch.as_tensor(np.asarray(self.epochs.events[start:stop, 2]))
        return Batch(torch.from_numpy(np.ascontiguousarray(x)), labels)


class LoaderSource(Source):
    """A ``DataLoader`` read in its own order and regrouped into chunks; chunk ``k`` is reached by
    reading the batches before it (the skipped ones are read but not explained)."""

    random_access = False

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.n = len(loader.dataset)

    def chunks(self, size: int, wanted: Sequence[int]) -> Iterator[tuple[int, Batch]]:
        todo = set(wanted)
        if not todo:
            return
        pending: list[Batch] = []
        held = 0
        k = 0
        for raw in self.loader:
            b = parse_items(raw)
            pending.append(b)
            held += int(b.x.shape[0])
            while held >= size or (held and k * size + held >= self.n):
                cut = min(size, held)
                chunk, pending = _split(pending, cut)
                held -= cut
                if k in todo:
                    yield k, chunk
                    todo.discard(k)
                    if not todo:
                        return
                k += 1
        if todo:
            raise InputError(
                f"explain_dataset: the DataLoader yielded {k * size + held} samples; its dataset "
                f"has {self.n}."
            )

    def sample(self, i: int) -> Batch:
        return DatasetSource(self.loader.dataset, self.loader.collate_fn).read(i, i + 1)


def _cat(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values)
    if isinstance(first, Mapping):
        return {k: _cat([v[k] for v in values]) for k in first}
    return first


def _split(pending: list[Batch], cut: int) -> tuple[Batch, list[Batch]]:
    """The first ``cut`` samples of ``pending`` as one batch, and the rest."""
    whole = Batch(
        torch.cat([b.x for b in pending]),
        None if pending[0].labels is None else torch.cat([b.labels for b in pending if b.labels is not None]),
        _cat([b.kwargs for b in pending]) if pending[0].kwargs else {},
    )
    head = Batch(
        whole.x[:cut], None if whole.labels is None else whole.labels[:cut], _slice(whole.kwargs, 0, cut)
    )
    if whole.x.shape[0] == cut:
        return head, []
    rest = Batch(
        whole.x[cut:], None if whole.labels is None else whole.labels[cut:], _slice(whole.kwargs, cut, None)
    )
    return head, [rest]


def _slice(value: Any, start: int, stop: int | None) -> Any:
    if isinstance(value, torch.Tensor):
        return value[start:stop]
    if isinstance(value, Mapping):
        return {k: _slice(v, start, stop) for k, v in value.items()}
    return value


def _npy_path(data: Any) -> str | None:
    """The .npy file a memory-mapped array maps whole (so workers can map it by path), else None."""
    path = getattr(data, "filename", None) if isinstance(data, np.memmap) else None
    if path is None or not str(path).endswith(".npy"):
        return None
    whole = np.load(path, mmap_mode="r")
    same = whole.shape == data.shape and whole.dtype == data.dtype and whole.offset == data.offset
    return str(path) if same else None


def as_source(data: Any) -> Source:
    """``data`` as a :class:`Source` (see :func:`~salience.datasets.explain_dataset`)."""
    if isinstance(data, Source):
        return data
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        inner = as_source(data[0])
        if not isinstance(inner, ArraySource):
            raise ParameterError("explain_dataset: a (data, labels) pair takes an array as data.")
        return ArraySource(inner.array, data[1], path=inner.path)
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if path.endswith(".npy"):
            return _load_npy(path)
        try:
            import zarr
        except ImportError as err:
            raise ImportError(
                "explain_dataset: reading a Zarr array needs zarr: pip install 'salience[datasets]'."
            ) from err
        return ArraySource(zarr.open_array(path, mode="r"))
    from torch.utils.data import DataLoader, Dataset, RandomSampler

    if isinstance(data, DataLoader):
        if isinstance(data.sampler, RandomSampler) or not hasattr(data.dataset, "__len__"):
            raise ParameterError(
                "explain_dataset: the DataLoader must read a sized dataset in a fixed order (no "
                "shuffle=True, no random sampler): a store is indexed by sample, and resuming needs "
                "the same sample at the same index. Pass DataLoader(dataset, shuffle=False)."
            )
        return LoaderSource(data)
    if isinstance(data, np.ndarray) or type(data).__module__.startswith("zarr"):
        if data.ndim < 2:
            raise ParameterError(
                f"explain_dataset: the data must hold samples of at least one axis (N, C, ...); got shape {data.shape}."
            )
        return ArraySource(data, path=_npy_path(data))
    if isinstance(data, torch.Tensor):
        return ArraySource(data.detach().cpu().numpy())
    if type(data).__module__.startswith("mne.") and hasattr(data, "get_data") and hasattr(data, "events"):
        return EpochsSource(data)
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return DatasetSource(data)
    raise ParameterError(
        "explain_dataset: 'data' must be a torch Dataset or DataLoader, a numpy array (or a "
        "memory-mapped .npy, or its path), a Zarr array (or its path), MNE Epochs or an (array, "
        "labels) pair; "
        f"got {type(data).__name__}."
    )
