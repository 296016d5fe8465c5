"""Sobol and HSIC attribution: references written from the papers' estimators (numpy loops) on
the same masks, Xplique's conventions (design, perturbations, upsampling), localisation, and
the public kit's checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import qmc
from torch import nn

from registry import EXPLAINERS  # isort: skip (first: it loads every case module, and those import from it)
from cases_layer_sobol import SOBOL_HSIC  # isort: skip
from salience.errors import ParameterError
from salience.explainers._gsa import BoxBlur, Grid, lhs_points
from salience.explainers.hsic import HsicAttributionMethod
from salience.explainers.sobol import SobolAttributionMethod
from salience.layout import Layout
from salience.testing import explainer_checks
from toy_models import DIMS, cnn, make_input

_REGISTERED = {c.id for c in EXPLAINERS}
KIT = [
    pytest.param(check, id=f"{case.id}-{name}")
    for case in SOBOL_HSIC
    if case.id not in _REGISTERED  # once in tests/registry.py, the contract suite runs them
    for name, check in explainer_checks(
        case.make, kinds=case.kinds, stochastic=case.stochastic, expected_passes=case.passes
    )
]


@pytest.mark.parametrize("check", KIT)
def test_kit(check):
    assert check()


# grids that divide the toy inputs' sizes: the reference upsamples masks with np.repeat
GRIDS = {"signal": {"t": 4}, "image": {"h": 4, "w": 4}, "video": {"t": 2, "h": 3, "w": 3}}


def _gen(seed=7):
    return torch.Generator().manual_seed(seed)


def _np_masks(cells: np.ndarray, x_shape: tuple[int, ...], layout: Layout, grid: dict) -> np.ndarray:
    """Cell values (*mask_shape) -> a mask of the input's sample shape, each cell repeated."""
    m = cells
    for name, k in grid.items():
        ax = layout.axes(name)[0] - 1
        m = np.repeat(m, x_shape[ax] // k, axis=ax)
    return m


def _np_scores(model, x: np.ndarray, masks: list[np.ndarray], target: int) -> np.ndarray:
    """f(x * M) for each mask, one model call per row."""
    out = []
    with torch.no_grad():
        for m in masks:
            out.append(float(model(torch.from_numpy(x * m)[None])[0, target]))
    return np.array(out)


def _np_cubic_axis(v: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Keys cubic convolution (a = -0.75), half-pixel centres, edges replicated, along one axis."""
    a = -0.75

    def w(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    v = np.moveaxis(v, axis, -1)
    n = v.shape[-1]
    out = np.zeros((*v.shape[:-1], size))
    for i in range(size):
        src = (i + 0.5) * n / size - 0.5
        i0 = int(np.floor(src))
        for k in range(i0 - 1, i0 + 3):
            out[..., i] += w(src - k) * v[..., min(max(k, 0), n - 1)]
    return np.moveaxis(out, -1, axis)


def _np_upsample(cells: np.ndarray, layout: Layout, sizes: dict, grid: dict) -> np.ndarray:
    out = cells
    for name in grid:
        out = _np_cubic_axis(out, layout.axes(name)[0] - 1, sizes[name])
    return out


def _jansen_reference(f: np.ndarray, n: int, d: int) -> np.ndarray:
    """Total indices from the scores of A (n) then C_1..C_d (n each), as Jansen 1999 / Xplique."""
    f_a = f[:n]
    mean = sum(f_a) / n
    var = sum((v - mean) ** 2 for v in f_a) / (n - 1)
    st = np.zeros(d)
    for i in range(d):
        f_c = f[n * (i + 1) : n * (i + 2)]
        st[i] = sum((f_a[j] - f_c[j]) ** 2 for j in range(n)) / (2 * n * var)
    return st


@pytest.mark.parametrize("kind", ["signal", "image", "video"])
def test_sobol_reference(kind):
    model, x = cnn(DIMS[kind]), make_input(kind, 2)
    layout = Layout({"signal": "b c t", "image": "b c h w", "video": "b c t h w"}[kind])
    grid, n, target = GRIDS[kind], 8, 2

    def make():
        return SobolAttributionMethod(model, grid_size=grid, nb_design=n, generator=_gen(), progress=False)

    attr = make().explain(x, target)
    g = Grid(x, layout, grid)
    design = make().design(x, g).numpy()  # the same generator seed: the call's design
    d = g.cells
    assert design.shape == (n * (d + 1), d)
    sizes = dict(zip(layout.names, x.shape, strict=True))
    for b in range(2):
        xb = x[b].numpy()
        masks = [_np_masks(row.reshape(g.mask_shape), xb.shape, layout, grid) for row in design]
        st = _jansen_reference(_np_scores(model, xb, masks, target), n, d)
        cells = st.reshape(g.mask_shape)
        np.testing.assert_allclose(attr.info["indices"][b].numpy(), cells, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            attr.values[b].numpy(), _np_upsample(cells, layout, sizes, grid), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("width", ["median", "median_distance", 0.7])
@pytest.mark.parametrize("kind", ["signal", "image", "video"])
def test_hsic_reference(kind, width):
    model, x = cnn(DIMS[kind]), make_input(kind, 2)
    layout = Layout({"signal": "b c t", "image": "b c h w", "video": "b c t h w"}[kind])
    grid, n, target = GRIDS[kind], 32, 1
    make = lambda: HsicAttributionMethod(  # noqa: E731
        model, grid_size=grid, nb_design=n, output_width=width, generator=_gen(), progress=False
    )
    attr = make().explain(x, target)
    g = Grid(x, layout, grid)
    design = make().design(x, g).numpy()
    assert set(np.unique(design)) <= {0.0, 1.0}
    for b in range(2):
        xb = x[b].numpy()
        masks = [_np_masks(row.reshape(g.mask_shape), xb.shape, layout, grid) for row in design]
        y = _np_scores(model, xb, masks, target)
        if width == "median":
            w = np.percentile(y, 50)  # Xplique: the median of the outputs themselves
        elif width == "median_distance":
            w = np.median([abs(y[j] - y[k]) for j in range(n) for k in range(j + 1, n)])
        else:
            w = width
        L = np.array([[np.exp(-((y[j] - y[k]) ** 2) / (2 * w**2)) for k in range(n)] for j in range(n)])
        H = np.eye(n) - np.ones((n, n)) / n
        ref = np.zeros(g.cells)
        for i in range(g.cells):
            K = np.array([[1 + 0.5 - (design[j, i] - design[k, i]) ** 2 for k in range(n)] for j in range(n)])
            ref[i] = np.sum((H @ K @ H) * (H @ L @ H).T) / n  # Xplique's estimator
        np.testing.assert_allclose(attr.info["indices"][b].numpy().ravel(), ref, rtol=1e-9, atol=1e-12)


class _Region(nn.Module):
    """A score that depends on one region only: f(x) = (sum of x over the region)^2 + its sum."""

    def __init__(self, index: tuple) -> None:
        super().__init__()
        self.index = index

    def forward(self, x):
        s = x[(slice(None), *self.index)].flatten(1).sum(1)
        return torch.stack([s**2 + s, -s], dim=1)


@pytest.mark.parametrize(
    "kind, index, grid, cell",
    [
        ("signal", (slice(None), slice(5, 10)), {"t": 4}, (0, 1)),
        ("image", (slice(None), slice(4, 6), slice(2, 4)), {"h": 4, "w": 4}, (0, 2, 1)),
        (
            "video",
            (slice(None), slice(2, 4), slice(0, 2), slice(4, 6)),
            {"t": 2, "h": 3, "w": 3},
            (0, 1, 0, 2),
        ),
    ],
)
def test_only_the_region_matters(kind, index, grid, cell):
    model = _Region(index).double().eval()
    x = make_input(kind, 2).abs() + 0.5  # a region with a non-zero sum
    sobol = SobolAttributionMethod(model, grid_size=grid, nb_design=32, generator=_gen(), progress=False)
    st = sobol.explain(x, 0).info["indices"]
    for b in range(2):
        assert st[b][cell] > 0.5
        others = st[b].clone()
        others[cell] = 0
        assert others.abs().max() == 0  # cells the model never reads have no effect at all
        assert tuple(int(i) for i in np.unravel_index(int(st[b].argmax()), st[b].shape)) == cell
    hsic = HsicAttributionMethod(model, grid_size=grid, nb_design=128, generator=_gen(), progress=False)
    h = hsic.explain(x, 0).info["indices"]
    for b in range(2):
        assert tuple(int(i) for i in np.unravel_index(int(h[b].argmax()), h[b].shape)) == cell


def test_design_conventions():
    """scramble=False: the plain Sobol sequence without the origin, A and B its two halves, C_i = A
    with column i from B (Xplique's replicated design)."""
    x = make_input("signal", 1)
    d, n = 4, 8
    sobol = SobolAttributionMethod(cnn(1), grid_size={"t": d}, nb_design=n, scramble=False, progress=False)
    design = sobol.design(x, Grid(x, Layout("b c t"), {"t": d})).numpy()
    ab = qmc.Sobol(2 * d, scramble=False).random(2 * n)[1 : n + 1]  # 2n: a power of two
    a, b = ab[:, :d], ab[:, d:]
    np.testing.assert_array_equal(design[:n], a)
    for i in range(d):
        c = a.copy()
        c[:, i] = b[:, i]
        np.testing.assert_array_equal(design[n * (i + 1) : n * (i + 2)], c)
    hsic = HsicAttributionMethod(cnn(1), grid_size={"t": d}, nb_design=n, scramble=False, progress=False)
    masks = hsic.design(x, Grid(x, Layout("b c t"), {"t": d})).numpy()
    np.testing.assert_array_equal(masks, np.round(qmc.Sobol(d, scramble=False).random(2 * n)[1 : n + 1]))
    assert not sobol.is_stochastic and SobolAttributionMethod(cnn(1)).is_stochastic
    # seeded: the same generator seed gives the same design, another seed another one
    s1 = SobolAttributionMethod(cnn(1), grid_size={"t": d}, nb_design=n, generator=_gen(1), progress=False)
    s2 = SobolAttributionMethod(cnn(1), grid_size={"t": d}, nb_design=n, generator=_gen(2), progress=False)
    g = Grid(x, Layout("b c t"), {"t": d})
    assert not torch.equal(s1.design(x, g), s2.design(x, g))


def test_lhs_strata():
    pts = lhs_points(5, 16, generator=_gen(), dtype=torch.float64)
    assert pts.shape == (16, 5)
    for j in range(5):
        assert sorted((pts[:, j] * 16).floor().long().tolist()) == list(range(16))


def _np_box_blur(x: np.ndarray, k: int) -> np.ndarray:
    """cv2.blur along the last axes of a (C, *S) array: a mean over i - k//2 .. i - k//2 + k - 1,
    edges reflected without repetition (BORDER_REFLECT_101)."""

    def reflect(i, n):
        if n == 1:
            return 0
        while i < 0 or i >= n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    out = x.copy()
    for ax in range(1, x.ndim):
        src = out.copy()
        n = x.shape[ax]
        for i in range(n):
            acc = sum(np.take(src, reflect(i - k // 2 + j, n), axis=ax) for j in range(k)) / k
            idx = [slice(None)] * x.ndim
            idx[ax] = i
            out[tuple(idx)] = acc
    return out


@pytest.mark.parametrize("kind", ["signal", "image"])
def test_perturbations(kind):
    x = make_input(kind, 2)
    layout = Layout({"signal": "b c t", "image": "b c h w"}[kind])
    for k in (3, 4, 10):
        got = BoxBlur(k)(x, layout)
        for b in range(2):
            np.testing.assert_allclose(got[b].numpy(), _np_box_blur(x[b].numpy(), k), rtol=1e-12, atol=1e-12)
    if kind == "image":
        m = torch.rand(1, 1, 6, 6, generator=_gen(), dtype=torch.float64)
        torch.testing.assert_close(BoxBlur(3)(m, "b c h w"), _torch_box(m, 3))
    # the rows each perturbation scores, seen through a recording model
    seen = []

    class Record(nn.Module):
        def forward(self, rows):
            seen.append(rows.clone())
            return rows.flatten(1).sum(1, keepdim=True)

    grid = GRIDS[kind]
    g = Grid(x, layout, grid)
    for name, sigma, expect in [
        ("inpainting", None, lambda xb, m: xb * m),
        ("blurring", 4, lambda xb, m: xb * m + (1 - m) * _np_box_blur(xb, 4)),
        ("amplitude", 2.0, lambda xb, m: xb * (m - 0.5) * 2.0),
        (0.25, None, lambda xb, m: xb * m + (1 - m) * 0.25),
    ]:
        seen.clear()

        def make(name=name, sigma=sigma):
            return SobolAttributionMethod(
                Record().eval(),
                grid_size=grid,
                nb_design=2,
                perturbation=name,
                sigma=sigma,
                generator=_gen(),
                progress=False,
            )

        make().explain(x, 0)
        design = make().design(x, g).numpy()
        rows = torch.cat(seen[:-1]).numpy()  # the last call scores x itself
        for r, row in enumerate(rows):
            b, k = divmod(r, design.shape[0])
            m = _np_masks(design[k].reshape(g.mask_shape), x.shape[1:], layout, grid)
            np.testing.assert_allclose(row, expect(x[b].numpy(), m), rtol=1e-12, atol=1e-12)


def _torch_box(m, k):
    """cv2.blur for odd k through torch's reflect padding (the same border)."""
    p = k // 2
    return F.avg_pool2d(F.pad(m, (p, p, p, p), mode="reflect"), k, stride=1)


def test_upsample_matches_torch_bicubic_and_chunking():
    m = torch.randn(2, 1, 3, 5, dtype=torch.float64, generator=_gen())
    g = Grid(torch.zeros(2, 3, 17, 29), Layout("b c h w"), {"h": 3, "w": 5})
    ref = F.interpolate(m, size=(17, 29), mode="bicubic", align_corners=False)
    torch.testing.assert_close(g.upsample(m), ref, rtol=1e-12, atol=1e-12)
    model, x = cnn(2), make_input("image", 3)
    make = lambda bs: SobolAttributionMethod(  # noqa: E731
        model, grid_size=2, nb_design=4, batch_size=bs, generator=_gen(), progress=False
    )
    ref = make(None).explain(x, 1).values
    for bs in (1, 5, 7):
        torch.testing.assert_close(make(bs).explain(x, 1).values, ref, rtol=1e-12, atol=1e-13)


def test_batch_invariance_and_channel_grid():
    model, x = cnn(1), make_input("signal", 3)

    def make():
        return HsicAttributionMethod(
            model, grid_size={"c": 3, "t": 4}, nb_design=16, generator=_gen(), progress=False
        )

    whole = make().explain(x, torch.tensor([0, 1, 2]))
    assert whole.values.shape == (3, 3, 20) and whole.info["grid"] == (3, 4)
    for i in range(3):
        torch.testing.assert_close(make().explain(x[i : i + 1], i).values, whole.values[i : i + 1])


def test_errors():
    model = cnn(1)
    x = make_input("signal", 1)
    with pytest.raises(ParameterError, match="power of two"):
        SobolAttributionMethod(model, nb_design=24)
    with pytest.raises(ParameterError, match="sigma"):
        SobolAttributionMethod(model, perturbation="inpainting", sigma=3)
    with pytest.raises(ParameterError, match="sigma"):
        HsicAttributionMethod(model, perturbation="mean", sigma=3)
    with pytest.raises(ParameterError, match="perturbation"):
        SobolAttributionMethod(model, perturbation="smudge")
    with pytest.raises(ParameterError, match="output_width"):
        HsicAttributionMethod(model, output_width=0.0)
    with pytest.raises(ParameterError, match="sampler"):
        HsicAttributionMethod(model, sampler="halton")
    with pytest.raises(ParameterError, match="grid_size"):
        SobolAttributionMethod(model, grid_size={"t": 0})
    with pytest.raises(ParameterError, match="only 20 positions"):
        SobolAttributionMethod(model, grid_size=32, progress=False).explain(x, 0)
    with pytest.raises(ParameterError, match="not in layout"):
        HsicAttributionMethod(model, grid_size={"h": 2}, progress=False).explain(x, 0)


def test_zero_width_is_the_kernels_limit():
    """A constant score: the median width is 0 (or the scores all equal), the kernel is the
    indicator of equal scores, and every HSIC is 0 instead of NaN."""

    class Const(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2, dtype=x.dtype) + 0 * x.flatten(1)[:, :1]

    x = make_input("signal", 2)
    attr = HsicAttributionMethod(
        Const().eval(), grid_size=4, nb_design=16, generator=_gen(), progress=False
    ).explain(x, 0)
    assert torch.equal(attr.values, torch.zeros_like(attr.values))


@pytest.mark.parametrize(
    "shape, layout, grid",
    [
        ((2, 3, 20), "b c t", {"t": 3}),
        ((2, 3, 8, 9), "b c h w", {"h": 3, "w": 3}),
        ((2, 3, 4, 6, 7), "b c t h w", {"c": 3, "t": 2, "h": 4, "w": 5}),
    ],
)
def test_modulate_is_the_mask_product(shape, layout, grid):
    """Rows are built by broadcasting cell values over blocks (unequal blocks included): the
    same as multiplying by the nearest-neighbour masks (TensorFlow's half-pixel nearest)."""
    x = torch.randn(shape, dtype=torch.float64, generator=_gen())
    g = Grid(x, Layout(layout), grid)
    cells = torch.rand((5, *g.mask_shape), dtype=torch.float64, generator=_gen(2))
    masks = g.expand(cells)
    full = cells
    for name, k in grid.items():  # the reference: torch's "nearest-exact" index rule, axis by axis
        ax = Layout(layout).axes(name)[0]
        size = shape[ax]
        idx = [min(int((i + 0.5) * k / size), k - 1) for i in range(size)]
        full = full.index_select(ax, torch.tensor(idx))
    torch.testing.assert_close(masks, full, rtol=0, atol=0)
    torch.testing.assert_close(g.modulate(x[1], cells), x[1] * masks, rtol=0, atol=0)


def test_mask_reading_substrate():
    """A substrate that reads the mask (Interpolate) is handed the full-resolution masks."""
    from salience.masking import Interpolate, fill

    seen = []

    class Record(nn.Module):
        def forward(self, rows):
            seen.append(rows.clone())
            return rows.flatten(1).sum(1, keepdim=True)

    x = make_input("signal", 1)
    layout = Layout("b c t")
    g = Grid(x, layout, {"t": 4})

    def make():
        return SobolAttributionMethod(
            Record().eval(),
            grid_size={"t": 4},
            nb_design=2,
            perturbation=Interpolate(),
            generator=_gen(),
            progress=False,
        )

    make().explain(x, 0)
    design = make().design(x, g)
    masks = g.expand(design.reshape(-1, *g.mask_shape))
    expected = torch.cat([fill(x, m[None], Interpolate(), layout) for m in masks])
    torch.testing.assert_close(torch.cat(seen[:-1]), expected)
