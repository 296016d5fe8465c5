"""``salience explain-dataset`` and ``salience summarise`` (run through the commands' own entry
point, cli.dataset_commands.main)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")
pytest.importorskip("xarray")

from dataset_helpers import synthetic, tiny_model  # noqa: E402

from salience.cli.dataset_commands import main  # noqa: E402
from salience.explainers.integrated_gradients import IntegratedGradients  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated"),
]


@pytest.fixture
def files(tmp_path):
    x, y = synthetic(200)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    torch.jit.script(tiny_model()).save(str(tmp_path / "m.pt"))
    return tmp_path, x, y


def test_explain_dataset_then_summarise(files, capsys):
    tmp, x, y = files
    out = str(tmp / "a.zarr")
    args = [str(tmp / "m.pt"), str(tmp / "x.npy"), "--out", out, "--labels", str(tmp / "y.npy")]
    args += ["--target", "label", "--steps", "8", "--chunk", "64", "-q"]
    assert main(["explain-dataset", *args]) == 0
    stored = zarr.open_group(out, mode="r")["values"][:]
    direct = IntegratedGradients(tiny_model(), n_steps=8).explain(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(stored, direct.numpy(), rtol=0, atol=1e-12)
    capsys.readouterr()
    # an existing store needs --resume (nothing left to do) or --overwrite
    assert main(["explain-dataset", *args]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["explain-dataset", *args, "--resume"]) == 0
    # a changed explainer is refused with its difference
    assert (
        main(
            ["explain-dataset", *args[:-5], "--target", "label", "--steps", "16", "--chunk", "64", "--resume"]
        )
        == 2
    )
    assert "n_steps: 8 -> 16" in capsys.readouterr().err
    assert main(["summarise", out]) == 0
    text = capsys.readouterr().out
    assert "IntegratedGradients on 200 of 200 samples" in text and "class 2:" in text
    html = (tmp / "a-report.html").read_text()
    assert "Mean |attribution| per c" in html
    assert main(["summarise", out, "--json", "--report", str(tmp / "r.html")]) == 0
    assert '"n_written": 200' in capsys.readouterr().out and (tmp / "r.html").exists()
