"""Attention methods: rollout and Chefer's attribution against the papers' formulas, VAR's ViT
Grad-CAM variants against their definition, the token-to-input mapping, and validity on tiny
transformers trained in the test."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import salience as sl
from salience.engine.attention import AttentionMap
from salience.engine.tokens import TokenGrid
from salience.metrics import model_randomisation
from salience.testing import toy_model
from transformer_models import PatchTransformer1D, TinyViT

DT = torch.float64


def _x(*shape, seed=0):
    return torch.randn(*shape, dtype=DT, generator=torch.Generator().manual_seed(seed))


def _reference(model, x, target):
    """Attention probabilities (explicit path of the model) and autograd's dScore/dA."""
    out, probs = model(x, return_attention=True)
    grads = torch.autograd.grad(out[torch.arange(x.shape[0]), target].sum(), probs)
    return [p.detach() for p in probs], [g.detach() for g in grads]


# ------------------------------------------------------------------- the formulas, written out
def rollout_formula(probs, fusion="mean", discard=0.0, row=0):
    """Abnar & Zuidema: R = Â_L ... Â_1 with Â = rownorm(0.5 F + 0.5 I); returns R[row] (or the
    mean over rows for row=None), shape (B, N)."""
    b, n = probs[0].shape[0], probs[0].shape[-1]
    eye = torch.eye(n, dtype=DT)
    mats = []
    for a in probs:
        f = {"mean": a.mean(1), "max": a.max(1).values, "min": a.min(1).values}[fusion].clone()
        k = int(n * n * discard)
        for i in range(b):
            flat = f[i].flatten()
            order = [j for j in flat.argsort().tolist() if row is None or j != row * n + row]
            flat[order[:k]] = 0
            f[i] = flat.reshape(n, n)
        m = 0.5 * f + 0.5 * eye
        mats.append(m / m.sum(-1, keepdim=True))
    r = eye.expand(b, n, n)
    for m in mats:
        r = m @ r  # R = Â_l R, layer after layer
    return r.mean(1) if row is None else r[:, row]


def chefer_formula(probs, grads, row=0):
    """Chefer et al. ICCV 2021: R = I; R <- R + mean_h (grad * A)^+ R; returns R[row]."""
    b, n = probs[0].shape[0], probs[0].shape[-1]
    r = torch.eye(n, dtype=DT).expand(b, n, n)
    for a, g in zip(probs, grads, strict=True):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    return r.mean(1) if row is None else r[:, row]


def patches_to_pixels(rel, grid, patch):
    """(B, H'*W') -> (B, 1, H'*p, W'*p), each pixel its patch's value."""
    b = rel.shape[0]
    return rel.reshape(b, 1, *grid).repeat_interleave(patch, 2).repeat_interleave(patch, 3)


