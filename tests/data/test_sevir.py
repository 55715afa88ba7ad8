"""SEVIR / SEVIR-LR: the real loader on a synthetic store in the real layout."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from earthcast.data.sevir import catalog as cat
from earthcast.data.sevir import synth
from earthcast.data.sevir.constants import CATALOG_COLUMNS, VIL_THRESHOLDS, vil_to_kg_m2
from earthcast.data.sevir.dataset import SEVIRDataset
from earthcast.data.windows import num_windows, valid_window_starts, window_starts

SEVIR_SIZE, SEVIR_EVENTS, SEVIR_INCOMPLETE = 48, 6, 1  # as written by the conftest fixture


def _raw_event(root: Path, meta: dict) -> np.ndarray:
    with h5py.File(root / "data" / meta["file_name"], "r") as f:
        return f["vil"][meta["file_index"]]  # (H, W, T) uint8


def _copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------------------- windows
def test_window_helpers():
    assert window_starts(49, 25, 12) == [0, 12, 24]  # SPEC §3.1
    assert window_starts(25, 13, 6) == [0, 6, 12]  # SPEC §3.2
    assert num_windows(24, 25, 12) == 0 and window_starts(24, 25, 12) == []
    assert num_windows(49, 10, 10) == 4
    breaks = [False] * 10
    breaks[5] = True  # frame 5 does not follow frame 4
    assert valid_window_starts(breaks, 3, 1) == [0, 1, 2, 5, 6, 7]
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 3, 0)


def test_vil_decoding_matches_spec_thresholds():
    expected = [0.15, 0.78, 3.53, 7.07, 12.14, 32.23]  # SPEC §3.1
    np.testing.assert_allclose(vil_to_kg_m2(np.array(VIL_THRESHOLDS)), expected, atol=0.01)
    assert vil_to_kg_m2(np.array([0, 5]))[1] == 0.0 and np.isnan(vil_to_kg_m2(np.array([255]))[0])


# ---------------------------------------------------------------------------------- synthetic layout
def test_synthetic_layout_is_the_real_one(sevir_root: Path):
    header = (sevir_root / "CATALOG.csv").read_text().splitlines()[0].split(",")
    assert header == list(CATALOG_COLUMNS)
    catalog = pd.read_csv(sevir_root / "CATALOG.csv")
    assert len(catalog) == SEVIR_EVENTS + SEVIR_INCOMPLETE
    assert (catalog["img_type"] == "vil").all() and catalog["id"].is_unique
    assert (catalog["pct_missing"] > 0).sum() == SEVIR_INCOMPLETE
    assert catalog["minute_offsets"].str.split(":").map(len).eq(49).all()
    files = sorted((sevir_root / "data" / "vil").rglob("*.h5"))
    assert all(f.name.startswith("SEVIR_VIL_STORMEVENTS_") for f in files)
    assert {f"vil/{f.parent.name}/{f.name}" for f in files} == set(catalog["file_name"])
    for file_name, group in catalog.groupby("file_name"):
        with h5py.File(sevir_root / "data" / file_name, "r") as f:
            assert f["vil"].shape == (len(group), SEVIR_SIZE, SEVIR_SIZE, 49) and f["vil"].dtype == np.uint8
            ids = [i.decode() for i in f["id"][:]]
            assert all(ids[row.file_index] == row.id for row in group.itertuples())
    assert not list(sevir_root.rglob("*.tmp"))


def test_synthetic_storms_move_grow_and_reach_strong_cores():
    vil = synth.storm_event(np.random.default_rng(3), 64, 49).astype(np.float64)  # (H, W, T)
    assert vil.max() <= 254 and vil.max() > 219 and (vil == 0).mean() > 0.3
    area = (vil > 16).sum(axis=(0, 1))
    assert area.max() > 2 * max(area[0], area[-1], 1)  # grows then decays
    yy, xx = np.mgrid[0:64, 0:64]

    def centroid(t):
        w = vil[:, :, t]
        return np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum()

    assert np.linalg.norm(centroid(36) - centroid(12)) > 1.0  # advected


def test_synthetic_is_deterministic(tmp_path: Path):
    a = synth.write_synthetic_sevir(
        tmp_path / "a", n_events=3, size=12, frames=6, n_incomplete=0, progress=False
    )
    b = synth.write_synthetic_sevir(
        tmp_path / "b", n_events=3, size=12, frames=6, n_incomplete=0, progress=False
    )
    for fa in sorted((a / "data").rglob("*.h5")):
        with h5py.File(fa) as x, h5py.File(b / fa.relative_to(a)) as y:
            np.testing.assert_array_equal(x["vil"][:], y["vil"][:])
    assert (a / "CATALOG.csv").read_text() == (b / "CATALOG.csv").read_text()


def test_interrupted_synthesis_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []

    def flaky(rng, size, frames):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((size, size, frames), np.uint8)

    monkeypatch.setattr(synth, "storm_event", flaky)
    with pytest.raises(KeyboardInterrupt):
        synth.write_synthetic_sevir(tmp_path, n_events=4, size=12, frames=6, n_incomplete=0, progress=False)
    assert not (tmp_path / "CATALOG.csv").exists() and not list(tmp_path.rglob("*.tmp"))
    finished = list(tmp_path.rglob("*.h5"))  # only the file completed before the interrupt
    assert len(finished) == 1
    with h5py.File(finished[0], "r") as f:
        assert f["vil"].shape == (1, 12, 12, 6)


# ---------------------------------------------------------------------------------- catalogue
def test_date_split_semantics_are_start_exclusive_end_inclusive():
    times = ["2019-01-01 00:00", "2019-01-01 00:05", "2019-06-01 00:00"]
    events = pd.DataFrame({"time_utc": [pd.Timestamp(t) for t in times]})
    assert len(cat.split_by_date(events, *cat.resolve_split("train"))) == 1
    assert len(cat.split_by_date(events, *cat.resolve_split("val"))) == 2
    assert len(cat.split_by_date(events, *cat.resolve_split("test"))) == 0
    with pytest.raises(ValueError, match="Valid names"):
        cat.resolve_split("holdout")
    with pytest.raises(ValueError, match="before"):
        cat.resolve_split(("2019-02-01", "2019-01-01"))


def test_windows_per_event_and_per_split(sevir_root: Path):
    catalog = pd.read_csv(sevir_root / "CATALOG.csv", parse_dates=["time_utc"])
    complete = catalog[catalog["pct_missing"] == 0]
    expected = {
        "train": (complete["time_utc"] <= "2019-01-01").sum(),
        "val": ((complete["time_utc"] > "2019-01-01") & (complete["time_utc"] <= "2019-06-01")).sum(),
        "test": (complete["time_utc"] > "2019-06-01").sum(),
    }
    for split, n_events in expected.items():
        assert n_events > 0
        for variant in ("sevir", "sevirlr"):
            ds = SEVIRDataset(sevir_root, split, variant=variant)
            assert ds.windows_per_event == 3 and len(ds.events) == n_events and len(ds) == 3 * n_events
    explicit = SEVIRDataset(sevir_root, (None, None), in_len=5, out_len=5, stride=10)
    assert explicit.starts == [0, 10, 20, 30] and len(explicit) == 4 * SEVIR_EVENTS


def test_duplicated_ids_are_dropped(sevir_root: Path, tmp_path: Path):
    catalog = pd.read_csv(sevir_root / "CATALOG.csv")
    victim = catalog[catalog["pct_missing"] == 0].iloc[[0]]
    pd.concat([catalog, victim]).to_csv(tmp_path / "CATALOG.csv", index=False)
    events = cat.select_events(cat.read_catalog(tmp_path))
    assert victim["id"].item() not in set(events["id"]) and len(events) == SEVIR_EVENTS - 1


# ---------------------------------------------------------------------------------- items
def test_sevir_items_match_the_stored_frames(sevir_root: Path):
    ds = SEVIRDataset(sevir_root, "train")
    item = ds[1]  # event 0, window 1: frames 12..36
    assert item["inputs"].shape == (13, SEVIR_SIZE, SEVIR_SIZE, 1) and item["inputs"].dtype == torch.float32
    assert item["targets"].shape == (12, SEVIR_SIZE, SEVIR_SIZE, 1)
    assert item["meta"]["start"] == 12 and item["meta"]["window"] == 1
    raw = _raw_event(sevir_root, item["meta"])
    frames = torch.cat([item["inputs"], item["targets"]])[..., 0].numpy()
    np.testing.assert_allclose(frames, raw[:, :, 12:37].transpose(2, 0, 1) / 255.0, rtol=1e-6)
    for i in range(len(ds)):
        x = torch.cat([ds[i]["inputs"], ds[i]["targets"]])
        assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert SEVIRDataset(sevir_root, "train", scale="raw")[1]["inputs"].max() > 1


def test_sevirlr_is_every_second_frame_max_pooled(sevir_root: Path):
    ds = SEVIRDataset(sevir_root, "val", variant="sevirlr")
    assert ds.frame_interval_minutes == 10 and ds.contract["in_len"] == 7
    item = ds[2]  # window 2: LR frames 12..24 = native frames 24, 26, ..., 48
    side = SEVIR_SIZE // 3
    assert item["inputs"].shape == (7, side, side, 1) and item["targets"].shape == (6, side, side, 1)
    assert item["meta"]["start"] == 24
    raw = _raw_event(sevir_root, item["meta"])[:, :, 24:49:2]  # (H, W, 13)
    pooled = raw.reshape(side, 3, side, 3, 13).max(axis=(1, 3))
    frames = torch.cat([item["inputs"], item["targets"]])[..., 0].numpy()
    np.testing.assert_allclose(frames, pooled.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    assert frames[3, 4, 5] == pytest.approx(raw[12:15, 15:18, 3].max() / 255.0)


def test_dataloader_with_workers_opens_files_lazily(sevir_root: Path):
    ds = SEVIRDataset(sevir_root, (None, None))
    assert ds.reader._handles == {}  # nothing opened at construction
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    seen = []
    for batch in loader:
        assert batch["inputs"].shape[1:] == (13, SEVIR_SIZE, SEVIR_SIZE, 1)
        assert batch["targets"].shape[1:] == (12, SEVIR_SIZE, SEVIR_SIZE, 1)
        seen += [(e, int(s)) for e, s in zip(batch["meta"]["event_id"], batch["meta"]["start"])]
    assert len(seen) == len(ds) == len(set(seen))
    assert ds.reader._handles == {}  # the workers opened their own
    ds[0]
    assert len(pickle.loads(pickle.dumps(ds)).reader._handles) == 0


def test_missing_pixels(sevir_root: Path):
    assert len(SEVIRDataset(sevir_root, (None, None)).events) == SEVIR_EVENTS  # default drops them
    wedge = slice(16, 24)  # frames//3 : frames//2, rows :size//4, native frames
    results = {}
    for missing in ("nan", "zero", "keep"):
        ds = SEVIRDataset(sevir_root, (None, None), complete_only=False, missing=missing)
        event = int(np.flatnonzero(ds.events["pct_missing"] > 0)[0])
        item = ds[event * 3]  # window 0: native frames 0..24
        results[missing] = torch.cat([item["inputs"], item["targets"]])[wedge, : SEVIR_SIZE // 4, :, 0]
    assert torch.isnan(results["nan"]).all()
    assert (results["zero"] == 0).all() and (results["keep"] == 1.0).all()
    lr = SEVIRDataset(sevir_root, (None, None), variant="sevirlr", complete_only=False)
    event = int(np.flatnonzero(lr.events["pct_missing"] > 0)[0])
    item = lr[event * 3]
    x = torch.cat([item["inputs"], item["targets"]])[..., 0]  # LR frames 8..11 = native 16..22: wedge
    assert torch.isnan(x[8:12, : SEVIR_SIZE // 12]).all()
    assert not torch.isnan(x[:8]).any() and not torch.isnan(x[12:]).any()


def test_generic_frame_count_and_unpoolable_size(tmp_path: Path):
    root = synth.write_synthetic_sevir(
        tmp_path, n_events=3, size=16, frames=13, n_incomplete=0, progress=False
    )
    ds = SEVIRDataset(root, (None, None), in_len=3, out_len=2, stride=2)
    assert ds.native_frames == 13 and len(ds) == 3 * 5 and ds[14]["targets"].shape == (2, 16, 16, 1)
    lr = SEVIRDataset(root, (None, None), variant="sevirlr", in_len=2, out_len=2, stride=1)
    assert lr.frames == 7 and len(lr) == 3 * 4
    with pytest.raises(ValueError, match="divisible by 3"):
        lr[0]


# ---------------------------------------------------------------------------------- errors
def test_missing_catalog(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"CATALOG\.csv"):
        SEVIRDataset(tmp_path)


def test_catalog_missing_a_column(sevir_root: Path, tmp_path: Path):
    pd.read_csv(sevir_root / "CATALOG.csv").drop(columns="pct_missing").to_csv(
        tmp_path / "CATALOG.csv", index=False
    )
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['pct_missing'\]"):
        SEVIRDataset(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_h5_names_the_file(sevir_root: Path, tmp_path: Path, damage: str):
    root = _copy_store(sevir_root, tmp_path / "store")
    ds = SEVIRDataset(root, "train")
    path = root / "data" / ds.events["file_name"].iloc[0]
    data = path.read_bytes()
    path.write_bytes(b"not an hdf5 file" * 64 if damage == "garbage" else data[: len(data) // 3])
    with pytest.raises(OSError, match=path.name):
        ds[0]


def test_file_listed_but_absent(sevir_root: Path, tmp_path: Path):
    root = _copy_store(sevir_root, tmp_path / "store")
    victim = root / "data" / pd.read_csv(root / "CATALOG.csv")["file_name"].iloc[-1]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        SEVIRDataset(root, (None, None), complete_only=False)


def test_empty_split_and_bad_arguments(sevir_root: Path):
    with pytest.raises(ValueError, match="no SEVIR event left"):
        SEVIRDataset(sevir_root, ("2017-01-01", "2017-06-01"))
    with pytest.raises(ValueError, match="Valid names"):
        SEVIRDataset(sevir_root, variant="sevir-hr")
    with pytest.raises(ValueError, match="does not fit"):
        SEVIRDataset(sevir_root, in_len=40, out_len=20)
    with pytest.raises(ValueError, match="missing"):
        SEVIRDataset(sevir_root, missing="drop")
