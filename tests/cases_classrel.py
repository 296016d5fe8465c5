"""Contract cases: ClassRelevant (VAR) around each core gradient method and Grad-CAM.

Passes: one forward over the B samples (class sets, scores at x), then the wrapped method's own
passes over the B * K stacked rows (K = 3: classes [0, 2] plus the target 1 or 3 of the contract
tests; with target 0 or 2 K is 2, which the count test does not use).
"""

from __future__ import annotations

import torch

import salience as sl
from registry import Case

K = 3


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(2468)


def _cr(inner, **kw):
    # the toy CNN's maps are ~0.01-0.1: with the paper's temperature 0.1 and no normalisation the
    # softmax would be nearly uniform and every map zero, so the cases normalise or cool it down
    kw.setdefault("normalize", True)
    return sl.ClassRelevant(inner, classes=[0, 2], **kw)


CLASSREL: list[Case] = [
    Case("ClassRelevant(Gradient)", lambda m, **kw: _cr(sl.Gradient(m, **kw)), passes=lambda b: [b, K * b]),
    Case("ClassRelevant(Saliency)", lambda m, **kw: _cr(sl.Saliency(m, **kw)), passes=lambda b: [b, K * b]),
    Case(
        "ClassRelevant(InputXGradient)",
        lambda m, **kw: _cr(sl.InputXGradient(m, **kw), normalize=False, temperature=0.005),
        passes=lambda b: [b, K * b],
    ),
    Case(
        "ClassRelevant(IG-trapezoid)",
        lambda m, **kw: _cr(sl.IntegratedGradients(m, n_steps=4, **kw), tau=0.0),
        passes=lambda b: [b, 4 * K * b],
    ),
    Case(
        "ClassRelevant(IG-gausslegendre-mean)",
        lambda m, **kw: _cr(
            sl.IntegratedGradients(m, n_steps=3, rule="gausslegendre", baseline="mean", **kw)
        ),
        passes=lambda b: [b, 3 * K * b, K * b],  # the scores at x come from the first forward
    ),
    Case(
        "ClassRelevant(SmoothGrad(Gradient))",
        lambda m, **kw: _cr(
            sl.SmoothGrad(sl.Gradient(m, **kw), n_samples=3, generator=_gen(), progress=False)
        ),
        passes=lambda b: [b, 3 * K * b],  # the forward at x, then the noisy copies of the B * K rows
        stochastic=True,  # the noise of a row depends on the rest of the batch
    ),
    Case(
        "ClassRelevant(TopClasses, Gradient)",
        lambda m, **kw: sl.ClassRelevant(sl.Gradient(m, **kw), classes=sl.TopClasses(2), normalize="mean"),
        passes=lambda b: [b, 3 * b],
    ),
]


def _conv2(m):
    """Layer "2" by name; by module when the call-count test wraps the model in Counting."""
    inner = getattr(m, "model", None)
    return inner[2] if inner is not None else "2"


CLASSREL.append(
    Case(
        "ClassRelevant(GradCAM)",
        lambda m, **kw: _cr(sl.GradCAM(m, layer=_conv2(m), **kw)),
        passes=lambda b: [b, K * b],  # the forward at x, then one layer pass over B * K rows
        needs_layer=True,
    )
)

CLASSREL.append(
    Case(
        "ClassRelevant(RISE)",
        lambda m, **kw: _cr(sl.RISE(m, n_masks=6, cells=3, generator=_gen(), progress=False, **kw)),
        # the forward at x, then every class mapped from one set of masked rows per sample
        passes=lambda b: [b, 6 * b],
    )
)
