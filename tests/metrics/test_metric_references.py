"""Every metric equals a slow, obviously-correct loop reference (float64, random inputs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import salience as sl
from salience import metrics as M
from salience.masking import Interpolate
from toy_models import DIMS, Counting, cnn, make_input

KINDS = ["signal", "image", "video"]


def score_one(model, row, k):
    """The model's logit k for one row, one call per row."""
    with torch.no_grad():
        return float(model(row[None])[0, k])


def ranked(a_flat):
    """Unit indices by descending value, ties by position (python's stable sort)."""
    vals = a_flat.tolist()
    return sorted(range(len(vals)), key=lambda i: (-vals[i], i))


def perturb(x_b, unit_shape, units, value):
    """x_b with every listed unit (an index into unit_shape, broadcast over x) set to value."""
    out = x_b.clone()
    for u in units:
        idx = np.unravel_index(u, unit_shape)
        sl_ = tuple(
            slice(None) if unit_shape[d] == 1 and x_b.shape[d] != 1 else int(idx[d])
            for d in range(len(unit_shape))
        )
        out[sl_] = value[sl_] if isinstance(value, torch.Tensor) else value
    return out


def reference_curve(model, x, a, k, counts, sub, mode):
    out = []
    for b in range(x.shape[0]):
        order = ranked(a[b].flatten())
        unit_shape = tuple(a.shape[1:])
        row = []
        for c in counts:
            if mode == "deletion":
                xr = perturb(x[b], unit_shape, order[:c], sub[b])
            else:
                xr = perturb(sub[b].clone(), unit_shape, order[:c], x[b])
            row.append(score_one(model, xr, int(k[b])))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def rise_counts(n, step):
    return [min(i * step, n) for i in range(math.ceil(n / step) + 1)]


def xplique_counts(n, steps, frac=1.0):
    return np.linspace(0, int(np.floor(n * frac)), steps + 1, dtype=np.int32).tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("full", [False, True], ids=["positions", "cells"])
