"""docs/domains.md: every Python block runs as written, given the ``model``, ``x`` and
``train_rows`` its text assumes (signals sampled at 256 Hz, a classifier, FastICA training rows)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "domains.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _namespace() -> dict:
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
    train_rows = x.transpose(1, 2).reshape(-1, 4).numpy()  # time points as observations
    return {"model": model, "x": x.contiguous(), "train_rows": train_rows, "__name__": "__domains_md__"}


def test_the_guide_has_examples():
    assert len(BLOCKS) >= 3


def test_domains_md_blocks_run_in_order():
    """The blocks are read top to bottom (later ones use the first block's ``import``)."""
    if any("sklearn" in code for code in BLOCKS):
        pytest.importorskip("sklearn")
    ns = _namespace()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FastICA convergence on toy data
        for i, code in enumerate(BLOCKS):
            exec(compile(code, f"docs/domains.md block {i}", "exec"), ns)
    attr = ns["attr"]  # the last block's result: the trend/seasonal/residual split
    assert attr.values.shape == (2, 4, 3) and attr.delta.abs().max() < 1e-2
