"""Tests for MSE / MAE conventions and frame-wise SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from earthcast.metrics.continuous import MAE, MSE, SSIM


def fields(seed: int, shape=(2, 3, 8, 6, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def test_pixel_mean_matches_numpy():
    pred, target = fields(0)
    diff = pred.double().numpy() - target.double().numpy()
    mse, mae = MSE(), MAE()
    mse.update(pred, target)
    mae.update(pred, target)
    assert mse.compute().item() == pytest.approx(np.mean(diff**2), rel=1e-12)
    assert mae.compute().item() == pytest.approx(np.mean(np.abs(diff)), rel=1e-12)


@pytest.mark.parametrize("cls", [MSE, MAE])
def test_frame_sum_is_pixel_mean_times_area(cls):
    pred, target = fields(1)
    pixel, frame = cls(reduction="pixel_mean"), cls(reduction="frame_sum")
    pixel.update(pred, target)
    frame.update(pred, target)
    assert frame.compute().item() == pytest.approx(pixel.compute().item() * 8 * 6, rel=1e-12)


def test_per_lead_vector_matches_manual_loop():
    pred, target = fields(2)
    metric = MSE(per_lead=True)
    metric.update(pred, target)
    per_lead = metric.compute()
    assert per_lead.shape == (3,)
    for t in range(3):
        expected = (pred[:, t].double() - target[:, t].double()).square().mean()
        assert per_lead[t].item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("cls", [MSE, MAE])
def test_nan_target_pixels_are_excluded(cls):
    pred, target = fields(3)
    target[:, :, 6:] = torch.nan
    masked, cropped = cls(), cls()
    masked.update(pred, target)
    cropped.update(pred[:, :, :6], target[:, :, :6])
    assert masked.compute().item() == pytest.approx(cropped.compute().item(), rel=1e-12)


def test_streaming_and_merge_equal_one_update():
    pred, target = fields(4, shape=(4, 3, 8, 8, 1))
    whole, part0, part1 = (MAE(reduction="frame_sum", per_lead=True) for _ in range(3))
    whole.update(pred, target)
    part0.update(pred[:1], target[:1])
    part1.update(pred[1:], target[1:])
    part0.merge_state(part1)
    torch.testing.assert_close(whole.compute(), part0.compute(), rtol=1e-12, atol=0)


def test_ssim_identical_fields_is_one():
    pred, _ = fields(5, shape=(2, 3, 16, 16, 1))
    metric = SSIM(data_range=1.0)
    metric.update(pred, pred)
    assert metric.compute().item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_equals_torchmetrics_on_reshaped_frames():
    pred, target = fields(6, shape=(2, 3, 16, 16, 2))
    target = 0.7 * pred + 0.3 * target  # correlated, so SSIM is far from 0 and 1
    metric = SSIM(data_range=1.0)
    metric.update(pred, target)
    frames_p = pred.permute(0, 1, 4, 2, 3).reshape(6, 2, 16, 16)
    frames_t = target.permute(0, 1, 4, 2, 3).reshape(6, 2, 16, 16)
    expected = structural_similarity_index_measure(frames_p, frames_t, data_range=1.0)
    assert 0.2 < metric.compute().item() < 0.99
    assert metric.compute().item() == pytest.approx(expected.item(), abs=1e-6)


def test_bad_reduction_raises():
    with pytest.raises(ValueError, match="reduction"):
        MSE(reduction="sum")
