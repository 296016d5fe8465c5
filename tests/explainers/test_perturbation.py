"""RISE, MaskUpdate, Occlusion: closed forms, naive loop references, black-box models, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from salience.errors import ModelOutputError, ParameterError
from salience.masking import GridMasker, Segments, SlidingWindow, fill
from toy_models import DIMS, Counting, Linear, cnn, make_input

D = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _x(shape, seed=1):
    return torch.randn(shape, generator=_g(seed), dtype=D)


class Reader(nn.Module):
    """f(x) = scale * x[:, 0, i] (one output), optionally squashed by a sigmoid."""

    def __init__(self, i: int, scale: float = 1.0, sigmoid: bool = False) -> None:
        super().__init__()
        self.i, self.scale, self.sigmoid = i, scale, sigmoid

    def forward(self, x):
        v = self.scale * x[:, 0, self.i][:, None]
        return torch.sigmoid(v) if self.sigmoid else v


# ---------------------------------------------------------------------------------------- RISE
@pytest.mark.parametrize("p_keep", [0.5, 0.3])
def test_rise_linear_element_cells_is_affine_in_wx(p_keep):
    """E[S_i] = (1 - p) w_i x_i + p * (f(x) - b) + b for a linear model, zero fill, element cells."""
    t = 8
    w = _x((1, 1, t), seed=2)
    bias = torch.tensor([0.3], dtype=D)
    model = Linear(w, bias).eval()
    x = _x((2, 1, t), seed=3)
    rise = sl.RISE(
        model, n_masks=40000, cells={"t": t}, p_keep=p_keep, shift=False, generator=_g(7), progress=False
    )
    got = rise(x, target=0).values
    wx = w * x
    expected = (1 - p_keep) * wx + p_keep * wx.sum(-1, keepdim=True) + bias
    # Monte-Carlo: the standard error here is about 0.01; 0.06 is ~6 sigma
    torch.testing.assert_close(got, expected, rtol=0, atol=0.06)
    # slope of S against w*x over positions: 1 - p_keep
    for b in range(2):
        slope = np.polyfit(wx[b, 0].numpy(), got[b, 0].numpy(), 1)[0]
        assert abs(slope - (1 - p_keep)) < 0.05


def test_rise_coverage_normalization_closed_form():
    """Xplique's normalisation estimates E[f | i kept] = w_i x_i + p * sum_{j != i} w_j x_j + b."""
    t, p = 6, 0.5
    w = _x((1, 1, t), seed=4)
    model = Linear(w).eval()
    x = _x((1, 1, t), seed=5)
    got = sl.RISE(
        model,
        n_masks=30000,
        cells={"t": t},
        p_keep=p,
        shift=False,
        normalization="coverage",
        generator=_g(1),
        progress=False,
    )(x, target=0).values
    wx = w * x
    expected = wx + p * (wx.sum(-1, keepdim=True) - wx)
    torch.testing.assert_close(got, expected, rtol=0, atol=0.05)


def _naive_rise(model, x, masks, target, substrate, p_keep):
    lay = sl.Layout("b c t") if x.ndim == 3 else sl.Layout("b c h w")
    out = torch.zeros((x.shape[0], *masks.shape[1:]), dtype=x.dtype)
    for b in range(x.shape[0]):
        for k in range(masks.shape[0]):
            y = model(fill(x[b : b + 1], masks[k : k + 1], substrate, lay))
            out[b] += y[0, target[b]] * masks[k]
    return out / (masks.shape[0] * p_keep)


