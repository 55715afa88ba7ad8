"""Maps are drawn north up, and missing VIL observations grey: from the data to `earthcast plot`.

ENSO grids run from 55°S (row 0) to 60°N; drawn with row 0 on top they were upside down. The row
order travels data set → contract (``row_order``, ``grid_latitude``) → forecast file (``y``) →
plot (``origin``). The checks look at the rendered PNG: a warm band on the northern rows must
sit above a cold band on the southern rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgb
from PIL import Image

from earthcast.data import enso as en
from earthcast.data.gridded import GriddedDataset
from earthcast.data.specs import enso, gridded
from earthcast.io.forecast import contract_row_order, forecast_dataset, row_order, write_forecast
from tests.cli.helpers import TINY_CONTRACT

WARM, COLD = "#67001f", "#053061"  # the ends of the anomaly map (RdBu_r)
MAGENTA, GREY = "#e600ff", "#d0d0d0"  # VIL "extreme" and missing colours


def _rows_of(png: Path, colour: str, panels: float = 0.75) -> np.ndarray:
    """Image rows of the pixels drawn in ``colour``, in the panel area (the colour bar, on the
    right, holds every colour and is left out)."""
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    rgb = rgb[:, : int(rgb.shape[1] * panels)]
    target = np.round(np.array(to_rgb(colour)) * 255).astype(np.int16)
    return np.nonzero(np.abs(rgb - target).max(axis=-1) <= 12)[0]


def _north_on_top(png: Path) -> bool:
    warm, cold = _rows_of(png, WARM), _rows_of(png, COLD)
    assert warm.size > 50 and cold.size > 50, "the marker bands were not drawn"
    return warm.mean() < cold.mean()


def _marked(latitude: np.ndarray, shape: tuple[int, ...], scale) -> np.ndarray:
    """A forecast ``(1, T, H, W, 1)``: +8 K on the rows north of 45°N, −8 K south of 45°S."""
    values = np.zeros(shape, dtype=np.float32)
    values[..., latitude > 45, :, :] = 8.0
    values[..., latitude < -45, :, :] = -8.0
    return scale(values)


@pytest.fixture(scope="module")
def enso_contract(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The data contract of a synthetic ICAR-ENSO set, as the data module builds it."""
    root = tmp_path_factory.mktemp("enso")
    en.write_synthetic_enso(root, n_cmip6_models=0, n_cmip5_models=3, years_cmip5=2, seed=1)
    spec = enso()
    dataset = en.ENSODataset(root, "test", in_len=2, out_len=3)
    return {**TINY_CONTRACT, **spec.info, **spec.describe(dataset), "dataset": "enso", "in_len": 2}


def test_enso_contract_records_south_first_rows_and_the_grid(enso_contract: dict):
    assert enso_contract["row_order"] == "south_first"
    assert enso_contract["grid_latitude"][0] == -55.0 and enso_contract["grid_latitude"][-1] == 60.0
    assert enso_contract["grid_longitude"][0] == 95.0 and len(enso_contract["grid_longitude"]) == 48


def test_enso_forecast_from_npy_plots_north_up(cli, enso_contract: dict, tmp_path: Path):
    values = _marked(en.LAT, (1, 3, 24, 48, 1), en.normalize_sst)
    ds = forecast_dataset(values, enso_contract)  # no input coordinates, as from a .npy input
    assert ds["y"].attrs["row_order"] == "south_first" and ds["y"].attrs["units"] == "degrees_north"
    np.testing.assert_array_equal(ds["y"].values, en.LAT)
    path = write_forecast(ds, tmp_path / "enso.nc")
    png, gif = tmp_path / "enso.png", tmp_path / "enso.gif"
    code, _, err = cli("plot", "--forecast", path, "--out", png, "--gif", gif)
    assert code == 0, err
    assert _north_on_top(png)


def test_old_enso_forecast_without_row_order_plots_north_up(cli, tmp_path: Path):
    """Files written before the contract recorded ``row_order`` (the audit's repro) still plot right."""
    contract = {**TINY_CONTRACT, **enso().info, "dataset": "enso"}
    values = _marked(en.LAT, (1, 2, 24, 48, 1), en.normalize_sst)
    path = write_forecast(forecast_dataset(values, contract), tmp_path / "old.nc")
    png = tmp_path / "old.png"
    assert cli("plot", "--forecast", path, "--out", png)[0] == 0
    assert _north_on_top(png)


