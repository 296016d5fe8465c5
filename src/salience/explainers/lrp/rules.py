"""LRP rules: small frozen data objects, each turning a layer's upper relevance into its input's.

A rule sees one call of one layer through :class:`LayerCall` (the module, its input ``x`` and the
weights in effect, BatchNorm already merged when it applies) and implements
``relevance(layer, r) -> r_in`` for the relevance ``r`` of the layer's output. Relevance is what
flows backwards: the explained output starts with ``output * d score / d output``, and the
relevance of the input is the attribution.

Every rule below is linear in ``r`` and, for a layer without bias and a stabiliser of 0,
conserves it: ``r_in.sum() == r.sum()``.

References
----------
Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
Relevance Propagation", PLoS ONE 2015. Montavon et al., "Layer-Wise Relevance Propagation: An
Overview", in Explainable AI, LNCS 11700, 2019. Montavon et al., "Explaining nonlinear
classification decisions with deep Taylor decomposition", Pattern Recognition 2017. Lapuschkin et
al., "Unmasking Clever Hans predictors", Nature Communications 2019 (flat rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..._validation import check_float, non_finite
from ...errors import LayerError, NamedInit, ParameterError, ShapeError, caller, current_caller

__all__ = [
    "Rule",
    "LayerCall",
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "Flat",
    "WSquare",
    "Pass",
    "AFFINE",
    "RULES",
    "as_rule",
    "check_bounds",
]

#: layers whose weights the rules may modify (their forward is an affine map of the input)
AFFINE: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

_SAME: Any = object()


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with sign(0) = +1: a denominator that is never 0 for ``epsilon > 0``."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def divide(num: torch.Tensor, z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``num / stabilize(z, epsilon)``, and 0 where that denominator is exactly 0 (only possible
    with ``epsilon = 0``, LRP-0): a unit with no pre-activation passes no relevance, instead of
    NaN/inf spreading through the map."""
    den = stabilize(z, epsilon)
    if epsilon > 0:
        return num / den
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


class LayerCall:
    """One call of one layer, as a rule sees it.

    Parameters
    ----------
    module : nn.Module
    x : Tensor
        The layer's input in this call (detached).
    weight, bias : Tensor or None
        The parameters in effect (BatchNorm merged into them when it follows the layer). None
        for a layer without weights, whose own ``forward`` is used.
    """

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        self.module = module
        self.x = x
        self.weight = weight
        self.bias = bias
        self.affine = isinstance(module, AFFINE)

    def forward(self, inp: torch.Tensor, weight: Any = _SAME, bias: Any = _SAME) -> torch.Tensor:
        """The layer's map at ``inp`` with the given (modified) weight and bias (hooks bypassed)."""
        if not self.affine:
            return self.module.forward(inp)
        w = self.weight if weight is _SAME else weight
        b = self.bias if bias is _SAME else bias
        w = cast(torch.Tensor, w)  # affine layers always carry a weight
        m = self.module
        if isinstance(m, nn.Linear):
            return F.linear(inp, w, b)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return m._conv_forward(inp, w, b)
        m = cast(nn.modules.conv._ConvTransposeNd, m)  # the rest of AFFINE
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(m.kernel_size)]
        # torch types _ConvNd.padding as str | tuple, but transposed convolutions refuse string padding
        return fn(inp, w, b, m.stride, m.padding, m.output_padding, m.groups, m.dilation)  # type: ignore[arg-type]

    def vjp(self, g: torch.Tensor, weight: Any = _SAME, at: torch.Tensor | None = None) -> torch.Tensor:
        """``(d forward / d inp)^T g`` (for affine layers: the transposed weights applied to ``g``)."""
        with torch.enable_grad():
            inp = (self.x if at is None else at).detach().requires_grad_(True)
            z = self.forward(inp, weight, None) if self.affine else self.forward(inp)
            (grad,) = torch.autograd.grad(z, inp, g)
        return grad

    def need_weights(self, rule: Rule) -> torch.Tensor:
        if self.weight is None or not self.affine:
            raise LayerError(
                f"The LRP rule {rule!r} modifies weights; it applies to Linear and convolution "
                f"layers, not to {type(self.module).__name__}."
            )
        return self.weight