@pytest.mark.parametrize("attention", ["sdpa", "mha", "explicit"])
@pytest.mark.parametrize(
    "fusion, discard", [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.5), ("max", 0.9)]
)
def test_rollout_equals_the_formula(attention, fusion, discard):
    model = TinyViT(img=16, patch=4, dim=16, depth=3, heads=4, attention=attention)
    x = _x(3, 3, 16, 16)
    probs, _ = _reference(model, x, [0, 1, 2])
    want = rollout_formula(probs, fusion, discard)[:, 1:]
    att = sl.AttentionRollout(model, head_fusion=fusion, discard_ratio=discard, batch_size=2).explain(
        x, target=1
    )
    torch.testing.assert_close(att.info["token_relevance"], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(att.values, patches_to_pixels(want, (4, 4), 4), rtol=1e-10, atol=1e-12)
    assert att.info["layers"] == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    assert att.info["heads"] == [4, 4, 4] and att.info["prefix"] == 1 and att.info["query"] == 0
    assert isinstance(att.info["tokens"], TokenGrid)


@pytest.mark.parametrize("attention", ["sdpa", "mha", "explicit"])
def test_chefer_equals_the_formula(attention):
    model = TinyViT(img=16, patch=4, dim=16, depth=3, heads=4, attention=attention)
    x = _x(3, 3, 16, 16)
    target = torch.tensor([2, 0, 1])
    probs, grads = _reference(model, x, target)
    want = chefer_formula(probs, grads)[:, 1:]
    att = sl.TransformerAttribution(model, batch_size=2).explain(x, target=target)
    torch.testing.assert_close(att.info["token_relevance"], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(att.values, patches_to_pixels(want, (4, 4), 4), rtol=1e-10, atol=1e-12)
    # the map depends on the target (the gradients do), unlike rollout's
    other = sl.TransformerAttribution(model).explain(x, target=torch.tensor([1, 2, 0]))
    assert not torch.allclose(other.values, att.values)


def test_prefix_tokens_and_queries():
    """DeiT-like (CLS, distillation, 2 registers): relevance is the CLS row over the patch tokens;
    a model without CLS reads the mean over rows; query= picks a row."""
    model = TinyViT(img=16, patch=4, dim=16, depth=2, heads=2, dist=True, registers=2)
    x = _x(2, 3, 16, 16)
    probs, grads = _reference(model, x, [1, 1])
    att = sl.TransformerAttribution(model).explain(x, target=1)
    assert att.info["prefix"] == 4 and att.info["tokens"].prefix_kinds == (
        "cls",
        "dist",
        "register",
        "register",
    )
    torch.testing.assert_close(att.info["token_relevance"], chefer_formula(probs, grads)[:, 4:])
    third = sl.TransformerAttribution(model, query=5).explain(x, target=1)
    torch.testing.assert_close(third.info["token_relevance"], chefer_formula(probs, grads, row=5)[:, 4:])
    mean = sl.AttentionRollout(model, query="mean").explain(x, target=1)
    torch.testing.assert_close(mean.info["token_relevance"], rollout_formula(probs, row=None)[:, 4:])

    no_cls = TinyViT(img=16, patch=4, dim=16, depth=2, heads=2, cls=False)
    probs, grads = _reference(no_cls, x, [0, 0])
    att = sl.TransformerAttribution(no_cls).explain(x, target=0)
    assert att.info["prefix"] == 0 and att.info["query"] == "mean"
    torch.testing.assert_close(att.info["token_relevance"], chefer_formula(probs, grads, row=None))


def test_signal_time_patches_and_channel_tokens():
    x = _x(2, 3, 32)
    time = PatchTransformer1D(channels=3, length=32, patch=8, stride=8, dim=16, heads=2, attention="mha")
    probs, grads = _reference(time, x, [1, 1])
    att = sl.TransformerAttribution(time).explain(x, target=1)
    want = chefer_formula(probs, grads)[:, 1:]  # (B, 4 time patches)
    assert att.values.shape == (2, 1, 32)
    torch.testing.assert_close(att.values, want.repeat_interleave(8, 1).unsqueeze(1))

    chans = PatchTransformer1D(
        channels=3, length=32, patch=8, stride=8, dim=16, heads=2, channel_independent=True
    )
    probs, grads = _reference(chans, x, [1, 1])
    att = sl.TransformerAttribution(chans).explain(x, target=1)
    want = chefer_formula(probs, grads)[:, 1:].reshape(2, 3, 4)  # channel-major tokens
    assert att.values.shape == (2, 3, 32) and att.info["tokens"].channels == 3
    torch.testing.assert_close(att.values, want.repeat_interleave(8, 2))


def test_overlapping_patches_average_over_the_patches_covering_a_position():
    model = PatchTransformer1D(channels=2, length=20, patch=4, stride=2, dim=16, heads=2)
    x = _x(2, 2, 20)
    att = sl.AttentionRollout(model).explain(x, target=0)
    rel = att.info["token_relevance"]  # (B, 9): patch i covers [2i, 2i + 4)
    assert rel.shape == (2, 9)
    torch.testing.assert_close(att.values[:, 0, 3], (rel[:, 0] + rel[:, 1]) / 2)
    torch.testing.assert_close(att.values[:, 0, 0], rel[:, 0])


# ------------------------------------------------------------------- VAR's ViT variants
def test_attention_gradcam_formula_on_fixed_tensors():
    """VAR / Chefer's attention Grad-CAM: w_h = mean_j G[h, cls, j] over the patch tokens,
    map = minmax(clamp(mean_h w_h A[h, cls, j])), computed here by hand."""
    a = torch.zeros(1, 2, 5, 5, dtype=DT)
    g = torch.zeros(1, 2, 5, 5, dtype=DT)
    a[0, 0, 0] = torch.tensor([0.2, 0.1, 0.3, 0.4, 0.0])
    g[0, 0, 0] = torch.tensor([5.0, 1.0, 2.0, 3.0, 2.0])  # mean over patches: 2
    a[0, 1, 0] = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1])
    g[0, 1, 0] = torch.tensor([0.0, -4.0, 0.0, 0.0, 0.0])  # mean over patches: -1
    # heads: [0.2, 0.6, 0.8, 0] and [-0.2, -0.1, -0.1, -0.1]; mean [0, 0.25, 0.35, -0.05]
    maps = [AttentionMap("blocks.0.attn", a, g, 1, "sdpa")]
    grid = TokenGrid(1, (2, 2), (4, 4), (2, 2), (2, 2), (0, 0), (1, 1), None, ("cls",))
    model = nn.Linear(1, 1)
    cam = sl.AttentionGradCAM(model)._patch_map(maps, grid, 0)
    torch.testing.assert_close(cam, torch.tensor([[0.0, 5 / 7, 1.0, 0.0]], dtype=DT))
    raw = sl.AttentionGradCAM(model, relu=False, normalize=False)._patch_map(maps, grid, 0)
    torch.testing.assert_close(raw, torch.tensor([[0.0, 0.25, 0.35, -0.05]], dtype=DT))
    flat = torch.zeros_like(g)  # a constant map normalises to 0, not NaN
    assert torch.equal(
        sl.AttentionGradCAM(model)._patch_map([AttentionMap("b", a, flat, 1, "sdpa")], grid, 0),
        torch.zeros(1, 4, dtype=DT),
    )


