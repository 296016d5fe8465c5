"""LRP composites: which rule applies to which layer, as small frozen data objects.

A :class:`Composite` maps layer types to rules (first match wins), gives the first Linear or
convolution layer of the model (in ``model.modules()`` order) its own rule, and says whether a
BatchNorm that directly follows a Linear/convolution layer is merged into it for the relevance
computation. Layers matched by no entry keep their plain gradient.

The named composites (:data:`COMPOSITES`) follow the usual recipes for conv nets (Montavon et
al. 2019; Kohlbrenner et al. 2020) and use zennit's names: ``epsilon``, ``epsilon_plus``,
``epsilon_plus_flat``, ``epsilon_alpha2_beta1``, ``epsilon_alpha2_beta1_flat`` and
``epsilon_gamma_box`` (the last needs the input bounds: :func:`epsilon_gamma_box`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..._validation import check_bool, check_float
from ...errors import ParameterError, caller
from .rules import AFFINE, AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule, ZBox, ZPlus, as_rule, check_bounds

__all__ = [
    "Composite",
    "COMPOSITES",
    "single",
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon_gamma_box",
    "CONV",
    "ACTIVATIONS",
    "AVG_POOLS",
    "BATCHNORMS",
]

CONV: tuple[type, ...] = tuple(t for t in AFFINE if t is not nn.Linear)
ACTIVATIONS: tuple[type, ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
)
AVG_POOLS: tuple[type, ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
BATCHNORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True, eq=False)
class Composite:
    """Rules per layer type for one LRP explanation.

    Every field is checked when the composite is built, so a mistake surfaces here rather than
    in the middle of an explanation.

    Parameters
    ----------
    rules : sequence of (types, rule) pairs, or a mapping from types to rules
        Checked in order; the first entry whose types match a module (``isinstance``) gives its
        rule. Modules matched by none keep their plain gradient (e.g. max pooling routes all
        relevance to the maximum; Flatten/Dropout in eval pass it unchanged). ``types`` is an
        ``nn.Module`` subclass or a tuple of them; ``rule`` a :class:`Rule` or a rule name
        (the class name, case-insensitive: ``"epsilon"``, ``"gamma"``, ``"alphabeta"``,
        ``"zplus"``, ``"flat"``, ``"wsquare"``, ``"pass"``; see :data:`~.rules.RULES`), built
        with its defaults. Stored as a tuple of ``(tuple of types, Rule)``.
    first : Rule or str, optional
        Rule of the first Linear/convolution layer in ``model.modules()`` order (the input layer):
        ``Flat``, ``WSquare`` or ``ZBox``.
    sums : Epsilon or None
        Rule for functional additions of two activations inside the model's forward (residual
        connections ``out = out + identity`` / ``out += identity``): relevance is shared in
        proportion to the two terms (epsilon rule, as zennit's ``Sum`` canonizer with ``Norm``).
        None leaves their plain gradient, which hands the full relevance to both terms.
    merge_batchnorm : bool
        Merge a BatchNorm in eval mode that directly consumes the output of a Linear/standard
        convolution layer into that layer's weights and bias for the relevance computation (the
        model is not changed). An unmerged BatchNorm gets its rule from ``rules`` (default Pass).
    name : str
        Recorded in ``Attribution.info["composite"]``.
    """

    rules: tuple[tuple[tuple[type, ...], Rule], ...]
    first: Rule | None = None
    sums: Epsilon | None = Epsilon(1e-6)
    merge_batchnorm: bool = True
    name: str = "custom"

    @caller("Composite")
    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", _check_rules(self.rules))
        if self.first is not None:
            object.__setattr__(self, "first", as_rule(self.first, "first"))
        if self.sums is not None and not isinstance(self.sums, Epsilon):
            raise ParameterError(
                f"The 'sums' parameter of Composite must be an Epsilon rule or None. Got {self.sums!r} instead."
            )
        check_bool(self.merge_batchnorm, "merge_batchnorm")
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError(
                f"The 'name' parameter of Composite must be a non-empty str. Got {self.name!r} instead."
            )

    def rule_for(self, module: nn.Module) -> Rule | None:
        for types, rule in self.rules:
            if isinstance(module, types):
                return rule
        return None

    def __repr__(self) -> str:
        return f"Composite({self.name!r})"


def _check_types(types: Any, i: int) -> tuple[type, ...]:
    group = tuple(types) if isinstance(types, (tuple, list)) else (types,)
    if not group or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in group):
        raise ParameterError(
            f"The 'rules' parameter of Composite: entry {i} must match an nn.Module subclass or a "
            f"non-empty tuple of them, e.g. (nn.Conv1d, nn.Conv2d). Got {types!r} instead."
        )
    return group


def _check_rules(rules: Any) -> tuple[tuple[tuple[type, ...], Rule], ...]:
    """``Composite.rules`` as a tuple of ``(tuple of types, Rule)``, or ParameterError."""
    if isinstance(rules, Mapping):
        rules = tuple(rules.items())
    if isinstance(rules, (str, bytes)) or not isinstance(rules, (tuple, list)):
        raise ParameterError(
            "The 'rules' parameter of Composite must be a sequence of (types, rule) pairs, e.g. "
            f"(((nn.Linear,), Epsilon(0.1)),). Got {type(rules).__name__} {rules!r} instead."
        )
    out = []
    for i, entry in enumerate(rules):
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ParameterError(
                f"The 'rules' parameter of Composite: entry {i} must be a (types, rule) pair. "
                f"Got {entry!r} instead."
            )
        group = _check_types(entry[0], i)
        out.append((group, as_rule(entry[1], f"rules[{i}]")))
    return tuple(out)


def _base(stabilizer: float) -> list[tuple[tuple[type, ...], Rule]]:
    return [
        (ACTIVATIONS, Pass()),
        (AVG_POOLS, Epsilon(stabilizer)),
        (BATCHNORMS, Pass()),
    ]


def _check(epsilon: float, stabilizer: float) -> tuple[float, float]:
    return (
        check_float(epsilon, "epsilon", low=0.0),
        check_float(stabilizer, "stabilizer", low=0.0),
    )


@caller("single")
def single(rule: Rule | str, name: str | None = None, stabilizer: float = 1e-6) -> Composite:
    """One rule on every Linear/convolution layer (plus Pass on activations, Epsilon on pools).

    Parameters
    ----------
    rule : Rule or str
        A rule, or a rule name built with its defaults (see :class:`Composite`).
    name : str, optional
        Recorded as the composite's name (default: the rule's repr).
    stabilizer : float
        Non-negative stabiliser of the pooling and residual-sum rules.
    """
    rule = as_rule(rule, "rule")
    if name is not None and (not isinstance(name, str) or not name):
        raise ParameterError(
            f"The 'name' parameter of single must be a non-empty str or None. Got {name!r} instead."
        )
    stabilizer = check_float(stabilizer, "stabilizer", low=0.0)
    return Composite(
        rules=(*_base(stabilizer), (AFFINE, rule)), sums=Epsilon(stabilizer), name=name or repr(rule)
    )


@caller("epsilon")
def epsilon(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """Epsilon on every Linear/convolution layer."""
    epsilon, stabilizer = _check(epsilon, stabilizer)
    return single(Epsilon(epsilon), "epsilon", stabilizer)


@caller("epsilon_plus")
def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """z+ on convolutions, epsilon on Linear layers."""
    epsilon, stabilizer = _check(epsilon, stabilizer)
    return Composite(
        rules=(*_base(stabilizer), (CONV, ZPlus(stabilizer=stabilizer)), ((nn.Linear,), Epsilon(epsilon))),
        sums=Epsilon(stabilizer),
        name="epsilon_plus",
    )


@caller("epsilon_plus_flat")
def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """:func:`epsilon_plus` with the flat rule on the first layer."""
    epsilon, stabilizer = _check(epsilon, stabilizer)
    base = epsilon_plus(epsilon, stabilizer)
    return Composite(rules=base.rules, first=Flat(stabilizer), sums=base.sums, name="epsilon_plus_flat")


@caller("epsilon_alpha2_beta1")
def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """alpha=2, beta=1 on convolutions, epsilon on Linear layers."""
    epsilon, stabilizer = _check(epsilon, stabilizer)
    return Composite(
        rules=(
            *_base(stabilizer),
            (CONV, AlphaBeta(2.0, 1.0, stabilizer)),
            ((nn.Linear,), Epsilon(epsilon)),
        ),
        sums=Epsilon(stabilizer),
        name="epsilon_alpha2_beta1",
    )


@caller("epsilon_alpha2_beta1_flat")
def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    """:func:`epsilon_alpha2_beta1` with the flat rule on the first layer."""
    epsilon, stabilizer = _check(epsilon, stabilizer)
    base = epsilon_alpha2_beta1(epsilon, stabilizer)
    return Composite(
        rules=base.rules, first=Flat(stabilizer), sums=base.sums, name="epsilon_alpha2_beta1_flat"
    )


@caller("epsilon_gamma_box")
def epsilon_gamma_box(
    low: float | object,
    high: float | object,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
) -> Composite:
    """gamma on convolutions, epsilon on Linear layers, z^B on the first layer.

    Parameters
    ----------
    low, high : float or Tensor
        Bounds of the input (see :class:`ZBox`): finite, ``low <= high``.
    epsilon, gamma, stabilizer : float
        Non-negative.

    Raises
    ------
    ParameterError
        A parameter out of its range, non-finite bounds or ``low > high``.
    """
    epsilon, stabilizer = _check(epsilon, stabilizer)
    gamma = check_float(gamma, "gamma", low=0.0)
    low, high = check_bounds(low, high)
    return Composite(
        rules=(
            *_base(stabilizer),
            (CONV, Gamma(gamma, stabilizer)),
            ((nn.Linear,), Epsilon(epsilon)),
        ),
        first=ZBox(low, high, stabilizer),
        sums=Epsilon(stabilizer),
        name="epsilon_gamma_box",
    )


#: named composites that need no data-dependent argument
COMPOSITES: dict[str, Callable[..., Composite]] = {
    "epsilon": epsilon,
    "epsilon_plus": epsilon_plus,
    "epsilon_plus_flat": epsilon_plus_flat,
    "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
    "epsilon_alpha2_beta1_flat": epsilon_alpha2_beta1_flat,
}
