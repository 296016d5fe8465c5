"""Explaining one chunk of samples (shared by the local and the Ray engine), the per-sample seeds
of stochastic methods and the description of an explainer that a store's fingerprint records."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import NotFittedError, ParameterError, TargetError, warn
from ._sources import Batch, _slice

#: attributes that change what is shown, not what is computed (left out of the fingerprint)
DISPLAY = frozenset({"progress", "verbose"})
#: seeds are 63-bit (a torch generator takes up to 64 bits; numpy's SeedSequence any size)
SEED_BITS = 63


def sample_seed(seed: int, index: int, stream: int = 0) -> int:
    """The seed of generator ``stream`` for sample ``index`` of a run seeded with ``seed``:
    ``SeedSequence([seed, index, stream])``, so it depends on nothing but these three numbers."""
    words = np.random.SeedSequence([seed, index, stream]).generate_state(2, np.uint32)
    return (int(words[0]) << 32 | int(words[1])) & ((1 << SEED_BITS) - 1)


def _salience_object(obj: Any) -> bool:
    return type(obj).__module__.startswith("salience.") and not isinstance(obj, nn.Module)


def reseeded(explainer: Any, seed: int, index: int) -> Any:
    """A copy of ``explainer`` whose random generators are seeded for sample ``index``.

    Every attribute named ``generator`` (or ending in ``_generator``) of the explainer and of the
    salience objects it holds (a wrapped explainer, a domain, a masker) is replaced by a new
    ``torch.Generator`` on the same device seeded with :func:`sample_seed` (``None`` too: the
    method would otherwise seed itself at random). Objects are copied shallowly; the model and
    everything else are shared, never modified.
    """
    streams = iter(range(1 << 20))

    def walk(obj: Any, depth: int) -> Any:
        if isinstance(obj, (list, tuple)):
            items = [walk(v, depth) for v in obj]
            return type(obj)(items) if isinstance(obj, list) else tuple(items)
        if depth > 6 or not _salience_object(obj) or not hasattr(obj, "__dict__"):
            return obj
        new = copy.copy(obj)
        for name, value in vars(obj).items():
            if name == "model":
                continue
            if (name == "generator" or name.endswith("_generator")) and (
                value is None or isinstance(value, torch.Generator)
            ):
                device = value.device if isinstance(value, torch.Generator) else "cpu"
                gen = torch.Generator(device=device)
                gen.manual_seed(sample_seed(seed, index, next(streams)))
                setattr(new, name, gen)
            else:
                setattr(new, name, walk(value, depth + 1))
        return new

    return walk(explainer, 0)


def _digest(t: torch.Tensor | np.ndarray) -> str:
    arr = t.detach().cpu() if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
    if arr.dtype == torch.bfloat16:
        arr = arr.to(torch.float32)
    flat = arr.reshape(-1)
    if flat.numel() > 1 << 20:  # large tensors: a strided sample of about 1M elements
        flat = flat[:: flat.numel() // (1 << 20)]
    return hashlib.sha256(np.ascontiguousarray(flat.numpy()).tobytes()).hexdigest()[:16]


def describe(obj: Any, depth: int = 0) -> Any:
    """A JSON-able description of ``obj`` that changes when a hyperparameter or the model's
    weights change: scalars as they are, tensors and modules by shape, dtype and a hash of their
    values, salience objects by their public attributes (recursively), functions by name."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, torch.Generator):
        return "Generator"
    if isinstance(obj, nn.Module):
        state = obj.state_dict()
        return {
            "module": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "weights": {k: [list(v.shape), str(v.dtype), _digest(v)] for k, v in state.items()},
        }
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return {"tensor": list(obj.shape), "dtype": str(obj.dtype), "hash": _digest(obj)}
    if isinstance(obj, (list, tuple)):
        return [describe(v, depth + 1) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): describe(v, depth + 1) for k, v in obj.items()}
    if hasattr(obj, "__qualname__") and callable(obj):
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if depth < 6 and hasattr(obj, "__dict__"):
        params = {
            k: describe(v, depth + 1)
            for k, v in vars(obj).items()
            if not k.startswith("_") and k not in DISPLAY
        }
        return {"type": name, "params": params}
    return {"type": name}


