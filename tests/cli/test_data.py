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
    from earthcast.data.synthesis import synthesis_record

    root = tmp_path / prefix
    args = ("--train", 2, "--val", 1, "--test", 1, "--size", size, "--seq-len", 6, "--quiet")
    code, _, err = cli("data", command, "--out", root, *args)
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == sorted(
        f"{prefix}_{s}.h5" for s in ("test", "train", "val")
    )
    assert synthesis_record(root) == {"dataset": prefix, "parameters": None, "complete": True}
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


# ------------------------------------------------------------- existing files, interruptions

_GENERATORS = {
    "synth-sevir": (
        ("--events", 2, "--size", 16, "--frames", 4, "--quiet"),
        "CATALOG.csv",
    ),
    "synth-enso": (("--cmip6-models", 0, "--cmip5-years", 1), "CMIP_train.nc"),
    "nbody": (
        ("--train", 2, "--val", 1, "--test", 1, "--size", 16, "--seq-len", 4, "--quiet"),
        "nbody_val.h5",
    ),
    "moving-mnist": (
        ("--train", 2, "--val", 1, "--test", 1, "--size", 32, "--seq-len", 4, "--quiet"),
        "moving_mnist_test.h5",
    ),
}


@pytest.mark.parametrize("command", list(_GENERATORS))
def test_generators_keep_existing_files_without_overwrite(cli, tmp_path: Path, command: str):
    """The synthetic files have the real data sets' names: `--out` at a real SEVIR or ICAR-ENSO
    folder replaced the user's files without a word. Now they are named and kept, and
    `--overwrite` replaces them, recording the writing as complete."""
    from earthcast.data.synthesis import synthesis_record

    args, name = _GENERATORS[command]
    real = tmp_path / "data" / name
    real.parent.mkdir(parents=True)
    real.write_text("the user's real data")
    code, _, err = cli("data", command, "--out", tmp_path / "data", *args)
    assert code == 2 and str(real) in err and "--overwrite" in err, err
    assert real.read_text() == "the user's real data" and synthesis_record(tmp_path / "data") is None
    code, _, err = cli("data", command, "--out", tmp_path / "data", *args, "--overwrite")
    assert code == 0, err
    assert real.read_bytes() != b"the user's real data"
    assert synthesis_record(tmp_path / "data")["complete"] is True


def test_synth_sevir_keeps_a_real_vil_file(cli, tmp_path: Path):
    """Any half-year VIL file the generator may write is protected, not only the catalogue."""
    vil = tmp_path / "data" / "vil" / "2019" / "SEVIR_VIL_STORMEVENTS_2019_0101_0630.h5"
    vil.parent.mkdir(parents=True)
    vil.write_text("real")
    code, _, err = cli("data", "synth-sevir", "--out", tmp_path, *_GENERATORS["synth-sevir"][0])
    assert code == 2 and str(vil) in err and vil.read_text() == "real", err


def test_an_interrupted_generation_is_recorded_and_named(tmp_path: Path, monkeypatch):
    """A killed `earthcast data nbody` left nbody_train.h5 alone, which the data module took for a
    data set; the record now says the writing never finished."""
    import earthcast.data.nbody as nbody
    from earthcast.cli import main
    from earthcast.data import create_datamodule
    from earthcast.data.synthesis import interrupted, synthesis_record

    def killed_after_the_first_split(out_dir, *args, **kwargs):
        (Path(out_dir) / "nbody_train.h5").write_text("one split")
        raise KeyboardInterrupt

    monkeypatch.setattr(nbody, "write_nbody", killed_after_the_first_split)
    root = tmp_path / "nb"
    with pytest.raises(KeyboardInterrupt):
        main(["data", "nbody", "--out", str(root), "--train", "2", "--quiet"])
    assert interrupted(synthesis_record(root))
    with pytest.raises(ValueError, match="interrupted"):
        create_datamodule("nbody", root=root, num_workers=0).prepare_data()


@pytest.mark.parametrize("command", list(_GENERATORS))
def test_generators_name_an_output_they_cannot_write(cli, tmp_path: Path, monkeypatch, command: str):
    """A file where --out's folder should be, and a folder without write permission, were
    tracebacks (NotADirectoryError, FileExistsError, PermissionError on a hidden temporary name)."""
    args, _ = _GENERATORS[command]
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        code, _, err = cli("data", command, "--out", out, *args)
        assert code == 2 and "Traceback" not in err and f"'{blocker}' is a file, not a folder" in err, err
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)  # tests run as root
    code, _, err = cli("data", command, "--out", tmp_path / "new", *args)
    assert code == 2 and "Traceback" not in err and f"cannot write in '{tmp_path}'" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_import_radar_blames_the_input_frames_only_for_input_errors(tmp_path: Path):
    """An output-side failure (no permission on --out) was reported with 'remove or replace that
    file, or narrow --start/--end', advice about the input frames."""
    from earthcast.cli.data import _blames_input

    frames = tmp_path / "fmi"
    frames.mkdir()
    assert _blames_input(OSError("pysteps importer 'fmi_pgm' failed on x.pgm: bad header"), frames)
    assert _blames_input(PermissionError(13, "Permission denied", str(frames / "a.pgm")), frames)
    assert not _blames_input(PermissionError(13, "Permission denied", str(tmp_path / "x.zarr")), frames)
    assert not _blames_input(
        IsADirectoryError(21, "Is a directory", "t", None, str(tmp_path / "o.nc")), frames
    )


def test_import_radar_refuses_a_folder_as_a_netcdf_output(cli, tmp_path: Path):
    """`--out dir.nc --overwrite` with a folder there was an IsADirectoryError after the import."""
    (tmp_path / "dir.nc").mkdir()
    code, _, err = cli(
        "data",
        "import-radar",
        "--source",
        "fmi",
        "--path",
        tmp_path,
        "--out",
        tmp_path / "dir.nc",
        "--overwrite",
    )
    assert code == 2 and "is a folder" in err and "Traceback" not in err, err
