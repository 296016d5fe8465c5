"""What an Attribution says about itself, for titles and labels: method, class, score, channel
names and sampling rate (read from the object, its ``info`` or given by the caller)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError


def is_attribution(obj: Any) -> bool:
    return hasattr(obj, "layout") and hasattr(obj, "method") and hasattr(obj, "values")


def method(obj: Any) -> str | None:
    """The method name of an Attribution, None for arrays."""
    return str(obj.method) if is_attribution(obj) else None


def _lookup(obj: Any, *keys: str) -> Any:
    """The first of ``keys`` found as an attribute of ``obj`` or in its ``info`` dict."""
    if not is_attribution(obj):
        return None
    info = getattr(obj, "info", None) or {}
    for k in keys:
        v = getattr(obj, k, None)
        if v is None and isinstance(info, dict):
            v = info.get(k)
        if v is not None:
            return v
    return None


def channel_names(obj: Any, given: Sequence[str] | None) -> Sequence[str] | None:
    """``given``, else the channel names an Attribution carries (``channel_names``/``ch_names``)."""
    if given is not None:
        return given
    found = _lookup(obj, "channel_names", "ch_names")
    return [str(n) for n in found] if found is not None else None


def class_names(obj: Any, given: Sequence[str] | None) -> Sequence[str] | None:
    """``given``, else the class names an Attribution carries."""
    if given is not None:
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise ParameterError(
                f"The 'class_names' parameter must be a sequence of str. Got {type(given).__name__} instead."
            )
        return given
    found = _lookup(obj, "class_names")
    return [str(n) for n in found] if found is not None else None


def sampling_rate(obj: Any, given: float | None) -> float | None:
    """``given``, else the sampling rate an Attribution carries (``sfreq``/``fs``)."""
    if given is not None:
        return given
    found = _lookup(obj, "sfreq", "fs")
    try:
        return float(found) if found is not None else None
    except (TypeError, ValueError):
        return None


def target_label(target: Any, index: int, names: Sequence[str] | None) -> str | None:
    """The explained class of sample ``index`` as text: its name when ``names`` has it."""
    try:
        t = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target)
    except (TypeError, ValueError):
        return None
    if t.dtype.kind not in "iu":
        return None
    k = int(t.reshape(-1)[index if t.size > 1 else 0]) if t.size else None
    if k is None:
        return None
    if names is not None and 0 <= k < len(names):
        return str(names[k])
    return f"class {k}"


def title(obj: Any, index: int = 0, names: Sequence[str] | None = None) -> str | None:
    """``"<method>: <class>, score <s>"`` for sample ``index`` of an Attribution (None for arrays)."""
    if not is_attribution(obj):
        return None
    parts = [str(obj.method)]
    label = target_label(getattr(obj, "target", None), index, class_names(obj, names))
    detail = []
    if label is not None:
        detail.append(label)
    scores: Any = getattr(obj, "scores", None)
    try:
        s = np.asarray(scores.detach().cpu().double() if hasattr(scores, "detach") else scores, dtype=float)
        if scores is not None and s.size:
            detail.append(f"score {float(s.reshape(-1)[index if s.size > 1 else 0]):.3g}")
    except (TypeError, ValueError, IndexError):
        pass
    return parts[0] + (": " + ", ".join(detail) if detail else "")
