"""MNE objects as inputs: tensors, units, metadata, windows, class labels and names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from mne_fixtures import MONTAGE, NAMES, SFREQ, epochs, need_mne

import salience as sl
from salience._inputs import as_input, check_names, is_mne, named_target, with_names
from salience.mne import describe, from_mne, labels, windows

mne = need_mne()


def test_epochs_become_their_data_in_si_units_with_metadata():
    ep = epochs(stim=True)
    x, meta = from_mne(ep, dtype=torch.float64)
    direct = ep.get_data(picks="data")
    assert x.shape == (8, len(NAMES), 200) and x.dtype == torch.float64
    np.testing.assert_array_equal(x.numpy(), direct)  # the stim channel is left out
    assert meta["channel_names"] == NAMES
    assert meta["sfreq"] == SFREQ and meta["tmin"] == -0.5
    assert meta["units"] == ["V"] * len(NAMES) and meta["ch_types"] == ["eeg"] * len(NAMES)
    # event names ordered by code: 'right' (3) is class 0, 'left' (7) class 1
    assert meta["class_names"] == ["right", "left"]
    assert labels(ep).tolist() == [1, 0] * 4
    assert meta["event_id"] == {"left": 7, "right": 3}


def test_positions_are_the_montage_positions():
    ep = epochs()
    _, meta = from_mne(ep)
    ch_pos = ep.get_montage().get_positions()["ch_pos"]
    np.testing.assert_allclose(meta["positions"], np.stack([ch_pos[n] for n in NAMES]))
    assert meta["montage"] is not None and meta["mne_info"]["ch_names"] == NAMES
    _, bare = from_mne(epochs(montage=False))
    assert bare["positions"] is None and bare["montage"] is None


def test_units_and_default_dtype():
    ep = epochs()
    x, meta = from_mne(ep)
    assert x.dtype == torch.get_default_dtype()
    u, meta_u = from_mne(ep, units="uV", dtype=torch.float64)
    np.testing.assert_allclose(u.numpy(), ep.get_data() * 1e6)
    assert meta_u["units"] == ["uV"] * len(NAMES)
    with pytest.raises(sl.ParameterError, match="units"):
        from_mne(ep, units="parsec")


def test_picks_and_evoked():
    ep = epochs()
    x, meta = from_mne(ep, picks=["O1", "O2"], dtype=torch.float64)
    assert meta["channel_names"] == ["O1", "O2"]
    np.testing.assert_array_equal(x.numpy(), ep.get_data(picks=["O1", "O2"]))
    evoked = ep.average()
    xe, me = from_mne(evoked, dtype=torch.float64)
    assert xe.shape == (1, len(NAMES), 200) and "class_names" not in me
    np.testing.assert_allclose(xe[0].numpy(), evoked.data)
    with pytest.raises(sl.ParameterError, match="picks"):
        from_mne(ep, picks=["Cz"])


def test_raw_is_refused_and_windows_cut_it():
    ep = epochs()
    raw = mne.io.RawArray(np.concatenate(list(ep.get_data()), axis=1), ep.info, verbose="error")
    with pytest.raises(sl.InputError, match="windows"):
        from_mne(raw)
    w = windows(raw, length=2.0)
    x, meta = from_mne(w, dtype=torch.float64)
    assert x.shape == (8, len(NAMES), 200)
    np.testing.assert_array_equal(x.numpy(), ep.get_data())  # back to back: the original epochs
    half = windows(raw, length=2.0, step=1.0)
    assert len(half) == 15
    np.testing.assert_array_equal(
        from_mne(half, dtype=torch.float64)[0][1].numpy(), raw.get_data()[:, 100:300]
    )
    assert meta["channel_names"] == NAMES and "class_names" not in meta  # one event type
    for bad in ({"length": 0}, {"length": 1.0, "step": 2.0}, {"length": True}):
        with pytest.raises(sl.ParameterError):
            windows(raw, **bad)
    with pytest.raises(sl.InputError, match="Raw"):
        windows(ep, length=1.0)


def test_describe_matches_from_mne():
    ep = epochs()
    meta = describe(ep)
    assert meta["channel_names"] == NAMES and meta["class_names"] == ["right", "left"]


def test_as_input_passes_other_values_through():
    t = torch.ones(2, 3, 4)
    assert as_input(t) == (t, {})
    assert not is_mne(t) and not is_mne(np.ones(3)) and is_mne(epochs())
    x, meta = as_input(epochs(), torch.nn.Linear(2, 2).double())
    assert x.dtype == torch.float64 and meta["channel_names"] == NAMES


def test_named_targets():
    names = ["rest", "left", "right"]
    assert named_target("right", names) == 2
    assert named_target(["left", "rest"], names) == [1, 0]
    assert named_target(np.array(["right", "rest"]), names) == [2, 0]
    for other in (None, 1, [0, 1], torch.tensor([1]), sl.Class(1)):
        assert named_target(other, names) is other
    with pytest.raises(sl.TargetError, match=r"unknown class name 'up'.*\['rest', 'left', 'right'\]"):
        named_target("up", names)
    with pytest.raises(sl.TargetError, match="class_names"):
        named_target("left", None)
    for name in ("left", ["left", "rest"]):  # the one coercion point says how to name classes
        with pytest.raises(sl.TargetError, match=r"names a class: pass class_names=\[\.\.\.\]"):
            sl.as_target(name)


def test_names_are_checked_against_the_channels():
    x = torch.zeros(2, 3, 5)
    meta = with_names({}, x, sl.Layout("b c t"), ["a", "b", "c"], ["no", "yes"])
    assert meta == {"channel_names": ["a", "b", "c"], "class_names": ["no", "yes"]}
    with pytest.raises(sl.ShapeError, match="2 name"):
        with_names({}, x, sl.Layout("b c t"), ["a", "b"])
    with pytest.raises(sl.ParameterError, match="sequence of str"):
        check_names("abc", "channel_names")
    with pytest.raises(sl.ParameterError, match="repeats"):
        check_names(["a", "a"], "class_names")
    assert check_names(np.array(["x", "y"]), "class_names", 2) == ["x", "y"]


def test_attribution_reads_its_names():
    a = sl.Gradient(torch.nn.Flatten().eval()).explain(torch.ones(1, 2, 3), sl.Output(0))
    assert a.channel_names is None and a.class_names is None and a.sfreq is None
    b = dataclasses.replace(a, info={"channel_names": ["x", "y"], "class_names": ("n", "p"), "sfreq": 128})
    assert b.channel_names == ["x", "y"] and b.class_names == ["n", "p"] and b.sfreq == 128.0
    assert MONTAGE  # the montage name the tests use exists in this MNE