def _var_cam(model, x, target):
    """VAR's ViT Grad-CAM written out on the model's explicit attention, bilinearly upsampled."""
    probs, grads = _reference(model, x, target)
    a, g = probs[-1][:, :, 0, 1:], grads[-1][:, :, 0, 1:]
    cam = (a * g.mean(-1, keepdim=True)).mean(1).clamp(min=0)
    lo, hi = cam.min(-1, keepdim=True).values, cam.max(-1, keepdim=True).values
    cam = (cam - lo) / (hi - lo)
    side = int(cam.shape[-1] ** 0.5)
    return F.interpolate(
        cam.reshape(-1, 1, side, side), size=x.shape[-2:], mode="bilinear", align_corners=False
    )


def test_attention_gradcam_on_a_vit_equals_var():
    model = TinyViT(img=16, patch=4, dim=16, depth=3, heads=4)
    x = _x(3, 3, 16, 16)
    att = sl.AttentionGradCAM(model, batch_size=2).explain(x, target=2)
    torch.testing.assert_close(att.values, _var_cam(model, x, [2, 2, 2]), rtol=1e-10, atol=1e-12)
    assert att.layer == "blocks.2.attn" and att.info["layers"] == ["blocks.2.attn"]


def _var_guided(model, x, target):
    """VAR's ViT guided backprop: plain gradient with every GELU's input gradient clamped at 0."""
    handles = [
        b.mlp.act.register_full_backward_hook(lambda m, gi, go: (gi[0].clamp(min=0),)) for b in model.blocks
    ]
    try:
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xr)[:, target].sum(), xr)
    finally:
        for h in handles:
            h.remove()
    return g


