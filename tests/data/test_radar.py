"""Radar import from the pysteps example composites in shared/data/radar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from earthcast.data.gridded import GriddedDataset
from earthcast.data.radar import find_radar_files, import_radar, rain_transform

pytest.importorskip("pysteps")


def test_rain_transforms():
    rate = np.array([np.nan, 0.0, 0.05, 0.1, 1.0, 10.0])
    dbr, floor = rain_transform(rate, "dbr", 0.1)
    assert floor == pytest.approx(-15.0)
    np.testing.assert_allclose(dbr, [np.nan, -15, -15, -10, 0, 10], atol=1e-5)
    log, _ = rain_transform(rate, "log1p", 0.1)
    np.testing.assert_allclose(log, [np.nan, 0, 0, np.log1p(0.1), np.log1p(1), np.log1p(10)], rtol=1e-6)
    plain, _ = rain_transform(rate, "rainrate", 0.1)
    np.testing.assert_allclose(plain, [np.nan, 0, 0, 0.1, 1, 10], rtol=1e-6)
    with pytest.raises(ValueError, match="Valid names"):
        rain_transform(rate, "sqrt", 0.1)


def test_fmi_to_zarr_reads_back_as_gridded(radar_dir: Path, tmp_path: Path):
    pytest.importorskip("pyproj", reason="pysteps' FMI importer needs pyproj")
    out = import_radar(
        "fmi", radar_dir / "fmi", tmp_path / "fmi.zarr", downsample=8, max_frames=6, progress=False
    )
    ds = xr.open_zarr(out)
    precip = ds["precip"]
    assert precip.dims == ("time", "y", "x") and precip.shape == (6, 1226 // 8, 760 // 8)
    assert precip.attrs["units"] == "dBR" and precip.attrs["transform"] == "dbr"
    assert precip.attrs["zerovalue"] == pytest.approx(-15.0)
    assert ds.attrs["source"] == "fmi" and ds.attrs["timestep"] == 5 and "stere" in ds.attrs["projection"]
    assert ds.attrs["xpixelsize"] == pytest.approx(8 * 999.674, rel=1e-4) and ds.attrs["zr_a"] == 223.0
    assert (np.diff(ds["time"].values) == np.timedelta64(5, "m")).all()
    values = precip.values
    valid = ~np.isnan(values)
    assert 0.5 < valid.mean() < 1.0  # NaN outside the Finnish radar domain, kept as NaN
    assert np.isfinite(values[valid]).all() and values[valid].min() >= -15.0 and values[valid].max() > 0
    train = GriddedDataset(out, ["precip"], 3, 2, normalization="minmax", nan_policy="zero")
    item = train[0]
    assert len(train) == 2 and item["targets"].shape == (2, 153, 95, 1)
    assert np.isfinite(item["inputs"].numpy()).all() and item["inputs"].min() >= 0
    with pytest.raises(ValueError, match="NaN"):
        GriddedDataset(out, ["precip"], 3, 2)[0]
    with pytest.raises(FileExistsError):
        import_radar("fmi", radar_dir / "fmi", out, max_frames=1, progress=False)


def test_mch_to_netcdf_in_rain_rate(radar_dir: Path, tmp_path: Path):
    out = tmp_path / "mch.nc"
    import_radar(
        "mch",
        radar_dir / "mch",
        out,
        "rainrate",
        downsample=10,
        crop=(0, 600, 0, 700),
        start="2015-05-15 16:00",
        max_frames=4,
        progress=False,
    )
    ds = xr.open_dataset(out)
    assert ds["precip"].shape == (4, 60, 70) and ds["precip"].attrs["units"] == "mm/h"
    assert str(ds["time"].values[0]).startswith("2015-05-15T16:00")
    assert ds.attrs["institution"] == "MeteoSwiss" and ds.attrs["native_unit"] == "mm"
    assert ds.attrs["x2"] - ds.attrs["x1"] == pytest.approx(700 * 1000.0)
    values = ds["precip"].values
    assert np.nanmin(values) >= 0 and np.nanmax(values) > 0.1 and np.isfinite(values[~np.isnan(values)]).all()
    ds.close()


def test_bom_six_minute_log1p(radar_dir: Path, tmp_path: Path):
    out = import_radar(
        "bom", radar_dir / "bom", tmp_path / "bom.zarr", "log1p", downsample=16, max_frames=3, progress=False
    )
    ds = xr.open_zarr(out)
    assert ds.attrs["timestep"] == 6 and ds["precip"].attrs["units"] == "log(1 + mm/h)"
    assert (np.diff(ds["time"].values) == np.timedelta64(6, "m")).all()
    assert np.isfinite(ds["precip"].values).all() and float(ds["precip"].min()) >= 0


def test_two_fmi_events_leave_no_window_across_the_gap(radar_dir: Path, tmp_path: Path):
    pytest.importorskip("pyproj", reason="pysteps' FMI importer needs pyproj")
    files = find_radar_files("fmi", radar_dir / "fmi", start="2016-09-28 17:45", end="2017-05-09 11:00")
    assert len(files) == 8  # 4 frames at the end of one event, 4 at the start of the next
    out = import_radar(
        "fmi",
        radar_dir / "fmi",
        tmp_path / "two.zarr",
        downsample=16,
        start="2016-09-28 17:45",
        end="2017-05-09 11:00",
        progress=False,
    )
    ds = GriddedDataset(out, ["precip"], 2, 1, nan_policy="keep")
    assert ds.starts == [0, 1, 4, 5]


def test_radar_errors(radar_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="Valid names"):
        find_radar_files("dwd", radar_dir)
    with pytest.raises(FileNotFoundError, match="no 'knmi' radar file"):
        find_radar_files("knmi", tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        find_radar_files("fmi", tmp_path / "absent")
