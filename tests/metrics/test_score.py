"""Tests for ``score_arrays`` (the ``earthcast score`` back end)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earthcast.metrics import SEVIR_THRESHOLDS, ContingencyScores, score_arrays
from earthcast.metrics.enso import normalise_sst


def sevir_bytes(seed: int, shape=(3, 4, 16, 16)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, shape).astype(np.float32), rng.integers(0, 255, shape).astype(np.float32)


def test_sevir_keys_and_values():
    pred, target = sevir_bytes(0)
    out = score_arrays(pred / 255, target / 255, kind="sevir", scale="01", mode="0")
    for tau in SEVIR_THRESHOLDS:
        for score in ("csi", "pod", "sucr", "bias"):
            assert isinstance(out[f"{score}@{tau}"], float)
    assert out["csi_m"] == pytest.approx(np.mean([out[f"csi@{tau}"] for tau in SEVIR_THRESHOLDS]))
    metric = ContingencyScores(SEVIR_THRESHOLDS)
    metric.update(torch.from_numpy(pred / 255)[..., None], torch.from_numpy(target / 255)[..., None])
    assert out["csi_m"] == pytest.approx(metric.compute()["csi_m"].item(), abs=1e-12)
    diff = (pred - target).astype(np.float64) / 255
    assert out["mse"] == pytest.approx(np.mean(diff**2), rel=1e-6)
    assert out["mae"] == pytest.approx(np.mean(np.abs(diff)), rel=1e-6)


def test_sevir_byte_scale_equals_unit_scale_and_4d_equals_5d():
    pred, target = sevir_bytes(1)
    from_bytes = score_arrays(pred, target, kind="sevir", scale="255")
    from_unit = score_arrays(pred / 255, target / 255, kind="sevir", scale="01")
    from_5d = score_arrays(pred[..., None], target[..., None], kind="sevir", scale="255")
    assert from_bytes.keys() == from_unit.keys() == from_5d.keys()
    for key in from_bytes:
        assert from_bytes[key] == pytest.approx(from_unit[key], abs=1e-6)
        assert from_bytes[key] == from_5d[key]


def test_sevir_missing_255_is_excluded():
    pred, target = sevir_bytes(2)
    target_missing = target.copy()
    target_missing[..., 12:] = 255
    pred_junk = pred.copy()
    pred_junk[..., 12:] = 250
    with_missing = score_arrays(pred_junk, target_missing, kind="sevir", scale="255")
    cropped = score_arrays(pred[..., :12], target[..., :12], kind="sevir", scale="255")
    for key in cropped.keys() - {"missing_pixels"}:
        assert with_missing[key] == pytest.approx(cropped[key], abs=1e-9), key
    assert with_missing["missing_pixels"] == target[..., 12:].size and cropped["missing_pixels"] == 0


def test_sevir_mode_1_gives_lists_and_chunking_does_not_matter():
    pred, target = sevir_bytes(3)
    small = score_arrays(pred, target, kind="sevir", scale="255", mode="1", chunk_size=1)
    big = score_arrays(pred, target, kind="sevir", scale="255", mode="1", chunk_size=100)
    assert isinstance(small["csi@74"], list) and len(small["csi@74"]) == 4
    assert small["csi@74"] == pytest.approx(big["csi@74"], abs=1e-12)
    assert small["mse"] == pytest.approx(big["mse"], rel=1e-9)


def test_enso_perfect_forecast():
    rng = np.random.default_rng(4)
    anomaly = rng.normal(size=(8, 14, 24, 48)).astype(np.float32)
    anomaly[:, :, 10:13, 19:30] += 2 * rng.normal(size=(8, 14, 1, 1)).astype(np.float32)
    sst = normalise_sst(anomaly)
    out = score_arrays(sst, sst, kind="enso")
    assert {"c_nino34_m", "c_nino34_wm", "nino_rmse", "mse"} <= out.keys()
    assert out["c_nino34_m"] == pytest.approx(1.0, abs=1e-5)
    assert out["nino_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert out["mse"] == 0.0
    assert len(out["cor"]) == 12


def test_continuous_keys_and_values():
    rng = np.random.default_rng(5)
    pred = rng.random((2, 3, 16, 16)).astype(np.float32)
    out = score_arrays(pred, pred, kind="continuous")
    counts = {"scored_pixels": pred.size, "missing_pixels": 0}
    assert out == pytest.approx({"mse": 0.0, "mae": 0.0, "ssim": 1.0, **counts}, abs=1e-6)
    target = rng.random((2, 3, 16, 16)).astype(np.float32)
    out = score_arrays(pred * 255, target * 255, kind="continuous", scale="255")
    assert out["mse"] == pytest.approx(np.mean((pred.astype(np.float64) - target) ** 2) * 255**2, rel=1e-5)
    assert out["ssim"] < 0.5


@pytest.mark.parametrize(
    ("pred_shape", "target_shape", "kind", "match"),
    [
        ((2, 3, 16, 16), (2, 4, 16, 16), "sevir", "differs from target shape"),
        ((2, 16, 16), (2, 16, 16), "sevir", r"must be \(N, T, H, W\)"),
        ((2, 3, 16, 16, 1, 1), (2, 3, 16, 16, 1, 1), "sevir", "6-D"),
        ((2, 14, 24, 72), (2, 14, 24, 72), "enso", "24×48 grid"),
        ((2, 2, 24, 48), (2, 2, 24, 48), "enso", "at least 3 months"),
        ((2, 3, 8, 8), (2, 3, 8, 8), "continuous", "11×11 window"),
    ],
)
def test_bad_shapes_raise(pred_shape, target_shape, kind, match):
    with pytest.raises(ValueError, match=match):
        score_arrays(np.zeros(pred_shape), np.zeros(target_shape), kind=kind)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_predictions_raise(bad):
    pred, target = sevir_bytes(6)
    pred[2, 1, 3, 3] = bad
    with pytest.raises(ValueError, match=r"pred contains NaN or inf \(first in sample 2\)"):
        score_arrays(pred, target, kind="sevir", scale="255", chunk_size=2)


def test_infinite_target_raises_but_nan_target_is_missing():
    pred, target = sevir_bytes(7)
    target[0, 0, 0, :4] = np.nan
    assert np.isfinite(score_arrays(pred, target, kind="sevir", scale="255")["csi_m"])
    target[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="target contains inf"):
        score_arrays(pred, target, kind="sevir", scale="255")


def test_enso_target_with_nan_raises():
    sst = np.full((2, 14, 24, 48), 0.6, dtype=np.float32)
    target = sst.copy()
    target[1, 3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="needs a complete target"):
        score_arrays(sst, target, kind="enso")


@pytest.mark.parametrize(("kind", "fill"), [("sevir", 255.0), ("sevir", np.nan), ("continuous", np.nan)])
def test_all_missing_target_raises(kind, fill):
    pred, _ = sevir_bytes(8)
    target = np.full_like(pred, fill)
    with pytest.raises(ValueError, match="every target pixel is missing"):
        score_arrays(pred, target, kind=kind, scale="255")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"kind": "radar"}, "unknown kind 'radar'; use one of sevir, enso, continuous"),
        ({"mode": "3"}, "unknown mode '3'"),
        ({"scale": "100"}, "unknown scale '100'"),
        ({"kind": "enso", "scale": "255"}, "pass scale='01'"),
    ],
)
def test_unknown_options_raise(options, match):
    pred, target = sevir_bytes(9)
    with pytest.raises(ValueError, match=match):
        score_arrays(pred, target, **options)


def test_sevir_targets_in_the_wrong_scale_name_the_right_one():
    pred, target = sevir_bytes(5)
    with pytest.raises(ValueError, match=r"reach 254, but scale '01'.*pass --scale 255"):
        score_arrays(pred, target, kind="sevir", scale="01")
    with pytest.raises(ValueError, match=r"fractional values, but scale '255'.*pass --scale 01"):
        score_arrays(pred / 255, target / 255, kind="sevir", scale="255")
    standardised = (target - target.mean()) / target.std()
    with pytest.raises(ValueError, match=r"go down to -1\.\d+;.*--metrics continuous"):
        score_arrays(pred / 255, standardised, kind="sevir", scale="01")
    dry = np.zeros_like(target)  # no echo at all is valid in either scale
    assert score_arrays(pred, dry, kind="sevir", scale="255")["mse"] > 0


def test_sevir_forecasts_in_another_scale_than_the_targets_are_named():
    pred, target = sevir_bytes(5)
    with pytest.raises(ValueError, match=r"forecasts of samples 0… reach 25\d.*look like bytes"):
        score_arrays(pred, target / 255, kind="sevir", scale="01")
    with pytest.raises(
        ValueError, match=r"forecasts of samples 0… lie in \[0, 1\] while the targets are VIL bytes"
    ):
        score_arrays(pred / 255, target, kind="sevir", scale="255")
    overshoot = np.clip(pred / 255 * 1.5, 0, None)  # an unclamped network overshooting 1 is scored
    assert score_arrays(overshoot, target / 255, kind="sevir", scale="01")["csi_m"] >= 0
    silent = np.zeros_like(pred)  # a forecast of no echo is valid in either scale
    assert score_arrays(silent, target, kind="sevir", scale="255")["csi_m"] == 0


def test_one_member_ensemble_scores_crps_as_mae_without_spread():
    pred, target = sevir_bytes(6)
    out = score_arrays(pred[:, None] / 255, target / 255, kind="sevir", ensemble=True)
    assert out["crps"] == pytest.approx(out["mae"], rel=1e-6)
    assert not any(key.startswith("spread") for key in out)
    assert len(out["rank_histogram"]) == 2
