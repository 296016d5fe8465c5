"""Families working together: perturbation and modified backprop inside domains, wrappers around
wrappers, metrics on real domains, CAMs refused in domains, layer methods with non-class targets.

Analytic models in float64 with closed-form answers where there is one; tiny tensors throughout.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import salience as sl
from salience.metrics import Deletion, Insertion, Sparseness, deletion_curve, insertion_curve
from toy_models import cnn

T = 16
K_BIN = 3  # the frequency bin the analytic models read


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class BinPower(nn.Module):
    """Outputs (|X_0[k]|^2, X_0[0].real): the power of bin k of channel 0, and its mean."""

    def __init__(self, k: int = K_BIN) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x[:, 0], dim=-1)
        return torch.stack([spec[:, self.k].abs() ** 2, spec[:, 0].real], 1)


# a square, well-conditioned mixing: 2 channels, 2 sources
_A = torch.tensor([[1.0, 0.4], [-0.3, 1.2]], dtype=torch.float64)
_W = torch.linalg.inv(_A)


class SourceEnergy(nn.Module):
    """f(x) = sum_t s_1(t)^2 with s = W x: the energy of independent source 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.einsum("kc,bct->bkt", _W.to(x), x)
        return (s[:, 1] ** 2).sum(-1, keepdim=True)


def _signal(b: int = 2, c: int = 1, seed: int = 3) -> torch.Tensor:
    return torch.randn(b, c, T, generator=_gen(seed), dtype=torch.float64)


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


