"""Reliability corpus: bad inputs give ONE clear error naming the problem and the fix, never a traceback.

CLI cases run ``earthcast.cli.main`` in-process and require exit code 2, a single
``earthcast <command>: error: …`` line on stderr (argparse's own usage errors for malformed
command lines), the expected phrases, and no output or temporary file left behind. Library cases
require the documented exception type and phrases.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from earthcast.io.forecast import forecast_dataset, write_forecast
from tests.cli.helpers import TINY_CONTRACT, run_cli, write_checkpoint

N, T, S = 3, 4, 16  # the tiny checkpoint's contract: (N, 4, 16, 16, 1), VIL code / 255


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good inputs the bad cases start from: a checkpoint, contexts, targets, a forecast."""
    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    np.save(root / "ctx.npy", rng.random((N, T, S, S), dtype=np.float32))
    np.save(root / "tgt.npy", rng.random((N, T, S, S), dtype=np.float32))
    forecast = forecast_dataset(rng.random((N, T, S, S, 1), dtype=np.float32), TINY_CONTRACT)
    write_forecast(forecast, root / "forecast.nc")
    (root / "mode0.json").write_text(json.dumps({"csi@16": 0.5, "csi_m": 0.4}))
    return {
        "ckpt": write_checkpoint(root / "tiny.ckpt"),
        "ctx": root / "ctx.npy",
        "tgt": root / "tgt.npy",
        "forecast": root / "forecast.nc",
        "mode0": root / "mode0.json",
    }


def user_error(capsys, argv, *phrases: str, outputs: tuple[Path, ...] = ()) -> str:
    """Run the CLI; assert one clear error line with ``phrases`` and no (partial) outputs."""
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    message = lines[-1]
    assert message.startswith("earthcast ") and ": error: " in message, err
    if not message.split(": error: ")[0].endswith(("usage", "earthcast")) and "usage:" not in err:
        assert len(lines) == 1, f"more than one line: {err}"
    for phrase in phrases:
        assert phrase.lower() in message.lower(), f"{phrase!r} not in: {message}"
    for path in outputs:
        assert not path.exists(), f"partial output {path} left behind"
        assert not list(path.parent.glob(f".{path.name}*")), f"temporary file of {path} left behind"
    return message


def _save(path: Path, array: np.ndarray, allow_pickle: bool = False) -> Path:
    np.save(path, array, allow_pickle=allow_pickle)
    return path


def _predict(files, tmp_path: Path, input_path: Path, *extra) -> tuple[list, Path]:
    out = tmp_path / "out.nc"
    return ["predict", "--ckpt", files["ckpt"], "--input", input_path, "--output", out, *extra], out


# ------------------------------------------------------------------- predict: input vs contract


@pytest.mark.parametrize(
    "shape, phrases",
    [
        ((2, 6, S, S), ("T_in is 6, expected 4", "array[:, -4:]")),
        ((2, T, 32, 32), ("H is 32, expected 16", "regrid")),
        ((T, S, S), ("3-D", "array[None]")),
        ((2, T, S, S, 3), ("C is 3, expected 1", "channel")),
        ((2, 1, T, S, S, 1), ("6-D", "(N, T_in=4, H=16, W=16, C=1)")),
    ],
    ids=["time", "grid", "no-sample-axis", "channels", "six-d"],
)
def test_predict_wrong_shape(capsys, files, tmp_path, shape, phrases):
    bad = _save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    argv, out = _predict(files, tmp_path, bad)
    user_error(capsys, argv, *phrases, outputs=(out,))


@pytest.mark.parametrize(
    "array, allow_pickle, phrases",
    [
        (np.full((2, T, S, S), "a"), False, ("strings", "astype")),
        (np.empty((2, T, S, S), dtype=object), True, ("object and pickled arrays are refused",)),
    ],
    ids=["strings", "objects"],
)
def test_predict_non_numeric(capsys, files, tmp_path, array, allow_pickle, phrases):
    bad = _save(tmp_path / "bad.npy", array, allow_pickle)
    argv, out = _predict(files, tmp_path, bad)
    user_error(capsys, argv, *phrases, outputs=(out,))


