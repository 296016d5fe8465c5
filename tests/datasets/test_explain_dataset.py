"""explain_dataset: the store equals explain() on the same samples, for every kind of data;
resumption after an exception or a SIGKILL; refusal of a changed explainer or data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")

from dataset_helpers import Items, synthetic, tiny_model  # noqa: E402

from salience.datasets._sources import as_source  # noqa: E402
from salience.datasets._store import StoreError  # noqa: E402
from salience.datasets.explain import explain_dataset  # noqa: E402
from salience.errors import ParameterError, SalienceError, TargetError  # noqa: E402
from salience.explainers.gradient import Gradient  # noqa: E402
from salience.explainers.integrated_gradients import IntegratedGradients  # noqa: E402
from salience.explainers.smoothgrad import SmoothGrad  # noqa: E402


def _arrays(path: str) -> dict[str, np.ndarray]:
    g = zarr.open_group(path, mode="r")
    return {k: g[k][:] for k in g.array_keys()}


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def reference(data, model, tmp_path_factory):
    """The store of an uninterrupted run, and explain() of the whole dataset in one call."""
    x, y = data
    ig = IntegratedGradients(model, n_steps=8)
    path = explain_dataset(
        ig, (x, y), tmp_path_factory.mktemp("ref") / "s.zarr", targets="label", batch_size=256
    )
    return _arrays(path), ig.explain(torch.from_numpy(x), torch.from_numpy(y))


def test_store_equals_explain(reference, data):
    stored, a = reference
    x, y = data
    assert stored["values"].shape == (len(x), 2, 16)
    np.testing.assert_array_equal(stored["values"], a.numpy())
    np.testing.assert_array_equal(stored["delta"], a.delta.numpy())
    np.testing.assert_array_equal(stored["score"], a.scores.numpy())
    np.testing.assert_array_equal(stored["target"], y)
    np.testing.assert_array_equal(stored["label"], y)
    assert stored["written"].tolist() == [1] * 8


def test_metadata(reference, tmp_path, model, data):
    x, y = data
    path = explain_dataset(
        IntegratedGradients(model, n_steps=8),
        x[:40],
        tmp_path / "m.zarr",
        batch_size=16,
        channel_names=["a", "b"],
        class_names=["r", "g", "b"],
        progress=False,
    )
    g = zarr.open_group(path, mode="r")
    doc = dict(g.attrs)["salience"]
    assert doc["method"] == "IntegratedGradients" and doc["layout"] == "b c t"
    assert doc["dims"] == ["sample", "c", "t"] and doc["channel_names"] == ["a", "b"]
    assert doc["hyperparameters"]["params"]["n_steps"] == 8
    assert doc["versions"]["torch"] == torch.__version__
    assert g["values"].chunks == (16, 2, 16) and g["values"].metadata.dimension_names == ("sample", "c", "t")
    assert "label" not in g  # plain arrays carry no labels
    # the predicted class was explained
    np.testing.assert_array_equal(g["target"][:], model(torch.from_numpy(x[:40])).argmax(1).numpy())


@pytest.mark.parametrize("kind", ["dataset", "loader", "npy", "zarr", "tensor"])
def test_every_kind_of_data(kind, reference, data, tmp_path):
    stored, _ = reference
    x, y = data
    x, y = x[:600], y[:600]
    if kind == "dataset":
        src = Items(x, y)
    elif kind == "loader":  # batches of 100 regrouped into chunks of 256
        src = torch.utils.data.DataLoader(Items(x, y), batch_size=100)
    elif kind == "npy":
        np.save(tmp_path / "x.npy", x)
        src = (np.load(tmp_path / "x.npy", mmap_mode="r"), y)
        assert as_source(src).path == str(tmp_path / "x.npy")  # read by path, not through the map
    elif kind == "zarr":
        src = (zarr.create_array(tmp_path / "x.zarr", data=x, chunks=(50, 2, 16)), y)
    else:
        src = (torch.from_numpy(x), y)
    path = explain_dataset(
        IntegratedGradients(tiny_model(), n_steps=8),
        src,
        tmp_path / "s.zarr",
        targets="label",
        batch_size=256,
    )
    got = _arrays(path)
    np.testing.assert_array_equal(got["values"], stored["values"][:600])
    np.testing.assert_array_equal(got["label"], y)


def test_per_sample_forward_inputs(tmp_path):
    """Dict items: the input, the label and a per-sample forward input ('scale')."""

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_model()

        def forward(self, x, scale):
            return self.net(x) * scale[:, None]

    x, y = synthetic(100)
    scale = torch.linspace(0.5, 2.0, 100, dtype=torch.float64)
    items = [{"x": torch.from_numpy(x[i]), "label": int(y[i]), "scale": scale[i]} for i in range(100)]
    model = Scaled().eval()
    ig = IntegratedGradients(model, n_steps=8)
    path = explain_dataset(ig, items, tmp_path / "s.zarr", targets="label", batch_size=32, progress=False)
    ref = ig.explain(torch.from_numpy(x), torch.from_numpy(y), forward_kwargs={"scale": scale})
    np.testing.assert_allclose(_arrays(path)["values"], ref.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(_arrays(path)["score"], ref.scores.numpy(), rtol=0, atol=1e-12)


def _direct_seed(seed: int, i: int) -> int:
    """The documented per-sample seed, written out: SeedSequence([seed, i, 0]), 63 bits."""
    words = np.random.SeedSequence([seed, i, 0]).generate_state(2, np.uint32)
    return (int(words[0]) << 32 | int(words[1])) & (2**63 - 1)


def test_stochastic_per_sample_seeds(data, model, tmp_path):
    x, _ = data
    x = x[:40]
    sg = SmoothGrad(Gradient(model), n_samples=4)
    a = explain_dataset(sg, x, tmp_path / "a.zarr", batch_size=16, seed=7, progress=False)
    b = explain_dataset(sg, x, tmp_path / "b.zarr", batch_size=7, seed=7, progress=False)
    va = _arrays(a)["values"]
    np.testing.assert_array_equal(va, _arrays(b)["values"])  # chunking does not matter
    for i in (0, 17, 39):
        gen = torch.Generator().manual_seed(_direct_seed(7, i))
        one = SmoothGrad(Gradient(model), n_samples=4, generator=gen).explain(torch.from_numpy(x[i : i + 1]))
        np.testing.assert_array_equal(va[i], one.numpy()[0])
    c = explain_dataset(sg, x, tmp_path / "c.zarr", batch_size=16, seed=8, progress=False)
    assert not np.array_equal(va, _arrays(c)["values"])
    # without a seed one is drawn, recorded, and reused on resume
    d = explain_dataset(sg, x, tmp_path / "d.zarr", batch_size=16, progress=False)
    seed = dict(zarr.open_group(d, mode="r").attrs)["salience"]["seed"]
    assert isinstance(seed, int)
    explain_dataset(sg, x, d, batch_size=16, progress=False)  # resumes: no refusal


@pytest.fixture
def writes(monkeypatch):
    """The chunks written (Store.write calls), in order."""
    from salience.datasets._store import Store

    seen: list[int] = []
    write = Store.write

    def record(self, result):
        seen.append(result.k)
        return write(self, result)

    monkeypatch.setattr(Store, "write", record)
    return seen


def test_exception_then_resume(reference, data, tmp_path, writes):
    stored, _ = reference
    x, y = data
    items = Items(x, y, fail_at=3 * 256 + 5)  # fails while reading chunk 3
    ig = IntegratedGradients(tiny_model(), n_steps=8)
    with pytest.raises(RuntimeError, match="injected"):
        explain_dataset(ig, items, tmp_path / "s.zarr", targets="label", batch_size=256, progress=False)
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert g["written"][:].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert writes == [0, 1, 2]
    items.reads.clear()
    explain_dataset(ig, items, tmp_path / "s.zarr", targets="label", batch_size=256, progress=False)
    # only the missing chunks were explained and written, each once
    assert writes == [0, 1, 2, 3, 4, 5, 6, 7]
    assert set(range(3 * 256)).isdisjoint(items.reads[5:])  # past the 5 samples the fingerprint hashes
    got = _arrays(tmp_path / "s.zarr")
    for k in ("values", "delta", "score", "target", "label", "written"):
        np.testing.assert_array_equal(got[k], stored[k])
    explain_dataset(ig, items, tmp_path / "s.zarr", targets="label", batch_size=256, progress=False)
    assert len(writes) == 8  # a finished store: nothing to do


_KILLED = """
import sys, time, numpy as np, torch
sys.path.insert(0, {src!r}); sys.path.insert(0, {tests!r})
from dataset_helpers import Items, synthetic, tiny_model
from salience.datasets.explain import explain_dataset
from salience.explainers.integrated_gradients import IntegratedGradients

