"""Eigen-CAM and Eigen-Grad-CAM: the first principal component of a layer's activations (or of
activations times gradients), for 1-, 2- and 3-D networks."""

from __future__ import annotations

import torch

from ._cam_base import LayerExplainer, first_component

__all__ = ["EigenCAM", "EigenGradCAM"]


class EigenCAM(LayerExplainer):
    """Eigen-CAM: the projection of the layer's activations on their first principal component.

    For each sample, the activation vectors ``A[:, p]`` (K channels) of the P positions are
    centred over the positions and projected on the first right singular vector ``v``:
    ``cam = ReLU((A - mean_p A)^T v)`` (see :func:`~salience.explainers._cam_base.first_component`).
    The map does not depend on the target (no gradients): it shows what the layer responds to
    most, whatever the class; ``Attribution.scores`` still records the target's scores.

    Sign convention: a singular vector has no sign. Here ``v`` is chosen so that its loadings
    sum to a non-negative number, which makes the signed map (``relu=False``) correlate
    non-negatively with the channel sum of the activations. pytorch-grad-cam takes the sign
    NumPy's SVD returns, which is arbitrary (it depends on the LAPACK build); where its sign
    differs, its map (after its ReLU) is the ReLU of our map's negative.

    Returns maps of shape (N, 1, *spatial) (raw, unnormalised). See
    :class:`~salience.LayerExplainer` for the parameters
    (``eigen_smooth`` must stay False).

    References
    ----------
    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv1d(8, 16, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
    ...                       nn.Flatten(), nn.Linear(16, 3)).eval()
    >>> attr = EigenCAM(model, layer="1").explain(torch.randn(4, 8, 100), target=2)
    >>> attr.values.shape
    torch.Size([4, 1, 100])
    """

    uses_gradients = False
    eigen_smoothable = False

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return first_component(a)


class EigenGradCAM(LayerExplainer):
    """Eigen-Grad-CAM: the first principal component of activations times gradients.

    As :class:`EigenCAM`, on the class-specific terms ``G_k * A_k`` (HiResCAM's terms) instead
    of the activations: ``cam = ReLU((T - mean_p T)^T v)`` with ``T = G * A``, pytorch-grad-cam's
    ``EigenGradCAM``. The sign convention is :class:`EigenCAM`'s: the loadings of ``v`` sum to a
    non-negative number, so the signed map correlates non-negatively with HiResCAM's signed map
    ``sum_k G_k A_k``.

    References
    ----------
    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020;
    the gradient weighting is pytorch-grad-cam's (Gildenblat et al., 2021).
    """

    eigen_smoothable = False

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return first_component(g * a)
