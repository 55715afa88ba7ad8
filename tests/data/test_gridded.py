"""GriddedDataset over NetCDF, Zarr and in-memory xarray stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from earthcast.data.gridded import GriddedDataset

T, H, W = 20, 6, 8


def _dataset(dims: tuple[str, str, str] = ("time", "lat", "lon")) -> xr.Dataset:
    rng = np.random.default_rng(0)
    times = pd.date_range("2020-01-01", periods=T, freq="10min")
    precip = rng.gamma(0.5, 2.0, size=(T, H, W)).astype(np.float32)
    temp = (280 + 5 * rng.standard_normal((T, H, W))).astype(np.float32)
    return xr.Dataset(
        {"precip": (dims, precip), "temp": (dims, temp)},
        coords={dims[0]: times, dims[1]: np.arange(H) * 0.5, dims[2]: np.arange(W) * 0.5},
    )


@pytest.fixture(params=["nc", "zarr"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    ds = _dataset()
    if request.param == "nc":
        path = tmp_path / "grid.nc"
        ds.to_netcdf(path)
    else:
        path = tmp_path / "grid.zarr"
        ds.to_zarr(path, zarr_format=2, consolidated=True)
    return path


def test_round_trip_two_variables(store: Path):
    source = _dataset()
    ds = GriddedDataset(store, ["precip", "temp"], in_len=3, out_len=2, stride=2)
    assert len(ds) == 1 + (T - 5) // 2 and ds.shape == (H, W) and (ds.y_dim, ds.x_dim) == ("lat", "lon")
    item = ds[2]  # frames 4..8
    assert item["inputs"].shape == (3, H, W, 2) and item["targets"].shape == (2, H, W, 2)
    assert item["inputs"].dtype == torch.float32
    np.testing.assert_array_equal(item["inputs"][..., 0].numpy(), source["precip"].values[4:7])
    np.testing.assert_array_equal(item["targets"][..., 1].numpy(), source["temp"].values[7:9])
    assert item["meta"] == {"start": 4, "time": "2020-01-01T00:40:00"}


def test_target_subset_and_transposed_storage(tmp_path: Path):
    source = _dataset(("time", "x", "y")).transpose("time", "x", "y")  # stored (time, x, y)
    path = tmp_path / "t.nc"
    source.to_netcdf(path)
    ds = GriddedDataset(path, ["precip", "temp"], 2, 1, target_variables=["temp"])
    item = ds[0]
    assert item["inputs"].shape == (2, W, H, 2) and item["targets"].shape == (1, W, H, 1)
    np.testing.assert_array_equal(item["targets"][0, ..., 0].numpy(), source["temp"].values[2].T)


def test_normalisation_modes(store: Path):
    source = _dataset()
    mm = GriddedDataset(store, ["precip", "temp"], 4, 4, stride=4, normalization="minmax")
    frames = torch.cat([torch.cat([it["inputs"], it["targets"]]) for it in mm])  # covers all 20 frames
    assert torch.allclose(frames.amin(dim=(0, 1, 2)), torch.zeros(2), atol=1e-6)
    assert torch.allclose(frames.amax(dim=(0, 1, 2)), torch.ones(2), atol=1e-6)
    std = GriddedDataset(store, ["temp"], 2, 2, normalization="standard")
    assert std.stats["temp"] == pytest.approx(
        (source["temp"].values.mean(), source["temp"].values.std()), rel=1e-5
    )
    fixed = GriddedDataset(store, ["temp"], 2, 2, normalization=(280.0, 5.0))
    np.testing.assert_allclose(
        fixed[0]["inputs"][..., 0].numpy(), (source["temp"].values[:2] - 280) / 5, rtol=1e-5
    )
    val = GriddedDataset(
        store, ["temp"], 2, 2, normalization=std.stats, time_slice=("2020-01-01 02:00", None)
    )
    assert val.stats == std.stats  # validation reuses the training statistics


def test_time_slice_and_gaps(tmp_path: Path):
    source = _dataset()
    sliced = GriddedDataset(source, ["precip"], 2, 1, time_slice=("2020-01-01 00:30", "2020-01-01 01:30"))
    assert len(sliced) == 7 - 2 and sliced[0]["meta"]["time"] == "2020-01-01T00:30:00"  # both ends included
    gappy = source.isel(time=[i for i in range(T) if i != 10])  # 10-min steps, one 20-min hole
    ds = GriddedDataset(gappy, ["precip"], 2, 2, stride=1)
    assert ds.time_step == np.timedelta64(10, "m")
    assert len(ds) == (19 - 4 + 1) - 3  # the three windows across the hole are dropped
    for start in ds.starts:
        assert (np.diff(ds.times[start : start + 4]) == np.timedelta64(10, "m")).all()
    assert len(GriddedDataset(gappy, ["precip"], 2, 2, skip_gaps=False)) == 16
    plain = source.drop_vars("time")  # no time coordinate: positional slice, end excluded
    assert len(GriddedDataset(plain, ["precip"], 1, 1, time_slice=(5, 10))) == 4


def test_nan_policy(tmp_path: Path):
    source = _dataset()
    source["precip"][3, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN in variable 'precip'.*nan_policy"):
        GriddedDataset(source, ["precip"], 2, 2)[2]
    assert GriddedDataset(source, ["precip"], 2, 2, nan_policy="zero")[2]["inputs"][1, 0, 0, 0] == 0
    assert torch.isnan(GriddedDataset(source, ["precip"], 2, 2, nan_policy="keep")[2]["inputs"][1, 0, 0, 0])
    mm = GriddedDataset(source, ["precip"], 2, 2, normalization="minmax", nan_policy="zero")
    assert np.isfinite(mm.stats["precip"]).all()
    # the statistics pass reads every frame anyway: NaN is refused when the data set is built
    with pytest.raises(ValueError, match=r"NaN in variable 'precip' at time 2020-01-01T00:30:00"):
        GriddedDataset(source, ["precip"], 2, 2, normalization="standard")


def _monthly(times) -> xr.Dataset:
    values = np.random.default_rng(0).random((len(times), 3, 4)).astype(np.float32)
    return xr.Dataset({"sst": (("time", "lat", "lon"), values)}, coords={"time": times})


@pytest.mark.parametrize(
    "times",
    [
        pd.date_range("2000-01-01", periods=30, freq="MS").values,  # month starts: 28-31 days apart
        np.array([np.datetime64(f"{2000 + i // 12}-{i % 12 + 1:02d}-{15 + i % 2}T12:00") for i in range(30)]),
        xr.date_range("2000-01-01", periods=30, freq="MS", calendar="noleap", use_cftime=True).values,
        xr.date_range("2000-01-16", periods=30, freq="MS", calendar="360_day", use_cftime=True).values,
    ],
    ids=["month-start", "mid-month", "cftime-noleap", "cftime-360-day"],
)
def test_monthly_series_are_regular_and_their_gaps_are_found(times):
    full = GriddedDataset(_monthly(times), ["sst"], 6, 6)
    # calendar months have no fixed clock interval, except in the 360-day calendar
    assert len(full) == 30 - 12 + 1 and full.time_step in (None, np.timedelta64(30, "D"))
    gappy = GriddedDataset(_monthly(np.delete(times, 15)), ["sst"], 6, 6)
    assert gappy.starts == [0, 1, 2, 3, *range(15, 29 - 12 + 1)]  # no window across the hole


def test_daily_cftime_series_have_a_duration():
    times = xr.date_range("2000-02-27", periods=10, freq="D", calendar="360_day", use_cftime=True).values
    ds = GriddedDataset(_monthly(times), ["sst"], 2, 2)
    assert ds.time_step == np.timedelta64(1, "D") and len(ds) == 7


def test_errors(tmp_path: Path, store: Path):
    with pytest.raises(ValueError, match=r"\['rain'\].*available: \['precip', 'temp'\]"):
        GriddedDataset(store, ["rain"], 2, 2)
    with pytest.raises(ValueError, match="longer than the 20 selected time steps"):
        GriddedDataset(store, ["precip"], 15, 10)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.zarr"):
        GriddedDataset(tmp_path / "nowhere.zarr", ["precip"], 2, 2)
    with pytest.raises(ValueError, match="no time dimension 'valid_time'"):
        GriddedDataset(store, ["precip"], 2, 2, time_dim="valid_time")
    odd = _dataset(("time", "row", "col"))
    with pytest.raises(ValueError, match="cannot find spatial dims"):
        GriddedDataset(odd, ["precip"], 2, 2)
    assert len(GriddedDataset(odd, ["precip"], 2, 2, y_dim="row", x_dim="col")) == T - 3
    with pytest.raises(ValueError, match="nan_policy"):
        GriddedDataset(store, ["precip"], 2, 2, nan_policy="drop")
    with pytest.raises(ValueError, match="normalization"):
        GriddedDataset(store, ["precip"], 2, 2, normalization="robust")


def test_dataloader_workers_reopen_the_store(tmp_path: Path):
    path = tmp_path / "grid.zarr"
    _dataset().to_zarr(path, zarr_format=2, consolidated=True)
    ds = GriddedDataset(path, ["precip", "temp"], 3, 3, stride=3, target_variables=["precip"])
    assert ds._ds is None  # closed after construction
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert sum(b["inputs"].shape[0] for b in batches) == len(ds) == 5
    assert batches[0]["targets"].shape == (2, 3, H, W, 1)
