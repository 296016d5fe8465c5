"""Plain gradient methods: Gradient, Saliency, InputXGradient."""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_option
from ..engine import Explainer, OutputLike, ScoreFunction
from ..layout import LayoutLike

__all__ = ["Gradient", "Saliency", "InputXGradient"]


class Gradient(Explainer):
    """The signed gradient of the score w.r.t. the input, ``d score / d x``.

    Returns attributions of ``x.shape``. One forward and one backward pass per sample.

    References
    ----------
    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR workshop 2014.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 16, 3)).eval()
    >>> Gradient(model).explain(torch.randn(2, 8, 16), target=1).values.shape
    torch.Size([2, 8, 16])
    """

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> torch.Tensor:
        return score.gradient_at_input()


class Saliency(Explainer):
    """Absolute gradient ``|d score / d x|``, reduced over channels as Xplique's Saliency does.

    Parameters
    ----------
    model, batch_size, layout
        See :class:`Explainer`.
    reduce_channels : bool, optional
        Take the maximum over the channel axis, returning (N, 1, *spatial). None (default)
        follows Xplique: reduce for images and video/volumes (layouts with ``h`` and ``w``), keep
        every channel for (N, C, T) signals.

    References
    ----------
    Simonyan, Vedaldi & Zisserman, ICLR workshop 2014; Xplique's ``Saliency`` (max reducer).
    """

    def __init__(
        self,
        model: Any,
        *,
        reduce_channels: bool | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.reduce_channels = check_option(
            reduce_channels, "reduce_channels", type(self).__name__, (None, True, False)
        )

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> torch.Tensor:
        g = score.gradient_at_input().abs()
        reduce = self.reduce_channels
        if reduce is None:
            reduce = score.layout.is_image_like
        if reduce and score.layout.has_channels:
            c = score.layout.axes("c")[0]
            g = g.amax(dim=c, keepdim=True)
        return g


class InputXGradient(Explainer):
    """Input times gradient, ``x * d score / d x`` (signed, ``x.shape``).

    References
    ----------
    Shrikumar et al., "Not Just a Black Box: Learning Important Features Through Propagating
    Activation Differences", 2016.
    """

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> torch.Tensor:
        return x * score.gradient_at_input()
