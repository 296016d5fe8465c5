"""Attention capture (salience.engine.attention): the probabilities and their gradients, for every
attention style, with the model's output unchanged and no trace left on the model."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

import salience as sl
from salience.engine import attention_maps, capture_attention, make_score, reduce_attention
from salience.engine._attention_ops import explicit_mha, explicit_sdpa
from salience.layout import Layout
from transformer_models import PatchTransformer1D, TinyViT

DT = torch.float64

# (attention style, fused_attn) covering the code paths of the real libraries: timm's Attention
# (sdpa with fused_attn True/False), torchvision's encoder block (nn.MultiheadAttention called with
# need_weights=False) and a hand-written explicit-softmax block (Hugging Face's "eager" path)
STYLES = [("sdpa", True), ("sdpa", False), ("mha", None), ("explicit", None)]


def _vit(style: str, fused: bool | None, **kw) -> TinyViT:
    model = TinyViT(img=16, patch=4, dim=16, depth=3, heads=2, attention=style, **kw)
    if fused is not None:
        for block in model.blocks:
            block.attn.fused_attn = fused
    return model


def _score(model, x, target=1, batch_size=None):
    return make_score(model, x, target, batch_size=batch_size, layout=Layout.infer(x, None))


def _hooks(model: nn.Module) -> list[tuple[int, ...]]:
    return [
        (
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(m._backward_pre_hooks),
            len(m._forward_hooks_with_kwargs),
            len(m._forward_hooks_always_called),
        )
        for m in model.modules()
    ]


def _attributes(model: nn.Module) -> dict[str, object]:
    return {
        f"{n}.{k}": v
        for n, m in model.named_modules()
        for k, v in vars(m).items()
        if not k.startswith("_") and not isinstance(v, (torch.Tensor, nn.Module))
    }


def _explicit_reference(model, x, target=1):
    """Attention probabilities from the model's own explicit path, and autograd's dScore/dA."""
    out, probs = model(x, return_attention=True)
    grads = torch.autograd.grad(out[:, target].sum(), probs)
    return out.detach(), [p.detach() for p in probs], [g.detach() for g in grads]


@pytest.mark.parametrize("style, fused", STYLES)
def test_captured_attention_and_gradients_equal_the_explicit_ones(style, fused):
    model = _vit(style, fused, dist=True, registers=2)
    x = torch.randn(5, 3, 16, 16, dtype=DT, generator=torch.Generator().manual_seed(0))
    out, probs, grads = _explicit_reference(model, x)
    score = _score(model, x, batch_size=2)
    maps = attention_maps(score, gradients=True)
    assert [m.name for m in maps] == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    assert {m.source for m in maps} == {"sdpa" if fused else "mha" if style == "mha" else "softmax"}
    assert all(m.prefix == 4 for m in maps)  # CLS, distillation and two registers
    for m, p, g in zip(maps, probs, grads, strict=True):
        assert m.attention.shape == (5, 2, 20, 20)
        torch.testing.assert_close(m.attention, p, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(m.gradient, g, rtol=1e-10, atol=1e-12)
    # the scores recorded by the call are the model's output, unchanged by the capture
    torch.testing.assert_close(score.input_values(), out[:, 1], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("style, fused", STYLES)
def test_output_unchanged_under_capture(style, fused):
    model = _vit(style, fused)
    x = torch.randn(3, 3, 16, 16, dtype=DT)
    with torch.no_grad():
        plain = model(x)
        with capture_attention(model) as records:
            captured = model(x)
    torch.testing.assert_close(captured, plain, rtol=1e-12, atol=1e-13)
    assert len(records) == 3 and all(p.shape == (3, 2, 17, 17) for _, _, p in records)
    assert not any(p.requires_grad for _, _, p in records)


def test_forward_only_capture_equals_the_gradient_capture():
    model = _vit("sdpa", True)
    x = torch.randn(4, 3, 16, 16, dtype=DT)
    with torch.no_grad():
        fwd = attention_maps(_score(model, x, batch_size=3))
    both = attention_maps(_score(model, x, batch_size=4), gradients=True)
    assert all(m.gradient is None for m in fwd)
    for a, b in zip(fwd, both, strict=True):
        torch.testing.assert_close(a.attention, b.attention, rtol=1e-12, atol=1e-14)


def test_chunking_is_invisible():
    model = PatchTransformer1D(channels=2, length=32, patch=4, stride=4, dim=16, heads=4, attention="mha")
    x = torch.randn(5, 2, 32, dtype=DT)
    one = attention_maps(_score(model, x, target=torch.tensor([0, 1, 2, 0, 1]), batch_size=1), gradients=True)
    all_ = attention_maps(
        _score(model, x, target=torch.tensor([0, 1, 2, 0, 1]), batch_size=5), gradients=True
    )
    for a, b in zip(one, all_, strict=True):
        torch.testing.assert_close(a.attention, b.attention, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(a.gradient, b.gradient, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- F.scaled_dot_product_attention
def _qkv(b=2, h=4, n=5, s=7, e=8, hk=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, e, dtype=DT, generator=g)
    k = torch.randn(b, hk or h, s, e, dtype=DT, generator=g)
    v = torch.randn(b, hk or h, s, 3, dtype=DT, generator=g)
    return q, k, v


def _reference_probs(q, k, scale=None, mask=None, causal=False):
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(-1)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"scale": 0.3},
        {"is_causal": True},
        {"attn_mask": "bool"},
        {"attn_mask": "float"},
        {"attn_mask": "bool-broadcast"},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain",
)
def test_explicit_sdpa_equals_the_fused_kernel(options):
    q, k, v = _qkv(n=7)
    g = torch.Generator().manual_seed(1)
    mask = options.get("attn_mask")
    if mask == "bool":
        options = {**options, "attn_mask": torch.rand(2, 4, 7, 7, generator=g, dtype=DT) > 0.3}
        options["attn_mask"][..., 0] = True  # no fully masked row
    elif mask == "float":
        options = {**options, "attn_mask": torch.randn(2, 4, 7, 7, generator=g, dtype=DT)}
    elif mask == "bool-broadcast":
        options = {**options, "attn_mask": torch.ones(7, 7, dtype=torch.bool).tril()}
    seen = []
    out = explicit_sdpa(lambda p: seen.append(p) or p, q, k, v, **options)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, **options), rtol=1e-12, atol=1e-12
    )
    want = _reference_probs(
        q, k, options.get("scale"), options.get("attn_mask"), options.get("is_causal", False)
    )
    torch.testing.assert_close(seen[0], want, rtol=1e-12, atol=1e-13)


def test_explicit_sdpa_grouped_query_attention():
    q, k, v = _qkv(h=4, hk=2)
    out = explicit_sdpa(lambda p: p, q, k, v, enable_gqa=True)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, enable_gqa=True), rtol=1e-12, atol=1e-12
    )


def test_explicit_sdpa_fully_masked_row_is_zero_with_finite_gradients():
    q, k, v = _qkv(n=3, s=3)
    q.requires_grad_(True)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False
    seen = []
    out = explicit_sdpa(lambda p: seen.append(p) or p, q, k, v, attn_mask=mask)
    assert torch.equal(seen[0][:, :, 1], torch.zeros_like(seen[0][:, :, 1]))
    (g,) = torch.autograd.grad(out.sum(), q)
    assert torch.isfinite(g).all()


class _SDPABlock(nn.Module):
    """A hand-written block calling F.scaled_dot_product_attention with a mask and a scale."""

    def __init__(self, dim=8, heads=2, causal=False, gqa=False):
        super().__init__()
        self.heads, self.causal, self.gqa = heads, causal, gqa
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim if gqa else 2 * dim)
        self.head = nn.Linear(dim, 3)

    def split(self, t, h):
        return t.reshape(t.shape[0], t.shape[1], h, -1).transpose(1, 2)

    def forward(self, x, explicit=False):  # x (B, N, D)
        q = self.split(self.q(x), self.heads)
        kh = self.heads // 2 if self.gqa else self.heads
        k, v = (self.split(t, kh) for t in self.kv(x).chunk(2, dim=-1))
        n = x.shape[1]
        mask = None if self.causal else torch.ones(n, n, dtype=torch.bool).triu(-1)
        if explicit:
            if self.gqa:
                k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
            probs = _reference_probs(q, k, 0.5, mask, self.causal)
            y = probs @ v
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=self.causal, scale=0.5, enable_gqa=self.gqa
            )
            probs = None
        out = self.head(y.transpose(1, 2).reshape(x.shape[0], n, -1).mean(1))
        return (out, probs) if explicit else out


@pytest.mark.parametrize("causal, gqa", [(False, False), (True, False), (False, True)])
def test_hand_written_sdpa_block(causal, gqa):
    torch.manual_seed(0)
    model = _SDPABlock(heads=4 if gqa else 2, causal=causal, gqa=gqa).double().eval()
    x = torch.randn(3, 6, 8, dtype=DT)
    out, probs = model(x, explicit=True)
    (g,) = torch.autograd.grad(out[:, 2].sum(), probs)
    maps = attention_maps(_score(model, x, target=2, batch_size=2), gradients=True)
    assert [m.name for m in maps] == [""]  # the model itself called it
    torch.testing.assert_close(maps[0].attention, probs.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(maps[0].gradient, g, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- nn.MultiheadAttention
@pytest.mark.parametrize(
    "config",
    [
        {},
        {"batch_first": False},
        {"bias": False},
        {"add_bias_kv": True},
        {"add_zero_attn": True},
        {"kdim": 5, "vdim": 3},
        {"dropout": 0.2},  # eval mode: no dropout
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default",
)
@pytest.mark.parametrize(
    "call",
    [
        {},
        {"need_weights": False},
        {"average_attn_weights": False},
        {"key_padding_mask": "bool"},
        {"attn_mask": "bool"},
        {"attn_mask": "float", "need_weights": False},
        {"attn_mask": "causal", "is_causal": True, "need_weights": False},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "plain",
)
def test_explicit_mha_equals_the_module(config, call):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, **{"batch_first": True, **config}).double().eval()
    b, n, s = 2, 4, 6
    first = mha.batch_first
    query = torch.randn((b, n, 8) if first else (n, b, 8), dtype=DT)
    key = torch.randn((b, s, config.get("kdim", 8)) if first else (s, b, config.get("kdim", 8)), dtype=DT)
    value = torch.randn((b, s, config.get("vdim", 8)) if first else (s, b, config.get("vdim", 8)), dtype=DT)
    kwargs = dict(call)
    if kwargs.get("key_padding_mask") == "bool":
        kwargs["key_padding_mask"] = torch.tensor([[False] * 5 + [True], [False] * 6])
    if kwargs.get("attn_mask") == "bool":
        kwargs["attn_mask"] = torch.ones(n, s, dtype=torch.bool).triu(3)
    elif kwargs.get("attn_mask") == "float":
        kwargs["attn_mask"] = torch.randn(b * 2, n, s, dtype=DT)
    elif kwargs.get("attn_mask") == "causal":
        kwargs["attn_mask"] = nn.Transformer.generate_square_subsequent_mask(n, dtype=DT)[:, :n].contiguous()
        key, value = query, query
        if config.get("kdim"):
            pytest.skip("self-attention only")
    with torch.no_grad():
        want = mha(query, key, value, **kwargs)
        with capture_attention(mha) as records:
            got = mha(query, key, value, **kwargs)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    if want[1] is None:
        assert got[1] is None
    else:
        torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
    (name, source, probs) = records[0]
    assert (name, source) == ("", "mha") and probs.shape[:2] == (b, 2)
    assert torch.allclose(probs.sum(-1), torch.ones((), dtype=DT))


def test_explicit_mha_unbatched():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2).double().eval()
    x = torch.randn(5, 8, dtype=DT)
    want = mha(x, x, x)
    got = explicit_mha(
        lambda p: p,
        x,
        x,
        x,
        8,
        2,
        mha.in_proj_weight,
        mha.in_proj_bias,
        None,
        None,
        False,
        0.0,
        mha.out_proj.weight,
        mha.out_proj.bias,
        training=False,
    )
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)


def test_transformer_encoder_layer_fast_path_is_captured():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True).double().eval()
    x = torch.randn(3, 5, 8, dtype=DT)
    with torch.no_grad():
        want = layer(x)
        with capture_attention(layer) as records:
            got = layer(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert [(n, s) for n, s, _ in records] == [("self_attn", "mha")]


# ---------------------------------------------------------------- no side effects
class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("style, fused", STYLES)
@pytest.mark.parametrize("gradients", [False, True])
def test_no_trace_left_also_after_an_error(style, fused, gradients):
    model = _vit(style, fused)
    x = torch.randn(3, 3, 16, 16, dtype=DT)
    hooks, attrs = _hooks(model), _attributes(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    fused_flags = [getattr(b.attn, "fused_attn", None) for b in model.blocks]
    modes = len(_get_current_function_mode_stack())
    calls = [0]

    def target(out):  # raises on the second chunk, in the middle of the call
        calls[0] += 1
        if calls[0] >= 2:
            raise _Boom("target failed")
        return out[:, 0]

    maps = attention_maps(_score(model, x, batch_size=2), gradients=gradients)
    assert len(maps) == 3
    with pytest.raises(sl.TargetError, match="target failed"):
        attention_maps(_score(model, x, target=sl.Score(target), batch_size=2), gradients=gradients)
    assert _hooks(model) == hooks and _attributes(model) == attrs
    assert [getattr(b.attn, "fused_attn", None) for b in model.blocks] == fused_flags
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert len(_get_current_function_mode_stack()) == modes
    # and the model still runs its fused path afterwards
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    with Spy(), torch.no_grad():
        model(x)
    if fused:
        assert F.scaled_dot_product_attention in seen


def test_other_threads_are_not_captured():
    model = _vit("sdpa", True)
    x = torch.randn(2, 3, 16, 16, dtype=DT)
    done = threading.Event()
    go = threading.Event()

    def other():
        go.wait()
        with torch.no_grad():
            model(x)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with torch.no_grad(), capture_attention(model) as records:
        go.set()
        done.wait(timeout=30)
        assert records == []  # the other thread's forward pass was not recorded
        model(x[:1])
    thread.join()
    assert len(records) == 3 and all(p.shape[0] == 1 for _, _, p in records)


def test_a_module_called_twice_is_named_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            x = x + self.attn(x, x, x)[0]
            x = x + self.attn(x, x, x)[0]
            return self.head(x.mean(1))

    model = Twice().double().eval()
    maps = attention_maps(_score(model, torch.randn(2, 4, 8, dtype=DT)))
    assert [m.name for m in maps] == ["attn", "attn#1"]


def test_a_model_without_attention_is_refused():
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 18, 2)).double()
    with pytest.raises(sl.LayerError, match="no attention"):
        attention_maps(_score(model, torch.randn(2, 3, 20, dtype=DT)))


def test_a_frozen_model_still_gets_gradients():
    model = _vit("sdpa", True)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, 16, 16, dtype=DT)
    maps = attention_maps(_score(model, x), gradients=True)
    assert all(m.gradient.abs().sum() > 0 for m in maps)
    assert not any(p.requires_grad for p in model.parameters())


class _EagerHF(nn.Module):
    """Hugging Face's "eager" attention path: matmul, additive mask, softmax in float32, cast back."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x, attention_mask=None, explicit=False):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        scores = torch.matmul(q, k.transpose(2, 3)) * (d // self.heads) ** -0.5
        if attention_mask is not None:
            scores = scores + (1.0 - attention_mask[:, None, None, :].to(scores.dtype)) * -1e9
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        y = torch.matmul(probs, v).transpose(1, 2).reshape(b, n, d)
        out = {"logits": self.head(y.mean(1))}
        return (out, probs) if explicit else out


