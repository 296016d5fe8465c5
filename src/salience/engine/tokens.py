"""Token grids: where the tokens of a transformer layer come from in the input, and back.

A vision or patch-based signal transformer turns its input into a sequence of tokens
``(B, N, D)``: a few *prefix* tokens (CLS, DeiT's distillation token, register tokens) followed
by one token per patch, in row-major order over the patch grid. :func:`infer_token_grid` finds
that layout for a token layer's output, from the model when one is given (its prefix-token
attributes and its patch-embedding convolution) or from the shapes alone, and returns a
:class:`TokenGrid`. The grid then reshapes tokens into feature maps (:meth:`TokenGrid.to_grid`,
what a CAM on a token layer needs) and maps per-token values back to the input's positions
(:meth:`TokenGrid.to_input`, what attention methods need): 2-D patches to pixels, 1-D patches
to time steps, per-channel tokens to channels x time. The grid is a small frozen dataclass,
recorded in ``Attribution.info["tokens"]`` by the methods that use it.

Shapes follow the library's channels-first convention: the input is ``(B, C, *sizes)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LayerError, ParameterError, current_caller
from .layers import unwrap

__all__ = ["TokenGrid", "infer_token_grid", "find_patch_embedding", "prefix_tokens"]

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
#: module names (last dotted component) that patch-embedding modules have in timm
#: (``patch_embed``), torchvision (``conv_proj``) and Hugging Face (``patch_embeddings``)
PATCH_NAMES = ("patch_embed", "conv_proj", "patch_embeddings", "patch_embedding")
# parameter names (last dotted component) of prefix tokens, by kind
_PREFIX_PARAMS = {
    "cls": ("cls_token", "class_token"),
    "dist": ("dist_token", "distillation_token"),
    "register": ("reg_token", "register_tokens", "reg_tokens"),
}


@dataclass(frozen=True)
class TokenGrid:
    """How a token sequence ``(B, N, D)`` lies over the input ``(B, C, *sizes)``.

    Attributes
    ----------
    prefix : int
        Leading tokens that are not patches (CLS, distillation, registers): ``N = prefix +
        prod(grid)``.
    grid : tuple of int
        The grid of patch tokens, in token order (row-major): ``(H', W')`` for images,
        ``(T',)`` for 1-D signals; per-channel tokens add the channel axis first,
        ``(C, T')`` (channel-major: channel 0's patches, then channel 1's, ...).
    sizes : tuple of int
        The input's spatial sizes (``(H, W)``, ``(T,)``).
    kernel, stride, padding, dilation : tuple of int
        The patch geometry per spatial axis (a patch-embedding convolution's), used to map
        patches back to positions.
    channels : int or None
        The number of channels for per-channel tokens (``grid[0]``), else None.
    prefix_kinds : tuple of str
        One name per prefix token, in order: ``"cls"``, ``"dist"``, ``"register"``, or
        ``"unknown"`` when only the count is known.
    source : str
        How the grid was found (the patch-embedding module, the model attribute giving the
        prefix count, or "shapes").
    """

    prefix: int
    grid: tuple[int, ...]
    sizes: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    channels: int | None = None
    prefix_kinds: tuple[str, ...] = ()
    source: str = ""

    @property
    def n_patches(self) -> int:
        """The number of patch tokens, ``prod(grid)``."""
        return math.prod(self.grid)

    @property
    def n_tokens(self) -> int:
        """The length of the token sequence, ``prefix + n_patches``."""
        return self.prefix + self.n_patches

    @property
    def positions(self) -> tuple[int, ...]:
        """The grid over the input's spatial axes (``grid`` without the channel axis)."""
        return self.grid[1:] if self.channels is not None else self.grid

    @property
    def cls_index(self) -> int | None:
        """The index of the CLS token in the sequence, or None when there is none (or the
        prefix tokens' kinds are unknown)."""
        return self.prefix_kinds.index("cls") if "cls" in self.prefix_kinds else None

    def patch_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The patch tokens of ``tokens`` (B, N, D): ``tokens[:, prefix:]``, (B, n_patches, D)."""
        self._check_tokens(tokens, "tokens", axis=1)
        return tokens[:, self.prefix :]

    def to_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) -> feature maps (B, D, *grid), prefix tokens dropped.

        The form a class activation map reads: features as channels, the patch grid as
        positions.
        """
        body = self.patch_tokens(tokens)
        return body.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *self.grid)

    def to_input(self, values: torch.Tensor) -> torch.Tensor:
        """Per-token values (..., N) or (..., n_patches) -> values over the input's positions.

        Each position gets the mean of the patch tokens whose patch covers it: with non-
        overlapping patches (kernel == stride) exactly its patch's value, with overlapping
        ones (stride < kernel) the mean of the overlapping patches; positions that no patch
        covers (padding aside, the remainder a strided convolution drops) get 0. Prefix tokens
        are dropped when the last axis has length ``n_tokens``.

        Parameters
        ----------
        values : Tensor of shape (..., N) or (..., n_patches)
            E.g. (B, N) relevance per token or (B, K, n_patches) per class or head.

        Returns
        -------
        Tensor of shape (..., *sizes), or (..., C, *sizes) for per-channel tokens
            Same dtype and device as ``values``.
        """
        if values.ndim == 0 or values.shape[-1] not in (self.n_tokens, self.n_patches):
            raise LayerError(
                f"{current_caller()}: TokenGrid.to_input expects values whose last axis is the "
                f"{self.n_tokens} tokens (or the {self.n_patches} patch tokens) of {self.describe()}; "
                f"got shape {tuple(values.shape)}."
            )
        lead = values.shape[:-1]
        body = values[..., values.shape[-1] - self.n_patches :]
        if not body.is_floating_point():
            body = body.to(torch.get_default_dtype())
        grid = body.reshape(-1, *self.positions)  # channels (if any) folded into the rows
        out = _unpatch(grid, self.sizes, self.kernel, self.stride, self.padding, self.dilation)
        channels = () if self.channels is None else (self.channels,)
        return out.reshape(*lead, *channels, *self.sizes)

    def describe(self) -> str:
        """One line for messages: prefix, grid, patch geometry and source."""
        what = f"{self.prefix} prefix token(s) + a {'x'.join(map(str, self.grid))} patch grid"
        if self.channels is not None:
            what += f" ({self.channels} channels x {'x'.join(map(str, self.positions))} patches)"
        return (
            f"{what} over input sizes {self.sizes} (kernel {self.kernel}, stride {self.stride}, "
            f"padding {self.padding}; from {self.source})"
        )

    def _check_tokens(self, tokens: torch.Tensor, name: str, axis: int) -> None:
        if tokens.ndim != 3 or tokens.shape[axis] != self.n_tokens:
            raise LayerError(
                f"{current_caller()}: expected {name} of shape (B, {self.n_tokens}, D) for "
                f"{self.describe()}; got {tuple(tokens.shape)}."
            )


def _unpatch(
    v: torch.Tensor,
    sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> torch.Tensor:
    """(M, *grid) patch values -> (M, *sizes): each position the mean of the patches covering it."""
    nd = len(sizes)

    def crop(t: torch.Tensor) -> torch.Tensor:
        # t covers positions -padding .. -padding + length: crop the padding at the start; crop
        # (padding) or extend with zeros (the remainder a strided convolution drops, covered by
        # no patch) at the end
        pad = [
            e
            for s, n, p in zip(reversed(sizes), reversed(t.shape[1:]), reversed(padding), strict=True)
            for e in (-p, s + p - n)
        ]
        return F.pad(t, pad)

    if kernel == stride and all(d == 1 for d in dilation):  # non-overlapping: repeat each value
        for axis, k in enumerate(kernel):
            v = v.repeat_interleave(k, dim=1 + axis)
        return crop(v)
    if nd not in _CONV_T:
        raise LayerError(
            f"{current_caller()}: overlapping patches can be mapped back over 1 to 3 spatial axes; got {nd}."
        )
    conv_t = _CONV_T[nd]
    w = torch.ones(1, 1, *kernel, dtype=v.dtype, device=v.device)
    kw: dict[str, Any] = {"stride": stride, "dilation": dilation}
    total = crop(conv_t(v.unsqueeze(1), w, **kw)[:, 0])
    count = crop(conv_t(torch.ones_like(v[:1]).unsqueeze(1), w, **kw)[:, 0])
    return torch.where(count > 0, total / torch.where(count > 0, count, torch.ones_like(count)), total)


_Geometry = tuple[
    tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]
]  # kernel, stride, padding, dilation


def _tuple(v: Any, nd: int) -> tuple[int, ...]:
    return tuple(int(i) for i in v) if isinstance(v, (tuple, list)) else (int(v),) * nd


def find_patch_embedding(
    model: Any, n_spatial: int, *, names_only: bool = False
) -> tuple[str, nn.Module] | None:
    """The patch-embedding convolution of ``model``, as ``(name, conv)``, or None.

    Looked for, in order: the first ``Conv{n_spatial}d`` at or inside a module named
    ``patch_embed`` (timm), ``conv_proj`` (torchvision), ``patch_embeddings`` (Hugging Face) or
    ``patch_embedding``; else (unless ``names_only``) the first ``Conv{n_spatial}d`` whose
    kernel equals its stride and covers more than one position (a 1x1 convolution is not a
    patch embedding). ``torch.compile`` and ``DataParallel`` wrappers are seen through.
    """
    model = unwrap(model)
    conv_type = _CONVS.get(n_spatial)
    if not isinstance(model, nn.Module) or conv_type is None:
        return None
    named = list(model.named_modules())
    for name, module in named:
        if name.rsplit(".", 1)[-1] in PATCH_NAMES:
            for sub, conv in module.named_modules():
                if isinstance(conv, conv_type):
                    return (f"{name}.{sub}" if sub else name), conv
    if names_only:
        return None
    for name, conv in named:
        if (
            isinstance(conv, conv_type)
            and tuple(conv.kernel_size) == tuple(conv.stride)
            and math.prod(conv.kernel_size) > 1
        ):
            return name, conv
    return None


def prefix_tokens(model: Any) -> tuple[int, tuple[str, ...], str] | None:
    """The prefix tokens ``model`` declares: ``(count, kinds, source)``, or None.

    The count is a module's ``num_prefix_tokens`` attribute (timm) when there is one; the kinds
    (and otherwise the count) come from the parameters named ``cls_token``/``class_token``,
    ``dist_token``/``distillation_token`` and ``reg_token``/``register_tokens`` (timm,
    torchvision, Hugging Face), one token each for CLS and distillation, ``shape[-2]`` for
    registers, in the order CLS, distillation, registers.
    """
    model = unwrap(model)
    if not isinstance(model, nn.Module):
        return None
    declared = None
    for name, module in model.named_modules():
        n = getattr(module, "num_prefix_tokens", None)
        if isinstance(n, int) and not isinstance(n, bool):
            declared = (n, f"{type(module).__name__}{'.' + name if name else ''}.num_prefix_tokens = {n}")
            break
    kinds: list[str] = []
    found: list[str] = []
    params = list(model.named_parameters())
    for kind, names in _PREFIX_PARAMS.items():
        for pname, p in params:
            if pname.rsplit(".", 1)[-1] in names:
                kinds += [kind] * (int(p.shape[-2]) if kind == "register" and p.ndim >= 2 else 1)
                found.append(pname)
                break
    if declared is not None:
        if len(kinds) != declared[0]:
            kinds = ["unknown"] * declared[0]
        return declared[0], tuple(kinds), declared[1]
    if kinds:
        return len(kinds), tuple(kinds), "parameters " + ", ".join(found)
    return None


def infer_token_grid(
    tokens_shape: Sequence[int],
    input_shape: Sequence[int],
    *,
    model: Any = None,
    prefix: int | None = None,
    patch: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    from_shapes: bool = True,
    max_prefix: int = 8,
    hint: str = "",
) -> TokenGrid:
    """The :class:`TokenGrid` of a token layer output ``tokens_shape`` for an input ``input_shape``.

    Parameters
    ----------
    tokens_shape : sequence of int
        The token output's shape (B, N, D).
    input_shape : sequence of int
        The input's shape (B, C, *sizes), channels first, 1 to 3 spatial axes.
    model : nn.Module, optional
        Read for its prefix tokens (:func:`prefix_tokens`) and its patch embedding
        (:func:`find_patch_embedding`), whose kernel, stride, padding and dilation give the
        grid. A patch convolution with one input channel on a multichannel input means
        per-channel tokens (grid ``(C, *patches)``), when the token count says so.
    prefix : int, optional
        The number of prefix tokens, when known (overrides the model's).
    patch, stride, padding : int or sequence of int, optional
        The patch geometry, when known (overrides the model's); ``stride`` defaults to
        ``patch``.
    from_shapes : bool, default True
        When neither the model nor the arguments give a grid that fits, look for a patch size
        ``p`` dividing every spatial size with ``N - prod(sizes / p)`` prefix tokens (at most
        ``max_prefix`` unless ``prefix`` is given), the smallest such prefix first; then the
        same with per-channel tokens. False: only a grid from the model or the arguments.
    max_prefix : int, default 8
        The most prefix tokens the shape-only inference accepts.
    hint : str, optional
        Appended to the error message (what the caller can pass instead).

    Returns
    -------
    TokenGrid

    Raises
    ------
    LayerError
        When no grid fits; the message lists the token shape, the input shape and every
        candidate that was tried.

    Examples
    --------
    >>> g = infer_token_grid((2, 197, 768), (2, 3, 224, 224))
    >>> g.prefix, g.grid, g.kernel
    (1, (14, 14), (16, 16))
    """
    owner = current_caller()
    tokens_shape, input_shape = tuple(int(s) for s in tokens_shape), tuple(int(s) for s in input_shape)
    if len(tokens_shape) != 3:
        raise LayerError(
            f"{owner}: expected a token output of shape (B, N, D); got {tokens_shape} for an input "
            f"of shape {input_shape}.{hint}"
        )
    if len(input_shape) < 3:
        raise LayerError(
            f"{owner}: a token grid needs an input (B, C, *sizes) with spatial axes; got {input_shape}."
        )
    n, channels, sizes = tokens_shape[1], input_shape[1], input_shape[2:]
    nd = len(sizes)
    if prefix is not None and (not isinstance(prefix, int) or prefix < 0):
        raise ParameterError(f"{owner}: 'prefix' must be an int >= 0 or None; got {prefix!r}.")
    declared = prefix_tokens(model) if model is not None and prefix is None else None
    if prefix is not None:
        known, kinds, prefix_source = prefix, ("unknown",) * prefix, "prefix="
    elif declared is not None:
        known, kinds, prefix_source = declared
    else:
        known, kinds, prefix_source = None, (), ""
    tried: list[str] = []

    def fits(n_patches: int) -> int | None:
        rest = n - n_patches
        if known is not None:
            return rest if rest == known else None
        return rest if 0 <= rest <= max_prefix else None

    def grid_of(
        prefix_n: int, grid: tuple[int, ...], geometry: _Geometry, ch: int | None, source: str
    ) -> TokenGrid:
        k, s, p, d = geometry
        names = tuple(kinds) if len(kinds) == prefix_n else ("unknown",) * prefix_n
        return TokenGrid(prefix_n, grid, sizes, k, s, p, d, ch, names, source + _also(prefix_source))

    geometry: _Geometry | None = None
    source, in_ch = "", None
    if patch is not None:
        k = _tuple(patch, nd)
        geometry = (k, _tuple(stride if stride is not None else patch, nd), _tuple(padding, nd), (1,) * nd)
        source = "patch="
    elif model is not None:
        found = find_patch_embedding(model, nd)
        if found is not None:
            name, conv = found
            if isinstance(conv.padding, str):  # "same"/"valid" padding strings
                tried.append(f"patch embedding {name!r} has padding={conv.padding!r} (not supported)")
            else:
                k, s_, p_, d_ = (
                    _tuple(getattr(conv, a), nd) for a in ("kernel_size", "stride", "padding", "dilation")
                )
                geometry = (k, s_, p_, d_)
                source, in_ch = f"patch embedding {name!r} ({type(conv).__name__})", conv.in_channels
    if geometry is not None:
        k, s, p, d = geometry
        pos = tuple((sizes[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd))
        per_channel = channels > 1 and in_ch in (None, 1)
        options: list[tuple[tuple[int, ...], int | None]] = (
            [] if per_channel and in_ch == 1 else [(pos, None)]
        )
        if per_channel:
            options.append(((channels, *pos), channels))
        for grid, ch in options:
            got = fits(math.prod(grid)) if min(pos) > 0 else None
            if got is not None:
                return grid_of(got, grid, geometry, ch, source)
            tried.append(
                f"{source} with kernel {k}, stride {s}, padding {p}: grid {grid} = {math.prod(grid)} "
                f"patch token(s)"
            )
    if from_shapes:
        for per_channel in (False, True):
            if per_channel and channels <= 1:
                continue
            best = None
            for q in range(1, max(sizes) + 1):
                if any(size % q for size in sizes):
                    continue
                grid = ((channels,) if per_channel else ()) + tuple(size // q for size in sizes)
                got = fits(math.prod(grid))
                if got is not None and (best is None or got < best[0]):
                    best = (got, grid, q)
            if best is not None:
                got, grid, q = best
                geo = ((q,) * nd, (q,) * nd, (0,) * nd, (1,) * nd)
                return grid_of(got, grid, geo, channels if per_channel else None, f"shapes (patch size {q})")
        tried.append(
            "a patch size dividing every spatial size"
            + ("" if channels <= 1 else " (also per-channel tokens)")
            + (
                f" with {known} prefix token(s)"
                if known is not None
                else f" with 0 to {max_prefix} prefix tokens"
            )
        )
    prefix_note = (
        f"; the model declares {known} prefix token(s) ({prefix_source})" if known is not None else ""
    )
    raise LayerError(
        f"{owner}: cannot infer the token grid of a token output of shape {tokens_shape} "
        f"({n} tokens) for an input of shape {input_shape} (spatial sizes {sizes}){prefix_note}. "
        f"Tried: {'; '.join(tried) if tried else 'nothing (no patch embedding found)'}.{hint}"
    )


def _also(prefix_source: str) -> str:
    return f"; prefix from {prefix_source}" if prefix_source else ""


def token_grid(tokens: torch.Tensor, sizes: tuple[int, ...], owner: str = "reshape='tokens'") -> torch.Tensor:
    """Tokens (B, L, D) -> feature maps (B, D, *grid), dropping a leading CLS token if present:
    the shape-only reading of salience 0.2, kept for code that imports it from
    ``salience.explainers.cam`` (the CAMs now use :func:`infer_token_grid`).

    The grid is the input's spatial ``sizes`` divided by one common patch size ``p``; the
    number of extra leading tokens (0 or 1) is whatever makes ``prod(grid)`` equal the token
    count. Raises LayerError when no such grid exists or when it is ambiguous.
    """
    if tokens.ndim != 3:
        raise LayerError(
            f"{owner}: expected a token output of shape (B, L, D); got {tuple(tokens.shape)}. "
            "Pass reshape=callable mapping the layer output to (B, K, *spatial)."
        )
    n_tokens = tokens.shape[1]
    found = []
    for extra in (0, 1):
        for p in range(1, max(sizes) + 1):
            if all(s % p == 0 for s in sizes) and math.prod(s // p for s in sizes) == n_tokens - extra:
                found.append((extra, tuple(s // p for s in sizes)))
    if len(found) != 1:
        what = "no patch grid fits" if not found else f"several grids fit: {found}"
        raise LayerError(
            f"{owner}: cannot infer a token grid for {n_tokens} tokens and input sizes {sizes} "
            f"({what}). Pass reshape=callable, e.g. "
            "lambda a: a[:, 1:].reshape(a.shape[0], 14, 14, -1).permute(0, 3, 1, 2)."
        )
    extra, grid = found[0]
    body = tokens[:, extra:]
    return body.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
