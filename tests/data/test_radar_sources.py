"""Leave-one-source-out radar data: splits, patches, normalisation, contract, import and CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from earthcast.cli import main
from earthcast.data import create_datamodule
from earthcast.data.radar_sources import (
    build_radar_sources,
    import_radar_sources,
    list_sources,
    tile_origins,
    write_synthetic_sources,
)

SOURCES = ("mch", "knmi", "fmi", "bom")
N_TIMES, SIZE, PATCH = 36, 24, 16  # grids 24, 32, 40, 48 px (size + 8·i)
OPTIONS = {"patch_size": PATCH, "in_len": 3, "out_len": 3}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic stores named like the real sources, each with its own grid and seed."""
    folder = tmp_path_factory.mktemp("sources")
    write_synthetic_sources(folder, SOURCES, n_times=N_TIMES, size=SIZE, seed=0)
    return folder


def build(root: Path, **options) -> dict:
    return build_radar_sources(root, ("train", "val", "test"), {**OPTIONS, **options})


def sources_of(dataset) -> set[str]:
    return {source for source, *_ in dataset.index}


def test_tiles_cover_the_grid_with_the_last_ones_on_the_edge():
    assert tile_origins(10, 7, 4, 4) == [(y, x) for y in (0, 4, 6) for x in (0, 3)]
    assert tile_origins(8, 8, 4, 2) == [(y, x) for y in (0, 2, 4) for x in (0, 2, 4)]
    assert tile_origins(3, 8, 4, 4) == []  # grid smaller than a tile


@pytest.mark.parametrize("test_source", SOURCES)
def test_held_out_source_is_only_in_the_test_split(root, test_source):
    splits = build(root, test_source=test_source)

    assert sources_of(splits["test"]) == {test_source} and splits["test"].sources == [test_source]
    assert test_source not in sources_of(splits["train"]) | sources_of(splits["val"])
    assert sources_of(splits["train"]) == set(SOURCES) - {test_source}
    assert {item["meta"]["source"] for item in (splits["test"][0], splits["test"][-1])} == {test_source}


def test_validation_source_or_time_fraction(root):
    by_source = build(root, test_source="fmi", val_source="BOM")
    assert sources_of(by_source["val"]) == {"bom"}
    assert sources_of(by_source["train"]) == {"mch", "knmi"}

    by_time = build(root, test_source="fmi", val_fraction=0.3)  # frames 25..35 of each source
    val_starts = {by_time["val"]._readers[s].starts[w] for s, w, *_ in by_time["val"].index}
    train_ends = {by_time["train"]._readers[s].starts[w] + 6 for s, w, *_ in by_time["train"].index}
    assert min(val_starts) >= round(0.7 * N_TIMES) >= max(train_ends)  # no frame in both splits


def test_split_errors_name_the_fix(root):
    with pytest.raises(ValueError, match="test_source"):
        build(root)
    with pytest.raises(ValueError, match=r"\['dwd'\] not among"):
        build(root, test_source="dwd")
    with pytest.raises(ValueError, match="must differ"):
        build(root, test_source="fmi", val_source="fmi")
    with pytest.raises(ValueError, match="does not take"):
        build(root, test_source="fmi", patch=8)
    with pytest.raises(ValueError, match="smaller than patch_size"):
        build(root, test_source="fmi", patch_size=32)  # mch is 24 px


def test_patches_have_the_configured_size_and_mask_nan_in_targets_only(root):
    splits = build(root, test_source="fmi", min_valid=0.0)
    for split in ("train", "val", "test"):
        item = splits[split][0]
        assert item["inputs"].shape == (3, PATCH, PATCH, 1) and item["targets"].shape == (3, PATCH, PATCH, 1)
    test = splits["test"]
    corner = next(i for i, (_, _, y0, x0) in enumerate(test.index) if (y0, x0) == (0, 0))
    item = test[corner]  # the synthetic stores are NaN in their top-left corner (outside the domain)
    assert torch.isfinite(item["inputs"]).all()
    assert torch.isnan(item["targets"][:, 0, 0]).all()
    assert torch.allclose(item["inputs"][:, 0, 0], torch.tensor(test.floor))  # NaN → dry floor