def test_attention_guided_gradcam_equals_var():
    model = TinyViT(img=16, patch=4, dim=16, depth=3, heads=4)
    x = _x(2, 3, 16, 16)
    att = sl.AttentionGuidedGradCAM(model).explain(x, target=1)
    guided = _var_guided(model, x, 1)
    torch.testing.assert_close(att.values, guided * _var_cam(model, x, [1, 1]), rtol=1e-9, atol=1e-12)
    # without the GELU rule: salience's GuidedBackprop, which leaves GELUs with their gradient
    plain = sl.AttentionGuidedGradCAM(model, guided_gelu=False).explain(x, target=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sl.ReLUCoverageWarning)
        gbp = sl.GuidedBackprop(model).explain(x, target=1).values
    torch.testing.assert_close(plain.values, gbp * _var_cam(model, x, [1, 1]), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(gbp, guided)  # salience's GuidedBackprop does not clamp at GELUs


def test_input_x_gradient_runs_on_a_vit():
    model = TinyViT(img=16, patch=4, dim=16, depth=2, heads=2)
    x = _x(2, 3, 16, 16)
    att = sl.InputXGradient(model).explain(x, target=1)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xr)[:, 1].sum(), xr)
    torch.testing.assert_close(att.values, x * g)


# ------------------------------------------------------------------- refusals and modes
def test_a_cnn_is_refused_with_a_clear_error():
    model = toy_model("image")
    with pytest.raises(sl.LayerError, match="no attention"):
        sl.AttentionRollout(model).explain(_x(2, 3, 8, 8), target=1)


@pytest.mark.parametrize("kwargs", [{"head_fusion": "median"}, {"discard_ratio": 1.0}, {"query": "cls"}])
def test_bad_parameters(kwargs):
    with pytest.raises(sl.ParameterError):
        sl.AttentionRollout(nn.Linear(1, 1), **kwargs)


def test_training_mode_transformer_warns_and_keeps_state():
    model = TinyViT(img=16, patch=4, dim=16, depth=2, heads=2).train()
    for b in model.blocks:
        b.attn.attn_drop.p = 0.3
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.warns(sl.TrainingModeWarning):
        sl.TransformerAttribution(model).explain(_x(2, 3, 16, 16), target=1)
    assert torch.equal(torch.get_rng_state(), rng) and model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------- validity: trained models
def _train(model, x, y, steps, lr=3e-3):
    model.train()
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (64,), generator=gen)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _image_task(n, seed):
    """16x16 images of 4x4 patches: faint noise, and in one random patch a horizontal (class 0)
    or vertical (class 1) stripe pattern."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, 16, (n,), generator=g)
    stripes = torch.tensor([1.0, -1.0, 1.0, -1.0]).repeat(4, 1)  # vertical stripes (columns alternate)
    for i in range(n):
        r, c = divmod(int(where[i]), 4)
        pattern = stripes if y[i] == 1 else stripes.T
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.5 * pattern
    return x, y, where


def _signal_task(n, seed):
    """(N, 2, 64) signals of 8-sample patches: noise, and in one random patch a burst on both
    channels: on channel 1 always positive (it marks the patch), on channel 0 positive for
    class 1 and negative for class 0."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 2, 64, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, 8, (n,), generator=g)
    burst = torch.sin(torch.pi * torch.arange(8.0) / 7) * 2.0
    for i in range(n):
        span = slice(8 * int(where[i]), 8 * int(where[i]) + 8)
        x[i, 0, span] += (1.0 if y[i] == 1 else -1.0) * burst
        x[i, 1, span] += burst
    return x, y, where


def _mass_inside(values, where, n_patches, patch_mask):
    """Fraction of the (non-negative) relevance mass inside each sample's evidence patch (0 for
    an all-zero map)."""
    v = values.clamp(min=0).flatten(1)
    inside = torch.stack([(v[i] * patch_mask(int(where[i])).flatten()).sum() for i in range(v.shape[0])])
    total = v.sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), 0.0)


@pytest.fixture(scope="module")
def trained_vit():
    x, y, where = _image_task(2048, 0)
    model = TinyViT(img=16, patch=4, dim=32, depth=2, heads=4, classes=2, in_chans=1, dtype=torch.float32)
    model = _train(model, x, y, steps=300)
    xt, yt, wt = _image_task(64, 1)
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    return model, xt, yt, wt, accuracy


