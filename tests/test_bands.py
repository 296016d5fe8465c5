"""Band sets that fit the data: presets, user bands, generic splits, Nyquist, the 'other' entry."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import salience as sl
from salience.domains.bands import (
    EEG_BANDS,
    OUTSIDE_WARNING,
    aggregate_bands,
    linear_bands,
    octave_bands,
    resolve_bands,
)

D = torch.float64


def _bins(fs: float, t: int) -> torch.Tensor:
    return torch.arange(t // 2 + 1, dtype=D) * fs / t


def _direct(values: torch.Tensor, freqs: torch.Tensor, lo: float, hi: float, nyq: float) -> torch.Tensor:
    """Reference: the sum over bins lo <= f < hi (f <= Nyquist when the band reaches it)."""
    keep = (freqs >= lo) & ((freqs < hi) | (hi >= nyq))
    return values[..., keep].sum(-1)


def _model(c: int = 2) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(
        nn.Conv1d(c, 3, 5, padding=2), nn.Tanh(), nn.AdaptiveAvgPool1d(4), nn.Flatten(), nn.Linear(12, 2)
    ).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=D) * 0.3)
    return m.eval()


# ---------------------------------------------------------------- band sets as data
def test_octave_bands_are_powers_of_two_from_dc_to_nyquist():
    assert octave_bands(256.0) == {
        f"{a:g}-{b:g}": (a, b)
        for a, b in [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 128)]
    }
    # 10 Hz accelerometer data: Nyquist 5 Hz, a partial top octave; the resolution bounds the lowest
    assert octave_bands(10.0, resolution=0.1) == {
        "0-0.125": (0, 0.125),
        "0.125-0.25": (0.125, 0.25),
        "0.25-0.5": (0.25, 0.5),
        "0.5-1": (0.5, 1),
        "1-2": (1, 2),
        "2-4": (2, 4),
        "4-5": (4, 5),
    }
    assert list(octave_bands(10.0, max_bands=2)) == ["0-4", "4-5"]
    assert octave_bands(10.0, resolution=5.0) == {"0-5": (0.0, 5.0)}  # T = 2: DC and Nyquist


def test_linear_bands_split_nyquist_evenly():
    t = linear_bands(30.0, 3)
    assert t == {"0-5": (0, 5), "5-10": (5, 10), "10-15": (10, 15)}
    with pytest.raises(sl.ParameterError, match="int >= 1"):
        linear_bands(30.0, 0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("low:0-4,mid:4-12,high:12-50", {"low": (0, 4), "mid": (4, 12), "high": (12, 50)}),
        ("0-4, 4-8", {"0-4": (0, 4), "4-8": (4, 8)}),
        ("0,4,8", {"0-4": (0, 4), "4-8": (4, 8)}),
        ("linear:2", {"0-25": (0, 25), "25-50": (25, 50)}),
        ("EEG", {**EEG_BANDS, "gamma": (30.0, 50.0)}),  # clipped to Nyquist
        ({"slow": (0, 1), "fast": [1, np.inf]}, {"slow": (0, 1), "fast": (1, 50)}),
        ([0, 10, 20], {"0-10": (0, 10), "10-20": (10, 20)}),
    ],
)
def test_resolve_bands_specs(spec, expected):
    assert resolve_bands(spec, 100.0) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("low:0-4,bad", "spec such as 'low:0-4"),
        ("delta", "preset"),
        ({"other": (0, 1)}, "reserved"),
        ({"neg": (-1, 1)}, "0 <= low < high"),
        ({"flat": (3, 3)}, "0 <= low < high"),
        ([4, 2], "increasing"),
        ("eeg:3", "fixed set"),
        ("4,2", "increasing"),
        ("a:0-1,a:1-2", "named twice"),
        ("octave:0", "max_bands"),
    ],
)
def test_resolve_bands_rejects(spec, match):
    with pytest.raises(sl.ParameterError, match=match):
        resolve_bands(spec, 100.0)


def test_band_above_nyquist_names_band_rate_and_nyquist():
    with pytest.raises(sl.ParameterError) as err:
        resolve_bands("eeg", 10.0)
    msg = str(err.value)
    assert all(f"'{b}'" in msg for b in ("alpha", "beta", "gamma")) and "'theta'" not in msg
    assert "sampled at 10 Hz" in msg and "Nyquist frequency 5 Hz" in msg
    with pytest.raises(sl.ParameterError, match=r"'top' \(50-60 Hz\).*Nyquist frequency 50 Hz"):
        resolve_bands({"top": (50, 60)}, 100.0)


def test_generic_split_needs_fs():
    with pytest.raises(sl.ParameterError, match="fs="):
        resolve_bands("octave")
    assert resolve_bands("eeg") == EEG_BANDS  # no fs: no Nyquist check, no clipping


# ---------------------------------------------------------------- aggregate_bands
def test_default_is_octave_and_keeps_dc_and_every_bin():
    fs, t = 64.0, 128
    x = torch.randn(2, 2, t, dtype=D, generator=torch.Generator().manual_seed(1))
    x = x + 3.0  # a DC offset the model sees
    attr = sl.FourierIG(_model(), n_steps=8, fs=fs).explain(x, target=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = aggregate_bands(attr)
    freqs = _bins(fs, t)
    table = octave_bands(fs, resolution=fs / t)
    assert out.info["band_names"] == list(table) and "other" not in out.info["band_names"]
    assert out.layout == "b c band" and out.shape == (2, 2, len(table))
    for i, (lo, hi) in enumerate(table.values()):
        torch.testing.assert_close(out.values[..., i], _direct(attr.values, freqs, lo, hi, fs / 2))
    # DC and the Nyquist bin are inside: the bands add up to the total (completeness kept)
    torch.testing.assert_close(out.values.sum(-1), attr.values.sum(-1))
    assert attr.values[..., 0].abs().sum() > 0 and out.info["outside_share"] == 0.0


def test_eeg_bands_report_dc_and_low_bins_as_other():
    fs, t = 64.0, 128  # 0.5 Hz bins: DC lies below delta, 30-32 Hz is gamma clipped to Nyquist
    freqs = _bins(fs, t)
    v = torch.randn(3, 4, freqs.numel(), dtype=D, generator=torch.Generator().manual_seed(2))
    v[..., 0] = 0.01  # a little DC: no warning
    out = aggregate_bands(v, "eeg", freqs=freqs, fs=fs)
    assert out.shape == (3, 4, 6)
    torch.testing.assert_close(out[..., -1], v[..., 0])  # 'other' holds DC
    torch.testing.assert_close(out[..., 0], v[..., (freqs >= 0.5) & (freqs < 4)].sum(-1))
    torch.testing.assert_close(out[..., 4], v[..., freqs >= 30].sum(-1))  # gamma takes Nyquist
    torch.testing.assert_close(out.sum(-1), v.sum(-1))
    no_other = aggregate_bands(v, "eeg", freqs=freqs, fs=fs, other=False)
    torch.testing.assert_close(no_other, out[..., :5])


def test_large_outside_share_warns_with_frequencies():
    fs, t = 64.0, 128
    freqs = _bins(fs, t)
    v = torch.zeros(1, 1, freqs.numel(), dtype=D)
    v[..., 10] = 1.0  # 5 Hz, theta
    v[..., 0] = -0.2  # DC: 0.2 / 1.2 = 17% of the absolute mass
    with pytest.warns(sl.SalienceWarning, match=r"17% .*outside every band, at 0 Hz .*'other'"):
        aggregate_bands(v, "eeg", freqs=freqs, fs=fs)
    v[..., 0] = -0.1  # 0.1 / 1.1 = 9.1%, under the 10% threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = aggregate_bands(v, "eeg", freqs=freqs, fs=fs)
    assert out[0, 0, -1] == -0.1 and OUTSIDE_WARNING == 0.1
    # a gap between user bands is named by its frequency range
    v = torch.ones(1, freqs.numel(), dtype=D)
    with pytest.warns(sl.SalienceWarning, match=r"at 0-1.5 Hz, 8-32 Hz"):
        aggregate_bands(v, {"mid": (2, 8)}, freqs=freqs, fs=fs)


def test_onesided_and_full_fourier_give_the_same_bands():
    fs, t = 64.0, 64
    x = torch.randn(2, 2, t, dtype=D, generator=torch.Generator().manual_seed(3))
    m = _model()
    one = sl.FourierIG(m, n_steps=4, fs=fs).explain(x[..., :64], target=1)
    full = sl.FourierIG(m, n_steps=4, fs=fs, output="full").explain(x[..., :64], target=1)
    for bands in (None, "eeg", "low:0-4,high:4-40"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b = aggregate_bands(one, bands), aggregate_bands(full, bands)
        assert a.info["band_names"] == b.info["band_names"]
        torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-12)


def test_eeg_bands_on_10hz_data_is_an_error_not_zeros():
    x = torch.randn(2, 2, 64, dtype=D, generator=torch.Generator().manual_seed(4))
    attr = sl.FourierIG(_model(), n_steps=2, fs=10.0).explain(x, target=0)
    with pytest.raises(sl.ParameterError, match=r"'alpha' \(8-12 Hz\).*Nyquist frequency 5 Hz.*10 Hz"):
        aggregate_bands(attr, "eeg")
    out = aggregate_bands(attr)  # the default fits: octaves up to 5 Hz
    assert out.info["band_names"][-1] == "4-5" and "alpha" not in out.info["band_names"]
    assert out.info["bands"]["4-5"] == (4.0, 5.0)


def test_tensor_without_fs_uses_the_highest_bin_as_nyquist():
    freqs = _bins(20.0, 20)  # 0..10 Hz
    v = torch.arange(11, dtype=D)
    with pytest.raises(sl.ParameterError, match="highest bin is 10 Hz"):
        aggregate_bands(v, {"x": (12, 14)}, freqs=freqs)
    out = aggregate_bands(v, [0, 4, 20], freqs=freqs)  # clipped: 4-20 ends at 10 Hz, Nyquist included
    torch.testing.assert_close(out, torch.tensor([0 + 1 + 2 + 3, 4 + 5 + 6 + 7 + 8 + 9 + 10], dtype=D))
    with pytest.raises(sl.ShapeError, match="all 0"):
        aggregate_bands(torch.ones(1, dtype=D), freqs=torch.zeros(1))


def test_aggregate_bands_errors_keep_their_messages():
    x = torch.randn(1, 2, 64, dtype=D)
    with pytest.raises(sl.ParameterError, match="fs"):
        aggregate_bands(sl.FourierIG(_model(), n_steps=2).explain(x, target=0))
    with pytest.raises(sl.ParameterError, match="freqs"):
        aggregate_bands(torch.ones(3))
    with pytest.raises(sl.ShapeError, match="frequency axis 'f'"):
        aggregate_bands(sl.IntegratedGradients(_model(), n_steps=2).explain(x, target=0))


def test_stft_and_compose_band_axes():
    fs = 32.0
    x = torch.randn(1, 2, 64, dtype=D, generator=torch.Generator().manual_seed(5))
    attr = sl.STFTIG(_model(), n_steps=2, fs=fs, n_fft=16, hop_length=4).explain(x, target=0)
    out = aggregate_bands(attr, "lo:0-4,hi:4-16")
    assert out.layout == "b c band frame" and out.shape[2] == 2
    torch.testing.assert_close(out.values.sum(2), attr.values.sum(2))


# ---------------------------------------------------------------- the command line
FACTORY = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
"""


