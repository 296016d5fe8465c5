"""Attention-based explanations of transformers: rollout, Chefer's attribution, VAR's ViT Grad-CAMs.

Every method reads the attention probabilities ``A_l`` (B, H, N, N) of the model's attention
layers (and, for the gradient methods, ``dScore/dA_l``), captured inside the call by
:func:`salience.engine.attention.reduce_attention` (fused kernels included, no lasting change to
the model). The relevance of the tokens is then mapped back to the input through the model's
token grid (:func:`salience.engine.tokens.infer_token_grid`: prefix tokens dropped, 2-D patches
to pixels, 1-D patches to time steps, per-channel tokens to channels), recorded in
``Attribution.info["tokens"]``.

The relevance of a token is a row of an N x N matrix: the row of the CLS token when the model
has one (``query=None``), else the mean over all query rows, or the row ``query`` names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_bool, check_float, check_option
from ..engine import Explainer, OutputLike, Parts, ScoreFunction
from ..engine.attention import AttentionMap, reduce_attention
from ..engine.tokens import TokenGrid, infer_token_grid
from ..errors import LayerError, ParameterError
from ..layout import LayoutLike
from .backward_rules import replace_backward, rewired
from .modified_backprop import _guided

__all__ = ["AttentionRollout", "TransformerAttribution", "AttentionGradCAM", "AttentionGuidedGradCAM"]

_INTERPOLATION = ("linear", "bilinear", "trilinear")


@dataclass(frozen=True)
class _Found:
    """What the captured maps tell about the model: tokens, grid, query row (None: mean over
    rows), the self-attention layers and their heads."""

    n: int
    grid: TokenGrid
    row: int | None
    layers: list[str]
    heads: list[int]


class _AttentionExplainer(Explainer):
    """Shared by the attention methods: capture, token grid, query row, mapping to the input."""

    #: whether the method needs ``dScore/dA`` (one backward per chunk)
    uses_gradients: ClassVar[bool] = False

    def __init__(
        self,
        model: Any,
        *,
        query: int | str | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, batch_size=batch_size, layout=layout, output=output)
        if not (query is None or query == "mean" or (isinstance(query, int) and not isinstance(query, bool))):
            raise ParameterError(
                f"The 'query' parameter of {self.name} must be None (the CLS token when the model "
                f"has one, else the mean over tokens), 'mean' or a token index (int). Got {query!r} instead."
            )
        self.query = query

    def __repr__(self) -> str:
        return f"{self.name}(query={self.query!r})"

    def _inspect(self, x: torch.Tensor, score: ScoreFunction, maps: list[AttentionMap]) -> _Found:
        """What the first chunk's maps tell: the token count, grid, query row and layers."""
        n = maps[-1].tokens
        kept = [m for m in maps if m.attention.shape[-2] == m.attention.shape[-1] == n]
        grid = infer_token_grid(
            (x.shape[0], n, 1),
            tuple(x.shape),
            model=score.model,
            hint=" The attention methods map token relevance back to the input through this grid.",
        )
        if self.query == "mean":
            row = None
        elif isinstance(self.query, int):
            if not -n <= self.query < n:
                raise ParameterError(
                    f"The 'query' parameter of {self.name} must index one of the {n} tokens; "
                    f"got {self.query}."
                )
            row = self.query % n
        elif grid.cls_index is not None:
            row = grid.cls_index
        else:
            # a leading token of unknown kind is read as a CLS token (token 0), as Chefer's code does
            row = 0 if grid.prefix > 0 and "unknown" in grid.prefix_kinds else None
        return _Found(n, grid, row, [m.name for m in kept], [m.heads for m in kept])

    def _run(
        self,
        x: torch.Tensor,
        score: ScoreFunction,
        combine: Callable[[list[AttentionMap], _Found], torch.Tensor],
    ) -> tuple[torch.Tensor, _Found]:
        """``combine`` applied to the self-attention maps of each chunk of samples, concatenated
        (memory bounded by one chunk), and what the maps told (see :meth:`_inspect`)."""
        found: list[_Found] = []

        def reduce(maps: list[AttentionMap]) -> torch.Tensor:
            if not found:
                found.append(self._inspect(x, score, maps))
            f = found[0]
            return combine([m for m in maps if m.attention.shape[-2] == m.attention.shape[-1] == f.n], f)

        out = reduce_attention(score, reduce, gradients=self.uses_gradients)
        return out, found[0]

    def _info(self, found: _Found) -> dict[str, Any]:
        return {
            "layers": found.layers,
            "heads": found.heads,
            "tokens": found.grid,
            "prefix": found.grid.prefix,
            "query": "mean" if found.row is None else found.row,
        }

    def _to_input(self, relevance: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        """Per-token relevance (B, N) -> a map (B, 1 or C, *sizes) over the input."""
        values = grid.to_input(relevance)
        return values.unsqueeze(1) if grid.channels is None else values

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        relevance, found = self._run(x, score, lambda maps, f: self._relevance(maps, f.row))  # (B, N)
        info = self._info(found)
        info["token_relevance"] = relevance[:, found.grid.prefix :].detach()
        return Parts(self._to_input(relevance, found.grid), info=info)

    def _relevance(self, maps: list[AttentionMap], row: int | None) -> torch.Tensor:
        raise NotImplementedError


def _start(a: torch.Tensor, row: int | None) -> torch.Tensor:
    """The row vector that selects the query: e_row, or the mean over rows. Shape (B, 1, N)."""
    b, n = a.shape[0], a.shape[-1]
    if row is None:
        return torch.full((b, 1, n), 1.0 / n, dtype=a.dtype, device=a.device)
    v = torch.zeros((b, 1, n), dtype=a.dtype, device=a.device)
    v[:, 0, row] = 1.0
    return v


class AttentionRollout(_AttentionExplainer):
    """Attention rollout: the attention of the output token to the input tokens, multiplied
    through the layers with the residual connection.

    For each layer ``l`` (in forward order) the heads are fused, ``F_l = mean_h A_l`` (or max,
    min); optionally the lowest ``discard_ratio`` fraction of each sample's N x N entries is set
    to 0 (the CLS token's attention to itself never is); the residual is added,
    ``Â_l = 0.5 F_l + 0.5 I``, and rows are renormalised to sum 1. ``R = Â_L ⋯ Â_1`` and the
    relevance of the patch tokens is the query row of ``R`` (the CLS token's, or the mean over
    rows for a model without one), mapped to the input. Forward passes only (no gradient).

    Parameters
    ----------
    model : nn.Module
        A transformer (attention through ``F.scaled_dot_product_attention``,
        ``nn.MultiheadAttention`` or an explicit softmax; see
        :mod:`salience.engine.attention`). Never modified.
    head_fusion : {"mean", "max", "min"}, default "mean"
    discard_ratio : float in [0, 1), default 0.0
    query : None, "mean" or int, optional
        The row of ``R`` read: None, the CLS token when the model has one (else the mean over
        rows); "mean"; or a token index.
    batch_size, layout, output
        See :class:`~salience.engine.Explainer` (``output`` picks the tensor to explain in a
        structured output, e.g. a Hugging Face ``ModelOutput``'s logits by default).

    Returns
    -------
    Attribution of shape (B, 1, *sizes) (B, C, *sizes for per-channel tokens); every position
    gets its patch's relevance (the mean over patches that cover it). ``info`` records the
    layers, heads, prefix tokens, the token grid (``"tokens"``) and the per-token relevance
    ``"token_relevance"`` (B, n_patches). The target does not change the map (rollout uses no
    gradient); the scores are the target's.

    References
    ----------
    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
    """

    def __init__(
        self,
        model: Any,
        *,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
        query: int | str | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, query=query, batch_size=batch_size, layout=layout, output=output)
        self.head_fusion = check_option(head_fusion, "head_fusion", options=("mean", "max", "min"))
        self.discard_ratio = check_float(discard_ratio, "discard_ratio", low=0.0, high=1.0, closed="left")

    def __repr__(self) -> str:
        return (
            f"{self.name}(head_fusion={self.head_fusion!r}, discard_ratio={self.discard_ratio}, "
            f"query={self.query!r})"
        )

    def _info(self, found: _Found) -> dict[str, Any]:
        info = super()._info(found)
        info.update(head_fusion=self.head_fusion, discard_ratio=self.discard_ratio)
        return info

    def _fused(self, a: torch.Tensor, row: int | None) -> torch.Tensor:
        if self.head_fusion == "mean":
            f = a.mean(dim=1)
        elif self.head_fusion == "max":
            f = a.amax(dim=1)
        else:
            f = a.amin(dim=1)
        n = f.shape[-1]
        k = int(n * n * self.discard_ratio)
        if k > 0:
            flat = f.reshape(f.shape[0], -1).clone()
            ranked = flat.clone()
            if row is not None:
                ranked[:, row * n + row] = float("inf")  # the CLS token's self-attention is kept
            lowest = ranked.topk(k, dim=-1, largest=False).indices
            f = flat.scatter(-1, lowest, 0.0).reshape_as(f)
        eye = torch.eye(n, dtype=f.dtype, device=f.device)
        f = 0.5 * f + 0.5 * eye
        return f / f.sum(dim=-1, keepdim=True)

    def _relevance(self, maps: list[AttentionMap], row: int | None) -> torch.Tensor:
        # the query row of Â_L ⋯ Â_1, as a row vector times each matrix from the last layer on
        v = _start(maps[-1].attention, row)
        for m in reversed(maps):
            v = v @ self._fused(m.attention, row)
        return v[:, 0]


class TransformerAttribution(_AttentionExplainer):
    """Chefer, Gur & Wolf's generic attention explainability: gradient-weighted attention,
    rolled out with the identity.

    ``R = I``; for each layer in forward order, ``Ā_l = mean_h (∇A_l ⊙ A_l)^+`` (the positive
    part taken per head, then averaged over heads) and ``R ← R + Ā_l R``. The relevance of the
    patch tokens is the query row of ``R`` (the CLS token's, or the mean over rows for a model
    without one), mapped to the input. One forward and one backward pass per chunk of samples.

    Parameters
    ----------
    model, query, batch_size, layout, output
        See :class:`AttentionRollout`.

    Returns
    -------
    Attribution of shape (B, 1, *sizes) (B, C, *sizes for per-channel tokens), non-negative,
    unnormalised; ``info`` as for :class:`AttentionRollout`.

    References
    ----------
    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021.
    """

    uses_gradients = True

    def _relevance(self, maps: list[AttentionMap], row: int | None) -> torch.Tensor:
        # the query row of (I + Ā_L) ⋯ (I + Ā_1), from the last layer on
        v = _start(maps[-1].attention, row)
        for m in reversed(maps):
            g = m.gradient if m.gradient is not None else torch.zeros_like(m.attention)
            weighted = (g * m.attention).clamp(min=0).mean(dim=1)
            v = v + v @ weighted
        return v[:, 0]


class AttentionGradCAM(_AttentionExplainer):
    """Grad-CAM on the attention of the last block (Chefer et al.'s baseline, VAR's ViT Grad-CAM).

    With ``A``, ``G = dScore/dA`` of the last attention layer (B, H, N, N) and ``q`` the query
    row (the CLS token): per head ``w_h = mean_j G[h, q, j]`` over the patch tokens ``j``, the
    map is ``mean_h w_h A[h, q, j]``, clamped at 0 (``relu``) and min-max normalised per sample
    (``normalize``), then interpolated (linear, bilinear or trilinear, ``align_corners=False``)
    from the patch grid to the input's size, as VAR does.

    Parameters
    ----------
    model, query, batch_size, layout, output
        See :class:`AttentionRollout`.
    relu : bool, default True
        Clamp the map at 0 (part of the definition).
    normalize : bool, default True
        Min-max normalise each sample's map to [0, 1] (part of VAR's definition; a constant map
        becomes 0).

    Returns
    -------
    Attribution of shape (B, 1, *sizes) (B, C, *sizes for per-channel tokens); ``info`` records
    the layer, heads, the token grid and ``"token_relevance"`` (B, n_patches), the map before
    interpolation.

    References
    ----------
    Chefer, Gur & Wolf, "Transformer Interpretability Beyond Attention Visualization", CVPR 2021
    (the attention Grad-CAM baseline of their code); Walter et al., "Now you see me!"
    (arXiv 2503.07346), the ViT variant of Grad-CAM.
    """

    uses_gradients = True

    def __init__(
        self,
        model: Any,
        *,
        relu: bool = True,
        normalize: bool = True,
        query: int | str | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(model, query=query, batch_size=batch_size, layout=layout, output=output)
        self.relu = check_bool(relu, "relu")
        self.normalize = check_bool(normalize, "normalize")

    def __repr__(self) -> str:
        return f"{self.name}(relu={self.relu}, normalize={self.normalize}, query={self.query!r})"

    def _patch_map(self, maps: list[AttentionMap], grid: TokenGrid, row: int | None) -> torch.Tensor:
        """The map over the patch tokens, (B, n_patches)."""
        last = maps[-1]
        a = last.attention[..., grid.prefix :]
        g = (last.gradient if last.gradient is not None else torch.zeros_like(last.attention))[
            ..., grid.prefix :
        ]
        if row is None:
            a, g = a.mean(dim=2), g.mean(dim=2)
        else:
            a, g = a[:, :, row], g[:, :, row]  # (B, H, n_patches)
        cam = (a * g.mean(dim=-1, keepdim=True)).mean(dim=1)
        if self.relu:
            cam = cam.clamp(min=0)
        if self.normalize:
            low = cam.amin(dim=-1, keepdim=True)
            span = cam.amax(dim=-1, keepdim=True) - low
            cam = torch.where(span > 0, (cam - low) / torch.where(span > 0, span, 1.0), 0.0)
        return cam

    def _upsample(self, cam: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        """(B, n_patches) on the patch grid -> (B, 1 or C, *sizes), interpolated."""
        b = cam.shape[0]
        lead = 1 if grid.channels is None else grid.channels
        cam = cam.reshape(b, lead, *grid.positions)
        sizes = grid.sizes
        if len(sizes) > len(_INTERPOLATION):  # pragma: no cover - token grids have 1 to 3 axes
            raise LayerError(f"{self.name} interpolates over 1 to 3 spatial axes; got {len(sizes)}.")
        return F.interpolate(cam, size=sizes, mode=_INTERPOLATION[len(sizes) - 1], align_corners=False)

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        cam, found = self._run(x, score, lambda maps, f: self._patch_map(maps, f.grid, f.row))
        info = self._info(found)
        info.update(layers=found.layers[-1:], heads=found.heads[-1:])
        info.update(token_relevance=cam.detach(), relu=self.relu, normalize=self.normalize)
        return Parts(self._upsample(cam, found.grid), layer=found.layers[-1], info=info)


def _guided_gelu(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # VAR's ViT Guided Backprop: the GELU's input gradient, clamped at 0
    approximate = getattr(module, "approximate", "none")

    def rule(g: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            (local,) = torch.autograd.grad(F.gelu(xd, approximate=approximate), xd, g)
        return local.clamp(min=0)

    return replace_backward(x, y, rule)


class _GuidedRule:
    """Pass context: guided backward rules on every ``nn.ReLU`` (Springenberg) and, with
    ``gelu=True``, every ``nn.GELU`` (input gradient clamped at 0, as VAR's ViT hooks do)."""

    def __init__(self, gelu: bool) -> None:
        self.gelu = gelu

    @contextmanager
    def __call__(self, model: Any) -> Iterator[None]:
        plan: dict[nn.Module, Any] = {}
        if isinstance(model, nn.Module):
            for m in model.modules():
                if isinstance(m, nn.ReLU):
                    plan[m] = _guided
                elif self.gelu and isinstance(m, nn.GELU):
                    plan[m] = _guided_gelu
        with rewired(model, plan):
            yield


class AttentionGuidedGradCAM(AttentionGradCAM):
    """VAR's ViT Guided Grad-CAM: guided backpropagation times the upsampled :class:`AttentionGradCAM`.

    The guided gradient passes only positive gradients back through every ``nn.ReLU``
    (Springenberg et al.) and, with ``guided_gelu=True``, clamps the input gradient of every
    ``nn.GELU`` at 0 (VAR's hooks on the ViT's MLP activations); every input channel is then
    multiplied by the attention Grad-CAM map interpolated to the input. Two passes per chunk:
    the attention Grad-CAM (forward and backward) and the guided gradient.

    Parameters
    ----------
    model, relu, normalize, query, batch_size, layout, output
        See :class:`AttentionGradCAM`.
    guided_gelu : bool, default True
        Apply the guided rule to GELU modules too (VAR); False leaves GELUs with their plain
        gradient, as :class:`~salience.GuidedBackprop` does.

    Returns
    -------
    Attribution of ``x.shape`` (signed); ``info["cam"]`` holds the interpolated map.

    References
    ----------
    Walter et al., "Now you see me!" (arXiv 2503.07346); Selvaraju et al., ICCV 2017.
    """

    def __init__(
        self,
        model: Any,
        *,
        relu: bool = True,
        normalize: bool = True,
        guided_gelu: bool = True,
        query: int | str | None = None,
        batch_size: int | None = None,
        layout: LayoutLike | None = None,
        output: OutputLike = None,
    ) -> None:
        super().__init__(
            model,
            relu=relu,
            normalize=normalize,
            query=query,
            batch_size=batch_size,
            layout=layout,
            output=output,
        )
        self.guided_gelu = check_bool(guided_gelu, "guided_gelu")

    def attribute(self, x: torch.Tensor, score: ScoreFunction) -> Parts:
        parts = super().attribute(x, score)
        guided = score.under(_GuidedRule(self.guided_gelu)).gradient_at_input()
        parts.info["cam"] = parts.values
        parts.info["guided_gelu"] = self.guided_gelu
        return Parts(guided * parts.values, layer=parts.layer, info=parts.info)
