"""Tests for the Fractions Skill Score and the radially averaged power spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from earthcast.metrics.spatial import FSS, PowerSpectrum, rapsd


def block_fields(shift: int = 1, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3×3 block of ones and the same block shifted right by ``shift`` columns, (1, 1, H, W, 1)."""
    target = torch.zeros(1, 1, size, size, 1)
    pred = torch.zeros(1, 1, size, size, 1)
    target[0, 0, 4:7, 4:7, 0] = 1
    pred[0, 0, 4:7, 4 + shift : 7 + shift, 0] = 1
    return pred, target


def numpy_fss(pred: np.ndarray, target: np.ndarray, tau: float, n: int) -> float:
    """Independent FSS of 2-D fields with scipy's zero-padded box filter."""
    fp = uniform_filter((pred >= tau).astype(float), size=n, mode="constant")
    fo = uniform_filter((target >= tau).astype(float), size=n, mode="constant")
    return 1 - np.sum((fp - fo) ** 2) / np.sum(fp**2 + fo**2)


def test_fss_identical_fields_is_one():
    g = torch.Generator().manual_seed(0)
    field = torch.rand(2, 3, 12, 12, 1, generator=g)
    metric = FSS(thresholds=[0.3, 0.8], scales=[1, 3, 4])
    metric.update(field, field)
    for value in metric.compute().values():
        assert value.item() == pytest.approx(1.0)


def test_fss_shifted_block_scale_one_known_value():
    # 9 event pixels each, 6 overlap: Σ(a−b)² = 6, Σ(a²+b²) = 18 → FSS = 2/3
    pred, target = block_fields(shift=1)
    metric = FSS(thresholds=[0.5], scales=[1])
    metric.update(pred, target)
    value = metric.compute()["fss@0.5/1"].item()
    assert value == pytest.approx(2 / 3)
    assert value == pytest.approx(
        numpy_fss(pred[0, 0, :, :, 0].numpy(), target[0, 0, :, :, 0].numpy(), 0.5, 1)
    )


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_fss_neighbourhoods_match_scipy(n):
    pred, target = block_fields(shift=2)
    metric = FSS(thresholds=[0.5], scales=[n])
    metric.update(pred, target)
    expected = numpy_fss(pred[0, 0, :, :, 0].numpy(), target[0, 0, :, :, 0].numpy(), 0.5, n)
    assert metric.compute()[f"fss@0.5/{n}"].item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_fss_of_random_fields_matches_scipy_including_borders(n):
    g = torch.Generator().manual_seed(3)
    pred, target = torch.rand(1, 1, 10, 12, 1, generator=g), torch.rand(1, 1, 10, 12, 1, generator=g)
    metric = FSS(thresholds=[0.7], scales=[n])
    metric.update(pred, target)
    expected = numpy_fss(pred[0, 0, :, :, 0].numpy(), target[0, 0, :, :, 0].numpy(), 0.7, n)
    assert metric.compute()[f"fss@0.7/{n}"].item() == pytest.approx(expected, abs=1e-6)


def test_fss_grows_with_neighbourhood_for_displaced_block():
    pred, target = block_fields(shift=2)
    metric = FSS(thresholds=[0.5], scales=[1, 3, 5, 9])
    metric.update(pred, target)
    values = [v.item() for v in metric.compute().values()]
    assert values[0] == pytest.approx(1 - 12 / 18)  # overlap 3 pixels
    assert values == sorted(values) and values[-1] > 0.8


def test_fss_no_events_is_nan():
    zeros = torch.zeros(1, 1, 8, 8, 1)
    metric = FSS(thresholds=[0.5], scales=[3])
    metric.update(zeros, zeros)
    assert math.isnan(metric.compute()["fss@0.5/3"].item())


def test_fss_streaming_equals_one_update():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(4, 2, 10, 10, 1, generator=g), torch.rand(4, 2, 10, 10, 1, generator=g)
    whole, halves = FSS([0.5], [1, 3]), FSS([0.5], [1, 3])
    whole.update(pred, target)
    halves.update(pred[:2], target[:2])
    halves.update(pred[2:], target[2:])
    for key, value in whole.compute().items():
        assert halves.compute()[key].item() == pytest.approx(value.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("height", "width", "axis", "cycles", "expected_bin"),
    [
        (32, 32, "x", 5, 5),
        (32, 32, "y", 3, 3),
        (32, 64, "x", 8, 8),  # 8 cycles per 64 columns
        (32, 64, "y", 4, 8),  # 4 cycles per 32 rows = 8 cycles per max side (64)
    ],
)
def test_rapsd_of_sinusoid_peaks_at_its_wavenumber(height, width, axis, cycles, expected_bin):
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    phase = x / width if axis == "x" else y / height
    spectrum = rapsd(torch.sin(2 * math.pi * cycles * phase))
    assert spectrum.shape == (max(height, width) // 2 + 1,)
    assert int(spectrum.argmax()) == expected_bin
    others = torch.cat([spectrum[:expected_bin], spectrum[expected_bin + 1 :]])
    assert others.max() < 1e-6 * spectrum[expected_bin]


@pytest.mark.parametrize(("ky", "kx", "expected_bin"), [(3, 4, 5), (6, 8, 10), (4, 4, 6)])
def test_rapsd_of_diagonal_wave_peaks_at_its_radius(ky, kx, expected_bin):
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    spectrum = rapsd(torch.cos(2 * math.pi * (ky * y + kx * x) / 32))
    assert int(spectrum.argmax()) == expected_bin  # round(sqrt(ky² + kx²))


def test_rapsd_matches_explicit_ring_average():
    g = torch.Generator().manual_seed(4)
    field = torch.rand(12, 16, generator=g, dtype=torch.float64)
    power = np.abs(np.fft.fft2(field.numpy())) ** 2 / field.numel()
    rings: dict[int, list[float]] = {}
    for i, fy in enumerate(np.fft.fftfreq(12)):
        for j, fx in enumerate(np.fft.fftfreq(16)):
            radius = round(math.hypot(fy * 16, fx * 16))
            if radius <= 8:
                rings.setdefault(radius, []).append(power[i, j])
    expected = [np.mean(rings[r]) for r in range(9)]
    np.testing.assert_allclose(rapsd(field).numpy(), expected, rtol=1e-10)


def test_rapsd_constant_field_has_only_mean_power():
    spectrum = rapsd(torch.full((3, 16, 16), 2.0))
    assert spectrum.shape == (3, 9)
    torch.testing.assert_close(spectrum[:, 0], torch.full((3,), 4.0 * 16 * 16))
    assert spectrum[:, 1:].abs().max() < 1e-6


def test_power_spectrum_detects_blur():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 2, 32, 32, 1, generator=g)
    frames = target.permute(0, 1, 4, 2, 3).reshape(4, 1, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(frames, 3, stride=1, padding=1, count_include_pad=False)
    pred = blurred.reshape(2, 2, 1, 32, 32).permute(0, 1, 3, 4, 2)
    metric = PowerSpectrum()
    metric.update(pred, target)
    out = metric.compute()
    assert out["wavenumber"].tolist() == list(range(17))
    assert torch.all(out["pred"][8:] < 0.5 * out["target"][8:])  # small scales lose power
    same = PowerSpectrum()
    same.update(target, target)
    torch.testing.assert_close(same.compute()["pred"], same.compute()["target"])


def test_fss_refuses_fractional_neighbourhoods():
    with pytest.raises(ValueError, match="whole pixels"):
        FSS(thresholds=[0.5], scales=[2.5])
