"""Ablation-CAM: channel weights from the score drop when each channel of the layer is zeroed,
batched over (sample, channel) rows through the engine's score function."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .._progress import progress_bar
from .._validation import check_bool, check_float
from ..engine import OutputLike, ScoreFunction
from ..engine._hooks import own_thread
from ..errors import LayerError
from ..layout import LayoutLike
from ._cam_base import LayerExplainer, LayerLike, _Reading, _safe_div

__all__ = ["AblationCAM"]


class AblationCAM(LayerExplainer):
    """Ablation-CAM: each channel's weight is the relative score drop when it is ablated.

    For every channel ``k`` of the layer, the model is run on the sample with the layer's
    output channel ``k`` replaced by ``value`` (0 in the paper), giving the score ``s_k``; with
    ``s`` the score of the sample itself, the weights are ``w_k = (s - s_k) / s`` (0 where
    ``s = 0``) and ``cam = ReLU(sum_k w_k A_k)``. The N x K ablated rows go through the score
    function in chunks of ``batch_size`` rows (one forward pass per chunk, without gradients),
    each row's channel replaced by a forward hook that exists only during the call.

    Costs one pass over the batch plus N x K rows, K being the layer's channel count.

    Parameters
    ----------
    model, layer, relu, upsample, final_activation, eigen_smooth, aug_smooth, scale_layers, batch_size, layout, output
        As for :class:`~salience.LayerExplainer`. The layer must return
        (B, K, *spatial) (a convolution, a normalisation, an activation): token layers
        (``reshape``) are refused.
    value : float, default 0.0
        What an ablated channel is set to.
    relative : bool, default True
        Divide the drop by the score, as the paper does (its sign then depends on the score's);
        False keeps the raw drop ``s - s_k``.
    progress : bool, default True
        Show a tqdm progress bar over the ablated rows (if tqdm is installed).

    Notes
    -----
    pytorch-grad-cam's ``AblationCAM`` sets the channel to 0 only when the smallest activation
    of the sample at the layer is 0 (after a ReLU), and otherwise to that minimum minus 1e7; it
    computes in float32. Here the value is ``value`` whatever the activations; on a layer whose
    smallest activation is 0 (a ReLU output) the two agree. Its ``ratio_channels_to_ablate``
    (ablating only some channels) is not offered.

    References
    ----------
    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020.
    """

    uses_gradients = False

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        relu: bool = True,
        upsample: bool = True,
        final_activation: str = "warn",
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        scale_layers: bool = False,
        value: float = 0.0,
        relative: bool = True,
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
            reshape=None,
            final_activation=final_activation,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
            scale_layers=scale_layers,
            batch_size=batch_size,
            layout=layout,
            output=output,
        )
        self.value = check_float(value, "value")
        self.relative = check_bool(relative, "relative")
        self.progress = check_bool(progress, "progress")

    def _layer_map(
        self, x: torch.Tensor, score: ScoreFunction, module: nn.Module, read: _Reading
    ) -> tuple[torch.Tensor, torch.Tensor]:
        values, a, _ = score.layer_gradients(module, grad=False)
        a = read(a)
        b, k = a.shape[:2]
        # the channels of the rows of the chunk being run, set just before its model call
        current: dict[str, torch.Tensor] = {}
        bar = progress_bar(b * k, f"{self.name} channels", self.progress)

        def rows(start: int, stop: int) -> torch.Tensor:
            r = torch.arange(start, stop, device=x.device)
            current["channels"] = r % k
            bar.update(stop - start)
            return x[r // k]

        def ablate(_mod: nn.Module, _inp: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor) or out.ndim != a.ndim or out.shape[1] != k:
                raise LayerError(
                    f"{self.name}: the target layer must return one tensor (B, {k}, ...) per call to "
                    f"ablate its channels; it returned {type(out).__name__} "
                    f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}. Pick a "
                    "convolutional layer (salience.layers(model, x) lists them)."
                )
            # a new tensor (never written in place: the output may be shared, e.g. by a residual
            # branch), made in one pass: channel `channels[r]` of row r replaced by `value`
            hit = current["channels"].to(out.device)[:, None] == torch.arange(k, device=out.device)
            shape = (*hit.shape, *([1] * (out.ndim - 2)))
            return torch.where(hit.reshape(shape), out.new_tensor(self.value), out)

        @contextmanager
        def ablating(_model: Any) -> Iterator[None]:
            handle = module.register_forward_hook(own_thread(ablate))
            try:
                yield
            finally:
                handle.remove()

        with bar:
            ablated = score.under(ablating).values(rows, n=k)  # (B, K)
        base = values[:, None].to(ablated.dtype)
        drop = base - ablated
        w = _safe_div(drop, base.expand_as(drop)) if self.relative else drop
        w = w.reshape(b, k, *([1] * (a.ndim - 2))).to(a.dtype)
        return values, self._channels(w * a)
