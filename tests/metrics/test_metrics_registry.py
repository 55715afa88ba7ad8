"""Registry-wide smoke tests: every registered metric builds, updates and computes."""

from __future__ import annotations

import pytest
import torch
from torchmetrics import Metric

from earthcast.metrics import SEVIR_THRESHOLDS, ContingencyScores, get_metric, list_metrics

ENSEMBLE_METRICS = {"crps", "rank_histogram", "spread_skill", "brier"}
EXPECTED = {
    "sevir_csi", "contingency", "mse", "mae", "ssim", "fss", "power_spectrum", "enso",
    *ENSEMBLE_METRICS,
}  # fmt: skip
REQUIRED_ARGS = {"contingency": {"thresholds": (0.5,)}}


def inputs_for(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if name == "enso":
        shape = (2, 5, 24, 48, 1)
    else:
        shape = (2, 3, 16, 16, 1)
    target = torch.rand(shape, generator=g)
    if name in ENSEMBLE_METRICS:
        return torch.rand((shape[0], 4, *shape[1:]), generator=g), target
    return torch.rand(shape, generator=g), target


def test_expected_names_are_registered():
    assert EXPECTED <= set(list_metrics())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_metric_updates_and_computes(name):
    metric = get_metric(name, **REQUIRED_ARGS.get(name, {}))
    assert isinstance(metric, Metric)
    pred, target = inputs_for(name)
    metric.update(pred, target)
    out = metric.compute()
    values = out.values() if isinstance(out, dict) else [out]
    assert all(torch.is_tensor(v) for v in values)
    assert any(torch.isfinite(v).all() for v in values)
    metric.reset()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_metric_takes_numpy_arrays_as_tensors(name):
    pred, target = inputs_for(name)
    from_tensors = get_metric(name, **REQUIRED_ARGS.get(name, {}))
    from_tensors.update(pred, target)
    from_arrays = get_metric(name, **REQUIRED_ARGS.get(name, {}))
    from_arrays.update(pred.numpy(), target=target.numpy())  # positional and keyword
    expected, got = from_tensors.compute(), from_arrays.compute()
    expected, got = (expected, got) if isinstance(expected, dict) else ({0: expected}, {0: got})
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], equal_nan=True)


def test_sevir_csi_defaults_and_overrides():
    metric = get_metric("SEVIR_CSI", mode="1", pool_size=4)  # case-insensitive
    assert isinstance(metric, ContingencyScores)
    assert metric.thresholds == tuple(float(t) for t in SEVIR_THRESHOLDS)
    assert (metric.mode, metric.pool_size, metric.scale, metric.missing_value) == ("1", 4, 255.0, 255)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown metric 'csi'.*sevir_csi"):
        get_metric("csi")
