"""The CAM family: class activation maps of a layer, for 1-, 2- and 3-D networks.

One base, :class:`LayerExplainer` (in :mod:`salience.explainers._cam_base`, with the options
shared by every CAM), captures the target layer's activations ``A`` (B, K, *a) and the score's
gradients ``G`` with respect to them in one batched backward pass (through
``score.layer_gradients``), then each method combines them in a few lines. Everything is
written over "the axes after the channel axis", never per rank. EigenCAM and EigenGradCAM are
in :mod:`~salience.explainers.cam_eigen`, AblationCAM in :mod:`~salience.explainers.cam_ablation`,
FullGrad in :mod:`~salience.explainers.fullgrad`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._progress import progress_bar
from .._validation import check_bool
from ..engine import OutputLike, ScoreFunction
from ..engine.tokens import token_grid  # noqa: F401  (the shape-only reading of salience 0.2, imported from here)
from ..errors import ShapeError
from ..layout import LayoutLike
from ._cam_base import (
    _INTERPOLATION,
    LayerExplainer,
    LayerLike,
    Reshape,
    _positions,
    _Reading,
    _safe_div,
    _to_layout,
)

__all__ = [
    "LayerExplainer",
    "GradCAM",
    "HiResCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "ScoreCAM",
]


class GradCAM(LayerExplainer):
    """Grad-CAM: channel weights are the gradients averaged over positions,
    ``cam = ReLU(sum_k mean(G_k) A_k)``.

    Returns maps of shape (N, 1, *spatial) (raw, unnormalised). See :class:`LayerExplainer` for
    the parameters.

    References
    ----------
    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv1d(8, 16, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
    ...                       nn.Flatten(), nn.Linear(16, 3)).eval()
    >>> attr = GradCAM(model, layer="1").explain(torch.randn(4, 8, 100), target=2)
    >>> attr.values.shape, attr.layer
    (torch.Size([4, 1, 100]), '1')
    """

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        w = g.mean(dim=_positions(g), keepdim=True)
        return self._channels(w * a)


class HiResCAM(LayerExplainer):
    """HiResCAM: element-wise gradient times activation, ``cam = sum_k G_k * A_k``.

    For a CNN ending in one linear layer after the target layer, the signed map
    (``relu=False``) sums over positions to the score minus the bias: it shows exactly which
    positions the model used. ``relu=True`` (default) keeps the positive evidence as Grad-CAM does.

    References
    ----------
    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", arXiv:2011.08891, 2020.
    """

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self._channels(g * a)


class GradCAMPlusPlus(LayerExplainer):
    """Grad-CAM++: channel weights ``w_k = sum_pos alpha_k * ReLU(G_k)`` with
    ``alpha = G^2 / (2 G^2 + sum_pos(A_k) G^3)`` (0 where the denominator is 0).

    The higher derivatives are the closed form of the paper for an exponential output; like the
    paper's and pytorch-grad-cam's code, they are computed from the first derivative of the score.

    References
    ----------
    Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
    Convolutional Networks", WACV 2018.
    """

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        pos = _positions(g)
        g2 = g * g
        alpha = _safe_div(g2, 2 * g2 + a.sum(dim=pos, keepdim=True) * g2 * g)
        w = (alpha * g.clamp_min(0)).sum(dim=pos, keepdim=True)
        return self._channels(w * a)


class XGradCAM(LayerExplainer):
    """XGrad-CAM: channel weights ``w_k = sum_pos(A_k G_k) / sum_pos(A_k)`` (0 for an all-zero
    channel).

    References
    ----------
    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
    BMVC 2020.
    """

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        pos = _positions(g)
        w = _safe_div((a * g).sum(dim=pos, keepdim=True), a.sum(dim=pos, keepdim=True))
        return self._channels(w * a)


class LayerCAM(LayerExplainer):
    """LayerCAM: positive gradients as position-wise weights, ``cam = sum_k ReLU(G_k) * A_k``.

    References
    ----------
    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE TIP 2021.
    """

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self._channels(g.clamp_min(0) * a)


class ScoreCAM(LayerExplainer):
    """Score-CAM: channel weights from the scores of the input masked by each activation map.

    Each channel ``A_k`` is upsampled to the input size and min-max normalised to [0, 1] (an
    all-constant channel gives an all-zero mask); the score of ``x * mask_k`` is computed for
    every channel (batched forward passes without gradients, chunked by ``batch_size``, the
    masked inputs generated chunk by chunk), and the weights are the softmax of those scores
    over channels (Algorithm 1 of the paper): ``cam = ReLU(sum_k softmax(s)_k A_k)``.

    Costs one pass over the batch plus N x K rows, K being the layer's channel count.

    Parameters
    ----------
    model, layer, relu, upsample, reshape, final_activation, eigen_smooth, aug_smooth, scale_layers, batch_size, layout, output
        As for :class:`LayerExplainer`.
    progress : bool, default True
        Show a tqdm progress bar over the masked rows (if tqdm is installed).

    Notes
    -----
    pytorch-grad-cam's ``ScoreCAM`` resizes the channels with ``nn.UpsamplingBilinear2d``
    (``align_corners=True``) and divides by ``max - min + 1e-8``; this class interpolates with
    ``align_corners=False`` (as every CAM here upsamples its map) and divides exactly. The masks,
    hence the weights, differ wherever the layer's resolution differs from the input's; they
    agree when it is the same.

    References
    ----------
    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR workshops 2020.
    """

    uses_gradients = False

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        relu: bool = True,
        upsample: bool = True,
        reshape: Reshape = "auto",
        final_activation: str = "warn",
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        scale_layers: bool = False,
        progress: bool = True,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            model,
            layer=layer,
            relu=relu,
            upsample=upsample,
            reshape=reshape,
            final_activation=final_activation,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
            scale_layers=scale_layers,
            batch_size=batch_size,
            layout=layout,
            output=output,
        )
        self.progress = check_bool(progress, "progress")

    def _layer_map(
        self, x: torch.Tensor, score: ScoreFunction, module: nn.Module, read: _Reading
    ) -> tuple[torch.Tensor, torch.Tensor]:
        values, a, _ = score.layer_gradients(module, grad=False)
        a, sizes = read(a), read.sizes
        b, k = a.shape[:2]
        if len(sizes) > len(_INTERPOLATION):
            raise ShapeError(f"{self.name} supports 1 to 3 spatial axes; got {len(sizes)}.")
        mode = _INTERPOLATION[len(sizes) - 1]
        # one mask per channel k: (1, *a), or (C, *a) over the input's channels for per-channel tokens
        flat = a.reshape(b * k, *([] if read.per_channel else [1]), *a.shape[2:])
        layout = score.layout
        bar = progress_bar(b * k, f"{self.name} masks", self.progress)

        def rows(start: int, stop: int) -> torch.Tensor:
            m = flat[start:stop]
            if tuple(m.shape[2:]) != sizes:
                m = F.interpolate(m, size=sizes, mode=mode, align_corners=False)
            lo = m.flatten(1).amin(1).reshape(-1, *([1] * (m.ndim - 1)))
            hi = m.flatten(1).amax(1).reshape(-1, *([1] * (m.ndim - 1)))
            m = _safe_div(m - lo, (hi - lo).expand_as(m))
            m = _to_layout(m, layout).to(x.dtype)
            owner = torch.arange(start, stop, device=x.device) // k
            bar.update(stop - start)
            return x[owner] * m

        with bar:
            s = score.values(rows, n=k)  # (B, K)
        w = torch.softmax(s, dim=1).reshape(b, k, *([1] * (a.ndim - 2)))
        return values, self._channels(w * a)
