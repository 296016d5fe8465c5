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
import time
from pathlib import Path

import torch
from torch import nn

from _common import THREADS, setup, time_all, timeit  # noqa: E402  (puts src/ on sys.path)
import salience as sl  # noqa: E402

ROOT = Path(__file__).resolve().parent
LAYER = "6"  # the last conv of both models












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
        f"best of {repeats} (N=500) or {5 * repeats} (N=32) interleaved rounds after a warm-up. "
        "Captum's LayerGradCam stops at the layer and returns the layer-resolution map, so its "
        "ratio is taken against ours with upsample=False; the others against our default "
        "(upsampled to the input).",
        "",
        "| data | N | method | time (s) | vs bare fwd+bwd | slower than ours by |",
        "|---|---|---|---|---|---|",
    ]
    summary = {}
    for kind, n, loop in configs:
        model, x = setup(kind, n)
        # interleaved rounds; many for the 10-ms configurations, where one round is noise
        rounds = repeats if (args.quick or n > 100) else 5 * repeats
        t_bare = timeit(bare(model, x, target), rounds)
        lines.append(f"| {kind} | {n} | bare fwd+bwd (to the input) | {t_bare:.4f} | 1.00x | |")
        # the per-item loop is timed once (no warm-up: it is slow) and shared by both methods
        t_loop = None
        if loop:
            t0 = time.perf_counter()
            per_item_loop(model, x, target)()
            t_loop = time.perf_counter() - t0
        for name, cls, pgc_name in (("GradCAM", sl.GradCAM, "GradCAM"), ("HiResCAM", sl.HiResCAM, "HiResCAM")):
            fns = {
                f"salience {name}": lambda cls=cls: cls(model, layer=LAYER).explain(x, target),
                f"salience {name} (upsample=False)": (
                    lambda cls=cls: cls(model, layer=LAYER, upsample=False).explain(x, target)
                ),
                f"pytorch-grad-cam {pgc_name}": pytorch_grad_cam(model, x, target, pgc_name),
            }
            if name == "GradCAM":
                fns["captum LayerGradCam"] = captum_layer_gradcam(model, x, target)
            timings = time_all(fns, rounds)
            ours, ours_raw = timings[f"salience {name}"], timings[f"salience {name} (upsample=False)"]
            if t_loop is not None:
                timings["per-item backward loop (SignalGrad-CAM style, both maps)"] = t_loop
            ratios = {}
            for k, t in timings.items():
                # Captum's LayerGradCam returns the map at layer resolution: compared like for
                # like with ours at upsample=False; the others upsample, as our default does
                ref = ours_raw if k.startswith("captum") else ours
                rel = "" if k.startswith("salience") else f"{t / ref:.2f}x"
                if not k.startswith("salience"):
                    ratios[k] = round(t / ref, 2)
                lines.append(f"| {kind} | {n} | {k} | {t:.4f} | {t / t_bare:.2f}x | {rel} |")
            summary[f"{kind}-{n}-{name}"] = ratios
    text = "\n".join(
        ["## CAM: GradCAM and HiResCAM (`benchmarks/bench_cam.py`)", "", *lines, "",
         "Ratios (peer time / ours, same run): " + str(summary), ""]
    )
    print(text)
    if not args.quick:
        (ROOT / "results_cam.md").write_text(text)


if __name__ == "__main__":
    main()