@pytest.mark.parametrize(
    "kind, substrate",
    [("signal", 0.0), ("signal", "mean"), ("signal", "interpolate"), ("image", "blur"), ("image", 0.5)],
)
def test_rise_naive_loop_equals_batched(kind, substrate):
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=3)
    target = torch.tensor([0, 2, 1])
    cells = {"t": 5} if kind == "signal" else {"h": 3, "w": 3}
    masks = GridMasker(cells, p_keep=0.4).sample(
        x.shape[1:], sl.Layout.infer(x), 13, generator=_g(9), dtype=D
    )
    sub = sl.masking.as_substrate(substrate)
    ref = _naive_rise(model, x, masks, target, sub, 0.4)
    for bs in (1, 5, None):  # chunks straddle samples and blocks
        got = sl.RISE(
            model,
            n_masks=13,
            cells=cells,
            p_keep=0.4,
            substrate=substrate,
            generator=_g(9),
            batch_size=bs,
            progress=False,
        )(x, target=target).values
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_rise_blocks_keep_memory_bounded(monkeypatch):
    """Many masks are scored in blocks; no model call sees more than batch_size rows."""
    import salience.explainers._perturbation as P

    monkeypatch.setattr(P, "_BLOCK_ELEMENTS", 200)  # 10 masks of 20 elements per block
    model = Counting(cnn(1))
    x = make_input("signal", batch=2)
    a = sl.RISE(model, n_masks=57, cells=4, generator=_g(), batch_size=4, progress=False)(x, target=1).values
    assert max(model.rows) <= 4
    monkeypatch.setattr(P, "_BLOCK_ELEMENTS", 2**22)
    b = sl.RISE(cnn(1), n_masks=57, cells=4, generator=_g(), batch_size=4, progress=False)(x, target=1).values
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rise_reader_peaks_at_read_position():
    x = _x((2, 2, 24), seed=6).abs() + 0.5
    got = sl.RISE(Reader(9).eval(), n_masks=500, cells={"t": 24}, shift=False, generator=_g(), progress=False)
    values = got(x).values
    assert values.shape == (2, 1, 24)
    assert values[:, 0].argmax(-1).tolist() == [9, 9]
    # coarse shifted grid: the peak is within one cell of the position
    coarse = sl.RISE(Reader(9).eval(), n_masks=2000, cells={"t": 6}, generator=_g(), progress=False)(x).values
    assert all(abs(i - 9) <= 4 for i in coarse[:, 0].argmax(-1).tolist())


def test_rise_over_named_frequency_axis():
    """Masks over 'f' of a (B, C, F, 2) input: what RISE does inside a Fourier domain."""
    x = _x((2, 3, 17, 2))
    w = _x((1, 3, 17, 2), seed=8)
    out = sl.RISE(
        Linear(w).eval(), n_masks=20, cells={"f": 4}, layout="b c f r", generator=_g(), progress=False
    )(x, target=0)
    assert out.values.shape == (2, 1, 17, 1)


def test_rise_segments_masker_and_errors():
    x = _x((1, 1, 30))
    out = sl.RISE(
        Reader(4).eval(), n_masks=200, masker=Segments(6, p_keep=0.5), generator=_g(), progress=False
    )(x.abs() + 1).values
    assert int(out[0, 0].argmax()) < 5  # the first segment (0..4) holds the read position
    with pytest.raises(ParameterError, match="either"):
        sl.RISE(Reader(0), cells=3, masker=GridMasker())
    with pytest.raises(ParameterError, match="coverage"):
        sl.RISE(Reader(0), masker=Segments(3))
    with pytest.raises(ParameterError, match="n_masks"):
        sl.RISE(Reader(0), n_masks=0)
    with pytest.raises(ParameterError, match="substrate"):
        sl.RISE(Reader(0), substrate="median")


def test_rise_progress_bar_runs(capsys):
    pytest.importorskip("tqdm")
    attr = sl.RISE(cnn(1), n_masks=5, cells=2, generator=_g(), progress=True)(make_input("signal"), target=0)
    assert "RISE masks" in capsys.readouterr().err
    assert bool(torch.isfinite(attr.values).all())


# ----------------------------------------------------------------------------------- Occlusion
@pytest.mark.parametrize("kind", ["signal", "image", "video"])
def test_occlusion_window_one_is_w_times_x(kind):
    x = make_input(kind)
    w = _x((1, *x.shape[1:]), seed=3)
    window = {"c": 1, **{a: 1 for a in sl.Layout.infer(x).spatial}}
    got = sl.Occlusion(Linear(w).eval(), window=window, progress=False)(x, target=0).values
    torch.testing.assert_close(got, w * x, rtol=1e-12, atol=1e-12)


def test_occlusion_disjoint_windows_tile_and_overlaps_average():
    t = 12
    w = _x((1, 1, t), seed=2)
    model = Linear(w).eval()
    x = _x((1, 1, t))
    wx = (w * x)[0, 0]
    got = sl.Occlusion(model, window={"t": 3}, progress=False)(x, target=0).values[0, 0]
    drops = wx.reshape(4, 3).sum(1)  # each window's drop, credited to its positions
    torch.testing.assert_close(got, drops.repeat_interleave(3))
    # stride 1, window 2: position j averages the windows [j-1, j] and [j, j+1] that exist
    got = sl.Occlusion(model, window={"t": 2}, stride={"t": 1}, progress=False)(x, target=0).values[0, 0]
    pair = wx[:-1] + wx[1:]
    expected = torch.empty(t, dtype=D)
    expected[0], expected[-1] = pair[0], pair[-1]
    expected[1:-1] = (pair[:-1] + pair[1:]) / 2
    torch.testing.assert_close(got, expected)