@pytest.mark.parametrize("descending", [False, True])
def test_latitude_coordinate_of_the_input_decides(cli, tmp_path: Path, descending: bool):
    """A gridded forecast whose input had latitudes: ascending ones are flipped, descending
    (north-first) ones drawn as stored; either way north ends on top."""
    latitude = np.linspace(-60.0, 60.0, 12)[:: -1 if descending else 1]
    contract = {
        **TINY_CONTRACT,
        "dataset": "gridded",
        "variable": "t2m",
        "units": "K anomaly",
        "scale": "raw",
    }
    values = _marked(latitude, (1, 2, 12, 16, 1), lambda v: v)
    y = (latitude, {"units": "degrees_north"})
    ds = forecast_dataset(values, contract, y=y)
    assert ds["y"].attrs["row_order"] == ("north_first" if descending else "south_first")
    path = write_forecast(ds, tmp_path / "g.nc")
    png = tmp_path / "g.png"
    assert cli("plot", "--forecast", path, "--out", png)[0] == 0
    assert _north_on_top(png)


def test_north_first_data_stay_as_stored(cli, tmp_path: Path):
    """SEVIR and radar data are stored north-first and carry no row order: row 0 stays on top."""
    contract = {**TINY_CONTRACT, "variable": "t2m", "units": "K anomaly", "scale": "raw", "dataset": "x"}
    values = _marked(np.linspace(60.0, -60.0, 12), (1, 2, 12, 16, 1), lambda v: v)
    ds = forecast_dataset(values, contract)
    assert "row_order" not in ds["y"].attrs
    path = write_forecast(ds, tmp_path / "n.nc")
    png = tmp_path / "n.png"
    assert cli("plot", "--forecast", path, "--out", png)[0] == 0
    assert _north_on_top(png)


def test_row_order_reads_latitude_and_northing_only():
    assert row_order([-10.0, 0.0, 10.0], {"units": "degrees_north"}) == "south_first"
    assert row_order([10.0, 0.0], {}, "lat") == "north_first"
    assert row_order([3.0, 2.0, 1.0], {"long_name": "projection y of pixel centres"}) == "north_first"
    assert row_order([0, 1, 2], {"long_name": "grid row index"}) is None  # indices say nothing
    assert row_order([0, 1, 2], {"row_order": "south_first"}) == "south_first"
    assert contract_row_order({"dataset": "enso"}) == "south_first"
    assert contract_row_order({"dataset": "sevir"}) is None


@pytest.mark.parametrize(
    "latitude, order", [((-5.0, 0.0, 5.0, 10.0), "south_first"), ((10.0, 5.0, 0.0, -5.0), "north_first")]
)
def test_gridded_contract_records_the_row_order(latitude: tuple[float, ...], order: str):
    times = np.arange(6).astype("datetime64[h]").astype("datetime64[ns]")
    field = np.zeros((6, 4, 3), dtype=np.float32)
    store = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), field)},
        coords={"time": times, "lat": list(latitude), "lon": [0.0, 1, 2]},
    )
    assert gridded().describe(GriddedDataset(store, ["t2m"], 2, 2))["row_order"] == order


def test_missing_context_pixels_are_grey_not_extreme(cli, tmp_path: Path):
    """VIL code 255 (1.0 on the model's scale) in the context marks missing pixels."""
    context = np.zeros((1, 4, 16, 16), dtype=np.float32)
    context[0, :, 4:12, 4:12] = 1.0
    np.save(tmp_path / "ctx.npy", context)
    forecast = np.zeros((1, 4, 16, 16, 1), dtype=np.float32)
    path = write_forecast(forecast_dataset(forecast, TINY_CONTRACT), tmp_path / "fc.nc")
    png = tmp_path / "fc.png"
    code, _, err = cli("plot", "--forecast", path, "--context", tmp_path / "ctx.npy", "--out", png)
    assert code == 0, err
    assert _rows_of(png, MAGENTA).size == 0
    assert _rows_of(png, GREY).size > 100


def test_a_bare_latitude_dimension_name_tells_the_row_order():
    """An input whose y axis is a dimension named ``lat`` with no attributes: ``predict`` passes
    the name along, since the values alone (unlabelled numbers) say nothing about north."""
    latitude = np.linspace(-60.0, 60.0, 12)
    contract = {**TINY_CONTRACT, "dataset": "gridded", "variable": "t2m", "units": "K", "scale": "raw"}
    values = np.zeros((1, 2, 12, 16, 1), np.float32)
    assert (
        forecast_dataset(values, contract, y=(latitude, {}, "lat"))["y"].attrs["row_order"] == "south_first"
    )
    assert "row_order" not in forecast_dataset(values, contract, y=(latitude, {}, "row"))["y"].attrs
