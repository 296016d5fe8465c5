"""The Attribution result object: conversion to numpy for every floating dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import salience as sl


def _attr(values):
    return sl.Attribution(
        values=values,
        target=torch.zeros(values.shape[0], dtype=torch.long),
        scores=torch.zeros(values.shape[0]),
        method="Test",
        layout=sl.Layout("b c t"),
    )


@pytest.mark.parametrize(
    "dtype, np_dtype",
    [
        (torch.float64, np.float64),
        (torch.float32, np.float32),
        (torch.float16, np.float16),
        (torch.bfloat16, np.float32),
    ],
    ids=str,
)
def test_numpy_and_array_protocol_for_every_float_dtype(dtype, np_dtype):
    values = (torch.arange(-6, 6, dtype=torch.float64).reshape(2, 2, 3) / 4).to(dtype)
    attr = _attr(values)
    for arr in (attr.numpy(), np.asarray(attr)):
        assert isinstance(arr, np.ndarray) and arr.dtype == np_dtype and arr.shape == (2, 2, 3)
        # exact: the values are representable in every dtype, sign and scale kept
        np.testing.assert_array_equal(arr.astype(np.float64), values.double().numpy())
    assert np.asarray(attr, dtype=np.float64).dtype == np.float64


def test_bfloat16_explanation_converts():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 2)).to(torch.bfloat16).eval()
    x = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    attr = sl.Gradient(model).explain(x, 1)
    assert attr.values.dtype == torch.bfloat16
    np.testing.assert_array_equal(attr.numpy(), attr.values.float().numpy())
    assert attr.values.dtype == torch.bfloat16  # the attribution itself is not changed
