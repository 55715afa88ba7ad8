"""A model trained on the user's own multi-variable store keeps its channels' meaning and scaling:
per-variable statistics in the contract, reused when the checkpoint is scored or resumed elsewhere,
and refused when the variables come in another order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from earthcast.cli import main
from earthcast.data.config import DataConfig
from earthcast.data.gridded_splits import DEFAULT_FRACTIONS, fraction_slices, reuse_training_statistics
from earthcast.training.checkpoint import read_checkpoint
from tests.training.conftest import COMMON

T, H, W = 60, 16, 16


def _store(path: Path, precip_factor: float = 1.0) -> Path:
    rng = np.random.default_rng(0)
    precip = rng.gamma(0.5, 2.0, size=(T, H, W)).astype(np.float32) * precip_factor
    temp = (280 + 4 * rng.standard_normal((T, H, W))).astype(np.float32)
    ds = xr.Dataset(
        {"precip": (("time", "y", "x"), precip), "temp": (("time", "y", "x"), temp)},
        coords={"time": pd.date_range("2021-06-01", periods=T, freq="5min")},
    )
    ds["precip"].attrs["units"], ds["temp"].attrs["units"] = "mm/h", "K"
    ds.to_netcdf(path)
    return path


def _experiment(tmp_path: Path, root: Path, variables: str = "[precip, temp]") -> list[str]:
    settings = [
        *[o for o in COMMON if not o.startswith("data.synthesize")],
        "model=unet_tiny",
        "data.name=gridded",
        f"data.root={root}",
        "data.in_len=3",
        "data.out_len=2",
        f"data.options={{variables: {variables}, normalization: standard}}",
        f"trainer.out_dir={tmp_path / 'runs'}",
    ]
    return [arg for s in settings for arg in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gridded_contract")
    root = _store(tmp_path / "own.nc")
    assert main(["fit", "nbody", *_experiment(tmp_path, root), "--out", str(tmp_path / "run")]) == 0
    return tmp_path, root, tmp_path / "run" / "checkpoints" / "last.ckpt"


def test_contract_records_every_variable(trained):
    _, root, ckpt = trained
    contract = read_checkpoint(ckpt)["hyper_parameters"]["data_contract"]
    assert contract["input_variables"] == contract["target_variables"] == ["precip", "temp"]
    assert contract["variable_units"] == {"precip": "mm/h", "temp": "K"}
    start, stop = fraction_slices(root, DEFAULT_FRACTIONS, "time")["train"]
    with xr.open_dataset(root) as ds:
        train = ds.sel(time=slice(start, stop))  # the training split's statistics, per variable
        for name in ("precip", "temp"):
            values = train[name].values.astype(np.float64)
            np.testing.assert_allclose(
                contract["normalization"][name], [values.mean(), values.std()], rtol=1e-5
            )


def test_scoring_elsewhere_reuses_the_training_statistics(trained, capsys):
    tmp_path, _, ckpt = trained
    tripled = _store(tmp_path / "tripled.nc", precip_factor=3.0)
    capsys.readouterr()
    assert main(["test", "--ckpt", str(ckpt), "--set", f"data.root={trained[1]}"]) == 0
    same = json.loads(capsys.readouterr().out)["metrics"]["mse"]
    assert main(["test", "--ckpt", str(ckpt), "--set", f"data.root={tripled}"]) == 0
    other = json.loads(capsys.readouterr().out)["metrics"]["mse"]
    # re-normalising with the new store's statistics would hide the tripled rain (same MSE)
    assert other > 1.5 * same


def test_other_variable_order_is_refused_for_scoring_and_resuming(trained, capsys):
    tmp_path, root, ckpt = trained
    swapped = "data.options={variables: [temp, precip], normalization: standard}"
    assert main(["test", "--ckpt", str(ckpt), "--set", swapped]) == 2
    assert "differ from the checkpoint's (inputs ['precip', 'temp']" in capsys.readouterr().err
    args = _experiment(tmp_path, root, "[temp, precip]")
    assert main(["fit", "nbody", *args, "--out", str(tmp_path / "run"), "--resume", "auto"]) == 2
    assert "set data.options.variables" in capsys.readouterr().err


def test_reuse_leaves_explicit_statistics_and_other_data_sets_alone():
    contract = {
        "input_variables": ["a"],
        "target_variables": ["a"],
        "normalization": {"a": [1.0, 2.0]},
    }
    gridded = DataConfig(name="gridded", options={"variables": ["a"], "normalization": "minmax"})
    assert reuse_training_statistics(gridded, contract).options["normalization"] == {"a": [1.0, 2.0]}
    explicit = gridded.replace(options={"variables": "a", "normalization": {"a": [0.0, 5.0]}})
    assert reuse_training_statistics(explicit, contract).options["normalization"] == {"a": [0.0, 5.0]}
    sevir = DataConfig(name="sevir")
    assert reuse_training_statistics(sevir, {"scale": "01"}) is sevir


def test_truncated_checkpoint_is_refused_before_resuming(trained, capsys):
    tmp_path, root, ckpt = trained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(ckpt.read_bytes()[:5000])
    args = _experiment(tmp_path, root)
    assert main(["fit", "nbody", *args, "--out", str(tmp_path / "run2"), "--resume", str(broken)]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert torch.load(ckpt, weights_only=False)  # the real one is untouched


def test_forecast_file_and_plot_carry_each_channels_scaling(trained, capsys):
    tmp_path, root, ckpt = trained
    contract = read_checkpoint(ckpt)["hyper_parameters"]["data_contract"]
    stats = contract["normalization"]
    with xr.open_dataset(root) as ds:
        raw = np.stack([ds["precip"].values[:3], ds["temp"].values[:3]], axis=-1)  # (3, H, W, 2)
    normalised = (raw - [stats["precip"][0], stats["temp"][0]]) / [stats["precip"][1], stats["temp"][1]]
    np.save(tmp_path / "ctx.npy", normalised[None].astype(np.float32))
    out = tmp_path / "fc.nc"
    assert (
        main(["predict", "--ckpt", str(ckpt), "--input", str(tmp_path / "ctx.npy"), "--output", str(out)])
        == 0
    )
    assert "temp [K] = value × " in capsys.readouterr().out
    with xr.open_dataset(out) as ds:
        da = ds["precip_temp"]
        assert list(da["channel_name"].values) == ["precip", "temp"]
        assert list(da["physical_units"].values) == ["mm/h", "K"]
        np.testing.assert_allclose(da["physical_scale_factor"], [stats["precip"][1], stats["temp"][1]])
        kelvin = da.isel(channel=1) * da["physical_scale_factor"][1] + da["physical_add_offset"][1]
        assert 250 < float(kelvin.mean()) < 310  # temperatures come back in kelvin
    figure = tmp_path / "temp.png"
    assert main(["plot", "--forecast", str(out), "--channel", "1", "--out", str(figure)]) == 0
    assert figure.stat().st_size > 0
    # truths that do not line up with the forecast are refused, not drawn above it
    np.save(tmp_path / "one_channel.npy", normalised[None, :2, ..., 1:].astype(np.float32))
    np.save(tmp_path / "three_leads.npy", normalised[None].astype(np.float32))
    plot = ["plot", "--forecast", str(out), "--out", str(tmp_path / "bad.png"), "--target"]
    assert main([*plot, str(tmp_path / "one_channel.npy")]) == 2
    assert "holds 1 channel(s) per frame but the model's target has 2" in capsys.readouterr().err
    assert main([*plot, str(tmp_path / "three_leads.npy")]) == 2
    assert "target has 3 frames per sample but the forecast 2 lead times" in capsys.readouterr().err


def test_common_mistakes_on_own_data_name_the_fix(tmp_path, capsys):
    root = _store(tmp_path / "own.nc")
    out = ["--out", str(tmp_path / "run")]
    assert main(["fit", "nbody", *_experiment(tmp_path, root, "[rain, temp]"), *out]) == 2
    assert "variable(s) ['rain'] not in the store; available: ['precip', 'temp']" in capsys.readouterr().err
    no_windows = [*_experiment(tmp_path, root), "--set", "data.in_len=null", "--set", "data.out_len=null"]
    assert main(["fit", "nbody", *no_windows, *out]) == 2
    assert "needs data.in_len and data.out_len" in capsys.readouterr().err
    long = [*_experiment(tmp_path, root), "--set", "data.in_len=5", "--set", "data.out_len=3"]
    assert main(["fit", "nbody", *long, *out]) == 2
    assert "give this split more time steps (data.options.split_fractions" in capsys.readouterr().err


def test_baseline_scored_in_place_of_the_configured_model_ignores_its_overrides(tmp_path, capsys):
    root = _store(tmp_path / "own.nc")
    args = [*_experiment(tmp_path, root), "--set", "model_overrides={input_shape: [3, 16, 16, 2]}"]
    assert main(["test", "nbody", *args, "--model", "persistence"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["mse"] > 0


def test_raw_contexts_for_a_normalised_model_are_refused_with_the_formula(trained, capsys):
    tmp_path, root, ckpt = trained
    with xr.open_dataset(root) as ds:
        raw = np.stack([ds["precip"].values[:3], ds["temp"].values[:3]], axis=-1)[None]  # kelvin, mm/h
    np.save(tmp_path / "raw.npy", raw.astype(np.float32))
    args = [
        "predict",
        "--ckpt",
        str(ckpt),
        "--input",
        str(tmp_path / "raw.npy"),
        "--output",
        str(tmp_path / "r.nc"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "channel 'temp' averages 2" in err and "normalise it as in training, x = (v − 279.9" in err
    assert not (tmp_path / "r.nc").exists()
