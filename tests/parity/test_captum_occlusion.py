"""Parity with Captum's Occlusion (float64).

Conventions pinned:
- Sign: both give ``f(x) - f(x occluded)`` (positive where occlusion lowers the score).
- Averaging: both credit each window's drop to every position it occludes and divide by the
  number of windows covering that position (overlapping windows averaged).
- Windows: Captum slides a box over *all* non-batch axes, channels included; ours names the axes.
  ``sliding_window_shapes=(C, w)`` (all channels at once) is our ``window={"t": w}``, whose
  result has shape (B, 1, T) and is broadcast here; ``(1, w)`` is ``window={"c": 1, "t": w}``.
  Window start positions are the same (``k * stride``, last window cut at the end).
- Captum returns float32 attributions for float64 inputs (float32 masks and accumulators), so the
  tolerance is float32 rounding (rtol 1e-6); observed differences are about 1e-9 absolute.
- Captum refuses ``stride > window``; we allow it (uncovered positions get 0), so it is not compared.
"""

from __future__ import annotations

import pytest
import torch

import salience as sl
from toy_models import cnn, make_input

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.parity

TOL = dict(rtol=1e-6, atol=1e-7)  # Captum returns float32 attributions for float64 inputs


@pytest.mark.parametrize(
    "kind, window, stride, theirs_window, theirs_stride",
    [
        ("signal", {"t": 4}, {"t": 4}, (3, 4), (3, 4)),
        ("signal", {"t": 5}, {"t": 2}, (3, 5), (3, 2)),
        ("signal", {"c": 1, "t": 3}, {"c": 1, "t": 2}, (1, 3), (1, 2)),
        ("image", {"h": 3, "w": 2}, {"h": 2, "w": 1}, (3, 3, 2), (3, 2, 1)),
        ("video", {"t": 2, "h": 3, "w": 3}, {"t": 1, "h": 2, "w": 3}, (3, 2, 3, 3), (3, 1, 2, 3)),
    ],
)
@pytest.mark.parametrize("baseline", [0.0, 0.7])
def test_occlusion_matches_captum(kind, window, stride, theirs_window, theirs_stride, baseline):
    model = cnn({"signal": 1, "image": 2, "video": 3}[kind])
    x = make_input(kind, batch=3)
    t = torch.tensor([0, 2, 3])
    theirs = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=theirs_window, strides=theirs_stride, baselines=baseline, target=t
    )
    ours = sl.Occlusion(model, window=window, stride=stride, substrate=baseline, progress=False, batch_size=5)
    values = ours.explain(x, t).values
    assert theirs.dtype == torch.float32  # Captum accumulates in float32 (its masks are float32)
    torch.testing.assert_close(values.expand_as(x), theirs.to(x.dtype), **TOL)


def test_occlusion_mean_substrate_matches_captum_tensor_baseline():
    model = cnn(1)
    x = make_input("signal", batch=2)
    mean = x.mean(-1, keepdim=True).expand_as(x).contiguous()
    theirs = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(3, 6), strides=(3, 3), baselines=mean, target=1
    )
    ours = (
        sl.Occlusion(model, window={"t": 6}, stride={"t": 3}, substrate="mean", progress=False)
        .explain(x, 1)
        .values
    )
    torch.testing.assert_close(ours.expand_as(x), theirs.to(x.dtype), **TOL)
