"""What the report and the CLI show beside the pictures: IG's completeness gap, wavelet bands
named by level and frequency range, and the demo's figures sized for the report's column."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("matplotlib")

import salience as sl  # noqa: E402
from salience import viz  # noqa: E402
from salience.viz.report import completeness_metrics, completeness_summary  # noqa: E402


def _model(c: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv1d(c, 4, 5, padding=2), nn.Tanh(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)
        )
        .double()
        .eval()
    )


def test_completeness_metrics_are_the_gap_and_its_share_of_the_change():
    model = _model()
    x = torch.randn(3, 2, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    attr = sl.IntegratedGradients(model, n_steps=4).explain(x, target=1)
    with torch.no_grad():
        change = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]  # f(x) - f(0), written out
    for i in range(3):
        got = completeness_metrics(attr, i)
        gap = float(attr.values[i].sum() - change[i])
        assert got["completeness gap"] == pytest.approx(gap, abs=1e-12)
        assert got["relative completeness gap"] == pytest.approx(abs(gap) / abs(float(change[i])), rel=1e-9)
        assert got["relative completeness gap"] > 1e-6  # 4 steps: a visible gap
    text = completeness_summary(attr)
    worst = max(completeness_metrics(attr, i)["relative completeness gap"] for i in range(3))
    assert text is not None and f"at most {viz.report._fmt(worst)}" in text and "3 samples" in text
    grad = sl.Gradient(model).explain(x, target=1)
    assert completeness_metrics(grad, 0) == {} and completeness_summary(grad) is None


def test_wavelet_bands_are_named_by_level_and_frequency():
    model = _model(3)
    x = torch.randn(2, 3, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    attr = sl.WaveletIG(model, wavelet="db2", levels=3, n_steps=4).explain(x, target=1)
    ax = viz.plot_attribution(x, attr, 0, fs=128.0)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    # [A_3, D_1, D_2, D_3]: D_j spans fs/2^(j+1) to fs/2^j, A_3 from 0 to fs/16
    assert labels == ["A3\n0-8 Hz", "D1\n32-64 Hz", "D2\n16-32 Hz", "D3\n8-16 Hz"]
    assert "wavelet band" in ax.get_xlabel()
    ax = viz.plot_attribution(x, attr, 0)  # no sampling rate: the levels alone
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A3", "D1", "D2", "D3"]
    # a Fourier-banded map is not a wavelet's: no wavelet labels
    four = sl.aggregate_bands(sl.FourierIG(model, n_steps=4, fs=128.0).explain(x, target=1))
    ax = viz.plot_attribution(x, four, 0)
    assert "wavelet" not in ax.get_xlabel()


def test_cli_report_shows_the_gap_per_sample(tmp_path, monkeypatch):
    import warnings

    from salience.cli.main import main

    model = _model().float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation
        torch.jit.script(model).save(str(tmp_path / "m.pt"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 2, 32)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "m.pt", "x.npy", "--method", "ig", "--steps", "4", "--out", "o", "--quiet"]) == 0
    html = (tmp_path / "o" / "report.html").read_text()
    delta = np.load(tmp_path / "o" / "attributions.npz")["delta"]
    assert "Completeness: sum(attributions)" in html and html.count("relative completeness gap") == 2
    assert f"<b>completeness gap</b>: {viz.report._fmt(float(delta[0]))}" in html
    assert "Samples: IntegratedGradients" in html and 'data-text-px="' in html
    assert main(["explain", "m.pt", "x.npy", "--method", "gradient", "--out", "g", "--quiet"]) == 0
    assert "Completeness" not in (tmp_path / "g" / "report.html").read_text()


@pytest.mark.parametrize("n, image", [(6, False), (5, False), (6, True), (2, False)])
def test_demo_grids_fit_the_report_column(n, image):
    from salience.cli._demo_parts import FIGURE_WIDTH_IN, _grid_cell

    x = np.zeros((2, 3, 16, 16)) if image else np.zeros((2, 1, 50))
    maps = {f"m{i}": np.random.default_rng(i).standard_normal(x.shape) for i in range(n)}
    fig = viz.plot_grid(x, maps, cell_size=_grid_cell(n + image, image), show_input=image)
    assert fig.get_figwidth() <= FIGURE_WIDTH_IN + 1e-9
    assert FIGURE_WIDTH_IN * 100 <= 1200  # at the report's 100 dpi: within its 1200-px column
