"""SmoothGrad, SquareGrad and VarGrad as a wrapper around any explainer."""

from __future__ import annotations

import math
from typing import cast

import torch

from .._progress import progress_bar
from .._validation import check_bool, check_float, check_generator, check_int, check_option, make_generator
from ..engine import Explainer, Parts, ScoreFunction, Wrapper
from ..engine.explainer import as_parts
from ..errors import ParameterError

__all__ = ["SmoothGrad"]

# noisy copies materialised at once: at most this many input elements (about 64 MiB of float32)
_GROUP_ELEMENTS = 2**24


class SmoothGrad(Wrapper):
    """Average an explainer over noisy copies of the input (SmoothGrad, SquareGrad, VarGrad).

    For each sample, ``n_samples`` copies ``x + eps`` with ``eps ~ N(0, (sigma * (max(x) -
    min(x)))^2)`` (the noise level relative to the sample's value range, as in the paper) are
    explained by the wrapped explainer, and their attributions ``a`` are reduced:
    ``kind="mean"``: E[a] (SmoothGrad); ``"square"``: E[a^2] (SquareGrad); ``"var"``:
    E[a^2] - E[a]^2 (VarGrad). The noisy copies go through the engine's chunking like any other
    rows; at most about 16M input elements are materialised at once.

    Parameters
    ----------
    explainer : Explainer
        Any explainer (Gradient, IntegratedGradients, InDomain(...), ...).
    n_samples : int, default 50
    sigma : float, default 0.15
        Noise standard deviation relative to each sample's value range (>= 0; 0 gives the
        wrapped explainer's result).
    kind : {"mean", "square", "var"}, default "mean"
    generator : torch.Generator, optional
        Source of the noise; the global RNG is never touched.
    progress : bool, default True
        Show a tqdm progress bar over the noise draws (if tqdm is installed).

    References
    ----------
    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017; Adebayo et al., "Local
    explanation methods for deep neural networks lack sensitivity to parameter values" (VarGrad),
    2018; Hooker et al., "A Benchmark for Interpretability Methods" (SmoothGrad-Squared), 2019.
    """

    _stochastic = True

    def __init__(
        self,
        explainer: Explainer,
        *,
        n_samples: int = 50,
        sigma: float = 0.15,
        kind: str = "mean",
        generator: torch.Generator | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(explainer)
        self.n_samples = check_int(n_samples, "n_samples", low=1)
        self.sigma = check_float(sigma, "sigma", low=0.0)
        self.kind = check_option(kind, "kind", options=("mean", "square", "var"))
        self.generator = check_generator(generator)
        self.progress = check_bool(progress, "progress")

    @property
    def name(self) -> str:
        label = {"mean": "SmoothGrad", "square": "SquareGrad", "var": "VarGrad"}[self.kind]
        return f"{label}({self.explainer.name})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        gen = make_generator(self.generator)
        b, n = x.shape[0], self.n_samples
        flat = x.flatten(1)
        std = (self.sigma * (flat.amax(1) - flat.amin(1))).reshape(b, 1, *([1] * (x.ndim - 1)))
        per_sample = int(math.prod(x.shape[1:]))
        group = max(1, min(n, _GROUP_ELEMENTS // max(1, b * per_sample)))
        sum1: torch.Tensor | None = None
        sum2: torch.Tensor | None = None
        last: Parts | None = None
        with progress_bar(n, f"{self.name} draws", self.progress) as bar:
            for start in range(0, n, group):
                k = min(group, n - start)
                noise = torch.randn((b, k, *x.shape[1:]), generator=gen, device=gen.device, dtype=x.dtype)
                xn = (x.unsqueeze(1) + std * noise.to(x.device)).reshape(b * k, *x.shape[1:])
                last = as_parts(self.explainer.attribute(xn, score.repeat(xn, k)), score.layout)
                v = last.values.reshape(b, k, *last.values.shape[1:])
                s1 = v.sum(1)
                sum1 = s1 if sum1 is None else sum1 + s1
                if self.kind != "mean":
                    s2 = (v * v).sum(1)
                    sum2 = s2 if sum2 is None else sum2 + s2
                bar.update(k)
        if sum1 is None or last is None:
            raise ParameterError(f"{self.name} needs at least one noise draw; got n_samples={n}.")
        mean = sum1 / n
        # sum2 is accumulated with sum1 for "square" and "var"
        if self.kind == "mean":
            out = mean
        elif self.kind == "square":
            out = cast(torch.Tensor, sum2) / n
        else:
            out = cast(torch.Tensor, sum2) / n - mean * mean
        return Parts(
            out,
            layout=last.layout,
            domain=last.domain,
            layer=last.layer,
            info={"n_samples": n, "sigma": self.sigma},
        )
