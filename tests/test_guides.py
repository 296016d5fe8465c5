"""Every ```python block of every page under docs/ runs as written.

The blocks of one page run top to bottom in one namespace (later blocks reuse earlier names), in a
temporary working directory (examples that save files write there), with warnings raised as
errors (a guide that warns is teaching the wrong call) unless the page's entry in ``WARNINGS``
names the warning its text shows on purpose. Pages whose text assumes inputs it does not build
(``model``, ``x``, ...) get them from ``CONTEXTS``.

A block that cannot run is marked on the line before it with ``<!-- skip-test: reason -->``; the
reason is required. The README's blocks are run by ``tests/test_docs.py``, each on its own.
Specific checks of a guide's results stay with the feature's tests (tests/explainers/test_cam.py,
tests/explainers/test_modified_backprop.py, tests/test_domains_docs.py).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))

_FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
_SKIP = re.compile(r"<!--\s*skip-test:(.*?)-->\s*$")


def blocks(page: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip_reason)`` for each ```python block of ``page``, in order."""
    text = (DOCS / page).read_text()
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        out.append((line, m.group(1), skip.group(1).strip() if skip else None))
    return out


# ------------------------------------------------------------------ what the pages' text assumes
def _domains_md() -> dict:
    """Signals sampled at 256 Hz, a classifier, FastICA training rows (time points as rows)."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(4, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    ).eval()
    t = torch.arange(256) / 256.0
    src = torch.stack(
        [
            torch.sin(2 * torch.pi * 10 * t),
            torch.sign(torch.sin(2 * torch.pi * 3 * t)),
            torch.sin(2 * torch.pi * 25 * t),
            torch.cos(2 * torch.pi * 6 * t),
        ]
    )
    mixing = torch.randn(4, 4, generator=g) + 2 * torch.eye(4)
    x = torch.einsum("ck,kt->ct", mixing, src).expand(2, 4, 256) + 0.1 * torch.randn(2, 4, 256, generator=g)
    train_rows = x.transpose(1, 2).reshape(-1, 4).numpy()
    return {"model": model, "x": x.contiguous(), "train_rows": train_rows}


def _viz_md() -> dict:
    """The names its text lists: signals at 128 Hz and their maps, images, a clip, a volume, a
    Fourier-, an STFT- and an ICA-domain map, deletion curves and an Axes."""
    import salience as sl

    pytest.importorskip("matplotlib")
    g = torch.Generator().manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv1d(3, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 2)
    ).eval()
    x = torch.randn(4, 3, 256, generator=g)
    attr = sl.Gradient(model).explain(x, target=1)
    ig = sl.IntegratedGradients(model, n_steps=4).explain(x, target=1)
    cam = sl.GradCAM(model).explain(x, target=1)
    freq = sl.FourierIG(model, n_steps=4, fs=128.0).explain(x, target=1)
    tf = sl.STFTIG(model, n_steps=4, fs=128.0).explain(x, target=1)
    tf_coords = tf.domain.coordinates()
    ica = sl.ICA.from_matrices(torch.eye(3) + 0.3 * torch.randn(3, 3, generator=g))
    ica_attr = sl.InDomain(sl.IntegratedGradients(model, n_steps=4), ica).explain(x, target=1)

    imodel = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()
    img = torch.rand(2, 3, 24, 24, generator=g)
    img_attr = sl.Gradient(imodel).explain(img, target=0)
    maps = {
        "IG": sl.IntegratedGradients(imodel, n_steps=4).explain(img, target=0).values,
        "Grad-CAM": sl.GradCAM(imodel).explain(img, target=0).values,
    }

    vmodel = nn.Sequential(
        nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()
    clips = torch.rand(1, 3, 4, 16, 16, generator=g)
    volumes = torch.rand(1, 1, 8, 16, 16, generator=g)
    vol_model = nn.Sequential(
        nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(2, 2)
    ).eval()
    deletion = [sl.metrics.deletion_curve(model, x, a, target=1, steps=8, progress=False) for a in (ig, attr)]
    return {
        "x": x,
        "attr": attr,
        "ig": ig,
        "cam": cam,
        "names": ["Fz", "Cz", "Pz"],
        "img": img,
        "img_attr": img_attr,
        "maps": maps,
        "per_bin": freq.values[0],
        "freqs": freq.domain.coordinates()["f"],
        "tf_attr": tf.values[0],
        "times": tf_coords["frame"],
        "tf_freqs": tf_coords["f"],
        "weights": ica_attr.values[0],
        "sources": ica.forward(x[:1])[0],
        "clip": clips[0],
        "clip_attr": sl.Gradient(vmodel, layout="b c t h w").explain(clips, target=0),
        "volume": volumes[0],
        "vol_attr": sl.Gradient(vol_model, layout="b c t h w").explain(volumes, target=0),
        "del_curve": deletion[0],
        "del_curve2": deletion[1],
        "ax": sl.viz.plot_signal(x[0], attr.values[0], fs=128),
    }


CONTEXTS: dict[str, Callable[[], dict]] = {"domains.md": _domains_md, "viz.md": _viz_md}

# warnings a page's example shows on purpose: (category, message regex)
WARNINGS: dict[str, list[tuple[type[Warning], str]]] = {
    "cam.md": [(UserWarning, "ends in Softmax")],  # "warns: explains p_2", as its comment says
    "domains.md": [(Warning, "FastICA|did not converge")],  # scikit-learn on toy data
    # torch.compile imports torch._inductor, which uses torch.jit.script_method (torch's own warning)
    "transformers.md": [(DeprecationWarning, "torch.jit.script_method")],
}


def test_pages_found_and_skips_explained():
    assert {"cam.md", "domains.md", "metrics.md", "viz.md"} <= set(PAGES)
    for page in PAGES:
        for line, _, reason in blocks(page):
            assert reason != "", f"docs/{page}:{line}: skip-test needs a reason"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)])
def test_page_python_blocks_run_in_order(page, tmp_path, monkeypatch):
    found = blocks(page)
    code_all = "\n".join(code for _, code, _ in found)
    if "sklearn" in code_all:
        pytest.importorskip("sklearn")
    if "import mne" in code_all:
        pytest.importorskip("mne")
    ns = CONTEXTS.get(page, dict)()
    ns["__name__"] = "__docs_" + re.sub(r"\W", "_", page) + "__"
    monkeypatch.chdir(tmp_path)
    ran = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for category, message in WARNINGS.get(page, []):
            warnings.filterwarnings("ignore", message=f".*(?:{message})", category=category)
        for line, code, skip in found:
            if skip is not None:
                continue
            # compiled with blank lines in front so that tracebacks give the page's line numbers
            exec(compile("\n" * line + code, f"docs/{page}", "exec"), ns)
            ran += 1
    assert ran, f"docs/{page}: every block is skipped"
