"""Attention-method cases for the contract suite, on tiny transformers instead of the kit's CNN.

The kit's explainer checks (``salience.testing``) explain its toy CNN; attention methods need a
transformer, so these cases run the same checks through a :class:`Setup` whose models are the
transformers of ``tests/transformer_models.py``, with the kit's inputs: (N, 3, 20) signals for a
1-D patch transformer (5 time patches of 4 + CLS) and (N, 3, 8, 8) images for a ViT (2 x 2
patches of 4 + CLS), 4 classes, float64. Module ``"2"`` (which the kit hooks to make the model
raise mid-call) is the last block. The kit's ``training_mode`` check builds its own CNN, so it is
left out here; tests/explainers/test_attention_methods.py checks a training-mode transformer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

import salience as sl
from registry import Case
from salience.testing._common import Check
from salience.testing._explainer import EXPLAINER_CHECKS, Setup
from transformer_models import PatchTransformer1D, TinyViT


class KitTransformer(nn.Module):
    """A transformer for the kit's checks: ``net`` runs, module ``"2"`` is its last block."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.add_module("2", net.blocks[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def transformer(kind: str, attention: str = "sdpa", device: torch.device | str | None = None) -> nn.Module:
    """The contract suite's transformer for ``kind`` ("signal" or "image"), float64, eval mode."""
    if kind == "signal":
        net: nn.Module = PatchTransformer1D(
            channels=3, length=20, patch=4, stride=4, dim=16, depth=2, heads=2, classes=4, attention=attention
        )
    elif kind == "image":
        net = TinyViT(img=8, patch=4, dim=16, depth=2, heads=2, classes=4, attention=attention)
    else:
        raise ValueError(f"no contract transformer for kind {kind!r}")
    return KitTransformer(net).to(device).eval()


@dataclass
class TransformerSetup(Setup):
    """The kit's setup with :func:`transformer` models."""

    attention: str = "sdpa"

    def model(self, kind: str) -> nn.Module:
        return transformer(kind, self.attention, self.device)


#: the kit's checks except ``training_mode`` (which builds the kit's own CNN)
CHECK_NAMES = [name for name in EXPLAINER_CHECKS if name != "training_mode"]


def transformer_checks(case: Case, attention: str = "sdpa") -> Iterator[tuple[str, Check]]:
    """``(name, check)`` for every kit check of ``case`` on the transformer of each of its kinds."""
    setup = TransformerSetup(
        case.make, case.stochastic, case.passes, torch.device("cpu"), 1e-9, 1e-10, 0, attention
    )
    for kind in case.kinds:
        for name in CHECK_NAMES:
            if name == "batch_invariance" and setup.is_stochastic(kind):
                continue
            fn: Callable[..., None] = EXPLAINER_CHECKS[name]
            yield f"{name}[{kind}]", Check(f"{name}[{kind}]", functools.partial(fn, setup, kind))


_KINDS = ("signal", "image")

ATTENTION: list[Case] = [
    Case(
        "AttentionRollout", lambda m, **kw: sl.AttentionRollout(m, **kw), passes=lambda b: [b], kinds=_KINDS
    ),
    Case(
        "AttentionRollout-max-discard",
        lambda m, **kw: sl.AttentionRollout(m, head_fusion="max", discard_ratio=0.3, **kw),
        passes=lambda b: [b],
        kinds=_KINDS,
    ),
    Case(
        "TransformerAttribution",
        lambda m, **kw: sl.TransformerAttribution(m, **kw),
        passes=lambda b: [b],
        kinds=_KINDS,
    ),
    Case(
        "TransformerAttribution-mean-query",
        lambda m, **kw: sl.TransformerAttribution(m, query="mean", **kw),
        passes=lambda b: [b],
        kinds=_KINDS,
    ),
    Case(
        "AttentionGradCAM", lambda m, **kw: sl.AttentionGradCAM(m, **kw), passes=lambda b: [b], kinds=_KINDS
    ),
    Case(
        "AttentionGuidedGradCAM",
        lambda m, **kw: sl.AttentionGuidedGradCAM(m, **kw),
        passes=lambda b: [b, b],  # the attention Grad-CAM, then the guided gradient
        kinds=_KINDS,
    ),
    Case(
        "InputXGradient-ViT", lambda m, **kw: sl.InputXGradient(m, **kw), passes=lambda b: [b], kinds=_KINDS
    ),
]

#: the other families on the same transformers: every gradient method, the Grad-CAM family on
#: the token layer it picks by itself (the grid inferred), perturbation
ON_TRANSFORMERS: list[Case] = [
    Case("Gradient-transformer", lambda m, **kw: sl.Gradient(m, **kw), passes=lambda b: [b], kinds=_KINDS),
    Case("Saliency-transformer", lambda m, **kw: sl.Saliency(m, **kw), passes=lambda b: [b], kinds=_KINDS),
    Case(
        "IG-transformer",
        lambda m, **kw: sl.IntegratedGradients(m, n_steps=4, rule="gausslegendre", **kw),
        passes=lambda b: [4 * b, b, b],  # the path, the scores at x and at the baseline (delta)
        kinds=_KINDS,
    ),
    Case(
        "SmoothGrad-transformer",
        lambda m, **kw: sl.SmoothGrad(
            sl.Gradient(m, **kw), n_samples=3, generator=torch.Generator().manual_seed(0), progress=False
        ),
        passes=lambda b: [3 * b, b],
        stochastic=True,
        kinds=_KINDS,
    ),
    # a dry run on one sample finds the default layer, then one pass
    Case("GradCAM-tokens", lambda m, **kw: sl.GradCAM(m, **kw), passes=lambda b: [1, b], kinds=_KINDS),
    Case("HiResCAM-tokens", lambda m, **kw: sl.HiResCAM(m, **kw), passes=lambda b: [1, b], kinds=_KINDS),
    Case(
        "RISE-transformer",
        lambda m, **kw: sl.RISE(
            m, n_masks=6, cells=2, generator=torch.Generator().manual_seed(0), progress=False, **kw
        ),
        passes=lambda b: [6 * b, b],  # the masks, then the score at x
        stochastic=True,
        kinds=_KINDS,
    ),
]