def test_occlusion_reader_peak_and_uncovered_zero():
    x = _x((2, 1, 20)).abs() + 1
    got = sl.Occlusion(Reader(13).eval(), window={"t": 1}, progress=False)(x).values
    assert got[:, 0].argmax(-1).tolist() == [13, 13]
    gaps = sl.Occlusion(Reader(13).eval(), window={"t": 2}, stride={"t": 5}, progress=False)(x).values
    assert float(gaps[0, 0, 2]) == 0.0  # positions 2..4 are in no window


@pytest.mark.parametrize("kind", ["signal", "image", "video"])
def test_occlusion_call_count(kind):
    x = make_input(kind, batch=3)
    lay = sl.Layout.infer(x)
    n = SlidingWindow(3, 2).plan(x.shape[1:], lay).n
    for bs in (1, 2, 7):
        model = Counting(cnn(DIMS[kind]))
        sl.Occlusion(model, window=3, stride=2, batch_size=bs, progress=False)(x, target=1)
        assert model.calls == math.ceil(3 / bs) + math.ceil(3 * n / bs)
        assert max(model.rows) <= bs


def test_occlusion_interpolate_segments_on_linear_model():
    t = 12
    w = _x((1, 1, t), seed=2)
    x = torch.linspace(0, 1, t, dtype=D).reshape(1, 1, t)
    got = sl.Occlusion(
        Linear(w).eval(), masker=Segments(boundaries=[4, 8]), substrate="interpolate", progress=False
    )(x, target=0).values
    # x is a straight line, so interpolating a masked middle segment reproduces it: no drop there
    torch.testing.assert_close(got[0, 0, 4:8], torch.zeros(4, dtype=D), rtol=0, atol=1e-12)


def test_occlusion_errors():
    with pytest.raises(ParameterError, match="window"):
        sl.Occlusion(Reader(0))
    with pytest.raises(ParameterError, match="deterministic"):
        sl.Occlusion(Reader(0), masker=GridMasker())
    with pytest.raises(ParameterError, match="either"):
        sl.Occlusion(Reader(0), window=2, masker=Segments(2))


# ---------------------------------------------------------------------------------- MaskUpdate
def _naive_mask_update(model, x, cells, n_steps, gen, lr=0.02, init_keep=0.3, offset=1.0):
    """One sample, one chain, batch-1 calls, written after the reference script (zero accumulator)."""
    lay = sl.Layout("b c t")
    grid = GridMasker(cells).resolve(x.shape[1:], lay)
    m = (torch.rand(grid.grid_shape, generator=gen, dtype=D) > 1 - init_keep).to(D)[None]
    u_mask = grid.render(m, grid.shifts(1, gen))
    acc = torch.zeros_like(u_mask)
    p_prev = 0.0
    for _ in range(n_steps):
        with torch.no_grad():
            p = float(model(fill(x, u_mask, 0.0, lay))[0, 0])
        dp = p - p_prev
        prev = m.clone()
        r = torch.rand(m.shape, generator=gen, dtype=D)
        new = m.clone()
        for idx in np.ndindex(*m.shape):
            if prev[idx] > 0:
                new[idx] = float(r[idx] > 1 - p)
            else:
                new[idx] = float(r[idx] > p)
            if new[idx] - prev[idx] > 0:
                new[idx] = 1 - lr * abs(dp)
        m = new
        u_mask = grid.render(m, grid.shifts(1, gen))
        acc = acc + u_mask
        p_prev = p
    raw = acc / n_steps
    s = torch.relu(raw - offset * raw.mean())
    return raw, s / s.max()


