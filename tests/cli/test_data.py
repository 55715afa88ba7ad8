"""`earthcast data ...` writes the real layouts, which the dataset classes read back (quick sizes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xarray as xr


def test_synth_sevir(cli, tmp_path: Path):
    from earthcast.data.sevir import SEVIRDataset

    root = tmp_path / "sevir"
    code, out, err = cli("data", "synth-sevir", "--out", root, "--events", 4, "--size", 24, "--frames", 13)
    assert code == 0, err
    assert "CATALOG.csv" in out
    assert (root / "CATALOG.csv").is_file() and list((root / "data" / "vil").glob("*/SEVIR_VIL_*.h5"))
    dataset = SEVIRDataset(root, (None, None), in_len=7, out_len=6, stride=6)
    assert len(dataset) == 4 and dataset[0]["inputs"].shape == (7, 24, 24, 1)


def test_synth_enso(cli, tmp_path: Path):
    from earthcast.data.enso import ENSODataset

    root = tmp_path / "enso"
    code, _, err = cli("data", "synth-enso", "--out", root, "--cmip6-models", 0, "--cmip5-years", 2)
    assert code == 0, err
    assert (root / "CMIP_train.nc").is_file() and (root / "CMIP_label.nc").is_file()
    assert ENSODataset(root, "test")[0]["inputs"].shape == (12, 24, 48, 1)


@pytest.mark.parametrize(
    "command, prefix, size",
    [("nbody", "nbody", 16), ("moving-mnist", "moving_mnist", 32)],
)
def test_digit_sequences(cli, tmp_path: Path, command: str, prefix: str, size: int):
    from earthcast.data.moving_mnist import MovingMNISTDataset
    from earthcast.data.nbody import NBodyDataset

    root = tmp_path / prefix
    args = ("--train", 2, "--val", 1, "--test", 1, "--size", size, "--seq-len", 6, "--quiet")
    code, _, err = cli("data", command, "--out", root, *args)
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir()) == sorted(
        f"{prefix}_{s}.h5" for s in ("test", "train", "val")
    )
    reader = NBodyDataset if command == "nbody" else MovingMNISTDataset
    sample = reader(root, "train", in_len=3, out_len=3)[1]
    assert sample["inputs"].shape == (3, size, size, 1) and float(sample["inputs"].max()) > 0


def _radar_dir() -> Path | None:
    shared = Path(os.environ.get("EARTHCAST_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    return shared / "data" / "radar" if (shared / "data" / "radar").is_dir() else None


def test_import_radar(cli, tmp_path: Path):
    pytest.importorskip("pysteps")
    radar = _radar_dir()
    if radar is None:
        pytest.skip("shared/data/radar not found (set EARTHCAST_SHARED)")
    out = tmp_path / "mch.zarr"
    code, _, err = cli(
        "data", "import-radar", "--source", "MCH", "--path", radar / "mch", "--out", out,
        "--transform", "rainrate", "--downsample", 8, "--max-frames", 2, "--quiet",
    )  # fmt: skip
    assert code == 0, err
    with xr.open_zarr(out) as ds:
        assert ds["precip"].dims == ("time", "y", "x") and ds.sizes["time"] == 2
        assert ds["precip"].attrs["units"] == "mm/h"
    code, _, err = cli("data", "import-radar", "--source", "mch", "--path", radar / "mch", "--out", out)
    assert code == 2 and "--overwrite" in err