@pytest.fixture(scope="module")
def trained_signal():
    x, y, where = _signal_task(2048, 0)
    model = PatchTransformer1D(
        channels=2, length=64, patch=8, stride=8, dim=32, depth=2, heads=4, classes=2, dtype=torch.float32
    )
    model = _train(model, x, y, steps=300)
    xt, yt, wt = _signal_task(64, 1)
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    return model, xt, yt, wt, accuracy


def _pixel_mask(k):
    m = torch.zeros(1, 16, 16)
    r, c = divmod(k, 4)
    m[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 1
    return m


def _time_mask(k):
    m = torch.zeros(1, 64)
    m[:, 8 * k : 8 * k + 8] = 1
    return m


@pytest.mark.parametrize("method", [sl.TransformerAttribution, sl.AttentionRollout, sl.AttentionGradCAM])
def test_validity_vit_relevance_sits_in_the_evidence_patch(trained_vit, method):
    model, x, y, where, accuracy = trained_vit
    assert accuracy > 0.9
    att = method(model).explain(x, target=y)
    mass = _mass_inside(att.values, where, 16, _pixel_mask).mean().item()
    assert mass >= 3 / 16, f"{method.__name__}: {mass:.3f} of the mass in the evidence patch (chance 1/16)"


def test_validity_signal_relevance_sits_in_the_evidence_patch(trained_signal):
    model, x, y, where, accuracy = trained_signal
    assert accuracy > 0.9
    att = sl.TransformerAttribution(model).explain(x, target=y)
    mass = _mass_inside(att.values, where, 8, _time_mask).mean().item()
    assert mass >= 3 / 8, f"{mass:.3f} of the mass in the evidence patch (chance 1/8)"


@pytest.mark.parametrize("method", [sl.TransformerAttribution, sl.AttentionRollout])
def test_model_randomisation_changes_the_maps(trained_vit, method):
    model, x, y, _, _ = trained_vit
    sim = model_randomisation(method(model), x[:16], y[:16], generator=torch.Generator().manual_seed(0))
    assert sim.shape[0] == 16
    assert sim[:, -1].mean() < 0.5, f"rank correlation after randomising every layer: {sim[:, -1].mean():.2f}"


def test_model_randomisation_changes_the_signal_maps(trained_signal):
    model, x, y, _, _ = trained_signal
    sim = model_randomisation(
        sl.TransformerAttribution(model), x[:16], y[:16], generator=torch.Generator().manual_seed(0)
    )
    assert sim[:, -1].mean() < 0.5, f"rank correlation after randomising every layer: {sim[:, -1].mean():.2f}"


class _Structured(nn.Module):
    """A ViT returning a dict and taking a per-sample forward input (as Hugging Face models do)."""

    def __init__(self):
        super().__init__()
        self.vit = TinyViT(img=16, patch=4, dim=16, depth=2, heads=2)

    def forward(self, x, scale):
        return {"logits": self.vit(x) * scale[:, None], "hidden": x.mean(1)}


@pytest.mark.parametrize(
    "method", [sl.AttentionRollout, sl.TransformerAttribution, sl.AttentionGuidedGradCAM]
)
def test_structured_output_and_per_sample_forward_inputs(method):
    model = _Structured().eval()
    x = _x(3, 3, 16, 16)
    scale = torch.tensor([1.0, 2.0, 0.5], dtype=DT)
    whole = method(model).explain(x, target=1, forward_kwargs={"scale": scale})
    chunked = method(model, batch_size=1).explain(x, target=1, forward_kwargs={"scale": scale})
    torch.testing.assert_close(chunked.values, whole.values, rtol=1e-10, atol=1e-12)
    alone = method(model).explain(x[1:2], target=1, forward_kwargs={"scale": scale[1:2]})
    torch.testing.assert_close(alone.values, whole.values[1:2], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(whole.scores, model(x, scale)["logits"][:, 1].detach())
