"""explain_dataset(engine="ray") on a real local Ray cluster (2 CPUs): the same store as the local
engine, resumption shared with it, and an actor killed mid-run (SIGKILL) replaced without a
sample written twice."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

zarr = pytest.importorskip("zarr")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

# starting a Ray cluster takes 10-30 s on 2 cores, and a killed actor is replaced only after Ray
# notices its death: run with `pytest -m slow tests/datasets/test_ray_engine.py`
pytestmark = pytest.mark.slow

import dataset_helpers  # noqa: E402
from dataset_helpers import Items, KillOnce, synthetic, tiny_model  # noqa: E402

from salience.datasets._store import Store  # noqa: E402
from salience.datasets.explain import explain_dataset  # noqa: E402
from salience.explainers.gradient import Gradient  # noqa: E402
from salience.explainers.integrated_gradients import IntegratedGradients  # noqa: E402
from salience.explainers.smoothgrad import SmoothGrad  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        yield
        return
    # the test helpers travel by value (Ray workers do not have tests/ on their path)
    ray.cloudpickle.register_pickle_by_value(dataset_helpers)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(dataset_helpers)


def _arrays(path):
    g = zarr.open_group(path, mode="r")
    return {k: g[k][:] for k in g.array_keys()}


def test_ray_equals_local_and_survives_a_killed_actor(cluster, tmp_path, monkeypatch):
    x, y = synthetic(600)
    model = tiny_model()
    ig = IntegratedGradients(model, n_steps=8)
    local = explain_dataset(
        ig, (x, y), tmp_path / "local.zarr", targets="label", batch_size=64, progress=False
    )
    writes: list[int] = []
    write = Store.write
    monkeypatch.setattr(Store, "write", lambda self, r: (writes.append(r.k), write(self, r))[1])
    items = KillOnce(x, y, kill_at=5 * 64 + 3, marker=str(tmp_path / "killed"))
    path = explain_dataset(
        ig,
        items,
        tmp_path / "ray.zarr",
        targets="label",
        batch_size=64,
        engine="ray",
        workers=2,
        progress=False,
    )
    assert os.path.exists(tmp_path / "killed")  # an actor did die mid-run
    assert sorted(writes) == list(range(10))  # every chunk written exactly once
    a, b = _arrays(local), _arrays(path)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_ray_resumes_a_local_store_with_per_sample_seeds(cluster, tmp_path):
    x, _ = synthetic(48)
    sg = SmoothGrad(Gradient(tiny_model()), n_samples=2)
    whole = explain_dataset(sg, x, tmp_path / "whole.zarr", batch_size=8, seed=5, progress=False)
    # a local run interrupted after three chunks, finished on Ray
    items = Items(x, np.zeros(48, np.int64), fail_at=3 * 8)
    with pytest.raises(RuntimeError, match="injected"):
        explain_dataset(sg, items, tmp_path / "mixed.zarr", batch_size=8, seed=5, progress=False)
    items.fail_at = None
    explain_dataset(
        sg, items, tmp_path / "mixed.zarr", batch_size=8, seed=5, engine="ray", workers=1, progress=False
    )
    np.testing.assert_array_equal(_arrays(whole)["values"], _arrays(tmp_path / "mixed.zarr")["values"])
    np.testing.assert_array_equal(_arrays(tmp_path / "mixed.zarr")["written"], np.ones(6))
    assert torch.get_default_dtype() == torch.float32