@pytest.mark.parametrize(
    "value, phrases",
    [
        (np.nan, ("contains NaN", "nan_to_num")),
        (np.inf, ("contains inf",)),
        (254.0, ("divide byte data by 255",)),
    ],
    ids=["nan", "inf", "byte-scale"],
)
def test_predict_bad_values(capsys, files, tmp_path, value, phrases):
    array = np.random.default_rng(0).random((2, T, S, S), dtype=np.float32)
    array[1, 2, 3, 4] = value
    argv, out = _predict(files, tmp_path, _save(tmp_path / "bad.npy", array))
    user_error(capsys, argv, *phrases, outputs=(out,))


def test_predict_corrupt_netcdf(capsys, files, tmp_path):
    bad = tmp_path / "garbage.nc"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    argv, out = _predict(files, tmp_path, bad)
    user_error(capsys, argv, "garbage.nc", "corrupt", outputs=(out,))


def test_predict_truncated_netcdf(capsys, files, tmp_path):
    data = files["forecast"].read_bytes()
    bad = tmp_path / "half.nc"
    bad.write_bytes(data[: len(data) // 2])
    argv, out = _predict(files, tmp_path, bad)
    user_error(capsys, argv, "half.nc", "truncated", outputs=(out,))


def test_predict_unknown_variable(capsys, files, tmp_path):
    argv, out = _predict(files, tmp_path, files["forecast"], "--var", "rain")
    user_error(capsys, argv, "no variable 'rain'", "vil(", outputs=(out,))


@pytest.mark.parametrize(
    "name, phrases",
    [("missing.npy", ("not found",)), ("contexts.txt", ("extension '.txt'", ".npy"))],
    ids=["missing", "extension"],
)
def test_predict_bad_input_path(capsys, files, tmp_path, name, phrases):
    path = tmp_path / name
    if path.suffix == ".txt":
        path.write_text("1 2 3")
    argv, out = _predict(files, tmp_path, path)
    user_error(capsys, argv, *phrases, outputs=(out,))


def test_predict_bad_output_and_selection(capsys, files, tmp_path):
    out = tmp_path / "forecast.csv"
    argv = ["predict", "--ckpt", files["ckpt"], "--input", files["ctx"], "--output", out]
    user_error(capsys, argv, "must end in .nc", outputs=(out,))
    argv, out = _predict(files, tmp_path, files["ctx"], "--index", 10)
    user_error(capsys, argv, "has 3 samples", outputs=(out,))
    argv, out = _predict(files, tmp_path, files["ctx"], "--count", 0)
    user_error(capsys, argv, "count must be >= 1", outputs=(out,))
    argv, out = _predict(files, tmp_path, files["ctx"], "--device", "cuda:7")
    if not torch.cuda.is_available():
        user_error(capsys, argv, "no CUDA GPU", "--device cpu", outputs=(out,))
    argv, out = _predict(files, tmp_path, files["ctx"], "--device", "abacus")
    user_error(capsys, argv, "not a torch device", outputs=(out,))
    argv, out = _predict(files, tmp_path, files["ctx"], "--thresholds", 74, "--quiet")
    user_error(capsys, argv, "need an ensemble model", "drop the thresholds", outputs=(out,))


def test_predict_existing_output_is_kept(capsys, files, tmp_path):
    out = tmp_path / "out.nc"
    out.write_text("keep me")
    argv, _ = _predict(files, tmp_path, files["ctx"])
    user_error(capsys, argv, "--overwrite")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)], ids=["plain", "overwrite"])
