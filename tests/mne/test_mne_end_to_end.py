"""End to end on an EpochsArray with a 10-20 montage: explain(epochs) with IG, Fourier IG per band
and ICA-IG from MNE's ICA, class names as targets, topomaps and a report that names channels,
classes and bands. Needs the engine hook (Explainer.explain takes MNE objects and names)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from mne_fixtures import NAMES, SFREQ, epochs, fitted_ica, hook_wired, model, need_mne

import salience as sl
from salience.mne import from_mne, labels, windows
from salience.viz.topomap import plot_topomap

mne = need_mne()
pytest.importorskip("matplotlib")
pytestmark = pytest.mark.skipif(
    not hook_wired(),
    reason="the engine hook of issue #16 (Explainer.explain(x, channel_names=...)) is not wired yet",
)


def _texts(fig) -> list[str]:
    fig = fig if hasattr(fig, "findobj") else fig.figure
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


def test_explain_epochs_records_what_mne_knows():
    ep = epochs(n_epochs=4)
    net = model()
    a = sl.IntegratedGradients(net, n_steps=16).explain(ep, "left")
    x, _ = from_mne(ep, dtype=torch.float64)
    direct = sl.IntegratedGradients(net, n_steps=16).explain(x, 1)
    torch.testing.assert_close(a.values, direct.values, rtol=0, atol=0)  # the same tensor was explained
    assert a.target.tolist() == [1] * 4
    assert a.channel_names == NAMES and a.class_names == ["right", "left"] and a.sfreq == SFREQ
    assert a.info["positions"].shape == (len(NAMES), 3) and a.info["mne_info"]["ch_names"] == NAMES
    assert a.info["n_steps"] == 16  # the method's own info is kept beside
    # one class name per epoch, the labels' order
    names = [["right", "left"][k] for k in labels(ep).tolist()]
    per = sl.Gradient(net).explain(ep, names)
    assert per.target.tolist() == labels(ep).tolist()
    with pytest.raises(sl.TargetError, match=r"\['right', 'left'\]"):
        sl.Gradient(net).explain(ep, "up")


def test_given_names_override_and_are_checked():
    ep = epochs(n_epochs=2)
    net = model()
    a = sl.Gradient(net).explain(ep, "yes", class_names=["no", "yes"])
    assert a.class_names == ["no", "yes"] and a.target.tolist() == [1, 1]
    x = torch.as_tensor(ep.get_data())
    b = sl.Gradient(net).explain(x, 0, channel_names=[f"E{i}" for i in range(10)])
    assert b.channel_names[3] == "E3"
    with pytest.raises(sl.ShapeError, match="channel_names"):
        sl.Gradient(net).explain(x, 0, channel_names=["a", "b"])
    with pytest.raises(sl.TargetError, match="class_names"):
        sl.Gradient(net).explain(x, "left")


def test_evoked_and_windowed_raw():
    ep = epochs(n_epochs=4)
    net = model()
    ev = sl.Gradient(net).explain(ep.average(), 0)
    assert ev.values.shape == (1, len(NAMES), 200) and ev.channel_names == NAMES
    raw = mne.io.RawArray(np.concatenate(list(ep.get_data()), axis=1), ep.info, verbose="error")
    with pytest.raises(sl.InputError, match="windows"):
        sl.Gradient(net).explain(raw, 0)
    w = sl.Gradient(net).explain(windows(raw, length=2.0, step=1.0), 0)
    assert w.values.shape == (7, len(NAMES), 200) and w.sfreq == SFREQ


def test_fourier_bands_ica_topomaps_and_report():
    ep = epochs(n_epochs=4, times=300)
    net = model()
    ig = sl.IntegratedGradients(net, n_steps=32)
    plain = ig.explain(ep, "left")
    fourier = sl.InDomain(ig, sl.Fourier(fs=SFREQ)).explain(ep, "left")
    bands = sl.aggregate_bands(fourier, "eeg", fs=SFREQ)
    assert bands.info["band_names"][:5] == ["delta", "theta", "alpha", "beta", "gamma"]
    ica = fitted_ica(ep, 6)
    in_ica = sl.InDomain(ig, sl.ICA.from_mne(ica)).explain(ep, "left")
    for a in (plain, fourier, in_ica):
        assert a.class_names == ["right", "left"] and a.channel_names == NAMES
        assert float(a.delta.abs().max()) < 1e-2 * float(a.scores.abs().max())
    figures = [
        ("channels", plot_topomap(plain)),
        ("bands", plot_topomap(fourier, bands="eeg")),
        ("components", plot_topomap(in_ica, n_components=4)),
        ("signals", sl.viz.plot_attribution(from_mne(ep)[0], plain, 0)),
        (
            "band sums",
            sl.viz.plot_bands(dataclasses.replace(bands, values=bands.values[:1]), per_channel=True),
        ),
    ]
    texts = {cap: " ".join(_texts(fig)) for cap, fig in figures}
    assert "left" in texts["channels"] and "alpha (8-12 Hz)" in texts["bands"]
    assert "ICA00" in texts["components"]
    assert "O1" in texts["signals"] and "left" in texts["signals"]
    assert "Fp1" in texts["band sums"] and "alpha" in texts["band sums"]
    report = sl.viz.Report("EEG")
    report.sample("epoch 0", target=plain.class_names[int(plain.target[0])], figures=figures[1:2])
    html = report.to_html()
    assert "<b>target</b>: left" in html and html.count("<img") == 1 and "bands" in html


def test_metrics_take_epochs():
    ep = epochs(n_epochs=3)
    net = model()
    a = sl.Gradient(net).explain(ep, 1)
    x, _ = from_mne(ep, dtype=torch.float64)
    from salience.metrics import Deletion, deletion_curve

    torch.testing.assert_close(
        deletion_curve(net, ep, a, 1, steps=5, progress=False),
        deletion_curve(net, x, a, 1, steps=5, progress=False),
    )
    torch.testing.assert_close(
        Deletion(steps=5, progress=False)(net, ep, a, 1), Deletion(steps=5, progress=False)(net, x, a, 1)
    )
