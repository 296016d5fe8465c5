"""The base of the CAM family: one layer's (or several layers') map, upsampled to the input.

:class:`LayerExplainer` captures the target layer's activations ``A`` (B, K, *a) and the
score's gradients ``G`` with respect to them in one batched backward pass (through
``score.layer_gradients``), then each method combines them in a few lines. Everything is
written over "the axes after the channel axis", never per rank. The options shared by every
CAM live here: several target layers averaged, ``eigen_smooth`` (the first principal
component of the per-channel terms instead of their sum) and ``aug_smooth`` (test-time
augmentation by flips and multiplications).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_bool, check_option
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..engine.layers import TokenProbe, makes_tokens, target_layer, token_layer_error, token_module
from ..engine.tokens import PATCH_NAMES, TokenGrid, find_patch_embedding, infer_token_grid, prefix_tokens
from ..errors import FinalActivationWarning, LayerError, ParameterError, ShapeError, warn
from ..layout import Layout, LayoutLike

__all__ = ["LayerExplainer", "LayerLike", "Reshape", "first_component", "AUGMENTATIONS"]

LayerLike = None | str | nn.Module | Sequence[str | nn.Module]
Reshape = None | str | Callable[[torch.Tensor], torch.Tensor]

_INTERPOLATION = ("linear", "bilinear", "trilinear")  # by number of spatial axes

#: the test-time augmentations of ``aug_smooth``, as pytorch-grad-cam's default ttach chain:
#: (flip the "w" axis, factor), in its order
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (1.0, 0.9, 1.1)
)


class LayerExplainer(Explainer):
    """Base of the CAM family: maps of one layer (or the mean of several), upsampled to the input.

    Subclasses implement ``_combine(a, g) -> (B, *a)`` from the activations ``a`` and gradients
    ``g`` of shape (B, K, *a) (or override ``_layer_map`` when they need model calls of their
    own, as Score-CAM does). A method whose map is a sum of per-channel terms reduces them with
    ``self._channels(terms)``, which is where ``eigen_smooth`` acts.

    Parameters
    ----------
    model : nn.Module
        Never modified; hooks exist only during a call.
    layer : str, nn.Module or a list of them, optional
        The target layer, as a dotted name (``"features.28"``, ``"layer4"``) or the module. None
        picks the last layer whose output is spatial like the input (found by a dry run on one
        sample; see :func:`salience.layers`). The layer used is recorded in ``Attribution.layer``.
        A list or tuple of layers gives the mean of their maps, each computed as for one layer
        (its own pass over the batch, ReLU when ``relu=True``, upsampled to the input), as
        pytorch-grad-cam's ``target_layers=[...]`` does; ``Attribution.layer`` then joins their
        names with ``", "``, ``info["layers"]`` lists them. With ``upsample=False`` the layers
        must have maps of one shape.
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
    eigen_smooth : bool, default False
        Replace the sum over channels of the per-channel terms (``w_k A_k``, or ``G_k A_k`` for
        HiResCAM and LayerCAM's ``ReLU(G_k) A_k``) by their first principal component (see
        :func:`first_component`, sign convention included), as pytorch-grad-cam's
        ``eigen_smooth=True``.
    aug_smooth : bool, default False
        Test-time augmentation, as pytorch-grad-cam's ``aug_smooth=True``: the map is computed
        for the input flipped or not along the ``"w"`` axis and multiplied by 1, 0.9 or 1.1
        (:data:`AUGMENTATIONS`, 6 inputs per sample in one batched pass, the target bound at
        ``x``), each map flipped back, and the 6 maps averaged (raw, after ReLU when
        ``relu=True``). ``info["augmented"]`` holds the 6 maps (N, 6, ...). Needs a ``"w"`` axis
        (images ``"b c h w"``, videos ``"b c t h w"``); refused for signals, for which time
        reversal does not preserve the label.
    scale_layers : bool, default False
        With several layers, min-max scale each layer's upsampled map to [0, 1] per sample
        (0 for a constant map) before the mean, as pytorch-grad-cam does; False averages the
        raw maps (so layers with larger values weigh more).
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
    #: whether ``eigen_smooth`` means something for the method (not for the Eigen-CAMs)
    eigen_smoothable: ClassVar[bool] = True

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
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        one = (str, nn.Module)
        several = isinstance(layer, (list, tuple))
        if not (layer is None or isinstance(layer, one) or several):
            raise ParameterError(
                f"The 'layer' parameter of {self.name} must be None, a dotted module name, an "
                f"nn.Module or a list of them. Got {type(layer).__name__} instead."
            )
        if several and (not layer or not all(isinstance(item, one) for item in layer)):  # type: ignore[union-attr]
            raise ParameterError(
                f"The 'layer' parameter of {self.name}, given as a list, must hold at least one "
                f"layer, each a dotted module name or an nn.Module. Got {layer!r} instead."
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
        self.layer = list(layer) if several else layer  # type: ignore[arg-type]
        self.relu = check_bool(relu, "relu")
        self.upsample = check_bool(upsample, "upsample")
        self.reshape = reshape
        self.final_activation = check_option(
            final_activation, "final_activation", options=("warn", "keep", "strip")
        )
        self.eigen_smooth = check_bool(eigen_smooth, "eigen_smooth")
        if self.eigen_smooth and not self.eigen_smoothable:
            raise ParameterError(
                f"The 'eigen_smooth' parameter of {self.name} must be False: its map is already the "
                "first principal component of the layer's terms. Got True instead."
            )
        self.aug_smooth = check_bool(aug_smooth, "aug_smooth")
        self.scale_layers = check_bool(scale_layers, "scale_layers")

    def __repr__(self) -> str:
        def shown(item: Any) -> Any:
            return item if not isinstance(item, nn.Module) else type(item).__name__

        layer = [shown(i) for i in self.layer] if isinstance(self.layer, list) else shown(self.layer)
        return f"{self.name}(layer={layer!r}, relu={self.relu}, upsample={self.upsample})"

    # ------------------------------------------------------------------ template
    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        layout = score.layout
        if not layout.spatial:
            raise ShapeError(f"{self.name} needs an input with spatial axes; got layout {layout}.")
        sizes = tuple(x.shape[i] for i in layout.spatial_axes)
        flip = self._flip_axis(layout) if self.aug_smooth else None
        if flip is not None:
            x = _augment(x, flip)
            score = score.repeat(x, len(AUGMENTATIONS))
        layers: list[Any] = self.layer if isinstance(self.layer, list) else [self.layer]
        maps, names, shapes, grids = [], [], [], []
        values = torch.empty(0)
        for layer in layers:
            name, values, cam, shape, grid = self._one_layer(x, score, layer, sizes)
            maps.append(cam)
            names.append(name)
            shapes.append(shape)
            grids.append(grid)
        cam = maps[0] if len(maps) == 1 else self._mean_of_layers(maps, names)
        info: dict[str, Any] = {
            "layer_shape": shapes[0] if len(shapes) == 1 else tuple(shapes),
            "relu": self.relu,
            "upsampled": self.upsample,
            **({} if grids[0] is None else {"tokens": grids[0]}),
        }
        if len(names) > 1:
            info["layers"] = tuple(names)
        cam = _to_layout(cam, layout)
        if flip is not None:
            k = len(AUGMENTATIONS)
            cam = cam.reshape(-1, k, *cam.shape[1:])
            back = [cam[:, i].flip(flip) if f else cam[:, i] for i, (f, _) in enumerate(AUGMENTATIONS)]
            info["augmented"] = torch.stack(back, 1)
            cam = info["augmented"].mean(1)
            values = values[::k]  # the identity augmentation: the scores at x
        return Parts(cam, layout=layout, layer=", ".join(names), scores=values, info=info)

    def _one_layer(
        self, x: torch.Tensor, score: ScoreFunction, layer: None | str | nn.Module, sizes: tuple[int, ...]
    ) -> tuple[str, torch.Tensor, torch.Tensor, tuple[int, ...], TokenGrid | None]:
        """One layer's scores (B,), map (B, 1 or C, *sizes or *a) after ReLU and upsampling,
        layer-resolution shape and token grid."""
        auto = self.reshape == "auto"
        name, module, probe = target_layer(score, layer, sizes, tokens=self.reshape is not None)
        token: nn.Module | None = None
        if auto and not isinstance(module, nn.modules.conv._ConvNd):
            token = token_module(score.model, name)  # else: does it pass tokens on?
            if layer is not None:
                probe = None if token is not None else TokenProbe(module, x.ndim)
        layout = score.layout
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
                    f"{self.name} upsamples maps with 1 to 3 spatial axes; layout {layout} has "
                    f"{len(sizes)}. Pass upsample=False."
                )
            cam = F.interpolate(cam, size=sizes, mode=_INTERPOLATION[len(sizes) - 1], align_corners=False)
        return name, values, cam, layer_shape, read.grid

    def _mean_of_layers(self, maps: list[torch.Tensor], names: list[str]) -> torch.Tensor:
        """The mean of several layers' maps (each min-max scaled first with ``scale_layers``)."""
        shapes = {tuple(m.shape) for m in maps}
        if len(shapes) > 1:
            found = ", ".join(f"{n!r}: {tuple(m.shape[1:])}" for n, m in zip(names, maps, strict=True))
            raise ShapeError(
                f"{self.name}: the maps of several layers are averaged, so they need one shape; got "
                f"{found}. Pass upsample=True (each map is then interpolated to the input's size)."
            )
        if self.scale_layers:
            maps = [minmax(m) for m in maps]
        return torch.stack(maps).mean(0)

    def _flip_axis(self, layout: Layout) -> int:
        """The axis ``aug_smooth`` flips: the layout's ``"w"``."""
        if "w" not in layout.names:
            raise ParameterError(
                f"The 'aug_smooth' parameter of {self.name} must be False for layout {layout}: test-time "
                "augmentation flips the horizontal axis 'w' (images 'b c h w', videos 'b c t h w'), "
                "as pytorch-grad-cam does, and this input has none; a time-reversed signal is not a "
                "sample of the same class. Got True instead. Average over noise with "
                "SmoothGrad(...) instead."
            )
        return layout.axes("w")[0]

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
        values, a, g = score.layer_gradients(module, grad=self.uses_gradients)
        # g is None for a method without gradients (uses_gradients = False)
        return values, self._combine(read(a), cast(torch.Tensor, None if g is None else read(g)))

    def _combine(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Activations and gradients (B, K, *a) -> map (B, *a) (``g`` is None when the
        method sets ``uses_gradients = False``)."""
        raise NotImplementedError

    def _channels(self, terms: torch.Tensor) -> torch.Tensor:
        """Per-channel terms (B, K, *a) -> map (B, *a): their sum, or with ``eigen_smooth``
        their first principal component."""
        return first_component(terms) if self.eigen_smooth else terms.sum(1)


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
        elif reshape == "auto" and t.ndim == 3 + len(self.sizes) and 1 in t.shape[2:]:
            # a 2-D convolution's map of a signal (braindecode: (B, K, T', 1) or (B, K, 1, T'))
            t = t.squeeze(2 + list(t.shape[2:]).index(1))
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


def minmax(t: torch.Tensor) -> torch.Tensor:
    """Each sample's values scaled to [0, 1] over all its non-batch axes (0 for a constant one)."""
    flat = t.flatten(1)
    lo = flat.amin(1, keepdim=True)
    return _safe_div(flat - lo, (flat.amax(1, keepdim=True) - lo).expand_as(flat)).reshape(t.shape)


def first_component(terms: torch.Tensor) -> torch.Tensor:
    """The projection of each position's channel vector on the first principal component.

    ``terms`` (B, K, *a) holds, for each sample, P = prod(a) points in K dimensions. They are
    centred over the positions, ``M = T - mean(T)`` (P, K), and projected on the first right
    singular vector ``v`` of ``M``: the map is ``M v`` of shape (B, *a) (pytorch-grad-cam's
    ``get_2d_projection``). A singular vector has no sign; this one is chosen so that the
    loadings sum to a non-negative number, ``sum_k v_k >= 0`` (when that sum is 0, the largest
    loading in magnitude is made positive). Equivalently, the map correlates non-negatively with
    the channel sum ``sum_k T_k`` (the plain CAM of the same terms), since
    ``<M v, T 1> = s_1^2 <v, 1>``. A sample with fewer than two positions gets a zero map.

    References
    ----------
    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020.
    """
    b, k = terms.shape[:2]
    points = terms.reshape(b, k, -1).transpose(1, 2)  # (B, P, K)
    centred = points - points.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    v = vh[:, 0, :]  # (B, K)
    sign = torch.sign(v.sum(1))
    largest = v.gather(1, v.abs().argmax(1, keepdim=True)).squeeze(1)
    sign = torch.where(sign == 0, torch.sign(largest), sign)
    projection = (centred @ (v * sign[:, None]).unsqueeze(2)).squeeze(2)  # (B, P)
    return projection.reshape(b, *terms.shape[2:])


def _augment(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x`` (B, *S) -> the augmented inputs (B * 6, *S), row ``6 b + i`` being sample ``b``
    under ``AUGMENTATIONS[i]``."""
    rows = []
    for flip, factor in AUGMENTATIONS:
        r = x.flip(axis) if flip else x
        rows.append(r * factor if factor != 1.0 else r)
    return torch.stack(rows, 1).reshape(-1, *x.shape[1:])