def test_predict_output_that_is_a_folder(capsys, files, tmp_path, overwrite):
    """Without --overwrite the advice was "pass --overwrite", which then gave a traceback."""
    out = tmp_path / "dir.nc"
    out.mkdir()
    argv = ["predict", "--ckpt", files["ckpt"], "--input", files["ctx"], "--output", out, *overwrite]
    message = user_error(capsys, argv, f"'{out}' is a folder", "choose another name")
    assert "--overwrite" not in message and out.is_dir()


def test_predict_into_a_folder_it_cannot_write(capsys, files, tmp_path, monkeypatch):
    """Refused up front (os.access; the tests run as root, where chmod does not bite), and where
    only the writing finds out (a full or read-only disk): one line naming --output, not the
    hidden temporary file, and not a traceback."""
    from earthcast.utils import io

    out = tmp_path / "out" / "f.nc"
    argv = ["predict", "--ckpt", files["ckpt"], "--input", files["ctx"], "--output", out, "--quiet"]
    with monkeypatch.context() as patch:
        patch.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
        user_error(capsys, argv, f"cannot write in '{tmp_path}'", outputs=(out,))

    def denied(prefix, suffix, dir):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}abcd1234{suffix}")

    monkeypatch.setattr(io.tempfile, "mkstemp", denied)
    message = user_error(capsys, argv, "permission denied", f"'{out}'", outputs=(out,))
    assert ".tmp" not in message


@pytest.mark.parametrize(
    "error, phrases",
    [
        (PermissionError(13, "Permission denied", "/data/ro/f.nc"), ("permission denied", "'/data/ro/f.nc'")),
        (OSError(30, "Read-only file system", "/mnt/ro/x"), ("read-only", "'/mnt/ro/x'", "elsewhere")),
        (OSError(28, "No space left on device", "/scratch/s.zarr"), ("no space", "'/scratch/s.zarr'")),
        (IsADirectoryError(21, "Is a directory", "/runs/f.nc"), ("'/runs/f.nc' is a folder",)),
        (FileExistsError(17, "File exists", "/runs/x"), ("'/runs/x'", "remove it")),
    ],
    ids=["access", "read-only", "full", "folder", "exists"],
)
def test_disk_errors_are_one_line_naming_the_path(error, phrases):
    from earthcast.cli import disk_error

    message = disk_error(error)
    for phrase in phrases:
        assert phrase.lower().replace("elsewhere", "somewhere else") in message.lower(), message
    assert disk_error(OSError(5, "Input/output error", "/x")) is None  # a real fault: a traceback


def test_a_path_under_a_file_names_the_file(capsys, tmp_path, monkeypatch):
    """NotADirectoryError from anywhere (here `fit`'s run folder) is one line naming the file."""
    import earthcast.cli.models as models

    blocker = tmp_path / "afile"
    blocker.write_text("x")

    def write_under_a_file(args):
        (blocker / "run").mkdir(parents=True)

    monkeypatch.setattr(models, "run", write_under_a_file)  # looked up when the parser is built
    user_error(capsys, ["models"], f"'{blocker}'", "is a file, not a folder")


# ------------------------------------------------------------------------------- checkpoints


