"""ICAR-ENSO synthetic writer and reader in the real NetCDF layout (SPEC 3.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")

from earthcast.data.enso import (  # noqa: E402
    LAT,
    LON,
    SST_MAX,
    SST_MIN,
    ENSODataset,
    denormalize_sst,
    model_layout,
    nino34_index,
    normalize_sst,
    split_models,
    split_windows,
    stitch_windows,
    write_synthetic_enso,
)

COUNTS = {"n_cmip6_models": 1, "years_cmip6": 3, "n_cmip5_models": 3, "years_cmip5": 2}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("enso")
    write_synthetic_enso(root, seed=3)  # defaults: 2 CMIP6 × 6 years, 3 CMIP5 × 5 years
    return root


def _write_known(root, series_per_model, years, attrs=COUNTS, lon_coord=True, var="sst", lat=24):
    """Write a CMIP pair from known continuous series (one ``(12·Y + 24, lat, 72)`` per model)."""
    rows = np.concatenate([split_windows(s, y) for s, y in zip(series_per_model, years)]).astype(np.float32)
    coords = {"lat": LAT[:lat], "lon": LON} if lon_coord else {}
    train = xr.Dataset({var: (("year", "month", "lat", "lon"), rows)}, coords=coords, attrs=attrs)
    label = xr.Dataset({"nino": (("year", "month"), rows[:, :, 0, 0])}, attrs=attrs)
    root.mkdir(exist_ok=True)
    train.to_netcdf(root / "CMIP_train.nc")
    label.to_netcdf(root / "CMIP_label.nc")


def _known_series():
    years = [3, 2, 2, 2]  # COUNTS order: CMIP6 first, then CMIP5
    rng = np.random.default_rng(0)
    return [rng.normal(0, 1, (12 * y + 24, 24, 72)).astype(np.float32) for y in years], years


def test_synthetic_files_have_real_layout(synthetic):
    with xr.open_dataset(synthetic / "CMIP_train.nc") as ds:
        assert set(ds.data_vars) == {"sst", "t300"}
        assert ds["sst"].dims == ("year", "month", "lat", "lon") and ds["t300"].dims == ds["sst"].dims
        assert dict(ds.sizes) == {"year": 2 * 6 + 3 * 5, "month": 36, "lat": 24, "lon": 72}
        assert ds["sst"].dtype == np.float32
        np.testing.assert_array_equal(ds["lat"], np.arange(-55, 61, 5))
        np.testing.assert_array_equal(ds["lon"], np.arange(0, 356, 5))
        np.testing.assert_array_equal(ds["month"], np.arange(1, 37))
        assert ds.attrs["n_cmip6_models"] == 2 and ds.attrs["years_cmip5"] == 5
        sst = ds["sst"].values
    assert 0.1 < sst.std() < 2.0 and SST_MIN < sst.min() and sst.max() < SST_MAX
    assert np.array_equal(sst[0, 12:], sst[1, :24])  # consecutive rows overlap by 24 months
    with xr.open_dataset(synthetic / "CMIP_label.nc") as ds:
        assert list(ds.data_vars) == ["nino"] and ds["nino"].dims == ("year", "month")
        assert ds["nino"].shape == (27, 36)


def test_stitch_round_trip_exact():
    series = np.random.default_rng(1).normal(size=(12 * 4 + 24, 2, 3))
    windows = split_windows(series, 4)
    assert windows.shape == (4, 36, 2, 3)
    assert np.array_equal(windows[2], series[24:60])
    assert np.array_equal(stitch_windows(windows), series)


@pytest.mark.parametrize("lon_coord", [True, False])
def test_reader_recovers_series_crops_and_normalises(tmp_path, lon_coord):
    series, years = _known_series()
    _write_known(tmp_path, series, years, lon_coord=lon_coord)
    train = ENSODataset(tmp_path, "train")
    assert train.models == [0, 1]  # CMIP6 model + first CMIP5 model
    cropped = [normalize_sst(s[:, :, 19:67]) for s in series]  # 95°E…330°E
    for i, (local, start) in enumerate([(0, 0), (0, 5), (1, 0), (1, 22)]):
        model_offset = {0: 0, 1: len(series[0]) - 26 + 1}[local]
        sample = train[model_offset + start]
        assert sample["meta"] == {
            "model": local,
            "family": ["CMIP6", "CMIP5"][local],
            "start_month": start,
        }, i
        window = torch.cat([sample["inputs"], sample["targets"]])[..., 0]
        assert window.shape == (26, 24, 48)
        np.testing.assert_array_equal(window.numpy(), cropped[local][start : start + 26])
    assert train._series[0].shape == (12 * 3 + 24, 24, 48)
    np.testing.assert_array_equal(train._labels[1], series[1][:, 0, 0])  # nino stitched the same way


def test_normalisation_constants_and_inverse():
    assert SST_MIN == -16.549121856689453 and SST_MAX == 10.198975563049316
    assert normalize_sst(SST_MIN) == 0.0 and normalize_sst(SST_MAX) == 1.0
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(denormalize_sst(normalize_sst(x)), x, atol=1e-12)


def test_split_sizes_and_shapes(synthetic):
    per6, per5 = 12 * 6 + 24 - 26 + 1, 12 * 5 + 24 - 26 + 1  # 71, 59 windows per model
    sizes = {s: len(ENSODataset(synthetic, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 2 * per6 + per5, "val": per5, "test": per5}
    assert len(ENSODataset(synthetic, "train", stride=2)) == 2 * 36 + 30
    val, test = ENSODataset(synthetic, "val"), ENSODataset(synthetic, "test")
    assert val.models == [3] and test.models == [4]
    sample = test[0]
    assert sample["inputs"].shape == (12, 24, 48, 1) and sample["targets"].shape == (14, 24, 48, 1)
    assert sample["inputs"].dtype == sample["nino_target"].dtype == torch.float32
    assert sample["nino_target"].shape == (12,) and sample["meta"]["family"] == "CMIP5"


def test_nino_labels_match_sst_of_output_months(synthetic):
    ds = ENSODataset(synthetic, "val", stride=3)
    for i in range(len(ds)):
        sample = ds[i]
        sst = denormalize_sst(sample["targets"].double().numpy()[..., 0])  # (14, 24, 48) K
        box = sst[:, 10:13, 19:30].mean(axis=(1, 2))  # Niño3.4: 5°S–5°N, 170°W–120°W
        index = np.convolve(box, np.ones(3) / 3, mode="valid")  # (12,) current + next two months
        np.testing.assert_allclose(sample["nino_target"].numpy(), index, atol=2e-5)
        np.testing.assert_allclose(nino34_index(sst[..., None]), index, atol=1e-12)


def test_real_counts_used_without_attributes():
    layout = model_layout({}, 4645)
    assert len(layout) == 32 and layout[15] == ("CMIP5", 2265, 140) and layout[-1] == ("CMIP5", 4505, 140)
    assert len(split_models(layout, "train")) == 30
    assert split_models(layout, "val") == [30] and split_models(layout, "test") == [31]
    with pytest.raises(ValueError, match="4645"):
        model_layout({}, 27)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CMIP_train\.nc.*Tianchi"):
        ENSODataset(tmp_path)
    series, years = _known_series()
    _write_known(tmp_path / "no_sst", series, years, var="t300")
    with pytest.raises(KeyError, match="no 'sst'"):
        ENSODataset(tmp_path / "no_sst")
    _write_known(tmp_path / "bad_lat", [s[:, :20] for s in series], years, lat=20)
    with pytest.raises(ValueError, match="lat"):
        ENSODataset(tmp_path / "bad_lat")
    _write_known(tmp_path / "no_attrs", series, years, attrs={})
    with pytest.raises(ValueError, match="rows do not match"):
        ENSODataset(tmp_path / "no_attrs")
    (tmp_path / "no_attrs" / "CMIP_label.nc").unlink()
    with pytest.raises(FileNotFoundError, match=r"CMIP_label\.nc"):
        ENSODataset(tmp_path / "no_attrs")
    with pytest.raises(ValueError, match="CMIP5"):
        write_synthetic_enso(tmp_path / "x", n_cmip5_models=2)


def test_renamed_dims_rejected(tmp_path):
    rows = np.zeros((9, 36, 24, 72), np.float32)
    xr.Dataset({"sst": (("year", "month", "latitude", "lon"), rows)}, attrs=COUNTS).to_netcdf(
        tmp_path / "CMIP_train.nc"
    )
    xr.Dataset({"nino": (("year", "month"), rows[:, :, 0, 0])}).to_netcdf(tmp_path / "CMIP_label.nc")
    with pytest.raises(ValueError, match="dims"):
        ENSODataset(tmp_path)
