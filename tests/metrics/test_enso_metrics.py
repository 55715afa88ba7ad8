"""Tests for the Niño3.4 index and the ENSO correlation skill."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from earthcast.metrics.enso import (
    SST_MAX,
    SST_MIN,
    EnsoScores,
    denormalise_sst,
    lead_weights,
    nino34_index,
    normalise_sst,
    running_mean,
)


def sst_fields(seed: int, n: int = 16, t: int = 14) -> torch.Tensor:
    """Normalised SST with a sample-dependent Niño3.4 signal, (N, T, 24, 48, 1), float64."""
    g = torch.Generator().manual_seed(seed)
    anomaly = 0.5 * torch.randn(n, t, 24, 48, 1, generator=g, dtype=torch.float64)
    anomaly[:, :, 10:13, 19:30] += 2 * torch.randn(n, t, 1, 1, 1, generator=g, dtype=torch.float64)
    return normalise_sst(anomaly)


def numpy_nino34(anomaly: np.ndarray) -> np.ndarray:
    """Box mean over rows 10–12, columns 19–29, then a 3-month running mean (valid convolution)."""
    monthly = anomaly[:, :, 10:13, 19:30].mean(axis=(2, 3))
    return np.stack([np.convolve(series, np.ones(3) / 3, mode="valid") for series in monthly])


def test_lead_weights_equal_tianchi_formula():
    a = [1.5] * 4 + [2.0] * 7 + [3.0] * 1
    expected = [a_l * math.log(lead) for lead, a_l in zip(range(1, 13), a)]
    torch.testing.assert_close(lead_weights(12), torch.tensor(expected, dtype=torch.float64))
    assert lead_weights(12)[0].item() == 0.0  # ln(1) = 0
    longer = lead_weights(20)
    assert longer[17].item() == pytest.approx(3 * math.log(18))
    assert longer[18].item() == pytest.approx(4 * math.log(19))


def test_nino34_index_matches_numpy():
    anomaly = denormalise_sst(sst_fields(0, n=3))
    index = nino34_index(anomaly)
    assert index.shape == (3, 12)
    np.testing.assert_allclose(index.numpy(), numpy_nino34(anomaly[..., 0].numpy()), rtol=1e-12)
    torch.testing.assert_close(nino34_index(anomaly[..., 0]), index)  # 4-D input is accepted too


def test_nino34_index_only_reads_the_box():
    anomaly = torch.zeros(1, 5, 24, 48)
    anomaly[:, :, 10:13, 19:30] = 1.0
    anomaly[:, :, 9, :] = anomaly[:, :, 13, :] = 100.0  # rows just outside the box
    anomaly[:, :, :, 18] = anomaly[:, :, :, 30] = 100.0  # columns just outside the box
    torch.testing.assert_close(nino34_index(anomaly), torch.ones(1, 3))


@pytest.mark.parametrize(("t", "expected"), [(14, 12), (26, 24), (3, 1)])
def test_running_mean_lengths(t, expected):
    assert running_mean(torch.arange(float(t))).shape == (expected,)
    torch.testing.assert_close(running_mean(torch.arange(5.0)), torch.tensor([1.0, 2.0, 3.0]))


def test_running_mean_too_short_raises():
    with pytest.raises(ValueError, match="at least 3"):
        running_mean(torch.zeros(2))
    with pytest.raises(ValueError, match="24, 48"):
        nino34_index(torch.zeros(1, 14, 24, 72))


def test_denormalise_round_trip_and_constants():
    assert denormalise_sst(torch.tensor(0.0)).item() == pytest.approx(SST_MIN)
    assert denormalise_sst(torch.tensor(1.0)).item() == pytest.approx(SST_MAX)
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(denormalise_sst(normalise_sst(x)), x)


def test_perfect_forecast_scores():
    sst = sst_fields(1)
    metric = EnsoScores()
    metric.update(sst, sst)
    out = metric.compute()
    torch.testing.assert_close(out["cor"], torch.ones(12, dtype=torch.float64), atol=1e-5, rtol=0)
    assert out["c_nino34_m"].item() == pytest.approx(1.0, abs=1e-5)
    assert out["c_nino34_wm"].item() == pytest.approx(lead_weights(12).mean().item(), abs=1e-4)
    assert out["nino_rmse"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["mse"].item() == 0.0


def test_correlation_rmse_and_mse_match_numpy():
    target = sst_fields(2)
    g = torch.Generator().manual_seed(3)
    pred = target + 0.02 * torch.randn(target.shape, generator=g, dtype=torch.float64)
    metric = EnsoScores()
    metric.update(pred, target)
    out = metric.compute()
    p = numpy_nino34(denormalise_sst(pred)[..., 0].numpy())
    y = numpy_nino34(denormalise_sst(target)[..., 0].numpy())
    cor = np.array([np.corrcoef(p[:, lead], y[:, lead])[0, 1] for lead in range(12)])
    np.testing.assert_allclose(out["cor"].numpy(), cor, atol=1e-5)
    assert 0.5 < cor.mean() < 0.999
    assert out["c_nino34_m"].item() == pytest.approx(cor.mean(), abs=1e-5)
    assert out["c_nino34_wm"].item() == pytest.approx(np.mean(lead_weights(12).numpy() * cor), abs=1e-5)
    rmse = np.sqrt(((p - y) ** 2).mean(axis=0)).mean()
    assert out["nino_rmse"].item() == pytest.approx(rmse, rel=1e-9)
    assert out["mse"].item() == pytest.approx(((pred - target) ** 2).mean().item(), rel=1e-12)


def test_target_labels_replace_target_index():
    target = sst_fields(4)
    pred = sst_fields(5)
    from_fields, from_labels = EnsoScores(), EnsoScores()
    from_fields.update(pred, target)
    from_labels.update(pred, target, target_nino=nino34_index(denormalise_sst(target)))
    for key, value in from_fields.compute().items():
        torch.testing.assert_close(from_labels.compute()[key], value)
    with pytest.raises(ValueError, match="target_nino"):
        from_labels.update(pred, target, target_nino=torch.zeros(16, 11))


def test_streaming_and_merge_equal_one_update():
    target, pred = sst_fields(6), sst_fields(7)
    whole, part0, part1 = EnsoScores(), EnsoScores(), EnsoScores()
    whole.update(pred, target)
    part0.update(pred[:5], target[:5])
    part1.update(pred[5:], target[5:])
    part0.merge_state(part1)
    for key, value in whole.compute().items():
        torch.testing.assert_close(part0.compute()[key], value, rtol=1e-9, atol=1e-12)
