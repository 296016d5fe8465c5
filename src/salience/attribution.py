"""The result object every explainer returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .layout import Layout

__all__ = ["Attribution"]


@dataclass(frozen=True, eq=False)
class Attribution:
    """Attributions and what was explained.

    Attributes
    ----------
    values : Tensor
        Signed, unnormalised attributions on the input's device and dtype. Input-space methods
        return ``x.shape``; channel-reduced methods and CAMs return (N, 1, *spatial); inside a
        domain the shape is the domain's coefficient shape.
    target : Tensor of shape (N,) or Target
        The per-sample class indices explained, or the target object for non-class targets.
    scores : Tensor of shape (N,)
        The explained score at the input.
    method : str
        Name of the explainer (wrappers nest, e.g. ``"SmoothGrad(IntegratedGradients)"``).
    layout : Layout
        Axis names of ``values``.
    domain : Domain or None
        The domain the attributions live in (None for the input space).
    delta : Tensor of shape (N,) or None
        Completeness gap ``sum(values) - (f(x) - f(baseline))`` for the IG family, else None.
    layer : str or None
        The layer a CAM-family method explained.
    info : dict
        Method-specific extras (e.g. the quadrature rule, the number of model calls) and what is
        known about the input: ``channel_names``, ``class_names``, ``sfreq`` (Hz), ``units``,
        ``positions`` ((C, 3) metres), ``montage`` and ``mne_info`` (from an MNE object, see
        :mod:`salience.mne`), which the plots and the report read.
    """

    values: torch.Tensor
    target: Any
    scores: torch.Tensor
    method: str
    layout: Layout
    domain: Any = None
    delta: torch.Tensor | None = None
    layer: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def channel_names(self) -> list[str] | None:
        """``info["channel_names"]``: the names of the input's channels, when known (given with
        ``channel_names=`` or read from an MNE object)."""
        names = self.info.get("channel_names")
        return None if names is None else [str(n) for n in names]

    @property
    def class_names(self) -> list[str] | None:
        """``info["class_names"]``: the model's classes in output order, when known."""
        names = self.info.get("class_names")
        return None if names is None else [str(n) for n in names]

    @property
    def sfreq(self) -> float | None:
        """``info["sfreq"]``: the sampling rate in Hz, when known."""
        fs = self.info.get("sfreq", self.info.get("fs"))
        return None if fs is None else float(fs)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def numpy(self) -> np.ndarray:
        """The values as a numpy array (copied to the CPU).

        Returns
        -------
        numpy.ndarray
            The values in their own dtype, except ``bfloat16`` (which numpy lacks): upcast
            exactly to ``float32``. ``float16`` stays ``numpy.float16``.
        """
        values = self.values.detach().cpu()
        if values.dtype == torch.bfloat16:
            values = values.to(torch.float32)  # exact: bfloat16 is a truncated float32
        return values.numpy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr.astype(dtype) if dtype is not None else arr

    def to_xarray(self, **kwargs: Any) -> Any:
        """The result as an ``xarray.Dataset`` (needs xarray: ``pip install 'salience[datasets]'``).

        ``values`` with dims ``("sample", *axes)`` of the layout, ``score``, ``target`` and
        ``delta`` per sample, a domain's coordinates (frequencies, scales) on its axes; keywords
        ``channel_names`` and ``class_names``. The same variables as
        :func:`salience.datasets.open_attributions` reads from a store.
        """
        from .datasets.read import to_xarray

        return to_xarray(self, **kwargs)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        extra = f", domain={self.domain!r}" if self.domain is not None else ""
        extra += f", layer={self.layer!r}" if self.layer is not None else ""
        return (
            f"Attribution(method={self.method!r}, shape={self.shape}, layout={str(self.layout)!r}"
            f"{extra}, dtype={self.values.dtype}, device={self.values.device})"
        )
