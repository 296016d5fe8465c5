"""FullGrad: the input-gradient term and the bias-gradient terms of every convolution and
batch normalisation, post-processed and summed into one map, for 1-, 2- and 3-D networks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_bool, check_option
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..engine._hooks import own_thread
from ..errors import CompositionError, LayerError, ShapeError
from ..layout import Layout, LayoutLike
from ._cam_base import _INTERPOLATION, _to_layout

__all__ = ["FullGrad"]

_BIASED = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.Linear)


class FullGrad(Explainer):
    """FullGrad: ``psi(grad_x f * x) + sum_l sum_c psi(grad_{b_l} f * b_l)``.

    The input term is the gradient times the input (B, C, *spatial); each layer ``l`` with a
    bias adds the bias-gradient term ``b_{l,c} * d f / d z_{l,c}`` at every position of its
    output ``z_l`` (B, K, *a). The layers are every convolution with a bias and every batch
    normalisation, whose bias is ``beta - mean * gamma / sqrt(var + eps)`` with its running
    statistics (the paper's code and pytorch-grad-cam do the same). Each term is post-processed
    (``psi``): its absolute value (``absolute``), min-max scaling (``normalize``), linear,
    bilinear or trilinear interpolation to the input's spatial size (``align_corners=False``;
    applied to the sum over the term's channels, which by linearity is the sum of the
    interpolated channels); the map is the sum of all terms. One forward and backward
    pass of B rows gives every gradient (hooks on the biased layers exist only during it).

    The bias terms without positions (``nn.Linear`` layers, and any layer whose output has not
    the input's number of axes) have no place in a map: their signed sum per sample is recorded
    in ``info["bias_rest"]``. For a piecewise-linear network (ReLU, pooling, convolutions,
    batch normalisation in eval mode, linear layers) with ``absolute=False``,
    ``normalize=None`` and layers at the input's resolution, the map sums to the score minus
    ``info["bias_rest"]`` (the paper's completeness).

    Parameters
    ----------
    model : nn.Module
        Never modified; hooks exist only during a call. Batch normalisations must be in eval
        mode with running statistics.
    absolute : bool, default True
        Take each term's absolute value, as the paper does; False keeps its sign.
    normalize : {"channel", "layer"} or None, default "channel"
        Min-max scale each term to [0, 1] per sample (0 for a constant one) before the
        interpolation: ``"channel"`` each channel's map (pytorch-grad-cam), ``"layer"`` all
        channels of a term together (the paper's code), None not at all.
    batch_size : int, optional
        Maximum samples per forward/backward pass.
    layout : str or Layout, optional
        Axis names of the input (it needs spatial axes).
    output : str, int or callable, optional
        The tensor to explain in a structured output.

    Returns
    -------
    Attribution of shape (N, 1, *spatial) in the input's layout (non-negative with
    ``absolute=True``, unnormalised sum of the terms); ``info["layers"]`` names the layers whose
    terms are in the map.

    Notes
    -----
    pytorch-grad-cam's ``FullGrad`` uses only ``Conv2d`` and ``BatchNorm2d`` (2-D images),
    scales every channel to [0, 1] with ``1e-7`` added to the denominator and resizes with
    OpenCV; it min-max scales the final sum, which this class leaves raw. The paper's code
    scales each term as a whole (``normalize="layer"``) and resizes with
    ``align_corners=True``.

    References
    ----------
    Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization",
    NeurIPS 2019.
    """

    def __init__(
        self,
        model: Any,
        *,
        absolute: bool = True,
        normalize: str | None = "channel",
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        self.absolute = check_bool(absolute, "absolute")
        self.normalize = check_option(normalize, "normalize", options=("channel", "layer", None))

    def __repr__(self) -> str:
        return f"{self.name}(absolute={self.absolute}, normalize={self.normalize!r})"

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        layout = score.layout
        if score.composed:
            raise CompositionError(
                f"{self.name} adds the bias terms of the model's layers over the model's input, which "
                "has no meaning inside a domain (InDomain) or other input transform."
            )
        if not layout.spatial:
            raise ShapeError(f"{self.name} needs an input with spatial axes; got layout {layout}.")
        if not isinstance(score.model, nn.Module):
            raise LayerError(f"{self.name} needs an nn.Module model. Got {type(score.model).__name__}.")
        sizes = tuple(x.shape[i] for i in layout.spatial_axes)
        if len(sizes) > len(_INTERPOLATION):
            raise ShapeError(f"{self.name} supports 1 to 3 spatial axes; got layout {layout}.")
        biased = [(n, m, _bias(self.name, n, m)) for n, m in score.model.named_modules() if _has_bias(m)]
        grads: dict[str, list[torch.Tensor]] = {n: [] for n, _, _ in biased}
        shapes: dict[str, tuple[int, ...]] = {}

        def recorder(name: str) -> Any:
            def hook(_mod: nn.Module, _inp: Any, out: Any) -> Any:
                if not isinstance(out, torch.Tensor):
                    return None
                shapes[name] = tuple(out.shape[1:])
                if out.requires_grad:
                    out.register_hook(lambda g: grads[name].append(g.detach()))
                # downstream gets a copy: an in-place op after the layer leaves `out` intact
                return out.clone()

            return hook

        @contextmanager
        def recording(_model: Any) -> Iterator[None]:
            handles = [m.register_forward_hook(own_thread(recorder(n))) for n, m, _ in biased]
            try:
                yield
            finally:
                for h in handles:
                    h.remove()

        b = x.shape[0]
        gx = score.under(recording).gradient_at_input()
        terms = [_canonical(gx * x, layout)]  # (B, C, *sizes)
        names, rest = [], torch.zeros(b, dtype=x.dtype, device=x.device)
        for name, module, bias in biased:
            if name not in shapes:
                continue  # not called in the forward pass
            found = grads[name]
            g = torch.cat(found) if found else x.new_zeros((b, *shapes[name]))
            if g.shape[0] != b:
                raise LayerError(
                    f"{self.name}: the layer {name!r} ran {g.shape[0] // b} times in one forward pass; "
                    "FullGrad needs each biased layer to run once (a module reused in the network)."
                )
            linear = isinstance(module, nn.Linear)  # its bias is along the last axis
            if linear or g.ndim != 2 + len(sizes):
                view = (*([1] * (g.ndim - 1)), -1) if linear else (1, -1, *([1] * (g.ndim - 2)))
                rest = rest + (g * bias.reshape(view).to(g.dtype)).flatten(1).sum(1).to(rest.dtype)
                continue
            terms.append(g * bias.reshape(1, -1, *([1] * len(sizes))).to(g.dtype))
            names.append(name)
        total = torch.zeros((b, 1, *sizes), dtype=x.dtype, device=x.device)
        for t in terms:
            total = total + self._post(t, sizes).to(x.dtype)
        return Parts(
            _to_layout(total, layout),
            layout=layout,
            info={
                "layers": tuple(names),
                "bias_rest": rest,
                "absolute": self.absolute,
                "normalize": self.normalize,
            },
        )

    def _post(self, term: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        """psi: (B, K, *a) -> (B, 1, *sizes): abs, min-max scaling, channel sum, interpolation
        (linear, so summing the channels first gives the sum of the interpolated channels)."""
        if self.absolute:
            term = term.abs()
        if self.normalize is not None:
            flat = term.flatten(2) if self.normalize == "channel" else term.flatten(1).unsqueeze(1)
            lo = flat.amin(-1, keepdim=True)
            span = flat.amax(-1, keepdim=True) - lo
            scale = torch.where(span > 0, 1 / torch.where(span > 0, span, 1), 0)  # 0 for a constant map
            term = ((flat - lo) * scale).reshape(term.shape)
        term = term.sum(1, keepdim=True)
        if tuple(term.shape[2:]) != sizes:
            term = F.interpolate(term, size=sizes, mode=_INTERPOLATION[len(sizes) - 1], align_corners=False)
        return term


def _has_bias(m: nn.Module) -> bool:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return True  # its running mean gives it a bias even without an affine one
    return isinstance(m, _BIASED) and getattr(m, "bias", None) is not None


def _bias(owner: str, name: str, m: nn.Module) -> torch.Tensor:
    """The layer's bias, a batch normalisation's folded with its running statistics."""
    if not isinstance(m, nn.modules.batchnorm._BatchNorm):
        return cast(torch.Tensor, m.bias).detach()
    if m.training or m.running_mean is None or m.running_var is None:
        raise LayerError(
            f"{owner}: the batch normalisation {name!r} uses batch statistics (training mode or "
            "track_running_stats=False), so it has no fixed bias. Call model.eval() first."
        )
    mean, var = m.running_mean.detach(), m.running_var.detach()
    gamma = m.weight.detach() if m.weight is not None else torch.ones_like(mean)
    beta = m.bias.detach() if m.bias is not None else torch.zeros_like(mean)
    return beta - mean * gamma / torch.sqrt(var + m.eps)


def _canonical(t: torch.Tensor, layout: Layout) -> torch.Tensor:
    """A tensor in the input's layout -> (B, C, *spatial) (C = 1 without a channel axis)."""
    if not layout.has_channels:
        return t.unsqueeze(1)
    order = ("b", "c", *layout.spatial)
    return t.permute(*(layout.names.index(n) for n in order))
