"""``explain_dataset``: explain a whole dataset into a resumable Zarr store, chunk by chunk."""

from __future__ import annotations

import os
import platform
import secrets
from collections.abc import Sequence
from typing import Any

from .._progress import progress_bar
from .._validation import check_bool, check_int, check_option
from ..errors import ParameterError
from ._run import SEED_BITS, describe, explain_chunk
from ._sources import Source, as_source
from ._store import Store, StoreError, zarr_module

__all__ = ["explain_dataset"]

#: samples per chunk when ``batch_size`` is None
DEFAULT_CHUNK = 64


def _versions() -> dict[str, str]:
    import numpy
    import torch

    from .._version import __version__

    zarr = zarr_module()
    return {
        "salience": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "zarr": zarr.__version__,
        "python": platform.python_version(),
    }


def _check_targets(targets: Any, n: int) -> Any:
    import numpy as np
    import torch

    if isinstance(targets, (np.ndarray, torch.Tensor, list, tuple)):
        arr = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
        if arr.shape != (n,):
            raise ParameterError(
                f"The 'targets' parameter of explain_dataset must hold one class per sample (shape "
                f"({n},)) when it is an array; got shape {arr.shape}."
            )
        return arr
    return targets


def explain_dataset(
    explainer: Any,
    data: Any,
    out: str | os.PathLike[str],
    *,
    targets: Any = None,
    batch_size: int | None = None,
    resume: bool = True,
    engine: str = "local",
    workers: int | None = None,
    progress: bool = True,
    seed: int | None = None,
    channel_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    address: str | None = None,
    num_gpus: float | None = None,
) -> str:
    """Explain every sample of ``data`` and write the attributions to a Zarr store at ``out``.

    The store is indexed by sample and chunked along samples (``batch_size`` samples a chunk,
    compressed); chunks are explained and written one after another, so memory holds one chunk,
    whatever the size of the dataset. Each chunk is recorded as written only after all its arrays
    are, so a run stopped at any point (an exception, Ctrl-C, a killed process) resumes: run the
    same call again and only the chunks not recorded are explained, each sample written once. A
    store written by another explainer (other hyperparameters, other weights) or from other data
    is refused (:class:`StoreError`, naming what differs).

    Parameters
    ----------
    explainer : Explainer
        Any salience explainer (wrappers and domains included), e.g. ``IntegratedGradients(model)``.
    data : Dataset, DataLoader, ndarray, str or (array, labels)
        The samples, of shape (N, *S): a map-style torch ``Dataset`` or a ``DataLoader`` in a fixed
        order (items ``x``, ``(x, label)``, ``(x, label, forward_kwargs)`` or a dict with ``"x"``,
        ``"label"`` and per-sample forward inputs under other keys), a numpy array or a
        memory-mapped ``.npy`` (or its path), a Zarr array (or its path), MNE ``Epochs`` (read
        chunk by chunk with ``get_data``; the event codes ``events[:, 2]`` are the labels, the
        channel names are recorded), or a pair of an array and its labels of shape (N,).
    out : str or path
        The store's directory (Zarr v3).
    targets : None, "label", int, array of shape (N,) or Target
        What to explain: None the predicted class, ``"label"`` each item's label, an int one class
        for every sample, an array one class per sample, or a target object.
    batch_size : int, optional
        Samples per chunk of the store (and per ``explain`` call); default 64. The explainer's
        own ``batch_size`` still bounds the rows of each model call.
    resume : bool
        Continue the store at ``out`` if there is one (True, the default), or replace it.
    engine : {"local", "ray"}
        ``"local"`` explains in this process; ``"ray"`` on Ray actors, one model replica each (see
        docs/datasets.md), writing to the same store from this process.
    workers : int, optional
        Ray actors (default: one per GPU of the cluster when ``num_gpus`` is set, else 1). The
        local engine takes none.
    progress : bool
        Show a progress bar (tqdm, when installed) over the samples.
    seed : int, optional
        The seed of stochastic methods (``explainer.is_stochastic``): sample ``i`` is explained
        alone, with generators seeded from ``(seed, i)``, so the result of a sample depends
        neither on the chunking, nor on resuming, nor on the number of workers. None draws a seed
        (recorded in the store and reused when resuming). Deterministic methods ignore it.
    channel_names, class_names : sequence of str, optional
        Recorded in the store (channel names become the coordinates of the channel axis).
    address : str, optional
        The Ray cluster to use (``ray.init(address=...)``); default: the running one, else a
        local one started with ``workers`` CPUs.
    num_gpus : float, optional
        GPUs per Ray actor (default: 1 when the cluster has GPUs, else 0).

    Returns
    -------
    str
        The store's path; read it with :func:`open_attributions`.

    Notes
    -----
    Deterministic methods explain a chunk in one call, so a sample's values equal
    ``explainer.explain`` of that sample in the same batch; they do not depend on the batch when
    the model does not (eval mode, no batch statistics).
    """
    from ..engine.explainer import Explainer

    if not isinstance(explainer, Explainer):
        raise ParameterError(
            "The 'explainer' parameter of explain_dataset must be a salience Explainer (e.g. "
            f"IntegratedGradients(model)); got {type(explainer).__name__}."
        )
    zarr_module()  # the store needs zarr: say which extra to install before any work
    engine = check_option(engine, "engine", "explain_dataset", ("local", "ray"))
    resume = check_bool(resume, "resume", "explain_dataset")
    progress = check_bool(progress, "progress", "explain_dataset")
    chunk = (
        DEFAULT_CHUNK if batch_size is None else check_int(batch_size, "batch_size", "explain_dataset", low=1)
    )
    if workers is not None:
        workers = check_int(workers, "workers", "explain_dataset", low=1)
        if engine == "local" and workers != 1:
            raise ParameterError(
                "The 'workers' parameter of explain_dataset needs engine='ray' (the local engine runs "
                f"in this process); got workers={workers}."
            )
    source = as_source(data)
    if source.n == 0:
        raise ParameterError("explain_dataset: 'data' holds no samples.")
    targets = _check_targets(targets, source.n)
    channel_names = source.channel_names if channel_names is None else channel_names
    stochastic = bool(explainer.is_stochastic)
    if seed is not None:
        seed = check_int(seed, "seed", "explain_dataset", low=0, high=(1 << SEED_BITS) - 1)
    fingerprint: dict[str, Any] = {
        "explainer": describe(explainer),
        "data": source.describe(),
        "targets": describe(targets),
        "chunk": chunk,
    }
    if stochastic:
        fingerprint["seed"] = seed
    store = _open(out, source, chunk, fingerprint, resume, stochastic, explainer, channel_names, class_names)
    run_seed = store.attrs.get("seed") if stochastic else None
    todo = store.missing()
    if not todo:
        return store.path
    bar = progress_bar(source.n, f"explain_dataset({explainer.name})", progress)
    bar.update(source.n - sum(store.bounds(k)[1] - store.bounds(k)[0] for k in todo))
    try:
        if engine == "local":
            for k, batch in source.chunks(chunk, todo):
                start, stop = store.bounds(k)
                store.write(explain_chunk(explainer, batch, k, start, targets, run_seed))
                bar.update(stop - start)
        else:
            from ._ray import run_ray

            run_ray(explainer, source, store, todo, targets, run_seed, workers, address, num_gpus, bar)
    finally:
        bar.close()
    return store.path