def test_tiles_outside_the_domain_or_dry_are_dropped(root):
    everything = build(root, test_source="fmi", min_valid=0.0)["train"]
    inside = build(root, test_source="fmi", min_valid=0.95)["train"]
    wet = build(root, test_source="fmi", min_valid=0.0, min_wet=0.2)["train"]
    assert len(inside) < len(everything) and len(wet) < len(everything)
    assert all(not (y0 == 0 and x0 == 0) for *_, y0, x0 in inside.index)  # the NaN corner tile
    for i in range(0, len(wet), max(1, len(wet) // 10)):
        item = wet[i]
        frames = torch.cat([item["inputs"], item["targets"]])
        assert (torch.nan_to_num(frames, nan=-1.0) > wet.floor + 1e-6).float().mean() >= 0.2 - 1e-6


def test_normalisation_comes_from_the_training_frames_of_the_training_sources(root, tmp_path):
    splits = build(root, test_source="fmi", val_fraction=0.25)
    expected_low, expected_high = np.inf, -np.inf
    for name in ("mch", "knmi", "bom"):  # independent computation over the training frames
        values = xr.open_zarr(root / f"{name}.zarr")["precip"].values[: round(0.75 * N_TIMES)]
        expected_low, expected_high = (
            min(expected_low, np.nanmin(values)),
            max(expected_high, np.nanmax(values)),
        )
    offset, scale = splits["train"].stats
    assert offset == pytest.approx(expected_low) and scale == pytest.approx(expected_high - expected_low)
    assert splits["val"].stats == splits["test"].stats == splits["train"].stats

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    with xr.open_zarr(root / "fmi.zarr") as ds:
        hotter = ds.load()
    hotter["precip"] = hotter["precip"] + 40.0  # a much wetter held-out source
    shutil.rmtree(copy / "fmi.zarr")
    hotter.to_zarr(copy / "fmi.zarr", zarr_format=2, consolidated=True)
    moved = build(copy, test_source="fmi", val_fraction=0.25)
    assert moved["test"].stats == splits["train"].stats
    assert moved["test"][0]["targets"].nan_to_num().max() > 1.0  # beyond the training range


def test_contract_carries_the_rain_encoding_and_the_frame_interval(root):
    dm = create_datamodule(
        "radar_sources", root=str(root), num_workers=0, options={**OPTIONS, "test_source": "knmi"}
    )
    dm.setup("test")
    contract = dm.contract
    assert (contract["in_len"], contract["height"], contract["width"]) == (3, PATCH, PATCH)
    assert contract["transform"] == "dbr" and contract["units"] == "dBR" and contract["scale"] == "minmax"
    assert contract["precip_threshold"] == 0.1 and contract["zerovalue"] == pytest.approx(-15.0)
    assert contract["scale_offset"] == pytest.approx(-15.0) and contract["scale_factor"] > 10
    assert contract["frame_interval_minutes"] == 5 and contract["sources"] == ["knmi"]
    assert contract["thresholds"] == pytest.approx([0.0, 10 * np.log10(5.0)])  # 1 and 5 mm/h in dBR
    assert contract["rain_thresholds_mmh"] == [1.0, 5.0]


def test_datamodule_synthesizes_a_folder_of_sources(tmp_path):
    dm = create_datamodule(
        "radar_sources",
        root=str(tmp_path / "sources"),
        num_workers=0,
        synthesize=True,
        synthetic={"n_times": 24, "size": 16},
        options={**OPTIONS, "test_source": "bom"},
    )
    dm.prepare_data()
    dm.setup("fit")
    assert sorted(list_sources(tmp_path / "sources")) == sorted(SOURCES)
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape == (2, 3, PATCH, PATCH, 1) and "bom" not in batch["meta"]["source"]


def test_import_of_one_small_real_source(radar_dir: Path, tmp_path: Path):
    stores = import_radar_sources(radar_dir, tmp_path, ["bom"], pixel_km=8.0, max_frames=13, progress=False)
    ds = xr.open_zarr(stores["bom"])
    assert ds.attrs["downsample"] == 16 and ds.attrs["xpixelsize"] == pytest.approx(8000.0)  # 0.5 km native
    assert ds["precip"].shape == (13, 32, 32) and ds.attrs["timestep"] == 6
    again = import_radar_sources(radar_dir, tmp_path, ["bom"], pixel_km=2.0, progress=False)
    assert xr.open_zarr(again["bom"])["precip"].shape == (13, 32, 32)  # kept, not re-imported


def test_cli_imports_sources_and_rejects_unknown_ones(radar_dir: Path, tmp_path: Path, capsys):
    command = ["data", "import-radar-sources", "--path", str(radar_dir), "--out", str(tmp_path), "--quiet"]
    assert main([*command, "--sources", "xyz"]) == 2
    assert "unknown ['xyz']" in capsys.readouterr().err
    (tmp_path / "bom.zarr").mkdir()  # an existing store is kept: nothing to import, instant
    assert main([*command, "--sources", "bom"]) == 0
    assert "bom.zarr" in capsys.readouterr().out