@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_curves_match_loop_reference(kind, full, mode):
    model = cnn(DIMS[kind])
    x = make_input(kind, batch=2)
    g = torch.Generator().manual_seed(3)
    shape = x.shape if full else (x.shape[0], 1, *x.shape[2:])
    a = torch.randn(shape, generator=g, dtype=torch.float64)
    a[0].view(-1)[:4] = 0.5  # ties: broken by position
    k = torch.tensor([1, 3])
    n = a[0].numel()
    sub_value = 0.25
    sub = torch.full_like(x, sub_value)
    fn = M.deletion_curve if mode == "deletion" else M.insertion_curve
    # RISE schedule: `step` units per state
    step = max(1, n // 5) + 1
    ours = fn(model, x, a, k, step=step, substrate=sub_value, progress=False)
    ref = reference_curve(model, x, a, k, rise_counts(n, step), sub, mode)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    # Xplique schedule: steps + 1 states, max_fraction
    ours = fn(model, x, a, k, steps=4, max_fraction=0.7, substrate=sub_value, progress=False)
    ref = reference_curve(model, x, a, k, xplique_counts(n, 4, 0.7), sub, mode)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_curve_chunking_and_call_count():
    x = make_input("signal", batch=3)
    a = torch.randn(3, 1, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = None
    for bs in (1, 4, 7, None):
        model = Counting(cnn(1))
        out = M.deletion_curve(model, x, a, 2, steps=5, batch_size=bs, progress=False)
        ref = out if ref is None else ref
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        if bs is not None:
            assert model.calls == math.ceil(3 * 6 / bs)
            assert max(model.rows) <= bs


def test_tensor_and_mask_aware_substrates():
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn(2, 1, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = torch.tensor([0, 2])
    sub = torch.randn(2, 3, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = M.deletion_curve(model, x, a, k, steps=4, substrate=sub, progress=False)
    ref = reference_curve(model, x, a, k, xplique_counts(20, 4), sub, "deletion")
    torch.testing.assert_close(ours, ref)
    # a mask-aware substrate sees the keep mask of each row
    ours = M.deletion_curve(model, x, a, k, steps=4, substrate=Interpolate(), progress=False)
    rows = []
    for b in range(2):
        order = ranked(a[b].flatten())
        r = []
        for c in xplique_counts(20, 4):
            keep = torch.ones(1, 1, 20, dtype=x.dtype)
            keep[0, 0, order[:c]] = 0
            filled = Interpolate()(x[b : b + 1], "b c t", keep)
            r.append(score_one(model, torch.where(keep.bool(), x[b : b + 1], filled)[0], int(k[b])))
        rows.append(r)
    torch.testing.assert_close(ours, torch.tensor(rows, dtype=torch.float64))


def test_auc_is_trapezoid_on_unit_interval():
    c = torch.randn(3, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = torch.tensor([np.trapezoid(r.numpy(), np.linspace(0, 1, 11)) for r in c])
    torch.testing.assert_close(M.auc(c), ref)
    xplique = ((c[:, :-1] + c[:, 1:]) / 2).mean(1)  # Xplique's mean of trapezoids
    torch.testing.assert_close(M.auc(c), xplique)


def test_rise_blur_matches_scipy_kernel_and_conv2d():
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    k2 = ndimage.gaussian_filter(impulse, 5)  # RISE's kernel, exactly as its code builds it
    k1 = M.RiseBlur().kernel()
    np.testing.assert_allclose(np.outer(k1, k1), k2, rtol=1e-12, atol=1e-15)
    x = make_input("image", batch=2)
    x = torch.nn.functional.interpolate(x, size=(16, 16))
    ours = M.RiseBlur()(x, "b c h w")
    kern = torch.tensor(k2).expand(3, 1, 11, 11)
    ref = torch.nn.functional.conv2d(x, kern, padding=5, groups=3)  # RISE: conv2d(x, K, padding=5)
    torch.testing.assert_close(ours, ref)


def test_noisy_linear_imputation_signal_is_linear_interpolation():
    x = make_input("signal", batch=2)
    keep = (torch.rand(2, 1, 20, generator=torch.Generator().manual_seed(0)) > 0.6).double()
    keep[..., 3] = 1
    ours = M.NoisyLinearImputation(noise=0.0)(x, "b c t", keep)
    ref = torch.where(keep.bool(), x, Interpolate()(x, "b c t", keep))
    torch.testing.assert_close(ours, ref, rtol=1e-8, atol=1e-8)


def test_noisy_linear_imputation_float32_rows_converging_at_different_speeds():
    """A row that converges in one CG step must stay finite while a long gap keeps iterating
    (float32; before the fix the converged row's alpha/beta blew up to NaN)."""
    t = 300
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 1, t, generator=g)
    keep = torch.ones(3, 1, t, dtype=torch.bool)
    keep[0, 0, t // 3] = False  # one removed cell: converges at once
    keep[1] = torch.rand(1, t, generator=g) > 0.5
    keep[2, 0, 1:-1] = False  # one long gap: many iterations
    ours = M.NoisyLinearImputation(noise=0.0)(x, "b c t", keep.float())
    assert torch.isfinite(ours).all()
    ref = torch.where(keep, x.double(), Interpolate()(x.double(), "b c t", keep.double()))
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-4)


def test_noisy_linear_imputation_image_solves_road_system():
    """2-D: removed pixels are the 1/6-1/12 weighted mean of their neighbours (dense solve)."""
    x = make_input("image", batch=1)[:, :1]
    h = w = 8
    keep = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(4)) > 0.5
    ours = M.NoisyLinearImputation(noise=0.0)(x, "b c h w", keep.double())
    idx = {p: i for i, p in enumerate(itertools.product(range(h), range(w)))}
    A = np.zeros((h * w, h * w))
    rhs = np.zeros(h * w)
    xv = x[0, 0].numpy()
    kv = keep[0, 0].numpy()
    for (i, j), r in idx.items():
        if kv[i, j]:
            A[r, r] = 1
            rhs[r] = xv[i, j]
            continue
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                continue
            wgt = 1 / 6 if di == 0 or dj == 0 else 1 / 12
            A[r, r] += wgt
            A[r, idx[(i + di, j + dj)]] -= wgt
    ref = np.linalg.solve(A, rhs).reshape(h, w)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, rtol=1e-7, atol=1e-8)


def test_road_deletion_is_reproducible_with_generator():
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn(2, 1, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    runs = [
        M.deletion_curve(
            model,
            x,
            a,
            1,
            steps=4,
            progress=False,
            substrate=M.NoisyLinearImputation(generator=torch.Generator().manual_seed(9)),
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert M.Deletion(substrate=M.NoisyLinearImputation()).is_stochastic


def test_faithfulness_correlation_matches_loop():
    model = cnn(1)
    x = make_input("signal", batch=2)
    a = torch.randn(2, 3, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    k = torch.tensor([1, 2])
    n_runs, size = 6, 7
    ours = M.faithfulness_correlation(
        model, x, a, k, n_runs=n_runs, subset_size=size, generator=torch.Generator().manual_seed(11)
    )
    g = torch.Generator().manual_seed(11)
    ref = []
    for b in range(2):
        subsets = torch.rand((n_runs, 60), generator=g).argsort(-1)[:, :size]  # documented draw order
        f0 = score_one(model, x[b], int(k[b]))
        drops, sums = [], []
        for s in subsets:
            xr = x[b].clone().flatten()
            xr[s] = 0.0
            drops.append(f0 - score_one(model, xr.reshape(x[b].shape), int(k[b])))
            sums.append(float(a[b].flatten()[s].sum()))
        ref.append(np.corrcoef(sums, drops)[0, 1])
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float64))


def test_infidelity_matches_loop():
    model = cnn(2)
    x = make_input("image", batch=2)
    a = torch.randn_like(x)
    k = torch.tensor([0, 3])
    pert = torch.randn((2, 5, *x.shape[1:]), generator=torch.Generator().manual_seed(2), dtype=x.dtype) * 0.1
    for normalize in (False, True):
        ours = M.infidelity(model, x, a, k, n_perturbations=5, perturbation=pert, normalize=normalize)
        ref = []
        for b in range(2):
            f0 = score_one(model, x[b], int(k[b]))
            dots = [float((pert[b, i] * a[b]).sum()) for i in range(5)]
            diffs = [f0 - score_one(model, x[b] - pert[b, i], int(k[b])) for i in range(5)]
            beta = np.mean(np.multiply(dots, diffs)) / np.mean(np.square(dots)) if normalize else 1.0
            ref.append(np.mean([(beta * d - f) ** 2 for d, f in zip(dots, diffs, strict=True)]))
        torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float64))


def test_default_infidelity_noise_is_seeded():
    model = cnn(1)
    x = make_input("signal")
    a = sl.Gradient(model).explain(x, 1)
    r = [M.infidelity(model, x, a, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    torch.testing.assert_close(r[0], r[1], rtol=0, atol=0)


@pytest.mark.parametrize("normalize", [False, True])
def test_sensitivity_matches_loop(normalize):
    model = cnn(1)
    x = make_input("signal", batch=2)
    expl = sl.InputXGradient(model)
    n, radius = 4, 0.05
    ours_max = M.max_sensitivity(
        expl,
        x,
        1,
        n_perturbations=n,
        radius=radius,
        normalize=normalize,
        generator=torch.Generator().manual_seed(3),
    )
    ours_avg = M.avg_sensitivity(
        expl,
        x,
        1,
        n_perturbations=n,
        radius=radius,
        normalize=normalize,
        generator=torch.Generator().manual_seed(3),
    )
    noise = torch.rand((2 * n, 3, 20), generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    maxes, means = [], []
    for b in range(2):
        ref = expl.explain(x[b : b + 1], 1).values
        s = []
        for i in range(n):
            xp = x[b : b + 1] + (2 * noise[b * n + i] - 1) * radius
            s.append(
                float((expl.explain(xp, 1).values - ref).norm()) / (float(ref.norm()) if normalize else 1.0)
            )
        maxes.append(max(s))
        means.append(sum(s) / n)
    torch.testing.assert_close(ours_max, torch.tensor(maxes, dtype=torch.float64))
    torch.testing.assert_close(ours_avg, torch.tensor(means, dtype=torch.float64))


def test_sparseness_and_complexity_match_loop():
    a = torch.randn(3, 2, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a[2] = 0
    a[1, 0, :3] = 0
    gini, ent = [], []
    for b in range(3):
        v = sorted(abs(float(t)) for t in a[b].flatten())
        n, tot = len(v), sum(v)
        gini.append(
            sum((2 * (i + 1) - n - 1) * vi for i, vi in enumerate(v)) / (n * tot) if tot else float("nan")
        )
        ent.append(-sum((vi / tot) * math.log(vi / tot) for vi in v if vi > 0) if tot else float("nan"))
    torch.testing.assert_close(M.sparseness(a), torch.tensor(gini, dtype=torch.float64), equal_nan=True)
    torch.testing.assert_close(M.complexity(a), torch.tensor(ent, dtype=torch.float64), equal_nan=True)
    one_hot = torch.zeros(1, 1, 10, dtype=torch.float64)
    one_hot[0, 0, 3] = -2
    assert float(M.sparseness(one_hot)) == pytest.approx(0.9)  # (n-1)/n for a single spike
    assert float(M.complexity(one_hot)) == 0.0
    assert float(M.complexity(torch.ones(1, 1, 8))) == pytest.approx(math.log(8))


@pytest.mark.parametrize("kind", KINDS)
def test_localisation_matches_loop(kind):
    g = torch.Generator().manual_seed(7)
    x = make_input(kind, batch=4)
    a = torch.randn(x.shape[0], 1, *x.shape[2:], generator=g, dtype=torch.float64)
    mask = torch.rand(a.shape, generator=g) > 0.7
    mask[3] = False  # empty mask -> NaN
    a[1].view(-1)[0] = 10  # a known maximum
    sp = a.shape[2:]
    pg, pg_tol, energy, mass, rank, iou = [], [], [], [], [], []
    tol = 1.5
    for b in range(4):
        av, mv = a[b, 0], mask[b, 0]
        if not mv.any():
            for lst in (pg, pg_tol, energy, mass, rank, iou):
                lst.append(float("nan"))
            continue
        flat = av.flatten().tolist()
        m_flat = mv.flatten().tolist()
        top = max(flat)
        maxima = [i for i, v in enumerate(flat) if v == top]
        pg.append(float(any(m_flat[i] for i in maxima)))
        inside = [np.unravel_index(i, sp) for i, v in enumerate(m_flat) if v]
        hit = any(math.dist(np.unravel_index(i, sp), p) <= tol for i in maxima for p in inside)
        pg_tol.append(float(hit))
        pos = [max(v, 0) for v in flat]
        energy.append(sum(p for p, m in zip(pos, m_flat, strict=True) if m) / sum(pos))
        mass.append(sum(v for v, m in zip(flat, m_flat, strict=True) if m) / sum(flat))
        kk = sum(m_flat)
        order = ranked(av.flatten())
        rank.append(sum(m_flat[i] for i in order[:kk]) / kk)
        q = max(1, round(0.2 * len(flat)))
        region = set(order[:q])
        gt = {i for i, m in enumerate(m_flat) if m}
        iou.append(len(region & gt) / len(region | gt))
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(M.pointing_game(a, mask), t(pg), equal_nan=True)
    torch.testing.assert_close(M.pointing_game(a, mask, tolerance=tol), t(pg_tol), equal_nan=True)
    torch.testing.assert_close(M.energy_pointing_game(a, mask), t(energy), equal_nan=True)
    torch.testing.assert_close(M.relevance_mass(a, mask), t(mass), equal_nan=True)
    torch.testing.assert_close(M.relevance_rank_accuracy(a, mask), t(rank), equal_nan=True)
    torch.testing.assert_close(M.top_q_iou(a, mask, q=0.2), t(iou), equal_nan=True)


def test_completeness_gap_closed_form():
    w = torch.randn(4, 3, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    from toy_models import Linear

    model = Linear(w).eval()
    x = make_input("signal", batch=2)
    exact = sl.InputXGradient(model).explain(x, 2)  # x * w: complete for a linear model, baseline 0
    gap = M.completeness_gap(model, x, exact, 2)
    torch.testing.assert_close(gap, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    shifted = M.completeness_gap(model, x, exact.values + 0.01, 2)
    torch.testing.assert_close(shifted, torch.full((2,), 0.01 * 60, dtype=torch.float64))
    base = torch.randn_like(x)
    gap = M.completeness_gap(model, x, exact.values, 2, baseline=base)
    torch.testing.assert_close(gap, (w[2] * base).flatten(1).sum(1))


def test_random_logit_matches_loop():
    stats = pytest.importorskip("scipy.stats")
    model = cnn(1)
    x = make_input("signal", batch=3)
    expl = sl.Gradient(model)
    ours = M.random_logit(expl, x, torch.tensor([0, 1, 2]), generator=torch.Generator().manual_seed(4))
    off = torch.randint(1, 4, (3,), generator=torch.Generator().manual_seed(4))
    for b in range(3):
        other = (b + int(off[b])) % 4
        assert other != b
        ra = expl.explain(x[b : b + 1], b).values.flatten().numpy()
        rb = expl.explain(x[b : b + 1], other).values.flatten().numpy()
        assert float(ours[b]) == pytest.approx(stats.spearmanr(ra, rb)[0], rel=1e-10)


def test_rankdata_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    from salience.metrics._stats import rankdata

    a = torch.randint(0, 5, (3, 17), generator=torch.Generator().manual_seed(0)).double()
    np.testing.assert_allclose(rankdata(a).numpy(), stats.rankdata(a.numpy(), axis=1))
