"""open_attributions / Attribution.to_xarray, and the chunk-by-chunk summaries of a store
compared with the same statistics computed directly on the whole arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")
xr = pytest.importorskip("xarray")
pytest.importorskip("dask")

from dataset_helpers import Items, synthetic, tiny_model  # noqa: E402

from salience.datasets._store import StoreError  # noqa: E402
from salience.datasets.explain import explain_dataset  # noqa: E402
from salience.datasets.read import open_attributions  # noqa: E402
from salience.datasets.summaries import (  # noqa: E402
    class_means,
    dataset_section,
    importance,
    metric_table,
    summarise,
)
from salience.domains.fourier import Fourier  # noqa: E402
from salience.domains.in_domain import InDomain  # noqa: E402
from salience.errors import SalienceWarning  # noqa: E402
from salience.explainers.integrated_gradients import IntegratedGradients  # noqa: E402
from salience.metrics.complexity import Sparseness, sparseness  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    x, y = synthetic(500)
    path = explain_dataset(
        IntegratedGradients(tiny_model(), n_steps=8),
        (x, y),
        tmp_path_factory.mktemp("s") / "s.zarr",
        targets="label",
        batch_size=64,
        channel_names=["Fz", "Cz"],
        class_names=["a", "b", "c"],
        progress=False,
    )
    return path, x, y


def test_open_attributions_is_lazy_and_named(store):
    path, x, y = store
    ds = open_attributions(path)
    assert ds["values"].dims == ("sample", "c", "t")
    assert ds.sizes == {"sample": 500, "c": 2, "t": 16}
    assert hasattr(ds["values"].data, "dask")  # nothing read yet
    assert ds["values"].data.chunks[0][0] == 64
    assert ds.coords["c"].values.tolist() == ["Fz", "Cz"]
    assert ds.attrs["method"] == "IntegratedGradients" and ds.attrs["complete"] is True
    assert ds.attrs["class_names"] == ["a", "b", "c"]
    direct = IntegratedGradients(tiny_model(), n_steps=8).explain(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_array_equal(ds["values"].values, direct.numpy())
    np.testing.assert_array_equal(ds["label"].values, y)
    # the in-memory result reads the same
    mem = direct.to_xarray(channel_names=["Fz", "Cz"])
    assert mem["values"].dims == ds["values"].dims
    np.testing.assert_array_equal(mem["values"].values, ds["values"].values)
    np.testing.assert_array_equal(mem["delta"].values, ds["delta"].values)
    assert mem.coords["c"].values.tolist() == ["Fz", "Cz"]


def test_domain_coordinates(tmp_path):
    x, _ = synthetic(40)
    e = InDomain(IntegratedGradients(tiny_model(), n_steps=4), Fourier(fs=128.0))
    ds = open_attributions(explain_dataset(e, x, tmp_path / "f.zarr", batch_size=16, progress=False))
    assert ds["values"].dims == ("sample", "c", "f")
    np.testing.assert_allclose(ds.coords["f"].values, np.fft.rfftfreq(16, d=1 / 128.0))
    np.testing.assert_allclose(e.explain(torch.from_numpy(x[:3])).to_xarray().coords["f"], ds.coords["f"])
    per_band = importance(tmp_path / "f.zarr", "f")
    assert per_band.dims == ("f",) and per_band.coords["f"].values[1] == 8.0
    mass = importance(tmp_path / "f.zarr", "f", bands={"low": (0, 20), "high": (20, 65)})
    direct = np.abs(ds["values"].values).mean(axis=(0, 1))
    np.testing.assert_allclose(mass.values, [direct[:3].sum(), direct[3:].sum()], rtol=1e-12)
    assert mass.coords["band"].values.tolist() == ["low", "high"]


def test_incomplete_store_warns(tmp_path):
    x, y = synthetic(100)
    with pytest.raises(RuntimeError):
        explain_dataset(
            IntegratedGradients(tiny_model(), n_steps=4),
            Items(x, y, fail_at=40),
            tmp_path / "s.zarr",
            batch_size=32,
            progress=False,
        )
    with pytest.warns(SalienceWarning, match="32 of 100"):
        ds = open_attributions(tmp_path / "s.zarr")
    assert ds.attrs["complete"] is False
    assert np.isnan(ds["values"].values[32:]).all() and not np.isnan(ds["values"].values[:32]).any()
    assert summarise(tmp_path / "s.zarr")["n_written"] == 32
    with pytest.raises(StoreError, match="not a readable Zarr store"):
        open_attributions(tmp_path)  # a plain directory
    zarr.open_group(tmp_path / "other.zarr", mode="w")
    with pytest.raises(StoreError, match="holds no attributions"):
        open_attributions(tmp_path / "other.zarr")


def test_class_means_and_importance(store):
    path, _, y = store
    values = open_attributions(path)["values"].values
    means = class_means(path)
    assert means.dims == ("class", "c", "t") and means.coords["class"].values.tolist() == [0, 1, 2]
    for c in range(3):
        np.testing.assert_allclose(means.sel({"class": c}).values, values[y == c].mean(axis=0), rtol=1e-12)
        assert int(means.coords["count"].values[c]) == int((y == c).sum())
    assert means.coords["class_name"].values.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(class_means(path, absolute=True).values[1], np.abs(values[y == 1]).mean(0))
    per_channel = importance(path, "c")
    np.testing.assert_allclose(per_channel.values, np.abs(values).mean(axis=(0, 2)), rtol=1e-12)
    assert per_channel.coords["c"].values.tolist() == ["Fz", "Cz"]
    by_class = importance(path, "t", by="label")
    np.testing.assert_allclose(by_class.values[2], np.abs(values[y == 2]).mean(axis=(0, 1)), rtol=1e-12)
    with pytest.raises(Exception, match="axis"):
        importance(path, "h")


def test_metric_table(store):
    path, x, y = store
    values = torch.from_numpy(open_attributions(path)["values"].values)
    table = metric_table(path, {"sparseness": Sparseness()}, data=(x, y))
    np.testing.assert_allclose(table["sparseness"].values, sparseness(values).numpy(), rtol=1e-12)
    with pytest.raises(StoreError, match="not the data"):
        metric_table(path, {"sparseness": Sparseness()}, data=(x + 1, y))


def test_summarise_and_report_section(store):
    path, _, y = store
    s = summarise(path)
    assert s["n"] == s["n_written"] == 500 and s["method"] == "IntegratedGradients"
    assert list(s["mean_abs"]["c"]) == ["Fz", "Cz"]
    assert s["classes"]["1"]["count"] == int((y == 1).sum())
    assert s["max_abs_delta"] >= 0
    from salience.viz.report import Report

    pytest.importorskip("matplotlib")
    table = metric_table(path, {"sparseness": Sparseness()})
    html = dataset_section(Report("audit"), path, metrics=table).to_html()
    assert "Mean |attribution| per c" in html and "Fz" in html and "sparseness" in html
    assert "<img" in html  # the class-wise mean curves
