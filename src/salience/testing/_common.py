"""What the checks share: the failure type, named check callables, snapshots of state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as _module

__all__ = ["CheckFailed", "Check"]


class CheckFailed(AssertionError):
    """A check of :mod:`salience.testing` failed.

    An ``AssertionError``, so test runners report it as a failure. The message reads
    ``[check] subject: what was expected; what was found``.

    Attributes
    ----------
    check : str
        The name of the failed check (e.g. ``"batch_invariance"``).
    subject : str
        What was checked (the explainer or domain, and the kind of input).
    """

    def __init__(self, check: str, subject: str, problem: str) -> None:
        super().__init__(f"[{check}] {subject}: {problem}")
        self.check = check
        self.subject = subject


class Check:
    """One named check, ready to run: calling it runs the check, returns True when it passes
    and raises :class:`CheckFailed` when it does not.

    Attributes
    ----------
    name : str
        ``"<check>"`` or ``"<check>[<kind>]"``.
    """

    def __init__(self, name: str, fn: Callable[[], None]) -> None:
        self.name = name
        self.__name__ = name
        self._fn = fn

    def __call__(self) -> bool:
        self._fn()
        return True

    def __repr__(self) -> str:
        return f"Check({self.name!r})"


def same(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    """Whether two tensors have the same shape and values within the tolerances."""
    if a.shape != b.shape:
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))


def difference(a: torch.Tensor, b: torch.Tensor) -> str:
    """A short description of how two tensors differ (shape, or the largest difference)."""
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    if a.numel() == 0:
        return "no elements"
    diff = (a.detach().double() - b.detach().double()).abs()
    flat = int(diff.flatten().argmax())
    index = tuple(int(i) for i in np.unravel_index(flat, tuple(a.shape)))
    return (
        f"largest difference {float(diff.flatten()[flat]):.3g} at index {index} "
        f"({float(a.flatten()[flat]):.6g} vs {float(b.flatten()[flat]):.6g})"
    )


# ---------------------------------------------------------------------------------- model state
_MODULE_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
    "_global_buffer_registration_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
)
_TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")


def _keys(hooks: Any) -> tuple:
    return tuple(hooks.keys()) if hooks else ()


def hooks_of(model: nn.Module) -> dict[str, tuple]:
    """Every hook registered on the model's modules and parameters, and every global module hook."""
    out: dict[str, tuple] = {}
    for name in _GLOBAL_HOOKS:
        out[f"global {name[len('_global_') :]}"] = _keys(getattr(_module, name, None))
    for mname, mod in model.named_modules():
        label = f"module {mname or '(root)'!r} ({type(mod).__name__})"
        for attr in _MODULE_HOOKS:
            out[f"{attr.strip('_')} of {label}"] = _keys(getattr(mod, attr, None))
    for pname, p in model.named_parameters():
        for attr in _TENSOR_HOOKS:
            out[f"tensor {attr.strip('_')} of parameter {pname!r}"] = _keys(getattr(p, attr, None))
    return out


def model_state(model: nn.Module) -> dict[str, Any]:
    """A snapshot of everything about a model an explainer must leave alone."""
    return {
        "modes": {n or "(root)": m.training for n, m in model.named_modules()},
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {
            n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()
        },
        "hooks": hooks_of(model),
    }


def model_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """How the model changed between two :func:`model_state` snapshots (empty: it did not)."""
    found = []
    for name, mode in before["modes"].items():
        now = after["modes"].get(name)
        if now != mode:
            found.append(
                f"module {name!r} went from {'training' if mode else 'eval'} to "
                f"{'training' if now else 'eval'} mode"
            )
    if before["state"].keys() != after["state"].keys():
        found.append(f"the state_dict keys changed (now {sorted(after['state'])})")
    for k, v in before["state"].items():
        w = after["state"].get(k)
        if w is not None and not (v.shape == w.shape and torch.equal(v, w)):
            found.append(f"parameter/buffer {k!r} changed ({difference(w, v)})")
    for n, rg in before["requires_grad"].items():
        if after["requires_grad"].get(n, rg) != rg:
            found.append(f"parameter {n!r} requires_grad went from {rg} to {not rg}")
    for n, g in before["grads"].items():
        h = after["grads"].get(n)
        if (g is None) != (h is None) or (g is not None and not torch.equal(g, h)):
            found.append(f"the .grad of parameter {n!r} changed")
    for where, keys in after["hooks"].items():
        old = before["hooks"].get(where, ())
        added, removed = len(set(keys) - set(old)), len(set(old) - set(keys))
        if added:
            found.append(f"{added} {where} added and left behind")
        if removed:
            found.append(f"{removed} {where} removed")
    return found


def rng_state(device: torch.device) -> list[torch.Tensor]:
    states = [torch.random.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def rng_changed(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def tensor_changes(x: torch.Tensor, copy: torch.Tensor, version: int, what: str = "the input") -> list[str]:
    """How ``x`` changed since ``copy`` (its values) and ``version`` (its version counter)."""
    found = []
    if x.shape != copy.shape or not torch.equal(x, copy):
        found.append(f"{what}'s values changed ({difference(x, copy)})")
    elif x._version != version:
        found.append(f"{what} was written in place (its version counter went from {version} to {x._version})")
    if x.requires_grad:
        found.append(f"{what} now requires grad")
    if x.grad is not None:
        found.append(f"{what} got a .grad")
    return found


# ---------------------------------------------------------------------------------- object state
def fingerprint(value: Any, depth: int = 0) -> Any:
    """A comparable copy of an attribute's value: tensors and arrays by value, containers
    recursively, other objects by identity."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().clone())
    if isinstance(value, np.ndarray):
        return ("array", value.copy())
    if isinstance(value, (str, bytes, int, float, complex, bool, type(None))):
        return ("value", value)
    if depth < 4 and isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(fingerprint(v, depth + 1) for v in value))
    if depth < 4 and isinstance(value, dict):
        return ("dict", tuple((k, fingerprint(v, depth + 1)) for k, v in value.items()))
    return ("object", id(value))


def same_fingerprint(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple) and len(a) == 2 and a[0] in ("tensor", "array"):
        if b[0] != a[0] or a[1].shape != b[1].shape or a[1].dtype != b[1].dtype:
            return False
        return bool(torch.equal(a[1], b[1])) if a[0] == "tensor" else bool(np.array_equal(a[1], b[1]))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_fingerprint(u, v) for u, v in zip(a, b, strict=True))
    return bool(a == b)


def attribute_changes(obj: Any, before: dict[str, Any]) -> list[str]:
    """Attributes of ``obj`` added, removed or changed since ``before = snapshot(obj)``."""
    now = snapshot(obj)
    found = [f"attribute {k!r} was added" for k in now.keys() - before.keys()]
    found += [f"attribute {k!r} was removed" for k in before.keys() - now.keys()]
    found += [
        f"attribute {k!r} changed"
        for k in before.keys() & now.keys()
        if not same_fingerprint(before[k], now[k])
    ]
    return sorted(found)


def snapshot(obj: Any) -> dict[str, Any]:
    return {k: fingerprint(v) for k, v in vars(obj).items()}
