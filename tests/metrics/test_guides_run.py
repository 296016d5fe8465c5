"""docs/perturbation.md, docs/class_relevant.md and docs/metrics.md: every Python block runs as
written, top to bottom in one namespace per guide (later blocks reuse the first block's names)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = ["perturbation.md", "class_relevant.md", "metrics.md"]


def _blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


@pytest.mark.parametrize("name", GUIDES)
def test_guide_blocks_run_in_order(name, capsys):
    blocks = _blocks(name)
    assert blocks, f"{name} has no Python example"
    if any("sklearn" in code for code in blocks):
        pytest.importorskip("sklearn")
    ns: dict = {"__name__": f"__{name.replace('.', '_')}__"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a guide that warns is teaching the wrong call
        for i, code in enumerate(blocks):
            exec(compile(code, f"docs/{name} block {i}", "exec"), ns)
