"""Wavelet against PyWavelets' own ``wavedec``/``waverec`` (``mode="periodization"``) for every
orthogonal family PyWavelets offers: haar, db, sym, coif (dmey refused); names, ``pywt.Wavelet`` objects and
raw taps give the same transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import salience as sl
from salience.domains import daubechies

pywt = pytest.importorskip("pywt")

# every orthogonal discrete family PyWavelets has, at a few orders (dmey is refused: see below)
NAMES = ["haar", "db1", "db2", "db3", "db5", "db8", "db12", "db21", "sym2", "sym4", "sym7", "sym10",
         "coif1", "coif2", "coif4"]  # fmt: skip


def _x(n, seed=0, b=2, c=2):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((b, c, n)))


@pytest.fixture(autouse=True)
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Level value", UserWarning)  # pywt on long filters
        yield


def _levels(name, n):
    # as many levels as keep the deepest input at least as long as the filter
    taps = len(pywt.Wavelet(name).rec_lo)
    return max(1, min(3, int(np.log2(n / taps))))


def _reference(x, name, levels):
    """pywt.wavedec per signal, in our band order [A_L, D_1, ..., D_L]."""
    out = np.empty(x.shape)
    for i in np.ndindex(*x.shape[:-1]):
        bands = pywt.wavedec(x[i].numpy(), name, mode="periodization", level=levels)
        out[i] = np.concatenate([bands[0], *bands[:0:-1]])
    return torch.from_numpy(out)


def test_families_are_all_covered():
    discrete = set(pywt.wavelist(kind="discrete"))
    orthogonal = {
        f
        for f in pywt.families()
        if set(pywt.wavelist(f)) <= discrete and all(pywt.Wavelet(n).orthogonal for n in pywt.wavelist(f))
    }
    assert orthogonal == {"haar", "db", "sym", "coif", "dmey"}  # bior and rbio are not
    assert {n.rstrip("0123456789") for n in NAMES} == orthogonal - {"dmey"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("form", ["name", "object", "taps"])
def test_coefficients_and_inverse_equal_pywavelets(name, form):
    n = 64
    x = _x(n)
    levels = _levels(name, n)
    arg = {"name": name, "object": pywt.Wavelet(name), "taps": list(pywt.Wavelet(name).rec_lo)}[form]
    d = sl.Wavelet(arg, levels=levels).fit(x)
    z = d.forward(x)
    ref = _reference(x, name, levels)
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-11)
    # waverec of PyWavelets' coefficients, and our inverse of ours
    back = d.inverse(z)
    rec = torch.stack([torch.from_numpy(pywt.waverec(pywt.wavedec(s.numpy(), name, mode="periodization",
                       level=levels), name, mode="periodization")) for s in x.reshape(-1, n)])  # fmt: skip
    torch.testing.assert_close(back, rec.reshape(x.shape), rtol=0, atol=1e-11)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-10)  # pywt's sym tables are orthonormal to ~1e-12


@pytest.mark.parametrize("name", ["db2", "sym4", "coif1"])
def test_length_not_a_multiple_is_wrapped_then_pywavelets(name):
    n, levels = 45, 2
    x = _x(n, seed=3)
    d = sl.Wavelet(name, levels=levels).fit(x)
    wrapped = torch.cat([x, x[..., : 48 - n]], -1)  # circular padding to a multiple of 2**levels
    torch.testing.assert_close(d.forward(x), _reference(wrapped, name, levels), rtol=0, atol=1e-11)
    torch.testing.assert_close(d.inverse(d.forward(x)), x, rtol=0, atol=1e-10)


def test_name_object_and_dec_lo_only_object_agree():
    # the bug this convention fixes: the object path read dec_lo while the name path used rec_lo
    x = _x(32, seed=5)

    class DecOnly:
        dec_lo = pywt.Wavelet("db2").dec_lo

    zs = [sl.Wavelet(w, levels=2).fit(x).forward(x) for w in ("db2", pywt.Wavelet("db2"), DecOnly())]
    for z in zs[1:]:
        torch.testing.assert_close(z, zs[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 4, 10, 20])
def test_builtin_daubechies_equal_pywavelets_tables(order):
    np.testing.assert_allclose(daubechies(order), pywt.Wavelet(f"db{order}").rec_lo, rtol=0, atol=1e-11)


def test_dmey_refused_not_orthonormal():
    # PyWavelets calls it orthogonal, but its 62 taps are orthonormal only to ~2e-3: neither
    # its waverec nor a transpose inverts its wavedec, so it cannot be an exact domain
    h = np.asarray(pywt.Wavelet("dmey").rec_lo)
    assert abs(h @ h - 1) > 1e-3
    for w in ("dmey", pywt.Wavelet("dmey"), list(h)):
        with pytest.raises(sl.ParameterError, match="orthonormal"):
            sl.Wavelet(w)


def test_biorthogonal_and_unknown_names_refused():
    with pytest.raises(sl.ParameterError, match="orthogonal"):
        sl.Wavelet("bior2.2")
    with pytest.raises(sl.ParameterError, match="orthogonal"):
        sl.Wavelet(pywt.Wavelet("bior2.2"))
    with pytest.raises(sl.ParameterError, match="'wavelet'"):
        sl.Wavelet("nosuch3")


def test_without_pywavelets_names_beyond_db20_say_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pywt", None)  # import pywt now raises ImportError
    with pytest.raises(sl.ParameterError, match="PyWavelets"):
        sl.Wavelet("sym4")
    sl.Wavelet("db4")  # built in


@pytest.mark.parametrize("name", ["sym4", "coif2"])
def test_check_domain_kit(name):
    from salience.testing import check_domain

    check_domain(sl.Wavelet(name, levels=1))


def test_wavelet_ig_completeness_sym():
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 5, padding=2), torch.nn.Tanh(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 64, 2)).double().eval()  # fmt: skip
    x = _x(64, seed=7)
    attr = sl.WaveletIG(model, wavelet="sym4", levels=3, n_steps=32, rule="gausslegendre").explain(
        x, target=1
    )
    assert attr.values.shape == (2, 2, 4)
    f = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(attr.values.sum((1, 2)), f.detach(), rtol=1e-8, atol=1e-10)