def test_checkpoint_garbage_and_missing(capsys, files, tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all" * 100)
    out = tmp_path / "out.nc"
    argv = ["predict", "--ckpt", garbage, "--input", files["ctx"], "--output", out]
    user_error(capsys, argv, "not a readable PyTorch checkpoint", outputs=(out,))
    argv[2] = tmp_path / "nowhere.ckpt"
    user_error(capsys, argv, "not found", "earthcast fit", outputs=(out,))


def test_checkpoint_of_another_model(capsys, files, tmp_path):
    """The hyper-parameters name a model whose parameters differ from the stored weights."""
    path = write_checkpoint(tmp_path / "other.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model_name"] = "earthformer_sevir_tiny"
    torch.save(checkpoint, path)
    out = tmp_path / "out.nc"
    argv = ["predict", "--ckpt", path, "--input", files["ctx"], "--output", out]
    user_error(capsys, argv, "do not fit model 'earthformer_sevir_tiny'", outputs=(out,))
    checkpoint["hyper_parameters"]["model_name"] = "no_such_model"
    torch.save(checkpoint, path)
    user_error(capsys, argv, "not registered", "earthformer_nbody_tiny", outputs=(out,))


# ------------------------------------------------------------------------------------ score


def _score(pred: Path, target: Path, *extra) -> list:
    return ["score", "--pred", pred, "--target", target, "--metrics", "sevir", "--quiet", *extra]


def test_score_shape_mismatch(capsys, files, tmp_path):
    short = _save(tmp_path / "short.npy", np.zeros((N, T - 1, S, S), np.float32))
    out = tmp_path / "s.json"
    user_error(capsys, _score(files["ctx"], short, "--out", out), "differs from target shape", outputs=(out,))


def test_score_bad_values(capsys, files, tmp_path):
    nan = np.load(files["ctx"]).copy()
    nan[0, 0, 0, 0] = np.nan
    user_error(capsys, _score(_save(tmp_path / "nan.npy", nan), files["tgt"]), "NaN or inf", "nan_to_num")
    strings = _save(tmp_path / "str.npy", np.full((N, T, S, S), "x"))
    user_error(capsys, _score(files["ctx"], strings), "target", "strings")


def test_score_all_missing_target(capsys, files, tmp_path):
    """A SEVIR target whose every pixel is the missing code 255."""
    missing = _save(tmp_path / "missing.npy", np.full((N, T, S, S), 255, np.uint8))
    pred = _save(tmp_path / "pred.npy", np.zeros((N, T, S, S), np.uint8))
    user_error(capsys, _score(pred, missing, "--scale", "255"), "every target pixel is missing")


def test_score_bad_files(capsys, files, tmp_path):
    user_error(capsys, _score(tmp_path / "nope.npy", files["tgt"]), "pred file", "not found")
    csv = tmp_path / "pred.csv"
    csv.write_text("1,2,3")
    user_error(capsys, _score(csv, files["tgt"]), "extension '.csv'")
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"\x89HDF garbage" * 50)
    user_error(capsys, _score(garbage, files["tgt"]), "corrupt")
    user_error(capsys, _score(files["ctx"], files["tgt"], "--out", tmp_path / "s.txt"), "must end in .json")


def test_score_enso_needs_its_grid(capsys, files):
    argv = ["score", "--pred", files["ctx"], "--target", files["tgt"], "--metrics", "enso", "--quiet"]
    user_error(capsys, argv, "24×48")


def test_score_refuses_an_ensemble_as_the_target(capsys, files, tmp_path):
    members = np.random.default_rng(1).random((N, 2, T, S, S, 1), dtype=np.float32)
    path = write_forecast(forecast_dataset(members, TINY_CONTRACT), tmp_path / "ens.nc")
    user_error(capsys, _score(files["tgt"], path), "must be the observations")


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["score", "--pred", "a.npy", "--target", "b.npy", "--metrics", "foo"], "invalid choice: 'foo'"),
        (
            ["score", "--pred", "a.npy", "--target", "b.npy", "--metrics", "sevir", "--mode", "3"],
            "invalid choice",
        ),
        (["score", "--pred", "a.npy"], "required"),
        (["predict", "--ckpt", "x.ckpt"], "--input"),
        (["plot", "--out", "x.png"], "one of the arguments --forecast --scores is required"),
        (["data", "import-radar", "--source", "opera", "--path", ".", "--out", "x.zarr"], "invalid choice"),
        (["predict", "--ckpt", "x", "--input", "y", "--output", "z.nc", "--index", "one"], "invalid int"),
    ],
    ids=["unknown-metric", "bad-mode", "missing-target", "missing-input", "plot-no-source", "radar", "int"],
)
def test_bad_command_lines(capsys, argv, phrase):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err
    assert "usage: earthcast" in err and phrase in err


# ------------------------------------------------------------------------------------- plot