# --------------------------------------------------------------------- 1. perturbation in domains
def test_occlusion_of_frequency_bins_is_the_bin_power():
    x, model = _signal(), BinPower().eval()
    attr = sl.InDomain(sl.Occlusion(model, window={"f": 1}, progress=False), sl.Fourier()).explain(
        x, target=0
    )
    assert attr.layout == "b c f" and attr.values.shape == (2, 1, T // 2 + 1)
    expected = torch.zeros(2, 1, T // 2 + 1, dtype=torch.float64)
    expected[:, 0, K_BIN] = torch.fft.rfft(x[:, 0], dim=-1)[:, K_BIN].abs() ** 2
    torch.testing.assert_close(attr.values, expected, rtol=1e-10, atol=1e-10)
    assert isinstance(attr.domain, sl.Fourier)


def test_rise_over_frequency_bins_peaks_at_the_read_bin():
    x, model = _signal(), BinPower().eval()
    rise = sl.RISE(model, n_masks=64, cells={"f": T // 2 + 1}, shift=False, generator=_gen(), progress=False)
    attr = sl.InDomain(rise, sl.Fourier()).explain(x, target=0)
    assert attr.layout == "b c f" and attr.values.shape == (2, 1, T // 2 + 1)
    # score(M) = M_k |X_k|^2, so S_f = |X_k|^2 #(kept f and k) / (N p): largest at f = k
    assert (attr.values[:, 0].argmax(-1) == K_BIN).all()
    power = torch.fft.rfft(x[:, 0], dim=-1)[:, K_BIN].abs() ** 2
    assert (attr.values[:, 0, K_BIN] / power - 1).abs().max() < 0.3  # #kept(k) / (N p) ~ 1


def test_default_rise_masks_do_not_split_real_and_imaginary_parts():
    x, model = _signal(), BinPower().eval()
    attr = sl.InDomain(sl.RISE(model, n_masks=8, generator=_gen(), progress=False), sl.Fourier()).explain(
        x, target=0
    )
    assert attr.layout == "b c f" and attr.values.shape == (2, 1, T // 2 + 1)
    # unreduced: one value per bin, shared by its real and imaginary coordinates
    raw = sl.InDomain(sl.RISE(model, n_masks=8, generator=_gen(), progress=False), sl.Fourier(), reduce=False)
    assert raw.explain(x, target=0).values.shape == (2, 1, T // 2 + 1, 1)


def test_masker_names_axes_of_the_domain_layout():
    x, model = _signal(), BinPower().eval()
    rise = sl.RISE(model, n_masks=4, cells={"t": 4}, generator=_gen(), progress=False)
    with pytest.raises(sl.ParameterError, match="'t'"):
        sl.InDomain(rise, sl.Fourier()).explain(x, target=0)


def test_occlusion_of_ica_components_is_the_source_energy():
    x = torch.randn(2, 2, T, generator=_gen(5), dtype=torch.float64)
    model = SourceEnergy().eval()
    ica = sl.ICA.from_matrices(_A)
    attr = sl.InDomain(sl.Occlusion(model, window={"k": 1}, progress=False), ica).explain(x, target=0)
    assert attr.layout == "b k t" and attr.values.shape == (2, 2, 1)
    s = torch.einsum("kc,bct->bkt", _W, x)
    expected = torch.stack([torch.zeros(2, dtype=torch.float64), (s[:, 1] ** 2).sum(-1)], 1)[..., None]
    torch.testing.assert_close(attr.values, expected, rtol=1e-10, atol=1e-10)


def test_mask_update_over_frequency_bins():
    x, model = _signal(), BinPower().eval()
    mu = sl.MaskUpdate(model, n_steps=3, cells={"f": 3}, link="sigmoid", generator=_gen(), progress=False)
    attr = sl.InDomain(mu, sl.Fourier()).explain(x, target=0)
    assert attr.layout == "b c f" and attr.values.shape == (2, 1, T // 2 + 1)
    assert torch.isfinite(attr.values).all()


# --------------------------------------------------------------- 2. modified backprop x wrappers
def test_guided_backprop_in_fourier_is_the_chain_rule_of_its_input_map():
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(1), dtype=torch.float64)
    gbp_x = sl.GuidedBackprop(model).explain(x, target=1).values
    attr = sl.InDomain(sl.GuidedBackprop(model), sl.Fourier()).explain(x, target=1)
    # the domain is linear: the map in z is J_inverse^T (map in x), summed over real/imag parts
    d = sl.Fourier().bind(x)
    z = d.forward(x).requires_grad_(True)
    (gz,) = torch.autograd.grad((d.inverse(z) * gbp_x).sum(), z)
    assert attr.layout == "b c f"
    torch.testing.assert_close(attr.values, gz.sum(-1), rtol=1e-9, atol=1e-12)


def test_smoothgrad_of_lrp_without_noise_is_lrp():
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(1), dtype=torch.float64)
    plain = sl.LRP(model).explain(x, target=2).values
    smooth = (
        sl.SmoothGrad(sl.LRP(model), n_samples=3, sigma=0.0, generator=_gen()).explain(x, target=2).values
    )
    torch.testing.assert_close(smooth, plain, rtol=1e-10, atol=1e-12)


def _cr(inner):
    return sl.ClassRelevant(inner, classes=[0, 2], normalize=True)


def test_class_relevant_inside_and_around_domains():
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(1), dtype=torch.float64)
    inside = sl.InDomain(_cr(sl.GuidedBackprop(model)), sl.Fourier()).explain(x, target=1)
    around = _cr(sl.InDomain(sl.IntegratedGradients(model, n_steps=4), sl.Fourier())).explain(x, target=1)
    for attr in (inside, around):
        assert attr.layout == "b c f" and attr.values.shape == (2, 3, T // 2 + 1)
        assert isinstance(attr.domain, sl.Fourier) and torch.isfinite(attr.values).all()
        assert attr.target.tolist() == [1, 1]


def test_smoothgrad_of_class_relevant_ig_in_lossy_ica():
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(1), dtype=torch.float64)
    ica = sl.ICA.from_matrices(torch.randn(3, 2, generator=_gen(2), dtype=torch.float64))
    ex = sl.SmoothGrad(
        sl.InDomain(_cr(sl.IntegratedGradients(model, n_steps=2)), ica), n_samples=2, generator=_gen()
    )
    attr = ex.explain(x, target=1)
    assert attr.layout == "b k t" and attr.values.shape == (2, 2, T)
    assert torch.isfinite(attr.values).all()
    assert attr.domain is not None and attr.domain.exact is False


# ----------------------------------------------------------------------- 3. metrics, real domains
def test_deletion_and_insertion_over_frequency_bins():
    x, model = _signal(), BinPower().eval()
    attr = sl.FourierIG(model, n_steps=4, rule="riemann_trapezoid").explain(x, target=0)
    power = torch.fft.rfft(x[:, 0], dim=-1)[:, K_BIN].abs() ** 2
    # IG of a quadratic is exact with the trapezoid rule: the bin-k value is its power
    torch.testing.assert_close(attr.values[:, 0, K_BIN], power, rtol=1e-10, atol=1e-12)
    n = T // 2 + 1
    dele = deletion_curve(model, x, attr, step=1, progress=False)  # domain from the Attribution
    ins = insertion_curve(model, x, attr, step=1, progress=False)
    assert dele.shape == ins.shape == (2, n + 1)
    torch.testing.assert_close(dele[:, 0], power)
    torch.testing.assert_close(dele[:, 1:], torch.zeros(2, n, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(ins[:, 0], torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(ins[:, 1:], power[:, None].expand(2, n))
    explicit = deletion_curve(model, x, attr.values, 0, domain=sl.Fourier(), step=1, progress=False)
    torch.testing.assert_close(explicit, dele)


def test_deletion_over_ica_components():
    x = torch.randn(2, 2, T, generator=_gen(5), dtype=torch.float64)
    model = SourceEnergy().eval()
    attr = sl.ICAIG(model, sl.ICA.from_matrices(_A), n_steps=2, rule="riemann_trapezoid").explain(x, target=0)
    assert attr.layout == "b k t" and attr.values.shape == (2, 2, T)
    # every sample of source 1 ranks first: removing T units removes the source
    curve = deletion_curve(model, x, attr, step=T, progress=False)
    energy = (torch.einsum("kc,bct->bkt", _W, x)[:, 1] ** 2).sum(-1)
    torch.testing.assert_close(
        curve, torch.stack([energy, 0 * energy, 0 * energy], 1), rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(Deletion(step=T, progress=False)(model, x, attr), sl.metrics.auc(curve))


def test_deletion_over_wavelet_bands_removes_whole_bands():
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(4), dtype=torch.float64)
    attr = sl.WaveletIG(model, wavelet="haar", levels=2, n_steps=2).explain(x, target=1)
    assert attr.layout == "b c band" and attr.values.shape == (2, 3, 3)
    curve = deletion_curve(model, x, attr, step=1, progress=False)
    # the same as ranking the coefficients, each carrying an even share of its band (4, 8, 4)
    sizes = torch.tensor([4, 8, 4])
    per_coef = (attr.values / sizes).repeat_interleave(sizes, dim=-1)
    ref = deletion_curve(model, x, per_coef, 1, domain=sl.Wavelet("haar", levels=2), step=1, progress=False)
    torch.testing.assert_close(curve, ref)


def test_deletion_of_full_spectrum_reports_matches_the_onesided_one():
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(4), dtype=torch.float64)
    full = sl.FourierIG(model, output="full", n_steps=3).explain(x, target=1)
    half = sl.FourierIG(model, n_steps=3).explain(x, target=1)
    assert full.values.shape == (2, 3, T)
    kw = dict(steps=6, progress=False)
    torch.testing.assert_close(deletion_curve(model, x, full, **kw), deletion_curve(model, x, half, **kw))


@pytest.mark.parametrize(
    "domain",
    [
        sl.Fourier(),
        sl.ICA.from_matrices(torch.tensor([[1.0], [0.5]], dtype=torch.float64), torch.tensor([0.1, -0.2])),
    ],
    ids=["Fourier", "ICA-lossy"],
)
def test_completeness_of_ig_in_a_domain(domain):
    x = torch.randn(2, 2, T, generator=_gen(6), dtype=torch.float64)
    model = nn.Sequential(BinPower(), nn.Linear(2, 1).double()).eval()
    attr = sl.InDomain(sl.IntegratedGradients(model, n_steps=2, rule="riemann_trapezoid"), domain).explain(
        x, target=0
    )
    assert attr.delta.abs().max() < 1e-10  # quadratic model: the trapezoid rule is exact
    # delta is the gap to f(x) - f(inverse(0) + residual), the baseline in z
    d = domain.bind(x)
    x0 = d.inverse(torch.zeros_like(d.forward(x))) + (x - d.inverse(d.forward(x)))
    gap = model(x)[:, 0] - model(x0)[:, 0] - attr.values.flatten(1).sum(1)
    assert gap.abs().max() < 1e-10


def test_evaluate_with_domain_and_cam_explainers():
    model, x = cnn(1), torch.randn(3, 3, T, generator=_gen(7), dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    explainers = {
        "IG": sl.IntegratedGradients(model, n_steps=4),
        "FourierIG": sl.FourierIG(model, n_steps=4),
        "GradCAM": sl.GradCAM(model, layer=model[2]),
    }
    metrics = {
        "del": Deletion(steps=4, progress=False),
        "ins": Insertion(steps=4, progress=False),
        "sparse": Sparseness(),
    }
    table = sl.evaluate(explainers, metrics, model, (x, y))
    assert len(table) == 9
    assert [(r["method"], r["metric"]) for r in table] == [(e, m) for e in explainers for m in metrics]
    for row in table:
        assert row["n"] == 3 and row["mean"] == row["mean"]  # every sample scored, no NaN
    # the Fourier attributions are scored in their domain
    fig = explainers["FourierIG"].explain(x, y)
    direct = Deletion(steps=4, progress=False)(model, x, fig, y)
    assert table.get("FourierIG", "del")["mean"] == pytest.approx(float(direct.mean()), rel=1e-12)
    assert "FourierIG" in table.to_markdown()


# -------------------------------------------------------------------------- 4. CAM in a domain
@pytest.mark.parametrize(
    "make",
    [
        lambda m: sl.InDomain(sl.GradCAM(m, layer=m[2]), sl.Fourier()),
        lambda m: sl.InDomain(sl.ClassRelevant(sl.GradCAM(m, layer=m[2]), classes="all"), sl.Fourier()),
        lambda m: sl.SmoothGrad(
            sl.InDomain(sl.ScoreCAM(m, layer=m[2]), sl.Fourier()), n_samples=2, generator=_gen()
        ),
    ],
    ids=["GradCAM", "ClassRelevant(GradCAM)", "SmoothGrad(InDomain(ScoreCAM))"],
)
def test_cam_in_a_domain_is_refused_cleanly(make):
    model, x = cnn(1), torch.randn(2, 3, T, generator=_gen(1), dtype=torch.float64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sl.CompositionError, match="layer.*domain"):
        make(model).explain(x, target=1)
    assert _hooks(model) == 0 and not model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------ 5. layer x target interplay
def _regressor() -> nn.Sequential:
    """A 1-D CNN with two real-valued outputs (no classes); the global RNG is left as found."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = (
        nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)
        )
        .double()
        .eval()
    )
    torch.random.set_rng_state(state)
    return model


def test_gradcam_with_output_and_contrast_targets_on_a_regressor():
    model = _regressor()
    x = torch.randn(3, 2, 12, generator=_gen(8), dtype=torch.float64)
    cam = sl.GradCAM(model, layer=model[0])
    out = cam.explain(x, target=sl.Output(1))
    assert out.values.shape == (3, 1, 12)
    torch.testing.assert_close(out.scores, model(x)[:, 1])
    # Contrast(Output(0), value=v) has the gradients of output 0: the same map, shifted scores
    con = cam.explain(x, target=sl.Contrast(sl.Output(0), value=0.25))
    ref = cam.explain(x, target=sl.Output(0))
    torch.testing.assert_close(con.values, ref.values)
    torch.testing.assert_close(con.scores, ref.scores - 0.25)
    # Contrast(0, foils=1) is Grad-CAM of the model y0 - y1
    diff = nn.Sequential(model, nn.Linear(2, 1, bias=False).double()).eval()
    with torch.no_grad():
        diff[1].weight.copy_(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    pair = cam.explain(x, target=sl.Contrast(0, foils=1))
    single = sl.GradCAM(diff, layer=model[0]).explain(x, target=sl.Output(0))
    torch.testing.assert_close(pair.values, single.values)


def test_class_relevant_gradcam_with_no_target_explains_the_prediction():
    model, x = cnn(1), torch.randn(3, 3, T, generator=_gen(9), dtype=torch.float64)
    ex = sl.ClassRelevant(sl.GradCAM(model, layer=model[2]), classes="all", normalize=True)
    auto = ex.explain(x)
    pred = model(x).argmax(1)
    assert auto.target.tolist() == pred.tolist()
    torch.testing.assert_close(auto.values, ex.explain(x, target=pred).values)
