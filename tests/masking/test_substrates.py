"""Substrates and the fill: closed forms, scipy parity for the blur, mask-aware interpolation."""

from __future__ import annotations

import pytest
import torch

from salience.errors import ParameterError, ShapeError
from salience.layout import Layout
from salience.masking import Blur, ChannelMean, Constant, Interpolate, Noise, as_substrate, fill

SIG = Layout("b c t")
IMG = Layout("b c h w")


def _x(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_constant_and_fill_formula():
    x = _x((2, 3, 10))
    m = (torch.arange(10) % 2).to(torch.float64).reshape(1, 1, 10)
    out = fill(x, m, 0.5, SIG)
    torch.testing.assert_close(out, x * m + (1 - m) * 0.5, rtol=0, atol=0)
    assert torch.equal(fill(x, torch.ones(1, 1, 10, dtype=x.dtype), "zeros", SIG), x)
    assert torch.equal(
        fill(x, torch.zeros(1, 1, 10, dtype=x.dtype), Constant(2.0), SIG), torch.full_like(x, 2.0)
    )


def test_fill_soft_mask_is_convex_combination():
    x = _x((1, 2, 5))
    m = torch.full((1, 1, 5), 0.25, dtype=x.dtype)
    torch.testing.assert_close(fill(x, m, "zeros", SIG), 0.25 * x)


@pytest.mark.parametrize(
    "layout, shape", [(SIG, (2, 3, 7)), (IMG, (2, 3, 4, 5)), (Layout("b c t h w"), (1, 2, 3, 4, 5))]
)
def test_channel_mean(layout, shape):
    x = _x(shape)
    out = ChannelMean()(x, layout)
    dims = tuple(range(2, x.ndim))
    torch.testing.assert_close(out, x.mean(dims, keepdim=True).expand_as(x))


def test_channel_mean_without_channel_axis():
    x = _x((2, 6))
    out = ChannelMean()(x, Layout("b f"))
    torch.testing.assert_close(out, x.mean(1, keepdim=True).expand_as(x))


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0])
def test_blur_matches_scipy_reflect(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _x((2, 3, 9, 12))
    out = Blur(sigma)(x, IMG)
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect", truncate=4.0)
    torch.testing.assert_close(out, torch.from_numpy(ref), rtol=1e-10, atol=1e-12)


def test_blur_per_axis_and_zero_padding():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _x((1, 2, 30))
    out = Blur({"t": 3.0})(x, SIG)
    ref = ndimage.gaussian_filter1d(x.numpy(), 3.0, axis=-1, mode="reflect", truncate=4.0)
    torch.testing.assert_close(out, torch.from_numpy(ref))
    z = Blur(2.0, radius=3, padding="zeros")(torch.ones(1, 1, 20, dtype=torch.float64), SIG)
    assert z[0, 0, 10] == pytest.approx(1.0) and z[0, 0, 0] < 0.9  # borders darken


def test_blur_only_named_axes():
    x = _x((1, 1, 5, 6))
    out = Blur(1.0, axes=("w",))(x, IMG)
    # rows along h are untouched: blurring along w commutes with picking one row
    torch.testing.assert_close(out[:, :, 2], Blur(1.0)(x[:, :, 2], SIG))


def test_noise_uses_its_generator():
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    a = Noise(2.0, generator=torch.Generator().manual_seed(3))(x, SIG)
    b = Noise(2.0, generator=torch.Generator().manual_seed(3))(x, SIG)
    assert torch.equal(a, b) and a.std() > 0.5 and a.dtype == x.dtype


def test_interpolate_linear_across_gap():
    x = torch.tensor([[[0.0, 9, 9, 9, 4.0, 9, 9]]], dtype=torch.float64)
    m = torch.tensor([[[1.0, 0, 0, 0, 1, 0, 0]]], dtype=torch.float64)
    out = fill(x, m, Interpolate(), SIG)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1, 2, 3, 4, 4, 4]]], dtype=torch.float64))


def test_interpolate_leading_gap_and_no_anchor():
    x = torch.tensor([[[5.0, 7, 1, 3]], [[1.0, 2, 3, 6]]], dtype=torch.float64)
    m = torch.tensor([[[0.0, 0, 1, 1]], [[0.0, 0, 0, 0]]], dtype=torch.float64)
    out = Interpolate()(x, SIG, m)
    torch.testing.assert_close(out[0, 0, :2], torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out[1, 0], torch.full((4,), 3.0, dtype=torch.float64))


def test_interpolate_per_channel_mask_and_errors():
    x = _x((1, 2, 6))
    m = torch.ones(1, 2, 6, dtype=x.dtype)
    m[0, 1, 2:4] = 0
    out = fill(x, m, "interpolate", SIG)
    torch.testing.assert_close(out[0, 0], x[0, 0])
    torch.testing.assert_close(out[0, 1, 2], x[0, 1, 1] + (x[0, 1, 4] - x[0, 1, 1]) / 3)
    with pytest.raises(ParameterError, match="mask"):
        Interpolate()(x, SIG)
    with pytest.raises(ParameterError, match="axis"):
        Interpolate()(_x((1, 1, 3, 3)), IMG, torch.ones(1, 1, 3, 3))


def test_as_substrate():
    assert isinstance(as_substrate("zeros"), Constant)
    assert isinstance(as_substrate("mean"), ChannelMean)
    assert isinstance(as_substrate("blur"), Blur)
    assert as_substrate(1.5).value == 1.5
    b = Blur(1.0)
    assert as_substrate(b) is b
    for bad in ("median", None, True, [0.0]):
        with pytest.raises(ParameterError, match="substrate"):
            as_substrate(bad)
    with pytest.raises(ShapeError):
        ChannelMean()(_x((2, 3)), SIG)


def test_noise_without_generator_leaves_the_substrate_unchanged():
    # review #4: the substrate object is the user's; a call must not store a generator on it
    sub = Noise(std=0.5)
    a = sub(_x((1, 2, 8)), SIG)
    b = sub(_x((1, 2, 8)), SIG)
    assert sub.generator is None
    assert not torch.equal(a, b)  # a fresh random generator per call


def test_secondary_parameters_are_keyword_only():
    # review #21: only the primary parameter may be positional
    from salience.masking import GridMasker
    from salience.metrics import NoisyLinearImputation, RiseBlur

    for make in (
        lambda: Blur(2.0, ("t",)),
        lambda: Noise(1.0, 0.5),
        lambda: Interpolate("t", 0.3),
        lambda: GridMasker(4, 0.3),
        lambda: RiseBlur(5.0, 11),
        lambda: NoisyLinearImputation(0.01, None),
    ):
        with pytest.raises(TypeError):
            make()
    assert RiseBlur(3.0, size=7).size == 7 and Noise(2.0, mean=1.0).mean == 1.0
