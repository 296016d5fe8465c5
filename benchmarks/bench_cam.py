"""CAM benchmark: GradCAM and HiResCAM vs pytorch-grad-cam, Captum's LayerGradCam, a per-item
backward loop like SignalGrad-CAM's, and the bare model cost.

Run by hand (never in tests):

    python benchmarks/bench_cam.py            # full run, writes benchmarks/results_cam.md
    python benchmarks/bench_cam.py --quick    # reduced sizes, prints only

Everything is measured in one process, same models, inputs, target layer (the last conv) and
thread count, so the ratios are comparable.

- "bare fwd+bwd": one forward pass of the batch and one backward pass of the summed target
  logits to the input (the cost of one plain gradient explanation).
- pytorch-grad-cam (``grad-cam``) supports only 2-D/3-D inputs (it branches on rank); signals
  go through it as (N, C, 1, T) with a wrapper model and a ``reshape_transform`` adding the
  dummy axis, which is what its users do. It always applies ReLU, min-max scaling and a cv2
  resize, and runs a full ``loss.backward()`` (parameter gradients included).
- Captum's ``LayerGradCam`` stops the backward pass at the layer and returns the raw map at
  layer resolution (we time ours with ``upsample=True``, the default, so we do more).
- "per-item loop": SignalGrad-CAM's algorithm (one forward of the batch, then for every item
  ``S[i].backward(retain_graph=True)`` through the whole batch graph); quadratic in N.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import salience as sl  # noqa: E402

THREADS = 2
ROOT = Path(__file__).resolve().parent
LAYER = "6"  # the last conv of both models


def cnn1d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(8, 32, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 32, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 32, 7, padding=3), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 5),
    ).eval()


def cnn2d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()


def setup(kind: str, n: int):
    g = torch.Generator().manual_seed(1)
    if kind == "signals":
        return cnn1d(), torch.randn(n, 8, 1000, generator=g)
    return cnn2d(), torch.randn(n, 3, 64, 64, generator=g)


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bare(model, x, target):
    def run():
        r = x.detach().requires_grad_(True)
        torch.autograd.grad(model(r)[:, target].sum(), r)
    return run


class _As2d(nn.Module):
    """(N, C, 1, T) -> the 1-D model: how 1-D users feed pytorch-grad-cam."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.squeeze(2))


def pytorch_grad_cam(model, x, target, method: str):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(target)] * len(x)
    if x.ndim == 3:
        wrapped = _As2d(model)
        layer, inp, reshape = wrapped.model[int(LAYER)], x.unsqueeze(2), (lambda a: a.unsqueeze(2))
    else:
        wrapped, layer, inp, reshape = model, model[int(LAYER)], x, None

    def run():
        cam = getattr(pgc, method)(model=wrapped, target_layers=[layer], reshape_transform=reshape)
        try:
            cam(input_tensor=inp, targets=targets)
        finally:
            cam.activations_and_grads.release()
    return run


def captum_layer_gradcam(model, x, target):
    from captum.attr import LayerGradCam

    def run():
        LayerGradCam(model, model[int(LAYER)]).attribute(x, target=target)
    return run


def per_item_loop(model, x, target):
    """SignalGrad-CAM's PyTorch algorithm (compute only, no plotting), on a private copy.

    The loop (the expensive part) is shared: each item's Grad-CAM and HiResCAM maps are both
    computed from its backward pass, as SignalGrad-CAM would in one ``get_cam`` call.
    """
    model = copy.deepcopy(model)
    layer = model[int(LAYER)]

    def run():
        store = {}

        def hook(_m, _i, out):
            store["a"] = out
            out.register_hook(lambda g: store.__setitem__("g", g))

        h = layer.register_forward_hook(hook)
        try:
            scores = model(x)[:, target]
        finally:
            h.remove()
        cams = []
        for i in range(len(x)):
            model.zero_grad()
            scores[i].backward(retain_graph=True)
            a, g = store["a"][i], store["g"][i]
            hires = (g * a).sum(0)
            grad = (g.mean(tuple(range(1, g.ndim)), keepdim=True) * a).sum(0)
            cams.append((grad.clamp_min(0).detach(), hires.clamp_min(0).detach()))
        return cams
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    repeats = 1 if args.quick else 3
    # (kind, N, run the per-item loop?)
    configs = [("signals", 32, False), ("signals", 500, True), ("images", 32, False)]
    if args.quick:
        configs = [("signals", 8, False), ("signals", 64, True), ("images", 8, False)]
    target = 1
    lines = [
        f"Threads: {THREADS}; torch {torch.__version__}; target layer: last conv ({LAYER!r}); target={target}; "
        f"best of {repeats} after a warm-up.",
        "",
        "| data | N | method | time (s) | vs bare fwd+bwd | slower than ours by |",
        "|---|---|---|---|---|---|",
    ]
    summary = {}
    for kind, n, loop in configs:
        model, x = setup(kind, n)
        t_bare = timeit(bare(model, x, target), repeats)
        lines.append(f"| {kind} | {n} | bare fwd+bwd (to the input) | {t_bare:.4f} | 1.00x | |")
        # the per-item loop is timed once (no warm-up: it is slow) and shared by both methods
        t_loop = None
        if loop:
            t0 = time.perf_counter()
            per_item_loop(model, x, target)()
            t_loop = time.perf_counter() - t0
        for name, cls, pgc_name in (("GradCAM", sl.GradCAM, "GradCAM"), ("HiResCAM", sl.HiResCAM, "HiResCAM")):
            ours = timeit(lambda: cls(model, layer=LAYER).explain(x, target), repeats)
            timings = {f"salience {name}": ours}
            timings[f"pytorch-grad-cam {pgc_name}"] = timeit(pytorch_grad_cam(model, x, target, pgc_name), repeats)
            if name == "GradCAM":
                timings["captum LayerGradCam"] = timeit(captum_layer_gradcam(model, x, target), repeats)
            if t_loop is not None:
                timings["per-item backward loop (SignalGrad-CAM style, both maps)"] = t_loop
            for k, t in timings.items():
                rel = "" if k.startswith("salience") else f"{t / ours:.2f}x"
                lines.append(f"| {kind} | {n} | {k} | {t:.4f} | {t / t_bare:.2f}x | {rel} |")
            summary[f"{kind}-{n}-{name}"] = {k: round(t / ours, 2) for k, t in timings.items() if not k.startswith("salience")}
    text = "\n".join(
        ["## CAM: GradCAM and HiResCAM (`benchmarks/bench_cam.py`)", "", *lines, "",
         "Ratios (peer time / ours, same run): " + str(summary), ""]
    )
    print(text)
    if not args.quick:
        (ROOT / "results_cam.md").write_text(text)


if __name__ == "__main__":
    main()