def test_hugging_face_eager_path_with_a_mask_and_a_structured_output():
    torch.manual_seed(0)
    model = _EagerHF().eval()
    x = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    out, probs = model(x, mask, explicit=True)
    (g,) = torch.autograd.grad(out["logits"][:, 1].sum(), probs)
    score = make_score(
        model, x, 1, batch_size=1, layout=Layout.infer(x, None), forward_kwargs={"attention_mask": mask}
    )
    maps = attention_maps(score, gradients=True)
    assert [(m.name, m.source) for m in maps] == [("", "softmax")]
    torch.testing.assert_close(maps[0].attention, probs.detach())
    torch.testing.assert_close(maps[0].gradient, g)
    assert maps[0].attention[1, :, :, 3:].abs().max() < 1e-6  # padding keys masked, per sample


def test_reduce_attention_sees_one_chunk_at_a_time_and_cleans_up_when_it_raises():
    model = _vit("sdpa", True)
    x = torch.randn(5, 3, 16, 16, dtype=DT)
    sizes = []

    def reduce(maps):
        sizes.append(maps[0].attention.shape[0])
        return torch.stack([m.gradient.sum((1, 2, 3)) for m in maps], 1)

    got = reduce_attention(_score(model, x, batch_size=2), reduce, gradients=True)
    assert sizes == [2, 2, 1] and got.shape == (5, 3)
    whole = attention_maps(_score(model, x), gradients=True)
    torch.testing.assert_close(got, torch.stack([m.gradient.sum((1, 2, 3)) for m in whole], 1))
    hooks = _hooks(model)

    def fail(maps):
        raise _Boom("reduce failed")

    with pytest.raises(_Boom):
        reduce_attention(_score(model, x, batch_size=2), fail)
    assert _hooks(model) == hooks and len(_get_current_function_mode_stack()) == 0