@pytest.fixture
def cli_files(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    (tmp_path / "bandmodel.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3, 2, 64)).astype(np.float32))
    return tmp_path


def _explain(tmp_path, *extra):
    from salience.cli import main

    return main(
        ["explain", "bandmodel:make", str(tmp_path / "x.npy"), "--method", "gradient", "--quiet"]
        + ["--plots", "0", "--out", str(tmp_path / "o"), *extra]
    )


def test_cli_bands_spec_saved_and_reported(cli_files):
    rc = _explain(cli_files, "--domain", "fourier", "--fs", "32", "--bands", "low:0-4,mid:4-12,high:12-16")
    assert rc == 0
    z = np.load(cli_files / "o" / "attributions.npz")
    assert list(z["band_names"]) == ["low", "mid", "high"] and z["bands"].shape == (3, 2, 3)
    np.testing.assert_allclose(z["band_edges"], [[0, 4], [4, 12], [12, 16]])
    np.testing.assert_allclose(z["bands"].sum(-1), z["values"].sum(-1), rtol=1e-5, atol=1e-6)
    assert json.loads(str(z["metadata"]))["bands"] == "low:0-4,mid:4-12,high:12-16"
    html = (cli_files / "o" / "report.html").read_text()
    assert "Bands" in html and "mid" in html and "4-12" in html


def test_cli_bands_preset_and_other(cli_files):
    assert _explain(cli_files, "--domain", "fourier", "--fs", "128", "--bands", "eeg") == 0
    z = np.load(cli_files / "o" / "attributions.npz")
    assert list(z["band_names"]) == ["delta", "theta", "alpha", "beta", "gamma", "other"]
    assert np.isnan(z["band_edges"][-1]).all() and z["band_edges"][-2].tolist() == [30, 64]
    np.testing.assert_allclose(z["bands"][..., -1], z["values"][..., 0])  # DC (2 Hz bins)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--domain", "time", "--fs", "32", "--bands", "eeg"), "--domain fourier or stft"),
        (("--domain", "fourier", "--bands", "eeg"), "--fs"),
        (("--domain", "fourier", "--fs", "10", "--bands", "eeg"), "'alpha'.*Nyquist frequency 5 Hz"),
        (("--domain", "fourier", "--fs", "32", "--bands", "low:0-4,x"), "spec such as"),
    ],
)
def test_cli_bands_refused_before_the_model_runs(cli_files, capsys, extra, message):
    assert _explain(cli_files, *extra) == 2
    err = capsys.readouterr().err
    assert "--bands" in err and re.search(message, err), err
    assert not (cli_files / "o").exists()  # refused before anything ran or was written
