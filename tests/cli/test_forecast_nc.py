"""The CF forecast writer: ensembles (member dim, mean, exceedance probabilities) and channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from earthcast.cli.predict import predict_file
from earthcast.io.forecast import exceedance_probability, forecast_dataset, physical_scale, write_forecast
from tests.cli.helpers import TINY_CONTRACT

THRESHOLDS = [16.0, 74.0, 133.0]  # SEVIR codes; the data are code / 255


def _ensemble(n=2, s=5, t=3, h=4, w=6, c=1) -> np.ndarray:
    return np.random.default_rng(0).random((n, s, t, h, w, c), dtype=np.float32)


def test_ensemble_writer_member_mean_and_probabilities(tmp_path: Path):
    members = _ensemble()
    ds = forecast_dataset(members, TINY_CONTRACT, sample_index=[7, 8], thresholds=THRESHOLDS)
    path = write_forecast(ds, tmp_path / "ensemble.nc")
    with xr.open_dataset(path) as reopened:
        vil = reopened["vil"]
        assert vil.dims == ("sample", "member", "lead_time", "y", "x")
        assert reopened["member"].values.tolist() == [0, 1, 2, 3, 4]
        assert reopened["member"].attrs["standard_name"] == "realization"
        np.testing.assert_allclose(vil.values, members[..., 0])
        mean = reopened["vil_ensemble_mean"]
        assert mean.dims == ("sample", "lead_time", "y", "x") and mean.attrs["cell_methods"] == "member: mean"
        np.testing.assert_allclose(mean.values, members[..., 0].mean(axis=1), rtol=1e-6)
        prob = reopened["vil_exceedance_probability"]
        assert prob.dims == ("sample", "threshold", "lead_time", "y", "x") and prob.attrs["units"] == "1"
        assert reopened["threshold"].values.tolist() == THRESHOLDS
        for k, tau in enumerate(THRESHOLDS):
            expected = (members[..., 0] * 255.0 >= tau).mean(axis=1)
            np.testing.assert_allclose(prob.values[:, k], expected, atol=1e-7)
        assert reopened["sample"].values.tolist() == [7, 8]


def test_exceedance_probability_counts_members():
    members = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32).reshape(1, 4, 1, 1, 1)
    prob = exceedance_probability(members, [0.25, 0.05, 1.0])
    assert prob.shape == (1, 3, 1, 1, 1)
    np.testing.assert_allclose(prob.ravel(), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(exceedance_probability(members, [51.0], factor=255.0).ravel(), [0.75])


def test_physical_scale_rules():
    assert physical_scale({"scale": "01"}) == (255.0, 0.0)
    assert physical_scale({"scale": "raw"}) == (1.0, 0.0)
    assert physical_scale({"scale": "minmax", "scale_factor": 26.7, "scale_offset": -16.5}) == (26.7, -16.5)
    with pytest.raises(ValueError, match="scale_factor"):
        physical_scale({"scale": "minmax"})


def test_deterministic_forecast_refuses_thresholds():
    with pytest.raises(ValueError, match="ensemble"):
        forecast_dataset(_ensemble()[:, 0], TINY_CONTRACT, thresholds=[16.0])


def test_channels_get_their_own_dimension(tmp_path: Path):
    contract = {**TINY_CONTRACT, "scale": "raw", "units": "K", "variable": "sst", "channels_out": 2}
    ds = forecast_dataset(_ensemble(c=2)[:, 0], contract)
    assert ds["sst"].dims == ("sample", "lead_time", "y", "x", "channel")
    assert ds["sst"].attrs["units"] == "K" and "physical_units" not in ds["sst"].attrs


class _FakeEnsemble(nn.Module):
    """(B, T_in, H, W, C) → (B, S, T_out, H, W, C): the last frame shifted by member offsets."""

    def __init__(self, members: int, out_len: int) -> None:
        super().__init__()
        self.offsets = torch.linspace(-0.2, 0.2, members)
        self.out_len = out_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x[:, None, -1:]  # (b, 1, 1, h, w, c)
        return last.repeat(1, len(self.offsets), self.out_len, 1, 1, 1) + self.offsets.view(1, -1, 1, 1, 1, 1)


def test_ensemble_model_end_to_end(contexts: Path, tmp_path: Path):
    out = tmp_path / "prob.nc"
    predict_file(_FakeEnsemble(4, 4), dict(TINY_CONTRACT), contexts, out, thresholds=THRESHOLDS)
    last = np.load(contexts)[:, -1]  # (n, h, w)
    with xr.open_dataset(out) as ds:
        assert ds["vil"].shape == (3, 4, 4, 16, 16)
        np.testing.assert_allclose(ds["vil_ensemble_mean"].values[:, 0], last, atol=1e-6)
        members = last[:, None] + np.linspace(-0.2, 0.2, 4)[None, :, None, None]
        expected = (members * 255.0 >= 74.0).mean(axis=1)
        np.testing.assert_allclose(ds["vil_exceedance_probability"].values[:, 1, 2], expected, atol=1e-6)


def test_ensemble_defaults_to_the_contract_thresholds(contexts: Path, tmp_path: Path):
    path = predict_file(_FakeEnsemble(3, 4), dict(TINY_CONTRACT), contexts, tmp_path / "default.nc")
    with xr.open_dataset(path) as ds:
        assert ds["threshold"].values.tolist() == TINY_CONTRACT["thresholds"]
        assert ds["vil_exceedance_probability"].shape == (3, 3, 4, 16, 16)


class _Diverged(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


def test_non_finite_model_output_leaves_no_file(contexts: Path, tmp_path: Path):
    out = tmp_path / "nan.nc"
    with pytest.raises(ValueError, match="produced NaN/inf"):
        predict_file(_Diverged(), dict(TINY_CONTRACT), contexts, out)
    assert not out.exists() and not list(tmp_path.iterdir())
