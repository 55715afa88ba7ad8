"""`earthcast score`: JSON keys and values equal a direct ``score_arrays`` call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from earthcast.metrics import score_arrays

SEVIR_KEYS = {f"{s}@{t}" for s in ("csi", "pod", "sucr", "bias") for t in (16, 74, 133, 160, 181, 219)}


def test_sevir_scores_match_score_arrays(cli, contexts: Path, targets: Path, tmp_path: Path):
    out = tmp_path / "scores.json"
    code, stdout, err = cli(
        "score", "--pred", contexts, "--target", targets, "--metrics", "sevir", "--out", out, "--quiet"
    )
    assert code == 0, err
    printed = json.loads(stdout)
    assert SEVIR_KEYS | {"csi_m", "mse", "mae", "csi_m_pool4", "csi_m_pool16", "csi@74_pool16"} <= set(
        printed
    )
    expected = score_arrays(np.load(contexts), np.load(targets), "sevir", "01", "0")
    assert printed == pytest.approx(expected)
    assert json.loads(out.read_text()) == printed


def test_per_lead_mode_gives_lists(cli, contexts: Path, targets: Path):
    code, stdout, err = cli(
        "score", "--pred", contexts, "--target", targets, "--metrics", "sevir", "--mode", "1", "--quiet"
    )
    assert code == 0, err
    scores = json.loads(stdout)
    assert isinstance(scores["csi@74"], list) and len(scores["csi@74"]) == 4
    expected = score_arrays(np.load(contexts), np.load(targets), "sevir", "01", "1")
    np.testing.assert_allclose(scores["csi_m"], expected["csi_m"])


def test_byte_scale_and_continuous(cli, contexts: Path, targets: Path, tmp_path: Path):
    pred, target = np.load(contexts) * 255, np.load(targets) * 255
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", target)
    code, stdout, _ = cli(
        "score", "--pred", tmp_path / "p.npy", "--target", tmp_path / "t.npy", "--metrics", "continuous",
        "--scale", "255", "--quiet",
    )  # fmt: skip
    assert code == 0
    scores = json.loads(stdout)
    assert set(scores) == {"mse", "mae", "ssim", "scored_pixels", "missing_pixels"}
    assert (scores["scored_pixels"], scores["missing_pixels"]) == (target.size, 0)
    code, stdout, _ = cli(
        "score", "--pred", tmp_path / "p.npy", "--target", tmp_path / "t.npy", "--metrics", "continuous",
        "--scale", "255", "--reduction", "frame_sum", "--quiet",
    )  # fmt: skip
    summed = json.loads(stdout)
    pixels_per_frame = target.shape[-1] * target.shape[-2]  # (N, T, H, W): one channel
    assert summed["mse"] == pytest.approx(scores["mse"] * pixels_per_frame, rel=1e-6)
    assert summed["mae"] == pytest.approx(scores["mae"] * pixels_per_frame, rel=1e-6)
    assert summed["ssim"] == pytest.approx(scores["ssim"])
    assert scores == pytest.approx(score_arrays(pred, target, "continuous", "255"))


def test_enso_keys(cli, tmp_path: Path):
    rng = np.random.default_rng(3)
    sst = rng.random((6, 5, 24, 48), dtype=np.float32)
    pred = sst + 0.05 * rng.standard_normal(sst.shape).astype(np.float32)
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", sst)
    code, stdout, err = cli(
        "score", "--pred", tmp_path / "p.npy", "--target", tmp_path / "t.npy", "--metrics", "enso", "--quiet"
    )
    assert code == 0, err
    scores = json.loads(stdout)
    assert {"c_nino34_m", "c_nino34_wm", "nino_rmse", "mse"} <= set(scores)
    assert scores["mse"] == pytest.approx(score_arrays(pred, sst, "enso")["mse"])


def test_netcdf_forecast_scores_with_its_variable(cli, tiny_ckpt: Path, contexts: Path, targets, tmp_path):
    forecast = tmp_path / "forecast.nc"
    assert cli("predict", "--ckpt", tiny_ckpt, "--input", contexts, "--output", forecast, "--quiet")[0] == 0
    code, stdout, err = cli("score", "--pred", forecast, "--target", targets, "--metrics", "sevir", "--quiet")
    assert code == 0, err
    with xr.open_dataset(forecast) as ds:
        pred = ds["vil"].values
    assert json.loads(stdout) == pytest.approx(score_arrays(pred, np.load(targets), "sevir"))


def test_ensemble_netcdf_is_scored_through_its_mean_and_as_an_ensemble(cli, targets: Path, tmp_path: Path):
    """A PreDiff-style forecast file (a 'member' dimension) gets the scores of its mean plus CRPS and
    spread/skill, equal to computing them directly; --ensemble does the same for a .npy array."""
    from earthcast.io.forecast import forecast_dataset, write_forecast
    from earthcast.metrics.probabilistic import CRPS, SpreadSkill
    from tests.cli.helpers import TINY_CONTRACT

    truth = np.load(targets)  # (3, 4, 16, 16)
    # a calibrated ensemble: the truth and the members are draws around the same centre
    rng = np.random.default_rng(7)
    centre = truth[:, None] + rng.normal(0, 0.1, (3, 1, 4, 16, 16))
    members = np.clip(centre + rng.normal(0, 0.1, (3, 5, 4, 16, 16)), 0, 1).astype(np.float32)
    path = write_forecast(forecast_dataset(members[..., None], TINY_CONTRACT), tmp_path / "ens.nc")
    code, stdout, err = cli("score", "--pred", path, "--target", targets, "--metrics", "sevir", "--quiet")
    assert code == 0, err
    scores = json.loads(stdout)
    mean_scores = score_arrays(members.mean(axis=1), truth, "sevir")
    assert {k: scores[k] for k in mean_scores} == pytest.approx(mean_scores)
    crps, spread = CRPS("ecdf"), SpreadSkill()
    observed = np.where(truth * 255 >= 254.5, np.nan, truth)  # SEVIR: code 255 is missing
    as_tensors = torch.from_numpy(members[..., None]), torch.from_numpy(observed[..., None])
    crps.update(*as_tensors)
    spread.update(*as_tensors)
    assert scores["crps"] == pytest.approx(float(crps.compute()), rel=1e-5)
    expected = spread.compute()
    for key in ("spread", "rmse", "spread_skill", "spread_skill_corrected"):
        assert scores[key] == pytest.approx(float(expected[key]), rel=1e-5), key
    assert 0.8 < scores["spread_skill_corrected"] < 1.25
    ranks = scores["rank_histogram"]
    assert len(ranks) == 6 and sum(ranks) == pytest.approx(1.0)
    assert max(ranks) < 2.5 * min(ranks)  # calibrated: roughly flat (the clipping at 0 and 1 skews it)
    assert {"brier@74", "reliability@74", "resolution@74", "uncertainty@74"} <= set(scores)
    assert len(scores["bin_prob@74"]) == 10
    assert "NaN" not in stdout  # strict JSON: empty bins are null

    npy = tmp_path / "ens.npy"
    np.save(npy, members)
    figure = tmp_path / "verification.png"
    argv = ["--metrics", "sevir", "--ensemble", "--quiet", "--plot", figure]
    code, stdout, err = cli("score", "--pred", npy, "--target", targets, *argv)
    assert code == 0, err
    again = json.loads(stdout)
    assert again.keys() == scores.keys()
    for key, value in scores.items():
        np.testing.assert_allclose(np.asarray(again[key], float), np.asarray(value, float), rtol=1e-6)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_needs_an_ensemble(cli, contexts: Path, targets: Path, tmp_path: Path):
    code, _, err = cli(
        "score", "--pred", contexts, "--target", targets, "--metrics", "sevir", "--plot", tmp_path / "v.png"
    )
    assert code != 0 and "not an ensemble" in err and not (tmp_path / "v.png").exists()


def test_an_ensemble_needs_its_member_axis():
    flat = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match=r"an ensemble pred must be \(N, S, T, H, W\)"):
        score_arrays(flat, flat, "sevir", ensemble=True)
    members = np.zeros((2, 4, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="differs from target shape"):
        score_arrays(members, np.zeros((2, 2, 16, 16), np.float32), "sevir", ensemble=True)


def test_missing_target_pixels_are_counted_and_reported(cli, tmp_path: Path):
    rng = np.random.default_rng(5)
    target = rng.integers(0, 250, (2, 3, 16, 16)).astype(np.float32)
    target[0, 0, :4, :5] = 255  # 20 missing (byte code 255)
    target[1, 2, 0, 0] = np.nan  # 1 missing
    pred = np.clip(target + rng.normal(0, 5, target.shape), 0, 254).astype(np.float32)
    pred = np.nan_to_num(pred)
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "t.npy", target)
    code, stdout, err = cli(
        "score", "--pred", tmp_path / "p.npy", "--target", tmp_path / "t.npy", "--metrics", "sevir",
        "--scale", "255", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    scores = json.loads(stdout)
    assert (scores["missing_pixels"], scores["scored_pixels"]) == (21, target.size - 21)
    assert "21 of 1536 target pixels" in err and "treated as missing" in err
    valid = np.isfinite(target) & (target != 255)
    expected_mse = np.mean(((pred - np.nan_to_num(target)) / 255)[valid] ** 2)
    assert scores["mse"] == pytest.approx(expected_mse, rel=1e-5)