def test_plot_errors(capsys, files, tmp_path):
    png = tmp_path / "fig.png"
    user_error(capsys, ["plot", "--forecast", tmp_path / "no.nc", "--out", png], "not found", outputs=(png,))
    user_error(capsys, ["plot", "--scores", files["mode0"], "--out", png], "--mode 1", outputs=(png,))
    broken = tmp_path / "broken.json"
    broken.write_text("{csi")
    user_error(capsys, ["plot", "--scores", broken, "--out", png], "not valid JSON", outputs=(png,))
    bmp = tmp_path / "fig.bmp"
    user_error(
        capsys, ["plot", "--forecast", files["forecast"], "--out", bmp], "unknown extension", outputs=(bmp,)
    )
    big = _save(tmp_path / "big.npy", np.zeros((N, T, 32, 32), np.float32))
    argv = ["plot", "--forecast", files["forecast"], "--target", big, "--out", png]
    user_error(capsys, argv, "same grid", outputs=(png,))
    one = _save(tmp_path / "one.npy", np.zeros((1, T, S, S), np.float32))
    argv = ["plot", "--forecast", files["forecast"], "--target", one, "--sample", 2, "--out", png]
    user_error(capsys, argv, "has 1 samples", "aligned", outputs=(png,))


# ------------------------------------------------------------------------------------- data


def test_data_errors(capsys, tmp_path):
    out = tmp_path / "radar.zarr"
    argv = ["data", "import-radar", "--source", "fmi", "--path", tmp_path / "none", "--out", out]
    user_error(capsys, argv, "not found", outputs=(out,))
    user_error(capsys, [*argv[:5], tmp_path, *argv[6:], "--crop", "5,1,0,9"], "ROW0", outputs=(out,))
    user_error(capsys, [*argv[:5], tmp_path, *argv[6:], "--start", "yesterday"], "ISO", outputs=(out,))
    user_error(capsys, [*argv[:5], tmp_path, *argv[6:]], "no 'fmi' radar file", outputs=(out,))
    mm = tmp_path / "mm"
    user_error(capsys, ["data", "moving-mnist", "--out", mm, "--size", 16], ">= 28")
    assert not mm.exists()
    user_error(capsys, ["data", "synth-enso", "--out", tmp_path / "e", "--cmip5-models", 2], ">= 3")
    user_error(capsys, ["data", "synth-sevir", "--out", tmp_path / "s", "--events", 0], "positive")


# ------------------------------------------------------------------------------------ fit


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_fit_on_a_gpu_setting_without_a_gpu(capsys, tmp_path):
    """Lightning's MisconfigurationException (a 28-line traceback before) is one line naming
    the trainer setting to change."""
    from tests.training.conftest import tiny_overrides

    overrides = [*tiny_overrides("nbody", tmp_path), "trainer.accelerator=gpu"]
    argv = ["fit", "nbody", *(arg for o in overrides for arg in ("--set", o))]
    user_error(
        capsys, argv, "No supported gpu backend found", "--set trainer.KEY=VALUE", "trainer.accelerator"
    )
    assert not list((tmp_path / "run").rglob("*.ckpt"))


# --------------------------------------------------------------------------- library: SEVIR


@pytest.fixture
def sevir_root(tmp_path: Path) -> Path:
    from earthcast.data.sevir import write_synthetic_sevir

    return write_synthetic_sevir(
        tmp_path / "sevir", n_events=3, size=24, frames=13, n_incomplete=0, progress=False
    )


def test_truncated_sevir_file(sevir_root: Path):
    from earthcast.data.sevir import SEVIRDataset

    dataset = SEVIRDataset(sevir_root, (None, None), in_len=7, out_len=6, stride=6)
    path = sevir_root / "data" / dataset.events["file_name"][0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match=r"truncated.*Download it again"):
        dataset[0]
    with pytest.raises(OSError):  # h5py itself agrees the file is damaged
        h5py.File(path, "r")