def test_mask_update_equals_naive_loop():
    model = nn.Sequential(nn.Flatten(), nn.Linear(40, 2), nn.Softmax(-1)).to(D).eval()
    x = _x((1, 2, 20))
    raw_ref, post_ref = _naive_mask_update(lambda z: model(z)[:, 1:], x, {"t": 5}, 25, _g(3), offset=0.96)
    raw = sl.MaskUpdate(
        model, n_steps=25, cells={"t": 5}, offset=0.96, postprocess=False, generator=_g(3), progress=False
    )(x, target=sl.Output(1)).values
    post = sl.MaskUpdate(model, n_steps=25, cells={"t": 5}, offset=0.96, generator=_g(3), progress=False)(
        x, target=sl.Output(1)
    ).values
    torch.testing.assert_close(raw, raw_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(post, post_ref, rtol=1e-12, atol=1e-12)


def test_mask_update_values_are_zero_or_damped():
    """The chain's cells only hold 0 or values in [1 - lr, 1]: visible with element cells, no shift."""
    model = Reader(3, sigmoid=True).eval()
    x = _x((1, 1, 8))
    raw = sl.MaskUpdate(
        model, n_steps=1, cells={"t": 8}, shift=False, postprocess=False, generator=_g(), progress=False
    )(x).values
    v = raw[raw > 0]
    assert bool(((v >= 0.98) & (v <= 1)).all())


def test_mask_update_reader_peaks_at_read_position():
    model = Reader(5, scale=4.0, sigmoid=True).eval()
    x = torch.full((2, 1, 12), 1.0, dtype=D)
    out = sl.MaskUpdate(
        model, n_steps=300, cells={"t": 12}, shift=False, n_chains=4, generator=_g(), progress=False
    )(x).values
    assert out[:, 0].argmax(-1).tolist() == [5, 5]
    assert float(out.max()) == pytest.approx(1.0)  # max-normalised


def test_mask_update_needs_probabilities():
    model = cnn(1)
    x = make_input("signal")
    with pytest.raises(ModelOutputError, match="Probability"):
        sl.MaskUpdate(model, n_steps=2, generator=_g(), progress=False)(x * 50, target=0)
    a = sl.MaskUpdate(model, n_steps=2, generator=_g(), progress=False)(x, target=sl.Probability(0))
    assert a.values.shape == (2, 1, 20)
    with pytest.raises(ParameterError, match="link"):
        sl.MaskUpdate(model, link="softmax")


def test_mask_update_chains_share_one_call_per_step():
    model = Counting(nn.Sequential(nn.Flatten(), nn.Linear(60, 2), nn.Softmax(-1)).to(D).eval())
    x = make_input("signal", batch=4)
    sl.MaskUpdate(model, n_steps=7, n_chains=3, generator=_g(), progress=False)(x, target=1)
    assert model.rows == [4] + [12] * 7 or model.rows == [12] * 7 + [4]


# -------------------------------------------------------------------------- black-box models
@pytest.fixture
def sklearn_model():
    lm = pytest.importorskip("sklearn.linear_model")
    g = np.random.default_rng(0)
    xs = g.normal(size=(80, 2, 10))
    ys = (xs[:, 0, 3] + xs[:, 1, 7] > 0).astype(int)
    clf = lm.LogisticRegression().fit(xs.reshape(80, -1), ys)
    return clf, torch.as_tensor(xs[:3])


def test_sklearn_predict_proba_with_every_method(sklearn_model):
    clf, x = sklearn_model
    model = sl.NumpyModel(clf.predict_proba)
    out = model(x)
    assert out.shape == (3, 2) and out.dtype == x.dtype
    occ = sl.Occlusion(model, window={"t": 1}, progress=False)(x, target=1).values
    # reference by hand: zero out one time step (both channels) at a time
    p0 = clf.predict_proba(x.reshape(3, -1).numpy())[:, 1]
    for t in (3, 7):
        xt = x.clone()
        xt[:, :, t] = 0
        torch.testing.assert_close(
            occ[:, 0, t], torch.as_tensor(p0 - clf.predict_proba(xt.reshape(3, -1).numpy())[:, 1])
        )
    rise = sl.RISE(model, n_masks=64, cells={"t": 10}, generator=_g(), progress=False)(x, target=1)
    mu = sl.MaskUpdate(model, n_steps=10, cells={"t": 5}, generator=_g(), progress=False)(
        x, target=sl.Output(1)
    )
    assert rise.values.shape == mu.values.shape == (3, 1, 10)
    assert torch.isfinite(rise.values).all() and torch.isfinite(mu.values).all()


def test_numpy_model_errors():
    with pytest.raises(ParameterError):
        sl.NumpyModel(3)
    bad = sl.NumpyModel(lambda a: np.array(["x"] * len(a)))
    with pytest.raises(ModelOutputError):
        bad(torch.zeros(2, 3))


def test_rise_all_classes_equals_per_class_runs():
    model = cnn(1)
    x = make_input("signal", batch=2)
    kw = dict(n_masks=9, cells=4, progress=False)
    every = sl.RISE(model, all_classes=True, generator=_g(2), batch_size=5, **kw)(x, target=0)
    assert every.values.shape == (2, 4, 20) and every.layout == "b k t"
    for k in range(4):
        one = sl.RISE(model, generator=_g(2), **kw)(x, target=k).values
        torch.testing.assert_close(every.values[:, k : k + 1], one, rtol=1e-10, atol=1e-12)
    with pytest.raises(ParameterError, match="all_classes"):
        sl.RISE(model, all_classes=True, n_masks=3, cells={"c": 3, "t": 4}, progress=False)(x, target=0)


class _InSpectrum(sl.Wrapper):
    """A stand-in for InDomain(Fourier): explain f(irfft(z)) over z = rfft(x) as (B, C, F, 2)."""

    def attribute(self, x, score):
        t = x.shape[-1]
        z = torch.view_as_real(torch.fft.rfft(x, dim=-1)).contiguous()
        lay = score.layout.replace("t", "f", "r")

        def inverse(rows, samples):
            return torch.fft.irfft(torch.view_as_complex(rows.contiguous()), n=t, dim=-1)

        inner = score.compose(inverse, z, lay)
        return sl.engine.explainer.as_parts(self.explainer.attribute(z, inner), lay)


def test_perturbation_methods_inside_a_composed_score():
    """Masks over frequency bins through score.compose (what InDomain will do)."""
    t, k0 = 32, 5
    w = torch.cos(2 * math.pi * k0 * torch.arange(t, dtype=D) / t).reshape(1, 1, t)
    model = Linear(w).eval()
    x = torch.cos(2 * math.pi * k0 * torch.arange(t, dtype=D) / t).reshape(1, 1, t) * 3 + 0.1 * _x((1, 1, t))
    occ = _InSpectrum(sl.Occlusion(model, window={"f": 1}, progress=False))(x, target=0)
    assert occ.values.shape == (1, 1, t // 2 + 1, 1) and occ.layout == "b c f r"
    assert int(occ.values[0, 0, :, 0].argmax()) == k0
    rise = _InSpectrum(
        sl.RISE(model, n_masks=300, cells={"f": t // 2 + 1}, shift=False, generator=_g(), progress=False)
    )(x, target=0)
    assert int(rise.values[0, 0, :, 0].argmax()) == k0


# ---------------------------------------------------------------------------- review #20: parameters are stored
def test_perturbation_explainers_store_their_parameters_and_build_maskers_per_call():
    model = Reader(0).eval()
    rise = sl.RISE(model, n_masks=8, cells={"t": 4}, p_keep=0.3, shift=False, progress=False)
    assert (rise.cells, rise.p_keep, rise.shift, rise.masker) == ({"t": 4}, 0.3, False, None)
    occ = sl.Occlusion(model, window={"t": 4}, stride=2, progress=False)
    assert (occ.window, occ.stride, occ.masker) == ({"t": 4}, 2, None)
    mu = sl.MaskUpdate(model, n_steps=3, cells={"t": 5}, shift=False, progress=False)
    assert (mu.cells, mu.shift) == ({"t": 5}, False)
    # sklearn-style: a changed attribute is used by the next call
    x = torch.randn(1, 1, 12, dtype=torch.float64)
    occ.window, occ.stride = {"t": 6}, None
    assert occ.explain(x, 0).info["n_windows"] == 2
    rise.p_keep = 0.6
    assert "p_keep=0.6" in rise.explain(x, 0).info["masker"]
    with pytest.raises(ParameterError, match="window"):
        sl.Occlusion(model, window={"t": 0})
    with pytest.raises(ParameterError, match="p_keep"):
        sl.RISE(model, p_keep=0.0)
    with pytest.raises(ParameterError, match="cells"):
        sl.MaskUpdate(model, cells={"t": -1})


def test_short_runs_print_no_progress_bar(monkeypatch, capsys):
    """Bars appear only after a second of work (tqdm's delay): a quick call stays silent."""
    pytest.importorskip("tqdm")
    import salience._progress

    monkeypatch.setattr(salience._progress, "_DELAY_S", 1.0)
    sl.RISE(cnn(1), n_masks=5, cells=2, generator=_g(), progress=True)(make_input("signal"), target=0)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(salience._progress, "_DELAY_S", 0.0)
    sl.RISE(cnn(1), n_masks=5, cells=2, generator=_g(), progress=True)(make_input("signal"), target=0)
    assert "RISE masks" in capsys.readouterr().err
