"""Adapters that make non-PyTorch models callable on tensors (for forward-only methods)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._validation import check_bool
from .errors import ModelOutputError, ParameterError

__all__ = ["NumpyModel"]


class NumpyModel:
    """Wrap a numpy function (e.g. scikit-learn's ``predict_proba``) as a tensor model.

    Each call moves the batch to a numpy array on the CPU (flattened to (R, features) by default,
    as scikit-learn expects), calls ``fn`` and returns its output as a tensor on the input's device
    and dtype. Gradients cannot flow through it: use it with forward-only explainers (RISE,
    MaskUpdate, Occlusion) and metrics.

    Parameters
    ----------
    fn : callable
        ``fn(array) -> array_like`` of shape (R, *O).
    flatten : bool, default True
        Reshape the input (R, *S) to (R, prod(S)) before calling ``fn``.
    dtype : numpy dtype, optional
        Cast the array to this dtype before calling ``fn`` (default: keep the tensor's).

    Examples
    --------
    >>> import numpy as np, torch
    >>> model = NumpyModel(lambda a: np.stack([a.sum(1), -a.sum(1)], 1))
    >>> model(torch.ones(2, 3, 4))
    tensor([[ 12., -12.],
            [ 12., -12.]])
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], *, flatten: bool = True, dtype: Any = None) -> None:
        if not callable(fn):
            raise ParameterError(
                f"The 'fn' parameter of NumpyModel must be callable. Got {type(fn).__name__} instead."
            )
        self.fn = fn
        self.flatten = check_bool(flatten, "flatten", "NumpyModel")
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().cpu().numpy()
        if self.flatten:
            a = a.reshape(a.shape[0], -1)
        if self.dtype is not None:
            a = a.astype(self.dtype, copy=False)
        out = np.asarray(self.fn(a))
        if out.dtype.kind not in "fiub":
            raise ModelOutputError(
                f"NumpyModel: fn returned an array of dtype {out.dtype}; expected numbers."
            )
        return torch.as_tensor(out).to(device=x.device, dtype=x.dtype)

    def __repr__(self) -> str:
        return f"NumpyModel({getattr(self.fn, '__qualname__', self.fn)!r})"