def test_catalog_missing_columns(sevir_root: Path):
    from earthcast.data.sevir import SEVIRDataset

    catalog = pd.read_csv(sevir_root / "CATALOG.csv").drop(columns=["file_index", "pct_missing"])
    catalog.to_csv(sevir_root / "CATALOG.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['file_index', 'pct_missing'\]"):
        SEVIRDataset(sevir_root, "train")


def test_empty_split_after_filtering(sevir_root: Path):
    from earthcast.data.sevir import SEVIRDataset

    with pytest.raises(ValueError, match=r"no SEVIR event left .* in the date range: 0"):
        SEVIRDataset(sevir_root, ("2030-01-01", "2031-01-01"))


def test_sevir_missing_root(tmp_path: Path):
    from earthcast.data.sevir import SEVIRDataset

    with pytest.raises(FileNotFoundError, match="write_synthetic_sevir"):
        SEVIRDataset(tmp_path / "nowhere", "train")


def test_corrupt_enso_netcdf(tmp_path: Path):
    from earthcast.data.enso import ENSODataset

    for name in ("CMIP_train.nc", "CMIP_label.nc"):
        (tmp_path / name).write_bytes(b"garbage" * 400)
    with pytest.raises(ValueError, match=r"CMIP_train\.nc: it is truncated, corrupt or not NetCDF"):
        ENSODataset(tmp_path)


# --------------------------------------------------------------------- library: models, metrics


def test_unknown_model_name():
    from earthcast import create_model

    with pytest.raises(
        ValueError, match=r"unknown model 'earthformer_xl'\. Valid names: .*earthformer_sevir"
    ):
        create_model("earthformer_xl")


def test_unknown_pattern():
    from earthcast.models.earthformer.config import EarthformerConfig
    from earthcast.nn.cuboid.patterns import get_self_pattern

    with pytest.raises(ValueError, match=r"unknown self-attention pattern 'diagonal'\. Valid names: axial"):
        get_self_pattern("diagonal", (4, 8, 8))
    with pytest.raises(ValueError, match="enc_pattern='diagonal' is not a registered pattern"):
        EarthformerConfig(enc_pattern="diagonal")


@pytest.mark.parametrize(
    "changes, phrase",
    [
        ({"base_units": 30}, "must be divisible by num_heads"),
        ({"input_shape": (4, 16, 16)}, "must be (T, H, W, C)"),
        ({"target_shape": (4, 32, 32, 1)}, "must equal target H, W"),
        ({"enc_depth": (1, 1, 1)}, "need the same number of levels"),
        ({"ffn_activation": "swish"}, "choose one of"),
        ({"no_such_key": 1}, "unknown EarthformerConfig keys ['no_such_key']"),
    ],
    ids=["heads", "shape", "grid", "depths", "activation", "unknown-key"],
)
def test_bad_earthformer_config(changes, phrase):
    from earthcast.models.earthformer import get_preset

    with pytest.raises(ValueError) as info:
        get_preset("earthformer_nbody_tiny").replace(**changes)
    assert phrase in str(info.value)


@pytest.mark.parametrize(
    "options, phrase",
    [
        ({"kind": "radar"}, "unknown kind 'radar'; use one of sevir, enso, continuous"),
        ({"mode": "4"}, "unknown mode '4'"),
        ({"scale": "100"}, "unknown scale '100'"),
    ],
    ids=["kind", "mode", "scale"],
)
def test_score_arrays_options(options, phrase):
    from earthcast.metrics import score_arrays

    zeros = np.zeros((1, 2, 16, 16), np.float32)
    with pytest.raises(ValueError) as info:
        score_arrays(zeros, zeros, **options)
    assert phrase in str(info.value)


def test_score_arrays_object_dtype():
    from earthcast.metrics import score_arrays

    with pytest.raises(ValueError, match="holds object values, not numbers"):
        score_arrays(np.zeros((1, 2, 16, 16)), np.zeros((1, 2, 16, 16), dtype=object))
