"""ComplexCepstrum and ComplexCepstrumIG: the reference transform and inverse written out here,
float64 round trips, phase unwrapping, the domain kit, IG completeness within 100 steps, and
parity with the reference package (``cross-domain-saliency-maps``) when it is installed."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

import salience as sl
from salience.domains.cepstrum import ComplexCepstrum, ComplexCepstrumIG, unwrapped_phase
from salience.testing import check_domain

D = torch.float64
EPS = 1e-7


def _x(b=3, c=2, t=32, seed=0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, t, generator=g, dtype=D)
    x[0, 0] -= 2.0  # a negative mean: the DC bin on the negative real axis (phase pi)
    return x.to(dtype)


def _smooth(c=2, t=32, seed=3):
    """A smooth model (tanh, softplus): completeness is then limited by the quadrature alone."""
    torch.manual_seed(seed)
    return (
        torch.nn.Sequential(
            torch.nn.Conv1d(c, 6, 5, padding=2),
            torch.nn.Tanh(),
            torch.nn.Conv1d(6, 6, 5, padding=2),
            torch.nn.Softplus(),
            torch.nn.Flatten(),
            torch.nn.Linear(6 * t, 3),
        )
        .to(D)
        .eval()
    )


def _seed_forward(x):
    """Kechris et al.'s transform, written out: ifft(log(fft(x) + eps)), principal branch."""
    return torch.fft.ifft(torch.log(torch.fft.fft(x, dim=-1) + EPS), dim=-1)


# ---------------------------------------------------------------- transform and inverse
@pytest.mark.parametrize("t", [32, 33])
def test_forward_is_the_reference_transform(t):
    x = _x(t=t)
    z = ComplexCepstrum(phase="principal", origin="impulse").fit(x).forward(x)
    assert z.shape == (3, 2, t, 2) and z.dtype == D
    torch.testing.assert_close(torch.view_as_complex(z.contiguous()), _seed_forward(x), rtol=0, atol=1e-12)
    # origin="zero_signal" (default): the zero signal's cepstrum, log(eps) at quefrency 0, removed
    shifted = ComplexCepstrum(phase="principal").fit(x).forward(x)
    diff = z - shifted
    assert torch.allclose(
        diff[..., 0, 0], torch.full_like(diff[..., 0, 0], math.log(EPS)), rtol=0, atol=1e-12
    )
    diff[..., 0, 0] = 0
    assert diff.abs().max() < 1e-12
    zero = ComplexCepstrum().fit(x).forward(torch.zeros_like(x))
    assert zero.abs().max() < 1e-12  # zero coefficients are the zero signal


@pytest.mark.parametrize("phase", ["principal", "unwrapped"])
@pytest.mark.parametrize("origin", ["zero_signal", "impulse"])
@pytest.mark.parametrize("t", [16, 31])
def test_round_trip_float64_exact(phase, origin, t):
    x = _x(t=t, seed=t)
    d = ComplexCepstrum(phase=phase, origin=origin).fit(x)
    z = d.forward(x)
    torch.testing.assert_close(d.inverse(z), x, rtol=0, atol=1e-12)
    # the inverse is the reference's, without the eps it leaves at the first sample
    c = torch.view_as_complex(z.contiguous())
    if origin == "zero_signal":
        c = c.clone()
        c[..., 0] += math.log(EPS)
    seed_inverse = torch.fft.ifft(torch.exp(torch.fft.fft(c, dim=-1)), dim=-1).real
    expected = x.clone()
    expected[..., 0] += EPS
    torch.testing.assert_close(seed_inverse, expected, rtol=0, atol=1e-12)


def test_zero_coefficients_are_the_impulse_with_origin_impulse():
    x = _x()
    d = ComplexCepstrum(origin="impulse").fit(x)
    x0 = d.inverse(torch.zeros_like(d.forward(x)))
    impulse = torch.zeros_like(x)
    impulse[..., 0] = 1 - EPS
    torch.testing.assert_close(x0, impulse, rtol=0, atol=1e-15)


def test_other_axis_and_layout():
    x = _x().transpose(1, 2).contiguous()  # b t c
    d = ComplexCepstrum(layout="b t c").fit(x)
    z = d.forward(x)
    assert z.shape == (3, 32, 2, 2) and str(d.output_layout("b t c")) == "b q r c"
    torch.testing.assert_close(d.inverse(z), x, rtol=0, atol=1e-12)
    ref = ComplexCepstrum().fit(x.transpose(1, 2)).forward(x.transpose(1, 2).contiguous())
    torch.testing.assert_close(z, ref.permute(0, 2, 3, 1), rtol=0, atol=1e-12)


