"""GradientShap: expected gradients over random baselines and random points on the path
(Lundberg & Lee 2017; Captum's ``GradientShap``)."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_bool, check_float, check_generator, check_int, make_generator
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..layout import LayoutLike
from .deeplift import Distribution, check_distribution, resolve_distribution

__all__ = ["GradientShap"]


class GradientShap(Explainer):
    """GradientShap: ``mean_k (x_k - b_k) * grad f(b_k + a_k (x_k - b_k))``.

    For each sample, ``n_samples`` draws of: a baseline ``b_k`` picked uniformly from the
    distribution ``baselines``, a point ``a_k ~ U(0, 1)`` on the straight path from ``b_k`` to
    the input, and Gaussian noise ``x_k = x + eps_k``, ``eps_k ~ N(0, stdevs^2)`` (absolute, as
    in Captum). The gradient at the drawn point times ``x_k - b_k`` is averaged over the draws:
    a Monte-Carlo estimate of expected gradients, which approximates SHAP values with the
    baselines as background data (Lundberg & Lee 2017). One pass of ``B * n_samples`` rows, then
    the scores at ``x``.

    Parameters
    ----------
    model, batch_size, layout, output
        See :class:`Explainer`.
    baselines : Tensor of shape (K, *S), or callable ``x -> (K, *S)``
        The background samples (in the domain's coefficients inside a domain).
    n_samples : int, default 5
        Draws per sample (Captum's default).
    stdevs : float, default 0.0
        Standard deviation of the noise added to the input before each draw (absolute, not
        relative to the sample's range; Captum's ``stdevs``).
    multiply_by_inputs : bool, default True
        False averages the gradients alone (Captum's "local" attribution).
    generator : torch.Generator, optional
        Source of every draw (baseline indices, then path points, then noise); the global RNG
        is never touched.

    Returns
    -------
    Attribution of ``x.shape`` (signed). No delta: the completeness of GradientShap holds only in
    expectation.

    Notes
    -----
    The draws are made per batch, so a sample's map depends on its position in the batch (the
    method is stochastic, like Captum's). Captum draws from NumPy's and torch's global RNGs; given
    the same draws the two agree to rounding (tests/parity/test_captum_deeplift.py).

    References
    ----------
    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    Erion et al., "Improving performance of deep learning models with axiomatic attribution
    priors and expected gradients", Nature Machine Intelligence 2021.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 8, 3)).eval()
    >>> shap = GradientShap(model, baselines=torch.zeros(4, 2, 8), n_samples=8,
    ...                     generator=torch.Generator().manual_seed(0))
    >>> shap.explain(torch.randn(5, 2, 8), target=1).values.shape
    torch.Size([5, 2, 8])
    """

    is_stochastic = True

    def __init__(
        self,
        model: Any,
        *,
        baselines: Distribution,
        n_samples: int = 5,
        stdevs: float = 0.0,
        multiply_by_inputs: bool = True,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.baselines = check_distribution(baselines)
        self.n_samples = check_int(n_samples, "n_samples", low=1)
        self.stdevs = check_float(stdevs, "stdevs", low=0.0)
        self.multiply_by_inputs = check_bool(multiply_by_inputs, "multiply_by_inputs")
        self.generator = check_generator(generator)

    def __repr__(self) -> str:
        k = self.baselines.shape[0] if isinstance(self.baselines, torch.Tensor) else "callable"
        return (
            f"{self.name}(baselines={k}, n_samples={self.n_samples}, stdevs={self.stdevs}, "
            f"multiply_by_inputs={self.multiply_by_inputs})"
        )

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        dist = resolve_distribution(self.baselines, x)
        gen = make_generator(self.generator)
        b, n, shape = x.shape[0], self.n_samples, x.shape[1:]
        index = torch.randint(dist.shape[0], (b, n), generator=gen, device=gen.device).to(x.device)
        alpha = torch.rand((b, n), generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
        noise = torch.randn((b, n, *shape), generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
        inputs = x.unsqueeze(1) + self.stdevs * noise  # (B, n, *S)
        base = dist[index]  # (B, n, *S)
        a = alpha.reshape(b, n, *([1] * len(shape)))
        _, grads = score.gradients(a * inputs + (1 - a) * base)
        values = ((inputs - base) * grads).mean(1) if self.multiply_by_inputs else grads.mean(1)
        return Parts(values, info={"n_samples": n, "stdevs": self.stdevs})
