"""`earthcast predict`: CF NetCDF output reopened with xarray, values equal to the model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from earthcast import create_model
from earthcast.cli.predict import predict_file
from earthcast.training.checkpoint import load_forecaster
from tests.cli.helpers import TINY_CONTRACT, TINY_MODEL


def test_predict_writes_cf_netcdf(cli, tiny_ckpt: Path, contexts: Path, tmp_path: Path):
    out = tmp_path / "forecast.nc"
    code, stdout, err = cli("predict", "--ckpt", tiny_ckpt, "--input", contexts, "--output", out, "--quiet")
    assert code == 0, err
    assert "wrote" in stdout and "vil" in stdout
    with xr.open_dataset(out) as ds:
        var = ds["vil"]
        assert var.dims == ("sample", "lead_time", "y", "x") and var.shape == (3, 4, 16, 16)
        assert ds["lead_time"].values.tolist() == [5, 10, 15, 20]
        assert ds["lead_time"].attrs["units"] == "minutes"
        assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
        assert ds["sample"].values.tolist() == [0, 1, 2]
        # values stay in the model's scale: CF units "1", the way back to VIL codes in attributes
        assert var.attrs["units"] == "1" and var.attrs["physical_units"] == "VIL code"
        assert var.attrs["physical_scale_factor"] == 255.0 and "long_name" in var.attrs
        assert var.encoding["_FillValue"] == pytest.approx(-9999.0)
        assert ds.attrs["Conventions"] == "CF-1.8"
        assert ds.attrs["source"] == f"earthcast 0.1.0 {TINY_MODEL}"
        assert ds.attrs["model"] == TINY_MODEL and ds.attrs["checkpoint"] == str(tiny_ckpt)
        assert "earthcast predict --ckpt" in ds.attrs["history"]
        assert {"title", "institution", "references"} <= set(ds.attrs)
        assert json.loads(ds.attrs["data_contract"])["variable"] == "vil"
        values = var.values
    model, _ = load_forecaster(tiny_ckpt)
    with torch.inference_mode():
        expected = model(torch.from_numpy(np.load(contexts)[..., None])).numpy()[..., 0]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_predict_selects_samples(cli, tiny_ckpt: Path, contexts: Path, tmp_path: Path):
    out = tmp_path / "one.nc"
    code, _, err = cli("predict", "--ckpt", tiny_ckpt, "--input", contexts, "--output", out, "--index", 2)
    assert code == 0, err
    with xr.open_dataset(out) as ds:
        assert ds["sample"].values.tolist() == [2] and ds["vil"].shape == (1, 4, 16, 16)
        assert "--index 2" in ds.attrs["history"]
    out = tmp_path / "range.nc"
    code, _, err = cli(
        "predict", "--ckpt", tiny_ckpt, "--input", contexts, "--output", out, "--start", 1, "--count", 2
    )
    assert code == 0, err
    with xr.open_dataset(out) as ds:
        assert ds["sample"].values.tolist() == [1, 2]


def test_predict_from_netcdf_keeps_times_and_grid(cli, tiny_ckpt: Path, tmp_path: Path):
    """A NetCDF input with a (sample, time) coordinate and projected y/x gives reference and valid times."""
    rng = np.random.default_rng(2)
    times = pd.date_range("2019-06-01 12:00", periods=4, freq="5min").values
    frame_times = np.stack([times, times + np.timedelta64(1, "h")])  # (sample, time)
    y = np.arange(16) * 1000.0
    source = xr.Dataset(
        {"vil": (("event", "time", "y", "x"), rng.random((2, 4, 16, 16), dtype=np.float32))},
        coords={
            "frame_time": (("event", "time"), frame_times),
            "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", y + 5e5, {"units": "m"}),
        },
    )
    path = tmp_path / "contexts.nc"
    source.to_netcdf(path)
    out = tmp_path / "forecast.nc"
    code, _, err = cli("predict", "--ckpt", tiny_ckpt, "--input", path, "--var", "vil", "--output", out)
    assert code == 0, err
    with xr.open_dataset(out) as ds:
        assert ds["time"].values[0] == np.datetime64("2019-06-01T12:15")
        assert ds["time"].attrs["standard_name"] == "forecast_reference_time"
        assert ds["valid_time"].values[1, 0] == np.datetime64("2019-06-01T13:20")
        np.testing.assert_array_equal(ds["y"].values, y)
        assert ds["y"].attrs["units"] == "m" and ds["x"].values[0] == 5e5


def test_predict_file_with_a_model_and_contract(contexts: Path, tmp_path: Path):
    """The internal entry point takes any model + contract (no checkpoint needed)."""
    model = create_model(TINY_MODEL).eval()
    contract = {**TINY_CONTRACT, "dataset": "nbody", "variable": "frames", "units": "1", "scale": "raw"}
    contract["frame_interval_minutes"] = None  # not a clock time: lead_time counts frames
    out = tmp_path / "nbody.nc"
    assert predict_file(model, contract, contexts, out, batch_size=2) == out
    with torch.no_grad():
        expected = model(torch.from_numpy(np.load(contexts)[..., None])).numpy()[..., 0]
    with xr.open_dataset(out) as reopened:
        assert reopened["frames"].attrs["units"] == "1"
        assert reopened["lead_time"].values.tolist() == [1, 2, 3, 4]
        assert reopened["lead_time"].attrs["units"] == "1"
        np.testing.assert_allclose(reopened["frames"].values, expected, rtol=1e-5, atol=1e-6)


def test_predict_from_zarr(cli, tiny_ckpt: Path, contexts: Path, tmp_path: Path):
    store = tmp_path / "contexts.zarr"
    values = np.load(contexts)
    xr.Dataset({"vil": (("n", "t", "y", "x"), values)}).to_zarr(store, zarr_format=2)
    out = tmp_path / "forecast.nc"
    code, _, err = cli("predict", "--ckpt", tiny_ckpt, "--input", store, "--output", out, "--quiet")
    assert code == 0, err
    with xr.open_dataset(out) as ds:
        assert ds["vil"].shape == (3, 4, 16, 16)