def test_float32_in_float32_out():
    x = _x(dtype=torch.float32)
    d = ComplexCepstrum().fit(x)
    z = d.forward(x)
    assert z.dtype == torch.float32 and d.inverse(z).dtype == torch.float32
    torch.testing.assert_close(d.inverse(z), x, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- the unwrapped phase
@pytest.mark.parametrize("t", [64, 65])
def test_unwrapped_phase_matches_numpy_and_is_odd(t):
    x = _x(b=4, c=1, t=t, seed=5)
    spec = torch.fft.fft(x, dim=-1) + EPS
    phase = unwrapped_phase(spec)
    ang = torch.angle(spec)
    turns = (phase - ang) / (2 * math.pi)
    assert (turns - turns.round()).abs().max() < 1e-9  # the same spectrum under exp
    half = t // 2 + 1
    np.testing.assert_allclose(
        phase[..., :half].numpy(), np.unwrap(ang[..., :half].numpy(), axis=-1), atol=1e-12
    )
    assert (phase[..., :half].diff(dim=-1).abs() <= math.pi + 1e-12).all()
    k = torch.arange(1, (t + 1) // 2)
    torch.testing.assert_close(phase[..., t - k], -phase[..., k], rtol=0, atol=0)
    assert (ang[..., :half].diff(dim=-1).abs() > math.pi).any()  # there was something to unwrap


@pytest.mark.parametrize("phase", ["principal", "unwrapped"])
def test_imaginary_part_comes_from_dc_and_nyquist_only(phase):
    # every other bin's phase is odd in k, so its share of the cepstrum is real; the DC and
    # Nyquist bins are real with a phase that is a multiple of pi: Im c[q] = (p0 + pN (-1)^q) / T
    t = 32
    x = _x(b=4, c=1, t=t, seed=11)
    spec = torch.fft.fft(x, dim=-1) + EPS
    p = unwrapped_phase(spec) if phase == "unwrapped" else torch.angle(spec)
    z = ComplexCepstrum(phase=phase).fit(x).forward(x)
    sign = (-1.0) ** torch.arange(t, dtype=D)
    expected = (p[..., :1] + p[..., t // 2 : t // 2 + 1] * sign) / t
    torch.testing.assert_close(z[..., 1], expected, rtol=0, atol=1e-12)
    # a minimum-phase pulse (positive DC and Nyquist, no wrap): a real cepstrum, equal in both
    y = torch.zeros(1, 1, t, dtype=D)
    y[..., 0], y[..., 1], y[..., 2] = 1.0, 0.5, 0.2
    c = ComplexCepstrum(phase=phase).fit(y).forward(y)
    assert c[..., 1].abs().max() < 1e-12
    torch.testing.assert_close(c, ComplexCepstrum(phase="principal").fit(y).forward(y), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- the kit
@pytest.mark.parametrize("phase", ["principal", "unwrapped"])
@pytest.mark.parametrize("origin", ["zero_signal", "impulse"])
def test_check_domain_kit(phase, origin):
    check_domain(ComplexCepstrum(phase=phase, origin=origin))


def test_reduce_expand_coordinates():
    x = _x()
    d = ComplexCepstrum(fs=8.0).fit(x)
    v = torch.randn(3, 2, 32, 2, dtype=D)
    out, layout = d.reduce(v, sl.Layout("b c q r"))
    assert str(layout) == "b c q" and torch.equal(out, v.sum(-1))
    back, layout2 = d.expand(out, layout)
    assert (
        str(layout2) == "b c q r"
        and torch.allclose(back.sum(-1), out)
        and torch.equal(back[..., 0], back[..., 1])
    )
    q = d.coordinates()["q"]
    torch.testing.assert_close(q, torch.arange(32, dtype=D) / 8.0)


def test_errors():
    with pytest.raises(sl.ParameterError, match="'phase'"):
        ComplexCepstrum(phase="wrapped")
    with pytest.raises(sl.ParameterError, match="'origin'"):
        ComplexCepstrum(origin="zero")
    with pytest.raises(sl.ParameterError, match="'eps'"):
        ComplexCepstrum(eps=0.0)
    with pytest.raises(sl.ShapeError, match="real/imaginary"):
        ComplexCepstrum().fit(_x()).inverse(torch.zeros(3, 2, 32, 3, dtype=D))
    with pytest.raises(sl.NotFittedError):
        ComplexCepstrum().coordinates()


# ---------------------------------------------------------------- completeness within 100 steps
@pytest.mark.parametrize("phase", ["principal", "unwrapped"])
def test_completeness_within_100_steps(phase):
    model, x = _smooth(), _x()
    attr = ComplexCepstrumIG(model, phase=phase, n_steps=100).explain(x, target=1)
    assert attr.values.shape == (3, 2, 32) and str(attr.layout) == "b c q"
    with torch.no_grad():
        f = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]  # the reference's baseline x' = 0
    gap = attr.values.sum((1, 2)) - f
    torch.testing.assert_close(attr.delta, gap, rtol=0, atol=1e-10)
    assert (gap.abs() <= 1e-3 * f.abs()).all(), (gap, f)  # measured: ~1e-14 relative


def test_reference_rule_does_not_converge_in_100_steps():
    # the reference's right Riemann sum on the same path: the spectrum grows as eps**(1-a) |X|**a,
    # ~16 e-folds, so the error is about 16 / (2 n) of f(x) - f(0)
    model, x = _smooth(), _x()
    attr = ComplexCepstrumIG(model, n_steps=100, rule="riemann_right").explain(x, target=1)
    with torch.no_grad():
        f = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    assert (attr.delta.abs() > 1e-2 * f.abs()).any()
    # both integrate the same path: the right Riemann sum converges to the same attributions
    fine = ComplexCepstrumIG(model, n_steps=3000, rule="riemann_right").explain(x, target=1).values
    gl = ComplexCepstrumIG(model, n_steps=100).explain(x, target=1).values
    scale = float(gl.abs().max())
    assert float((fine - gl).abs().max()) < 5e-3 * scale


def test_domain_path_is_batch_and_sample_consistent():
    model, x = _smooth(), _x()
    ig = ComplexCepstrumIG(model, n_steps=20)
    full = ig.explain(x, target=1).values
    for i in range(x.shape[0]):
        torch.testing.assert_close(
            ig.explain(x[i : i + 1], target=1).values, full[i : i + 1], rtol=1e-10, atol=1e-12
        )


# ---------------------------------------------------------------- parity with the reference
def _cdsm():
    return pytest.importorskip("cross_domain_saliency_maps.torch_ig.cross_domain_integrated_gradients")


@pytest.mark.parity
def test_transform_parity_with_reference_domain():
    mod = pytest.importorskip("cross_domain_saliency_maps.torch_ig.domain_transforms")
    ref = mod.ComplexCepstrumDomain(device=torch.device("cpu"), dtype=D)
    x = _x()
    d = ComplexCepstrum(phase="principal", origin="impulse").fit(x)
    z = torch.view_as_complex(d.forward(x).contiguous())
    torch.testing.assert_close(z, ref.forward_transform(x), rtol=0, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its complex -> float32 cast warns
        theirs = ref.inverse_transform(z)  # float32, with eps left at the first sample
    ours = d.inverse(d.forward(x))
    ours[..., 0] += EPS
    torch.testing.assert_close(theirs, ours.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parity
def test_ig_parity_with_reference():
    # the reference's rule (right Riemann), its baseline (the zero signal), float32, one sample
    # per call; its inverse leaves eps = 1e-7 in each reconstruction, ours does not
    cdsm = _cdsm()
    rule, n = "riemann_right", 16
    model = _smooth().float()
    x = _x(dtype=torch.float32)
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(x.shape[0]):
            ref = cdsm.ComplexCepstrumIG(copy.deepcopy(model), n, 1, torch.device("cpu"))
            xi = x[i : i + 1].numpy()
            theirs.append(ref.run(xi, np.zeros_like(xi)).detach()[0])
    theirs_t = torch.stack(theirs)
    ours = ComplexCepstrumIG(model, phase="principal", n_steps=n, rule=rule).explain(x, target=1).values
    scale = float(theirs_t.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, theirs_t, rtol=1e-4, atol=1e-5 * scale)


def _relu(c=2, t=32, seed=3):
    """_smooth with ReLUs: the model has kinks."""
    torch.manual_seed(seed)
    return (
        torch.nn.Sequential(
            torch.nn.Conv1d(c, 6, 5, padding=2),
            torch.nn.ReLU(),
            torch.nn.Conv1d(6, 6, 5, padding=2),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(6 * t, 3),
        )
        .to(D)
        .eval()
    )


def test_relu_gap_is_set_by_the_kinks_not_by_the_rule():
    """Why ReLU models get a loose completeness tolerance (tests/test_domains_core.py: 1e-2 at 32
    trapezoid steps) and smooth ones 1e-3 within 100 steps.

    Along the cepstral path the integrand grad f(x(a)) . x'(a) jumps wherever the curved path
    crosses a ReLU's kink, and those crossings crowd into the last ~1/16 of the path (the spectrum
    grows through ~16 e-folds, eps**(1 - a) |X|**a). No fixed-node rule converges faster than
    ~1/n on a jump, and the error depends on where the jumps fall between the nodes, so it is
    erratic in n. Measured (float64, this model, _x(), relative to |f(x) - f(0)|, worst of 3
    samples): Gauss-Legendre 2.9e-1 at 32 steps, 4.7e-2 at 100 and 256, 5.9e-3 at 512, 1.4e-2
    at 1024;
    time-domain IG on the same model (a straight path, kinks spread over it) 1.8e-1 at 32,
    1.4e-3 at 1024. The same path on the same inputs with a smooth model: ~1e-14 at 100 steps
    (test_completeness_within_100_steps), so the path itself is not the cause.
    """
    x = _x()
    relu, smooth = _relu(), _smooth()

    def worst(model, n):
        with torch.no_grad():
            f = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
        attr = ComplexCepstrumIG(model, n_steps=n).explain(x, target=1)
        return float((attr.delta.abs() / f.abs()).max())

    assert worst(smooth, 32) < 1e-6  # the path converges spectrally on a smooth model
    coarse, fine = worst(relu, 32), worst(relu, 512)
    assert coarse > 1e-2  # kinks: far from spectral convergence
    assert fine < coarse / 10 and fine < 1e-2  # but it does converge, about like 1/n
