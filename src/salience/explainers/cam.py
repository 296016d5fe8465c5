"""The CAM family: class activation maps of a layer, for 1-, 2- and 3-D networks.

One base, :class:`LayerExplainer`, captures the target layer's activations ``A`` (B, K, *a) and
the score's gradients ``G`` with respect to them in one batched backward pass (through
``score.layer_gradients``), then each method combines them in a few lines. Everything is
written over "the axes after the channel axis", never per rank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from .._progress import progress_bar
from .._validation import check_bool, check_option
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..engine.layers import TokenProbe, makes_tokens, target_layer, token_layer_error, token_module
from ..engine.tokens import (
    PATCH_NAMES,
    TokenGrid,
    find_patch_embedding,
    infer_token_grid,
    prefix_tokens,
    token_grid,  # noqa: F401  (the shape-only reading of salience 0.2, imported from here)
)
from ..errors import FinalActivationWarning, LayerError, ParameterError, ShapeError, warn
from ..layout import Layout, LayoutLike

__all__ = [
    "LayerExplainer",
    "GradCAM",
    "HiResCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "LayerCAM",
    "ScoreCAM",
]

LayerLike = None | str | nn.Module
Reshape = None | str | Callable[[torch.Tensor], torch.Tensor]

_INTERPOLATION = ("linear", "bilinear", "trilinear")  # by number of spatial axes


class LayerExplainer(Explainer):
    """Base of the CAM family: maps of one layer, upsampled to the input.

    Subclasses implement ``_combine(a, g) -> (B, *a)`` from the activations ``a`` and gradients
    ``g`` of shape (B, K, *a) (or override ``_layer_map`` when they need model calls of their
    own, as Score-CAM does).

    Parameters
    ----------
    model : nn.Module
        Never modified; hooks exist only during a call.
    layer : str or nn.Module, optional
        The target layer, as a dotted name (``"features.28"``, ``"layer4"``) or the module. None
        picks the last layer whose output is spatial like the input (found by a dry run on one
        sample; see :func:`salience.layers`). The layer used is recorded in ``Attribution.layer``.
    relu : bool, default True
        Keep only the positive evidence, as the papers do; ``relu=False`` returns the signed map
        (SignalGrad-CAM's ``avoid_relu``).
    upsample : bool, default True
        Interpolate the map to the input's spatial size (linear, bilinear or trilinear for 1, 2
        or 3 spatial axes, ``align_corners=False``); False leaves it at the layer's resolution.
    reshape : "auto", "tokens", None or callable, default "auto"
        How a layer output that is not (B, K, *spatial) is read, e.g. transformer tokens
        (B, N, D). ``"auto"``: a convolutional or other spatial layer as it is (exactly as
        ``None``); a token layer of a model that identifies itself as a patch transformer (a
        patch-embedding module named as timm, torchvision and Hugging Face name it, or
        CLS/distillation/register token parameters, see :mod:`salience.engine.tokens`) as its
        patch grid, the prefix tokens dropped; any other token layer is refused, as with
        ``None``. ``"tokens"``: the patch grid, also from a convolution with kernel == stride or
        from the shapes alone. A grid of per-channel tokens (C, T') gives maps of shape
        (N, C, T). The grid used is recorded in ``Attribution.info["tokens"]`` (a
        :class:`~salience.engine.tokens.TokenGrid`). A callable maps the layer output to
        (B, K, *spatial) (it is applied to activations and gradients alike). ``"tokens"`` and
        a callable need an explicit ``layer`` (the last blocks of a CLS-token classifier only
        feed the CLS token: pick e.g. ``blocks[-1].norm1``).
    final_activation : {"warn", "keep", "strip"}, default "warn"
        What to do when the model ends in a Softmax/LogSoftmax/Sigmoid module. ``"warn"`` explains
        the output as it is and says so; ``"keep"`` does the same silently; ``"strip"`` explains
        the pre-activation logit (the final module returns its input during the call; the model
        is not modified). With ``"strip"``, ``target=LogProbability(k)`` explains the
        log-probability (SignalGrad-CAM's ``softmax_final=True``).
    batch_size : int, optional
        Maximum samples per forward/backward pass.
    layout : str or Layout, optional
        Axis names of the input.
    output : str, int or callable, optional
        The tensor to explain when the model returns a tuple, a dict or a Hugging Face
        ``ModelOutput`` (a key, an index or a callable); by default a ``ModelOutput``'s logits.
    """

    #: does the method use gradients (False for Score-CAM)
    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: Any,
        *,
        layer: LayerLike = None,
        relu: bool = True,
        upsample: bool = True,
        reshape: Reshape = "auto",
        final_activation: str = "warn",
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        if not (layer is None or isinstance(layer, (str, nn.Module))):
            raise ParameterError(
                f"The 'layer' parameter of {self.name} must be None, a dotted module name or an "
                f"nn.Module. Got {type(layer).__name__} instead."
            )
        if not (reshape is None or reshape in ("auto", "tokens") or callable(reshape)):
            raise ParameterError(
                f"The 'reshape' parameter of {self.name} must be 'auto', 'tokens', None or a callable "
                f"mapping the layer output to (B, K, *spatial). Got {reshape!r} instead."
            )
        if reshape not in (None, "auto") and layer is None:
            raise ParameterError(
                f"{self.name}: reshape=... needs an explicit layer=...: in a CLS-token transformer the "
                "last modules only feed the CLS token, so their token maps have zero gradient. "
                "Pick the output of the last block's attention input, e.g. 'blocks.11.norm1'."
            )
        self.layer = layer
        self.relu = check_bool(relu, "relu")
        self.upsample = check_bool(upsample, "upsample")
        self.reshape = reshape
        self.final_activation = check_option(
            final_activation, "final_activation", options=("warn", "keep", "strip")
        )

    def __repr__(self) -> str:
        layer = self.layer if not isinstance(self.layer, nn.Module) else type(self.layer).__name__
        return f"{self.name}(layer={layer!r}, relu={self.relu}, upsample={self.upsample})"

    # ------------------------------------------------------------------ template
    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        owner = self.name
        layout = score.layout
        spatial = layout.spatial
        if not spatial:
            raise ShapeError(f"{owner} needs an input with spatial axes; got layout {layout}.")
        sizes = tuple(x.shape[i] for i in layout.spatial_axes)
        auto = self.reshape == "auto"
        name, module, probe = target_layer(score, self.layer, sizes, tokens=self.reshape is not None)
        token: nn.Module | None = None
        if auto and not isinstance(module, nn.modules.conv._ConvNd):
            token = token_module(score.model, name)  # else: does it pass tokens on?
            if self.layer is not None:
                probe = None if token is not None else TokenProbe(module, x.ndim)
        channels = x.shape[layout.axes("c")[0]] if layout.has_channels else 1
        read = _Reading(
            self, name, score.model, (x.shape[0], channels, *sizes), token, probe if auto else None
        )
        if probe is not None:
            score = score.under(probe)
        values, cam = self._layer_map(x, score, module, read)
        if probe is not None and not auto:
            probe.check(name)
        layer_shape = tuple(cam.shape[1:])
        if self.relu:
            cam = cam.clamp_min(0)
        cam = cam if read.per_channel else cam.unsqueeze(1)  # (B, 1 or C, *a)
        if self.upsample and tuple(cam.shape[2:]) != sizes:
            if len(sizes) > len(_INTERPOLATION):
                raise ShapeError(
                    f"{owner} upsamples maps with 1 to 3 spatial axes; layout {layout} has "
                    f"{len(sizes)}. Pass upsample=False."
                )
            cam = F.interpolate(cam, size=sizes, mode=_INTERPOLATION[len(sizes) - 1], align_corners=False)
        return Parts(
            _to_layout(cam, layout),
            layout=layout,
            layer=name,
            scores=values,
            info={
                "layer_shape": layer_shape,
                "relu": self.relu,
                "upsampled": self.upsample,
                **({} if read.grid is None else {"tokens": read.grid}),
            },
        )

    def explained_score(self, score: ScoreFunction) -> ScoreFunction:
        """Warn about, keep or strip a final Softmax/Sigmoid (``final_activation``), recognised
        at call time as the module whose output the model returns."""
        if self.final_activation == "keep":
            return score
        if self.final_activation == "strip":
            return score.final_activation(strip=True)
        name, target = self.name, score.target

        def report(module_name: str, module: nn.Module) -> None:
            kind = type(module).__name__
            what = "log-probability" if kind == "LogSoftmax" else "probability"
            warn(
                f"{name}: the model ends in {kind} (module {module_name!r}), so the {what} output "
                f"by the model is explained (target {target!r}). Pass final_activation="
                "'strip' to explain the pre-activation logit (with target=LogProbability(k) for "
                "the log-probability), or final_activation='keep' to silence this warning.",
                FinalActivationWarning,
            )

        return score.final_activation(strip=False, found=report)

    def _layer_map(
        self, x: torch.Tensor, score: ScoreFunction, module: nn.Module, read: _Reading
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B,) and the layer-resolution map (B, *a) (or (B, C, *a) for per-channel tokens)."""
        values, a, g = score.layer_gradients(module)  # grad=True: g is a tensor
        return values, self._combine(read(a), read(cast(torch.Tensor, g)))

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Activations and gradients (B, K, *a) -> map (B, *a)."""
        raise NotImplementedError


class _Reading:
    """How one call reads the target layer's output (B, *A) as (B, K, *a): as it is, through
    the user's ``reshape`` callable, or as a token grid (found once, kept in ``grid``)."""

    def __init__(
        self,
        owner: LayerExplainer,
        name: str,
        model: Any,
        input_shape: tuple[int, ...],
        token: nn.Module | None,
        probe: TokenProbe | None,
    ) -> None:
        self.owner, self.name, self.model, self.input_shape = owner, name, model, input_shape
        self.sizes = input_shape[2:]
        self.token, self.probe = token, probe  # "auto": a token layer, or one passing tokens on
        self.grid: TokenGrid | None = None

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        reshape, owner = self.owner.reshape, self.owner.name
        if callable(reshape):
            t = reshape(t)
            if not isinstance(t, torch.Tensor):
                raise LayerError(f"{owner}: reshape must return a tensor; got {type(t).__name__}.")
        elif reshape == "tokens" or (reshape == "auto" and self._is_tokens(t)):
            t = self._tokens(t, reshape == "auto")
        if t.ndim != 2 + len(self.sizes) + self.per_channel:
            raise LayerError(
                f"{owner}: the target layer's output has shape {tuple(t.shape)}, but a map over the "
                f"input's {len(self.sizes)} spatial axes needs (B, K, {', '.join(['...'] * len(self.sizes))}). "
                "Pick a convolutional layer (salience.layers(model, x) lists them) or pass "
                "reshape=... (e.g. 'tokens' for transformer outputs)."
            )
        return t

    @property
    def per_channel(self) -> bool:
        """Whether the layer is read as per-channel tokens, a grid (C, *a) over the input's channels."""
        return self.grid is not None and self.grid.channels is not None

    def _is_tokens(self, t: torch.Tensor) -> bool:
        """A token module's output, one passing a token sequence on (the probe saw it made), or
        a 3-axis output for an input with several spatial axes (which no plain reading fits)."""
        if self.token is not None:
            # a LayerNorm over the channels of a channels-first map (timm's LayerNorm2d) is not one
            return makes_tokens(self.token, tuple(t.shape), t.ndim)
        if self.probe is not None and any(self.probe.hits):
            return True
        return self.probe is not None and t.ndim == 3 and len(self.sizes) > 1

    def _tokens(self, t: torch.Tensor, auto: bool) -> torch.Tensor:
        """Tokens (B, N, D) -> (B, D, *grid), the grid inferred on the first call."""
        if self.grid is None:
            nd = len(self.sizes)
            if (
                auto
                and prefix_tokens(self.model) is None
                and not find_patch_embedding(self.model, nd, names_only=True)
            ):
                raise token_layer_error(
                    self.name,
                    f"returns {tuple(t.shape)} for an input of shape {self.input_shape}; the model names "
                    f"no patch embedding ({', '.join(PATCH_NAMES)}) and declares no prefix tokens, so "
                    "reshape='auto' does not read it as a patch grid. Its output",
                )
            hint = (
                " Pass reshape=callable mapping the layer output to (B, K, *spatial), e.g. "
                "for a CLS token and a 14x14 grid, "
                "lambda a: a[:, 1:].transpose(1, 2).reshape(a.shape[0], -1, 14, 14)."
            )
            self.grid = infer_token_grid(t.shape, self.input_shape, model=self.model, hint=hint)
        return self.grid.to_grid(t)


def _positions(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, t.ndim))


def _to_layout(cam: torch.Tensor, layout: Layout) -> torch.Tensor:
    """(B, 1, *spatial) in the order b, c, spatial... -> the input layout's axis order."""
    if not layout.has_channels:
        return cam.squeeze(1)
    canonical = ("b", "c", *layout.spatial)
    if canonical == layout.names:
        return cam
    return cam.permute(*(canonical.index(n) for n in layout.names))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den != 0, else 0 (no epsilon that would bias small values)."""
    nz = den != 0
    return torch.where(nz, num / torch.where(nz, den, torch.ones_like(den)), torch.zeros_like(num))


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
        return (w * a).sum(1)


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
        return (g * a).sum(1)


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
        return (w * a).sum(1)


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
        return (w * a).sum(1)


class LayerCAM(LayerExplainer):
    """LayerCAM: positive gradients as position-wise weights, ``cam = sum_k ReLU(G_k) * A_k``.

    References
    ----------
    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE TIP 2021.
    """

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (g.clamp_min(0) * a).sum(1)


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
    model, layer, relu, upsample, reshape, final_activation, batch_size, layout
        As for :class:`LayerExplainer`.
    progress : bool, default True
        Show a tqdm progress bar over the masked rows (if tqdm is installed).

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
        return values, (w * a).sum(1)