def _pos(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clamp(max=0)


class Rule(NamedInit):
    """Base class of LRP rules: ``relevance(layer, r)`` returns the relevance of the input."""

    #: whether the rule needs a Linear/convolution layer (it modifies weights)
    needs_weights: ClassVar[bool] = True

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_stabilizer(value: Any, name: str = "stabilizer") -> float:
    return check_float(value, name, low=0.0)


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon: ``R_i = x_i * sum_j w_ji R_j / (z_j + eps * sign(z_j))``.

    Applies to Linear/convolution layers and to any linear layer without weights (average pooling),
    whose own forward is used. ``epsilon=0`` is LRP-0 (gradient x input for bias-free layers).
    """

    epsilon: float = 1e-6
    needs_weights: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_stabilizer(self.epsilon, "epsilon"))

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        z = layer.forward(layer.x)
        return layer.x * layer.vjp(divide(r, z, self.epsilon))


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-gamma: positive contributions favoured by ``gamma``, for positive and negative outputs.

    For outputs ``z_j > 0`` the weights ``w + gamma * w+`` act on positive inputs (with bias
    ``b + gamma * b+``) and ``w + gamma * w-`` on negative inputs; for ``z_j < 0`` the roles are
    swapped; relevance is redistributed in proportion to these contributions (the generalised
    gamma rule of zennit >= 0.5). ``gamma=0`` is LRP-0 up to the stabiliser.
    """

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", check_float(self.gamma, "gamma", low=0.0))
        object.__setattr__(self, "stabilizer", _check_stabilizer(self.stabilizer))

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        w, b, x, g = layer.need_weights(self), layer.bias, layer.x, self.gamma
        w_up, w_dn = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_dn = None if b is None else b + g * b.clamp(max=0)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        out = layer.forward(x)
        z_up = layer.forward(xp, w_up, b_up) + layer.forward(xn, w_dn, None)
        z_dn = layer.forward(xp, w_dn, b_dn) + layer.forward(xn, w_up, None)
        s_up = divide(r * (out > 0).to(r.dtype), z_up, self.stabilizer)
        s_dn = divide(r * (out < 0).to(r.dtype), z_dn, self.stabilizer)
        return (
            xp * layer.vjp(s_up, w_up)
            + xn * layer.vjp(s_up, w_dn)
            + xp * layer.vjp(s_dn, w_dn)
            + xn * layer.vjp(s_dn, w_up)
        )


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-alpha-beta: ``R = alpha * R+ - beta * R-`` with ``alpha - beta = 1``.

    ``R+`` redistributes in proportion to the positive contributions (``w+ x+``, ``w- x-``, bias
    ``b+``) and ``R-`` to the negative ones (``w- x+``, ``w+ x-``, bias ``b-``).
    """

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        alpha = check_float(self.alpha, "alpha", low=0.0)
        beta = check_float(self.beta, "beta", low=0.0)
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ParameterError(
                f"The 'alpha' and 'beta' parameters of {current_caller()} must satisfy alpha - beta = 1 "
                f"(relevance conservation). Got alpha={alpha!r}, beta={beta!r} instead."
            )
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "stabilizer", _check_stabilizer(self.stabilizer))

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        w, b, x = layer.need_weights(self), layer.bias, layer.x
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        z_pos = layer.forward(xp, wp, _pos(b)) + layer.forward(xn, wn, None)
        s = divide(r, z_pos, self.stabilizer)
        rel = self.alpha * (xp * layer.vjp(s, wp) + xn * layer.vjp(s, wn))
        if self.beta:
            z_neg = layer.forward(xp, wn, _neg(b)) + layer.forward(xn, wp, None)
            s = divide(r, z_neg, self.stabilizer)
            rel = rel - self.beta * (xp * layer.vjp(s, wn) + xn * layer.vjp(s, wp))
        return rel


@dataclass(frozen=True)
class ZPlus(AlphaBeta):
    """LRP-z+ (alpha=1, beta=0): only positive contributions receive relevance."""

    alpha: float = field(default=1.0, init=False)
    beta: float = field(default=0.0, init=False)


BoundLike = float | torch.Tensor


def _check_bound(value: Any, name: str) -> BoundLike:
    """One input bound: a finite float, or a real tensor of finite values (detached copy)."""
    if not isinstance(value, torch.Tensor):
        return check_float(value, name)
    owner = current_caller()
    if value.is_complex() or value.dtype == torch.bool or value.numel() == 0 or value.device.type == "meta":
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a float or a non-empty real tensor of "
            f"finite values. Got a {value.dtype} tensor of shape {tuple(value.shape)} on "
            f"{value.device} instead."
        )
    bad = non_finite(value)
    if bad:
        raise ParameterError(
            f"The {name!r} parameter of {owner} must hold finite values. Got {bad} NaN/inf "
            f"value(s) in a tensor of shape {tuple(value.shape)} instead."
        )
    return value.detach().clone()


def check_bounds(low: Any, high: Any, owner: str | None = None) -> tuple[BoundLike, BoundLike]:
    """Validate the input bounds of the z^B rule: finite floats or real tensors, ``low <= high``.

    Parameters
    ----------
    low, high : float or Tensor
        Lower and upper bound of the first layer's input; tensors must broadcast against each
        other (and, at call time, against one sample of the input).
    owner : str, optional
        Named in the error messages; by default the rule or composite being built
        (:func:`salience.errors.current_caller`).

    Returns
    -------
    (low, high)
        Floats, or detached copies of the tensors (later changes to the caller's tensors do not
        reach the rule).

    Raises
    ------
    ParameterError
        A bound is not a number or a real tensor, is not finite, or ``low > high`` somewhere.
    ShapeError
        Tensor bounds that do not broadcast against each other.
    """
    if owner is not None:
        with caller(owner):
            return check_bounds(low, high)
    owner = current_caller()
    lo, hi = _check_bound(low, "low"), _check_bound(high, "high")
    lo_t, hi_t = torch.as_tensor(lo, dtype=torch.float64), torch.as_tensor(hi, dtype=torch.float64)
    try:
        lo_t, hi_t = torch.broadcast_tensors(lo_t, hi_t.to(lo_t.device))
    except RuntimeError:
        raise ShapeError(
            f"The 'low' and 'high' parameters of {owner} must broadcast against each other. Got "
            f"shapes {tuple(lo_t.shape)} and {tuple(hi_t.shape)} instead."
        ) from None
    above = lo_t > hi_t
    if bool(above.any()):
        at = tuple(int(k) for k in above.nonzero()[0]) if above.ndim else ()
        where = f" at index {at}" if at else ""
        raise ParameterError(
            f"The 'low' and 'high' parameters of {owner} must satisfy low <= high (the bounds of "
            f"the input). Got low={float(lo_t[at]):g} > high={float(hi_t[at]):g}{where} instead."
        )
    return lo, hi


@dataclass(frozen=True, eq=False)
class ZBox(Rule):
    """LRP-z^B for the first layer of bounded inputs, ``low <= x <= high``.

    ``z = w x + b - (w+ low + b+) - (w- high + b-)`` and
    ``R = x (w^T s) - low (w+^T s) - high (w-^T s)`` with ``s = R_out / z``.

    Parameters
    ----------
    low, high : float or Tensor
        Bounds of the first layer's input, finite, with ``low <= high`` (element-wise for
        tensors); tensors broadcast against one sample of it (e.g. shape (C, 1, 1) for
        per-channel bounds of normalised images) and are copied.
    stabilizer : float
        Non-negative.
    """

    low: BoundLike = 0.0
    high: BoundLike = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        low, high = check_bounds(self.low, self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "stabilizer", _check_stabilizer(self.stabilizer))

    @staticmethod
    def _bound(value: BoundLike, x: torch.Tensor) -> torch.Tensor:
        bound = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        try:
            return torch.broadcast_to(bound, x.shape[1:]).expand_as(x)
        except RuntimeError:
            raise ShapeError(
                f"ZBox bounds of shape {tuple(bound.shape)} do not broadcast against one sample of "
                f"the first layer's input, shape {tuple(x.shape[1:])}."
            ) from None

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        w, b, x = layer.need_weights(self), layer.bias, layer.x
        low, high = (self._bound(v, x) for v in (self.low, self.high))
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        z = layer.forward(x) - layer.forward(low, wp, _pos(b)) - layer.forward(high, wn, _neg(b))
        s = divide(r, z, self.stabilizer)
        return x * layer.vjp(s) - low * layer.vjp(s, wp) - high * layer.vjp(s, wn)


@dataclass(frozen=True)
class Flat(Rule):
    """LRP-flat: relevance spread uniformly over each output's receptive field (weights 1, no bias)."""

    stabilizer: float = 1e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "stabilizer", _check_stabilizer(self.stabilizer))

    def _weights(self, w: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(w)

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        w = self._weights(layer.need_weights(self))
        ones = torch.ones_like(layer.x)
        z = layer.forward(ones, w, None)
        return layer.vjp(divide(r, z, self.stabilizer), w, at=ones)


@dataclass(frozen=True)
class WSquare(Flat):
    """LRP-w^2: relevance spread in proportion to the squared weights (no bias)."""

    def _weights(self, w: torch.Tensor) -> torch.Tensor:
        return w * w


@dataclass(frozen=True)
class Pass(Rule):
    """Relevance passed through unchanged (element-wise layers: activations, unmerged BatchNorm)."""

    needs_weights: ClassVar[bool] = False

    def relevance(self, layer: LayerCall, r: torch.Tensor) -> torch.Tensor:
        return r


#: rule names accepted wherever a rule is expected (case-insensitive): each builds the rule
#: with its defaults; ZBox needs its bounds and has no name
RULES: dict[str, type[Rule]] = {
    cls.__name__.lower(): cls for cls in (Epsilon, Gamma, AlphaBeta, ZPlus, Flat, WSquare, Pass)
}


def as_rule(value: Any, name: str = "rule", owner: str | None = None) -> Rule:
    """A rule instance, or a rule name (:data:`RULES`) built with its defaults.

    Parameters
    ----------
    value : Rule or str
    name : str, default "rule"
        The parameter, named in the error message.
    owner : str, optional
        The object being built, named in the error message; by default the one whose
        construction is running (:func:`salience.errors.current_caller`).

    Raises
    ------
    ParameterError
        An unknown name, a rule class instead of an instance, or anything else.
    """
    if isinstance(value, Rule):
        return value
    owner = owner or current_caller()
    if isinstance(value, str):
        key = value.lower()
        if key in RULES:
            return RULES[key]()
        hint = " ZBox needs the input bounds: pass ZBox(low, high)." if key == "zbox" else ""
        raise ParameterError(
            f"The {name!r} parameter of {owner} names an unknown LRP rule {value!r}; known names "
            f"are {', '.join(repr(n) for n in RULES)} (or pass a rule such as Epsilon(1e-6)).{hint}"
        )
    if isinstance(value, type) and issubclass(value, Rule):
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a rule instance. Got the class "
            f"{value.__name__} instead; call it, e.g. {value.__name__}()."
        )
    raise ParameterError(
        f"The {name!r} parameter of {owner} must be an LRP rule (e.g. Epsilon(1e-6)) or a rule "
        f"name ({', '.join(repr(n) for n in RULES)}). Got {type(value).__name__} {value!r} instead."
    )