def jsonable(value: Any) -> Any:
    """``value`` as JSON for the store's attributes (small tensors as lists, others by shape)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return arr.tolist() if arr.size <= 64 else f"<array shape={list(arr.shape)} dtype={arr.dtype}>"
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    text = repr(value)
    return text if " at 0x" not in text else f"<{type(value).__name__}>"


@dataclass
class ChunkResult:
    """The explanation of chunk ``k``: per-sample arrays (first axis the sample) and what the
    store records once (layout, domain, coordinates, info)."""

    k: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def _device(model: Any) -> torch.device | None:
    from ..engine.layers import unwrap

    model = unwrap(model)
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return None


def _to(value: Any, device: torch.device | None) -> Any:
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def chunk_target(targets: Any, batch: Batch, start: int, stop: int) -> Any:
    """The ``target`` of ``explain`` for samples ``start..stop`` (see ``explain_dataset``)."""
    if isinstance(targets, str):
        if targets != "label":
            raise ParameterError(
                f"The 'targets' parameter of explain_dataset must be None, 'label', an int, one class "
                f"per sample or a Target; got the string {targets!r}."
            )
        if batch.labels is None:
            raise TargetError(
                "explain_dataset: targets='label' needs items that carry labels ((x, label) tuples, "
                "a 'label' key, or an (array, labels) pair); these items have none."
            )
        return batch.labels.reshape(-1).long()
    if isinstance(targets, (np.ndarray, torch.Tensor, list)):
        return torch.as_tensor(np.asarray(targets)[start:stop]).long()
    return targets


def _meta(a: Any) -> dict[str, Any]:
    coords = {}
    if a.domain is not None and callable(getattr(a.domain, "coordinates", None)):
        try:
            found = a.domain.coordinates()
        except (NotFittedError, TypeError, ValueError) as err:  # a plotting aid: stored when given
            warn(f"explain_dataset: the domain's coordinates are not stored ({type(err).__name__}: {err}).")
            found = {}
        for k, v in found.items():
            arr = np.asarray(v.detach().cpu()) if isinstance(v, torch.Tensor) else np.asarray(v)
            if arr.dtype.kind in "biuf":  # numeric coordinates become arrays of the store
                coords[str(k)] = arr
    target = a.target
    return {
        "layout": str(a.layout),
        "method": a.method,
        "domain": None if a.domain is None else jsonable(a.domain),
        "layer": a.layer,
        "coords": coords,
        "info": jsonable(
            {k: v for k, v in a.info.items() if not isinstance(v, torch.Tensor) or v.numel() <= 64}
        ),
        "target": None if isinstance(target, torch.Tensor) else jsonable(target),
    }


def explain_chunk(
    explainer: Any, batch: Batch, k: int, start: int, targets: Any, seed: int | None
) -> ChunkResult:
    """Explain the samples of chunk ``k`` (starting at sample ``start``).

    A deterministic explainer explains the chunk in one call; a stochastic one (``seed`` given)
    explains each sample alone with generators seeded for it (:func:`reseeded`), so its result is
    the same whatever the chunking, the resumption or the number of workers.
    """
    stop = start + int(batch.x.shape[0])
    device = _device(explainer.model)
    x = _to(batch.x, device)
    kwargs = _to(batch.kwargs, device) or None
    target = _to(chunk_target(targets, batch, start, stop), device)
    if seed is None:
        results = [explainer.explain(x, target, forward_kwargs=kwargs)]
    else:
        results = []
        for i in range(stop - start):
            t = target[i : i + 1] if isinstance(target, torch.Tensor) and target.ndim == 1 else target
            one = reseeded(explainer, seed, start + i)
            results.append(one.explain(x[i : i + 1], t, forward_kwargs=_slice(kwargs, i, i + 1)))

    def stack(get: Any) -> np.ndarray | None:
        parts = [get(a) for a in results]
        if any(p is None for p in parts):
            return None
        out = torch.cat([p.detach() for p in parts]).cpu()
        return (out.to(torch.float32) if out.dtype == torch.bfloat16 else out).numpy()

    arrays: dict[str, np.ndarray] = {"values": np.concatenate([a.numpy() for a in results])}
    scores = stack(lambda a: a.scores)
    if scores is not None:
        arrays["score"] = scores
    tgt = stack(lambda a: a.target if isinstance(a.target, torch.Tensor) and a.target.ndim == 1 else None)
    if tgt is not None:
        arrays["target"] = tgt.astype(np.int64)
    delta = stack(lambda a: a.delta)
    if delta is not None:
        arrays["delta"] = delta
    if batch.labels is not None:
        arrays["label"] = batch.labels.reshape(stop - start, *batch.labels.shape[1:]).cpu().numpy()
    return ChunkResult(k, arrays, _meta(results[0]))
