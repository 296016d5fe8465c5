"""Ambiguous layouts: a channels-last (N, T, C) array read as (N, C, T) is warned about."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import salience as sl
from salience.layout import CHANNELS_LAST_RATIO, Layout

D = torch.float64


class ChannelsLast(nn.Module):
    """A model of (N, T, C) inputs (C = 3 sensors), as Keras-style code writes them."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 2, generator=g, dtype=D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w).mean(1)  # (N, T, 3) -> (N, 2)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("shape", "warns"),
    [
        ((2, 64, 3), True),
        ((2, 16, 2), True),
        ((2, 8, 1), True),
        ((2, 15, 2), False),
        ((2, 3, 64), False),
        ((2, 64, 64), False),
    ],
)
def test_rule_channels_at_least_8_times_the_steps(shape, warns):
    x = _x(*shape)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert Layout.infer(x) == "b c t"
    msgs = [str(w.message) for w in rec if issubclass(w.category, sl.SalienceWarning)]
    assert bool(msgs) is warns
    if warns:
        c, t = shape[1], shape[2]
        assert f"{c} channels of {t} time step" in msgs[0] and 'layout="b t c"' in msgs[0]
    assert CHANNELS_LAST_RATIO == 8


def test_explain_warns_at_the_users_line_and_layout_b_t_c_works():
    model, x = ChannelsLast().eval(), _x(2, 64, 3)
    with pytest.warns(sl.SalienceWarning, match=r'layout="b t c"') as rec:
        sl.Gradient(model).explain(x, target=0)
    assert rec[0].filename == __file__  # attributed to the caller, not to salience
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attr = sl.IntegratedGradients(model, n_steps=16, layout="b t c").explain(x, target=0)
        sl.Gradient(model, layout="b c t").explain(x, target=0)  # an explicit reading: silent
        Layout.infer(x, "b c t")
    assert attr.layout == "b t c" and attr.shape == x.shape
    # IG completeness in the (N, T, C) reading
    gap = attr.values.sum((1, 2)) - (model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]).detach()
    assert gap.abs().max() < 1e-2


def test_images_and_video_never_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = Layout.infer(_x(1, 64, 2, 2))
        video = Layout.infer(_x(1, 64, 1, 2, 2))
    assert (str(image), str(video)) == ("b c h w", "b c t h w")


# ---------------------------------------------------------------- FaithfulnessCorrelation's subset size
def _signal_model(c: int) -> nn.Module:
    g = torch.Generator().manual_seed(2)
    m = nn.Sequential(
        nn.Conv1d(c, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)
    ).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=D))
    return m.eval()


@pytest.mark.parametrize(
    ("shape", "size"),
    [((3, 20), 15), ((1, 7), 1), ((2, 4), 2), ((3, 300), 224), ((1, 896), 224), ((1, 895), 223)],
)
def test_faithfulness_default_subset_adapts_to_the_input(shape, size):
    model, x = _signal_model(shape[0]), _x(2, *shape)
    attr = sl.Gradient(model).explain(x, target=1)

    def run(**kw):
        return sl.metrics.faithfulness_correlation(
            model, x, attr, 1, n_runs=6, generator=torch.Generator().manual_seed(3), progress=False, **kw
        )

    default = run()
    assert torch.isfinite(default).all()
    torch.testing.assert_close(default, run(subset_size=size), rtol=0, atol=0)
    metric = sl.metrics.FaithfulnessCorrelation(
        n_runs=6, generator=torch.Generator().manual_seed(3), progress=False
    )
    assert metric.subset_size is None
    torch.testing.assert_close(metric(model, x, attr, 1), default, rtol=0, atol=0)
