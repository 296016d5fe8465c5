"""The Ray engine of :func:`~salience.datasets.explain_dataset`: a Ray Data pipeline over the
missing chunks, ``map_batches`` with a callable class (one model replica per actor, ``num_gpus``
each), results streamed back and written by this process to the same store (so the record of
written chunks and the resumption are those of the local engine).

Ray Data's actor pools restart an actor that dies and retry its chunk (its defaults
``max_restarts=-1``, ``max_task_retries=-1``); a chunk arriving twice is written once.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ..errors import ParameterError
from ._run import ChunkResult, explain_chunk
from ._sources import Source
from ._store import Store


def ray_module() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ImportError(
            "explain_dataset(engine='ray') needs Ray Data: pip install 'salience[ray]'."
        ) from err
    return ray


class ChunkExplainer:
    """The callable class of ``map_batches``: built once per actor (unpickling the explainer, so
    each actor holds one model replica, moved to its GPU when it has one), then explains one
    chunk per batch ``{"chunk": [k]}``."""

    def __init__(self, payload: bytes) -> None:
        import torch

        job = pickle.loads(payload)
        self.explainer = job["explainer"]
        self.source: Source = job["source"]
        self.targets = job["targets"]
        self.seed = job["seed"]
        self.chunk = int(job["chunk"])
        model = getattr(self.explainer, "model", None)
        if job["gpu"] and torch.cuda.is_available() and isinstance(model, torch.nn.Module):
            model.to("cuda")  # this actor's replica (Ray sets CUDA_VISIBLE_DEVICES per actor)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = []
        for k in batch["chunk"].tolist():
            start, stop = k * self.chunk, min((k + 1) * self.chunk, self.source.n)
            data = self.source.read(start, stop)
            result = explain_chunk(self.explainer, data, k, start, self.targets, self.seed)
            done.append(pickle.dumps((result.arrays, result.meta), protocol=pickle.HIGHEST_PROTOCOL))
        blobs = np.empty(len(done), dtype=object)
        blobs[:] = done
        return {"chunk": np.asarray(batch["chunk"]), "result": blobs}


def _random_access(source: Source) -> Source:
    """``source``, or the map-style dataset behind a DataLoader read in order (actors read the
    chunks they explain, not the ones before)."""
    if source.random_access:
        return source
    from ._sources import DatasetSource

    loader = getattr(source, "loader", None)
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__getitem__"):
        return DatasetSource(dataset, loader.collate_fn)  # type: ignore[union-attr]
    raise ParameterError(
        "explain_dataset(engine='ray') reads chunks in any order: pass a map-style Dataset, an array "
        "or a DataLoader over a map-style dataset, not an iterable one."
    )


def run_ray(
    explainer: Any,
    source: Source,
    store: Store,
    todo: list[int],
    targets: Any,
    seed: int | None,
    workers: int | None,
    address: str | None,
    num_gpus: float | None,
    bar: Any,
) -> None:
    """Explain chunks ``todo`` on Ray actors and write them to ``store`` as they arrive."""
    ray = ray_module()
    started = False
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            started = True
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        per_actor = float(num_gpus) if num_gpus is not None else (1.0 if gpus else 0.0)
        if workers is None:
            workers = max(1, int(gpus // per_actor)) if per_actor else 1
        payload = ray.cloudpickle.dumps(
            {
                "explainer": explainer,
                "source": _random_access(source),
                "targets": targets,
                "seed": seed,
                "chunk": store.chunk,
                "gpu": per_actor > 0,
            }
        )
        ds = ray.data.from_items([{"chunk": k} for k in todo], override_num_blocks=len(todo))
        results = ds.map_batches(
            ChunkExplainer,
            fn_constructor_kwargs={"payload": payload},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=per_actor or None,
            num_cpus=1,
        )
        pending = set(todo)
        for batch in results.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=1):
            for k, blob in zip(batch["chunk"].tolist(), batch["result"], strict=True):
                if k not in pending:
                    continue  # a retried chunk delivered twice: written once
                arrays, meta = pickle.loads(blob)
                store.write(ChunkResult(int(k), arrays, meta))
                pending.discard(k)
                start, stop = store.bounds(int(k))
                bar.update(stop - start)
    finally:
        if started:
            ray.shutdown()