class Slow(Items):
    def __getitem__(self, i):
        if i % 256 == 0:
            time.sleep(0.3)
        return super().__getitem__(i)

x, y = synthetic()
explain_dataset(IntegratedGradients(tiny_model(), n_steps=8), Slow(x, y), {out!r}, targets="label",
                batch_size=256, progress=False)
"""


def test_sigkill_then_resume(reference, data, tmp_path, writes):
    stored, _ = reference
    x, y = data
    here = os.path.dirname(os.path.abspath(__file__))
    out = str(tmp_path / "s.zarr")
    script = _KILLED.format(src=os.path.join(here, "..", "..", "src"), tests=here, out=out)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    try:
        deadline = time.monotonic() + 300  # a loaded machine takes long to import torch
        written = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(os.path.join(out, "written", "c")):
                written = len(os.listdir(os.path.join(out, "written", "c")))
                if written >= 2:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert written >= 2, "no chunk was written in time"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    g = zarr.open_group(out, mode="r")
    done = g["written"][:]
    assert 2 <= done.sum() < 8
    explain_dataset(
        IntegratedGradients(tiny_model(), n_steps=8), Items(x, y), out, targets="label", batch_size=256
    )
    assert writes == [k for k in range(8) if not done[k]]  # the missing chunks, each once
    got = _arrays(out)
    for k in ("values", "delta", "score", "target", "label", "written"):
        np.testing.assert_array_equal(got[k], stored[k])


def test_changed_explainer_or_data_refused(data, tmp_path):
    x, y = data
    x, y = x[:64], y[:64]
    model = tiny_model()
    out = tmp_path / "s.zarr"
    explain_dataset(IntegratedGradients(model, n_steps=8), x, out, batch_size=32, progress=False)
    with pytest.raises(StoreError, match="n_steps: 8 -> 16") as err:
        explain_dataset(IntegratedGradients(model, n_steps=16), x, out, batch_size=32, progress=False)
    assert isinstance(err.value, SalienceError)
    with pytest.raises(StoreError, match="weights"):
        explain_dataset(
            IntegratedGradients(tiny_model(seed=1), n_steps=8), x, out, batch_size=32, progress=False
        )
    with pytest.raises(StoreError, match="sample_hash"):
        explain_dataset(IntegratedGradients(model, n_steps=8), x + 1, out, batch_size=32, progress=False)
    with pytest.raises(StoreError, match=r"data\.n: 64 -> 63"):
        explain_dataset(IntegratedGradients(model, n_steps=8), x[:63], out, batch_size=32, progress=False)
    with pytest.raises(StoreError, match="chunk: 32 -> 16"):
        explain_dataset(IntegratedGradients(model, n_steps=8), x, out, batch_size=16, progress=False)
    with pytest.raises(StoreError, match="Gradient"):
        explain_dataset(Gradient(model), x, out, batch_size=32, progress=False)
    # resume=False replaces the store
    explain_dataset(Gradient(model), x, out, batch_size=32, resume=False, progress=False)
    assert dict(zarr.open_group(out, mode="r").attrs)["salience"]["method"] == "Gradient"


def test_parameter_errors(data, model, tmp_path):
    x, y = data
    ig = IntegratedGradients(model, n_steps=8)
    with pytest.raises(ParameterError, match="engine"):
        explain_dataset(ig, x[:8], tmp_path / "a.zarr", engine="spark")
    with pytest.raises(ParameterError, match="shuffle"):
        explain_dataset(ig, torch.utils.data.DataLoader(Items(x, y), shuffle=True), tmp_path / "b.zarr")
    with pytest.raises(TargetError, match="label"):
        explain_dataset(ig, x[:8], tmp_path / "c.zarr", targets="label", progress=False)
    with pytest.raises(ParameterError, match=r"\(8,\)"):
        explain_dataset(ig, x[:8], tmp_path / "d.zarr", targets=[0, 1], progress=False)
    with pytest.raises(ParameterError, match="explainer"):
        explain_dataset(model, x[:8], tmp_path / "e.zarr")
    with pytest.raises(ParameterError, match="workers"):
        explain_dataset(ig, x[:8], tmp_path / "f.zarr", workers=2)
    # one class for every sample, and per-sample classes
    path = explain_dataset(ig, x[:8], tmp_path / "g.zarr", targets=2, progress=False)
    assert _arrays(path)["target"].tolist() == [2] * 8
    path = explain_dataset(ig, x[:8], tmp_path / "h.zarr", targets=np.arange(8) % 3, progress=False)
    assert _arrays(path)["target"].tolist() == (np.arange(8) % 3).tolist()


def test_missing_extra_named(monkeypatch, data, model, tmp_path):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"salience\[datasets\]"):
        explain_dataset(IntegratedGradients(model), data[0][:8], tmp_path / "s.zarr")


def test_optional_modules_imported_lazily():
    """No module of salience imports zarr, xarray, dask or ray at import time (only inside
    functions), so ``import salience`` works without the extras."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "src" / "salience"
    found = []
    for path in root.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # top-level statements only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("zarr", "xarray", "dask", "ray")
            ]
    assert found == []


def test_mne_epochs(tmp_path):
    mne = pytest.importorskip("mne")
    x, y = synthetic(90)
    info = mne.create_info(["Fz", "Cz"], sfreq=64.0, ch_types="eeg", verbose=False)
    events = np.stack([np.arange(90) * 100, np.zeros(90, int), y], axis=1)
    epochs = mne.EpochsArray(x, info, events=events, verbose=False)
    ig = IntegratedGradients(tiny_model(), n_steps=8)
    path = explain_dataset(ig, epochs, tmp_path / "s.zarr", targets="label", batch_size=32, progress=False)
    got = _arrays(path)
    ref = ig.explain(torch.from_numpy(epochs.get_data()), torch.from_numpy(y))
    np.testing.assert_array_equal(got["values"], ref.numpy())
    np.testing.assert_array_equal(got["label"], y)
    assert dict(zarr.open_group(path, mode="r").attrs)["salience"]["channel_names"] == ["Fz", "Cz"]
