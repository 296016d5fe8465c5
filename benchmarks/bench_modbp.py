"""Modified-backprop benchmark: Guided Backprop, DeconvNet, LRP vs Captum / zennit and the bare limit.

Run by hand (never in tests):

    python benchmarks/bench_modbp.py            # full run, writes benchmarks/results_modbp.md
    python benchmarks/bench_modbp.py --quick    # tiny smoke run, prints only

All timings of one table come from one process, same model, input and thread count. The "bare
limit" is one plain forward+backward of the model over the batch (what any gradient-based
method must at least pay). Times are the best of ``repeats`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import salience as sl  # noqa: E402

THREADS = 2
ROOT = Path(__file__).resolve().parent


def cnn(dims: int, width: int) -> nn.Module:
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    pool = {1: nn.AvgPool1d, 2: nn.AvgPool2d}[dims]
    gap = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}[dims]
    cin = 8 if dims == 1 else 3
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [conv(cin if i == 0 else width, width, 3, padding=1), bn(width), nn.ReLU()]
        if i < 2:
            layers.append(pool(2))
    layers += [gap(1), nn.Flatten(), nn.Linear(width, 10)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def timeit(fn, repeats: int) -> float:
    fn()
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


def candidates(model, x, target):
    layer = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))][-1]
    from captum.attr import LRP as CLRP, Deconvolution, GuidedBackprop as CGBP, GuidedGradCam

    out = {
        "bare forward+backward": bare(model, x, target),
        "salience GuidedBackprop": lambda: sl.GuidedBackprop(model).explain(x, target),
        "captum GuidedBackprop": lambda: CGBP(model).attribute(x, target=target),
        "salience DeconvNet": lambda: sl.DeconvNet(model).explain(x, target),
        "captum Deconvolution": lambda: Deconvolution(model).attribute(x, target=target),
        "salience GuidedGradCAM (last conv)": lambda: sl.GuidedGradCAM(model, layer=layer).explain(x, target),
        "captum GuidedGradCam (bilinear)": lambda: GuidedGradCam(model, dict(model.named_modules())[layer]).attribute(
            x, target=target, interpolate_mode="linear" if x.ndim == 3 else "bilinear"
        ),
        "salience LRP epsilon": lambda: sl.LRP(model, composite="epsilon").explain(x, target),
        "salience LRP epsilon_plus_flat": lambda: sl.LRP(model, composite="epsilon_plus_flat").explain(x, target),
    }
    try:
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlusFlat

        def zennit_run():
            onehot = torch.zeros(x.shape[0], 10)
            onehot[:, target] = 1
            with Gradient(model, EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])) as attributor:
                attributor(x, lambda o: onehot * o)

        out["zennit LRP epsilon_plus_flat"] = zennit_run
    except ImportError:
        pass
    del CLRP  # Captum's LRP does not support BatchNorm: not compared
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    warnings.simplefilter("ignore")
    configs = (
        [("1-D CNN, (8, 256)", 1, (4, 8, 256), 16), ("2-D CNN, (3, 32, 32)", 2, (4, 3, 32, 32), 16)]
        if args.quick
        else [("1-D CNN, (8, 2000)", 1, (64, 8, 2000), 64), ("2-D CNN, (3, 128, 128)", 2, (32, 3, 128, 128), 64)]
    )
    repeats = 1 if args.quick else 5
    lines = [
        "## Modified backpropagation (Guided Backprop, DeconvNet, LRP)",
        "",
        f"CPU, {THREADS} threads, float32, best of {repeats}; ratio = time / bare forward+backward.",
        "Conv-BN-ReLU x3 with average pooling, global average pooling, Linear(., 10).",
        "",
    ]
    for title, dims, shape, width in configs:
        model = cnn(dims, width)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        times = {name: timeit(fn, repeats) for name, fn in candidates(model, x, 3).items()}
        base = times["bare forward+backward"]
        lines += [f"### {title}, batch {shape[0]}", "", "| method | time (s) | ratio |", "|---|---|---|"]
        lines += [f"| {name} | {t:.4f} | {t / base:.2f} |" for name, t in times.items()]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        (ROOT / "results_modbp.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