def _open(
    out: Any,
    source: Source,
    chunk: int,
    fingerprint: dict[str, Any],
    resume: bool,
    stochastic: bool,
    explainer: Any,
    channel_names: Sequence[str] | None,
    class_names: Sequence[str] | None,
) -> Store:
    """The store at ``out``, resumed or created (a stochastic run without a seed draws one; on
    resume the seed recorded in the store is kept)."""
    seed = fingerprint.get("seed")
    attrs = {
        "method": explainer.name,
        "explainer": repr(explainer),
        "hyperparameters": fingerprint["explainer"],
        "stochastic": stochastic,
        "channel_names": None if channel_names is None else [str(c) for c in channel_names],
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "versions": _versions(),
    }
    if stochastic and seed is None:
        found = _recorded_seed(out) if resume else None
        seed = found if found is not None else secrets.randbits(SEED_BITS)
        fingerprint = {**fingerprint, "seed": seed}
    if stochastic:
        attrs["seed"] = seed
    return Store.open(out, n=source.n, chunk=chunk, fingerprint=fingerprint, resume=resume, **attrs)


def _recorded_seed(out: Any) -> int | None:
    if not os.path.exists(out):
        return None

    try:
        doc = dict(zarr_module().open_group(out, mode="r").attrs).get("salience") or {}
    except Exception as err:  # an unreadable path: say so here, not as "another explainer" later
        raise StoreError(
            f"explain_dataset: {os.fspath(out)!r} exists but is not a readable Zarr store "
            f"({type(err).__name__}: {err}). Delete it, or pass resume=False."
        ) from err
    found = doc.get("seed")
    return int(found) if found is not None else None
