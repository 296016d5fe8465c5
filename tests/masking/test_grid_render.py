"""GridMasker rendering: exact parity with the full per-offset table algorithm, and bounded memory."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from salience.layout import Layout
from salience.masking import GridMasker


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _naive_tables(size, s, shift):
    """The original algorithm: source cells and weights for *every* offset x every position."""
    cell = math.ceil(size / s)
    if shift:
        up = (s + 1) * cell
        o = torch.arange(cell).reshape(cell, 1) + torch.arange(size).reshape(1, size)
    else:
        up = size
        o = torch.arange(size).reshape(1, size)
    src = (o.to(torch.float64) + 0.5) * (s / up) - 0.5
    src = torch.where(src < 0, -src, src)
    src = torch.where(src > s - 1, 2 * (s - 1) - src, src).clamp(0, s - 1)
    i0 = src.floor().long().clamp(max=s - 1)
    i1 = (i0 + 1).clamp(max=s - 1)
    w = src - i0.to(torch.float64)
    return i0, i1, w


def _naive_render(keep, shifts, layout, shape, cells, shift):
    """Upsample one axis at a time, mask by mask and position by position, from the full tables."""
    names = Layout(layout).names[1:]
    sizes = dict(zip(names, shape, strict=True))
    out = keep.clone()
    j = 0
    for dim, name in enumerate(names):
        if name not in cells:
            continue
        size, s = sizes[name], cells[name]
        i0, i1, w = _naive_tables(size, s, shift)
        moved = out.movedim(dim + 1, -1)
        res = torch.empty((*moved.shape[:-1], size), dtype=out.dtype)
        for m in range(out.shape[0]):
            row = int(shifts[m, j]) if shift else 0
            a = moved[m][..., i0[row]]
            b = moved[m][..., i1[row]]
            res[m] = torch.addcmul(a, b - a, w[row].to(out.dtype))
        out = res.movedim(-1, dim + 1)
        j += 1
    return out


CASES = [
    ("b c t", (1, 50), {"t": 7}),
    ("b c t", (2, 23), {"t": 5}),
    ("b c t", (1, 64), {"t": 8}),
    ("b c t", (1, 12), {"t": 12}),
    ("b c t", (1, 9), {"t": 1}),
    ("b c h w", (3, 20, 17), {"h": 4, "w": 5}),
    ("b c h w", (1, 13, 11), {"w": 3}),
    ("b c t h w", (2, 6, 9, 8), {"t": 2, "h": 3, "w": 3}),
    ("b c f r", (2, 33, 2), {"f": 8}),
    ("b c t", (2, 10), {"c": 2, "t": 4}),
]


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout, shape, cells", CASES)
def test_render_equals_full_table_algorithm(layout, shape, cells, shift, dtype):
    masker = GridMasker(cells, p_keep=0.5, shift=shift)
    grid = masker.resolve(shape, layout)
    g = _g(3)
    keep = grid.bernoulli(6, 0.5, g, dtype)
    shifts = grid.shifts(6, g)
    ours = grid.render(keep, shifts)
    ref = _naive_render(keep, shifts, layout, shape, cells, shift)
    assert ours.dtype == dtype and ours.shape == ref.shape
    if dtype == torch.float64:
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    else:
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("layout, shape, cells", CASES)
def test_sample_equals_full_table_algorithm_for_fixed_generator(layout, shape, cells, shift):
    n = 9
    got = GridMasker(cells, p_keep=0.4, shift=shift).sample(
        shape, layout, n, generator=_g(5), dtype=torch.float64
    )
    # the same draws, in the same order, as GridMasker.plan
    g = _g(5)
    names = Layout(layout).names[1:]
    sizes = dict(zip(names, shape, strict=True))
    grid_shape = tuple(cells.get(a, 1) for a in names)
    keep = (torch.rand((n, *grid_shape), generator=g, dtype=torch.float64) < 0.4).to(torch.float64)
    axes = [a for a in names if a in cells]
    if shift:
        shifts = torch.stack(
            [torch.randint(0, math.ceil(sizes[a] / cells[a]), (n,), generator=g) for a in axes], 1
        )
    else:
        shifts = torch.zeros((n, len(axes)), dtype=torch.long)
    ref = _naive_render(keep, shifts, layout, shape, cells, shift)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_plan_slices_equal_whole_long_signal():
    plan = GridMasker({"t": 16}).plan((1, 1000), "b c t", 11, generator=_g(2), dtype=torch.float64)
    whole = plan(0, 11)
    parts = torch.cat([plan(a, min(a + 3, 11)) for a in range(0, 11, 3)])
    assert torch.equal(whole, parts)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from salience.masking import GridMasker
    torch.set_num_threads(1)
    GridMasker({"t": 64}).sample((1, 1000), "b c t", 1, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = GridMasker({"t": 64}).sample((1, 200000), "b c t", 1, generator=torch.Generator().manual_seed(0))
    assert m.shape == (1, 1, 200000)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024)
    """
)


def test_one_long_mask_uses_memory_linear_in_length():
    """One mask of T=200000 with 64 cells: the old per-offset tables (3125 x 200000) needed ~15 GB."""
    run = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    delta_mb = int(run.stdout.strip().splitlines()[-1])
    assert delta_mb < 300, f"peak RSS grew by {delta_mb} MB for one mask of length 200000"
