"""The engine's check of model outputs for NaN/inf is accumulated on the device and read once
per pass of model calls (one host synchronisation), not once per call; the error is unchanged."""

from __future__ import annotations

import pytest
import torch

from salience.errors import ModelOutputError
from salience.explainers.gradient import Gradient
from salience.explainers.integrated_gradients import IntegratedGradients


def _model(bad_rows: set[int] | None = None):
    seen = [0]

    def model(t: torch.Tensor) -> torch.Tensor:
        out = t.flatten(1)[:, :3] * 2.0
        for i in range(t.shape[0]):
            if bad_rows and seen[0] + i in bad_rows:
                out = out.clone()
                out[i] = float("inf")
        seen[0] += t.shape[0]
        return out

    return model


def test_non_finite_output_in_a_later_call_is_refused():
    x = torch.randn(10, 2, 8, dtype=torch.float64)
    with pytest.raises(ModelOutputError, match="NaN or inf"):
        Gradient(_model({7}), batch_size=2).explain(x, 0)  # the fourth of five model calls
    with pytest.raises(ModelOutputError, match="NaN or inf"):
        IntegratedGradients(_model({33}), n_steps=8, batch_size=4).explain(x, 0)


def test_one_host_synchronisation_per_pass(monkeypatch):
    """The number of tensor-to-bool conversions does not grow with the number of model calls."""
    x = torch.randn(12, 2, 8, dtype=torch.float64)
    counts = []
    for batch_size in (12, 2):
        n = [0]
        real = torch.Tensor.__bool__

        def counting(self, real=real, n=n):
            n[0] += 1
            return real(self)

        monkeypatch.setattr(torch.Tensor, "__bool__", counting)
        IntegratedGradients(_model(), n_steps=8, batch_size=batch_size).explain(x, 0)
        monkeypatch.setattr(torch.Tensor, "__bool__", real)
        counts.append(n[0])
    assert counts[0] == counts[1]  # 1 call per pass vs 48 calls per pass: the same syncs
