"""docs/keras.md runs as written where TensorFlow is installed (tests/test_guides.py skips its
TensorFlow blocks; the torch-backend block runs in a fresh process)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "keras.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_tensorflow_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs_keras__"}
    blocks = [b for b in _blocks() if 'KERAS_BACKEND"] = "torch"' not in b]
    assert len(blocks) >= 5
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/keras.md block {i}", "exec"), namespace)
    assert namespace["cam"].values.shape == (8, 256, 1)
    namespace["model"].save(tmp_path / "model.keras")  # for the torch-backend block


def test_torch_backend_block_runs(tmp_path):
    (torch_block,) = [b for b in _blocks() if 'KERAS_BACKEND"] = "torch"' in b]
    build = "\n".join(b for b in _blocks()[1:3])  # the first model, saved for the torch block
    script = tmp_path / "make.py"
    script.write_text(build + "\nmodel.save('model.keras')\n")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, env=env, capture_output=True)
    run = tmp_path / "torch_block.py"
    run.write_text(torch_block + "\nprint(cam.values.shape)\n")
    out = subprocess.run([sys.executable, str(run)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch.Size([8, 256, 1])" in out.stdout
