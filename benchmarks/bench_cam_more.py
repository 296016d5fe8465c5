"""CAM additions of issue #19: EigenCAM, EigenGradCAM, AblationCAM and FullGrad vs
pytorch-grad-cam, and AblationCAM against the bare forward cost of its rows.

Run by hand (never in tests), with the benchmark environment:

    .venv-bench/bin/python benchmarks/bench_cam_more.py          # writes benchmarks/results_cam_more.md
    .venv-bench/bin/python benchmarks/bench_cam_more.py --quick  # reduced sizes, prints only

Same models, inputs, target layer (the last conv, "6", 32 channels), target and threads for
all. pytorch-grad-cam min-max scales, resizes with OpenCV and returns float32 (its costs are
included, as its users pay them); ours return raw maps upsampled to the input.

- "bare fwd of the rows": AblationCAM's N x 32 ablated rows (built beforehand) through the
  model without gradients, in chunks of the same ``batch_size``: what any implementation must
  pay; AblationCAM's ratio to it is its overhead (the ablation hook, the row gathering, the
  first pass for the activations).
- pytorch-grad-cam ablates sample by sample (chunks of at most ``batch_size`` channels of one
  sample); it is run with ``batch_size=32`` (= the channel count, its fastest).
- pytorch-grad-cam's FullGrad handles ``Conv2d``/``BatchNorm2d`` only and its AblationCAM
  4-D activations only: for signals these rows are missing. For signals its EigenCAM runs as
  (N, C, 1, T) through a wrapper (as in ``bench_cam.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import THREADS, setup, time_all  # noqa: E402  (puts src/ on sys.path)
from bench_cam import _As2d  # noqa: E402

from salience.explainers.cam_ablation import AblationCAM  # noqa: E402
from salience.explainers.cam_eigen import EigenCAM, EigenGradCAM  # noqa: E402
from salience.explainers.fullgrad import FullGrad  # noqa: E402

ROOT = Path(__file__).resolve().parent
LAYER = "6"
K = 32
BATCH = 256


def peer(model, x, target, method: str, **kw):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(target)] * len(x)
    if x.ndim == 3:
        wrapped = _As2d(model)
        layer, inp, reshape = wrapped.model[int(LAYER)], x.unsqueeze(2), (lambda a: a.unsqueeze(2))
    else:
        wrapped, layer, inp, reshape = model, model[int(LAYER)], x, None

    def run():
        layers = [] if method == "FullGrad" else [layer]
        cam = getattr(pgc, method)(model=wrapped, target_layers=layers, reshape_transform=reshape, **kw)
        try:
            cam(input_tensor=inp, targets=targets)
        finally:
            cam.activations_and_grads.release()

    return run


def bare_rows(model, x):
    rows = x.repeat_interleave(K, 0)

    def run():
        with torch.no_grad():
            for s in range(0, len(rows), BATCH):
                model(rows[s : s + BATCH])

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    n = 8 if args.quick else 32
    rounds = 1 if args.quick else 3
    target = 1
    lines = [
        f"Threads: {THREADS}; torch {torch.__version__}; N={n}; layer {LAYER!r} ({K} channels); target={target}; "
        f"best of {rounds} interleaved rounds after a warm-up; AblationCAM batch_size={BATCH}.",
        "",
        "| data | method | salience (s) | pytorch-grad-cam (s) | peer / ours |",
        "|---|---|---|---|---|",
    ]
    for kind in ("signals", "images"):
        model, x = setup(kind, n)
        fns = {
            "EigenCAM": lambda model=model, x=x: EigenCAM(model, layer=LAYER).explain(x, target),
            "EigenGradCAM": lambda model=model, x=x: EigenGradCAM(model, layer=LAYER).explain(x, target),
            "AblationCAM": lambda model=model, x=x: AblationCAM(
                model, layer=LAYER, progress=False, batch_size=BATCH
            ).explain(x, target),
            "FullGrad": lambda model=model, x=x: FullGrad(model).explain(x, target),
            "bare fwd of the rows": bare_rows(model, x),
            "peer EigenCAM": peer(model, x, target, "EigenCAM"),
            "peer EigenGradCAM": peer(model, x, target, "EigenGradCAM"),
        }
        if kind == "images":
            fns["peer AblationCAM"] = peer(model, x, target, "AblationCAM", batch_size=K)
            fns["peer FullGrad"] = peer(model, x, target, "FullGrad")
        t = time_all(fns, rounds)
        for m in ("EigenCAM", "EigenGradCAM", "AblationCAM", "FullGrad"):
            p = t.get(f"peer {m}")
            peer_s = "-" if p is None else f"{p:.3f}"
            ratio = "-" if p is None else f"{p / t[m]:.2f}x"
            lines.append(f"| {kind} | {m} | {t[m]:.3f} | {peer_s} | {ratio} |")
        lines.append(
            f"| {kind} | AblationCAM / bare fwd of its {n * K} rows | {t['AblationCAM'] / t['bare fwd of the rows']:.2f}x "
            f"({t['bare fwd of the rows']:.3f} s) | | |"
        )
    text = "\n".join(
        ["## CAM additions: Eigen, Ablation, FullGrad (`benchmarks/bench_cam_more.py`)", "", *lines, ""]
    )
    print(text)
    if not args.quick:
        (ROOT / "results_cam_more.md").write_text(text)


if __name__ == "__main__":
    main()
